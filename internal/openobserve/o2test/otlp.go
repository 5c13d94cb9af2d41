package o2test

import (
	"cmp"
	"encoding/hex"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"time"

	colmetricspb "go.opentelemetry.io/proto/slim/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/slim/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/slim/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/slim/otlp/metrics/v1"
	tracepb "go.opentelemetry.io/proto/slim/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// The OTLP/HTTP ingestion routes, as OpenObserve serves them at HEAD
// fbab9b80 (openobserve-api.md §12): router
// src/api/http/src/handler/http/router/mod.rs lines 786-787
// (`/{org_id}/v1/metrics` -> metrics::ingest::otlp_metrics_write,
// `/{org_id}/v1/traces` -> traces::traces_write), behind the same
// decompression and authentication middleware as `_json`.
//
// Content types (src/api/ingest/src/request/metrics/ingest.rs lines
// 138-155, src/api/search/src/traces/mod.rs lines 124-150): exactly
// "application/x-protobuf" is protobuf; anything starting with
// "application/json" is OTLP JSON; everything else gets 400 "Bad Request".
// A request without Content-Type is 400 for metrics but JSON for traces
// (its handler defaults the header to "application/json", traces/mod.rs
// line 129).
//
// Replies (src/core/src/metrics/otlp.rs format_response, lines 1137-1176;
// src/core/src/traces/mod.rs format_response, lines 1313-1346): protobuf
// requests get 200 application/x-protobuf with the encoded
// Export…ServiceResponse, its partial_success set only when something was
// rejected; JSON requests get JSON, 206 Partial Content when something was
// rejected. A body that does not decode is 400 "Invalid proto: …" or
// "Invalid json: …" (otlp_proto / otlp_json in the same files).
//
// Storage: each metric goes to the metrics stream named after it,
// normalised like any stream (format_stream_name: aws.lambda.x ->
// aws_lambda_x), one record per data point with the resource's and the
// point's attributes as columns under normalised keys, "__name__", "value"
// and "_timestamp" (µs) (metrics/otlp.rs lines 187-230 and
// process_data_point, lines 899-917). Spans go to the traces stream named
// by the "stream-name" header (api/search/src/traces/mod.rs line 139),
// "default" without it (core/src/traces/mod.rs line 407), with trace_id and span_id as lower-case hex; a span whose
// trace id is not 16 bytes or span id not 8 is rejected (lines 502-515).

const (
	contentTypeProto = "application/x-protobuf"
	contentTypeJSON  = "application/json"
)

// Metric is one stored data point.
type Metric struct {
	Org string
	// Name is the metric's name as sent; Stream the metrics stream it is
	// stored in (the name normalised).
	Name, Stream string
	Unit         string
	// Kind is "gauge", "sum", "histogram", "exponential_histogram" or
	// "summary"; only gauge and sum points carry a Value, only histogram
	// points (both kinds) a Count and Sum. Summary points are not stored.
	Kind  string
	Value float64
	Count uint64
	Sum   float64
	// Temporality is a sum's or a histogram's; Monotonic a sum's.
	Temporality      metricspb.AggregationTemporality
	Monotonic        bool
	Time, StartTime  time.Time
	Attributes       map[string]any // the data point's, keys as sent
	Resource         map[string]any // the resource's, keys as sent
	ScopeName, Scope string         // instrumentation scope name and version
	// Stored is when the stand-in stored it (before it answered).
	Stored time.Time
}

// Fields is the record OpenObserve stores for the point: normalised column
// names (see the comment above), as a dashboard query sees them.
func (m Metric) Fields() map[string]any {
	f := map[string]any{}
	for k, v := range m.Resource {
		f[NormalizeKey(k)] = v
	}
	for k, v := range m.Attributes {
		f[NormalizeKey(k)] = v
	}
	f["__name__"] = m.Stream
	f["__type__"] = m.Kind
	f["value"] = m.Value
	f["_timestamp"] = m.Time.UnixMicro()
	f["start_time"] = fmt.Sprint(m.StartTime.UnixNano())
	if m.Kind == "sum" {
		f["is_monotonic"] = fmt.Sprint(m.Monotonic)
		f["aggregation_temporality"] = m.Temporality.String()
	}
	return f
}

// Span is one stored span.
type Span struct {
	Org, Stream string
	// TraceID, SpanID and ParentSpanID are lower-case hex; ParentSpanID is
	// empty for a root.
	TraceID, SpanID, ParentSpanID string
	Name                          string
	Kind                          tracepb.Span_SpanKind
	Start, End                    time.Time
	Attributes                    map[string]any
	Resource                      map[string]any
	StatusCode                    tracepb.Status_StatusCode
	StatusMessage                 string
	// Stored is when the stand-in stored it (before it answered).
	Stored time.Time
}

// OTLPRequest is one request to an OTLP route.
type OTLPRequest struct {
	// Time is when it was received.
	Time        time.Time
	Path        string
	Header      http.Header
	ContentType string
	// Body is after decompression.
	Body   []byte
	Status int
}

// otlpStore is the part of the Server's state for the OTLP routes; it is
// guarded by Server.mu.
type otlpStore struct {
	metrics []Metric
	spans   []Span
	logs    []LogRecord // otlplogs.go
	reqs    []OTLPRequest
	// calls counts the requests; faultFunc picks their faults.
	calls     int
	faultFunc func(n int, r *http.Request) *Fault
}

// SetOTLPFaultFunc sets the policy for the n-th (1-based, counted since New
// or Reset) request to an OTLP route, like SetFaultFunc for `_json`; nil
// clears it, and a nil return means no fault. Of a Fault only Delay,
// Status, RetryAfter and Message apply. f is called without any lock held.
func (s *Server) SetOTLPFaultFunc(f func(n int, r *http.Request) *Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.otlp.faultFunc = f
}

// Metrics returns the stored data points, in arrival order.
func (s *Server) Metrics() []Metric {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Metric, len(s.otlp.metrics))
	for i, m := range s.otlp.metrics {
		m.Attributes, m.Resource = maps.Clone(m.Attributes), maps.Clone(m.Resource)
		out[i] = m
	}
	return out
}

// Spans returns the stored spans, in arrival order.
func (s *Server) Spans() []Span {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Span, len(s.otlp.spans))
	for i, sp := range s.otlp.spans {
		sp.Attributes, sp.Resource = maps.Clone(sp.Attributes), maps.Clone(sp.Resource)
		out[i] = sp
	}
	return out
}

// OTLPRequests returns the requests to the OTLP routes (they are not in
// Requests, which the `_json` tests count).
func (s *Server) OTLPRequests() []OTLPRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]OTLPRequest, len(s.otlp.reqs))
	for i, r := range s.otlp.reqs {
		r.Header = r.Header.Clone()
		r.Body = cloneBytes(r.Body)
		out[i] = r
	}
	return out
}

// matchOTLPRoute splits /api/{org}/v1/metrics, /v1/traces or /v1/logs.
func matchOTLPRoute(path string) (org, signal string, ok bool) {
	rest, ok := strings.CutPrefix(path, "/api/")
	if !ok {
		return "", "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || parts[1] != "v1" || (parts[2] != "metrics" && parts[2] != "traces" && parts[2] != "logs") {
		return "", "", false
	}
	return parts[0], parts[2], true
}

// serveOTLP handles a request to an OTLP route.
func (s *Server) serveOTLP(w http.ResponseWriter, r *http.Request, rawOrg, signal string) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	received := time.Now()
	s.mu.Lock()
	s.otlp.calls++
	n, ff := s.otlp.calls, s.otlp.faultFunc
	s.mu.Unlock()
	var f *Fault
	if ff != nil {
		f = ff(n, r)
	}
	b := s.readBody(r)
	if f != nil && !s.pause(r.Context(), f.Delay) {
		s.abandon(w, r)
		return
	}
	var rep reply
	if f != nil && f.Status != 0 {
		rep = jsonReply(f.Status, errorBody{Code: f.Status, Message: cmp.Or(f.Message, http.StatusText(f.Status), "injected fault")})
		if f.RetryAfter != "" {
			rep.header.Set("Retry-After", f.RetryAfter)
		}
	} else {
		rep = s.processOTLP(r, rawOrg, signal, b)
	}
	s.mu.Lock()
	s.otlp.reqs = append(s.otlp.reqs, OTLPRequest{
		Time: received, Path: r.URL.EscapedPath(), Header: r.Header.Clone(), ContentType: r.Header.Get("Content-Type"),
		Body: b.data, Status: rep.status,
	})
	s.notifyLocked()
	s.mu.Unlock()
	for k, v := range rep.header {
		w.Header()[k] = v
	}
	w.WriteHeader(rep.status)
	if len(rep.body) > 0 {
		_, _ = w.Write(rep.body)
	}
}

// processOTLP answers in OpenObserve's order: encoding (415), auth (401)
// and the organization rules (orgs.go: 401, 404, or the org created),
// body errors (413/400), content type (400), decoding (400), then
// ingestion; what it stores is stored before the reply is written. Logs
// have their own rules for the rest (otlplogs.go).
func (s *Server) processOTLP(r *http.Request, rawOrg, signal string, b bodyResult) reply {
	if b.status == http.StatusUnsupportedMediaType {
		return reply{status: b.status, header: http.Header{"Accept-Encoding": {"gzip,deflate"}}}
	}
	// Authentication and the organization rules of every ingestion write
	// (orgs.go), as for `_json`.
	org, err := unescapeSegment(rawOrg)
	if rep, ok := s.authorize(r.Header, org, ingestionWrite); !ok {
		return rep
	}
	if err != nil {
		return textReply(http.StatusBadRequest, "Invalid URL: "+err.Error())
	}
	if b.status != 0 {
		return textReply(b.status, b.msg)
	}
	if signal == "logs" {
		return s.processOTLPLogs(r, org, b.data) // otlplogs.go
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" && signal == "traces" {
		ct = contentTypeJSON
	}
	var asJSON bool
	switch {
	case ct == contentTypeProto:
	case strings.HasPrefix(ct, contentTypeJSON):
		asJSON = true
	default:
		return jsonReply(http.StatusBadRequest, errorBody{Code: 400, Message: "Bad Request"})
	}
	unmarshal := func(m proto.Message) error {
		if asJSON {
			return protojson.Unmarshal(b.data, m)
		}
		return proto.Unmarshal(b.data, m)
	}
	invalid := func(err error) reply {
		kind := "proto"
		if asJSON {
			kind = "json"
		}
		return jsonReply(http.StatusBadRequest, errorBody{Code: 400, Message: "Invalid " + kind + ": " + err.Error()})
	}
	var resp proto.Message
	var rejected int64
	if signal == "metrics" {
		var req colmetricspb.ExportMetricsServiceRequest
		if err := unmarshal(&req); err != nil {
			return invalid(err)
		}
		var pts []Metric
		pts, rejected = metricPoints(org, &req)
		now := time.Now()
		for i := range pts {
			pts[i].Stored = now
		}
		s.mu.Lock()
		s.otlp.metrics = append(s.otlp.metrics, pts...)
		s.mu.Unlock()
		res := &colmetricspb.ExportMetricsServiceResponse{}
		if rejected > 0 {
			res.PartialSuccess = &colmetricspb.ExportMetricsPartialSuccess{RejectedDataPoints: rejected, ErrorMessage: "Some data points were rejected"}
		}
		resp = res
	} else {
		var req coltracepb.ExportTraceServiceRequest
		if err := unmarshal(&req); err != nil {
			return invalid(err)
		}
		stream := r.Header.Get("stream-name")
		if stream == "" {
			stream = "default"
		}
		var spans []Span
		spans, rejected = traceSpans(org, NormalizeStream(stream), &req)
		now := time.Now()
		for i := range spans {
			spans[i].Stored = now
		}
		s.mu.Lock()
		s.otlp.spans = append(s.otlp.spans, spans...)
		s.mu.Unlock()
		res := &coltracepb.ExportTraceServiceResponse{}
		if rejected > 0 {
			res.PartialSuccess = &coltracepb.ExportTracePartialSuccess{RejectedSpans: rejected, ErrorMessage: "Some spans were rejected"}
		}
		resp = res
	}
	if asJSON {
		out, _ := protojson.Marshal(resp)
		status := http.StatusOK
		if rejected > 0 {
			status = http.StatusPartialContent
		}
		return reply{status: status, header: http.Header{"Content-Type": {contentTypeJSON}}, body: out}
	}
	out, _ := proto.Marshal(resp)
	return reply{status: http.StatusOK, header: http.Header{"Content-Type": {contentTypeProto}}, body: out}
}

// histPoint is a histogram's data point: base with the point's fields.
func histPoint(base Metric, attrs []*commonpb.KeyValue, t, start, count uint64, sum float64) Metric {
	base.Attributes = attrMap(attrs)
	base.Time, base.StartTime = time.Unix(0, int64(t)), time.Unix(0, int64(start))
	base.Count, base.Sum = count, sum
	return base
}

// metricPoints flattens a request into data points; a metric without data
// counts as one rejected point.
func metricPoints(org string, req *colmetricspb.ExportMetricsServiceRequest) ([]Metric, int64) {
	var out []Metric
	var rejected int64
	for _, rm := range req.GetResourceMetrics() {
		res := attrMap(rm.GetResource().GetAttributes())
		for _, sm := range rm.GetScopeMetrics() {
			for _, m := range sm.GetMetrics() {
				base := Metric{
					Org: org, Name: m.GetName(), Stream: NormalizeStream(m.GetName()), Unit: m.GetUnit(),
					Resource: res, ScopeName: sm.GetScope().GetName(), Scope: sm.GetScope().GetVersion(),
				}
				var dps []*metricspb.NumberDataPoint
				switch d := m.GetData().(type) {
				case *metricspb.Metric_Gauge:
					base.Kind, dps = "gauge", d.Gauge.GetDataPoints()
				case *metricspb.Metric_Sum:
					base.Kind, dps = "sum", d.Sum.GetDataPoints()
					base.Temporality, base.Monotonic = d.Sum.GetAggregationTemporality(), d.Sum.GetIsMonotonic()
				case *metricspb.Metric_Histogram:
					base.Kind = "histogram"
					base.Temporality = d.Histogram.GetAggregationTemporality()
					for _, dp := range d.Histogram.GetDataPoints() {
						out = append(out, histPoint(base, dp.GetAttributes(), dp.GetTimeUnixNano(), dp.GetStartTimeUnixNano(), dp.GetCount(), dp.GetSum()))
					}
				case *metricspb.Metric_ExponentialHistogram:
					base.Kind = "exponential_histogram"
					base.Temporality = d.ExponentialHistogram.GetAggregationTemporality()
					for _, dp := range d.ExponentialHistogram.GetDataPoints() {
						out = append(out, histPoint(base, dp.GetAttributes(), dp.GetTimeUnixNano(), dp.GetStartTimeUnixNano(), dp.GetCount(), dp.GetSum()))
					}
				case *metricspb.Metric_Summary:
					base.Kind = "summary"
				default:
					rejected++
					continue
				}
				for _, dp := range dps {
					p := base
					p.Attributes = attrMap(dp.GetAttributes())
					p.Time = time.Unix(0, int64(dp.GetTimeUnixNano()))
					p.StartTime = time.Unix(0, int64(dp.GetStartTimeUnixNano()))
					switch v := dp.GetValue().(type) {
					case *metricspb.NumberDataPoint_AsDouble:
						p.Value = v.AsDouble
					case *metricspb.NumberDataPoint_AsInt:
						p.Value = float64(v.AsInt)
					}
					out = append(out, p)
				}
			}
		}
	}
	return out, rejected
}

// traceSpans flattens a request into spans, rejecting malformed ids.
func traceSpans(org, stream string, req *coltracepb.ExportTraceServiceRequest) ([]Span, int64) {
	var out []Span
	var rejected int64
	for _, rs := range req.GetResourceSpans() {
		res := attrMap(rs.GetResource().GetAttributes())
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				if len(sp.GetTraceId()) != 16 || len(sp.GetSpanId()) != 8 {
					rejected++
					continue
				}
				parent := ""
				if len(sp.GetParentSpanId()) == 8 {
					parent = hex.EncodeToString(sp.GetParentSpanId())
				}
				out = append(out, Span{
					Org: org, Stream: stream,
					TraceID: hex.EncodeToString(sp.GetTraceId()), SpanID: hex.EncodeToString(sp.GetSpanId()), ParentSpanID: parent,
					Name: sp.GetName(), Kind: sp.GetKind(),
					Start: time.Unix(0, int64(sp.GetStartTimeUnixNano())), End: time.Unix(0, int64(sp.GetEndTimeUnixNano())),
					Attributes: attrMap(sp.GetAttributes()), Resource: res,
					StatusCode: sp.GetStatus().GetCode(), StatusMessage: sp.GetStatus().GetMessage(),
				})
			}
		}
	}
	return out, rejected
}

// attrMap turns attributes into Go values: string, bool, int64, float64,
// or the value's JSON text for arrays, maps and bytes.
func attrMap(kvs []*commonpb.KeyValue) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		v := kv.GetValue()
		switch x := v.GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			m[kv.GetKey()] = x.StringValue
		case *commonpb.AnyValue_BoolValue:
			m[kv.GetKey()] = x.BoolValue
		case *commonpb.AnyValue_IntValue:
			m[kv.GetKey()] = x.IntValue
		case *commonpb.AnyValue_DoubleValue:
			m[kv.GetKey()] = x.DoubleValue
		default:
			b, _ := protojson.Marshal(v)
			m[kv.GetKey()] = string(b)
		}
	}
	return m
}
