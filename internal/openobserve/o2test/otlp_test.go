package o2test

import (
	"net/http"
	"slices"
	"testing"
	"time"

	colmetricspb "go.opentelemetry.io/proto/slim/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/slim/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/slim/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/slim/otlp/metrics/v1"
	resourcepb "go.opentelemetry.io/proto/slim/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/slim/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

func str(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func metricsRequest() *colmetricspb.ExportMetricsServiceRequest {
	return &colmetricspb.ExportMetricsServiceRequest{ResourceMetrics: []*metricspb.ResourceMetrics{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("faas.name", "orders")}},
		ScopeMetrics: []*metricspb.ScopeMetrics{{Metrics: []*metricspb.Metric{
			{Name: "aws.lambda.enhanced.duration", Unit: "ms", Data: &metricspb.Metric_Gauge{Gauge: &metricspb.Gauge{
				DataPoints: []*metricspb.NumberDataPoint{{Attributes: []*commonpb.KeyValue{str("status", "success")},
					TimeUnixNano: 1_700_000_000_000_000_000, Value: &metricspb.NumberDataPoint_AsDouble{AsDouble: 42.5}}}}}},
			{Name: "aws.lambda.enhanced.invocations", Data: &metricspb.Metric_Sum{Sum: &metricspb.Sum{
				AggregationTemporality: metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_DELTA, IsMonotonic: true,
				DataPoints: []*metricspb.NumberDataPoint{{TimeUnixNano: 1_700_000_000_000_000_000, Value: &metricspb.NumberDataPoint_AsInt{AsInt: 1}}}}}},
		}}},
	}}}
}

func tracesRequest(spanIDLen int) *coltracepb.ExportTraceServiceRequest {
	return &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{{
			TraceId: make([]byte, 16), SpanId: append([]byte{1}, make([]byte, spanIDLen-1)...), Name: "orders",
			Attributes: []*commonpb.KeyValue{str("faas.invocation_id", "r1")},
		}}}},
	}}}
}

func marshal(t *testing.T, m proto.Message, json bool) []byte {
	t.Helper()
	var b []byte
	var err error
	if json {
		b, err = protojson.Marshal(m)
	} else {
		b, err = proto.Marshal(m)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The OTLP routes take exactly application/x-protobuf or application/json
// (with parameters), answer 400 "Bad Request" to anything else, and store
// what they decode.
func TestOTLPContentTypes(t *testing.T) {
	tests := []struct {
		name, path, contentType string
		json                    bool
		wantStatus              int
		wantStored              int
	}{
		{"metrics protobuf", "/api/default/v1/metrics", "application/x-protobuf", false, 200, 2},
		{"metrics json", "/api/default/v1/metrics", "application/json; charset=utf-8", true, 200, 2},
		{"metrics protobuf with parameter", "/api/default/v1/metrics", "application/x-protobuf; proto=x", false, 400, 0},
		{"metrics text", "/api/default/v1/metrics", "text/plain", false, 400, 0},
		{"metrics no content type", "/api/default/v1/metrics", "", false, 400, 0},
		{"metrics protobuf body as json", "/api/default/v1/metrics", "application/json", false, 400, 0},
		{"traces protobuf", "/api/default/v1/traces", "application/x-protobuf", false, 200, 1},
		{"traces no content type is json", "/api/default/v1/traces", "", true, 200, 1},
		{"traces form", "/api/default/v1/traces", "application/x-www-form-urlencoded", false, 400, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(Options{})
			var m proto.Message = metricsRequest()
			if tt.path == "/api/default/v1/traces" {
				m = tracesRequest(8)
			}
			h := authHeader()
			if tt.contentType != "" {
				h.Set("Content-Type", tt.contentType)
			}
			rec := do(t, s.Handler(), http.MethodPost, tt.path, marshal(t, m, tt.json), h)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.wantStatus, rec.Body)
			}
			if n := len(s.Metrics()) + len(s.Spans()); n != tt.wantStored {
				t.Errorf("stored %d, want %d", n, tt.wantStored)
			}
			if rec.Code == 400 && tt.wantStored == 0 && (tt.contentType == "text/plain" || tt.contentType == "") {
				if got := rec.Body.String(); got != `{"code":400,"message":"Bad Request"}` {
					t.Errorf("body %s", got)
				}
			}
			if rec.Code == 200 {
				// The reply is the OTLP response, in the request's encoding.
				if tt.json {
					var r colmetricspb.ExportMetricsServiceResponse
					if err := protojson.Unmarshal(rec.Body.Bytes(), &r); err != nil {
						t.Errorf("json reply %q: %v", rec.Body, err)
					}
				} else if ct := rec.Header().Get("Content-Type"); ct != "application/x-protobuf" {
					t.Errorf("reply content type %q", ct)
				}
			}
		})
	}
}

func TestOTLPStoresAndReplies(t *testing.T) {
	s := New(Options{})
	h := withHeader("Content-Type", "application/x-protobuf")
	h.Set("Content-Encoding", "gzip")
	rec := do(t, s.Handler(), http.MethodPost, "/api/default/v1/metrics", gzipped(t, marshal(t, metricsRequest(), false)), h)
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var resp colmetricspb.ExportMetricsServiceResponse
	if err := proto.Unmarshal(rec.Body.Bytes(), &resp); err != nil || resp.PartialSuccess != nil {
		t.Errorf("reply %v %v", &resp, err)
	}
	ms := s.Metrics()
	if len(ms) != 2 {
		t.Fatalf("%d points", len(ms))
	}
	d := ms[0]
	if d.Stream != "aws_lambda_enhanced_duration" || d.Value != 42.5 || d.Attributes["status"] != "success" || d.Resource["faas.name"] != "orders" {
		t.Errorf("stored %+v", d)
	}
	f := d.Fields()
	if f["faas_name"] != "orders" || f["value"] != 42.5 || f["__name__"] != "aws_lambda_enhanced_duration" || f["_timestamp"] != int64(1_700_000_000_000_000) {
		t.Errorf("fields %v", f)
	}
	if c := ms[1]; c.Kind != "sum" || !c.Monotonic || c.Value != 1 {
		t.Errorf("counter %+v", c)
	}

	// A span with a malformed id is rejected: partial_success.
	rec = do(t, s.Handler(), http.MethodPost, "/api/default/v1/traces", marshal(t, tracesRequest(4), false), withHeader("Content-Type", "application/x-protobuf"))
	var tr coltracepb.ExportTraceServiceResponse
	if err := proto.Unmarshal(rec.Body.Bytes(), &tr); err != nil || rec.Code != 200 || tr.GetPartialSuccess().GetRejectedSpans() != 1 {
		t.Errorf("status %d reply %v %v", rec.Code, &tr, err)
	}
	// As JSON, a partial success is 206.
	rec = do(t, s.Handler(), http.MethodPost, "/api/default/v1/traces", marshal(t, tracesRequest(4), true), withHeader("Content-Type", "application/json"))
	if rec.Code != http.StatusPartialContent {
		t.Errorf("json partial: status %d", rec.Code)
	}
	rec = do(t, s.Handler(), http.MethodPost, "/api/default/v1/traces", marshal(t, tracesRequest(8), false), withHeader("Content-Type", "application/x-protobuf"))
	sp := s.Spans()
	if rec.Code != 200 || len(sp) != 1 || sp[0].SpanID != "0100000000000000" || sp[0].Stream != "default" || sp[0].Attributes["faas.invocation_id"] != "r1" {
		t.Errorf("status %d spans %+v", rec.Code, sp)
	}
	if n := len(s.OTLPRequests()); n != 4 || s.Calls() != 0 || len(s.Requests()) != 0 {
		t.Errorf("OTLP requests %d, _json calls %d, requests %d", n, s.Calls(), len(s.Requests()))
	}
}

// Decompression, authentication and the org check come first, as for
// `_json`; a body that does not decode is 400.
func TestOTLPErrors(t *testing.T) {
	s := New(Options{Orgs: []string{"default"}, NoAutoCreateOrg: true})
	body := marshal(t, metricsRequest(), false)
	ct := http.Header{"Content-Type": {"application/x-protobuf"}}
	if rec := do(t, s.Handler(), http.MethodPost, "/api/default/v1/metrics", body, ct); rec.Code != 401 {
		t.Errorf("no auth: %d", rec.Code)
	}
	h := withHeader("Content-Type", "application/x-protobuf")
	if rec := do(t, s.Handler(), http.MethodPost, "/api/other/v1/metrics", body, h); rec.Code != 404 {
		t.Errorf("unknown org: %d", rec.Code)
	}
	h.Set("Content-Encoding", "br")
	if rec := do(t, s.Handler(), http.MethodPost, "/api/default/v1/metrics", body, h); rec.Code != 415 {
		t.Errorf("br: %d", rec.Code)
	}
	h.Del("Content-Encoding")
	if rec := do(t, s.Handler(), http.MethodPost, "/api/default/v1/metrics", []byte("\xff\xff\xff"), h); rec.Code != 400 {
		t.Errorf("garbage: %d %s", rec.Code, rec.Body)
	}
	if rec := do(t, s.Handler(), http.MethodGet, "/api/default/v1/traces", nil, h); rec.Code != 405 {
		t.Errorf("GET: %d", rec.Code)
	}
	if len(s.Metrics()) != 0 {
		t.Error("stored from a refused request")
	}
}

// SetOTLPFaultFunc faults the n-th OTLP request (counted across signals)
// with its status, storing nothing of it; the others are stored, each item
// with the time it was stored; Reset clears the func and the count.
func TestOTLPFaultFunc(t *testing.T) {
	s := New(Options{})
	var ns []int
	s.SetOTLPFaultFunc(func(n int, r *http.Request) *Fault {
		ns = append(ns, n)
		if n == 2 {
			return &Fault{Status: 503, RetryAfter: "1"}
		}
		return nil
	})
	h := withHeader("Content-Type", "application/x-protobuf")
	before := time.Now()
	for i, want := range []int{200, 503, 200} {
		path, m := "/api/default/v1/traces", proto.Message(tracesRequest(8))
		if i == 2 {
			path, m = "/api/default/v1/metrics", metricsRequest()
		}
		rec := do(t, s.Handler(), http.MethodPost, path, marshal(t, m, false), h)
		if rec.Code != want {
			t.Fatalf("request %d: status %d, want %d: %s", i+1, rec.Code, want, rec.Body)
		}
		if want == 503 && rec.Header().Get("Retry-After") != "1" {
			t.Errorf("503 without its Retry-After: %v", rec.Header())
		}
	}
	if !slices.Equal(ns, []int{1, 2, 3}) {
		t.Errorf("fault func called with %v, want [1 2 3]", ns)
	}
	if len(s.Spans()) != 1 || len(s.Metrics()) != 2 {
		t.Fatalf("stored %d spans and %d points, want 1 and 2", len(s.Spans()), len(s.Metrics()))
	}
	if st := s.Spans()[0].Stored; st.Before(before) || st.After(time.Now()) {
		t.Errorf("span stored at %v, not during the test", st)
	}
	if reqs := s.OTLPRequests(); len(reqs) != 3 || reqs[1].Status != 503 || reqs[0].Time.Before(before) {
		t.Errorf("requests %+v", reqs)
	}
	s.Reset()
	if rec := do(t, s.Handler(), http.MethodPost, "/api/default/v1/traces", marshal(t, tracesRequest(8), false), h); rec.Code != 200 || len(ns) != 3 {
		t.Errorf("after Reset: status %d, fault func calls %d", rec.Code, len(ns))
	}
}

// A histogram's data points are stored with their attributes, count and
// sum.
func TestOTLPHistogramPoints(t *testing.T) {
	s := New(Options{})
	req := &colmetricspb.ExportMetricsServiceRequest{ResourceMetrics: []*metricspb.ResourceMetrics{{
		ScopeMetrics: []*metricspb.ScopeMetrics{{Metrics: []*metricspb.Metric{
			{Name: "work.duration", Unit: "ms", Data: &metricspb.Metric_Histogram{Histogram: &metricspb.Histogram{
				AggregationTemporality: metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE,
				DataPoints: []*metricspb.HistogramDataPoint{{Attributes: []*commonpb.KeyValue{str("k", "v")},
					TimeUnixNano: 1_700_000_000_000_000_000, Count: 3, Sum: proto.Float64(37.5)}}}}},
		}}},
	}}}
	rec := do(t, s.Handler(), http.MethodPost, "/api/default/v1/metrics", marshal(t, req, false), withHeader("Content-Type", "application/x-protobuf"))
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	pts := s.Metrics()
	if len(pts) != 1 || pts[0].Kind != "histogram" || pts[0].Count != 3 || pts[0].Sum != 37.5 || pts[0].Attributes["k"] != "v" {
		t.Fatalf("stored %+v", pts)
	}
}
