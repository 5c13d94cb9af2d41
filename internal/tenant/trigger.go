package tenant

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/o2-extension/o2-extension/internal/telemetry"
)

// needleFor returns the part of the trigger message that is searched for in
// a raw record before anything is parsed: the longest run of characters no
// JSON encoder escapes, so the bytes appear verbatim whether the record is
// an object, a string, or a string holding a JSON-encoded object. An empty
// needle (a message made only of such characters) disables the pre-check.
func needleFor(msg string) []byte {
	best, start := "", 0
	for i := 0; i <= len(msg); i++ {
		if i < len(msg) && plainByte(msg[i]) {
			continue
		}
		if i-start > len(best) {
			best = msg[start:i]
		}
		start = i + 1
	}
	return []byte(best)
}

// plainByte reports whether c is written as itself by every JSON encoder in
// common use: letters, digits and punctuation other than the quote, the
// backslash, the slash (some encoders write \/) and Go's HTML-escaped <>&.
func plainByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte(" -_.:,;!#$%()*+=?@^`|~'[]{}", c) >= 0
}

// mark is a tenant mark parsed from a function log.
type mark struct {
	tenant    string
	requestID string
}

// maxNesting bounds how deep parseMark looks for the trigger: the log
// object itself, or its "message" holding the object (Node.js's JSON log
// format puts console.log's text there), and once more for a JSON log
// record delivered as a string.
const maxNesting = 2

// parseMark returns the mark a function record carries, if it is a trigger.
// rec is the record as received: a JSON object (JSON log format) or a JSON
// string (text format) whose text holds a JSON object, possibly after a
// runtime's prefix such as "2024-01-01T00:00:00.000Z\t<requestId>\tINFO\t".
// current is the request id the listener attributed the event to.
func (t *Tracker) parseMark(rec []byte, current string) (mark, bool) {
	rec = bytes.TrimSpace(rec)
	if len(rec) == 0 {
		return mark{}, false
	}
	var prefixID string
	switch rec[0] {
	case '{':
	case '"':
		var s string
		if json.Unmarshal(rec, &s) != nil {
			return mark{}, false
		}
		i := strings.IndexByte(s, '{')
		if i < 0 {
			return mark{}, false
		}
		prefixID = requestIDIn(s[:i])
		rec = []byte(s[i:])
	default:
		return mark{}, false
	}
	m, ok := t.findTrigger(rec, maxNesting)
	if !ok {
		return mark{}, false
	}
	if m.requestID == "" {
		m.requestID = prefixID
	}
	if m.requestID == "" {
		m.requestID = current
	}
	if m.requestID == "" {
		return mark{}, false
	}
	return m, true
}

// findTrigger parses obj, a JSON object possibly followed by other text,
// and returns its mark when its "message" is the trigger and it carries the
// tenant field. When "message" is instead another JSON object (or a string
// holding one), that object is searched, up to depth levels down; the
// outer object's requestId then stands in for a missing inner one.
func (t *Tracker) findTrigger(obj []byte, depth int) (mark, bool) {
	var fields map[string]json.RawMessage
	// A decoder, not Unmarshal: text after the object (a trailing note,
	// a second value) must not hide the trigger.
	if json.NewDecoder(bytes.NewReader(obj)).Decode(&fields) != nil {
		return mark{}, false
	}
	msg := bytes.TrimSpace(fields["message"])
	if len(msg) == 0 {
		return mark{}, false
	}
	outerID := telemetry.StringValue(fields["requestId"])
	var inner []byte
	switch msg[0] {
	case '"':
		var s string
		if json.Unmarshal(msg, &s) != nil {
			return mark{}, false
		}
		if s == t.o.Message {
			tenant := tenantID(fields[t.o.Field])
			if tenant == "" {
				return mark{}, false
			}
			return mark{tenant: tenant, requestID: outerID}, true
		}
		s = strings.TrimSpace(s)
		if !strings.HasPrefix(s, "{") {
			return mark{}, false
		}
		inner = []byte(s)
	case '{':
		inner = msg
	default:
		return mark{}, false
	}
	if depth == 0 {
		return mark{}, false
	}
	m, ok := t.findTrigger(inner, depth-1)
	if ok && m.requestID == "" {
		m.requestID = outerID
	}
	return m, ok
}

// tenantID returns the tenant named by a field's raw JSON value: a
// non-blank string, or a number kept as its JSON text. Anything else
// (absent, null, boolean, object) names no tenant.
func tenantID(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return ""
	}
	switch c := raw[0]; {
	case c == '"':
		return strings.TrimSpace(telemetry.StringValue(raw))
	case c == '-' || '0' <= c && c <= '9':
		return string(raw) // valid: the decoder accepted the object
	}
	return ""
}

// requestIDIn returns the request id in a runtime's text-log prefix, e.g.
// Node.js's "2024-01-01T00:00:00.000Z\t<id>\tINFO\t" or Python's
// "[INFO]\t2024-01-01T00:00:00.000Z\t<id>\t": the tab-separated field
// shaped like a UUID, or "" if there is none.
func requestIDIn(prefix string) string {
	for f := range strings.SplitSeq(prefix, "\t") {
		if f = strings.TrimSpace(f); telemetry.IsUUID(f) {
			return f
		}
	}
	return ""
}
