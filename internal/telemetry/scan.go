package telemetry

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"unicode/utf8"
)

// The fast path of DecodeBatch. Lambda's bodies are valid JSON arrays of
// {"time","type","record"} objects with lower-case keys; once json.Valid has
// vouched for the whole body, each element's three fields are found by a
// scan that only needs to skip values, which costs a fraction of
// encoding/json's reflection. Anything the scan does not handle exactly as
// json.Unmarshal would (escaped or case-folded keys, an escaped type) goes
// through json.Unmarshal, so both paths give the same events
// (FuzzDecodeBatch checks it).

// errSlowPath marks an element the scan leaves to json.Unmarshal.
var errSlowPath = errors.New("telemetry: element needs the slow path")

// scanBatch decodes a body that valid accepted. The events' Time and Record alias the body. It returns false if the body is not an array (then the caller's
// general path reports it).
func scanBatch(body []byte, emit func(wireEvent, error)) bool {
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '[' {
		return false
	}
	i = skipSpace(body, i+1)
	if i < len(body) && body[i] == ']' {
		return true
	}
	for i < len(body) {
		end := skipValue(body, i)
		el := body[i:end]
		w, err := scanElement(el)
		if errors.Is(err, errSlowPath) {
			w = wireEvent{}
			err = json.Unmarshal(el, &w)
		}
		emit(w, err)
		i = skipSpace(body, end)
		if i < len(body) && body[i] == ',' {
			i = skipSpace(body, i+1)
			continue
		}
		break // ']': the body is valid, so nothing else can follow
	}
	return true
}

// scanElement reads one element of a valid body. A value that is not an
// object, or a "type" that is not a string or null, is the
// *json.UnmarshalTypeError json.Unmarshal would return.
func scanElement(el []byte) (wireEvent, error) {
	var w wireEvent
	if el[0] != '{' {
		if el[0] == 'n' { // null: json.Unmarshal leaves the struct zero
			return w, nil
		}
		return w, &json.UnmarshalTypeError{Value: "non-object", Type: wireEventType}
	}
	i := skipSpace(el, 1)
	if el[i] == '}' {
		return w, nil
	}
	for {
		// A key: a string, then ':'.
		kEnd := skipString(el, i)
		key := el[i+1 : kEnd-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			return w, errSlowPath
		}
		i = skipSpace(el, kEnd)
		i = skipSpace(el, i+1) // past ':'
		vEnd := skipValue(el, i)
		val := el[i:vEnd]
		switch string(key) {
		case "time":
			w.Time = val // aliases the body: only parsed
		case "record":
			w.Record = val // aliases the body: DecodeBatch copies it
		case "type":
			switch val[0] {
			case '"':
				s := val[1 : len(val)-1]
				if bytes.IndexByte(s, '\\') >= 0 || !utf8.Valid(s) {
					// json.Unmarshal unescapes, and replaces invalid UTF-8.
					return w, errSlowPath
				}
				w.Type = string(s)
			case 'n': // null leaves a string as it was
			default:
				return w, &json.UnmarshalTypeError{Value: "non-string", Type: wireEventType}
			}
		default:
			// json.Unmarshal matches keys without regard to case (with
			// Unicode folding): leave any near miss to it.
			if foldsToField(key) {
				return w, errSlowPath
			}
		}
		i = skipSpace(el, vEnd)
		if el[i] == '}' {
			return w, nil
		}
		i = skipSpace(el, i+1) // past ','
	}
}

var wireEventType = reflect.TypeFor[wireEvent]()

// foldsToField reports whether key could match one of wireEvent's fields
// under json's case folding: any non-ASCII byte (Unicode folds such as the
// Kelvin sign), or an ASCII spelling equal but for case.
func foldsToField(key []byte) bool {
	for _, c := range key {
		if c >= 0x80 {
			return true
		}
	}
	k := string(key)
	return strings.EqualFold(k, "time") || strings.EqualFold(k, "type") || strings.EqualFold(k, "record")
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the index just past the string that starts at b[i]
// (a '"'), in valid JSON.
func skipString(b []byte, i int) int {
	for i++; i < len(b); {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return len(b)
		}
		i += j
		// The quote ends the string unless an odd number of backslashes
		// escape it.
		n := 0
		for k := i - 1; k >= 0 && b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return i + 1
		}
		i++
	}
	return len(b)
}

// skipValue returns the index just past the value that starts at b[i], in
// valid JSON.
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = skipString(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return len(b)
	default: // a number, true, false or null
		for ; i < len(b); i++ {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
		}
		return len(b)
	}
}
