// Package openobserve turns telemetry events into OpenObserve records and
// delivers them to the _json ingestion endpoint: batching, gzip, retries,
// reading OpenObserve's reply, and the health-check calls.
package openobserve

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/klauspost/compress/gzip"
	"io"
	"net"
	"net/http"
	"slices"
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
	DefaultMaxBatchBytes  = 1 << 20
	DefaultMaxRecordBytes = 256 << 10
	DefaultAttemptTimeout = 30 * time.Second
	DefaultMaxRetries     = 3
	DefaultRetryWaitMin   = 100 * time.Millisecond
	DefaultRetryWaitMax   = 1 * time.Second
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
	// Routes sends the events of some types to another stream: event type
	// to that stream's ingestion URL (e.g. the tenant memory reports).
	// Every route shares the client's connections, retries and gate.
	Routes map[string]string
	// HealthURL is {endpoint}/healthz.
	HealthURL string
	// OrgCheckURL is {endpoint}/api/{org}/_license, the health check's
	// read-only probe of the credentials and the organization.
	OrgCheckURL string
	// MetricsURL, TracesURL and LogsURL are {endpoint}/api/{org}/v1/metrics,
	// /v1/traces and /v1/logs, where events of MetricsEventType,
	// TracesEventType and LogsEventType go (see otlp.go); empty drops such
	// events.
	MetricsURL, TracesURL, LogsURL string
	// LogsStream is the stream the OTLP logs go to, sent in OpenObserve's
	// stream-name header; empty sends none (OpenObserve then uses
	// "default").
	LogsStream string
	// Authorization is the Authorization header value, sent as is. It is a
	// secret: it never appears in errors or logs.
	Authorization string
	// Credential, if set, supplies the Authorization value at run time
	// instead (a secret fetched from AWS); Authorization is then ignored.
	Credential Credential
	// MaxBatchBytes bounds the uncompressed body of one request (default
	// 1 MiB). A single record larger than this still goes, alone.
	MaxBatchBytes int
	// MaxRecordBytes bounds the encoded "record" value of one record
	// (default 256 KiB, at least 64): longer text is split into parts,
	// longer objects are truncated (see AppendRecords).
	MaxRecordBytes int
	// AttemptTimeout bounds one HTTP attempt, reply included (default 30 s).
	AttemptTimeout time.Duration
	// MaxRetries is the number of retries of a request after its first
	// attempt, as given: 0 means none (DefaultMaxRetries is the
	// configuration's default). A request still failing then hands its
	// records back to the Shipper, which keeps them.
	MaxRetries int
	// RetryWaitMin is the cap of the first jittered backoff wait (default
	// 100 ms); the first failure is retried at once.
	RetryWaitMin time.Duration
	// RetryWaitMax caps every backoff wait, and every pause a Retry-After
	// asks for (default 1 s): a failed backend is probed at least that
	// often, so sending resumes soon after it recovers.
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
	// keep-alive, HTTP/1.1 (see newTransport), and TLS always verified;
	// tests pass a RoundTripper func.
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
	o.MaxRetries = max(o.MaxRetries, 0)
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
	o    Options
	enc  *encoder
	hc   *http.Client // the health check's: no gate
	send *http.Client // the delivery path's: every attempt through gate
	gate *gate
	cred Credential
	// logger is nil (an untyped nil interface, as retryablehttp requires)
	// when Options.Logger is nil.
	logger any
	// noGzip is set after a 415 to a gzipped body: the server, or a proxy
	// in front of it, does not take gzip, and will not start to.
	noGzip atomic.Bool
	// secrets are the strings redacted from server-supplied text and logs
	// (besides the current credential).
	secrets []string
	// lastAuth is the last value the Credential gave, redacted too.
	lastAuth atomic.Pointer[string]
	stats    stats
}

// NewClient returns a Client for o.
func NewClient(o Options) *Client {
	o.setDefaults()
	c := &Client{o: o, enc: newEncoder(o.Fields, o.MaxRecordBytes), gate: newGate(), cred: o.Credential}
	if c.cred == nil {
		c.cred = staticCredential(o.Authorization)
		c.secrets = secretForms(o.Authorization)
	}
	tr := o.Transport
	if tr == nil {
		tr = newTransport()
	}
	// Each attempt is bounded by running time, not wall time, so a freeze
	// mid-request never causes a resend (see thawedTimeout).
	timed := thawedTimeout{next: tr, d: o.AttemptTimeout}
	// A redirect would turn the POST into a GET (301/302) or send the data
	// to a host O2_ENDPOINT does not name: report it instead.
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.hc = &http.Client{Transport: timed, CheckRedirect: noRedirect}
	c.send = &http.Client{Transport: gatedTransport{next: timed, g: c.gate}, CheckRedirect: noRedirect}
	if o.Logger != nil {
		c.logger = retryablehttp.LeveledLogger(leveled{e: o.Logger, redact: c.redact})
	}
	return c
}

// newTransport is the one pooled transport of a process. A sandbox sends to
// one host, so a few idle connections are enough; keep-alive saves the TLS
// handshake on every flush. TLS verification cannot be turned off.
//
// It speaks HTTP/1.1 only: one keep-alive connection per request in flight
// (O2_MAX_IN_FLIGHT, 4 by default) does what HTTP/2's streams would, and the
// extension is built with the nethttpomithttp2 tag (build.sh), which leaves
// net/http's bundled HTTP/2 out of the binary: 0.5 MB less of it to map.
func newTransport() *http.Transport {
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          4,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: 1 * time.Second,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
	}
}

// secretForms are the forms of an Authorization value to redact: the whole
// value, and the credential alone without its scheme, in case a server or
// proxy echoes it in some other form.
func secretForms(a string) []string {
	a = strings.TrimSpace(a)
	if a == "" {
		return nil
	}
	out := []string{a}
	if _, cred, ok := strings.Cut(a, " "); ok && len(strings.TrimSpace(cred)) >= 4 {
		out = append(out, strings.TrimSpace(cred))
	}
	return out
}

// redact removes the Authorization value from s.
func (c *Client) redact(s string) string {
	secrets := c.secrets
	if v := c.lastAuth.Load(); v != nil {
		secrets = append(secretForms(*v), secrets...)
	}
	for _, sec := range secrets {
		s = strings.ReplaceAll(s, sec, "[redacted]")
	}
	return s
}

// permanentError is an error that can say it will not go away by itself.
type permanentError interface {
	error
	Permanent() bool
}

// authorization asks the Credential for the Authorization value, and keeps
// it to redact. An error wraps ErrNoCredential when no value can be had at
// all (the source says so with a Permanent method).
func (c *Client) authorization(ctx context.Context) (string, error) {
	v, err := c.cred.Authorization(ctx)
	if err != nil {
		if p, ok := errors.AsType[permanentError](err); ok && p.Permanent() {
			return "", fmt.Errorf("%w: %w", ErrNoCredential, err)
		}
		return "", fmt.Errorf("credential: %w", err)
	}
	if _, static := c.cred.(staticCredential); !static {
		if old := c.lastAuth.Load(); old == nil || *old != v {
			c.lastAuth.Store(&v)
		}
	}
	return v, nil
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
	// Rejected is the number of records dropped because OpenObserve could
	// not parse them even alone (a 400 that splitting isolated to them).
	Rejected int
	// AsText is the number of records sent with their "record" as one JSON
	// string (and "record_as_text": true) because OpenObserve stored
	// nothing of them as they were (too many columns).
	AsText int
	// TypeConflicts is the part of Failed that OpenObserve refused because
	// a value could not be cast to its column's type.
	TypeConflicts int
	// Signals is the number of OTLP bodies (metrics, traces, logs)
	// delivered; SignalsDropped those refused for good; SignalsRejected the
	// data points, spans and log records OpenObserve rejected in its
	// partial_success.
	Signals, SignalsDropped, SignalsRejected int
	// Error is OpenObserve's last per-record error text, or a note that a
	// 2xx reply could not be read.
	Error string
	// Requests is the number of HTTP requests made, retries and 413/415
	// resends included.
	Requests int
	// Bytes is the number of body bytes put on the wire.
	Bytes int
}

// add adds r's counts to res; r's Error replaces res's when set.
func (res *Result) add(r Result) {
	res.Sent += r.Sent
	res.Successful += r.Successful
	res.Failed += r.Failed
	res.Missing += r.Missing
	res.Dropped += r.Dropped
	res.Rejected += r.Rejected
	res.AsText += r.AsText
	res.TypeConflicts += r.TypeConflicts
	res.Signals += r.Signals
	res.SignalsDropped += r.SignalsDropped
	res.SignalsRejected += r.SignalsRejected
	res.Requests += r.Requests
	res.Bytes += r.Bytes
	if r.Error != "" {
		res.Error = r.Error
	}
}

// Send posts evs as one request per destination (more only if their
// records exceed MaxBatchBytes, or after a 413 split), gzipped from
// GzipMinBytes, with retries. Records rejected by OpenObserve itself
// (Result.Failed, Missing) count as delivered: retrying would not change
// them.
//
// On failure it returns the events not delivered, so that the caller can
// put them back in its buffer: from the first event with a record in the
// request that failed, and every event of the destinations not yet tried.
// Sending stops at that request, since the next would most likely fail the
// same way. A request ends between events where it can; an event whose
// parts straddle requests anyway (larger than MaxBatchBytes, or split on
// 413) is returned whole, so some of its parts may arrive twice. The error
// says why; see IsPermanent and IsAuth for what to do with the events. A
// record dropped on 413 is not returned, but counted in Result.Dropped and
// reported in the error.
func (c *Client) Send(ctx context.Context, evs []telemetry.Event) (Result, []telemetry.Event, error) {
	return c.sendRouted(ctx, evs, nil)
}

// sendRouted is Send, calling waiting (if set) when a request starts to
// wait out a backoff or a pause. With several destinations (a tenant
// stream, the OTLP signals), each goes on its own goroutine: a flush costs
// the slowest request, not their sum. What one destination could not
// deliver does not stop the others; the error returned is the logs' if
// they failed, else the first other one's.
func (c *Client) sendRouted(ctx context.Context, evs []telemetry.Event, waiting func()) (Result, []telemetry.Event, error) {
	var res Result
	if len(evs) == 0 {
		return res, nil, nil
	}
	groups := c.route(evs)
	if len(groups) == 1 {
		rest, err := c.sendGroup(ctx, groups[0], &res, waiting)
		return res, rest, err
	}
	type outcome struct {
		res  Result
		rest []telemetry.Event
		err  error
	}
	outs := make([]outcome, len(groups))
	var wg sync.WaitGroup
	for i, g := range groups {
		wg.Go(func() { outs[i].rest, outs[i].err = c.sendGroup(ctx, g, &outs[i].res, waiting) })
	}
	wg.Wait()
	var rest []telemetry.Event
	var err error
	for i, o := range outs {
		res.add(o.res)
		rest = append(rest, o.rest...)
		if o.err != nil && (err == nil || groups[i].url == c.o.IngestURL) {
			err = o.err
		}
	}
	return res, rest, err
}

// sendGroup sends one destination's events.
func (c *Client) sendGroup(ctx context.Context, g group, res *Result, waiting func()) ([]telemetry.Event, error) {
	ctx, release := newLeg(ctx) // yields on its own, never cutting another group on the wire
	defer release()
	if g.signal != nil {
		return c.postSignal(ctx, *g.signal, g.evs, res, waiting)
	}
	return c.sendTo(ctx, g.url, g.evs, res, waiting)
}

// group is the events of one Send bound for one URL.
type group struct {
	url    string
	signal *signal // for the OTLP endpoints; nil for _json
	evs    []telemetry.Event
}

// route splits evs by destination, keeping their order within each;
// destinations come in the order of their first event. Without routes or
// signals (the usual case for a batch) it allocates nothing.
func (c *Client) route(evs []telemetry.Event) []group {
	if len(c.o.Routes) == 0 && !slices.ContainsFunc(evs, func(e telemetry.Event) bool { return isOTLP(e.Type) }) {
		return []group{{url: c.o.IngestURL, evs: evs}}
	}
	var groups []group
	for _, ev := range evs {
		url := c.o.IngestURL
		switch {
		case ev.Type == MetricsEventType:
			url = "otlp:metrics"
		case ev.Type == TracesEventType:
			url = "otlp:traces"
		case ev.Type == LogsEventType:
			url = "otlp:logs"
		default:
			if u, ok := c.o.Routes[ev.Type]; ok {
				url = u
			}
		}
		i := slices.IndexFunc(groups, func(g group) bool { return g.url == url })
		if i < 0 {
			g := group{url: url}
			switch ev.Type {
			case MetricsEventType:
				sig := c.metricsSignal()
				g.signal = &sig
			case TracesEventType:
				sig := c.tracesSignal()
				g.signal = &sig
			case LogsEventType:
				sig := c.logsSignal()
				g.signal = &sig
			}
			groups = append(groups, g)
			i = len(groups) - 1
		}
		groups[i].evs = append(groups[i].evs, ev)
	}
	return groups
}

// sendTo posts evs to url; see Send.
func (c *Client) sendTo(ctx context.Context, url string, evs []telemetry.Event, res *Result, waiting func()) ([]telemetry.Event, error) {
	owners := make([]int, 0, len(evs))
	buf, ends := c.enc.encodeAll(evs, &owners)
	recs := make([][]byte, len(ends))
	start := 0
	for i, end := range ends {
		recs[i] = buf[start:end:end]
		start = end
	}

	p := poster{c: c, url: url, res: res, waiting: waiting}
	for i := 0; i < len(recs); {
		j := batchEnd(recs, owners, i, c.o.MaxBatchBytes)
		done, err := p.postSplitting(ctx, recs[i:j])
		if err != nil {
			rest := evs[owners[i+done]:]
			if p.dropErr != nil {
				err = fmt.Errorf("%w (and %w)", err, p.dropErr)
			}
			return rest, fmt.Errorf("openobserve: send %d records: %w", len(recs)-i-done, err)
		}
		i = j
	}
	if p.dropErr != nil {
		return nil, fmt.Errorf("openobserve: %w", p.dropErr)
	}
	return nil, nil
}

// poster posts the requests of one destination within one Send.
type poster struct {
	c       *Client
	url     string
	res     *Result
	waiting func()
	dropErr error // records dropped on 413, if any
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

// postSplitting posts recs, halving the batch when OpenObserve refuses it
// for what one record may have caused: 413 (too large), a 400 whose body
// did not parse (one record nested past its parser's limit), or a 200 that
// stored nothing (one record with too many columns). It returns how many of
// recs were dealt with (delivered or dropped) before a failure. A single
// record refused with 413 or the 400 is dropped: no split can help it, and
// keeping it would block everything behind it. A single record that stored
// nothing is sent once more with its "record" as one JSON string, which
// costs one column.
func (p *poster) postSplitting(ctx context.Context, recs [][]byte) (int, error) {
	err := p.post(ctx, recs)
	se, _ := errors.AsType[*StatusError](err)
	tooLarge := se != nil && se.Code == http.StatusRequestEntityTooLarge
	unparsed := se != nil && se.unparsable()
	nothing := errors.Is(err, errStoredNothing)
	if !tooLarge && !unparsed && !nothing {
		if err != nil {
			return 0, err
		}
		return len(recs), nil
	}
	if len(recs) == 1 {
		switch {
		case tooLarge:
			p.res.Dropped++
			p.dropErr = fmt.Errorf("dropped %d record(s) too large for the server even alone (last: %d bytes): %w", p.res.Dropped, len(recs[0]), se)
		case unparsed:
			p.res.Rejected++
			p.dropErr = fmt.Errorf("dropped %d record(s) OpenObserve could not parse even alone: %w", p.res.Rejected, se)
		case nothing:
			return 1, p.postAsText(ctx, recs[0])
		}
		return 1, nil
	}
	h := len(recs) / 2
	done, err := p.postSplitting(ctx, recs[:h])
	if err != nil {
		return done, err
	}
	done, err = p.postSplitting(ctx, recs[h:])
	return h + done, err
}

// postAsText sends rec again with its "record" value as one JSON string,
// marked "record_as_text": true, after OpenObserve stored nothing of it as
// it was. If that stores nothing either, it counts as silently dropped.
func (p *poster) postAsText(ctx context.Context, rec []byte) error {
	var m map[string]json.RawMessage
	if json.Unmarshal(rec, &m) != nil || m["record"] == nil || m["record"][0] == '"' {
		p.res.Sent++
		p.res.Missing++
		return nil
	}
	m["record"] = appendString(nil, string(m["record"]))
	m["record_as_text"] = json.RawMessage("true")
	text, err := json.Marshal(m)
	if err != nil {
		return err
	}
	err = p.post(ctx, [][]byte{text})
	switch {
	case errors.Is(err, errStoredNothing):
		p.res.Sent++
		p.res.Missing++
		return nil
	case err != nil:
		return err
	}
	p.res.AsText++
	return nil
}

// post sends recs as one JSON array body, gzipped when large enough, and
// reads the reply into res. A 415 to a gzipped body turns compression off
// for good and resends the body plain.
func (p *poster) post(ctx context.Context, recs [][]byte) error {
	c := p.c
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
	reply, err := c.do(ctx, p.url, wire, gz, p.res, p.waiting)
	if se, ok := errors.AsType[*StatusError](err); ok && gz && se.Code == http.StatusUnsupportedMediaType {
		c.noGzip.Store(true)
		reply, err = c.do(ctx, p.url, body, false, p.res, p.waiting)
	}
	if err != nil {
		return err
	}
	return c.readReply(reply, len(recs), p.res)
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

// errStoredNothing is a 200 whose counts are all 0 for records sent: the
// request was dropped whole, as for the column limit (openobserve-api.md
// §5.6). Nothing was written, so the batch is split and sent again.
var errStoredNothing = errors.New("openobserve: OpenObserve stored none of the request's records (column limit?)")

// readReply adds OpenObserve's counts for a request of n records to res.
// A 2xx body that is not OpenObserve's reply (a proxy's page, an empty
// body, another service at a wrong path), or counts that cannot be true,
// are an error wrapping ErrUnexpectedReply: what was stored is unknown, so
// the data is kept and sent again later. A reply that stored nothing is
// errStoredNothing.
func (c *Client) readReply(body []byte, n int, res *Result) error {
	var r ingestReply
	if err := json.Unmarshal(body, &r); err != nil || r.Status == nil {
		return fmt.Errorf("%w: a 2xx reply that is not OpenObserve's: %s", ErrUnexpectedReply, c.redact(snippet(body)))
	}
	ok, failed, lastErr := 0, 0, ""
	for _, s := range r.Status {
		if s.Successful < 0 || s.Failed < 0 {
			return fmt.Errorf("%w: impossible counts (successful %d, failed %d) for %d records: %s", ErrUnexpectedReply, s.Successful, s.Failed, n, c.redact(snippet(body)))
		}
		ok += s.Successful
		failed += s.Failed
		if s.Error != "" {
			lastErr = c.redact(s.Error)
		}
	}
	switch {
	case ok+failed > n:
		return fmt.Errorf("%w: impossible counts (successful %d, failed %d) for %d records: %s", ErrUnexpectedReply, ok, failed, n, c.redact(snippet(body)))
	case ok+failed == 0 && n > 0:
		return errStoredNothing
	}
	res.Sent += n
	res.Successful += ok
	res.Failed += failed
	if lastErr != "" {
		res.Error = lastErr
		if isTypeConflict(lastErr) {
			res.TypeConflicts += failed
		}
	}
	if m := n - ok - failed; m > 0 {
		res.Missing += m
	}
	return nil
}

// isTypeConflict reports OpenObserve's error for a value that cannot be
// cast to the type its column already has ("Failed to cast <field> to type
// <T>", openobserve-api.md §5.5 and §8, from write_logs).
func isTypeConflict(msg string) bool {
	return strings.Contains(strings.ToLower(msg), "failed to cast")
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

// gzipper is the process's one gzip writer. A level-1 writer holds about
// 830 KiB of state. Pooled, one per request in flight, writers were
// re-created after each GC that emptied the pool: 830 KiB allocated and
// zeroed each time, which made them the largest part of the extension's
// heap and a quarter of its compression time. One writer, kept for the
// process's life, costs that once; the requests in flight take turns
// with it (a 1 MiB body compresses in under 3 ms), never waiting on the
// network while they hold it. klauspost's stateless compressor, which
// keeps no state, was as fast on varied log text but twice as slow on
// repetitive lines.
var gzipper struct {
	mu sync.Mutex
	w  *gzip.Writer // nil until the first body
}

// gzipBytes compresses b at BestSpeed: CPU in a Lambda sandbox is shared
// with the function and billed, and log text compresses well even at
// level 1.
func gzipBytes(b []byte) []byte {
	var out bytes.Buffer
	out.Grow(len(b)/4 + 64)
	g := &gzipper
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.w == nil {
		g.w, _ = gzip.NewWriterLevel(&out, gzip.BestSpeed) // a valid level: no error
	} else {
		g.w.Reset(&out)
	}
	// Writes to a bytes.Buffer cannot fail.
	_, _ = g.w.Write(b)
	_ = g.w.Close()
	g.w.Reset(io.Discard) // keep no reference to the body
	return out.Bytes()
}

// do POSTs body to url with retries and returns the 2xx reply's body (at
// most maxReplyBody). A non-2xx final reply is a *StatusError; a retry given
// up for the deadline wraps ErrDeadline. Every attempt counts in res.
func (c *Client) do(ctx context.Context, url string, body []byte, gzipped bool, res *Result, waiting func()) ([]byte, error) {
	return c.doAs(ctx, url, "application/json", nil, body, gzipped, res, waiting)
}

// doAs is do with a Content-Type of the caller's, and header's fields set
// on the request too.
func (c *Client) doAs(ctx context.Context, url, contentType string, header http.Header, body []byte, gzipped bool, res *Result, waiting func()) ([]byte, error) {
	auth, err := c.authorization(ctx)
	if err != nil {
		return nil, err
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, url, body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	c.setHeaders(req.Header, auth, true, gzipped)
	req.Header.Set("Content-Type", contentType)
	for k, v := range header {
		req.Header[k] = v
	}
	st := &retryState{c: c, waiting: waiting}
	rc := &retryablehttp.Client{
		HTTPClient:   c.send,
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
	res.Requests += st.attempts
	res.Bytes += st.attempts * len(body)
	if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		// Cancelled during a backoff wait: say why the caller cancelled.
		err = context.Cause(ctx)
	}
	if resp != nil && resp.StatusCode == http.StatusUnauthorized {
		c.cred.Refused(auth) // a rotated secret: the source may fetch it again
	}
	reply, err := c.finish(resp, err)
	if err != nil && st.gaveUp > 0 {
		return nil, &deadlineError{wait: st.gaveUp, err: err}
	}
	return reply, err
}

// setHeaders sets the headers of every request.
func (c *Client) setHeaders(h http.Header, auth string, hasBody, gzipped bool) {
	h.Set("User-Agent", userAgent)
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
