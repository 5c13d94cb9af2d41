package openobserve

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"
)

// maxErrorBody bounds how much of an error reply is read and kept: enough
// for OpenObserve's {"code","message"} bodies, not enough for a proxy's HTML
// page to flood the logs.
const maxErrorBody = 1024

// ErrDeadline reports that a retry was abandoned because its backoff wait
// would have ended after the context's deadline. It wraps the last attempt's
// error.
var ErrDeadline = errors.New("openobserve: next retry would pass the deadline")

// deadlineError is a retry given up because its wait would have ended after
// the deadline. It matches both ErrDeadline and the last attempt's error.
type deadlineError struct {
	wait time.Duration
	err  error
}

func (e *deadlineError) Error() string {
	return fmt.Sprintf("gave up: the next retry (in %s) would pass the deadline: %v", e.wait.Round(time.Millisecond), e.err)
}

func (e *deadlineError) Unwrap() []error { return []error{ErrDeadline, e.err} }

// ErrUnexpectedReply reports a health-check reply that is not OpenObserve's
// (for example a proxy or another service answering at the endpoint).
var ErrUnexpectedReply = errors.New("openobserve: unexpected reply")

// StatusError is a non-2xx reply from OpenObserve.
type StatusError struct {
	// Code is the HTTP status code.
	Code int
	// Message is OpenObserve's message: the "message" of a JSON error body,
	// else at most 1 KiB of the body as text. It never holds request
	// headers, and any echo of the Authorization value is redacted.
	Message string

	// healthz marks a reply to GET /healthz, where 404 means a wrong
	// endpoint rather than an unknown organization.
	healthz bool
}

// Error implements error.
func (e *StatusError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("HTTP %d %s", e.Code, http.StatusText(e.Code))
	}
	return fmt.Sprintf("HTTP %d: %s", e.Code, e.Message)
}

// transient400 are the messages of OpenObserve's 400s that describe its own
// state, not the data: the data is good and is kept, and sent again slowly
// (openobserve-api.md §8; src/core/src/ingestion/mod.rs lines 329-372 at
// fbab9b80).
var transient400 = []string{"not an ingester", "quota exceeded", "is being deleted"}

// Transient reports a 400 about OpenObserve's state (a node that is not an
// ingester, an organization over its quota, a stream being deleted).
func (e *StatusError) Transient() bool {
	if e.Code != http.StatusBadRequest {
		return false
	}
	msg := strings.ToLower(e.Message)
	for _, t := range transient400 {
		if strings.Contains(msg, t) {
			return true
		}
	}
	return false
}

// Permanent reports a refusal that sending the same records again cannot
// change: a 400 that is not Transient.
func (e *StatusError) Permanent() bool {
	return e.Code == http.StatusBadRequest && !e.Transient()
}

// unparsable reports a 400 for a body OpenObserve's JSON parser refused
// ("SerdeJsonError# ...", openobserve-api.md §6.2): with our encoder that
// means one record nested past serde_json's 128 levels, so splitting the
// batch isolates it.
func (e *StatusError) unparsable() bool {
	return e.Code == http.StatusBadRequest && strings.HasPrefix(e.Message, "SerdeJsonError")
}

// IsPermanent reports whether err means the data itself was refused (HTTP
// 400, but not a Transient one): retrying or keeping it will not help, so
// the caller drops and counts it.
func IsPermanent(err error) bool {
	se, ok := errors.AsType[*StatusError](err)
	return ok && se.Permanent()
}

// IsTransient reports a 400 about OpenObserve's state: keep the data and
// send it again later, slowly.
func IsTransient(err error) bool {
	se, ok := errors.AsType[*StatusError](err)
	return ok && se.Transient()
}

// IsAuth reports whether err means the credentials or the organization are
// wrong (HTTP 401, 403 or 404): the data is fine and should be kept, but
// trying again before the configuration changes is pointless, so the caller
// stops for this flush window.
func IsAuth(err error) bool {
	se, ok := errors.AsType[*StatusError](err)
	if !ok {
		return false
	}
	switch se.Code {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound:
		return true
	}
	return false
}

// Explain turns an error from the client's calls into words a user can act
// on, naming the setting to check. It never includes the Authorization
// value: errors built by this package do not carry it.
func Explain(err error) string {
	if err == nil {
		return "ok"
	}
	if se, ok := errors.AsType[*StatusError](err); ok {
		return explainStatus(se)
	}
	if errors.Is(err, ErrRejected) {
		return "record not stored: " + err.Error() + ": check the function's clock (records older than 5 h are refused) and the stream's schema"
	}
	if errors.Is(err, ErrOrgUnknown) {
		return "unknown organization: check O2_ORGANIZATION_ID (OpenObserve has no such organization; nothing was created)"
	}
	if errors.Is(err, ErrOrgCheckUnavailable) {
		return "could not tell whether the organization exists without writing (this server has no GET /api/{org}/_license)"
	}
	if errors.Is(err, ErrUnexpectedReply) {
		return "not OpenObserve: the endpoint answered, but not as OpenObserve does: check O2_ENDPOINT (" + err.Error() + ")"
	}
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalidErr x509.CertificateInvalidError
	if errors.As(err, &certErr) || errors.As(err, &unknownCA) || errors.As(err, &hostErr) || errors.As(err, &invalidErr) {
		return "TLS certificate not trusted: " + rootCause(err) + ": check O2_ENDPOINT's host name, or that its certificate chain is publicly trusted"
	}
	if dnsErr, ok := errors.AsType[*net.DNSError](err); ok {
		return "unreachable: cannot resolve host " + dnsErr.Name + ": check O2_ENDPOINT (and DNS/VPC access from the function)"
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return "unreachable: connection refused (" + rootCause(err) + "): check O2_ENDPOINT's host and port, and that OpenObserve is running"
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || isTimeout(err) {
		return "timed out: no reply in time: check O2_ENDPOINT and that the function can reach it (VPC, NAT, security groups), or raise O2_REQUEST_TIMEOUT_MS"
	}
	if errors.Is(err, context.Canceled) {
		return "cancelled before OpenObserve replied"
	}
	if strings.Contains(err.Error(), "unsupported protocol scheme") {
		return "bad endpoint: O2_ENDPOINT must start with https:// (or http://)"
	}
	if opErr, ok := errors.AsType[*net.OpError](err); ok {
		return "unreachable: " + opErr.Error() + ": check O2_ENDPOINT and network access"
	}
	return "failed: " + err.Error()
}

// explainStatus explains a non-2xx reply.
func explainStatus(se *StatusError) string {
	detail := ""
	if se.Message != "" {
		detail = " (OpenObserve said: " + se.Message + ")"
	}
	switch c := se.Code; {
	case c == http.StatusUnauthorized:
		return "wrong credentials or organization: check O2_AUTHORIZATION_HEADER (Basic base64(email:token)) and O2_ORGANIZATION_ID (OpenObserve also answers 401 when the organization does not exist, for any user but root)" + detail
	case c == http.StatusForbidden:
		return "forbidden: the credentials are valid but may not ingest into this organization (or it is deleted): check O2_ORGANIZATION_ID and the user's role" + detail
	case c == http.StatusNotFound && se.healthz:
		return "no /healthz at this endpoint: check O2_ENDPOINT (it must be the OpenObserve base URL, without /api)" + detail
	case c == http.StatusNotFound:
		return "unknown organization: check O2_ORGANIZATION_ID" + detail
	case c == http.StatusBadRequest && se.Transient():
		return "OpenObserve cannot take data right now (an organization over its quota, a node that is not an ingester, or a stream being deleted); logs are kept and retried slowly" + detail
	case c == http.StatusBadRequest && se.unparsable():
		return "a record OpenObserve's JSON parser refused (nested deeper than its 128 levels?); the batch is split to isolate it" + detail
	case c == http.StatusBadRequest && strings.Contains(se.Message, "Stream name is empty"):
		return "request refused: O2_STREAM (or O2_TENANT_STREAM) normalises to an empty stream name: use letters, digits or '_'" + detail
	case c == http.StatusBadRequest:
		return "request refused as invalid" + detail
	case c == http.StatusRequestEntityTooLarge:
		return "batch too large for the server: lower the batch size" + detail
	case c == http.StatusUnsupportedMediaType:
		return "compressed bodies are refused by the server or a proxy in front of it" + detail
	case c == http.StatusTooManyRequests:
		return "rate limited: OpenObserve asks to slow down; logs are kept and retried" + detail
	case c >= 300 && c < 400:
		return "redirected: set O2_ENDPOINT to the final URL" + detail
	case c == http.StatusNotImplemented:
		// Not transient: the server does not do what was asked at all.
		return "not supported (HTTP 501): the server at O2_ENDPOINT does not implement this request, so it is probably not OpenObserve (or a proxy in front of it refuses the method): check O2_ENDPOINT" + detail
	case c >= 500:
		return fmt.Sprintf("server error (HTTP %d): OpenObserve is reachable but failing; try again later", c) + detail
	}
	return fmt.Sprintf("unexpected reply HTTP %d", se.Code) + detail
}

// isTimeout reports a net.Error timeout anywhere in err's chain.
func isTimeout(err error) bool {
	ne, ok := errors.AsType[net.Error](err)
	return ok && ne.Timeout()
}

// rootCause is the text of the innermost error of err's first chain, which
// for transport errors drops the "Post \"url\":" prefix.
func rootCause(err error) string {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err.Error()
		}
		if _, ok := u.(*net.OpError); ok {
			return u.Error()
		}
		err = u
	}
}

// ErrRejected reports that OpenObserve answered 200 but did not store the
// health-check record; the wrapped text is OpenObserve's reason.
var ErrRejected = errors.New("openobserve: record not stored")
