package openobserve

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/hashicorp/go-retryablehttp"
	colmetricspb "go.opentelemetry.io/proto/slim/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/slim/otlp/collector/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/o2-extension/o2-extension/internal/telemetry"
)

// Event types whose Record is an OTLP/HTTP protobuf body rather than a log
// record (internal/otlp makes them; the names are its MetricsType and
// TracesType). Send posts them to Options.MetricsURL and TracesURL.
const (
	MetricsEventType = "o2-extension.otlp.metrics"
	TracesEventType  = "o2-extension.otlp.traces"
)

// contentTypeProto is the only protobuf Content-Type OpenObserve's OTLP
// handlers take: they compare it exactly (openobserve-api.md §12).
const contentTypeProto = "application/x-protobuf"

// signal is one OTLP signal: where it goes and how its reply reads.
type signal struct {
	name string
	url  string
	// rejected reads an Export…ServiceResponse: how many items the server
	// rejected and why.
	rejected func(reply []byte) (n int64, msg string, err error)
}

func (c *Client) metricsSignal() signal {
	return signal{name: "metrics", url: c.o.MetricsURL, rejected: func(b []byte) (int64, string, error) {
		var r colmetricspb.ExportMetricsServiceResponse
		if err := unmarshalReply(b, &r); err != nil {
			return 0, "", err
		}
		ps := r.GetPartialSuccess()
		return ps.GetRejectedDataPoints(), ps.GetErrorMessage(), nil
	}}
}

func (c *Client) tracesSignal() signal {
	return signal{name: "traces", url: c.o.TracesURL, rejected: func(b []byte) (int64, string, error) {
		var r coltracepb.ExportTraceServiceResponse
		if err := unmarshalReply(b, &r); err != nil {
			return 0, "", err
		}
		ps := r.GetPartialSuccess()
		return ps.GetRejectedSpans(), ps.GetErrorMessage(), nil
	}}
}

// unmarshalReply reads an OTLP reply: protobuf, as OpenObserve answers a
// protobuf request, or OTLP JSON from a proxy that prefers it. An empty
// body is a full success.
func unmarshalReply(b []byte, m proto.Message) error {
	if len(b) == 0 {
		return nil
	}
	if err := proto.Unmarshal(b, m); err == nil {
		return nil
	}
	return protojson.Unmarshal(b, m)
}

// splitOTLP separates the OTLP events of evs from the log events. Without
// OTLP events it returns (nil, evs) and allocates nothing.
func splitOTLP(evs []telemetry.Event) (sig, logs []telemetry.Event) {
	n := 0
	for i := range evs {
		if isOTLP(evs[i].Type) {
			n++
		}
	}
	if n == 0 {
		return nil, evs
	}
	sig = make([]telemetry.Event, 0, n)
	logs = make([]telemetry.Event, 0, len(evs)-n)
	for _, e := range evs {
		if isOTLP(e.Type) {
			sig = append(sig, e)
		} else {
			logs = append(logs, e)
		}
	}
	return sig, logs
}

func isOTLP(typ string) bool { return typ == MetricsEventType || typ == TracesEventType }

// signalOutcome is what posting one signal's events came to.
type signalOutcome struct {
	res Result
	// kept are the events to put back (a retryable or credentials failure).
	kept []telemetry.Event
	// err is the failure that kept them; dropErr says why events were
	// dropped (refused for good), counted in res.Dropped.
	err, dropErr error
}

// sendOTLP sends the OTLP events sig, metrics and traces each on its own
// goroutine, and the log events logs through Send on this one, at the same
// time: the signals add no latency to a flush beyond the slowest request.
//
// What fails is handled per signal, so that trouble on /v1/metrics or
// /v1/traces never costs the logs:
//   - network errors, 429 and 5xx (after the usual retries) and 401 keep
//     the signal's events: they are returned with the error, for the
//     caller's buffer, like logs;
//   - any other refusal (400 a malformed body, 403 no permission for the
//     signal, 404 no such route, 413) drops them: they are counted in
//     Result.Dropped and explained in Result.Error, and no error is
//     returned for them, so the caller neither drops nor pauses the logs
//     because of them.
//
// The error returned is the logs' when they failed, else a signal's. One
// error classifies everything returned: when the logs were refused for
// good (400) while a signal failed retryably, the caller drops that
// signal's bodies with the logs.
// Result.Sent and Successful count the signals' events (bodies) that were
// taken, Result.Failed adds the data points and spans the server rejected
// (partial_success).
func (c *Client) sendOTLP(ctx context.Context, sig, logs []telemetry.Event) (Result, []telemetry.Event, error) {
	var metrics, traces []telemetry.Event
	for _, e := range sig {
		if e.Type == MetricsEventType {
			metrics = append(metrics, e)
		} else {
			traces = append(traces, e)
		}
	}
	var wg sync.WaitGroup
	var mo, to signalOutcome
	if len(metrics) > 0 {
		wg.Go(func() { mo = c.postSignal(ctx, c.metricsSignal(), metrics) })
	}
	if len(traces) > 0 {
		wg.Go(func() { to = c.postSignal(ctx, c.tracesSignal(), traces) })
	}
	var res Result
	var rest []telemetry.Event
	var err error
	if len(logs) > 0 {
		res, rest, err = c.Send(ctx, logs)
	}
	wg.Wait()
	for _, o := range []signalOutcome{mo, to} {
		res.add(o.res)
		rest = append(rest, o.kept...)
		if err == nil {
			err = o.err
		}
		if o.dropErr != nil {
			res.Error = c.redact(o.dropErr.Error())
		}
	}
	return res, rest, err
}

// add adds r's counts to res; r's Error replaces res's when set.
func (res *Result) add(r Result) {
	res.Sent += r.Sent
	res.Successful += r.Successful
	res.Failed += r.Failed
	res.Missing += r.Missing
	res.Dropped += r.Dropped
	res.Requests += r.Requests
	res.Bytes += r.Bytes
	if r.Error != "" {
		res.Error = r.Error
	}
}

// postSignal posts evs' bodies concatenated (protobuf messages merge: the
// repeated resource_metrics or resource_spans of each body append), as few
// requests as MaxBatchBytes allows, each body whole.
func (c *Client) postSignal(ctx context.Context, s signal, evs []telemetry.Event) signalOutcome {
	var o signalOutcome
	if s.url == "" {
		o.res.Dropped += len(evs)
		o.dropErr = fmt.Errorf("openobserve: %s: no URL configured, %d bodies dropped", s.name, len(evs))
		return o
	}
	for i := 0; i < len(evs); {
		j, size := i+1, len(evs[i].Record)
		for j < len(evs) && size+len(evs[j].Record) <= c.o.MaxBatchBytes {
			size += len(evs[j].Record)
			j++
		}
		body := make([]byte, 0, size)
		for _, e := range evs[i:j] {
			body = append(body, e.Record...)
		}
		err := c.postProto(ctx, s, body, j-i, &o.res)
		if err != nil {
			if keep(err) {
				o.kept = evs[i:]
				o.err = fmt.Errorf("openobserve: send %d %s bodies: %w", len(evs)-i, s.name, err)
			} else {
				o.res.Dropped += len(evs) - i
				o.dropErr = fmt.Errorf("%s: %d bodies dropped, refused: %s (O2_%s=false stops sending them)",
					s.name, len(evs)-i, Explain(err), strings.ToUpper(s.name))
			}
			return o
		}
		i = j
	}
	return o
}

// keep reports whether the events of a failed OTLP request are worth
// keeping: everything but a refusal that will not change by itself.
func keep(err error) bool {
	se, ok := errors.AsType[*StatusError](err)
	if !ok {
		return true // network, deadline
	}
	switch {
	case se.Code == http.StatusUnauthorized, se.Code == http.StatusRequestTimeout, se.Code == http.StatusTooManyRequests:
		return true
	case se.Code >= 400 && se.Code < 500:
		return false
	}
	return true
}

// postProto sends one body of n events and reads the reply into res. A 415
// to a gzipped body turns compression off, as for logs, and resends it.
func (c *Client) postProto(ctx context.Context, s signal, body []byte, n int, res *Result) error {
	gz := c.o.GzipMinBytes >= 0 && len(body) >= c.o.GzipMinBytes && !c.noGzip.Load()
	wire := body
	if gz {
		wire = gzipBytes(body)
	}
	reply, err := c.doProto(ctx, s.url, wire, gz, res)
	if se, ok := errors.AsType[*StatusError](err); ok && gz && se.Code == http.StatusUnsupportedMediaType {
		c.noGzip.Store(true)
		reply, err = c.doProto(ctx, s.url, body, false, res)
	}
	if err != nil {
		return err
	}
	res.Sent += n
	res.Successful += n
	rejected, msg, rerr := s.rejected(reply)
	switch {
	case rerr != nil:
		res.Error = s.name + ": unreadable reply from OpenObserve: " + c.redact(snippet(reply))
	case rejected > 0:
		res.Failed += int(rejected)
		res.Error = fmt.Sprintf("%s: %d rejected: %s", s.name, rejected, c.redact(msg))
	}
	return nil
}

// doProto is do with the OTLP Content-Type: one POST with the client's
// retries, backoff and deadline rules, returning a 2xx reply's body or a
// *StatusError.
func (c *Client) doProto(ctx context.Context, url string, body []byte, gzipped bool, res *Result) ([]byte, error) {
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, url, body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	c.setHeaders(req.Header, true, gzipped)
	req.Header.Set("Content-Type", contentTypeProto)
	st := &retryState{c: c}
	rc := &retryablehttp.Client{
		HTTPClient:   c.hc,
		Logger:       c.logger,
		RetryWaitMin: c.o.RetryWaitMin,
		RetryWaitMax: c.o.RetryWaitMax,
		RetryMax:     c.o.MaxRetries,
		CheckRetry:   st.checkRetry,
		Backoff:      st.backoff,
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
	}
	resp, err := rc.Do(req)
	res.Requests += st.attempts
	res.Bytes += st.attempts * len(body)
	if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		err = context.Cause(ctx)
	}
	reply, err := c.finish(resp, err)
	if err != nil && st.gaveUp > 0 {
		return nil, &deadlineError{wait: st.gaveUp, err: err}
	}
	return reply, err
}
