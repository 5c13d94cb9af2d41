package extension

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/o2-extension/o2-extension/internal/strategy"
)

// A 2-minute invocation in end-of-invocation mode: nothing is flushed for
// the first O2_LONG_RUNNING_MS, then once, then every flush interval until
// its runtimeDone arrives.
func TestPeriodicFlushesDuringALongInvocation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &fakeSender{}
		f, buf := newTestFlusher(t, s, 1<<20, 1000, 5*time.Second)
		e := &ext{
			o:          Options{FlushInterval: 5 * time.Second},
			log:        quietLog(),
			flusher:    f,
			buf:        buf,
			tracker:    newTracker(),
			sel:        strategy.New(strategy.Options{Auto: true, LongRunning: 30 * time.Second}),
			modeCounts: map[strategy.Mode]int{},
		}
		start := time.Now()
		if d := e.sel.Start(start, "req"); d.Mode != strategy.EndOfInvocation {
			t.Fatalf("mode = %v, want end", d.Mode)
		}
		e.tracker.mark("req", stageStart)
		result := make(chan bool, 1)
		go func() { result <- e.waitRuntimeDone(t.Context(), "req", start.Add(15*time.Minute)) }()

		// The function prints a line every second for 2 minutes.
		sendsAt := map[time.Duration]int{}
		for i := range 120 {
			buf.Add(events(1)...)
			time.Sleep(time.Second)
			synctest.Wait()
			calls, _ := s.snapshot()
			sendsAt[time.Duration(i+1)*time.Second] = calls
		}
		if n := sendsAt[29*time.Second]; n != 0 {
			t.Errorf("flushed %d times in the first 29 s, want 0", n)
		}
		if n := sendsAt[31*time.Second]; n != 1 {
			t.Errorf("flushes at 31 s = %d, want 1 (at once past the threshold)", n)
		}
		// From 30 s to 120 s: one flush at 30 s, then every 5 s.
		if n := sendsAt[120*time.Second]; n != 1+90/5 {
			t.Errorf("flushes by 120 s = %d, want %d", n, 1+90/5)
		}
		e.tracker.mark("req", stageDone)
		if !<-result {
			t.Fatal("waitRuntimeDone did not report runtimeDone")
		}
	})
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
				f, buf := newTestFlusher(t, &fakeSender{}, 1<<20, 100, 5*time.Second)
				e := &ext{o: Options{FlushInterval: 5 * time.Second}, log: quietLog(), flusher: f, buf: buf,
					tracker: newTracker(), sel: strategy.New(strategy.Options{Auto: true}), modeCounts: map[strategy.Mode]int{}}
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
				if _, _, long := e.sel.Long(time.Now().Add(time.Hour)); long {
					t.Error("the invocation is still counted as running after giving up")
				}
			})
		})
	}
}

// A backend that hangs costs one flush budget, not one per invocation.
func TestStuckDrainDoesNotHoldEveryInvocation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &fakeSender{hold: make(chan struct{})}
		f, buf := newTestFlusher(t, s, 1<<20, 100, 5*time.Second)
		e := &ext{o: Options{FlushInterval: 5 * time.Second, FlushBudget: 2 * time.Second}, log: quietLog(), flusher: f, buf: buf,
			tracker: newTracker(), sel: strategy.New(strategy.Options{Auto: true}), modeCounts: map[strategy.Mode]int{}}
		held := make([]time.Duration, 3)
		for i := range held {
			id := fmt.Sprintf("req-%d", i)
			e.tracker.mark(id, stageStart)
			e.tracker.mark(id, stageDone)
			buf.Add(events(1)...)
			start := time.Now()
			e.invoke(t.Context(), Event{EventType: EventInvoke, RequestID: id, DeadlineMs: start.Add(time.Minute).UnixMilli()})
			held[i] = time.Since(start)
		}
		if held[0] != 2*time.Second || held[1] != 0 || held[2] != 0 {
			t.Fatalf("held %v, want [2s 0s 0s]: one budget for a stuck backend, not one per invocation", held)
		}
		close(s.hold)
		synctest.Wait()
		if _, got := s.snapshot(); len(got) != 3 {
			t.Fatalf("delivered %d events after the backend answered, want 3", len(got))
		}
	})
}
