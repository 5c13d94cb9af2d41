package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// The authorization value is a secret: nothing in this file may put any part
// of it other than a recognised scheme name into a string, not even its
// length.

// knownSchemes are HTTP authentication schemes (the IANA registry plus a few
// common custom ones). AuthScheme names only these: a first word that is not
// a known scheme might be the credentials themselves.
var knownSchemes = []string{
	"Basic", "Bearer", "Concealed", "Digest", "DPoP", "GNAP", "HOBA", "Mutual",
	"Negotiate", "OAuth", "PrivateToken", "SCRAM-SHA-1", "SCRAM-SHA-256", "vapid",
	"Token", "ApiKey", "AWS4-HMAC-SHA256",
}

// customScheme is what AuthScheme reports for a well-formed value whose
// scheme is not in knownSchemes.
const customScheme = "custom"

// authFormat is the shape every authorization problem points to.
const authFormat = "must be '<scheme> <credentials>', e.g. 'Basic <base64 of email:password>'"

// splitAuth splits "scheme credentials" at the first space. ok is false
// unless the scheme is an HTTP token and credentials follow it.
func splitAuth(v string) (scheme, creds string, ok bool) {
	scheme, creds, found := strings.Cut(v, " ")
	creds = strings.TrimSpace(creds)
	if !found || creds == "" || !isToken(scheme) {
		return "", "", false
	}
	return scheme, creds, true
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

// knownScheme returns the scheme as written if it is a known one, else "".
func knownScheme(scheme string) string {
	if slices.ContainsFunc(knownSchemes, func(k string) bool { return strings.EqualFold(k, scheme) }) {
		return scheme
	}
	return ""
}

// checkAuth validates the authorization value without ever quoting it.
func checkAuth(v string) error {
	if v == "" {
		return errors.New(envAuthorization + " is required (or the secret holding it: " + envSecretARN + " or " + envSSMParameter + "), and " + authFormat)
	}
	// A line break would let the value inject headers into every request.
	if strings.ContainsAny(v, "\r\n") {
		return errors.New(envAuthorization + " must not contain line breaks (CR or LF)")
	}
	if strings.ContainsFunc(v, func(r rune) bool { return r != '\t' && unicode.IsControl(r) }) {
		return errors.New(envAuthorization + " must not contain control characters")
	}
	if _, _, ok := splitAuth(v); !ok {
		return errors.New(envAuthorization + " " + authFormat)
	}
	return nil
}

// AuthScheme returns the scheme of the authorization value ("Basic",
// "Bearer", ...), "custom" for a well-formed value with an unrecognised
// scheme, and "" if it is unset or malformed. It never returns any part of
// the credentials.
func (c Config) AuthScheme() string {
	scheme, _, ok := splitAuth(c.Authorization)
	if !ok {
		return ""
	}
	if k := knownScheme(scheme); k != "" {
		return k
	}
	return customScheme
}

// redactAuth shows the authorization as its scheme only, e.g. "Basic
// <redacted>": a first word that is not a known scheme may be the secret.
func redactAuth(v string) string {
	if v == "" {
		return "<unset>"
	}
	if scheme, _, ok := splitAuth(v); ok && knownScheme(scheme) != "" {
		return scheme + " <redacted>"
	}
	return "<redacted>"
}

// Redacted returns the settings as "KEY=value" lines in a stable order (that
// of Variables), for logs and --health-check. A value Load refused or
// repaired is shown as it was set, followed by what is used instead, e.g.
// "O2_BATCH_SIZE=100000 (invalid; using 10000)". The authorization is shown
// only as its scheme, and credentials in the endpoint are masked. Values
// holding control characters are quoted so each setting stays on one line.
func (c Config) Redacted() []string {
	lines := make([]string, len(settings))
	for i, s := range settings {
		v := oneLineValue(s.show(c))
		if set, ok := c.asSet[s.name]; ok {
			raw := set.raw
			switch s.name {
			case envAuthorization:
				raw = redactAuth(raw)
			case envEndpoint:
				raw = hideUserinfo(raw)
			}
			raw = oneLineValue(raw)
			switch {
			case set.refused && s.fatal:
				v = raw + " (invalid: forwarding nothing)"
			case set.refused:
				v = raw + " (invalid; using the default " + showValue(v) + ")"
			default:
				v = raw + " (invalid; using " + showValue(v) + ")"
			}
		}
		lines[i] = s.name + "=" + v
	}
	return lines
}

// oneLineValue quotes a value holding control characters, so that each
// setting stays on one line.
func oneLineValue(v string) string {
	if strings.ContainsFunc(v, unicode.IsControl) {
		return strconv.Quote(v)
	}
	return v
}

// Variable describes one environment variable, for --help and the README.
type Variable struct {
	Name        string // e.g. "O2_ENDPOINT"
	Default     string // as it would be written in the environment; "" if none
	Description string // what it does and the values it accepts
}

// Variables lists every variable with its default and meaning, in the
// stable order of the Config fields.
func Variables() []Variable {
	d := Default()
	vars := make([]Variable, len(settings))
	for i, s := range settings {
		def := ""
		if s.name != envAuthorization { // no default, and never a value to show
			def = s.show(d)
		}
		vars[i] = Variable{Name: s.name, Default: def, Description: s.desc}
	}
	return vars
}

// typicalFlushBudget is the most an end-of-invocation flush usually needs;
// a larger budget is allowed but is billed on every such invocation.
const typicalFlushBudget = 5 * time.Second

// warnings returns notes about settings that are valid but probably not
// what was meant, in a stable order. They are not errors: the extension
// runs with them. Load returns them after its own.
func (c Config) warnings() []string {
	var w []string
	if c.Insecure() {
		w = append(w, envEndpoint+" uses plain http://: credentials travel unencrypted")
	}
	if p := endpointPath(c.Endpoint); strings.Contains(p+"/", "/api/") {
		w = append(w, envEndpoint+" should be the server's base URL: the extension itself appends /api/{org}/{stream}/_json")
	}
	w = append(w, authWarnings(c.Authorization)...)
	if c.AuthSecretKey != defaultSecretKey && c.AuthSecretARN == "" {
		w = append(w, envSecretKey+" is set but "+envSecretARN+" is not: it is ignored")
	}
	w = append(w, streamWarning(envStream, c.Stream)...)
	w = append(w, streamWarning(envTenantStream, c.TenantStream)...)
	if c.MaxBufferBytes < c.MaxBatchBytes {
		w = append(w, fmt.Sprintf("%s (%s MiB) is smaller than %s (%d bytes): the whole buffer is less than one request",
			envMaxBufferSize, formatMiB(c.MaxBufferBytes), envMaxBatchBytes, c.MaxBatchBytes))
	}
	for _, t := range c.ExcludeTypes {
		prefix, isPrefix := strings.CutSuffix(t, "*")
		if !slices.ContainsFunc(knownTypes, func(k string) bool {
			return k == t || isPrefix && strings.HasPrefix(k, prefix)
		}) {
			w = append(w, fmt.Sprintf("%s: %s matches no event type Lambda sends (types are case-sensitive, e.g. platform.runtimeDone)", envExcludeTypes, quote(t)))
		}
	}
	if c.ListenerPort == 8080 {
		w = append(w, envListenerPort+" 8080 is used by many other extensions; 0 lets the OS choose a free port")
	}
	if c.FlushBudget > typicalFlushBudget {
		w = append(w, fmt.Sprintf("%s: %s is larger than typical (at most %s): it may be added to the billed duration of every invocation flushed at its end",
			envFlushBudget, formatMs(c.FlushBudget), formatMs(typicalFlushBudget)))
	}
	return w
}

// authWarnings notes authorization values OpenObserve will likely refuse.
// Like checkAuth, it never includes any part of the credentials.
func authWarnings(v string) []string {
	scheme, creds, ok := splitAuth(v)
	if !ok {
		return nil // an error already, or unset
	}
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		return []string{envAuthorization + " uses the Bearer scheme, which only enterprise and cloud builds of OpenObserve accept (open-source builds answer 401)"}
	case !strings.EqualFold(scheme, "Basic"):
		return []string{envAuthorization + " uses a scheme other than Basic or Bearer, which OpenObserve refuses unless a proxy in front of it accepts it"}
	}
	var w []string
	if scheme != "Basic" {
		w = append(w, envAuthorization+": OpenObserve expects the scheme spelled exactly 'Basic'")
	}
	decoded, err := base64.StdEncoding.DecodeString(creds)
	switch {
	case err != nil:
		w = append(w, envAuthorization+": the Basic credentials are not valid base64 (OpenObserve expects standard base64, with padding, of 'email:password')")
	case !utf8.Valid(decoded) || !strings.Contains(string(decoded), ":"):
		w = append(w, envAuthorization+": the Basic credentials do not decode to 'email:password'")
	}
	return w
}

// streamWarning notes a stream name OpenObserve will store differently: it
// turns each run of characters outside [A-Za-z0-9_:] into '_' and lower-cases
// the result.
func streamWarning(name, stream string) []string {
	if stream == "" {
		return nil
	}
	if n := normalizeStream(stream); n != stream {
		return []string{fmt.Sprintf("%s: OpenObserve stores stream %s as %s", name, quote(stream), quote(n))}
	}
	return nil
}

func normalizeStream(s string) string {
	var b strings.Builder
	inRun := false
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == ':' {
			b.WriteRune(unicode.ToLower(r))
			inRun = false
			continue
		}
		if !inRun {
			b.WriteByte('_')
		}
		inRun = true
	}
	return b.String()
}

// endpointPath returns the path part of an endpoint, "" if it has none.
func endpointPath(endpoint string) string {
	i := strings.Index(endpoint, "://")
	if i < 0 {
		return ""
	}
	rest := endpoint[i+3:]
	if j := strings.IndexByte(rest, '/'); j >= 0 {
		return strings.TrimRight(rest[j:], "/")
	}
	return ""
}
