package openobserve

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/o2-extension/o2-extension/internal/telemetry"
)

// minRecordBytes is the smallest record bound honoured: below it the
// truncation marker alone would not fit and a split could not make progress.
const minRecordBytes = 64

// truncMarkerMax bounds the length of a truncation marker "…[truncated N
// bytes]" for any N that fits in an int, so a cut can be sized before N is
// known.
const truncMarkerMax = len("…[truncated  bytes]") + 20

// reservedKeys are the record keys written by the encoder, normalised the way
// OpenObserve normalises field names (openobserve-api.md §5.2). A static
// field that normalises to one of them would silently replace ours in the
// stream, so it is skipped.
var reservedKeys = []string{"_timestamp", "type", "record", "requestid", "level", "trace_id", "span_id", "part", "truncated", "record_as_text"}

// ReservedKeys returns the record keys the encoder writes itself, normalised
// (lower case). config refuses them in O2_FIELDS with its own copy of the
// list, as config imports only the standard library; a test in
// cmd/o2-extension fails when the two drift apart.
func ReservedKeys() []string { return slices.Clone(reservedKeys) }

// encoder turns events into OpenObserve records. It is immutable once built
// and safe for concurrent use.
type encoder struct {
	// fields is the pre-encoded `,"key":value` run of the static fields, in
	// sorted key order, appended to every record; encoding it once keeps
	// the per-record cost to a copy.
	fields []byte
	// maxRecord bounds the encoded size of one record's "record" value.
	maxRecord int
}

// newEncoder pre-encodes the static fields. Fields whose value cannot be
// encoded as JSON, and fields that would collide with the record's own keys,
// are left out: a bad user field must not cost the logs.
func newEncoder(fields map[string]any, maxRecord int) *encoder {
	e := &encoder{maxRecord: max(maxRecord, minRecordBytes)}
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		if slices.Contains(reservedKeys, normaliseKey(k)) {
			continue
		}
		v, err := json.Marshal(fields[k])
		if err != nil {
			continue
		}
		e.fields = append(e.fields, ',')
		e.fields = appendString(e.fields, k)
		e.fields = append(e.fields, ':')
		e.fields = append(e.fields, v...)
	}
	return e
}

// normaliseKey mirrors OpenObserve's field-name normalisation closely enough
// to detect collisions: ASCII lower-cased, anything but [a-z0-9_] becomes _.
func normaliseKey(k string) string {
	b := []byte(strings.ToLower(k))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}

// sizeHint estimates the encoded size of ev's records, so that a batch's
// buffer is allocated once.
func (e *encoder) sizeHint(ev *telemetry.Event) int {
	return len(ev.Record) + len(ev.Type) + len(ev.RequestID) + len(ev.Level) + len(ev.TraceID) + len(ev.SpanID) + len(e.fields) + 110
}

// encodeAll encodes evs as OpenObserve records, one JSON object each, into
// one buffer. It returns the buffer and the end offset of every record;
// owners, when not nil, receives for every record the index of the event it
// came from.
//
// A record has the keys, in this order: "_timestamp" (integer µs from
// Event.Time, left out for a zero time so that OpenObserve stamps it),
// "type", "record" (the event's record: a string stays a string, an object
// stays an object), "requestId", "level", "trace_id" and "span_id" when
// known, "part" or
// "truncated" when the record was cut (see below), then Options.Fields in
// sorted key order.
//
// A record whose JSON value is larger than MaxRecordBytes is cut so that the
// queue never stalls on it. A string is split on rune boundaries into parts
// that are records of their own with "part":"i/n"; joining the parts gives
// back the original text. An object has its longest string values
// truncated with the marker "…[truncated N bytes]" and gets
// "truncated":true; if that is not enough, the record becomes the object's
// JSON text as a truncated string. Invalid UTF-8 and lone UTF-16 surrogates
// are replaced by U+FFFD: OpenObserve's parser refuses them and would fail the
// whole batch.
func (e *encoder) encodeAll(evs []telemetry.Event, owners *[]int) ([]byte, []int) {
	n := 0
	for i := range evs {
		n += e.sizeHint(&evs[i])
	}
	buf := make([]byte, 0, n)
	ends := make([]int, 0, len(evs))
	for i := range evs {
		before := len(ends)
		buf, ends = e.appendEvent(buf, ends, &evs[i])
		if owners != nil {
			for range len(ends) - before {
				*owners = append(*owners, i)
			}
		}
	}
	return buf, ends
}

// appendEvent appends the record(s) for ev to buf and their end offsets to
// ends.
func (e *encoder) appendEvent(buf []byte, ends []int, ev *telemetry.Event) ([]byte, []int) {
	raw := bytes.TrimSpace(ev.Record)
	if len(raw) == 0 {
		raw = []byte(`""`)
	}
	// Records come from encoding/json (telemetry decodes them as
	// json.RawMessage), so they are valid JSON; a full json.Valid would
	// double the cost of a batch. Only the framing is checked, to catch a
	// hand-made event that is plainly not JSON before it fails a batch.
	clean := framed(raw) && utf8.Valid(raw) && !hasSurrogateEscape(raw)
	if ev.Flat && clean && raw[0] == '{' {
		// A record the extension made itself (the tenant memory report):
		// its keys are the record's top-level fields.
		buf = e.appendFlat(buf, ev, raw)
		return buf, append(ends, len(buf))
	}
	if clean && (raw[0] == '{' || raw[0] == '[') && tooDeep(raw, maxDepth) {
		// OpenObserve's JSON parser refuses the whole request past 128
		// levels: send this record's text instead, marked.
		return e.appendTextMarked(buf, ends, ev, string(raw))
	}
	if clean && len(raw) <= e.maxRecord {
		// The common case: the record goes out byte for byte as received.
		buf = e.appendRecord(buf, ev, raw, "", false)
		return buf, append(ends, len(buf))
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err == nil {
			// Unmarshal has replaced invalid UTF-8 and lone surrogates.
			return e.appendText(buf, ends, ev, s)
		}
		return e.appendText(buf, ends, ev, string(raw))
	}
	var v any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber() // keep numbers exactly as written
	if err := d.Decode(&v); err != nil {
		// Not JSON after all: ship its text rather than break the batch.
		return e.appendText(buf, ends, ev, strings.ToValidUTF8(string(raw), "\uFFFD"))
	}
	val := appendValue(nil, v)
	truncated := false
	if len(val) > e.maxRecord {
		val, truncated = e.truncateValue(v, len(val))
	}
	buf = e.appendRecord(buf, ev, val, "", truncated)
	return buf, append(ends, len(buf))
}

// maxDepth is the deepest nesting of a record sent as JSON. serde_json,
// which OpenObserve parses bodies with, stops at 128 levels and refuses the
// whole request with 400 (openobserve-api.md §3); the array and the record
// object add two, and the margin keeps clear of it.
const maxDepth = 100

// tooDeep reports whether the valid JSON value raw nests arrays and objects
// more than limit levels deep.
func tooDeep(raw []byte, limit int) bool {
	depth, inStr := 0, false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case inStr && c == '\\':
			i++
		case c == '"':
			inStr = !inStr
		case inStr:
		case c == '{' || c == '[':
			depth++
			if depth > limit {
				return true
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return false
}

// appendTextMarked is appendText for a record that is not text but is sent
// as its JSON text, with "record_as_text": true so that one can tell.
func (e *encoder) appendTextMarked(buf []byte, ends []int, ev *telemetry.Event, s string) ([]byte, []int) {
	first := len(ends)
	buf, ends = e.appendText(buf, ends, ev, s)
	// Each record ends with '}': insert the marker before it.
	for k := first; k < len(ends); k++ {
		end := ends[k]
		buf = append(buf[:end-1], append([]byte(`,"record_as_text":true}`), buf[end:]...)...)
		for j := k; j < len(ends); j++ {
			ends[j] += len(`,"record_as_text":true`)
		}
	}
	return buf, ends
}

// appendText appends the record(s) for a text record s, splitting it into
// parts when its encoding is longer than the record bound.
func (e *encoder) appendText(buf []byte, ends []int, ev *telemetry.Event, s string) ([]byte, []int) {
	if escapedLen(s) <= e.maxRecord-2 {
		val := appendString(nil, s)
		buf = e.appendRecord(buf, ev, val, "", false)
		return buf, append(ends, len(buf))
	}
	cuts := splitPoints(s, e.maxRecord-2)
	n := strconv.Itoa(len(cuts))
	var val []byte
	start := 0
	for i, end := range cuts {
		val = appendString(val[:0], s[start:end])
		buf = e.appendRecord(buf, ev, val, strconv.Itoa(i+1)+"/"+n, false)
		ends = append(ends, len(buf))
		start = end
	}
	return buf, ends
}

// splitPoints returns the end offsets of the parts of s such that each part
// ends on a rune boundary and escapes to at most limit bytes (at least one
// rune per part, so a tiny limit still makes progress).
func splitPoints(s string, limit int) []int {
	var cuts []int
	size := 0
	for i, r := range s {
		w := runeEscapedLen(r)
		if size > 0 && size+w > limit {
			cuts = append(cuts, i)
			size = 0
		}
		size += w
	}
	return append(cuts, len(s))
}

// appendHead opens a record with its "_timestamp" (left out for a zero
// time, so OpenObserve stamps it) and "type".
func appendHead(buf []byte, ev *telemetry.Event) []byte {
	buf = append(buf, '{')
	if !ev.Time.IsZero() {
		buf = append(buf, `"_timestamp":`...)
		buf = strconv.AppendInt(buf, ev.Time.UnixMicro(), 10)
		buf = append(buf, ',')
	}
	buf = append(buf, `"type":`...)
	buf = appendString(buf, ev.Type)
	return buf
}

// appendFlat appends one record whose fields are _timestamp, type, the keys
// of the object obj, and the static fields.
func (e *encoder) appendFlat(buf []byte, ev *telemetry.Event, obj []byte) []byte {
	buf = appendHead(buf, ev)
	if inner := bytes.TrimSpace(obj[1 : len(obj)-1]); len(inner) > 0 {
		buf = append(buf, ',')
		buf = append(buf, inner...)
	}
	buf = append(buf, e.fields...)
	return append(buf, '}')
}

// appendRecord appends one record object with value val as its "record".
func (e *encoder) appendRecord(buf []byte, ev *telemetry.Event, val []byte, part string, truncated bool) []byte {
	buf = appendHead(buf, ev)
	buf = append(buf, `,"record":`...)
	buf = append(buf, val...)
	if ev.RequestID != "" {
		buf = append(buf, `,"requestId":`...)
		buf = appendString(buf, ev.RequestID)
	}
	if ev.Level != "" {
		buf = append(buf, `,"level":`...)
		buf = appendString(buf, ev.Level)
	}
	if ev.TraceID != "" {
		// OpenObserve's trace view finds an invocation's logs by these.
		buf = append(buf, `,"trace_id":`...)
		buf = appendString(buf, ev.TraceID)
	}
	if ev.SpanID != "" {
		buf = append(buf, `,"span_id":`...)
		buf = appendString(buf, ev.SpanID)
	}
	if part != "" {
		buf = append(buf, `,"part":"`...)
		buf = append(buf, part...)
		buf = append(buf, '"')
	}
	if truncated {
		buf = append(buf, `,"truncated":true`...)
	}
	buf = append(buf, e.fields...)
	return append(buf, '}')
}

// strRef locates one string value inside a decoded JSON tree so that it can
// be replaced in place.
type strRef struct {
	m   map[string]any
	k   string
	a   []any
	i   int
	s   string
	enc int // escaped length of s
}

func (r strRef) set(s string) {
	if r.m != nil {
		r.m[r.k] = s
	} else {
		r.a[r.i] = s
	}
}

// collectStrings appends a reference to every string value under v.
func collectStrings(refs []strRef, v any) []strRef {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok {
				refs = append(refs, strRef{m: v, k: k, s: s, enc: escapedLen(s)})
			} else {
				refs = collectStrings(refs, x)
			}
		}
	case []any:
		for i, x := range v {
			if s, ok := x.(string); ok {
				refs = append(refs, strRef{a: v, i: i, s: s, enc: escapedLen(s)})
			} else {
				refs = collectStrings(refs, x)
			}
		}
	}
	return refs
}

// truncateValue shrinks the decoded value v, whose encoding is size bytes,
// to at most maxRecord bytes. It cuts the longest strings first, each by just
// enough to cover what is still over, so that short fields (ids, levels,
// numbers) survive intact. When the strings alone cannot make it fit (many
// small fields, huge keys) the value becomes its own JSON text, truncated, as
// a string. It reports whether anything was cut.
func (e *encoder) truncateValue(v any, size int) ([]byte, bool) {
	refs := collectStrings(nil, v)
	slices.SortFunc(refs, func(a, b strRef) int { return b.enc - a.enc })
	for _, r := range refs {
		over := size - e.maxRecord
		if over <= 0 {
			break
		}
		keep := max(r.enc-over-truncMarkerMax, 0)
		cut := truncateString(r.s, keep)
		if d := escapedLen(cut) - r.enc; d < 0 {
			r.set(cut)
			size += d
		}
	}
	if size <= e.maxRecord {
		return appendValue(nil, v), true
	}
	// The cuts made above stay in the text: they only help it fit.
	text := string(appendValue(nil, v))
	return appendString(nil, truncateString(text, e.maxRecord-2-truncMarkerMax)), true
}

// truncateString cuts s on a rune boundary so that the kept prefix escapes
// to at most keep bytes, and appends the marker naming how many bytes of s
// were removed. It returns s unchanged when it already fits.
func truncateString(s string, keep int) string {
	n := 0
	for i, r := range s {
		w := runeEscapedLen(r)
		if n+w > keep {
			return s[:i] + "…[truncated " + strconv.Itoa(len(s)-i) + " bytes]"
		}
		n += w
	}
	return s
}

// appendValue encodes a tree decoded with UseNumber, with sorted keys and
// the same escaping as appendString, so that escapedLen predicts its size.
func appendValue(buf []byte, v any) []byte {
	switch v := v.(type) {
	case map[string]any:
		buf = append(buf, '{')
		for i, k := range slices.Sorted(maps.Keys(v)) {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendString(buf, k)
			buf = append(buf, ':')
			buf = appendValue(buf, v[k])
		}
		return append(buf, '}')
	case []any:
		buf = append(buf, '[')
		for i, x := range v {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendValue(buf, x)
		}
		return append(buf, ']')
	case string:
		return appendString(buf, v)
	case json.Number:
		return append(buf, v...)
	case bool:
		return strconv.AppendBool(buf, v)
	case nil:
		return append(buf, "null"...)
	default:
		// Not produced by a UseNumber decode; kept for completeness.
		b, err := json.Marshal(v)
		if err != nil {
			return append(buf, "null"...)
		}
		return append(buf, b...)
	}
}

// framed reports whether raw looks like a JSON string or object: the
// expected first and last bytes. Anything else takes the slow path, which
// parses it.
func framed(raw []byte) bool {
	if len(raw) < 2 {
		return false
	}
	first, last := raw[0], raw[len(raw)-1]
	return first == '"' && last == '"' || first == '{' && last == '}'
}

// hasSurrogateEscape reports whether raw contains a \uD800-\uDFFF escape.
// Valid pairs are harmless, but a lone surrogate makes OpenObserve's parser
// (serde_json) reject the whole body, so any surrogate escape sends the
// record down the slow path, where encoding/json repairs lone ones.
func hasSurrogateEscape(raw []byte) bool {
	for {
		i := bytes.Index(raw, []byte(`\u`))
		if i < 0 || i+3 >= len(raw) {
			return false
		}
		// Count the backslashes before this one: an even number means the
		// "\u" is itself an escape, an odd number means "\\u" (a literal
		// backslash followed by u).
		bs := 0
		for j := i - 1; j >= 0 && raw[j] == '\\'; j-- {
			bs++
		}
		if bs%2 == 0 && (raw[i+2] == 'd' || raw[i+2] == 'D') {
			switch raw[i+3] {
			case '8', '9', 'a', 'b', 'c', 'd', 'e', 'f', 'A', 'B', 'C', 'D', 'E', 'F':
				return true
			}
		}
		raw = raw[i+2:]
	}
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD.
// Unlike encoding/json it does not escape <, > and &: the body is never
// embedded in HTML, and the escapes would only cost bytes.
func appendString(buf []byte, s string) []byte {
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			buf = append(buf, s[start:i]...)
			switch c {
			case '"', '\\':
				buf = append(buf, '\\', c)
			case '\n':
				buf = append(buf, '\\', 'n')
			case '\r':
				buf = append(buf, '\\', 'r')
			case '\t':
				buf = append(buf, '\\', 't')
			default:
				buf = append(buf, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			buf = append(buf, s[start:i]...)
			buf = append(buf, "\uFFFD"...)
			i++
			start = i
			continue
		}
		i += size
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}

// escapedLen is the length of appendString(nil, s) without its quotes.
func escapedLen(s string) int {
	n := 0
	for _, r := range s {
		n += runeEscapedLen(r)
	}
	return n
}

// runeEscapedLen is the encoded length of r as appendString writes it. An
// invalid byte arrives as utf8.RuneError, whose UTF-8 length (3) is also what
// its U+FFFD replacement takes.
func runeEscapedLen(r rune) int {
	switch {
	case r == '"' || r == '\\' || r == '\n' || r == '\r' || r == '\t':
		return 2
	case r < 0x20:
		return 6
	default:
		return utf8.RuneLen(r)
	}
}
