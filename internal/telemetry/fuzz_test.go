package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzDecodeBatch feeds arbitrary bodies to DecodeBatch and to the
// listener's handler. The seed corpus is in testdata/fuzz/FuzzDecodeBatch.
//
// Invariants, for every body:
//   - nothing panics;
//   - every event has a type, a record that is valid JSON and was cut from
//     the body, valid UTF-8 strings and a time;
//   - the handler answers a POST with 200.
//
// And when the body is a well-formed JSON array:
//   - every element is either an event or counted as malformed, and the
//     events are exactly the elements that decode on their own, in order
//     (one bad element does not cost its neighbours);
//   - a prefix of the body yields a prefix of its events (a truncated batch
//     keeps what came before the cut).
//
// Not an invariant: a malformed body always counting at least one malformed
// event. A body cut between two elements, or with bytes after its closing
// bracket, loses nothing decodable and counts nothing.
func FuzzDecodeBatch(f *testing.F) {
	// A small cap so that big inputs exercise the handler's truncation too.
	l, err := Listen(ListenerOptions{Addr: "127.0.0.1:0", MaxBody: 16 << 10, Buffer: NewBuffer(64 << 10), Now: nowFunc})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		if err := l.Close(context.Background()); err != nil {
			f.Errorf("Close: %v", err)
		}
	})

	f.Fuzz(func(t *testing.T, body []byte) {
		evs, malformed, _ := decode(body)
		checkEvents(t, body, evs)

		if elems, ok := jsonArray(body); ok {
			if len(evs)+malformed != len(elems) {
				t.Errorf("%d events + %d malformed, want %d elements", len(evs), malformed, len(elems))
			}
			var want []string
			for _, el := range elems {
				var w wireEvent
				if json.Unmarshal(el, &w) == nil && w.Type != "" && len(w.Record) > 0 {
					want = append(want, string(w.Record))
				}
			}
			if len(want) != len(evs) {
				t.Fatalf("%d events, want %d (the elements that decode alone)", len(evs), len(want))
			}
			for i := range want {
				if string(evs[i].Record) != want[i] {
					t.Errorf("event %d record = %q, want %q", i, evs[i].Record, want[i])
				}
			}

			cut := len(body) / 2
			prefix, _, _ := decode(body[:cut])
			if len(prefix) > len(evs) {
				t.Fatalf("prefix of %d bytes gave %d events, the whole body %d", cut, len(prefix), len(evs))
			}
			for i, p := range prefix {
				e := evs[i]
				if p.Type != e.Type || !bytes.Equal(p.Record, e.Record) || p.RequestID != e.RequestID || p.Level != e.Level || !p.Time.Equal(e.Time) {
					t.Errorf("prefix event %d = %+v, want %+v", i, p, e)
				}
			}
		}

		rec := httptest.NewRecorder()
		l.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body)))
		if rec.Code != http.StatusOK {
			t.Errorf("handler answered %d, want 200", rec.Code)
		}
	})
}

// jsonArray reports whether body is a well-formed JSON array, and its
// elements.
func jsonArray(body []byte) ([]json.RawMessage, bool) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '[' {
		return nil, false
	}
	var elems []json.RawMessage
	if json.Unmarshal(body, &elems) != nil {
		return nil, false
	}
	return elems, true
}
