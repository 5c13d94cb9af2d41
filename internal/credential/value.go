package credential

import (
	"encoding/json"
	"strconv"
	"strings"
	"unicode"
)

// The value is a secret: nothing in this file may put any part of it, or
// its length, into an error.

// headerFormat is the shape every bad-value message points to.
const headerFormat = "'<scheme> <credentials>', e.g. 'Basic <base64 of email:password>'"

// fromSecret extracts the Authorization value from a secret string: the
// whole string, or, for a JSON object, the string under key.
func fromSecret(s, key, keyVar string) (string, string) {
	t := strings.TrimSpace(s)
	if !strings.HasPrefix(t, "{") {
		return t, ""
	}
	var obj map[string]any
	if err := json.Unmarshal([]byte(t), &obj); err != nil {
		// json's messages quote the offending character: never use them.
		return "", "holds text that starts like a JSON object but is not valid JSON: store either the whole header value or a JSON object"
	}
	v, ok := obj[key]
	if !ok {
		// Its other keys are not listed: a pasted blob may hold a secret
		// anywhere, keys included.
		return "", "is a JSON object without the key " + strconv.Quote(key) +
			": set " + keyVar + " to the key that holds the header value, or add that key"
	}
	str, ok := v.(string)
	if !ok {
		return "", "is a JSON object whose key " + strconv.Quote(key) + " is not a string: store the header value as a string"
	}
	return strings.TrimSpace(str), ""
}

// checkHeader judges a value without ever quoting it: it must be a single
// line "scheme credentials" (a line break would let it inject headers).
func checkHeader(v string) string {
	if v == "" {
		return "is empty: store the whole Authorization value, " + headerFormat
	}
	if strings.ContainsFunc(v, func(r rune) bool { return r != '\t' && unicode.IsControl(r) }) {
		return "holds line breaks or control characters: store the Authorization value on one line, " + headerFormat
	}
	scheme, creds, found := strings.Cut(v, " ")
	if !found || strings.TrimSpace(creds) == "" || !isToken(scheme) {
		return "is not an Authorization header value: it must be " + headerFormat
	}
	return ""
}

// isToken reports whether s is an RFC 9110 token (the syntax of a scheme).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0) {
			return false
		}
	}
	return true
}
