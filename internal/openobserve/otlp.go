package openobserve

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

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

func isOTLP(typ string) bool { return typ == MetricsEventType || typ == TracesEventType }

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
			res.Error = c.redact(fmt.Sprintf("%s: %d bodies dropped, refused: %s (O2_%s=false stops sending them)",
				s.name, len(evs)-i, Explain(err), strings.ToUpper(s.name)))
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
	reply, err := c.doAs(ctx, s.url, contentTypeProto, wire, gz, res, waiting)
	if se, ok := errors.AsType[*StatusError](err); ok && gz && se.Code == http.StatusUnsupportedMediaType {
		c.noGzip.Store(true)
		reply, err = c.doAs(ctx, s.url, contentTypeProto, body, false, res, waiting)
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
