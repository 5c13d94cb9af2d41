package openobserve_test

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	collogspb "go.opentelemetry.io/proto/slim/otlp/collector/logs/v1"
	colmetricspb "go.opentelemetry.io/proto/slim/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/slim/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/slim/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/slim/otlp/logs/v1"
	metricspb "go.opentelemetry.io/proto/slim/otlp/metrics/v1"
	tracepb "go.opentelemetry.io/proto/slim/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/o2-extension/o2-extension/internal/openobserve"
	"github.com/o2-extension/o2-extension/internal/openobserve/o2test"
	"github.com/o2-extension/o2-extension/internal/otlp"
	"github.com/o2-extension/o2-extension/internal/otlpreceiver"
	"github.com/o2-extension/o2-extension/internal/telemetry"
)

func TestOTLPTypesAreTheBuilders(t *testing.T) {
	if openobserve.MetricsEventType != otlp.MetricsType || openobserve.TracesEventType != otlp.TracesType {
		t.Fatal("the client and the builder disagree on the OTLP event types")
	}
}

// metricsEvent is one buffered metrics body with one gauge point.
func metricsEvent(t *testing.T, name string, v float64) telemetry.Event {
	t.Helper()
	b, err := proto.Marshal(&colmetricspb.ExportMetricsServiceRequest{ResourceMetrics: []*metricspb.ResourceMetrics{{
		ScopeMetrics: []*metricspb.ScopeMetrics{{Metrics: []*metricspb.Metric{{Name: name, Data: &metricspb.Metric_Gauge{
			Gauge: &metricspb.Gauge{DataPoints: []*metricspb.NumberDataPoint{{TimeUnixNano: uint64(time.Now().UnixNano()),
				Value: &metricspb.NumberDataPoint_AsDouble{AsDouble: v}}}}}}}}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return telemetry.Event{Time: time.Now(), Type: otlp.MetricsType, Record: b}
}

func traceEvent(t *testing.T, id byte) telemetry.Event {
	t.Helper()
	b, err := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{{
			TraceId: append(make([]byte, 15), id), SpanId: append(make([]byte, 7), id), Name: "orders",
		}}}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return telemetry.Event{Time: time.Now(), Type: otlp.TracesType, Record: b}
}

func otlpOptions(base string) openobserve.Options {
	o := options(base)
	o.MetricsURL = base + "/api/default/v1/metrics"
	o.TracesURL = base + "/api/default/v1/traces"
	o.MaxRetries = 0
	return o
}

// One Send: the logs to _json, each signal's bodies concatenated into one
// protobuf request, all stored.
func TestSendOTLPBesideLogs(t *testing.T) {
	s := o2test.Run(t, o2test.Options{})
	o := otlpOptions(s.URL())
	o.GzipMinBytes = 64
	c := openobserve.NewClient(o)
	evs := textEvents(3, time.Now())
	evs = append(evs, metricsEvent(t, "aws.lambda.enhanced.duration", 1), traceEvent(t, 1))
	evs = append(evs, textEvents(2, time.Now())...)
	evs = append(evs, metricsEvent(t, "aws.lambda.enhanced.duration", 2), metricsEvent(t, "o2_extension.post_runtime_duration", 3), traceEvent(t, 2))
	res, rest, err := c.Send(t.Context(), evs)
	if err != nil || len(rest) != 0 {
		t.Fatalf("Send: %v, %d undelivered", err, len(rest))
	}
	if res.Sent != 5 || res.Successful != 5 || res.Signals != 5 || res.Failed != 0 || res.SignalsDropped != 0 {
		t.Errorf("result %+v", res)
	}
	if n := len(s.Records()); n != 5 {
		t.Errorf("%d log records stored, want 5", n)
	}
	if got := len(s.Metrics()); got != 3 {
		t.Errorf("%d points stored, want 3", got)
	}
	if got := len(s.Spans()); got != 2 {
		t.Errorf("%d spans stored, want 2", got)
	}
	reqs := s.OTLPRequests()
	if len(reqs) != 2 {
		t.Fatalf("%d OTLP requests, want one per signal", len(reqs))
	}
	for _, r := range reqs {
		if r.ContentType != "application/x-protobuf" || r.Header.Get("Content-Encoding") != "gzip" || r.Header.Get("Authorization") != goodAuth || r.Status != 200 {
			t.Errorf("%s: content type %q, encoding %q, status %d", r.Path, r.ContentType, r.Header.Get("Content-Encoding"), r.Status)
		}
	}
}

// faulty serves the OTLP routes with a scripted status (and body) and
// passes everything else to the stand-in.
func faulty(t *testing.T, s *o2test.Server, status int, body []byte) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/v1/metrics") {
			w.Header().Set("Content-Type", "application/x-protobuf")
			w.WriteHeader(status)
			_, _ = w.Write(body)
			return
		}
		s.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// Trouble on /v1/metrics never costs the logs: a refusal drops the
// metrics (counted, explained, no error), a retryable failure or a 401
// keeps them for the buffer, and partial_success is counted.
func TestSendOTLPFailures(t *testing.T) {
	partial, _ := proto.Marshal(&colmetricspb.ExportMetricsServiceResponse{PartialSuccess: &colmetricspb.ExportMetricsPartialSuccess{
		RejectedDataPoints: 3, ErrorMessage: "too old"}})
	tests := []struct {
		name      string
		status    int
		body      []byte
		wantErr   bool
		wantAuth  bool
		wantKept  int
		wantDrop  int
		wantFail  int
		wantInErr string
	}{
		{"404 route missing", 404, nil, false, false, 0, 2, 0, "metrics: 2 bodies dropped"},
		{"400 bad body", 400, nil, false, false, 0, 2, 0, "metrics: 2 bodies dropped"},
		{"403 no permission", 403, nil, false, false, 0, 2, 0, "dropped"},
		{"503 busy", 503, nil, true, false, 2, 0, 0, ""},
		{"401 credentials", 401, nil, true, true, 2, 0, 0, ""},
		{"partial success", 200, partial, false, false, 0, 0, 3, "metrics: 3 rejected: too old"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := o2test.New(o2test.Options{})
			srv := faulty(t, s, tt.status, tt.body)
			c := openobserve.NewClient(otlpOptions(srv.URL))
			evs := append(textEvents(4, time.Now()), metricsEvent(t, "a", 1), metricsEvent(t, "b", 2))
			res, rest, err := c.Send(t.Context(), evs)
			if (err != nil) != tt.wantErr || openobserve.IsAuth(err) != tt.wantAuth || openobserve.IsPermanent(err) {
				t.Errorf("err = %v", err)
			}
			if len(rest) != tt.wantKept {
				t.Errorf("%d events returned, want %d", len(rest), tt.wantKept)
			}
			for _, e := range rest {
				if e.Type != otlp.MetricsType {
					t.Errorf("a %s event returned: the logs were delivered", e.Type)
				}
			}
			if res.SignalsDropped != tt.wantDrop || res.SignalsRejected != tt.wantFail {
				t.Errorf("dropped %d rejected %d, want %d %d", res.SignalsDropped, res.SignalsRejected, tt.wantDrop, tt.wantFail)
			}
			if tt.wantInErr != "" && !strings.Contains(res.Error, tt.wantInErr) {
				t.Errorf("Result.Error = %q, want it to say %q", res.Error, tt.wantInErr)
			}
			if n := len(s.Records()); n != 4 {
				t.Errorf("%d log records stored, want 4", n)
			}
		})
	}
}

// Without a URL for a signal its events are dropped and counted, and the
// logs go as usual.
func TestSendOTLPWithoutURL(t *testing.T) {
	s := o2test.Run(t, o2test.Options{})
	o := options(s.URL())
	c := openobserve.NewClient(o)
	res, rest, err := c.Send(t.Context(), append(textEvents(2, time.Now()), traceEvent(t, 1)))
	if err != nil || len(rest) != 0 || res.SignalsDropped != 1 || len(s.Records()) != 2 || len(s.Spans()) != 0 {
		t.Errorf("res %+v rest %d err %v", res, len(rest), err)
	}
}

func TestOTLPTypesAreTheReceivers(t *testing.T) {
	if openobserve.TracesEventType != otlpreceiver.TracesType || openobserve.MetricsEventType != otlpreceiver.MetricsType ||
		openobserve.LogsEventType != otlpreceiver.LogsType {
		t.Fatal("the client and the OTLP receiver disagree on the event types")
	}
}

// logsEvent is one buffered OTLP logs body of n records at time at.
func logsEvent(t *testing.T, n int, at time.Time) telemetry.Event {
	t.Helper()
	sl := &logspb.ScopeLogs{}
	for i := range n {
		sl.LogRecords = append(sl.LogRecords, &logspb.LogRecord{TimeUnixNano: uint64(at.UnixNano()),
			Body: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "otlp line " + strconv.Itoa(i)}}})
	}
	b, err := proto.Marshal(&collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{ScopeLogs: []*logspb.ScopeLogs{sl}}}})
	if err != nil {
		t.Fatal(err)
	}
	return telemetry.Event{Time: at, Type: openobserve.LogsEventType, Record: b}
}

// OTLP logs go to /v1/logs with the stream in stream-name, protobuf,
// beside the _json logs; records OpenObserve rejects (outside its time
// window) are counted from rejected_log_records.
func TestSendOTLPLogs(t *testing.T) {
	s := o2test.Run(t, o2test.Options{})
	o := otlpOptions(s.URL())
	o.LogsURL = s.URL() + "/api/default/v1/logs"
	o.LogsStream = "lambda_logs"
	c := openobserve.NewClient(o)
	evs := append(textEvents(2, time.Now()), logsEvent(t, 3, time.Now()), logsEvent(t, 2, time.Now().Add(-10*time.Hour)), traceEvent(t, 1))
	res, rest, err := c.Send(t.Context(), evs)
	if err != nil || len(rest) != 0 {
		t.Fatalf("Send: %v, %d undelivered", err, len(rest))
	}
	if res.Sent != 2 || res.Signals != 3 || res.SignalsRejected != 2 || !strings.Contains(res.Error, "logs: 2 rejected: Too old data") {
		t.Errorf("result %+v", res)
	}
	logs := s.Logs()
	if len(logs) != 3 {
		t.Fatalf("%d OTLP log records stored, want 3", len(logs))
	}
	for _, l := range logs {
		if l.Stream != "lambda_logs" || !strings.HasPrefix(l.Body, "otlp line ") {
			t.Errorf("stored %+v", l)
		}
	}
	var logReqs int
	for _, r := range s.OTLPRequests() {
		if strings.HasSuffix(r.Path, "/v1/logs") {
			logReqs++
			if r.ContentType != "application/x-protobuf" || r.Header.Get("stream-name") != "lambda_logs" || r.Status != 200 {
				t.Errorf("logs request: %q, stream-name %q, status %d", r.ContentType, r.Header.Get("stream-name"), r.Status)
			}
		}
	}
	if logReqs != 1 {
		t.Errorf("%d /v1/logs requests, want the two bodies in one", logReqs)
	}
}

// A failing /v1/logs keeps its events for the buffer (retried later), like
// the other signals; without a LogsURL they are dropped and counted.
func TestSendOTLPLogsFailures(t *testing.T) {
	s := o2test.New(o2test.Options{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/v1/logs") {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		s.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	o := otlpOptions(srv.URL)
	o.LogsURL = srv.URL + "/api/default/v1/logs"
	c := openobserve.NewClient(o)
	res, rest, err := c.Send(t.Context(), append(textEvents(2, time.Now()), logsEvent(t, 1, time.Now())))
	if err == nil || len(rest) != 1 || rest[0].Type != openobserve.LogsEventType || res.Sent != 2 {
		t.Errorf("503: res %+v, rest %d, err %v", res, len(rest), err)
	}

	c = openobserve.NewClient(otlpOptions(srv.URL))
	res, rest, err = c.Send(t.Context(), append(textEvents(1, time.Now()), logsEvent(t, 1, time.Now())))
	if err != nil || len(rest) != 0 || res.SignalsDropped != 1 || !strings.Contains(res.Error, "logs: no URL") {
		t.Errorf("no URL: res %+v, rest %d, err %v", res, len(rest), err)
	}
}
