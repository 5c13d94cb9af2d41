package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/o2-extension/o2-extension/internal/lambdatest"
	"github.com/o2-extension/o2-extension/internal/openobserve/o2test"
	"github.com/o2-extension/o2-extension/internal/otlp"
)

// The function's own OpenTelemetry data (issue 15), exported by a real
// OpenTelemetry Go SDK (tests/otelfunc, run by the emulated runtime for each
// invocation) to the extension's OTLP receiver and from there to the
// stand-in.

// sdkRun is one invocation of the SDK function: what it printed it made,
// and what the platform measured.
type sdkRun struct {
	Marker, RequestID string
	// TraceHeader is the X-Ray header the invocation carried.
	TraceHeader string
	TraceID     string
	ParentID    string
	RootID      string
	Children    []string
	// Points are the data points the SDK's successful exports carried,
	// by metric name.
	Points map[string]int
	Res    lambdatest.InvokeResult
}

// spanIDs are the ids of every span the run made, root first.
func (r sdkRun) spanIDs() []string { return append([]string{r.RootID}, r.Children...) }

// sdkFunc is an Invocation.Func that runs the SDK function with the
// runtime's environment, exporting to the receiver on port, and decodes
// what it printed into run. before, if set, runs first in the invocation
// (e.g. requests posted by hand while the sandbox is thawed).
func sdkFunc(port, marker string, run *sdkRun, before func(ctx context.Context) error, args ...string) func(context.Context, lambdatest.FuncInfo) error {
	return func(ctx context.Context, info lambdatest.FuncInfo) error {
		if before != nil {
			if err := before(ctx); err != nil {
				return err
			}
		}
		cmd := exec.CommandContext(ctx, otelFunc, append([]string{"-request", info.RequestID, "-marker", marker}, args...)...)
		cmd.Env = append(info.Env,
			"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:"+port,
			"OTEL_SERVICE_NAME=orders-svc",
			"OTEL_RESOURCE_ATTRIBUTES=deployment.environment=e2e",
		)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("otelfunc: %w: %s", err, errb.String())
		}
		*run = sdkRun{Marker: marker, RequestID: info.RequestID, TraceHeader: info.TraceHeader}
		if err := json.Unmarshal(out.Bytes(), run); err != nil {
			return fmt.Errorf("otelfunc printed %q: %w", out.String(), err)
		}
		return nil
	}
}

// invokeSDK plays one invocation running the SDK function.
func (h *harness) invokeSDK(port, marker string, before func(context.Context) error, args ...string) sdkRun {
	h.t.Helper()
	var run sdkRun
	res, err := h.p.Invoke(h.t.Context(), lambdatest.Invocation{
		Duration: 5 * time.Millisecond,
		Func:     sdkFunc(port, marker, &run, before, args...),
	})
	if err != nil {
		h.t.Fatalf("invoke %s: %v\n%s", marker, err, tail(h.p.Output()))
	}
	run.Res = res
	return run
}

// storedOnce checks that every span of runs is stored exactly once, with
// its invocation's attributes, the SDK's resource and the run's trace, and
// that nothing else of the SDK's arrived. It returns the stored spans by id.
func storedOnce(t *testing.T, o2 *o2test.Server, runs []sdkRun) map[string]o2test.Span {
	t.Helper()
	byID := map[string][]o2test.Span{}
	for _, sp := range o2.Spans() {
		if sp.Resource["service.name"] == "orders-svc" {
			byID[sp.SpanID] = append(byID[sp.SpanID], sp)
		}
	}
	want := 0
	out := map[string]o2test.Span{}
	for _, r := range runs {
		for i, id := range r.spanIDs() {
			want++
			got := byID[id]
			if len(got) != 1 {
				t.Errorf("%s: span %s stored %d times, want once", r.Marker, id, len(got))
				continue
			}
			sp := got[0]
			out[id] = sp
			wantParent := r.RootID
			if i == 0 {
				wantParent = r.ParentID
			}
			if sp.TraceID != r.TraceID || sp.ParentSpanID != wantParent {
				t.Errorf("%s: span %s trace %s parent %s, want %s and %s", r.Marker, id, sp.TraceID, sp.ParentSpanID, r.TraceID, wantParent)
			}
			if sp.Attributes["faas.invocation_id"] != r.RequestID || sp.Attributes["otelfunc.marker"] != r.Marker {
				t.Errorf("%s: span %s attributes %v", r.Marker, id, sp.Attributes)
			}
			if sp.Resource["deployment.environment"] != "e2e" || sp.Resource["otelfunc.marker"] != r.Marker ||
				sp.Resource["telemetry.sdk.language"] != "go" || sp.Resource["faas.name"] != "orders" {
				t.Errorf("%s: span %s resource %v", r.Marker, id, sp.Resource)
			}
		}
	}
	n := 0
	for _, sps := range byID {
		n += len(sps)
	}
	if n != want {
		t.Errorf("%d SDK spans stored, want %d", n, want)
	}
	return out
}

// The sporadic run: four invocations in end-of-invocation mode with
// O2_TRACES on, each running the SDK function, which force-flushes before
// it returns. Every span, data point (a counter and a histogram per
// invocation) and log record arrives once, with its attributes and
// resource; what the SDK flushed is stored before the extension's /next of
// that invocation (the end-of-invocation flush includes it); the function's
// trace is the invocation's platform trace (the X-Ray Root). In the second
// invocation a malformed and an oversized body are posted to the receiver
// by hand: each gets 400, and nothing else of the run is affected.
func TestOTelSDKSporadic(t *testing.T) {
	t.Parallel()
	port := otlpPort(t)
	h := start(t, lambdatest.Options{FunctionName: "orders"}, true,
		"O2_OTLP_PORT="+port, "O2_TRACES=true")
	badBodies := func(ctx context.Context) error {
		url := "http://127.0.0.1:" + port + "/v1/traces"
		for _, b := range []struct {
			name string
			body []byte
		}{
			{"malformed", []byte("\xff\xff\xff not protobuf")},
			{"oversized", bytes.Repeat([]byte{0x0a}, 5<<20)}, // over the 4 MiB cap
		} {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b.body))
			req.Header.Set("Content-Type", "application/x-protobuf")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("%s body: %w", b.name, err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				return fmt.Errorf("%s body: status %d, want 400", b.name, resp.StatusCode)
			}
		}
		return nil
	}
	var runs []sdkRun
	for i := range 4 {
		var before func(context.Context) error
		if i == 1 {
			before = badBodies
		}
		r := h.invokeSDK(port, fmt.Sprintf("sporadic-%d", i), before, "-spans", "3")
		runs = append(runs, r)
		// Stored before /next: the end-of-invocation flush took it.
		for _, sp := range h.o2.Spans() {
			if sp.Resource["otelfunc.marker"] == r.Marker && !sp.Stored.Before(r.Res.Next) {
				t.Errorf("%s: span %s stored %v after /next", r.Marker, sp.SpanID, sp.Stored.Sub(r.Res.Next))
			}
		}
		for _, m := range h.o2.Metrics() {
			if m.Resource["otelfunc.marker"] == r.Marker && !m.Stored.Before(r.Res.Next) {
				t.Errorf("%s: point %s stored %v after /next", r.Marker, m.Name, m.Stored.Sub(r.Res.Next))
			}
		}
		for _, l := range h.o2.Logs() {
			if l.Resource["otelfunc.marker"] == r.Marker && !l.Stored.Before(r.Res.Next) {
				t.Errorf("%s: log record stored %v after /next", r.Marker, l.Stored.Sub(r.Res.Next))
			}
		}
		if n := countSpans(h.o2, r.Marker); n != len(r.spanIDs()) {
			t.Errorf("%s: %d spans stored by /next, want %d", r.Marker, n, len(r.spanIDs()))
		}
	}
	h.shutdown()

	storedOnce(t, h.o2, runs)
	// The trace join: the function's trace is the X-Ray Root, which the
	// invocation's platform spans carry too; the root's parent is the
	// header's Parent.
	platform := map[string]bool{}
	for _, sp := range h.o2.Spans() {
		if sp.Resource["service.name"] != "orders-svc" {
			platform[sp.TraceID] = true
		}
	}
	for _, r := range runs {
		x, ok := otlp.ParseXRay(r.TraceHeader)
		if !ok || x.Trace.String() != r.TraceID || r.ParentID != x.Parent.String() {
			t.Errorf("%s: SDK trace %s parent %q, X-Ray header %q", r.Marker, r.TraceID, r.ParentID, r.TraceHeader)
		}
		if !platform[r.TraceID] {
			t.Errorf("%s: no platform span in the function's trace %s", r.Marker, r.TraceID)
		}
	}
	// Metrics: every point the SDK exported (one of each instrument per
	// invocation, delta temporality) once.
	for _, name := range []string{"otelfunc.invocations", "otelfunc.work.duration"} {
		per := map[string]int{}
		for _, m := range h.o2.Metrics() {
			if m.Name != name {
				continue
			}
			per[fmt.Sprint(m.Attributes["faas.invocation_id"])]++
			if m.Resource["service.name"] != "orders-svc" || m.Attributes["otelfunc.marker"] != m.Resource["otelfunc.marker"] {
				t.Errorf("%s point: attributes %v resource %v", name, m.Attributes, m.Resource)
			}
			if name == "otelfunc.invocations" && (m.Kind != "sum" || m.Value != 1) {
				t.Errorf("%s point: kind %s value %v, want sum 1", name, m.Kind, m.Value)
			}
			if name == "otelfunc.work.duration" && (m.Kind != "histogram" || m.Count != 1 || m.Sum != 12.5) {
				t.Errorf("%s point: kind %s count %d sum %v, want histogram 1 12.5", name, m.Kind, m.Count, m.Sum)
			}
		}
		for _, r := range runs {
			if per[r.RequestID] != r.Points[name] || r.Points[name] != 1 {
				t.Errorf("%s: %d points of %s stored, the SDK exported %d (want 1)", r.Marker, per[r.RequestID], name, r.Points[name])
			}
		}
		if len(per) != len(runs) {
			t.Errorf("%s points for %d invocations, want %d", name, len(per), len(runs))
		}
	}
	// Log records: one per invocation, in the root span.
	logs := map[string][]o2test.LogRecord{}
	for _, l := range h.o2.Logs() {
		if l.Resource["service.name"] == "orders-svc" {
			logs[fmt.Sprint(l.Attributes["faas.invocation_id"])] = append(logs[fmt.Sprint(l.Attributes["faas.invocation_id"])], l)
		}
	}
	for _, r := range runs {
		got := logs[r.RequestID]
		if len(got) != 1 {
			t.Errorf("%s: %d log records, want 1", r.Marker, len(got))
			continue
		}
		if l := got[0]; l.Body != "handled "+r.Marker || l.TraceID != r.TraceID || l.SpanID != r.RootID || l.Stream != stream {
			t.Errorf("%s: log record %+v", r.Marker, l)
		}
	}
	s := trustSummary(t, h)
	if n := trustNum(s["record_otlptracesrefused"]); n != 2 {
		t.Errorf("summary otlpTracesRefused = %d, want the 2 bad bodies", n)
	}
	if n, want := trustNum(s["record_otlpreceivedspans"]), int64(3*len(runs)); n != want {
		t.Errorf("summary otlpReceivedSpans = %d, want %d", n, want)
	}
}

// countSpans counts the stored spans of the SDK run with marker.
func countSpans(o2 *o2test.Server, marker string) int {
	n := 0
	for _, sp := range o2.Spans() {
		if sp.Resource["otelfunc.marker"] == marker {
			n++
		}
	}
	return n
}

// The busy run: 100 invocations at 20/s (the extension switches to
// continuous flushing after the tenth), 3 spans each: every span arrives
// exactly once. It logs the extension's CPU time per exported span.
func TestOTelSDKBusy(t *testing.T) {
	t.Parallel()
	port := otlpPort(t)
	h := start(t, lambdatest.Options{FunctionName: "orders"}, true, "O2_OTLP_PORT="+port)
	const n, spans = 100, 3
	tick := time.NewTicker(50 * time.Millisecond) // the load's pace, not a synchronisation
	defer tick.Stop()
	var runs []sdkRun
	for i := range n {
		runs = append(runs, h.invokeSDK(port, fmt.Sprintf("busy-%d", i), nil, "-spans", strconv.Itoa(spans)))
		<-tick.C
	}
	h.shutdown()
	storedOnce(t, h.o2, runs)
	s := trustSummary(t, h)
	if !strings.Contains(fmt.Sprint(s["record_modes"], s["record_mode"]), "continuous") {
		t.Logf("modes %v, mode %v: the run never went continuous", s["record_modes"], s["record_mode"])
	}
	cpu := h.p.Stats().CPUSeconds
	t.Logf("extension CPU %.2f s for %d invocations, %d SDK spans (+ %d points, %d log records): %.0f µs per invocation",
		cpu, n, n*spans, 2*n, n, cpu/float64(n)*1e6)
}

// OpenObserve down (503 on every OTLP route) for the first three of six
// invocations: nothing is lost once it is back.
func TestOTelSDKBackendDown(t *testing.T) {
	t.Parallel()
	port := otlpPort(t)
	h := start(t, lambdatest.Options{FunctionName: "orders"}, true, "O2_OTLP_PORT="+port)
	var down atomic.Bool
	down.Store(true)
	var faulted atomic.Int64
	h.o2.SetOTLPFaultFunc(func(int, *http.Request) *o2test.Fault {
		if down.Load() {
			faulted.Add(1)
			return &o2test.Fault{Status: http.StatusServiceUnavailable}
		}
		return nil
	})
	var runs []sdkRun
	for i := range 6 {
		if i == 3 {
			down.Store(false)
		}
		runs = append(runs, h.invokeSDK(port, fmt.Sprintf("down-%d", i), nil, "-spans", "3"))
	}
	h.shutdown()
	if faulted.Load() == 0 {
		t.Fatal("no OTLP request reached the stand-in while it was down")
	}
	storedOnce(t, h.o2, runs)
	for _, r := range runs {
		n := 0
		for _, l := range h.o2.Logs() {
			if l.Attributes["faas.invocation_id"] == r.RequestID {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s: %d log records, want 1", r.Marker, n)
		}
	}
}

// A 1 MiB buffer and OpenObserve down while 16 invocations each export
// 20 spans of 16 KiB (about 5.5 MB in all), back only for SHUTDOWN: the
// oldest spans are dropped and counted (the o2-extension.dropped record
// and the summary), the two newest invocations' spans (about 0.7 MB) all
// arrive, and none arrives twice.
func TestOTelSDKBufferTooSmall(t *testing.T) {
	t.Parallel()
	port := otlpPort(t)
	h := start(t, lambdatest.Options{FunctionName: "orders"}, true,
		"O2_OTLP_PORT="+port, "O2_MAX_BUFFER_SIZE_MB=1")
	var down atomic.Bool
	down.Store(true)
	var faulted atomic.Int64
	h.o2.SetOTLPFaultFunc(func(int, *http.Request) *o2test.Fault {
		if down.Load() {
			faulted.Add(1)
			return &o2test.Fault{Status: http.StatusServiceUnavailable}
		}
		return nil
	})
	const n = 16
	var runs []sdkRun
	for i := range n {
		runs = append(runs, h.invokeSDK(port, fmt.Sprintf("small-%d", i), nil, "-spans", "21", "-attr-bytes", "16384"))
	}
	down.Store(false)
	h.shutdown()
	if faulted.Load() == 0 {
		t.Fatal("no OTLP request reached the stand-in while it was down")
	}

	byID := map[string]int{}
	for _, sp := range h.o2.Spans() {
		byID[sp.SpanID]++
	}
	lost, newestLost := 0, -1
	var per []int
	for i, r := range runs {
		l := 0
		for _, id := range r.spanIDs() {
			switch byID[id] {
			case 0:
				l++
			case 1:
			default:
				t.Errorf("%s: span %s stored %d times", r.Marker, id, byID[id])
			}
		}
		if l > 0 {
			newestLost = i
		}
		lost += l
		per = append(per, l)
	}
	t.Logf("%d of %d spans lost to the 1 MiB buffer (per invocation, oldest first: %v)", lost, 21*n, per)
	if lost == 0 {
		t.Fatal("nothing was dropped")
	}
	if newestLost >= n-2 {
		t.Errorf("spans of invocation %d of %d lost: the newest must be kept", newestLost, n)
	}
	s := trustSummary(t, h)
	if trustNum(s["record_droppedrecords"]) == 0 {
		t.Errorf("summary droppedRecords = 0 with %d spans lost", lost)
	}
	if len(h.records("o2-extension.dropped")) == 0 {
		t.Error("no o2-extension.dropped record")
	}
}
