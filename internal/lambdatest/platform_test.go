package lambdatest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"
)

// TestReportAfterNextAndFreeze checks, with an in-process extension, that
// platform.report is produced only after the extension's /next, that the
// frozen environment delivers nothing, and that the report arrives at the
// next thaw.
func TestReportAfterNextAndFreeze(t *testing.T) {
	p := startInProcess(t, Options{})
	l := newListener(t, p, nil)
	c := mustRegister(t, p, "ext", "INVOKE", "SHUTDOWN")
	if r := c.subscribe(subRequest("2022-12-13", l, map[string]int{"timeoutMs": 25}, "platform", "function")); r.status != 200 {
		t.Fatalf("subscribe: %d %s", r.status, r.body)
	}
	events := make(chan nextEvent)
	resume := make(chan struct{})
	c.runLoop(t, func(ev nextEvent) {
		select {
		case events <- ev:
		case <-t.Context().Done():
			return
		}
		select {
		case <-resume:
		case <-t.Context().Done():
		}
	})
	if err := p.CompleteInit(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	if !p.Frozen() {
		t.Fatal("not frozen after init")
	}

	type result struct {
		res InvokeResult
		err error
	}
	invoke := func(id string) chan result {
		ch := make(chan result, 1)
		go func() {
			res, err := p.Invoke(t.Context(), Invocation{RequestID: id, Lines: []string{"hello " + id}})
			ch <- result{res, err}
		}()
		return ch
	}
	ids := []string{newUUID(), newUUID()}
	for i, id := range ids {
		done := invoke(id)
		ev := <-events
		if ev.EventType != "INVOKE" || ev.RequestID != id {
			t.Fatalf("event = %+v, want INVOKE %s", ev, id)
		}
		if !isUUID(ev.header.Get(hdrEventID)) {
			t.Errorf("INVOKE without %s", hdrEventID)
		}
		if ev.Tracing == nil || ev.Tracing.Type != "X-Amzn-Trace-Id" || ev.InvokedFunctionArn == "" {
			t.Errorf("INVOKE lacks tracing or ARN: %+v", ev)
		}
		if i > 0 {
			// The thaw delivers the previous invocation's report.
			l.waitFor(t.Context(), "previous report", func(evs []Event) bool { return has(evs, "platform.report", ids[i-1]) })
		}
		l.waitFor(t.Context(), "runtimeDone", func(evs []Event) bool { return has(evs, "platform.runtimeDone", id) })
		if has(l.delivered(), "platform.report", id) || has(p.Events(), "platform.report", id) {
			t.Fatal("platform.report exists before the extension called /next")
		}
		resume <- struct{}{}
		r := <-done
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.res.Next.Before(r.res.RuntimeDone) || r.res.PostRuntimeOverhead != r.res.Next.Sub(r.res.RuntimeDone) || r.res.TimedOut {
			t.Errorf("result = %+v", r.res)
		}
		if !p.Frozen() {
			t.Fatal("not frozen after Invoke")
		}
		if !has(p.Events(), "platform.report", id) {
			t.Fatal("no platform.report after /next")
		}
		if has(l.delivered(), "platform.report", id) {
			t.Fatal("platform.report delivered while frozen")
		}
	}
	shut := make(chan error, 1)
	go func() {
		_, err := p.Shutdown(t.Context(), "spindown")
		shut <- err
	}()
	if ev := <-events; ev.EventType != "SHUTDOWN" {
		t.Fatalf("event = %+v, want SHUTDOWN", ev)
	}
	l.waitFor(t.Context(), "last report", func(evs []Event) bool { return has(evs, "platform.report", ids[1]) })
	resume <- struct{}{} // its /next after SHUTDOWN is its exit
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	for i, po := range l.snapshot() {
		if po.frozen {
			t.Errorf("POST %d arrived while frozen: %s", i, po.body)
		}
	}
	// Every event for the subscribed types arrived exactly once and in order.
	var want []string
	for _, ev := range p.Events() {
		if c := category(ev.Type); c == "platform" || c == "function" {
			want = append(want, ev.Type+" "+string(ev.Record))
		}
	}
	var got []string
	for _, ev := range l.delivered() {
		got = append(got, ev.Type+" "+string(ev.Record))
	}
	if !slices.Equal(got, want) {
		t.Errorf("delivered %d events, generated %d:\n got %q\nwant %q", len(got), len(want), got, want)
	}
}

// TestInitSequence checks the order of init's events and their records.
func TestInitSequence(t *testing.T) {
	p := startInProcess(t, Options{FunctionName: "orders"})
	l := newListener(t, p, nil)
	c := mustRegister(t, p, "ext", "INVOKE", "SHUTDOWN")
	if r := c.subscribe(subRequest("2022-07-01", l, nil)); r.status != 200 {
		t.Fatalf("subscribe: %d %s", r.status, r.body)
	}
	c.runLoop(t, func(nextEvent) {})
	if _, err := p.Invoke(t.Context(), Invocation{Lines: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, ev := range p.Events() {
		types = append(types, ev.Type)
	}
	want := []string{"platform.initStart", "platform.telemetrySubscription", "platform.initRuntimeDone",
		"platform.extension", "platform.initReport", "platform.start", "function", "platform.runtimeDone", "platform.report"}
	if !slices.Equal(types, want) {
		t.Fatalf("events = %v, want %v", types, want)
	}
	evs := p.Events()
	var start struct {
		InitializationType, Phase, FunctionName string
	}
	_ = json.Unmarshal(evs[0].Record, &start)
	if start.InitializationType != "on-demand" || start.Phase != "init" || start.FunctionName != "orders" {
		t.Errorf("initStart = %s", evs[0].Record)
	}
	var report struct {
		Status  string
		Metrics map[string]float64
		Spans   []struct{ Name string }
	}
	_ = json.Unmarshal(evs[8].Record, &report)
	for _, k := range []string{"durationMs", "billedDurationMs", "memorySizeMB", "maxMemoryUsedMB", "initDurationMs"} {
		if _, ok := report.Metrics[k]; !ok {
			t.Errorf("report lacks metrics.%s: %s", k, evs[8].Record)
		}
	}
	if report.Status != "success" || len(report.Spans) != 1 || report.Spans[0].Name != "extensionOverhead" {
		t.Errorf("report = %s", evs[8].Record)
	}
	var rt struct {
		Metrics map[string]float64
		Spans   []struct{ Name string }
	}
	_ = json.Unmarshal(evs[7].Record, &rt)
	if _, ok := rt.Metrics["producedBytes"]; !ok || len(rt.Spans) != 3 {
		t.Errorf("runtimeDone = %s", evs[7].Record)
	}
	// A second report is warm: no initDurationMs.
	if _, err := p.Invoke(t.Context(), Invocation{}); err != nil {
		t.Fatal(err)
	}
	evs = p.Events()
	report.Metrics = nil
	_ = json.Unmarshal(evs[len(evs)-1].Record, &report)
	if _, ok := report.Metrics["initDurationMs"]; ok {
		t.Errorf("warm report has initDurationMs: %s", evs[len(evs)-1].Record)
	}
}

// TestRecordFormats checks function records per log format and schema.
func TestRecordFormats(t *testing.T) {
	tests := []struct {
		format, schema string
		wantObject     bool
	}{
		{"text", "2022-12-13", false},
		{"json", "2022-12-13", true},
		{"json", "2022-07-01", false}, // 2022-07-01 always gets strings
	}
	for _, tt := range tests {
		t.Run(tt.format+"/"+tt.schema, func(t *testing.T) {
			p := startInProcess(t, Options{LogFormat: tt.format})
			l := newListener(t, p, nil)
			c := mustRegister(t, p, "ext", "INVOKE", "SHUTDOWN")
			if r := c.subscribe(subRequest(tt.schema, l, map[string]int{"timeoutMs": 25}, "function")); r.status != 200 {
				t.Fatalf("subscribe: %d %s", r.status, r.body)
			}
			c.runLoop(t, func(ev nextEvent) {
				if ev.EventType == "SHUTDOWN" {
					l.waitFor(t.Context(), "function record", func(evs []Event) bool { return len(evs) > 0 })
				}
			})
			res, err := p.Invoke(t.Context(), Invocation{Lines: []string{"line one"}, Level: "WARN"})
			if err != nil {
				t.Fatal(err)
			}
			// The record may still be queued (the sandbox froze): SHUTDOWN
			// delivers it.
			if _, err := p.Shutdown(t.Context(), "spindown"); err != nil {
				t.Fatal(err)
			}
			rec := l.delivered()[0].Record
			isObject := rec[0] == '{'
			if isObject != tt.wantObject || RecordText(rec) == "" {
				t.Fatalf("record = %s, want object %v", rec, tt.wantObject)
			}
			if tt.format == "json" {
				// As a string with 2022-07-01: the JSON text of the line.
				var m map[string]string
				_ = json.Unmarshal([]byte(RecordText(rec)), &m)
				if tt.schema == "2022-07-01" && (m["message"] != "line one" || m["level"] != "WARN" || m["requestId"] != res.RequestID) {
					t.Errorf("record = %s", rec)
				}
				if tt.wantObject && RecordText(rec) != "line one" {
					t.Errorf("message = %q", RecordText(rec))
				}
			} else if RecordText(rec) != "line one" {
				t.Errorf("record = %s", rec)
			}
		})
	}
}

// TestBatchingByMaxItems checks that batches ship at maxItems.
func TestBatchingByMaxItems(t *testing.T) {
	p := startInProcess(t, Options{})
	l := newListener(t, p, nil)
	c := mustRegister(t, p, "ext", "INVOKE", "SHUTDOWN")
	// timeoutMs at its maximum: only the count (or the shutdown) ships.
	if r := c.subscribe(subRequest("2022-12-13", l, map[string]int{"maxItems": 1000, "maxBytes": 1048576, "timeoutMs": 30000}, "platform", "function")); r.status != 200 {
		t.Fatalf("subscribe: %d %s", r.status, r.body)
	}
	c.runLoop(t, func(ev nextEvent) {
		if ev.EventType == "SHUTDOWN" {
			want := countWanted(p.Events(), "platform", "function")
			l.waitFor(t.Context(), "every event", func(evs []Event) bool { return len(evs) == want })
		}
	})
	lines := make([]string, 2500)
	for i := range lines {
		lines[i] = ScenarioLine("batch", 0, i, 40)
	}
	if _, err := p.Invoke(t.Context(), Invocation{Lines: lines}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Shutdown(t.Context(), "spindown"); err != nil {
		t.Fatal(err)
	}
	posts := l.snapshot()
	total := 0
	for i, po := range posts {
		total += len(po.events)
		if i < len(posts)-1 && len(po.events) != 1000 || len(po.events) > 1000 {
			t.Errorf("batch %d has %d events, want 1000", i, len(po.events))
		}
	}
	if want := countWanted(p.Events(), "platform", "function"); total != want || len(posts) != 3 {
		t.Errorf("%d batches, %d events; want 3 batches, %d events", len(posts), total, want)
	}
}

// TestFailingListener checks retries and platform.logsDropped when a batch
// keeps failing.
func TestFailingListener(t *testing.T) {
	const retries = 2
	p := startInProcess(t, Options{DeliveryRetries: retries, RetryBackoff: time.Millisecond})
	l := newListener(t, p, func(n int, _ []byte) int {
		if n <= retries {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	c := mustRegister(t, p, "ext", "INVOKE", "SHUTDOWN")
	if r := c.subscribe(subRequest("2022-12-13", l, map[string]int{"timeoutMs": 25}, "platform", "function")); r.status != 200 {
		t.Fatalf("subscribe: %d %s", r.status, r.body)
	}
	c.runLoop(t, func(ev nextEvent) {
		if ev.EventType == "SHUTDOWN" {
			l.waitFor(t.Context(), "logsDropped", func(evs []Event) bool { return has(evs, "platform.logsDropped", "") })
		}
	})
	if _, err := p.Invoke(t.Context(), Invocation{Lines: []string{"x"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Shutdown(t.Context(), "spindown"); err != nil {
		t.Fatal(err)
	}
	posts := l.snapshot()
	if len(posts) < retries+2 {
		t.Fatalf("%d POSTs, want at least %d", len(posts), retries+2)
	}
	for i := 1; i <= retries; i++ {
		if string(posts[i].body) != string(posts[0].body) {
			t.Errorf("retry %d sent a different batch", i)
		}
	}
	var dropped struct{ DroppedRecords, DroppedBytes int }
	for _, ev := range l.delivered() {
		if ev.Type == "platform.logsDropped" {
			_ = json.Unmarshal(ev.Record, &dropped)
		}
	}
	if dropped.DroppedRecords != len(posts[0].events) || dropped.DroppedBytes <= 0 {
		t.Errorf("logsDropped = %+v, want %d records", dropped, len(posts[0].events))
	}
	if !has(p.Events(), "platform.logsDropped", "") {
		t.Error("logsDropped missing from Events()")
	}
	if got := p.Deliveries()["ext"]; got.Failures != retries+1 || got.Attempts < retries+2 {
		t.Errorf("delivery counts = %v, want %d failures", got, retries+1)
	}
}

// TestShutdownEvent checks the SHUTDOWN event's reason and deadline.
func TestShutdownEvent(t *testing.T) {
	for _, reason := range []string{"spindown", "timeout", "failure"} {
		t.Run(reason, func(t *testing.T) {
			p := startInProcess(t, Options{ShutdownTimeout: 1500 * time.Millisecond})
			c := mustRegister(t, p, "ext", "SHUTDOWN")
			got := make(chan nextEvent, 1)
			c.runLoop(t, func(ev nextEvent) { got <- ev })
			if err := p.CompleteInit(t.Context(), 1); err != nil {
				t.Fatal(err)
			}
			before := time.Now()
			res, err := p.Shutdown(t.Context(), reason)
			after := time.Now()
			if err != nil {
				t.Fatal(err)
			}
			ev := <-got
			if ev.EventType != "SHUTDOWN" || ev.ShutdownReason != reason {
				t.Fatalf("event = %+v, want SHUTDOWN %s", ev, reason)
			}
			if ev.DeadlineMs != res.Deadline.UnixMilli() ||
				res.Deadline.Before(before.Add(1500*time.Millisecond)) || res.Deadline.After(after.Add(1500*time.Millisecond)) {
				t.Errorf("deadlineMs = %d, Deadline = %v, want now+1.5s", ev.DeadlineMs, res.Deadline)
			}
			if !res.DeadlineMet || res.Killed {
				t.Errorf("result = %+v", res)
			}
			if _, err := p.Invoke(t.Context(), Invocation{}); !errors.Is(err, ErrShutdown) {
				t.Errorf("Invoke after Shutdown = %v, want ErrShutdown", err)
			}
		})
	}
	t.Run("bad reason", func(t *testing.T) {
		p := startInProcess(t, Options{})
		if _, err := p.Shutdown(t.Context(), "bored"); err == nil {
			t.Fatal("Shutdown accepted an unknown reason")
		}
	})
}

// TestInvocationTimeout checks an extension that never comes back to /next.
func TestInvocationTimeout(t *testing.T) {
	p := startInProcess(t, Options{FunctionTimeout: 100 * time.Millisecond})
	c := mustRegister(t, p, "slow", "INVOKE")
	c.runLoop(t, func(ev nextEvent) {
		<-t.Context().Done() // never returns to /next
	})
	res, err := p.Invoke(t.Context(), Invocation{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.TimedOut || !res.Next.IsZero() {
		t.Fatalf("result = %+v, want TimedOut", res)
	}
	evs := p.Events()
	var rep struct{ Status string }
	_ = json.Unmarshal(evs[len(evs)-1].Record, &rep)
	if evs[len(evs)-1].Type != "platform.report" || rep.Status != "timeout" {
		t.Errorf("last event = %s %s", evs[len(evs)-1].Type, evs[len(evs)-1].Record)
	}
}

// TestManagedInstances checks concurrency, the absence of runtimeDone and
// of a freeze.
func TestManagedInstances(t *testing.T) {
	p := startInProcess(t, Options{ManagedInstances: true})
	l := newListener(t, p, nil)
	c := mustRegister(t, p, "ext", "SHUTDOWN")
	if r := c.subscribe(subRequest("2025-01-29", l, map[string]int{"timeoutMs": 25})); r.status != 200 {
		t.Fatalf("subscribe: %d %s", r.status, r.body)
	}
	c.runLoop(t, func(nextEvent) {})
	if err := p.CompleteInit(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	if p.Frozen() {
		t.Fatal("managed instances froze")
	}
	// A long invocation is in flight while a short one runs to completion.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	long := newUUID()
	longDone := make(chan error, 1)
	go func() {
		_, err := p.Invoke(ctx, Invocation{RequestID: long, Duration: time.Hour})
		longDone <- err
	}()
	l.waitFor(t.Context(), "the long invocation's start", func(evs []Event) bool { return has(evs, "platform.start", long) })
	res, err := p.Invoke(t.Context(), Invocation{Lines: []string{"short"}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-longDone:
		t.Fatalf("the long invocation ended first: %v", err)
	default:
	}
	cancel()
	if err := <-longDone; !errors.Is(err, context.Canceled) {
		t.Errorf("long invocation = %v, want canceled", err)
	}
	if has(p.Events(), "platform.runtimeDone", "") {
		t.Error("platform.runtimeDone on managed instances")
	}
	l.waitFor(t.Context(), "the short report", func(evs []Event) bool { return has(evs, "platform.report", res.RequestID) })
	var rep struct {
		Metrics map[string]float64
	}
	for _, ev := range l.delivered() {
		if ev.Type == "platform.report" {
			_ = json.Unmarshal(ev.Record, &rep)
		}
		if ev.Type == "function" && ev.Record[0] != '{' {
			t.Errorf("managed instances log in JSON, got %s", ev.Record)
		}
	}
	if len(rep.Metrics) != 1 {
		t.Errorf("managed report metrics = %v, want only durationMs", rep.Metrics)
	}
}

// TestNotSupportedDeliversNothing checks the RIE-like mode end to end.
func TestNotSupportedDeliversNothing(t *testing.T) {
	p := startInProcess(t, Options{TelemetryNotSupported: true})
	l := newListener(t, p, nil)
	c := mustRegister(t, p, "ext", "INVOKE")
	r := c.subscribe(subRequest("2022-12-13", l, nil))
	if r.status != http.StatusAccepted || r.errorType() != "Telemetry.NotSupported" {
		t.Fatalf("subscribe = %d %s", r.status, r.body)
	}
	c.runLoop(t, func(nextEvent) {})
	for range 2 {
		if _, err := p.Invoke(t.Context(), Invocation{Lines: []string{"x"}}); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(l.snapshot()); n != 0 {
		t.Errorf("%d POSTs in NotSupported mode", n)
	}
}

func TestScenarioLine(t *testing.T) {
	tests := []struct {
		marker    string
		inv, line int
		size      int
		wantLen   int
	}{
		{"MARK run1", 3, 17, 100, 100},
		{"MARK run1", 0, 0, 5, len("MARK run1 inv=0 line=0")},
		{"m", 12, 345, 0, len("m inv=12 line=345")},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt), func(t *testing.T) {
			s := ScenarioLine(tt.marker, tt.inv, tt.line, tt.size)
			if len(s) != tt.wantLen {
				t.Errorf("len = %d, want %d: %q", len(s), tt.wantLen, s)
			}
			m, inv, line, ok := ParseScenarioLine(s)
			if !ok || m != tt.marker || inv != tt.inv || line != tt.line {
				t.Errorf("parse(%q) = %q %d %d %v", s, m, inv, line, ok)
			}
		})
	}
	for _, bad := range []string{"", "hello", "m inv=x line=1", "m inv=1"} {
		if _, _, _, ok := ParseScenarioLine(bad); ok {
			t.Errorf("parse(%q) ok", bad)
		}
	}
}

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	tests := []struct {
		d    []time.Duration
		q    float64
		want time.Duration
	}{
		{nil, 0.5, 0},
		{ms(7), 0.99, 7 * time.Millisecond},
		{ms(5, 1, 3, 2, 4), 0.5, 3 * time.Millisecond},
		{ms(5, 1, 3, 2, 4), 0.99, 5 * time.Millisecond},
		{ms(5, 1, 3, 2, 4), 1, 5 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := percentile(tt.d, tt.q); got != tt.want {
			t.Errorf("percentile(%v, %v) = %v, want %v", tt.d, tt.q, got, tt.want)
		}
	}
}

// TestInvocationOutcomes checks the error and function-timeout outcomes and
// an invocation without X-Ray tracing: what runtimeDone and the report say.
func TestInvocationOutcomes(t *testing.T) {
	p := startInProcess(t, Options{FunctionTimeout: 200 * time.Millisecond})
	c := mustRegister(t, p, "ext", "INVOKE")
	c.runLoop(t, func(nextEvent) {}) // back to /next at once
	if err := p.CompleteInit(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		inv                     Invocation
		status, errorType       string
		traced, minDurationFull bool
	}{
		{Invocation{Outcome: "error", ErrorType: "Runtime.OutOfMemory"}, "error", "Runtime.OutOfMemory", true, false},
		{Invocation{Outcome: "error"}, "error", "Runtime.ExitError", true, false},
		{Invocation{Outcome: "timeout"}, "timeout", "Sandbox.Timedout", true, true},
		{Invocation{NoTrace: true}, "success", "", false, false},
	}
	for _, tt := range tests {
		res, err := p.Invoke(t.Context(), tt.inv)
		if err != nil {
			t.Fatal(err)
		}
		if res.PostRuntimeOverhead < 0 {
			t.Errorf("%+v: negative overhead %v", tt.inv, res.PostRuntimeOverhead)
		}
		for _, ev := range p.Events() {
			var r struct {
				RequestID, Status, ErrorType string
				Tracing                      *tracing
				Metrics                      struct{ DurationMs float64 }
			}
			if json.Unmarshal(ev.Record, &r) != nil || r.RequestID != res.RequestID {
				continue
			}
			if (r.Tracing != nil) != tt.traced {
				t.Errorf("%s of %+v: tracing %v", ev.Type, tt.inv, r.Tracing)
			}
			if ev.Type == "platform.runtimeDone" || ev.Type == "platform.report" {
				if r.Status != tt.status || r.ErrorType != tt.errorType {
					t.Errorf("%s of %+v: %s %s", ev.Type, tt.inv, r.Status, r.ErrorType)
				}
				if tt.minDurationFull && r.Metrics.DurationMs < 200 {
					t.Errorf("%s of a timeout lasted %v ms, want the 200 ms timeout", ev.Type, r.Metrics.DurationMs)
				}
			}
		}
	}
	if _, err := p.Invoke(t.Context(), Invocation{Outcome: "crash"}); err == nil {
		t.Error("an unknown outcome was accepted")
	}
}

// TestWaitDelivered checks that WaitDelivered, called from the function,
// returns only once the listener has been given every event so far: with a
// 1 s buffering timeout the lines would otherwise still be queued.
func TestWaitDelivered(t *testing.T) {
	p := startInProcess(t, Options{})
	l := newListener(t, p, nil)
	c := mustRegister(t, p, "ext", "INVOKE", "SHUTDOWN")
	if r := c.subscribe(subRequest("2022-12-13", l, map[string]int{"timeoutMs": 1000, "maxItems": 10000}, "platform", "function")); r.status != 200 {
		t.Fatalf("subscribe: %d %s", r.status, r.body)
	}
	c.runLoop(t, func(nextEvent) {})
	var got []string
	_, err := p.Invoke(t.Context(), Invocation{Lines: []string{"one", "two"}, Func: func(ctx context.Context, _ FuncInfo) error {
		// Nothing is delivered yet: the batch waits for its timeout.
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := p.WaitDelivered(cctx); !errors.Is(err, context.Canceled) {
			return fmt.Errorf("WaitDelivered with a cancelled context = %v while events are queued, want context.Canceled", err)
		}
		if err := p.WaitDelivered(ctx); err != nil {
			return err
		}
		for _, ev := range l.delivered() {
			if ev.Type == "function" {
				got = append(got, RecordText(ev.Record))
			}
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"one", "two"}) {
		t.Errorf("delivered when WaitDelivered returned: %q, want both lines", got)
	}
}
