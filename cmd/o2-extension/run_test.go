package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	collogspb "go.opentelemetry.io/proto/slim/otlp/collector/logs/v1"
	colmetricspb "go.opentelemetry.io/proto/slim/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/slim/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/slim/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/slim/otlp/logs/v1"
	metricspb "go.opentelemetry.io/proto/slim/otlp/metrics/v1"
	resourcepb "go.opentelemetry.io/proto/slim/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/slim/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/o2-extension/o2-extension/internal/lambdatest"
	"github.com/o2-extension/o2-extension/internal/openobserve/o2test"
)

// The lifecycle in process: run() against the emulated Lambda APIs (no
// binary, so the race detector sees the whole extension), through the
// invoke, timeout and shutdown paths. tests/ runs the built binary the
// same way.

// lockedBuffer is a strings.Builder safe for the extension's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// inProcess starts the emulated platform and the stand-in, runs run() with
// env on top of the settings that reach them, and returns once init is
// complete. The returned wait gives run's error once it has returned.
func inProcess(t *testing.T, lo lambdatest.Options, env ...string) (p *lambdatest.Platform, o2 *o2test.Server, out *lockedBuffer, wait func() error) {
	t.Helper()
	o2 = o2test.Run(t, o2test.Options{})
	p, err := lambdatest.Start(t.Context(), lo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	vars := map[string]string{
		"AWS_LAMBDA_RUNTIME_API":          p.URL(),
		"AWS_LAMBDA_FUNCTION_NAME":        "in-process",
		"AWS_LAMBDA_FUNCTION_VERSION":     "$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
		"AWS_REGION":                      "us-east-1",
		"O2_ENDPOINT":                     o2.URL(),
		"O2_ORGANIZATION_ID":              "default",
		"O2_STREAM":                       "lambda",
		"O2_AUTHORIZATION_HEADER":         o2test.BasicAuth(o2test.DefaultEmail, o2test.DefaultSecret),
		"O2_METRICS":                      "false",
		"O2_TRACES":                       "false",
		// Off unless a test asks for it (freePort): tests may run in
		// parallel, and 4318 is the same for all.
		"O2_OTLP_PORT": "0",
	}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	var environ []string
	for k, v := range vars {
		environ = append(environ, k+"="+v)
	}
	out = &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		err := run(ctx, nil, func(k string) string { return vars[k] }, environ, out, out)
		// As a process would by ending: SHUTDOWN waits for it.
		p.ExtensionExited(extensionName())
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	if err := p.CompleteInit(t.Context(), 1); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	var once sync.Once
	var runErr error
	wait = func() error {
		once.Do(func() {
			select {
			case runErr = <-done:
			case <-time.After(10 * time.Second):
				runErr = errors.New("run did not return")
			}
			done <- runErr // for the cleanup
		})
		return runErr
	}
	return p, o2, out, wait
}

func lines(marker string, inv, n int) []string {
	ls := make([]string, n)
	for i := range ls {
		ls[i] = lambdatest.ScenarioLine(marker, inv, i, 100)
	}
	return ls
}

// stored counts the marker's lines in the stand-in.
func storedLines(o2 *o2test.Server, marker string) map[string]int {
	got := map[string]int{}
	for _, r := range o2.StreamRecords("default", "lambda") {
		if text, _ := r["record"].(string); strings.HasPrefix(text, marker+" ") {
			got[text]++
		}
	}
	return got
}

// A sporadic function: each invocation's lines are in OpenObserve when
// /next is called (end-of-invocation), and SHUTDOWN ends run with nil and
// the summary record.
func TestRunInvokeAndShutdown(t *testing.T) {
	p, o2, out, wait := inProcess(t, lambdatest.Options{})
	for i := range 3 {
		ls := lines("inproc", i, 20)
		if _, err := p.Invoke(t.Context(), lambdatest.Invocation{Lines: ls, Duration: 5 * time.Millisecond}); err != nil {
			t.Fatalf("invoke %d: %v\n%s", i, err, out)
		}
		got := storedLines(o2, "inproc")
		for _, l := range ls {
			if got[l] != 1 {
				t.Fatalf("invocation %d: line %q stored %d times when /next came, want 1\n%s", i, l, got[l], out)
			}
		}
	}
	res, err := p.Shutdown(t.Context(), "spindown")
	if err != nil {
		t.Fatal(err)
	}
	if err := wait(); err != nil {
		t.Fatalf("run: %v", err)
	}
	if !res.DeadlineMet {
		t.Errorf("shutdown %+v: past the deadline", res)
	}
	var sums int
	for _, r := range o2.StreamRecords("default", "lambda") {
		if r["type"] == "o2-extension.summary" {
			sums++
			if n := fmt.Sprint(r["record_invocations"]); n != "3" {
				t.Errorf("summary invocations = %s, want 3", n)
			}
		}
	}
	if sums != 1 {
		t.Errorf("%d summary records, want 1\n%s", sums, out)
	}
}

// An invocation that times out: /next is not held past its deadline, its
// lines still arrive, and the next invocation is served as usual.
func TestRunInvocationTimeout(t *testing.T) {
	p, o2, out, wait := inProcess(t, lambdatest.Options{FunctionTimeout: 500 * time.Millisecond})
	slow := lines("timeout", 0, 10)
	res, err := p.Invoke(t.Context(), lambdatest.Invocation{Lines: slow, Duration: time.Second, Outcome: "timeout"})
	if err != nil {
		t.Fatalf("invoke: %v\n%s", err, out)
	}
	if res.TimedOut {
		t.Errorf("the extension held /next past the function's deadline: %+v", res)
	}
	next := lines("timeout", 1, 10)
	if _, err := p.Invoke(t.Context(), lambdatest.Invocation{Lines: next, Duration: 5 * time.Millisecond}); err != nil {
		t.Fatalf("invoke after the timeout: %v\n%s", err, out)
	}
	if _, err := p.Shutdown(t.Context(), "spindown"); err != nil {
		t.Fatal(err)
	}
	if err := wait(); err != nil {
		t.Fatalf("run: %v", err)
	}
	got := storedLines(o2, "timeout")
	for _, l := range append(slow, next...) {
		if got[l] != 1 {
			t.Errorf("line %q stored %d times, want 1", l, got[l])
		}
	}
}

// freePort is a loopback port free at the time of the call.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// exportOTLP posts an OTLP/HTTP protobuf body to the receiver, as an SDK's
// exporter does, and returns the status.
func exportOTLP(t *testing.T, port int, path string, m proto.Message) int {
	t.Helper()
	body, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d%s", port, path), bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("export to %s: %v", path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func kv(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

// The function's own OpenTelemetry data, end to end in process: a trace,
// a log record and a metric exported to the receiver before an invocation
// are in OpenObserve when its /next comes (end-of-invocation flush), once
// each, with the resource the SDK sent; the logs in O2_STREAM; the metric
// although O2_METRICS is off (it governs the platform's only); and the
// summary counts them per signal.
func TestRunOTLPReceiver(t *testing.T) {
	port := freePort(t)
	p, o2, out, wait := inProcess(t, lambdatest.Options{}, "O2_OTLP_PORT="+strconv.Itoa(port))
	res := &resourcepb.Resource{Attributes: []*commonpb.KeyValue{kv("service.name", "checkout"), kv("deployment.environment", "test")}}
	traceID := []byte{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	now := uint64(time.Now().UnixNano())
	span := &tracepb.Span{
		TraceId: traceID, SpanId: []byte{0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}, Name: "charge card",
		Kind: tracepb.Span_SPAN_KIND_CLIENT, StartTimeUnixNano: now, EndTimeUnixNano: now,
		Attributes: []*commonpb.KeyValue{kv("payment.provider", "acme")},
	}
	spans := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource:   res,
		ScopeSpans: []*tracepb.ScopeSpans{{Scope: &commonpb.InstrumentationScope{Name: "checkout-handler"}, Spans: []*tracepb.Span{span}}},
	}}}
	record := &logspb.LogRecord{TimeUnixNano: now, SeverityText: "INFO",
		Body: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "card charged"}}}
	logs := &collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{
		Resource:  res,
		ScopeLogs: []*logspb.ScopeLogs{{LogRecords: []*logspb.LogRecord{record}}},
	}}}
	sum := &metricspb.Sum{IsMonotonic: true, AggregationTemporality: metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_DELTA,
		DataPoints: []*metricspb.NumberDataPoint{{TimeUnixNano: now, Value: &metricspb.NumberDataPoint_AsInt{AsInt: 1}}}}
	metric := &metricspb.Metric{Name: "checkout.charges", Data: &metricspb.Metric_Sum{Sum: sum}}
	metrics := &colmetricspb.ExportMetricsServiceRequest{ResourceMetrics: []*metricspb.ResourceMetrics{{
		Resource:     res,
		ScopeMetrics: []*metricspb.ScopeMetrics{{Metrics: []*metricspb.Metric{metric}}},
	}}}
	for path, m := range map[string]proto.Message{"/v1/traces": spans, "/v1/logs": logs, "/v1/metrics": metrics} {
		if code := exportOTLP(t, port, path, m); code != http.StatusOK {
			t.Fatalf("%s: status %d\n%s", path, code, out)
		}
	}
	if _, err := p.Invoke(t.Context(), lambdatest.Invocation{Lines: lines("otlp", 0, 3), Duration: 5 * time.Millisecond}); err != nil {
		t.Fatalf("invoke: %v\n%s", err, out)
	}
	check := func(when string) {
		t.Helper()
		var got []o2test.Span
		for _, sp := range o2.Spans() {
			if sp.Name == "charge card" {
				got = append(got, sp)
			}
		}
		if len(got) != 1 {
			t.Fatalf("%s: the span is stored %d times, want once\n%s", when, len(got), out)
		}
		sp := got[0]
		if sp.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || sp.Resource["service.name"] != "checkout" ||
			sp.Resource["deployment.environment"] != "test" || sp.Attributes["payment.provider"] != "acme" || sp.Stream != "default" {
			t.Errorf("%s: stored span %+v", when, sp)
		}
		if l := o2.Logs(); len(l) != 1 || l[0].Body != "card charged" || l[0].Stream != "lambda" || l[0].Resource["service.name"] != "checkout" {
			t.Errorf("%s: stored OTLP logs %+v", when, l)
		}
		if m := o2.Metrics(); len(m) != 1 || m[0].Name != "checkout.charges" || m[0].Resource["service.name"] != "checkout" {
			t.Errorf("%s: stored metrics %+v", when, m)
		}
	}
	check("when /next came")

	// Exported after the last invocation (a background exporter): the
	// final drain at SHUTDOWN takes it.
	late := proto.Clone(spans).(*coltracepb.ExportTraceServiceRequest)
	late.ResourceSpans[0].ScopeSpans[0].Spans[0].Name = "late span"
	if code := exportOTLP(t, port, "/v1/traces", late); code != http.StatusOK {
		t.Fatalf("late export: status %d", code)
	}
	if _, err := p.Shutdown(t.Context(), "spindown"); err != nil {
		t.Fatal(err)
	}
	if err := wait(); err != nil {
		t.Fatalf("run: %v", err)
	}
	check("after SHUTDOWN")
	if n := len(slices.DeleteFunc(o2.Spans(), func(sp o2test.Span) bool { return sp.Name != "late span" })); n != 1 {
		t.Errorf("the span exported after the last invocation is stored %d times, want once", n)
	}
	var summary map[string]any
	for _, r := range o2.StreamRecords("default", "lambda") {
		if r["type"] == "o2-extension.summary" {
			summary = r
		}
	}
	for k, want := range map[string]string{
		"record_otlptracesrequests": "2", "record_otlpreceivedspans": "2",
		"record_otlpreceivedlogrecords": "1", "record_otlpreceiveddatapoints": "1", "record_otlptracesrefused": "0",
	} {
		if got := fmt.Sprint(summary[k]); got != want {
			t.Errorf("summary %s = %s, want %s", k, got, want)
		}
	}
	// Stopped at SHUTDOWN: the port is free again.
	if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
		c.Close()
		t.Errorf("the receiver still listens after SHUTDOWN")
	}
}

// A port already taken fails open: one error naming the port and
// O2_OTLP_PORT, and the logs are forwarded as usual.
func TestRunOTLPPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	p, o2, out, wait := inProcess(t, lambdatest.Options{}, "O2_OTLP_PORT="+strconv.Itoa(port))
	ls := lines("taken", 0, 5)
	if _, err := p.Invoke(t.Context(), lambdatest.Invocation{Lines: ls, Duration: 5 * time.Millisecond}); err != nil {
		t.Fatalf("invoke: %v\n%s", err, out)
	}
	if _, err := p.Shutdown(t.Context(), "spindown"); err != nil {
		t.Fatal(err)
	}
	if err := wait(); err != nil {
		t.Fatalf("run: %v", err)
	}
	got := storedLines(o2, "taken")
	for _, l := range ls {
		if got[l] != 1 {
			t.Errorf("line %q stored %d times, want 1", l, got[l])
		}
	}
	var errs []string
	for line := range strings.Lines(out.String()) {
		if strings.Contains(line, "level=error") {
			errs = append(errs, line)
		}
	}
	if len(errs) != 1 || !strings.Contains(errs[0], fmt.Sprintf("127.0.0.1:%d", port)) || !strings.Contains(errs[0], "O2_OTLP_PORT") {
		t.Errorf("errors logged: %q, want one naming the port and O2_OTLP_PORT", errs)
	}
}
