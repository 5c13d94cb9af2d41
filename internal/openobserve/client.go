// Package openobserve turns telemetry events into OpenObserve records and
// delivers them to the _json ingestion endpoint: batching, gzip, retries,
// reading OpenObserve's reply, and the health-check calls.
package openobserve

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/sirupsen/logrus"

	"github.com/o2-extension/o2-extension/internal/telemetry"
)

// Defaults applied by NewClient to zero Options fields.
const (
	DefaultMaxBatchBytes  = 4 << 20
	DefaultMaxRecordBytes = 256 << 10
	DefaultAttemptTimeout = 30 * time.Second
	DefaultMaxRetries     = 3
	DefaultRetryWaitMin   = 1 * time.Second
	DefaultRetryWaitMax   = 30 * time.Second
	DefaultGzipMinBytes   = 1024
)

// userAgent identifies the forwarder in OpenObserve's access logs.
const userAgent = "o2-extension"

// maxReplyBody bounds how much of a 2xx reply is read: OpenObserve's reply
// is a few hundred bytes; anything longer is not its reply.
const maxReplyBody = 64 << 10

// Options configures a Client. Zero values mean the documented defaults.
type Options struct {
	// IngestURL is the full ingestion URL,
	// {endpoint}/api/{org}/{stream}/_json, already escaped.
	IngestURL string
	// HealthURL is {endpoint}/healthz.
	HealthURL string
	// Authorization is the Authorization header value, sent as is. It is a
	// secret: it never appears in errors or logs.
	Authorization string
	// Credential, if set, supplies the Authorization value instead (a
	// secret fetched at run time): it is asked before each request, so a
	// rotated value is used at once; a 401 is reported to it with Refused;
	// and its current value is redacted from server text like
	// Authorization. Until it has a value, requests wait for it within
	// their context.
	Credential Credential
	// MaxBatchBytes bounds the uncompressed body of one request (default
	// 4 MiB). A single record larger than this still goes, alone.
	MaxBatchBytes int
	// MaxRecordBytes bounds the encoded "record" value of one record
	// (default 256 KiB, at least 64): longer text is split into parts,
	// longer objects are truncated (see AppendRecords).
	MaxRecordBytes int
	// AttemptTimeout bounds one HTTP attempt, reply included (default 30 s).
	AttemptTimeout time.Duration
	// MaxRetries is the number of retries after the first attempt (default
	// 3; negative means none).
	MaxRetries int
	// RetryWaitMin is the first backoff wait (default 1 s).
	RetryWaitMin time.Duration
	// RetryWaitMax caps every backoff wait, Retry-After included (default
	// 30 s).
	RetryWaitMax time.Duration
	// Fields are static fields added to every record after the event's own
	// (function_name, function_version, region, memory_size_mb, user
	// fields). Keys that OpenObserve would confuse with the record's own
	// keys are ignored.
	Fields map[string]any
	// GzipMinBytes is the body size from which bodies are gzipped (default
	// 1024; negative disables compression).
	GzipMinBytes int
	// Transport carries the requests. Nil means one pooled transport with
	// keep-alive, HTTP/1.1 and HTTP/2, and TLS always verified; tests pass a
	// RoundTripper func.
	Transport http.RoundTripper
	// Logger receives retryablehttp's messages, all at debug level. Nil
	// means no logging.
	Logger *logrus.Entry
}

// setDefaults fills in zero fields.
func (o *Options) setDefaults() {
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if o.MaxRecordBytes <= 0 {
		o.MaxRecordBytes = DefaultMaxRecordBytes
	}
	o.MaxRecordBytes = max(o.MaxRecordBytes, minRecordBytes)
	if o.AttemptTimeout <= 0 {
		o.AttemptTimeout = DefaultAttemptTimeout
	}
	switch {
	case o.MaxRetries == 0:
		o.MaxRetries = DefaultMaxRetries
	case o.MaxRetries < 0:
		o.MaxRetries = 0
	}
	if o.RetryWaitMin <= 0 {
		o.RetryWaitMin = DefaultRetryWaitMin
	}
	if o.RetryWaitMax <= 0 {
		o.RetryWaitMax = DefaultRetryWaitMax
	}
	o.RetryWaitMax = max(o.RetryWaitMax, o.RetryWaitMin)
	if o.GzipMinBytes == 0 {
		o.GzipMinBytes = DefaultGzipMinBytes
	}
}

// Client delivers records to OpenObserve. Make one per process and share
// it: it holds the connection pool. It is safe for concurrent use.
type Client struct {
	o   Options
	enc *encoder
	hc  *http.Client
	// logger is nil (an untyped nil interface, as retryablehttp requires)
	// when Options.Logger is nil.
	logger any
	// noGzip is set after a 415 to a gzipped body: the server, or a proxy
	// in front of it, does not take gzip, and will not start to.
	noGzip atomic.Bool
	// secrets are the strings redacted from server-supplied text and logs.
	secrets []string
	// credValue is the Credential's value last used, also redacted.
	credValue atomic.Pointer[string]
}

// NewClient returns a Client for o.
func NewClient(o Options) *Client {
	o.setDefaults()
	c := &Client{o: o, enc: newEncoder(o.Fields, o.MaxRecordBytes)}
	if a := strings.TrimSpace(o.Authorization); a != "" {
		c.secrets = append(c.secrets, a)
		// Also the credential alone, without its scheme, in case a server
		// or proxy echoes the decoded header in some other form.
		if _, cred, ok := strings.Cut(a, " "); ok && len(strings.TrimSpace(cred)) >= 4 {
			c.secrets = append(c.secrets, strings.TrimSpace(cred))
		}
	}
	tr := o.Transport
	if tr == nil {
		tr = newTransport()
	}
	c.hc = &http.Client{
		// Each attempt is bounded by running time, not wall time, so a
		// freeze mid-request never causes a resend (see thawedTimeout).
		Transport: thawedTimeout{next: tr, d: o.AttemptTimeout},
		// A redirect would turn the POST into a GET (301/302) or send the
		// data to a host O2_ENDPOINT does not name: report it instead.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	if o.Logger != nil {
		c.logger = retryablehttp.LeveledLogger(leveled{e: o.Logger, redact: c.redact})
	}
	return c
}

// newTransport is the one pooled transport of a process. A sandbox sends to
// one host, so a few idle connections are enough; keep-alive saves the TLS
// handshake on every flush. TLS verification cannot be turned off.
func newTransport() *http.Transport {
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          4,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: 1 * time.Second,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
	}
}

// secretForms are the strings to redact for the Credential's value, as
// NewClient makes them for Options.Authorization.
func secretForms(a string) []string {
	var out []string
	if a = strings.TrimSpace(a); a != "" {
		out = append(out, a)
		if _, cred, ok := strings.Cut(a, " "); ok && len(strings.TrimSpace(cred)) >= 4 {
			out = append(out, strings.TrimSpace(cred))
		}
	}
	return out
}

// redact removes the Authorization value from s: Options.Authorization's,
// and the Credential's last value.
func (c *Client) redact(s string) string {
	secrets := c.secrets
	if p := c.credValue.Load(); p != nil {
		secrets = append(secretForms(*p), secrets...)
	}
	for _, sec := range secrets {
		s = strings.ReplaceAll(s, sec, "[redacted]")
	}
	return s
}

// authorization returns the Authorization value of a request: the
// Credential's (waiting for it within ctx), else Options.Authorization.
func (c *Client) authorization(ctx context.Context) (string, error) {
	if c.o.Credential == nil {
		return c.o.Authorization, nil
	}
	v, err := c.o.Credential.Authorization(ctx)
	if err != nil {
		return "", fmt.Errorf("no credential: %w", err)
	}
	c.credValue.Store(&v)
	return v, nil
}

// refused reports a 401 to the Credential, which may fetch a rotated value.
func (c *Client) refused(resp *http.Response, auth string) {
	if c.o.Credential != nil && resp != nil && resp.StatusCode == http.StatusUnauthorized {
		c.o.Credential.Refused(auth)
	}
}

// Result describes one Send.
type Result struct {
	// Sent is the number of records posted and answered with 2xx (after
	// splitting oversize text into parts).
	Sent int
	// Successful is OpenObserve's count of records written.
	Successful int
	// Failed is OpenObserve's count of records it rejected (outside the
	// time window, type conflict). They are not retried: they would fail
	// again.
	Failed int
	// Missing is the number of records silently dropped: Sent minus
	// Successful minus Failed, when positive (openobserve-api.md §5.6).
	Missing int
	// Dropped is the number of records dropped because the server refused
	// them as too large (413) even alone.
	Dropped int
	// Error is OpenObserve's last per-record error text, or a note that a
	// 2xx reply could not be read.
	Error string
	// Requests is the number of HTTP requests made, retries and 413/415
	// resends included.
	Requests int
	// Bytes is the number of body bytes put on the wire.
	Bytes int
}

// Send posts evs as one request (more only if their records exceed
// MaxBatchBytes, or after a 413 split), gzipped from GzipMinBytes, with
// retries. Records rejected by OpenObserve itself (Result.Failed, Missing)
// count as delivered: retrying would not change them.
//
// On failure it returns the events not delivered, so that the caller can
// put them back in its buffer: a subslice of evs, from the first event with
// a record in the request that failed. Sending stops at that request, since
// the next would most likely fail the same way. A request ends between
// events where it can; an event whose parts straddle requests anyway (larger
// than MaxBatchBytes, or split on 413) is returned whole, so some of its
// parts may arrive twice. The
// error says why; see IsPermanent and IsAuth for what to do with the events.
// A record dropped on 413 is not returned, but counted in Result.Dropped and
// reported in the error.
func (c *Client) Send(ctx context.Context, evs []telemetry.Event) (Result, []telemetry.Event, error) {
	var res Result
	if len(evs) == 0 {
		return res, nil, nil
	}
	owners := make([]int, 0, len(evs))
	buf, ends := c.enc.encodeAll(evs, &owners)
	recs := make([][]byte, len(ends))
	start := 0
	for i, end := range ends {
		recs[i] = buf[start:end:end]
		start = end
	}

	var dropErr error
	for i := 0; i < len(recs); {
		j := batchEnd(recs, owners, i, c.o.MaxBatchBytes)
		done, err := c.postSplitting(ctx, recs[i:j], &res, &dropErr)
		if err != nil {
			rest := evs[owners[i+done]:]
			if dropErr != nil {
				err = fmt.Errorf("%w (and %w)", err, dropErr)
			}
			return res, rest, fmt.Errorf("openobserve: send %d records: %w", len(recs)-i-done, err)
		}
		i = j
	}
	if dropErr != nil {
		return res, nil, fmt.Errorf("openobserve: %w", dropErr)
	}
	return res, nil, nil
}

// batchEnd returns the end of the batch that starts at recs[i]: as many
// records as fit in maxBytes once framed as a JSON array, and at least one.
// owners[k] is the event recs[k] was encoded from (an event split into parts
// owns several records). A request does not end in the middle of an event
// that began in it after i and that would fit in a request of its own: the
// event starts the next request instead, so that a failed request returns
// whole events and no part of one is sent twice.
func batchEnd(recs [][]byte, owners []int, i, maxBytes int) int {
	size := 2 + len(recs[i]) // "[" record "]"
	j := i + 1
	for ; j < len(recs); j++ {
		if size+1+len(recs[j]) > maxBytes {
			break
		}
		size += 1 + len(recs[j])
	}
	if j == len(recs) || owners[j] != owners[j-1] {
		return j
	}
	s := j - 1 // the split event's first record
	for s > i && owners[s-1] == owners[j] {
		s--
	}
	if s == i {
		return j // it began the request: it is too large for one
	}
	alone := 1
	for k := s; k < len(recs) && owners[k] == owners[j]; k++ {
		alone += 1 + len(recs[k])
	}
	if alone > maxBytes {
		return j
	}
	return s
}

// postSplitting posts recs, halving the batch on 413 until each half is
// taken. It returns how many of recs were dealt with (delivered or dropped)
// before a failure. A single record refused with 413 is dropped: no split can
// help it, and keeping it would block everything behind it.
func (c *Client) postSplitting(ctx context.Context, recs [][]byte, res *Result, dropErr *error) (int, error) {
	err := c.post(ctx, recs, res)
	se, ok := errors.AsType[*StatusError](err)
	if !ok || se.Code != http.StatusRequestEntityTooLarge {
		if err != nil {
			return 0, err
		}
		return len(recs), nil
	}
	if len(recs) == 1 {
		res.Dropped++
		*dropErr = fmt.Errorf("dropped %d record(s) too large for the server even alone (last: %d bytes): %w", res.Dropped, len(recs[0]), se)
		return 1, nil
	}
	h := len(recs) / 2
	done, err := c.postSplitting(ctx, recs[:h], res, dropErr)
	if err != nil {
		return done, err
	}
	done, err = c.postSplitting(ctx, recs[h:], res, dropErr)
	return h + done, err
}

// post sends recs as one JSON array body, gzipped when large enough, and
// reads the reply into res. A 415 to a gzipped body turns compression off
// for good and resends the body plain.
func (c *Client) post(ctx context.Context, recs [][]byte, res *Result) error {
	n := 2
	for _, r := range recs {
		n += len(r) + 1
	}
	body := make([]byte, 0, n)
	body = append(body, '[')
	for i, r := range recs {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, r...)
	}
	body = append(body, ']')

	gz := c.o.GzipMinBytes >= 0 && len(body) >= c.o.GzipMinBytes && !c.noGzip.Load()
	wire := body
	if gz {
		wire = gzipBytes(body)
	}
	reply, err := c.do(ctx, http.MethodPost, c.o.IngestURL, wire, gz, res)
	if se, ok := errors.AsType[*StatusError](err); ok && gz && se.Code == http.StatusUnsupportedMediaType {
		c.noGzip.Store(true)
		reply, err = c.do(ctx, http.MethodPost, c.o.IngestURL, body, false, res)
	}
	if err != nil {
		return err
	}
	res.Sent += len(recs)
	c.readReply(reply, len(recs), res)
	return nil
}

// ingestReply is OpenObserve's reply to _json (openobserve-api.md §6.1).
type ingestReply struct {
	Code   int `json:"code"`
	Status []struct {
		Name       string `json:"name"`
		Successful int    `json:"successful"`
		Failed     int    `json:"failed"`
		Error      string `json:"error"`
	} `json:"status"`
}

// readReply adds OpenObserve's counts for a request of n records to res. A
// reply that is not OpenObserve's counts as delivered (the server said 2xx)
// but is noted in res.Error.
func (c *Client) readReply(body []byte, n int, res *Result) {
	var r ingestReply
	if err := json.Unmarshal(body, &r); err != nil || r.Status == nil {
		res.Successful += n
		res.Error = "unreadable reply from OpenObserve: " + c.redact(snippet(body))
		return
	}
	ok, failed := 0, 0
	for _, s := range r.Status {
		ok += s.Successful
		failed += s.Failed
		if s.Error != "" {
			res.Error = c.redact(s.Error)
		}
	}
	res.Successful += ok
	res.Failed += failed
	if m := n - ok - failed; m > 0 {
		res.Missing += m
	}
}

// snippet is at most 200 bytes of b as valid UTF-8, for an error text.
func snippet(b []byte) string {
	if len(b) > 200 {
		b = b[:200]
	}
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	if s == "" {
		return "(empty)"
	}
	return s
}

// gzipWriters pools gzip writers: each holds several hundred KiB of
// compressor state that would otherwise be allocated per request.
var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
	return w
}}

// gzipBytes compresses b. BestSpeed: CPU in a Lambda sandbox is shared with
// the function and billed, and log text compresses well even at level 1.
func gzipBytes(b []byte) []byte {
	var out bytes.Buffer
	out.Grow(len(b)/4 + 64)
	w := gzipWriters.Get().(*gzip.Writer)
	w.Reset(&out)
	// Writes to a bytes.Buffer cannot fail.
	_, _ = w.Write(b)
	_ = w.Close()
	gzipWriters.Put(w)
	return out.Bytes()
}

// do makes one request with retries and returns the 2xx reply's body (at
// most maxReplyBody). A non-2xx final reply is a *StatusError; a retry given
// up for the deadline wraps ErrDeadline. Every attempt counts in res.
func (c *Client) do(ctx context.Context, method, url string, body []byte, gzipped bool, res *Result) ([]byte, error) {
	req, err := retryablehttp.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	auth, err := c.setHeaders(ctx, req.Header, body != nil, gzipped)
	if err != nil {
		return nil, err
	}
	st := &retryState{c: c}
	rc := &retryablehttp.Client{
		HTTPClient:   c.hc,
		Logger:       c.logger,
		RetryWaitMin: c.o.RetryWaitMin,
		RetryWaitMax: c.o.RetryWaitMax,
		RetryMax:     c.o.MaxRetries,
		CheckRetry:   st.checkRetry,
		Backoff:      st.backoff,
		// Hand back the last response or error as is: this package makes
		// its own errors, without retryablehttp's "giving up" wording.
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
	}
	resp, err := rc.Do(req)
	c.refused(resp, auth)
	res.Requests += st.attempts
	res.Bytes += st.attempts * len(body)
	if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		// Cancelled during a backoff wait: say why the caller cancelled.
		err = context.Cause(ctx)
	}
	reply, err := c.finish(resp, err)
	if err != nil && st.gaveUp > 0 {
		return nil, &deadlineError{wait: st.gaveUp, err: err}
	}
	return reply, err
}

// setHeaders sets the headers of every request, and returns the
// Authorization value it set.
func (c *Client) setHeaders(ctx context.Context, h http.Header, hasBody, gzipped bool) (string, error) {
	h.Set("User-Agent", userAgent)
	auth, err := c.authorization(ctx)
	if err != nil {
		return "", err
	}
	if auth != "" {
		h.Set("Authorization", auth)
	}
	if hasBody {
		h.Set("Content-Type", "application/json")
	}
	if gzipped {
		h.Set("Content-Encoding", "gzip")
	}
	// An empty X-Idempotency-Key is not sent, but lets the transport resend
	// a POST at once when a pooled connection turns out to be dead, which
	// is the usual state of connections after the sandbox was frozen;
	// without it that costs a failed attempt and a backoff wait. A resend
	// can duplicate records only if the server took the body and the
	// connection died before its reply: the same risk as any retry.
	h["X-Idempotency-Key"] = nil
	return auth, nil
}

// finish reads and closes resp. It returns the body of a 2xx reply and a
// *StatusError for any other status.
func (c *Client) finish(resp *http.Response, err error) ([]byte, error) {
	if err != nil {
		if resp != nil {
			drain(resp.Body)
		}
		return nil, err
	}
	defer drain(resp.Body)
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxReplyBody))
		if err != nil {
			// The server said 2xx: the data is in; only the counts are lost.
			return nil, nil
		}
		return b, nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	return nil, &StatusError{Code: resp.StatusCode, Message: c.errorMessage(resp, b)}
}

// errorMessage makes StatusError.Message from an error reply: the "message"
// of OpenObserve's JSON error body, else the body as text, else the redirect
// target; always valid UTF-8, one line, and redacted.
func (c *Client) errorMessage(resp *http.Response, b []byte) string {
	var j struct {
		Message string `json:"message"`
	}
	msg := ""
	if json.Unmarshal(b, &j) == nil && j.Message != "" {
		msg = j.Message
	} else {
		msg = string(bytes.TrimSpace(b))
	}
	if loc := resp.Header.Get("Location"); resp.StatusCode >= 300 && resp.StatusCode < 400 && loc != "" {
		msg = strings.TrimSpace("redirect to " + loc + " " + msg)
	}
	msg = strings.ToValidUTF8(msg, "\uFFFD")
	msg = strings.Join(strings.Fields(msg), " ")
	if len(msg) > maxErrorBody {
		msg = strings.ToValidUTF8(msg[:maxErrorBody], "")
	}
	return c.redact(msg)
}

// drain reads what is left of a body (bounded, so that a huge reply does not
// stall us) so that its connection can be reused, then closes it.
func drain(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 4<<10))
	_ = body.Close()
}
