package o2test

import (
	"encoding/base64"
	"net/http"
	"strings"
	"unicode/utf8"
)

// BasicAuth returns the Authorization value "Basic " + base64(email:secret).
func BasicAuth(email, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(email+":"+secret))
}

// unauthorized is the text every credential failure gets.
const unauthorized = "Unauthorized Access"

// authenticate checks the Authorization header the way OpenObserve's OSS
// build does (openobserve-api.md §2). It returns ok, or the reply to send.
//
// Only the first Authorization header counts. The auth_tokens cookie
// fallback is not modelled: a request without the header is refused.
func (s *Server) authenticate(h http.Header) (reply, bool) {
	vals := h.Values("Authorization")
	if len(vals) == 0 {
		// The axum build answers a missing header with JSON, unlike every
		// other failure.
		return jsonReply(http.StatusUnauthorized, errorBody{Code: 401, Message: unauthorized}), false
	}
	v := vals[0]
	if strings.HasPrefix(v, "Bearer ") {
		// Bearer tokens exist only in enterprise and cloud builds.
		return deny("Not Supported"), false
	}
	user, secret, ok := parseBasic(v)
	if !ok || secret == "" {
		return deny(unauthorized), false
	}
	if want, known := s.credentials()[user]; !known || want != secret {
		return deny(unauthorized), false
	}
	return reply{}, true
}

// deny is a 401 in plain text with the WWW-Authenticate header of the axum
// build.
func deny(msg string) reply {
	rep := textReply(http.StatusUnauthorized, msg)
	rep.header.Set("WWW-Authenticate", `Bearer realm="openobserve"`)
	return rep
}

// parseBasic decodes "Basic <base64(user:secret)>": the prefix is exact
// (capital B, one space), the rest is trimmed and decoded as standard base64
// with padding, the text must be UTF-8, it splits at the first colon (so the
// secret may contain colons) and the secret is trimmed.
func parseBasic(v string) (user, secret string, ok bool) {
	rest, ok := strings.CutPrefix(v, "Basic ")
	if !ok {
		return "", "", false
	}
	rest = strings.TrimSpace(rest)
	// Go's decoder skips CR and LF inside the input; Rust's base64 crate
	// refuses them, so refuse them too.
	if strings.ContainsAny(rest, "\r\n") {
		return "", "", false
	}
	// Strict: like Rust's STANDARD engine, non-zero padding bits are an
	// error.
	raw, err := base64.StdEncoding.Strict().DecodeString(rest)
	if err != nil || !utf8.Valid(raw) {
		return "", "", false
	}
	user, secret, ok = strings.Cut(string(raw), ":")
	if !ok {
		return "", "", false
	}
	return user, strings.TrimSpace(secret), true
}
