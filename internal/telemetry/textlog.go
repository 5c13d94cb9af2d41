package telemetry

import "strings"

// Managed runtimes prefix text-format log lines with the time, the request
// id and the level, tab-separated:
//
//	Node.js: 2024-01-01T00:00:00.000Z\t<requestId>\tINFO\tmessage
//	Python:  [INFO]\t2024-01-01T00:00:00.000Z\t<requestId>\tmessage
//
// Reading them gives text lines the same "level" and "requestId" fields as
// JSON-format lines, so that one query finds the errors of either format,
// and the request id of a line printed after its invocation ended (a
// callback, a background task) is its own, not the next one's.

// textPrefix reads a runtime's prefix from a text-format record, raw being
// the record as a JSON string (tabs escaped as \t). It returns the request id
// (a subslice of raw) and the level, or nil and "" when the line has no such
// prefix.
func textPrefix(raw []byte) (requestID []byte, level string) {
	if len(raw) < 2 || raw[0] != '"' {
		return nil, ""
	}
	var f [3][]byte
	rest := raw[1:]
	for i := range f {
		var ok bool
		if f[i], rest, ok = cutTab(rest); !ok {
			return nil, ""
		}
	}
	switch {
	case isTimestamp(f[0]) && isUUID(f[1]): // Node.js
		if lvl := levelWord(f[2]); lvl != "" {
			return f[1], lvl
		}
	case len(f[0]) > 2 && f[0][0] == '[' && f[0][len(f[0])-1] == ']' && isTimestamp(f[1]) && isUUID(f[2]): // Python
		if lvl := levelWord(f[0][1 : len(f[0])-1]); lvl != "" {
			return f[2], lvl
		}
	}
	return nil, ""
}

// cutTab returns the field before the next escaped tab in the inside of a
// JSON string, and what follows the tab. A field must be plain (no other
// escape, no quote): prefixes are plain ASCII, and anything else is not one.
func cutTab(b []byte) (field, rest []byte, ok bool) {
	for i := 0; i < len(b) && i < 64; i++ {
		switch b[i] {
		case '"':
			return nil, nil, false
		case '\\':
			if i+1 < len(b) && b[i+1] == 't' {
				return b[:i], b[i+2:], true
			}
			return nil, nil, false
		}
	}
	return nil, nil, false
}

// isTimestamp reports whether b starts like an RFC 3339 time in UTC as
// runtimes print it, 2024-01-01T00:00:00.000Z.
func isTimestamp(b []byte) bool {
	if len(b) < 20 || b[len(b)-1] != 'Z' {
		return false
	}
	for i, c := range b[:19] {
		switch i {
		case 4, 7:
			if c != '-' {
				return false
			}
		case 10:
			if c != 'T' {
				return false
			}
		case 13, 16:
			if c != ':' {
				return false
			}
		default:
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	return true
}

// levelWord returns the level b names, in capitals (some runtimes print
// "info"), or "" when b is not a level: the words runtimes print are Levels
// (Node.js's console methods) and LevelAliases (Python's logging levels),
// kept as printed.
func levelWord(b []byte) string {
	for _, l := range Levels {
		if len(b) == len(l) && strings.EqualFold(string(b), l) {
			return l
		}
	}
	for l := range LevelAliases {
		if len(b) == len(l) && strings.EqualFold(string(b), l) {
			return l
		}
	}
	return ""
}

// IsUUID reports whether s has the 8-4-4-4-12 hex shape of a request id.
func IsUUID(s string) bool { return isUUID(s) }

func isUUID[T string | []byte](s T) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// logfmtLevel reads the level of an extension's logfmt line (as logrus and
// this extension print them: `level=warning msg=...`), raw being the record
// as a JSON string; "" when it has none. It names the level as Levels and
// LevelAliases do, in capitals ("WARNING"), so that one query finds the
// warnings of functions and extensions alike.
func logfmtLevel(raw []byte) string {
	if len(raw) < 2 || raw[0] != '"' {
		return ""
	}
	const key = "level="
	for i := 1; i+len(key) < len(raw); i++ {
		if (i == 1 || raw[i-1] == ' ') && string(raw[i:i+len(key)]) == key {
			v := raw[i+len(key):]
			end := 0
			for end < len(v) && end < 16 && v[end] >= 'a' && v[end] <= 'z' || end < len(v) && end < 16 && v[end] >= 'A' && v[end] <= 'Z' {
				end++
			}
			return levelWord(v[:end])
		}
		if raw[i] == '\\' {
			i++ // an escape: never a key's start
		}
	}
	return ""
}
