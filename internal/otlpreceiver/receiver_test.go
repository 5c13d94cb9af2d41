package otlpreceiver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	collogspb "go.opentelemetry.io/proto/slim/otlp/collector/logs/v1"
	colmetricspb "go.opentelemetry.io/proto/slim/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/slim/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/slim/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/slim/otlp/logs/v1"
	metricspb "go.opentelemetry.io/proto/slim/otlp/metrics/v1"
	resourcepb "go.opentelemetry.io/proto/slim/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/slim/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/o2-extension/o2-extension/internal/telemetry"
)

// harness is a receiver on a free loopback port, stopped when the test
// ends, with its buffer and a client.
type harness struct {
	r      *Receiver
	buf    *telemetry.Buffer
	url    string
	client *http.Client
}

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func listen(t *testing.T, o Options) *harness {
	t.Helper()
	if o.Buffer == nil {
		o.Buffer = telemetry.NewBuffer(8 << 20)
	}
	o.Addr = "127.0.0.1:0"
	o.Now = func() time.Time { return testNow }
	r, err := Listen(o)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	h := &harness{r: r, buf: o.Buffer, url: "http://" + r.Addr().String(), client: &http.Client{Transport: tr}}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		if err := r.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h
}

// response is what a request got back.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (h *harness) do(t *testing.T, method, path, contentType, encoding string, body []byte) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, h.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

func (h *harness) post(t *testing.T, path string, m proto.Message) response {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return h.do(t, http.MethodPost, path, contentTypeProto, "", b)
}

// events takes everything buffered.
func (h *harness) events() []telemetry.Event { return h.buf.Take(1<<30, 1<<40) }

func str(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func resource(service string) *resourcepb.Resource {
	return &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", service), str("cloud.provider", "aws")}}
}

func id(n int, seed int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(seed + i + 1)
	}
	return b
}

// traces is a request of resources × scopes × spans, each span with an
// attribute of pad bytes.
func traces(resources, scopes, spans, pad int) *coltracepb.ExportTraceServiceRequest {
	req := &coltracepb.ExportTraceServiceRequest{}
	n := 0
	for r := range resources {
		rs := &tracepb.ResourceSpans{Resource: resource(fmt.Sprintf("svc-%d", r)), SchemaUrl: "https://opentelemetry.io/schemas/1.26.0"}
		for s := range scopes {
			ss := &tracepb.ScopeSpans{Scope: &commonpb.InstrumentationScope{Name: fmt.Sprintf("scope-%d", s), Version: "1.0"}}
			for range spans {
				ss.Spans = append(ss.Spans, &tracepb.Span{
					TraceId: id(16, n), SpanId: id(8, n), Name: fmt.Sprintf("span-%d", n),
					Kind:       tracepb.Span_SPAN_KIND_SERVER,
					Attributes: []*commonpb.KeyValue{str("pad", strings.Repeat("x", pad))},
				})
				n++
			}
			rs.ScopeSpans = append(rs.ScopeSpans, ss)
		}
		req.ResourceSpans = append(req.ResourceSpans, rs)
	}
	return req
}

// merged decodes the events' records concatenated, as the client posts
// them, into one request.
func merged[M proto.Message](t *testing.T, evs []telemetry.Event, typ string, m M) M {
	t.Helper()
	var all []byte
	for _, e := range evs {
		if e.Type != typ {
			t.Errorf("event type %q, want %q", e.Type, typ)
		}
		all = append(all, e.Record...)
	}
	if err := proto.Unmarshal(all, m); err != nil {
		t.Fatalf("records do not decode: %v", err)
	}
	return m
}

// spanNames lists the spans of req with their resource's service.name.
func spanNames(req *coltracepb.ExportTraceServiceRequest) []string {
	var out []string
	for _, rs := range req.GetResourceSpans() {
		svc := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				svc = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				out = append(out, svc+"/"+ss.GetScope().GetName()+"/"+sp.GetName())
			}
		}
	}
	return out
}

// status decodes a google.rpc.Status body: protobuf or JSON.
func status(t *testing.T, r response) (code int32, msg string) {
	t.Helper()
	if r.header.Get("Content-Type") == contentTypeJSON {
		var s struct {
			Code    int32  `json:"code"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal(r.body, &s); err != nil {
			t.Fatalf("status body %q: %v", r.body, err)
		}
		return s.Code, s.Message
	}
	b := r.body
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			t.Fatalf("status body %x: bad tag", r.body)
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			code, b = int32(v), b[n:]
		case num == 2 && typ == protowire.BytesType:
			v, n := protowire.ConsumeString(b)
			msg, b = v, b[n:]
		default:
			t.Fatalf("status body %x: unexpected field %d", r.body, num)
		}
	}
	return code, msg
}

// A protobuf export is buffered as it was sent, one event, and answered 200
// with an empty ExportTraceServiceResponse.
func TestProtobufExport(t *testing.T) {
	h := listen(t, Options{})
	req := traces(1, 1, 3, 10)
	sent, _ := proto.Marshal(req)
	r := h.do(t, http.MethodPost, "/v1/traces", contentTypeProto, "", sent)
	if r.status != http.StatusOK || r.header.Get("Content-Type") != contentTypeProto {
		t.Fatalf("status %d, Content-Type %q; want 200 protobuf", r.status, r.header.Get("Content-Type"))
	}
	var resp coltracepb.ExportTraceServiceResponse
	if err := proto.Unmarshal(r.body, &resp); err != nil || resp.PartialSuccess != nil {
		t.Fatalf("response %v (%v), want empty", &resp, err)
	}
	evs := h.events()
	if len(evs) != 1 || !bytes.Equal(evs[0].Record, sent) || evs[0].Type != TracesType || !evs[0].Time.Equal(testNow) {
		t.Fatalf("events %+v, want the body as sent", evs)
	}
	if st := h.r.Stats().Traces; st != (SignalStats{Requests: 1, Items: 3}) {
		t.Errorf("stats %+v", st)
	}
}

// Each signal goes to its own event type; gzip and identity are taken; a
// JSON export is answered in JSON and buffered as protobuf.
func TestSignalsEncodings(t *testing.T) {
	h := listen(t, Options{})
	logs := &collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{
		Resource: resource("orders"),
		ScopeLogs: []*logspb.ScopeLogs{{LogRecords: []*logspb.LogRecord{
			{TimeUnixNano: 1, Body: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "hello"}}},
			{TimeUnixNano: 2},
		}}},
	}}}
	metrics := &colmetricspb.ExportMetricsServiceRequest{ResourceMetrics: []*metricspb.ResourceMetrics{{
		Resource: resource("orders"),
		ScopeMetrics: []*metricspb.ScopeMetrics{{Metrics: []*metricspb.Metric{{
			Name: "requests", Data: &metricspb.Metric_Sum{Sum: &metricspb.Sum{IsMonotonic: true, DataPoints: []*metricspb.NumberDataPoint{
				{Value: &metricspb.NumberDataPoint_AsInt{AsInt: 1}}, {Value: &metricspb.NumberDataPoint_AsInt{AsInt: 2}},
			}}},
		}}}},
	}}}
	tests := []struct {
		path, typ   string
		m           proto.Message
		contentType string
		encoding    string
		items       int
	}{
		{"/v1/logs", LogsType, logs, "application/x-protobuf", "gzip", 2},
		{"/v1/logs", LogsType, logs, "application/json; charset=utf-8", "", 2},
		{"/v1/metrics", MetricsType, metrics, "Application/X-Protobuf", "identity", 2},
		{"/v1/metrics", MetricsType, metrics, "application/json", "GZIP", 2},
		{"/v1/traces", TracesType, traces(1, 1, 1, 0), "application/json", "gzip", 1},
	}
	for _, tt := range tests {
		t.Run(tt.path+" "+tt.contentType+" "+tt.encoding, func(t *testing.T) {
			asJSON, _ := mediaType(tt.contentType)
			var body []byte
			if asJSON {
				body = hexJSON(t, tt.m)
			} else {
				body, _ = proto.Marshal(tt.m)
			}
			if strings.EqualFold(tt.encoding, "gzip") {
				body = gz(body)
			}
			r := h.do(t, http.MethodPost, tt.path, tt.contentType, tt.encoding, body)
			wantCT := contentTypeProto
			if asJSON {
				wantCT = contentTypeJSON
			}
			if r.status != 200 || r.header.Get("Content-Type") != wantCT {
				t.Fatalf("status %d %q %q, want 200 %s", r.status, r.header.Get("Content-Type"), r.body, wantCT)
			}
			if asJSON && string(r.body) != "{}" {
				t.Errorf("JSON reply %q, want {}", r.body)
			}
			evs := h.events()
			if len(evs) != 1 || evs[0].Type != tt.typ {
				t.Fatalf("events %v", evs)
			}
			got := tt.m.ProtoReflect().New().Interface()
			if err := proto.Unmarshal(evs[0].Record, got); err != nil || !proto.Equal(got, tt.m) {
				t.Errorf("buffered %v (%v), want %v", got, err, tt.m)
			}
		})
	}
	st := h.r.Stats()
	if st.Logs.Items != 4 || st.Metrics.Items != 4 || st.Traces.Items != 1 || st.Logs.Requests != 2 {
		t.Errorf("stats %+v", st)
	}
}

// hexJSON is m as OTLP JSON: protojson, with every id written in hex as
// the OTLP specification says (protojson writes base64).
func hexJSON(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if s, ok := e.(string); ok && (k == "traceId" || k == "spanId" || k == "parentSpanId") {
					raw, err := base64Decode(s)
					if err != nil {
						t.Fatal(err)
					}
					x[k] = hex.EncodeToString(raw)
					continue
				}
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func base64Decode(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	_, _ = w.Write(b)
	_ = w.Close()
	return buf.Bytes()
}

// The OTLP specification's own JSON example (opentelemetry-proto
// examples/trace.json): ids are hex, in upper case, the kind a number. Its
// 32 hex digits are also valid base64, which would give 24 wrong bytes.
const specTraceJSON = `{
  "resourceSpans": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
    "scopeSpans": [{
      "scope": {"name": "my.library", "version": "1.0.0",
        "attributes": [{"key": "my.scope.attribute", "value": {"stringValue": "some scope attribute"}}]},
      "spans": [{
        "traceId": "5B8EFFF798038103D269B633813FC60C",
        "spanId": "EEE19B7EC3C1B174",
        "parentSpanId": "EEE19B7EC3C1B173",
        "name": "I'm a server span",
        "startTimeUnixNano": 1544712660000000000,
        "endTimeUnixNano": 1544712661000000000,
        "kind": 2,
        "attributes": [{"key": "my.span.attr", "value": {"stringValue": "some value"}}]
      }]
    }]
  }]
}`

// And its logs example (examples/logs.json), cut to the fields that matter.
const specLogsJSON = `{"resourceLogs": [{
  "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
  "scopeLogs": [{"scope": {"name": "my.library", "version": "1.0.0"},
    "logRecords": [{
      "timeUnixNano": 1544712660300000000, "observedTimeUnixNano": 1544712660300000000,
      "severityText": "Information", "severityNumber": "SEVERITY_NUMBER_INFO",
      "traceId": "5B8EFFF798038103D269B633813FC60C", "spanId": "EEE19B7EC3C1B174",
      "body": {"stringValue": "Example log record"},
      "attributes": [{"key": "int.attribute", "value": {"intValue": "10"}}],
      "someFutureField": {"x": 1}
    }]}]}]}`

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func TestJSONIDsAreHex(t *testing.T) {
	h := listen(t, Options{})
	if r := h.do(t, http.MethodPost, "/v1/traces", contentTypeJSON, "", []byte(specTraceJSON)); r.status != 200 {
		t.Fatalf("traces: status %d %s", r.status, r.body)
	}
	req := merged(t, h.events(), TracesType, &coltracepb.ExportTraceServiceRequest{})
	sp := req.GetResourceSpans()[0].GetScopeSpans()[0].GetSpans()[0]
	if !bytes.Equal(sp.TraceId, mustHex("5b8efff798038103d269b633813fc60c")) ||
		!bytes.Equal(sp.SpanId, mustHex("eee19b7ec3c1b174")) || !bytes.Equal(sp.ParentSpanId, mustHex("eee19b7ec3c1b173")) {
		t.Errorf("ids %x %x %x, want the hex the body gave", sp.TraceId, sp.SpanId, sp.ParentSpanId)
	}
	if sp.Kind != tracepb.Span_SPAN_KIND_SERVER || sp.StartTimeUnixNano != 1544712660000000000 {
		t.Errorf("kind %v start %d", sp.Kind, sp.StartTimeUnixNano)
	}
	if got := req.GetResourceSpans()[0].GetResource().GetAttributes()[0]; got.GetKey() != "service.name" || got.GetValue().GetStringValue() != "my.service" {
		t.Errorf("resource attribute %v", got)
	}

	// The kind as an enum name, too; unknown fields are ignored.
	if r := h.do(t, http.MethodPost, "/v1/logs", contentTypeJSON, "", []byte(specLogsJSON)); r.status != 200 {
		t.Fatalf("logs: status %d %s", r.status, r.body)
	}
	logs := merged(t, h.events(), LogsType, &collogspb.ExportLogsServiceRequest{})
	lr := logs.GetResourceLogs()[0].GetScopeLogs()[0].GetLogRecords()[0]
	if !bytes.Equal(lr.TraceId, mustHex("5b8efff798038103d269b633813fc60c")) || !bytes.Equal(lr.SpanId, mustHex("eee19b7ec3c1b174")) ||
		lr.SeverityNumber != logspb.SeverityNumber_SEVERITY_NUMBER_INFO || lr.GetAttributes()[0].GetValue().GetIntValue() != 10 {
		t.Errorf("log record %v", lr)
	}

	// Exemplars of metrics carry ids too.
	metricsJSON := `{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m","histogram":{"aggregationTemporality":"AGGREGATION_TEMPORALITY_DELTA",
		"dataPoints":[{"count":"1","exemplars":[{"asDouble":1.5,"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"}]}]}}]}]}]}`
	if r := h.do(t, http.MethodPost, "/v1/metrics", contentTypeJSON, "", []byte(metricsJSON)); r.status != 200 {
		t.Fatalf("metrics: status %d %s", r.status, r.body)
	}
	mreq := merged(t, h.events(), MetricsType, &colmetricspb.ExportMetricsServiceRequest{})
	ex := mreq.GetResourceMetrics()[0].GetScopeMetrics()[0].GetMetrics()[0].GetHistogram().GetDataPoints()[0].GetExemplars()[0]
	if !bytes.Equal(ex.TraceId, mustHex("5b8efff798038103d269b633813fc60c")) || !bytes.Equal(ex.SpanId, mustHex("eee19b7ec3c1b174")) {
		t.Errorf("exemplar ids %x %x", ex.TraceId, ex.SpanId)
	}
}

// Ids that are not hex of the right length are a malformed body: base64
// (what protojson writes), too short, not hex.
func TestJSONBadIDs(t *testing.T) {
	h := listen(t, Options{})
	for _, tc := range []struct{ name, traceID, spanID string }{
		{"base64", "W47/95gDgQPSabYzgT/GDA==", "7uGbfsPBsXQ="},
		{"short", "5b8efff798038103", "eee19b7ec3c1b174"},
		{"not hex", "5B8EFFF798038103D269B633813FC60G", "EEE19B7EC3C1B174"},
		{"span id too long", "5b8efff798038103d269b633813fc60c", "5b8efff798038103d269b633813fc60c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := fmt.Sprintf(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":%q,"spanId":%q,"name":"x"}]}]}]}`, tc.traceID, tc.spanID)
			r := h.do(t, http.MethodPost, "/v1/traces", contentTypeJSON, "", []byte(body))
			if r.status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", r.status)
			}
			if code, msg := status(t, r); code != codeInvalidArgument || !strings.Contains(msg, "hex digits") {
				t.Errorf("status %d %q", code, msg)
			}
		})
	}
	if n := h.buf.Len(); n != 0 {
		t.Errorf("%d events buffered from refused bodies", n)
	}
	if st := h.r.Stats().Traces; st.Refused != 4 || st.Items != 0 {
		t.Errorf("stats %+v", st)
	}
}

// Every refusal: its status, its Status body in the request's encoding,
// and nothing buffered.
func TestRefusals(t *testing.T) {
	h := listen(t, Options{MaxBody: 64 << 10})
	good, _ := proto.Marshal(traces(1, 1, 1, 0))
	bomb := gz(make([]byte, 64<<20)) // 64 MiB of zeros in about 64 KiB
	tests := []struct {
		name, method, path, contentType, encoding string
		body                                      []byte
		status                                    int
		code                                      int32
		json                                      bool
	}{
		{"unknown path", "POST", "/v1/profiles", contentTypeProto, "", good, 404, codeNotFound, false},
		{"root", "POST", "/", contentTypeJSON, "", good, 404, codeNotFound, true},
		{"GET", "GET", "/v1/traces", "", "", nil, 405, codeUnimplemented, false},
		{"text", "POST", "/v1/traces", "text/plain", "", good, 415, codeInvalidArgument, false},
		{"no content type", "POST", "/v1/traces", "", "", good, 415, codeInvalidArgument, false},
		{"deflate", "POST", "/v1/traces", contentTypeProto, "deflate", good, 415, codeInvalidArgument, false},
		{"malformed protobuf", "POST", "/v1/traces", contentTypeProto, "", []byte{0x0a, 0xff}, 400, codeInvalidArgument, false},
		{"malformed JSON", "POST", "/v1/logs", contentTypeJSON, "", []byte(`{"resourceLogs":[`), 400, codeInvalidArgument, true},
		{"JSON body as protobuf", "POST", "/v1/metrics", contentTypeProto, "", []byte(`{"resourceMetrics":[]}`), 400, codeInvalidArgument, false},
		{"protobuf body as JSON", "POST", "/v1/traces", contentTypeJSON, "", good, 400, codeInvalidArgument, true},
		{"not gzip", "POST", "/v1/traces", contentTypeProto, "gzip", good, 400, codeInvalidArgument, false},
		{"gzip cut short", "POST", "/v1/traces", contentTypeProto, "gzip", gz(good)[:20], 400, codeInvalidArgument, false},
		{"over the cap", "POST", "/v1/traces", contentTypeProto, "", make([]byte, 65<<10), 400, codeInvalidArgument, false},
		{"gzip bomb", "POST", "/v1/traces", contentTypeJSON, "gzip", bomb, 400, codeInvalidArgument, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.do(t, tt.method, tt.path, tt.contentType, tt.encoding, tt.body)
			if r.status != tt.status {
				t.Fatalf("status %d %q, want %d", r.status, r.body, tt.status)
			}
			wantCT := contentTypeProto
			if tt.json {
				wantCT = contentTypeJSON
			}
			if ct := r.header.Get("Content-Type"); ct != wantCT {
				t.Errorf("Content-Type %q, want %q", ct, wantCT)
			}
			if code, msg := status(t, r); code != tt.code || msg == "" {
				t.Errorf("Status {%d %q}, want code %d and a message", code, msg, tt.code)
			}
			if tt.status == 405 && r.header.Get("Allow") != "POST" {
				t.Errorf("Allow %q", r.header.Get("Allow"))
			}
		})
	}
	if n := h.buf.Len(); n != 0 {
		t.Errorf("%d events buffered from refused bodies", n)
	}
	st := h.r.Stats()
	// 404 and 405 are not a signal's; the rest are refusals.
	if got := st.Traces.Refused + st.Metrics.Refused + st.Logs.Refused; got != uint64(len(tests)-3) {
		t.Errorf("refused %d, want %d: %+v", got, len(tests)-3, st)
	}
	// The receiver still takes a good body afterwards.
	if r := h.do(t, "POST", "/v1/traces", contentTypeProto, "", good); r.status != 200 {
		t.Errorf("good body after the refusals: %d", r.status)
	}
}

// A body larger than MaxBatchBytes is split by resource, then scope, then
// span: every event fits, and all of them together are the request, every
// span once under its own resource and scope.
func TestSplitTraces(t *testing.T) {
	const max = 4 << 10
	for _, tc := range []struct {
		name                         string
		resources, scopes, spans, pd int
	}{
		{"many resources", 20, 1, 2, 100},
		{"one resource, many scopes", 1, 30, 2, 100},
		{"one scope, many spans", 1, 1, 200, 50},
		{"mixed", 3, 4, 25, 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := listen(t, Options{MaxBatchBytes: max})
			req := traces(tc.resources, tc.scopes, tc.spans, tc.pd)
			if proto.Size(req) <= max {
				t.Fatalf("request of %d bytes does not need a split", proto.Size(req))
			}
			r := h.post(t, "/v1/traces", req)
			var resp coltracepb.ExportTraceServiceResponse
			if r.status != 200 || proto.Unmarshal(r.body, &resp) != nil || resp.PartialSuccess != nil {
				t.Fatalf("status %d, response %v", r.status, &resp)
			}
			evs := h.events()
			if len(evs) < 2 {
				t.Fatalf("%d events, want a split", len(evs))
			}
			for i, e := range evs {
				if len(e.Record) > max {
					t.Errorf("event %d: %d bytes, over %d", i, len(e.Record), max)
				}
			}
			got := merged(t, evs, TracesType, &coltracepb.ExportTraceServiceRequest{})
			want := spanNames(req)
			if g := spanNames(got); strings.Join(g, ",") != strings.Join(want, ",") {
				t.Errorf("spans after the split differ: %d, want %d", len(g), len(want))
			}
			for _, rs := range got.GetResourceSpans() {
				if len(rs.GetResource().GetAttributes()) != 2 || rs.GetSchemaUrl() == "" {
					t.Errorf("a piece lost its resource: %v", rs.GetResource())
				}
			}
			if st := h.r.Stats().Traces; st.Items != uint64(len(want)) || st.Rejected != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// A metric with more points than fit in one event is cut into copies of
// it, each with its type, temporality and some of the points.
func TestSplitMetricPoints(t *testing.T) {
	const max = 2 << 10
	h := listen(t, Options{MaxBatchBytes: max})
	sum := &metricspb.Sum{AggregationTemporality: metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE, IsMonotonic: true}
	hist := &metricspb.Histogram{AggregationTemporality: metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_DELTA}
	for i := range 300 {
		sum.DataPoints = append(sum.DataPoints, &metricspb.NumberDataPoint{
			Attributes: []*commonpb.KeyValue{str("route", fmt.Sprintf("/r/%d", i))}, Value: &metricspb.NumberDataPoint_AsInt{AsInt: int64(i)}})
		hist.DataPoints = append(hist.DataPoints, &metricspb.HistogramDataPoint{Count: uint64(i), BucketCounts: []uint64{1, 2, 3}, ExplicitBounds: []float64{1, 2}})
	}
	req := &colmetricspb.ExportMetricsServiceRequest{ResourceMetrics: []*metricspb.ResourceMetrics{{
		Resource: resource("orders"),
		ScopeMetrics: []*metricspb.ScopeMetrics{{Scope: &commonpb.InstrumentationScope{Name: "app"}, Metrics: []*metricspb.Metric{
			{Name: "hits", Unit: "1", Data: &metricspb.Metric_Sum{Sum: sum}},
			{Name: "latency", Unit: "ms", Data: &metricspb.Metric_Histogram{Histogram: hist}},
		}}},
	}}}
	if r := h.post(t, "/v1/metrics", req); r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	evs := h.events()
	got := merged(t, evs, MetricsType, &colmetricspb.ExportMetricsServiceRequest{})
	hits, lat := 0, 0
	var sumVals []int64
	for _, rm := range got.GetResourceMetrics() {
		for _, sm := range rm.GetScopeMetrics() {
			for _, m := range sm.GetMetrics() {
				switch m.GetName() {
				case "hits":
					s := m.GetSum()
					if !s.GetIsMonotonic() || s.GetAggregationTemporality() != sum.AggregationTemporality || m.GetUnit() != "1" {
						t.Errorf("a piece of hits lost its type: %v", m)
					}
					for _, p := range s.GetDataPoints() {
						sumVals = append(sumVals, p.GetAsInt())
					}
					hits += len(s.GetDataPoints())
				case "latency":
					if m.GetHistogram().GetAggregationTemporality() != hist.AggregationTemporality {
						t.Errorf("a piece of latency lost its temporality")
					}
					lat += len(m.GetHistogram().GetDataPoints())
				}
			}
		}
	}
	if hits != 300 || lat != 300 {
		t.Errorf("points after the split: hits %d, latency %d; want 300 each", hits, lat)
	}
	for i, v := range sumVals {
		if v != int64(i) {
			t.Fatalf("hits point %d is %d: order lost", i, v)
		}
	}
	for i, e := range evs {
		if len(e.Record) > max {
			t.Errorf("event %d: %d bytes, over %d", i, len(e.Record), max)
		}
	}
}

// A span too large for any request is dropped and reported in
// partial_success; the rest of its body is taken. JSON replies say it in
// JSON.
func TestPartialSuccessTooLargeItem(t *testing.T) {
	const max = 4 << 10
	h := listen(t, Options{MaxBatchBytes: max})
	req := traces(1, 1, 5, 10)
	req.ResourceSpans[0].ScopeSpans[0].Spans[2].Attributes = []*commonpb.KeyValue{str("pad", strings.Repeat("y", max))}
	r := h.do(t, http.MethodPost, "/v1/traces", contentTypeJSON, "", hexJSON(t, req))
	var resp coltracepb.ExportTraceServiceResponse
	if r.status != 200 || protojson.Unmarshal(r.body, &resp) != nil {
		t.Fatalf("status %d body %s", r.status, r.body)
	}
	ps := resp.GetPartialSuccess()
	if ps.GetRejectedSpans() != 1 || !strings.Contains(ps.GetErrorMessage(), "O2_MAX_BATCH_BYTES") {
		t.Errorf("partial_success %v, want 1 span rejected with a reason", ps)
	}
	got := spanNames(merged(t, h.events(), TracesType, &coltracepb.ExportTraceServiceRequest{}))
	if strings.Join(got, ",") != "svc-0/scope-0/span-0,svc-0/scope-0/span-1,svc-0/scope-0/span-3,svc-0/scope-0/span-4" {
		t.Errorf("spans taken: %v", got)
	}
	if st := h.r.Stats().Traces; st.Items != 4 || st.Rejected != 1 {
		t.Errorf("stats %+v", st)
	}
}

// A body larger than the whole buffer keeps what fits, in order, and
// reports the rest in partial_success, rather than have the buffer drop its
// first parts to make room for its last.
func TestPartialSuccessLargerThanBuffer(t *testing.T) {
	buf := telemetry.NewBuffer(16 << 10)
	h := listen(t, Options{Buffer: buf, MaxBatchBytes: 4 << 10})
	req := &collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{Resource: resource("orders"), ScopeLogs: []*logspb.ScopeLogs{{}}}}}
	for i := range 100 {
		req.ResourceLogs[0].ScopeLogs[0].LogRecords = append(req.ResourceLogs[0].ScopeLogs[0].LogRecords, &logspb.LogRecord{
			TimeUnixNano: uint64(i), Body: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: strings.Repeat("z", 500)}}})
	}
	r := h.post(t, "/v1/logs", req)
	var resp collogspb.ExportLogsServiceResponse
	if r.status != 200 || proto.Unmarshal(r.body, &resp) != nil {
		t.Fatalf("status %d", r.status)
	}
	evs := h.events()
	got := merged(t, evs, LogsType, &collogspb.ExportLogsServiceRequest{})
	var times []uint64
	for _, rl := range got.GetResourceLogs() {
		for _, sl := range rl.GetScopeLogs() {
			for _, lr := range sl.GetLogRecords() {
				times = append(times, lr.GetTimeUnixNano())
			}
		}
	}
	ps := resp.GetPartialSuccess()
	if len(times) == 0 || len(times) == 100 || int(ps.GetRejectedLogRecords()) != 100-len(times) || !strings.Contains(ps.GetErrorMessage(), "buffer") {
		t.Fatalf("kept %d, partial_success %v: want a prefix kept and the rest rejected", len(times), ps)
	}
	for i, ts := range times {
		if ts != uint64(i) {
			t.Fatalf("record %d has time %d: not the body's prefix", i, ts)
		}
	}
	if recs, _ := buf.Dropped(); recs != 0 {
		t.Errorf("the buffer dropped %d events: the receiver should have kept within its bound", recs)
	}
	if st := h.r.Stats().Logs; st.Items != uint64(len(times)) || st.Rejected != uint64(100-len(times)) {
		t.Errorf("stats %+v", st)
	}
}

// A body that stalls is cut at BodyTimeout and answered 503, which OTLP
// clients retry; nothing of it is kept, and the connection is closed.
func TestSlowBody(t *testing.T) {
	h := listen(t, Options{BodyTimeout: 200 * time.Millisecond})
	conn, err := net.Dial("tcp", h.r.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body, _ := proto.Marshal(traces(1, 1, 1, 0))
	fmt.Fprintf(conn, "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: %d\r\n\r\n", len(body)+10)
	if _, err := conn.Write(body); err != nil {
		t.Fatal(err)
	}
	// The last 10 bytes never come.
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no reply to a stalled body: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !resp.Close {
		t.Errorf("status %d, Retry-After %q, close %v; want 503, a Retry-After, the connection closed", resp.StatusCode, resp.Header.Get("Retry-After"), resp.Close)
	}
	if h.buf.Len() != 0 || h.r.Stats().Unavailable != 1 {
		t.Errorf("buffered %d, stats %+v", h.buf.Len(), h.r.Stats())
	}
}

// After Close nothing more is buffered, even by a handler already
// running; Close is idempotent and the port is free again.
func TestClose(t *testing.T) {
	buf := telemetry.NewBuffer(1 << 20)
	r, err := Listen(Options{Addr: "127.0.0.1:0", Buffer: buf})
	if err != nil {
		t.Fatal(err)
	}
	addr := r.Addr().String()
	if err := r.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(t.Context()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Errorf("still listening after Close")
	}
	// The handler itself, as a request already past the server's accept.
	body, _ := proto.Marshal(traces(1, 1, 1, 0))
	req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/v1/traces", bytes.NewReader(body))
	req.Header.Set("Content-Type", contentTypeProto)
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || buf.Len() != 0 {
		t.Errorf("after Close: status %d, %d buffered; want 503, nothing", rec.Code, buf.Len())
	}
	// The port can be bound again.
	r2, err := Listen(Options{Addr: addr, Buffer: buf})
	if err != nil {
		t.Fatalf("port not released: %v", err)
	}
	_ = r2.Close(t.Context())
}

// A request whose body is still being read when Close starts buffers
// nothing: what the final drain takes after Close is all there is.
func TestCloseDuringRead(t *testing.T) {
	buf := telemetry.NewBuffer(1 << 20)
	r := newReceiver(Options{Buffer: buf})
	body, _ := proto.Marshal(traces(1, 1, 1, 0))
	gate := &gatedReader{started: make(chan struct{}), release: make(chan struct{}), rest: bytes.NewReader(body)}
	req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/v1/traces", gate)
	req.Header.Set("Content-Type", contentTypeProto)
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.ServeHTTP(rec, req)
	}()
	<-gate.started
	if err := r.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	close(gate.release)
	<-done
	if rec.Code != http.StatusServiceUnavailable || buf.Len() != 0 {
		t.Errorf("status %d, %d buffered; want 503 and nothing", rec.Code, buf.Len())
	}
}

// gatedReader signals its first read, then waits for release.
type gatedReader struct {
	started, release chan struct{}
	once             bool
	rest             io.Reader
}

func (g *gatedReader) Read(p []byte) (int, error) {
	if !g.once {
		g.once = true
		close(g.started)
		<-g.release
	}
	return g.rest.Read(p)
}

// Only loopback is served; a port in use is an error at once.
func TestListenErrors(t *testing.T) {
	buf := telemetry.NewBuffer(1 << 20)
	for _, addr := range []string{"0.0.0.0:0", ":0", "localhost:0", "10.1.2.3:4318", "127.0.0.1"} {
		if r, err := Listen(Options{Addr: addr, Buffer: buf}); err == nil {
			_ = r.Close(t.Context())
			t.Errorf("Listen(%q) succeeded, want an error", addr)
		}
	}
	h := listen(t, Options{})
	_, err := Listen(Options{Addr: h.r.Addr().String(), Buffer: buf})
	if err == nil || !strings.Contains(err.Error(), strconv.Itoa(h.r.Addr().Port)) {
		t.Errorf("Listen on a port in use: %v, want an error naming it", err)
	}
	if _, err := Listen(Options{Addr: "127.0.0.1:0"}); err == nil {
		t.Error("Listen without a buffer succeeded")
	}
}

// An empty export is answered 200 and buffers nothing.
func TestEmptyExport(t *testing.T) {
	h := listen(t, Options{})
	for _, body := range [][]byte{nil, mustMarshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{Resource: resource("x")}}})} {
		if r := h.do(t, http.MethodPost, "/v1/traces", contentTypeProto, "", body); r.status != 200 {
			t.Errorf("status %d", r.status)
		}
	}
	if r := h.do(t, http.MethodPost, "/v1/logs", contentTypeJSON, "", []byte(`{}`)); r.status != 200 || string(r.body) != "{}" {
		t.Errorf("JSON {}: status %d %q", r.status, r.body)
	}
	if h.buf.Len() != 0 {
		t.Errorf("%d events buffered", h.buf.Len())
	}
}

func mustMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// The summary's field names stay what the README and the e2e tests read.
func TestStatsFields(t *testing.T) {
	f := Stats{Traces: SignalStats{Requests: 1, Items: 2, Refused: 3, Rejected: 4}, Unavailable: 5}.Fields()
	for k, want := range map[string]uint64{"otlpTracesRequests": 1, "otlpReceivedSpans": 2, "otlpTracesRefused": 3, "otlpRejectedSpans": 4, "otlpUnavailable": 5, "otlpReceivedLogRecords": 0} {
		if v, ok := f[k]; !ok || v != want {
			t.Errorf("%s = %d (%v), want %d", k, v, ok, want)
		}
	}
	if len(f) != 13 {
		t.Errorf("%d fields", len(f))
	}
}

// A declared length, however large, only sizes the first read buffer
// within MaxBody: a lying Content-Length cannot make the receiver allocate
// more (or panic).
func TestDeclaredLengthBounded(t *testing.T) {
	buf := telemetry.NewBuffer(1 << 20)
	r := newReceiver(Options{Buffer: buf})
	body := gz(mustMarshal(traces(1, 1, 1, 0)))
	for _, n := range []int64{1 << 62, 1<<63 - 1} {
		req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/v1/traces", bytes.NewReader(body))
		req.Header.Set("Content-Type", contentTypeProto)
		req.Header.Set("Content-Encoding", "gzip")
		req.ContentLength = n
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Errorf("Content-Length %d: status %d %s", n, rec.Code, rec.Body)
		}
	}
}
