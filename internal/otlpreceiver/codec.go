package otlpreceiver

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime"
	"strings"

	collogspb "go.opentelemetry.io/proto/slim/otlp/collector/logs/v1"
	colmetricspb "go.opentelemetry.io/proto/slim/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/slim/otlp/collector/trace/v1"
	metricspb "go.opentelemetry.io/proto/slim/otlp/metrics/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// The two encodings of OTLP/HTTP (OTLP specification, "OTLP/HTTP Request").
const (
	contentTypeProto = "application/x-protobuf"
	contentTypeJSON  = "application/json"
)

// mediaType reads a Content-Type: asJSON is true for OTLP JSON, false for
// protobuf; ok is false for anything else. Parameters (charset=utf-8) are
// allowed, and the type is compared case-insensitively, as media types are.
func mediaType(v string) (asJSON, ok bool) {
	t, _, err := mime.ParseMediaType(v)
	if err != nil {
		return false, false
	}
	switch t {
	case contentTypeProto:
		return false, true
	case contentTypeJSON:
		return true, true
	}
	return false, false
}

// gzipped reads a Content-Encoding: gzip, or none (absent, empty or
// "identity"); ok is false for any other, deflate included (OTLP/HTTP
// names gzip only).
func gzipped(v string) (gz, ok bool) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "gzip":
		return true, true
	case "", "identity":
		return false, true
	}
	return false, false
}

// jsonOptions: OTLP JSON receivers "MUST ignore message fields with
// unknown names" (OTLP specification, "JSON Protobuf Encoding"), so that a
// newer SDK's fields do not fail the whole body.
var jsonOptions = protojson.UnmarshalOptions{DiscardUnknown: true}

// unmarshal decodes a body into m: protobuf, or OTLP JSON with its ids read
// as hex (see fixIDs).
func unmarshal(body []byte, asJSON bool, m proto.Message) error {
	if !asJSON {
		return proto.Unmarshal(body, m)
	}
	if err := jsonOptions.Unmarshal(body, m); err != nil {
		return err
	}
	return fixIDs(m)
}

// OTLP JSON differs from the standard protobuf JSON mapping in one place
// that matters here: trace_id, span_id and parent_span_id are written as
// hex strings (32 and 16 digits), not base64. protojson reads them as
// base64 anyway, and does not fail: every hex digit is a base64 digit, and
// 32 (or 16) digits without padding are a whole number of base64 quanta,
// so "5B8EFFF798038103D269B633813FC60C" silently becomes 24 wrong bytes
// (12 for a span id).
//
// Decoding 4k base64 digits without padding into 3k bytes is one to one,
// so those bytes encode back to exactly the digits that were sent: fixIDs
// turns each id of 24 (12) bytes back into its text and reads that as hex.
// Any other length cannot have come from 32 (16) hex digits, and an id
// that is not hex is refused: the body is malformed (400), as the OTLP
// specification requires hex. An empty id (absent, or "") stays empty.

// hexID returns the id of n bytes that protojson read as b.
func hexID(b []byte, n int, field string) ([]byte, error) {
	if len(b) == 0 {
		return b, nil
	}
	if len(b) == n*3/2 {
		text := base64.StdEncoding.EncodeToString(b)
		id := make([]byte, n)
		if _, err := hex.Decode(id, []byte(text)); err == nil {
			return id, nil
		}
	}
	return nil, fmt.Errorf("%s is not %d hex digits", field, 2*n)
}

const (
	traceIDLen = 16
	spanIDLen  = 8
)

// fixIDs reads every id of a JSON-decoded request as hex: spans and their
// links, log records, and metric exemplars.
func fixIDs(m proto.Message) error {
	var err error
	fix := func(b *[]byte, n int, field string) {
		if err != nil {
			return
		}
		*b, err = hexID(*b, n, field)
	}
	switch req := m.(type) {
	case *coltracepb.ExportTraceServiceRequest:
		for _, rs := range req.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				for _, sp := range ss.GetSpans() {
					fix(&sp.TraceId, traceIDLen, "traceId")
					fix(&sp.SpanId, spanIDLen, "spanId")
					fix(&sp.ParentSpanId, spanIDLen, "parentSpanId")
					for _, l := range sp.GetLinks() {
						fix(&l.TraceId, traceIDLen, "links.traceId")
						fix(&l.SpanId, spanIDLen, "links.spanId")
					}
				}
			}
		}
	case *collogspb.ExportLogsServiceRequest:
		for _, rl := range req.GetResourceLogs() {
			for _, sl := range rl.GetScopeLogs() {
				for _, lr := range sl.GetLogRecords() {
					fix(&lr.TraceId, traceIDLen, "traceId")
					fix(&lr.SpanId, spanIDLen, "spanId")
				}
			}
		}
	case *colmetricspb.ExportMetricsServiceRequest:
		for _, rm := range req.GetResourceMetrics() {
			for _, sm := range rm.GetScopeMetrics() {
				for _, mt := range sm.GetMetrics() {
					for _, ex := range exemplars(mt) {
						fix(&ex.TraceId, traceIDLen, "exemplars.traceId")
						fix(&ex.SpanId, spanIDLen, "exemplars.spanId")
					}
				}
			}
		}
	}
	return err
}

// exemplars lists the exemplars of every data point of m (summaries have
// none).
func exemplars(m *metricspb.Metric) []*metricspb.Exemplar {
	var out []*metricspb.Exemplar
	switch d := m.GetData().(type) {
	case *metricspb.Metric_Gauge:
		for _, p := range d.Gauge.GetDataPoints() {
			out = append(out, p.GetExemplars()...)
		}
	case *metricspb.Metric_Sum:
		for _, p := range d.Sum.GetDataPoints() {
			out = append(out, p.GetExemplars()...)
		}
	case *metricspb.Metric_Histogram:
		for _, p := range d.Histogram.GetDataPoints() {
			out = append(out, p.GetExemplars()...)
		}
	case *metricspb.Metric_ExponentialHistogram:
		for _, p := range d.ExponentialHistogram.GetDataPoints() {
			out = append(out, p.GetExemplars()...)
		}
	}
	return out
}

// gRPC status codes used in the google.rpc.Status of an error reply.
const (
	codeInvalidArgument = 3  // 400, 415
	codeNotFound        = 5  // 404
	codeUnimplemented   = 12 // 405
	codeUnavailable     = 14 // 503
)

// statusBody is a google.rpc.Status {code, message}, the body of every
// OTLP/HTTP error reply ("Failures", OTLP specification), in the request's
// encoding. It is written by hand (fields 1 and 2) rather than pulling in
// the googleapis module for one message.
func statusBody(code int32, msg string, asJSON bool) []byte {
	if asJSON {
		// Marshalling a struct of an int and a string cannot fail.
		b, _ := json.Marshal(struct {
			Code    int32  `json:"code"`
			Message string `json:"message"`
		}{code, msg})
		return b
	}
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(code))
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, msg)
	return b
}
