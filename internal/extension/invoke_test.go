package extension

import (
	"context"
	"io"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/o2-extension/o2-extension/internal/strategy"
	"github.com/o2-extension/o2-extension/internal/telemetry"
	"github.com/sirupsen/logrus"
)

// fakeDelivery records Flush calls; flush decides each call's outcome.
type fakeDelivery struct {
	mu      sync.Mutex
	flushes int
	flush   func(ctx context.Context) error
}

func (d *fakeDelivery) Flush(ctx context.Context) error {
	d.mu.Lock()
	d.flushes++
	f := d.flush
	d.mu.Unlock()
	if f == nil {
		return nil
	}
	return f(ctx)
}

func (d *fakeDelivery) Shutdown(context.Context, func(context.Context), func() []telemetry.Event) error {
	return nil
}
func (d *fakeDelivery) Stats() any { return struct{}{} }

func (d *fakeDelivery) calls() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.flushes
}

func quietLog() *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l)
}

func testExt(d Delivery, o Options) *ext {
	o.Logger = quietLog()
	e := newExt(o)
	e.delivery, e.buf = d, telemetry.NewBuffer(1<<20)
	return e
}

// A missing platform.runtimeDone never holds /next past the deadline, and a
// telemetry stream that shows no sign of the invocation is not waited on.
func TestWaitRuntimeDoneIsBounded(t *testing.T) {
	for _, tc := range []struct {
		name     string
		started  bool
		deadline time.Duration
		want     time.Duration
	}{
		{"no platform.start", false, time.Minute, startTimeout},
		{"started, runtimeDone never comes", true, 10 * time.Second, 10 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := testExt(&fakeDelivery{}, Options{Strategy: strategy.Options{Auto: true}})
				start := time.Now()
				e.sel.Start(start, "req")
				if tc.started {
					e.tracker.mark("req", stageStart)
				}
				if e.waitRuntimeDone(t.Context(), "req", start.Add(tc.deadline)) {
					t.Fatal("reported runtimeDone that never came")
				}
				if waited := time.Since(start); waited != tc.want {
					t.Errorf("waited %v, want %v", waited, tc.want)
				}
				if at := e.sel.LongAt(); !at.IsZero() {
					t.Error("the invocation is still counted as running after giving up")
				}
			})
		})
	}
}

// An invocation that runs past O2_LONG_RUNNING_MS is counted as periodic
// once, however long it runs; it is not flushed from here (records stream
// on their own), and its end is flushed as the mode says.
func TestLongInvocationIsCountedPeriodicOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := &fakeDelivery{}
		e := testExt(d, Options{FlushBudget: time.Second, Strategy: strategy.Options{Auto: true, LongRunning: 30 * time.Second}})
		start := time.Now()
		done := make(chan struct{})
		go func() {
			defer close(done)
			e.invoke(t.Context(), Event{EventType: EventInvoke, RequestID: "req", DeadlineMs: start.Add(15 * time.Minute).UnixMilli()})
		}()
		synctest.Wait()
		e.tracker.mark("req", stageStart)
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		if n := d.calls(); n != 0 {
			t.Errorf("%d flushes while the invocation ran, want 0 (records stream by themselves)", n)
		}
		e.tracker.mark("req", stageDone)
		<-done
		if n := d.calls(); n != 1 {
			t.Errorf("%d flushes at its end, want 1", n)
		}
		if got := e.modeCounts; got[strategy.Periodic] != 1 || got[strategy.EndOfInvocation] != 1 {
			t.Errorf("mode counts = %v, want one end and one periodic", got)
		}
	})
}

// How long /next is held after runtimeDone, per mode and delivery outcome.
func TestInvokeHold(t *testing.T) {
	tests := []struct {
		name     string
		mode     strategy.Mode
		flush    func(ctx context.Context) error
		flushes  int
		wantHold time.Duration
	}{
		{"end: a healthy flush", strategy.EndOfInvocation, func(context.Context) error { time.Sleep(30 * time.Millisecond); return nil }, 1, 30 * time.Millisecond},
		{"end: a failing backend holds nothing", strategy.EndOfInvocation, func(context.Context) error { return context.Canceled }, 1, 0},
		{"end: a stuck flush is cut at the budget", strategy.EndOfInvocation, func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }, 1, 2 * time.Second},
		{"continuous: no flush, no hold", strategy.Continuous, nil, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				d := &fakeDelivery{flush: tt.flush}
				e := testExt(d, Options{FlushBudget: 2 * time.Second, Strategy: strategy.Options{Forced: tt.mode}})
				e.tracker.mark("req", stageStart)
				e.tracker.mark("req", stageDone)
				start := time.Now()
				e.invoke(t.Context(), Event{EventType: EventInvoke, RequestID: "req", DeadlineMs: start.Add(time.Minute).UnixMilli()})
				if held := time.Since(start); held != tt.wantHold {
					t.Errorf("held %v, want %v", held, tt.wantHold)
				}
				if n := d.calls(); n != tt.flushes {
					t.Errorf("%d flushes, want %d", n, tt.flushes)
				}
			})
		})
	}
}

// An invocation whose runtimeDone does not come before its deadline (a
// function timing out) gets its /next invokeMargin before the deadline:
// holding it later would have Lambda report it as timed out.
func TestInvokeGivesUpBeforeTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := &fakeDelivery{}
		e := testExt(d, Options{FlushBudget: 2 * time.Second, Strategy: strategy.Options{Forced: strategy.EndOfInvocation}})
		e.tracker.mark("req", stageStart)
		start := time.Now()
		e.invoke(t.Context(), Event{EventType: EventInvoke, RequestID: "req", DeadlineMs: start.Add(time.Second).UnixMilli()})
		if held, want := time.Since(start), time.Second-invokeMargin; held != want {
			t.Errorf("held %v, want %v (the deadline less the margin)", held, want)
		}
	})
}
