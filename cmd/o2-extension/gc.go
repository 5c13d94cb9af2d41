package main

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
)

// The GC target follows the live heap. Go's default (GOGC=100) lets the
// heap grow to twice what is live, but never below 4 MiB. The extension's
// live heap is small most of the time, 1-3 MiB even under a busy load, so
// that 4 MiB floor sets its size: with the runtime's own memory, about
// 1.5 MB more resident than it needs. While the live heap is under
// gcSmallHeap the tuner runs the GC at gcSmallPercent, which lowers the
// floor to 2 MiB; from gcSmallHeap on (a backlog in the buffer, a burst of
// lines) Go's 100 is back, so a large heap is not collected more often
// than by default. GOGC in the environment turns the tuner off.
const (
	gcSmallHeap    = 4 << 20
	gcSmallPercent = 50
	gcLargePercent = 100
)

// gcPercentFor is the GC percent for a live heap of live bytes.
func gcPercentFor(live uint64) int {
	if live < gcSmallHeap {
		return gcSmallPercent
	}
	return gcLargePercent
}

// gcTuner sets the GC percent after each collection from the live heap
// that collection left.
type gcTuner struct {
	live    func() uint64 // the live heap now
	set     func(int)     // applies a GC percent
	percent int           // the one in force; 0 before the first
	stopped atomic.Bool   // no more runs (tests)
}

// stop ends the runs after collections; the percent in force stays.
func (t *gcTuner) stop() { t.stopped.Store(true) }

// afterGC applies the percent for the live heap, when it changes, and
// returns the one in force.
func (t *gcTuner) afterGC() int {
	if p := gcPercentFor(t.live()); p != t.percent {
		t.set(p)
		t.percent = p
	}
	return t.percent
}

// gcLiveHeap reads the live heap the last collection marked.
func gcLiveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// tuneGC starts the tuner unless getenv sets GOGC, whose value the Go
// runtime has applied already and which is then left alone; it returns
// the tuner, or nil.
func tuneGC(getenv func(string) string) *gcTuner {
	if getenv("GOGC") != "" {
		return nil
	}
	return startGCTuner()
}

// startGCTuner applies the percent for the heap at start, then again
// after every collection, for the life of the process. A cleanup on an
// object nothing refers to runs after the collection that finds it
// unreachable, in the runtime's cleanup goroutine; each one arms the
// next. after, if set, is called with the percent in force each time (for
// tests).
func startGCTuner(after ...func(int)) *gcTuner {
	t := &gcTuner{live: gcLiveHeap, set: func(p int) { debug.SetGCPercent(p) }}
	t.afterGC()
	var arm func()
	arm = func() {
		s := new(gcSentinel)
		runtime.AddCleanup(s, func(t *gcTuner) {
			if t.stopped.Load() {
				return
			}
			p := t.afterGC()
			for _, f := range after {
				f(p)
			}
			arm()
		}, t)
	}
	arm()
	return t
}

// gcSentinel is the object whose cleanup marks a collection. It holds
// pointers, so the tiny allocator, which packs small pointer-free objects
// into one block and could keep it reachable, never takes it.
type gcSentinel struct{ _ [2]*int }
