package o2test

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// bodyResult is a request body after decompression, or why it could not be
// read. status is 0 when the body is usable.
type bodyResult struct {
	data   []byte
	status int
	msg    string
	err    error
	// parsed and parseErr cache parseJSON(data): the body is counted when
	// it is logged and ingested later, and parsed once for both.
	parsed   any
	parseErr error
	isParsed bool
}

// json returns parseJSON(b.data), parsing once.
func (b *bodyResult) json() (any, error) {
	if !b.isParsed {
		b.parsed, b.parseErr = parseJSON(b.data)
		b.isParsed = true
	}
	return b.parsed, b.parseErr
}

// readBody decompresses r's body like tower-http's RequestDecompressionLayer
// and applies the body limit to the decompressed bytes, like axum's
// DefaultBodyLimit. Content-Encoding is matched exactly on the first header:
// "gzip", "deflate" (zlib, per HTTP) and "identity"; anything else is 415.
// br and zstd are refused too: the module may not add their decoders.
func (s *Server) readBody(r *http.Request) bodyResult {
	var src io.Reader = r.Body
	if r.Body == nil {
		src = http.NoBody
	}
	unsupported := false
	if ce := r.Header.Values("Content-Encoding"); len(ce) > 0 {
		switch ce[0] {
		case "gzip":
			zr, err := gzip.NewReader(src)
			if err != nil {
				return badBody(err)
			}
			src = zr
		case "deflate":
			zr, err := zlib.NewReader(src)
			if err != nil {
				return badBody(err)
			}
			src = zr
		case "identity":
		default:
			unsupported = true
		}
	}
	// Read at most limit+1 bytes: enough to know the limit is exceeded
	// without inflating a decompression bomb.
	data, err := io.ReadAll(io.LimitReader(src, s.maxBody+1))
	if unsupported {
		// The raw bytes are kept for the log only.
		return bodyResult{data: data, status: http.StatusUnsupportedMediaType, err: errors.New("unsupported encoding")}
	}
	if err != nil {
		b := badBody(err)
		b.data = data
		return b
	}
	if int64(len(data)) > s.maxBody {
		return bodyResult{
			data:   data,
			status: http.StatusRequestEntityTooLarge,
			msg:    "Failed to buffer the request body: length limit exceeded",
			err:    errors.New("too large"),
		}
	}
	return bodyResult{data: data}
}

// badBody is axum's rejection for a body that fails to stream (a corrupt
// compressed body): 400 in plain text.
func badBody(err error) bodyResult {
	return bodyResult{
		status: http.StatusBadRequest,
		msg:    "Failed to buffer the request body: " + err.Error(),
		err:    err,
	}
}

// countRecords is the number of records a body carries: the array length, 1
// for any other JSON value, 0 if it is not JSON.
func countRecords(b *bodyResult) int {
	v, err := b.json()
	if err != nil {
		return 0
	}
	if a, ok := v.([]any); ok {
		return len(a)
	}
	return 1
}

// serdeMaxDepth is serde_json's recursion limit: 128 nested arrays or
// objects are refused.
const serdeMaxDepth = 128

// parseJSON parses body as one JSON value the way serde_json::from_slice
// does, keeping numbers exact (json.Number, like the arbitrary_precision
// feature). Error texts imitate serde's where it is cheap ("EOF while
// parsing a value", "trailing characters"); the rest are Go's, with serde's
// position suffix.
func parseJSON(body []byte) (any, error) {
	if len(bytes.TrimLeft(body, " \t\r\n")) == 0 {
		line, col := position(body, len(body))
		return nil, fmt.Errorf("EOF while parsing a value at line %d column %d", line, col)
	}
	// Go would replace invalid UTF-8 inside strings; serde refuses it.
	if !utf8.Valid(body) {
		off := firstInvalidUTF8(body)
		line, col := position(body, off)
		return nil, fmt.Errorf("invalid unicode code point at line %d column %d", line, col)
	}
	if off, deep := tooDeep(body); deep {
		line, col := position(body, off)
		return nil, fmt.Errorf("recursion limit exceeded at line %d column %d", line, col)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		off := len(body)
		var se *json.SyntaxError
		if errors.As(err, &se) {
			off = int(se.Offset)
		}
		msg := err.Error()
		if errors.Is(err, io.ErrUnexpectedEOF) {
			msg = "EOF while parsing a value"
		}
		line, col := position(body, off)
		return nil, fmt.Errorf("%s at line %d column %d", msg, line, col)
	}
	end := int(dec.InputOffset())
	if rest := bytes.TrimLeft(body[end:], " \t\r\n"); len(rest) > 0 {
		line, col := position(body, len(body)-len(rest)+1)
		return nil, fmt.Errorf("trailing characters at line %d column %d", line, col)
	}
	return v, nil
}

// position converts a byte offset into serde's 1-based line and column.
func position(body []byte, off int) (line, col int) {
	off = min(max(off, 0), len(body))
	line = 1 + bytes.Count(body[:off], []byte{'\n'})
	col = off - (bytes.LastIndexByte(body[:off], '\n') + 1)
	return line, col
}

func firstInvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
}

// tooDeep reports whether the JSON nests deeper than serde allows, and
// where. Strings are skipped so brackets inside them do not count.
func tooDeep(b []byte) (int, bool) {
	depth, inStr, esc := 0, false, false
	for i, c := range b {
		switch {
		case inStr:
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
		case c == '"':
			inStr = true
		case c == '[' || c == '{':
			depth++
			if depth >= serdeMaxDepth {
				return i + 1, true
			}
		case c == ']' || c == '}':
			depth--
		}
	}
	return 0, false
}

// NormalizeStream returns the stream name OpenObserve stores for raw
// (format_stream_name): every run of characters outside [a-zA-Z0-9_:]
// becomes one "_", then ASCII letters are lower-cased. An empty result is
// refused with 400 "Stream name is empty".
func NormalizeStream(raw string) string {
	var b strings.Builder
	inRun := false
	for _, r := range raw {
		switch {
		case r >= 'A' && r <= 'Z':
			b.WriteRune(r + ('a' - 'A'))
			inRun = false
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_', r == ':':
			b.WriteRune(r)
			inRun = false
		case !inRun:
			b.WriteByte('_')
			inRun = true
		}
	}
	return b.String()
}

// NormalizeKey returns the field name OpenObserve stores for key
// (flatten.rs format_key): upper-case letters are lower-cased, lower-case
// letters and digits (Unicode included) are kept, and every other character
// becomes "_", one for one. So "@timestamp" is "_timestamp" and "hello世界"
// is "hello__".
func NormalizeKey(key string) string {
	var b strings.Builder
	b.Grow(len(key))
	for _, r := range key {
		switch {
		case isLower(r) || unicode.IsNumber(r):
			b.WriteRune(r)
		case isUpper(r):
			b.WriteRune(unicode.ToLower(r))
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// isLower and isUpper follow Rust's char::is_lowercase / is_uppercase, which
// use the derived Lowercase / Uppercase properties (Ll plus Other_Lowercase,
// Lu plus Other_Uppercase).
func isLower(r rune) bool {
	return unicode.IsLower(r) || unicode.Is(unicode.Other_Lowercase, r)
}

func isUpper(r rune) bool {
	return unicode.IsUpper(r) || unicode.Is(unicode.Other_Uppercase, r)
}

// flatten flattens one record like flatten.rs flatten_with_level: nested
// object keys are joined with "_" after normalising each key; an object at
// depth >= level (the record is depth 0; level 0 means no limit) is kept as
// a JSON string with its original keys; non-empty arrays are always JSON
// strings; empty objects and arrays are dropped. Keys are visited in sorted
// order, as serde_json's BTreeMap does, so when two keys normalise to the
// same name the later one in that order wins ("_timestamp" over
// "@timestamp").
func flatten(obj map[string]any, level int) map[string]any {
	out := make(map[string]any, len(obj))
	flattenObject(obj, "", level, 0, out)
	return out
}

func flattenObject(m map[string]any, prefix string, level, depth int, out map[string]any) {
	if len(m) == 0 {
		return
	}
	if level > 0 && depth >= level {
		out[prefix] = serdeString(m)
		return
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		key := NormalizeKey(k)
		if depth > 0 {
			key = prefix + "_" + key
		}
		flattenValue(m[k], key, level, depth+1, out)
	}
}

func flattenValue(v any, key string, level, depth int, out map[string]any) {
	switch x := v.(type) {
	case map[string]any:
		flattenObject(x, key, level, depth, out)
	case []any:
		if len(x) > 0 {
			out[key] = serdeString(x)
		}
	default:
		out[key] = v
	}
}

// serdeString encodes v as serde_json's Value::to_string does: compact,
// object keys sorted, numbers as written, and serde's string escaping.
func serdeString(v any) string {
	var b strings.Builder
	writeSerde(&b, v)
	return b.String()
}

func writeSerde(b *strings.Builder, v any) {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case json.Number:
		b.WriteString(string(x))
	case string:
		writeSerdeString(b, x)
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			writeSerde(b, e)
		}
		b.WriteByte(']')
	case map[string]any:
		b.WriteByte('{')
		for i, k := range slices.Sorted(maps.Keys(x)) {
			if i > 0 {
				b.WriteByte(',')
			}
			writeSerdeString(b, k)
			b.WriteByte(':')
			writeSerde(b, x[k])
		}
		b.WriteByte('}')
	default:
		// parseJSON produces only the types above.
		fmt.Fprintf(b, "%v", x)
	}
}

// writeSerdeString escapes like serde_json: \" \\ \b \f \n \r \t, other
// control characters as \u00xx (lower-case hex), everything else raw.
func writeSerdeString(b *strings.Builder, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if c < 0x20 {
				b.WriteString(`\u00`)
				b.WriteByte(hex[c>>4])
				b.WriteByte(hex[c&0xf])
			} else {
				b.WriteByte(c)
			}
		}
	}
	b.WriteByte('"')
}

// ingestResult is the outcome of ingesting one parsed body.
type ingestResult struct {
	successful, failed int
	lastErr            string
	records            []map[string]any
}

// Error texts OpenObserve puts in the reply's "error".
const (
	errNotObject = "flatten value must be an object"
	errTimestamp = "Can't parse timestamp"
)

// ingest runs each record through OpenObserve's steps
// (finalize_and_buffer_record): flatten and normalise, resolve
// `_timestamp`, check the time window; then the request-wide column limit.
// Each failure overwrites lastErr, so the reply carries the last one.
func (s *Server) ingest(v any, now time.Time) ingestResult {
	items, ok := v.([]any)
	if !ok {
		items = []any{v}
	}
	nowUS := now.UnixMicro()
	minTS := nowUS - s.upto.Microseconds()
	maxTS := nowUS + s.future.Microseconds()

	var res ingestResult
	var accepted []map[string]any
	for _, item := range items {
		obj, ok := item.(map[string]any)
		if !ok {
			res.failed++
			res.lastErr = errNotObject
			continue
		}
		flat := flatten(obj, s.flatLevel)
		ts := nowUS
		if raw, ok := flat["_timestamp"]; ok && raw != nil {
			t, err := parseTimestamp(raw, nowUS)
			if err != nil {
				res.failed++
				res.lastErr = errTimestamp
				continue
			}
			ts = t
		}
		if ts < minTS {
			res.failed++
			res.lastErr = tooOld(s.upto)
			continue
		}
		if ts > maxTS {
			res.failed++
			res.lastErr = tooFar(s.future)
			continue
		}
		// A null is no value in a columnar store; drop it so tests see only
		// what a query would return.
		for k, fv := range flat {
			if fv == nil {
				delete(flat, k)
			}
		}
		flat["_timestamp"] = ts
		accepted = append(accepted, flat)
	}

	// The column limit applies to the union of field names across the whole
	// request (schema inference over the batch). Exceeding it fails the
	// write, which OpenObserve only logs: still 200, and the records count
	// neither as successful nor as failed (openobserve-api.md §5.6).
	cols := make(map[string]struct{})
	for _, f := range accepted {
		for k := range f {
			cols[k] = struct{}{}
		}
	}
	if len(cols) > s.colLimit {
		return res
	}
	res.successful = len(accepted)
	res.records = accepted
	return res
}

// tooOld and tooFar are OpenObserve's window messages (schema/src/lib.rs).
func tooOld(d time.Duration) string {
	return "Too old data, only last " + hours(d) +
		" hours data can be ingested. Data discarded. You can adjust ingestion max time by setting the environment variable ZO_INGEST_ALLOWED_UPTO=<max_hours>"
}

func tooFar(d time.Duration) string {
	return "Too far data, only future " + hours(d) +
		" hours data can be ingested. Data discarded. You can adjust ingestion max time by setting the environment variable ZO_INGEST_ALLOWED_IN_FUTURE=<max_hours>"
}

// hours prints a window the way the real config holds it, as whole hours;
// fractional windows (possible only here) print as a decimal.
func hours(d time.Duration) string {
	if d%time.Hour == 0 {
		return strconv.FormatInt(int64(d/time.Hour), 10)
	}
	return strconv.FormatFloat(d.Hours(), 'f', -1, 64)
}
