package o2test

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// Arrivals returns, for each text record (a "record" that is a JSON
// string) of the _json requests answered 200, when the first request that
// carried it was received: what end-to-end latency is measured against.
func (s *Server) Arrivals() map[string]time.Time {
	out := map[string]time.Time{}
	for _, rq := range s.Requests() {
		if rq.Status != http.StatusOK || !strings.HasSuffix(rq.Path, "/_json") {
			continue
		}
		var recs []struct {
			Record json.RawMessage `json:"record"`
		}
		if json.Unmarshal(rq.Body, &recs) != nil {
			continue
		}
		for _, r := range recs {
			var text string
			if json.Unmarshal(r.Record, &text) != nil {
				continue
			}
			if _, seen := out[text]; !seen {
				out[text] = rq.Time
			}
		}
	}
	return out
}
