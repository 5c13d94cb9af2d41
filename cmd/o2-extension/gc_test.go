package main

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestGCPercentFor(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, gcSmallPercent},
		{1 << 20, gcSmallPercent},
		{gcSmallHeap - 1, gcSmallPercent},
		{gcSmallHeap, gcLargePercent},
		{64 << 20, gcLargePercent},
	} {
		if got := gcPercentFor(c.live); got != c.want {
			t.Errorf("gcPercentFor(%d) = %d, want %d", c.live, got, c.want)
		}
	}
}

// The tuner sets the percent only when the live heap crosses gcSmallHeap.
func TestGCTunerFollowsTheLiveHeap(t *testing.T) {
	var live uint64
	var sets []int
	tu := &gcTuner{live: func() uint64 { return live }, set: func(p int) { sets = append(sets, p) }}
	for _, step := range []struct {
		live uint64
		want int
	}{
		{1 << 20, gcSmallPercent},
		{2 << 20, gcSmallPercent},
		{8 << 20, gcLargePercent},
		{9 << 20, gcLargePercent},
		{1 << 20, gcSmallPercent},
	} {
		live = step.live
		if got := tu.afterGC(); got != step.want {
			t.Errorf("live %d: afterGC = %d, want %d", step.live, got, step.want)
		}
	}
	if want := []int{gcSmallPercent, gcLargePercent, gcSmallPercent}; len(sets) != len(want) || sets[0] != want[0] || sets[1] != want[1] || sets[2] != want[2] {
		t.Errorf("percents set %v, want %v (one per change)", sets, want)
	}
}

// Wired to the runtime, the tuner runs after a collection and leaves the
// runtime at the percent for this test binary's live heap.
func TestGCTunerRunsAfterEachCollection(t *testing.T) {
	orig := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(orig) })
	ran := make(chan int, 16)
	tu := startGCTuner(func(p int) {
		select {
		case ran <- p:
		default:
		}
	})
	t.Cleanup(tu.stop)
	for range 2 { // two collections, two runs: each run arms the next
		runtime.GC()
		select {
		case p := <-ran:
			if p != gcSmallPercent && p != gcLargePercent {
				t.Errorf("tuner applied %d, want %d or %d", p, gcSmallPercent, gcLargePercent)
			}
			if got := debug.SetGCPercent(p); got != p {
				t.Errorf("runtime GC percent %d, want the tuner's %d", got, p)
			}
		case <-t.Context().Done():
			t.Fatal("the tuner never ran after runtime.GC")
		}
	}
}

// GOGC in the environment turns the tuner off: the runtime's percent (as
// GOGC set it) stays, however small the live heap.
func TestTuneGCLeavesGOGCAlone(t *testing.T) {
	orig := debug.SetGCPercent(137) // standing in for GOGC=137
	t.Cleanup(func() { debug.SetGCPercent(orig) })
	env := func(k string) string {
		if k == "GOGC" {
			return "137"
		}
		return ""
	}
	if tu := tuneGC(env); tu != nil {
		tu.stop()
		t.Fatal("tuneGC started the tuner with GOGC set")
	}
	runtime.GC()
	if got := debug.SetGCPercent(137); got != 137 {
		t.Errorf("GC percent %d with GOGC set, want GOGC's 137", got)
	}

	tu := tuneGC(func(string) string { return "" })
	if tu == nil {
		t.Fatal("tuneGC without GOGC started no tuner")
	}
	t.Cleanup(tu.stop)
	if got := debug.SetGCPercent(100); got != gcSmallPercent && got != gcLargePercent {
		t.Errorf("GC percent %d without GOGC, want the tuner's %d or %d", got, gcSmallPercent, gcLargePercent)
	}
}
