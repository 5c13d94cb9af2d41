package openobserve

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// retryState is the retry policy of one request (one body, all its
// attempts). retryablehttp's Backoff has no context, so the policy lives in
// CheckRetry, which has one: it decides, computes the wait, and checks it
// against the deadline; Backoff only hands the wait over. The pause a server
// asks for is client-wide: it goes to the gate, which holds back every
// request, and this one waits there too.
type retryState struct {
	c        *Client
	attempts int           // attempts made so far
	wait     time.Duration // the wait CheckRetry chose for the next retry
	// gaveUp is set when a retry was possible but its wait would have ended
	// after ctx's deadline.
	gaveUp time.Duration
	// waiting, if set, is called when the request starts to wait out a
	// backoff or a pause: from then on, whoever waits for it (an
	// end-of-invocation flush) would only be waiting for time to pass.
	waiting func()
}

// checkRetry is the retryablehttp.CheckRetry of one request.
func (st *retryState) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	st.attempts++
	if !retryable(resp, err) {
		// Final, even if ctx has just ended: a 200 that raced the deadline
		// is still a delivery, not a failure to resend.
		return false, nil
	}
	if ctx.Err() != nil {
		// The caller's context ended: its error, not the attempt's, says why.
		return false, context.Cause(ctx)
	}
	if errors.Is(err, errPausePastDeadline) {
		st.gaveUp = time.Until(st.c.gate.pausedUntilTime())
		return false, nil
	}
	if st.attempts > st.c.o.MaxRetries {
		return false, nil
	}
	now := time.Now()
	dl, hasDeadline := ctx.Deadline()
	if d, ok := st.c.retryAfter(resp, now); ok {
		if hasDeadline && now.Add(d).After(dl) {
			st.gaveUp = d
			return false, nil
		}
		st.c.gate.pause(now.Add(d))
		st.wait = 0 // the gate holds the next attempt back
		legWaiting(ctx)
		st.notifyWaiting()
		return true, nil
	}
	wait := st.c.retryWait(st.c.gate.failures())
	if hasDeadline && now.Add(wait).After(dl) {
		// Sleeping into the deadline would only burn the time the caller
		// needs for what comes after (the shutdown, the next invocation).
		st.gaveUp = wait
		return false, nil
	}
	legWaiting(ctx) // off the wire: at SHUTDOWN it yields instead of retrying
	if wait > 0 || st.c.gate.failing() {
		st.notifyWaiting()
	}
	st.wait = wait
	return true, nil
}

func (st *retryState) notifyWaiting() {
	if st.waiting != nil {
		st.waiting()
	}
}

// backoff hands retryablehttp the wait checkRetry chose.
func (st *retryState) backoff(_, _ time.Duration, _ int, _ *http.Response) time.Duration {
	return st.wait
}

// retryable reports whether an attempt's outcome is worth another try:
// network errors and timeouts (but not a certificate that will still be
// untrusted next time), 429 and the 5xx statuses that mean "busy or
// restarting". 400/401/403/404 will not change by themselves, and 413/415
// are handled by changing the request.
func retryable(resp *http.Response, err error) bool {
	if err != nil {
		return !permanentTransportError(err)
	}
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// permanentTransportError reports errors that no retry can fix: TLS
// certificate problems and a malformed URL or header.
func permanentTransportError(err error) bool {
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalidErr x509.CertificateInvalidError
	if errors.As(err, &certErr) || errors.As(err, &unknownCA) || errors.As(err, &hostErr) || errors.As(err, &invalidErr) {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "unsupported protocol scheme") || strings.Contains(s, "invalid header") ||
		strings.Contains(s, "no Host in request URL")
}

// retryWait is the wait before the next attempt when failed attempts in
// a row, client-wide, number streak. The first failure is retried at once:
// a 5xx or a reset from one node behind a load balancer rarely repeats on
// the next attempt, and this keeps an end-of-invocation flush to two round
// trips. After that the wait is "full jitter" (a uniform draw up to a cap
// that doubles from RetryWaitMin), so that many sandboxes hit by the same
// outage do not retry in step, and it never exceeds RetryWaitMax, which
// keeps the probing of a failed backend frequent enough to resume within
// about RetryWaitMax of its recovery.
func (c *Client) retryWait(streak int) time.Duration {
	if streak <= 1 {
		return 0
	}
	lo, hi := c.o.RetryWaitMin, c.o.RetryWaitMax
	d := lo
	for range streak - 2 {
		if d >= hi/2 {
			d = hi
			break
		}
		d *= 2
	}
	d = min(d, hi)
	return rand.N(d + 1)
}

// retryAfter is the pause a 429 or 503 asks for with Retry-After, capped at
// RetryWaitMax: the server telling us when it can take data again.
func (c *Client) retryAfter(resp *http.Response, now time.Time) (time.Duration, bool) {
	if resp == nil || (resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable) {
		return 0, false
	}
	d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), now)
	if !ok {
		return 0, false
	}
	return min(d, c.o.RetryWaitMax), true
}

// parseRetryAfter reads a Retry-After value, either delay-seconds or an
// HTTP date (RFC 9110 §10.2.3). A date in the past means "now".
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		if secs > int64(24*time.Hour/time.Second) {
			secs = int64(24 * time.Hour / time.Second) // avoid overflow; capped by the caller anyway
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// leveled adapts a logrus entry to retryablehttp.LeveledLogger. Its
// retries and errors go out at DEBUG: a retry is routine, and the outcome
// that matters is reported once by the caller from Send's result. Its
// per-request "performing request" line goes out at TRACE only: the
// extension's own log lines come back to it as telemetry and are sent with
// the next batch, so at DEBUG one line per request would feed itself for as
// long as the function lives. retryablehttp logs only the method, the URL
// and error text, never headers; redact removes any echo of the
// Authorization value anyway.
type leveled struct {
	e      *logrus.Entry
	redact func(string) string
}

// Error implements retryablehttp.LeveledLogger.
func (l leveled) Error(msg string, kv ...any) { l.log(logrus.DebugLevel, msg, kv) }

// Info implements retryablehttp.LeveledLogger.
func (l leveled) Info(msg string, kv ...any) { l.log(logrus.DebugLevel, msg, kv) }

// Debug implements retryablehttp.LeveledLogger.
func (l leveled) Debug(msg string, kv ...any) {
	level := logrus.DebugLevel
	if msg == "performing request" { // retryablehttp's line before every attempt
		level = logrus.TraceLevel
	}
	l.log(level, msg, kv)
}

// Warn implements retryablehttp.LeveledLogger.
func (l leveled) Warn(msg string, kv ...any) { l.log(logrus.DebugLevel, msg, kv) }

func (l leveled) log(level logrus.Level, msg string, kv []any) {
	if !l.e.Logger.IsLevelEnabled(level) {
		return
	}
	f := make(logrus.Fields, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		f[fmt.Sprint(kv[i])] = l.redact(fmt.Sprint(kv[i+1]))
	}
	l.e.WithFields(f).Log(level, l.redact(msg))
}
