package openobserve

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	collogspb "go.opentelemetry.io/proto/slim/otlp/collector/logs/v1"
	colmetricspb "go.opentelemetry.io/proto/slim/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/slim/otlp/collector/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/o2-extension/o2-extension/internal/telemetry"
)

// Event types whose Record is an OTLP/HTTP protobuf body rather than a log
// record: internal/otlp makes the platform's metrics and traces (its
// MetricsType and TracesType), internal/otlpreceiver the function's own
// traces, metrics and logs (its TracesType, MetricsType and LogsType).
// Send posts them to Options.MetricsURL, TracesURL and LogsURL.
const (
	MetricsEventType = "o2-extension.otlp.metrics"
	TracesEventType  = "o2-extension.otlp.traces"
	LogsEventType    = "o2-extension.otlp.logs"
)

// streamHeader names the stream of an OTLP logs (or traces) request:
// OpenObserve's ZO_GRPC_STREAM_HEADER_KEY, "stream-name" by default
// (config/src/config.rs line 1276 at fbab9b80; read by otlp_logs_write,
// api/ingest/src/request/logs/ingest.rs lines 477-479). Without it the
// logs go to the stream "default".
const streamHeader = "stream-name"

// contentTypeProto is the only protobuf Content-Type OpenObserve's OTLP
// handlers take: they compare it exactly (openobserve-api.md §12).
const contentTypeProto = "application/x-protobuf"

// signal is one OTLP signal: where it goes and how its reply reads.
type signal struct {
	name string
	url  string
	// header is set on each request (the logs' stream-name).
	header http.Header
	// stop says which setting stops sending the signal, for the message
	// when OpenObserve refuses it.
	stop string
	// rejected reads an Export…ServiceResponse: how many items the server
	// rejected and why.
	rejected func(reply []byte) (n int64, msg string, err error)
}

func (c *Client) metricsSignal() signal {
	return signal{name: "metrics", url: c.o.MetricsURL, stop: "O2_METRICS=false stops the platform's, O2_OTLP_PORT=0 the function's", rejected: func(b []byte) (int64, string, error) {
		var r colmetricspb.ExportMetricsServiceResponse
		if err := unmarshalReply(b, &r); err != nil {
			return 0, "", err
		}
		ps := r.GetPartialSuccess()
		return ps.GetRejectedDataPoints(), ps.GetErrorMessage(), nil
	}}
}

func (c *Client) tracesSignal() signal {
	return signal{name: "traces", url: c.o.TracesURL, stop: "O2_TRACES=false stops the platform's, O2_OTLP_PORT=0 the function's", rejected: func(b []byte) (int64, string, error) {
		var r coltracepb.ExportTraceServiceResponse
		if err := unmarshalReply(b, &r); err != nil {
			return 0, "", err
		}
		ps := r.GetPartialSuccess()
		return ps.GetRejectedSpans(), ps.GetErrorMessage(), nil
	}}
}

// logsSignal is the function's own OTLP logs, to the stream
// Options.LogsStream names. OpenObserve answers them with an
// ExportLogsServiceResponse in protobuf whatever the request's encoding,
// with rejected_log_records for records outside its time window
// (core/src/logs/otlp.rs lines 527-545).
func (c *Client) logsSignal() signal {
	s := signal{name: "logs", url: c.o.LogsURL, stop: "O2_OTLP_PORT=0 stops them", rejected: func(b []byte) (int64, string, error) {
		var r collogspb.ExportLogsServiceResponse
		if err := unmarshalReply(b, &r); err != nil {
			return 0, "", err
		}
		ps := r.GetPartialSuccess()
		return ps.GetRejectedLogRecords(), ps.GetErrorMessage(), nil
	}}
	if c.o.LogsStream != "" {
		s.header = http.Header{}
		s.header.Set(streamHeader, c.o.LogsStream)
	}
	return s
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

func isOTLP(typ string) bool {
	return typ == MetricsEventType || typ == TracesEventType || typ == LogsEventType
}

// postSignal posts evs' bodies concatenated (protobuf messages merge: the
// repeated resource_metrics or resource_spans of each body append), as few
// requests as MaxBatchBytes allows, each body whole. What fails is handled
// per signal, so that trouble on /v1/metrics or /v1/traces never costs the
// logs: network errors, 429 and 5xx (after the usual retries) and 401 keep
// the signal's events, returned with the error like logs; any other
// refusal (400 a malformed body, 403 no permission for the signal, 404 no
// such route, 413) drops them, counted in Result.SignalsDropped and
// explained in Result.Error, with no error. Result.Signals counts the
// bodies taken, Result.SignalsRejected the data points and spans the
// server rejected (partial_success).
func (c *Client) postSignal(ctx context.Context, s signal, evs []telemetry.Event, res *Result, waiting func()) ([]telemetry.Event, error) {
	if s.url == "" {
		res.SignalsDropped += len(evs)
		res.Error = fmt.Sprintf("openobserve: %s: no URL configured, %d bodies dropped", s.name, len(evs))
		return nil, nil
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
		err := c.postProto(ctx, s, body, j-i, res, waiting)
		if err != nil {
			if keep(err) {
				return evs[i:], fmt.Errorf("openobserve: send %d %s bodies: %w", len(evs)-i, s.name, err)
			}
			res.SignalsDropped += len(evs) - i
			res.Error = c.redact(fmt.Sprintf("%s: %d bodies dropped, refused: %s (%s)",
				s.name, len(evs)-i, Explain(err), s.stop))
			return nil, nil
		}
		i = j
	}
	return nil, nil
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
func (c *Client) postProto(ctx context.Context, s signal, body []byte, n int, res *Result, waiting func()) error {
	gz := c.o.GzipMinBytes >= 0 && len(body) >= c.o.GzipMinBytes && !c.noGzip.Load()
	wire := body
	if gz {
		wire = gzipBytes(body)
	}
	reply, err := c.doAs(ctx, s.url, contentTypeProto, s.header, wire, gz, res, waiting)
	if se, ok := errors.AsType[*StatusError](err); ok && gz && se.Code == http.StatusUnsupportedMediaType {
		c.noGzip.Store(true)
		reply, err = c.doAs(ctx, s.url, contentTypeProto, s.header, body, false, res, waiting)
	}
	if err != nil {
		return err
	}
	res.Signals += n
	rejected, msg, rerr := s.rejected(reply)
	switch {
	case rerr != nil:
		res.Error = s.name + ": unreadable reply from OpenObserve: " + c.redact(snippet(reply))
	case rejected > 0:
		res.SignalsRejected += int(rejected)
		res.Error = fmt.Sprintf("%s: %d rejected: %s", s.name, rejected, c.redact(msg))
	}
	return nil
}
