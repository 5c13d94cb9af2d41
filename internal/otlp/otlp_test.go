package otlp

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	colmetricspb "go.opentelemetry.io/proto/slim/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/slim/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/slim/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/slim/otlp/metrics/v1"
	tracepb "go.opentelemetry.io/proto/slim/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/o2-extension/o2-extension/internal/telemetry"
)

// The known pair of AWS's X-Ray documentation and OpenTelemetry's X-Ray
// propagator: the W3C trace id is the epoch's 8 hex digits, then the
// unique id's 24.
func TestParseXRay(t *testing.T) {
	x, ok := ParseXRay("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
	if !ok {
		t.Fatal("not parsed")
	}
	if got := x.Trace.String(); got != "5759e988bd862e3fe1be46a994272793" {
		t.Errorf("trace id = %s", got)
	}
	if got := x.Parent.String(); got != "53995c3f42cd8ad8" || !x.Sampled {
		t.Errorf("parent = %s sampled = %v", got, x.Sampled)
	}
	for _, v := range []string{
		"", "Root=1-5759e988-bd862e3fe1be46a99427279", "Root=2-5759e988-bd862e3fe1be46a994272793",
		"Root=1-5759e98g-bd862e3fe1be46a994272793", "Parent=53995c3f42cd8ad8",
		"Root=1-00000000-000000000000000000000000",
	} {
		if _, ok := ParseXRay(v); ok {
			t.Errorf("ParseXRay(%q) ok", v)
		}
	}
	// Order and a Lineage field do not matter; a bad Parent is left out.
	x, ok = ParseXRay("Sampled=0;Lineage=a:1;Parent=zz;Root=1-5759E988-BD862E3FE1BE46A994272793")
	if !ok || x.Trace.String() != "5759e988bd862e3fe1be46a994272793" || !x.Parent.IsZero() || x.Sampled {
		t.Errorf("got %+v %v", x, ok)
	}
}

func TestRequestTraceID(t *testing.T) {
	if got := RequestTraceID("0c1f9a52-7d1e-4b8e-9a64-2f3c5d7e9b10").String(); got != "0c1f9a527d1e4b8e9a642f3c5d7e9b10" {
		t.Errorf("UUID: %s", got)
	}
	a, b := RequestTraceID("not-a-uuid"), RequestTraceID("not-a-uuid")
	if a != b || a.IsZero() || a == RequestTraceID("other") {
		t.Errorf("hash ids %s %s", a, b)
	}
	if DeriveSpanID("r", "x") == DeriveSpanID("r", "y") || DeriveSpanID("r", "x") != DeriveSpanID("r", "x") {
		t.Error("span ids not distinct per name or not stable")
	}
}

const (
	reqA  = "0c1f9a52-7d1e-4b8e-9a64-2f3c5d7e9b10"
	reqB  = "11111111-2222-4333-8444-555555555555"
	xrayA = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
)

var t0 = time.Date(2025, 6, 1, 8, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func ts(ms int) string { return at(ms).Format("2006-01-02T15:04:05.000Z") }

// ev makes a platform event with requestId taken from the record.
func ev(ms int, typ, rec string) telemetry.Event {
	e := telemetry.Event{Time: at(ms), Type: typ, Record: json.RawMessage(rec)}
	var f struct {
		RequestID string `json:"requestId"`
	}
	_ = json.Unmarshal(e.Record, &f)
	e.RequestID = f.RequestID
	return e
}

// coldStart is lambda-platform.md §2.5's example, with an OOM error.
func coldStart(status, errorType string, maxMem int) []telemetry.Event {
	errField := ""
	if errorType != "" {
		errField = `,"errorType":"` + errorType + `"`
	}
	return []telemetry.Event{
		ev(0, "platform.initStart", `{"initializationType":"on-demand","phase":"init","functionName":"orders","functionVersion":"$LATEST"}`),
		ev(190, "platform.initRuntimeDone", `{"initializationType":"on-demand","phase":"init","status":"success"}`),
		ev(192, "platform.initReport", `{"initializationType":"on-demand","phase":"init","status":"success","metrics":{"durationMs":191.7},"spans":[{"name":"runtimeInit","start":"`+ts(1)+`","durationMs":180.5}]}`),
		ev(195, "platform.start", `{"requestId":"`+reqA+`","version":"$LATEST","tracing":{"type":"X-Amzn-Trace-Id","value":"`+xrayA+`"}}`),
		{Time: at(200), Type: "function", Record: json.RawMessage(`"order 42 accepted"`), RequestID: reqA},
		ev(231, "platform.runtimeDone", `{"requestId":"`+reqA+`","status":"`+status+`"`+errField+`,"metrics":{"durationMs":35.8,"producedBytes":27},"spans":[{"name":"responseLatency","start":"`+ts(195)+`","durationMs":34.9},{"name":"responseDuration","start":"`+ts(230)+`","durationMs":0.1},{"name":"runtimeOverhead","start":"`+ts(230)+`","durationMs":0.6}]}`),
		ev(238, "platform.report", fmt.Sprintf(`{"requestId":"%s","status":"%s"%s,"metrics":{"durationMs":42.6,"billedDurationMs":43,"memorySizeMB":512,"maxMemoryUsedMB":%d,"initDurationMs":191.7},"spans":[{"name":"extensionOverhead","start":"%s","durationMs":6.8}]}`, reqA, status, errField, maxMem, ts(231))),
	}
}

// run feeds evs as the extension does (Annotate before buffering, Observe
// after) and returns the annotated events and what Observe produced.
func run(b *Builder, evs []telemetry.Event) (annotated, out []telemetry.Event) {
	for i := range evs {
		b.Annotate(&evs[i])
	}
	for i := range evs {
		out = append(out, b.Observe(&evs[i], time.Time{})...)
	}
	return evs, out
}

func newBuilder() *Builder {
	return New(Options{Metrics: true, Traces: true, Version: "test", Resource: Resource{
		ServiceName: "orders-svc", FunctionName: "orders", FunctionVersion: "$LATEST", Region: "eu-west-1", MemoryMB: 512,
	}})
}

// point is one decoded data point.
type point struct {
	value float64
	attrs map[string]string
	kind  string
}

func decodeMetrics(t *testing.T, evs []telemetry.Event) (map[string]point, []*commonpb.KeyValue) {
	t.Helper()
	var body []byte
	for _, e := range evs {
		if e.Type == MetricsType {
			body = append(body, e.Record...) // as the client concatenates them
		}
	}
	var req colmetricspb.ExportMetricsServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		t.Fatal(err)
	}
	out := map[string]point{}
	var res []*commonpb.KeyValue
	for _, rm := range req.ResourceMetrics {
		res = rm.Resource.Attributes
		for _, m := range rm.ScopeMetrics[0].Metrics {
			var dp *metricspb.NumberDataPoint
			p := point{attrs: map[string]string{}}
			switch d := m.Data.(type) {
			case *metricspb.Metric_Gauge:
				dp, p.kind = d.Gauge.DataPoints[0], "gauge"
			case *metricspb.Metric_Sum:
				dp, p.kind = d.Sum.DataPoints[0], "sum"
				if d.Sum.AggregationTemporality != metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_DELTA || !d.Sum.IsMonotonic {
					t.Errorf("%s is not a delta counter", m.Name)
				}
			}
			p.value = dp.GetAsDouble() + float64(dp.GetAsInt())
			for _, kv := range dp.Attributes {
				p.attrs[kv.Key] = kv.Value.GetStringValue()
			}
			if _, dup := out[m.Name]; dup {
				t.Errorf("%s twice", m.Name)
			}
			out[m.Name] = p
		}
	}
	return out, res
}

func TestInvocationMetrics(t *testing.T) {
	_, out := run(newBuilder(), coldStart("success", "", 78))
	got, res := decodeMetrics(t, out)
	want := map[string]float64{
		MetricDuration: 42.6, MetricBilledDuration: 43, MetricInitDuration: 191.7, MetricMemorySize: 512,
		MetricMaxMemoryUsed: 78, MetricMemoryUtilization: 78.0 / 512, MetricPostRuntimeDuration: 6.8,
		MetricRuntimeDuration: 35.8, MetricProducedBytes: 27, MetricResponseLatency: 34.9,
		MetricResponseDuration: 0.1, MetricRuntimeOverhead: 0.6,
		MetricInvocations: 1, MetricErrors: 0, MetricTimeouts: 0, MetricOutOfMemory: 0, MetricColdStarts: 1,
		MetricInitPhaseDuration: 191.7, MetricInitErrors: 0,
	}
	for name, v := range want {
		p, ok := got[name]
		if !ok {
			t.Errorf("no %s", name)
			continue
		}
		if p.value != v {
			t.Errorf("%s = %v, want %v", name, p.value, v)
		}
	}
	if _, ok := got[MetricRestoreDuration]; ok {
		t.Error("restore_duration without restoreDurationMs")
	}
	if len(got) != len(want) {
		t.Errorf("%d metrics, want %d", len(got), len(want))
	}
	// Labels: low cardinality, no request id.
	if a := got[MetricDuration].attrs; len(a) != 2 || a[AttrStatus] != "success" || a[AttrColdStart] != "true" {
		t.Errorf("labels %v", a)
	}
	if a := got[MetricInitErrors].attrs; a[AttrInitType] != "on-demand" || a[AttrStatus] != "success" {
		t.Errorf("init labels %v", a)
	}
	resource := map[string]any{}
	for _, kv := range res {
		if v, ok := kv.Value.Value.(*commonpb.AnyValue_IntValue); ok {
			resource[kv.Key] = v.IntValue
		} else {
			resource[kv.Key] = kv.Value.GetStringValue()
		}
	}
	for k, v := range map[string]any{"cloud.provider": "aws", "faas.name": "orders", "faas.version": "$LATEST",
		"cloud.region": "eu-west-1", "faas.max_memory": int64(512 << 20), "service.name": "orders-svc"} {
		if resource[k] != v {
			t.Errorf("resource %s = %v, want %v", k, resource[k], v)
		}
	}
}

// Out-of-memory comes from the error type, or from a failure at the memory
// limit; peak memory at the limit alone is no OOM.
func TestOutOfMemory(t *testing.T) {
	tests := []struct {
		name, status, errorType string
		maxMem                  int
		errors, timeouts, oom   float64
	}{
		{"success", "success", "", 78, 0, 0, 0},
		{"runtime error type", "error", "Runtime.OutOfMemory", 100, 1, 0, 1},
		{"failure at the limit", "error", "Runtime.ExitError", 512, 1, 0, 1},
		{"success at the limit", "success", "", 512, 0, 0, 0},
		{"other error", "error", "Runtime.ExitError", 100, 1, 0, 0},
		{"timeout", "timeout", "Sandbox.Timedout", 100, 1, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, out := run(newBuilder(), coldStart(tt.status, tt.errorType, tt.maxMem))
			got, _ := decodeMetrics(t, out)
			if got[MetricErrors].value != tt.errors || got[MetricTimeouts].value != tt.timeouts || got[MetricOutOfMemory].value != tt.oom {
				t.Errorf("errors %v timeouts %v oom %v, want %v %v %v", got[MetricErrors].value,
					got[MetricTimeouts].value, got[MetricOutOfMemory].value, tt.errors, tt.timeouts, tt.oom)
			}
			if s := got[MetricDuration].attrs[AttrStatus]; s != tt.status {
				t.Errorf("status label %q", s)
			}
		})
	}
}

// Without an extensionOverhead span, the post-runtime time is the report's
// duration minus runtimeDone's.
func TestPostRuntimeDerived(t *testing.T) {
	evs := coldStart("success", "", 78)
	last := &evs[len(evs)-1]
	*last = ev(238, "platform.report", `{"requestId":"`+reqA+`","status":"success","metrics":{"durationMs":42.6,"billedDurationMs":43,"memorySizeMB":512,"maxMemoryUsedMB":78}}`)
	_, out := run(newBuilder(), evs)
	got, _ := decodeMetrics(t, out)
	if v := got[MetricPostRuntimeDuration].value; v < 6.79 || v > 6.81 {
		t.Errorf("post-runtime = %v, want 42.6-35.8", v)
	}
}

func TestTraceShape(t *testing.T) {
	annotated, out := run(newBuilder(), coldStart("error", "Runtime.OutOfMemory", 100))
	var body []byte
	for _, e := range out {
		if e.Type == TracesType {
			body = append(body, e.Record...)
		}
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		t.Fatal(err)
	}
	spans := req.ResourceSpans[0].ScopeSpans[0].Spans
	byName := map[string]*tracepb.Span{}
	for _, s := range spans {
		byName[s.Name] = s
		if TraceID(s.TraceId).String() != "5759e988bd862e3fe1be46a994272793" {
			t.Errorf("%s in trace %x", s.Name, s.TraceId)
		}
	}
	root := byName["orders"]
	if root == nil {
		t.Fatalf("no root span: %v", spans)
	}
	if SpanID(root.ParentSpanId).String() != "53995c3f42cd8ad8" || root.Kind != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("root parent %x kind %v", root.ParentSpanId, root.Kind)
	}
	if root.Status.Code != tracepb.Status_STATUS_CODE_ERROR || root.Status.Message != "error: Runtime.OutOfMemory" {
		t.Errorf("root status %v", root.Status)
	}
	if unixNano(at(195)) != root.StartTimeUnixNano || root.EndTimeUnixNano != unixNano(at(195).Add(35800*time.Microsecond)) {
		t.Errorf("root %d..%d", root.StartTimeUnixNano, root.EndTimeUnixNano)
	}
	attrs := map[string]string{}
	for _, kv := range root.Attributes {
		attrs[kv.Key] = kv.Value.GetStringValue()
	}
	if attrs["faas.invocation_id"] != reqA || attrs["error.type"] != "Runtime.OutOfMemory" {
		t.Errorf("root attributes %v", attrs)
	}
	parents := map[string]string{}
	for _, s := range spans {
		if s != root {
			for _, p := range spans {
				if string(p.SpanId) == string(s.ParentSpanId) {
					parents[s.Name] = p.Name
				}
			}
		}
	}
	want := map[string]string{
		"responseLatency": "orders", "responseDuration": "orders", "runtimeOverhead": "orders",
		SpanPostRuntime: "orders", SpanInit: "orders", "init.runtimeInit": SpanInit,
	}
	if fmt.Sprint(parents) != fmt.Sprint(want) {
		t.Errorf("tree %v, want %v", parents, want)
	}
	if p := byName[SpanPostRuntime]; p.StartTimeUnixNano != unixNano(at(231)) || p.EndTimeUnixNano != unixNano(at(231).Add(6800*time.Microsecond)) {
		t.Errorf("post-runtime span %d..%d", p.StartTimeUnixNano, p.EndTimeUnixNano)
	}
	if i := byName[SpanInit]; i.StartTimeUnixNano != unixNano(at(0)) || i.EndTimeUnixNano != unixNano(at(190)) {
		t.Errorf("init span %d..%d", i.StartTimeUnixNano, i.EndTimeUnixNano)
	}
	// The function's line carries the root's ids.
	for _, e := range annotated {
		if e.Type == "function" && (e.TraceID != "5759e988bd862e3fe1be46a994272793" || e.SpanID != SpanID(root.SpanId).String()) {
			t.Errorf("line ids %q %q", e.TraceID, e.SpanID)
		}
	}
	// Only the first invocation of the sandbox has the init span.
	b := newBuilder()
	run(b, coldStart("success", "", 78))
	_, out = run(b, []telemetry.Event{
		ev(1000, "platform.start", `{"requestId":"`+reqB+`"}`),
		ev(1020, "platform.runtimeDone", `{"requestId":"`+reqB+`","status":"success","metrics":{"durationMs":20}}`),
		ev(1025, "platform.report", `{"requestId":"`+reqB+`","status":"success","metrics":{"durationMs":25,"billedDurationMs":25,"memorySizeMB":512,"maxMemoryUsedMB":80}}`),
	})
	req.Reset()
	for _, e := range out {
		if e.Type == TracesType {
			if err := proto.Unmarshal(e.Record, &req); err != nil {
				t.Fatal(err)
			}
		}
	}
	var names []string
	for _, s := range req.ResourceSpans[0].ScopeSpans[0].Spans {
		names = append(names, s.Name)
		if TraceID(s.TraceId) != RequestTraceID(reqB) {
			t.Errorf("untraced invocation's trace %x", s.TraceId)
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"orders", SpanPostRuntime}) {
		t.Errorf("warm spans %v", names)
	}
	got, _ := decodeMetrics(t, out)
	if got[MetricColdStarts].value != 0 || got[MetricDuration].attrs[AttrColdStart] != "false" {
		t.Errorf("warm invocation counted cold: %v", got[MetricColdStarts])
	}
}

// Log lines get their invocation's ids: after platform.start, late (a
// callback's line with its own request id after the next invocation
// started), and before platform.start (an id derived from the request id,
// which then stays).
func TestAnnotate(t *testing.T) {
	b := New(Options{Traces: true, MaxInvocations: 2})
	evs := []telemetry.Event{
		ev(0, "platform.start", `{"requestId":"`+reqA+`","tracing":{"type":"X-Amzn-Trace-Id","value":"`+xrayA+`"}}`),
		{Type: "function", RequestID: reqA},
		{Type: "function", RequestID: reqB}, // before its platform.start
		ev(10, "platform.start", `{"requestId":"`+reqB+`","tracing":{"type":"X-Amzn-Trace-Id","value":"Root=1-66a1b2c3-0123456789abcdef01234567"}}`),
		{Type: "extension", RequestID: reqA}, // late, with its own id
		{Type: "function"},                   // no request id: nothing
	}
	for i := range evs {
		b.Annotate(&evs[i])
	}
	a := "5759e988bd862e3fe1be46a994272793"
	bID := RequestTraceID(reqB).String()
	for i, want := range []string{a, a, bID, bID, a, ""} {
		if evs[i].TraceID != want {
			t.Errorf("event %d (%s): trace %q, want %q", i, evs[i].Type, evs[i].TraceID, want)
		}
	}
	if evs[1].SpanID != DeriveSpanID(reqA, "invocation").String() || evs[5].SpanID != "" {
		t.Errorf("span ids %q %q", evs[1].SpanID, evs[5].SpanID)
	}
	// Bounded: a third request id evicts the first.
	third := telemetry.Event{Type: "function", RequestID: "third"}
	b.Annotate(&third)
	if len(b.invs) != 2 || b.invs[reqA] != nil {
		t.Errorf("remembered %d invocations", len(b.invs))
	}
	// Off: nothing is set.
	off := New(Options{Metrics: true})
	e := telemetry.Event{Type: "function", RequestID: reqA}
	off.Annotate(&e)
	if e.TraceID != "" {
		t.Error("annotated with traces off")
	}
}

// Bodies of one signal concatenate into one valid request.
func TestBodiesConcatenate(t *testing.T) {
	b := newBuilder()
	_, out := run(b, coldStart("success", "", 78))
	_, out2 := run(b, []telemetry.Event{
		ev(1000, "platform.start", `{"requestId":"`+reqB+`"}`),
		ev(1025, "platform.report", `{"requestId":"`+reqB+`","status":"success","metrics":{"durationMs":25}}`),
	})
	var body []byte
	n := 0
	for _, e := range append(out, out2...) {
		if e.Type == MetricsType {
			body = append(body, e.Record...)
			n++
		}
	}
	var req colmetricspb.ExportMetricsServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		t.Fatal(err)
	}
	if n != 3 || len(req.ResourceMetrics) != 3 {
		t.Errorf("%d bodies gave %d resource metrics, want 3 and 3", n, len(req.ResourceMetrics))
	}
	// A report seen twice (a resent POST) counts once.
	if again := b.Observe(&out2[0], time.Time{}); again != nil {
		t.Errorf("a non-report event produced %d events", len(again))
	}
	rep := ev(1025, "platform.report", `{"requestId":"`+reqB+`","status":"success","metrics":{"durationMs":25}}`)
	if again := b.Observe(&rep, time.Time{}); again != nil {
		t.Errorf("a second report produced %d events", len(again))
	}
}
