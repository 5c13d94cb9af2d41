package strategy

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// t0 is the origin of every literal time in these tests.
var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// at returns t0 plus d.
func at(d time.Duration) time.Time { return t0.Add(d) }

// Gaps between starts for 10.5 and 9.5 invocations per minute (to the ns).
const (
	gap105 = 5714285714 * time.Nanosecond
	gap95  = 6315789474 * time.Nanosecond
)

// plan is a list of start offsets from t0, in order.
type plan []time.Duration

// gaps returns p extended by n starts, each gap after the previous one; the
// first start of an empty plan is at offset 0.
func (p plan) gaps(gap time.Duration, n int) plan {
	for range n {
		next := time.Duration(0)
		if len(p) > 0 {
			next = p[len(p)-1] + gap
		}
		p = append(p, next)
	}
	return p
}

// alternate returns p extended by n starts whose gaps alternate g1, g2, g1...
// (the gap before start j is g1 for odd j, g2 for even j).
func (p plan) alternate(g1, g2 time.Duration, n int) plan {
	for range n {
		g := g1
		if len(p)%2 == 0 {
			g = g2
		}
		p = p.gaps(g, 1)
	}
	return p
}

// auto returns o with Auto set.
func auto(o Options) Options {
	o.Auto = true
	return o
}

// run starts (and at once ends) one invocation per offset of p and checks
// that the mode changes exactly at the indexes in changes, to the given
// modes, and stays put everywhere else. It returns every decision.
func run(t *testing.T, s *Selector, p plan, changes map[int]Mode) []Decision {
	t.Helper()
	mode := s.Mode()
	ds := make([]Decision, len(p))
	for i, off := range p {
		id := fmt.Sprintf("req-%d", i)
		d := s.Start(at(off), id)
		s.End(at(off), id)
		ds[i] = d
		to, change := changes[i]
		if change {
			if to == mode {
				t.Fatalf("bad test: change %d to the current mode %v", i, to)
			}
			mode = to
		}
		if d.Mode != mode || d.Changed != change {
			t.Fatalf("start %d at %v: got mode %v changed %v (rate %.4f, %q), want mode %v changed %v",
				i, off, d.Mode, d.Changed, d.rate, d.Reason, mode, change)
		}
		if got := s.Mode(); got != mode {
			t.Fatalf("start %d: Mode() = %v, want %v", i, got, mode)
		}
	}
	return ds
}

func TestStartAdaptive(t *testing.T) {
	// Without hysteresis the alternating rate crosses 10/min at every start
	// from the 10th to the 21st; the table spells that flapping out.
	flaps := map[int]Mode{9: Continuous}
	for i := 10; i <= 20; i++ {
		flaps[i] = map[bool]Mode{true: EndOfInvocation, false: Continuous}[i%2 == 0]
	}
	tests := []struct {
		name    string
		opts    Options
		starts  plan
		changes map[int]Mode
		rates   map[int]float64 // exact rates expected at some indexes
	}{
		{name: "steady 9/min stays end", opts: auto(Options{}),
			starts: plan{}.gaps(6666666667*time.Nanosecond, 60)},
		{name: "steady 10/min turns continuous at the 10th start", opts: auto(Options{}),
			starts: plan{}.gaps(6*time.Second, 60), changes: map[int]Mode{9: Continuous},
			rates: map[int]float64{8: 0, 9: 10, 59: 10}},
		{name: "a hair under 10/min stays end", opts: auto(Options{}),
			starts: plan{}.gaps(6*time.Second+time.Nanosecond, 60)},
		{name: "two calls 12 s apart stay end", opts: auto(Options{}),
			starts: plan{}.gaps(12*time.Second, 2), rates: map[int]float64{1: 0}},
		{name: "two calls 12 s apart are 5/min, not 10", opts: auto(Options{MinSamples: 2}),
			starts: plan{}.gaps(12*time.Second, 2), rates: map[int]float64{1: 5}},
		{name: "three calls within 18 s stay end", opts: auto(Options{}),
			starts: plan{}.gaps(9*time.Second, 3)},
		{name: "three calls within 18 s are 6.67/min", opts: auto(Options{MinSamples: 2}),
			starts: plan{}.gaps(9*time.Second, 3), rates: map[int]float64{1: 60.0 / 9, 2: 2 * 60.0 / 18}},
		{name: "nine calls within 1 s stay end", opts: auto(Options{}),
			starts: plan{}.gaps(100*time.Millisecond, 9)},
		{name: "the tenth call within 1 s flips", opts: auto(Options{}),
			starts: plan{}.gaps(100*time.Millisecond, 10), changes: map[int]Mode{9: Continuous}},
		{name: "ten calls at one instant flip", opts: auto(Options{}),
			starts: plan{}.gaps(0, 10), changes: map[int]Mode{9: Continuous}},
		{name: "burst then 10 min of silence decays to end", opts: auto(Options{}),
			starts:  plan{}.gaps(time.Second, 20).gaps(10*time.Minute, 1),
			changes: map[int]Mode{9: Continuous, 20: EndOfInvocation}, rates: map[int]float64{20: 0}},
		{name: "burst then 3 min of silence: the silence counts", opts: auto(Options{}),
			starts:  plan{}.gaps(time.Second, 20).gaps(3*time.Minute, 1),
			changes: map[int]Mode{9: Continuous, 20: EndOfInvocation}},
		{name: "exactly the exit rate stays continuous", opts: auto(Options{}),
			// 20 gaps over 150 s: 8/min = 10 * 0.8.
			starts:  plan{}.gaps(time.Second, 20).gaps(131*time.Second, 1),
			changes: map[int]Mode{9: Continuous}, rates: map[int]float64{20: 8}},
		{name: "just below the exit rate leaves continuous", opts: auto(Options{}),
			starts:  plan{}.gaps(time.Second, 20).gaps(131*time.Second+time.Millisecond, 1),
			changes: map[int]Mode{9: Continuous, 20: EndOfInvocation}},
		{name: "a start exactly one window old still counts", opts: auto(Options{MinSamples: 2, Threshold: 0.2}),
			starts: plan{}.gaps(5*time.Minute, 2), changes: map[int]Mode{1: Continuous}, rates: map[int]float64{1: 0.2}},
		{name: "a start older than the window does not", opts: auto(Options{MinSamples: 2, Threshold: 0.2}),
			starts: plan{}.gaps(5*time.Minute+time.Nanosecond, 2), rates: map[int]float64{1: 0}},
		{name: "hovering 10.5/9.5 does not flap once continuous", opts: auto(Options{}),
			starts: plan{}.alternate(gap105, gap95, 200), changes: map[int]Mode{9: Continuous}},
		{name: "hovering flaps without hysteresis", opts: auto(Options{ExitRatio: 1}),
			starts: plan{}.alternate(gap105, gap95, 200), changes: flaps},
		{name: "phases 10.5, 9.5, 10.5 stay continuous, 7.5 leaves below 8", opts: auto(Options{}),
			// The window rate is 8.015/min at start 150 and 7.905 at 151.
			starts:  plan{}.gaps(gap105, 30).gaps(gap95, 60).gaps(gap105, 30).gaps(8*time.Second, 60),
			changes: map[int]Mode{9: Continuous, 151: EndOfInvocation}},
		{name: "steady 9.5/min never enters", opts: auto(Options{}),
			starts: plan{}.gaps(gap95, 100)},
		{name: "custom threshold and samples", opts: auto(Options{Threshold: 60, MinSamples: 3}),
			starts: plan{}.gaps(time.Second, 5), changes: map[int]Mode{2: Continuous}, rates: map[int]float64{2: 60}},
		{name: "custom window forgets sooner", opts: auto(Options{Window: time.Minute}),
			starts:  plan{}.gaps(time.Second, 10).gaps(time.Minute, 1),
			changes: map[int]Mode{9: Continuous, 10: EndOfInvocation}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := run(t, New(tt.opts), tt.starts, tt.changes)
			for i, want := range tt.rates {
				if got := ds[i].rate; got != want {
					t.Errorf("rate at start %d = %v, want %v", i, got, want)
				}
			}
		})
	}
}

func TestReason(t *testing.T) {
	tests := []struct {
		name   string
		opts   Options
		starts plan
		want   []string // substrings of the last decision's Reason
	}{
		{name: "first call", opts: auto(Options{}), starts: plan{}.gaps(time.Second, 1),
			want: []string{"end: 1 invocation seen in the last 5m0s, need 10 before switching"}},
		{name: "not enough samples", opts: auto(Options{}), starts: plan{}.gaps(time.Second, 3),
			want: []string{"end: 3 invocations seen", "need 10"}},
		{name: "enter continuous", opts: auto(Options{}), starts: plan{}.gaps(6*time.Second, 10),
			want: []string{"continuous: 10.00 invocations/min", "10 starts over the last 54s", "(threshold 10)"}},
		{name: "stay by hysteresis", opts: auto(Options{}), starts: plan{}.gaps(time.Second, 20).gaps(131*time.Second, 1),
			want: []string{"continuous: 8.00 invocations/min", "threshold 10", "stays until below 8"}},
		{name: "leave continuous", opts: auto(Options{}), starts: plan{}.gaps(time.Second, 20).gaps(131*time.Second+time.Millisecond, 1),
			want: []string{"end: 7.99 invocations/min", "below 8, threshold 10"}},
		{name: "below threshold", opts: auto(Options{}), starts: plan{}.gaps(gap95, 20),
			want: []string{"end: 9.49 invocations/min", "(threshold 10)"}},
		{name: "forced", opts: Options{Forced: Periodic}, starts: plan{}.gaps(time.Second, 1),
			want: []string{"forced by O2_FLUSH_STRATEGY=periodic"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(tt.opts)
			var d Decision
			for _, off := range tt.starts {
				d = s.Start(at(off), "r")
			}
			for _, w := range tt.want {
				if !strings.Contains(d.Reason, w) {
					t.Errorf("Reason = %q, want it to contain %q", d.Reason, w)
				}
			}
		})
	}
}

func TestForcedIgnoresRate(t *testing.T) {
	plans := map[string]plan{
		"busy":                plan{}.gaps(100*time.Millisecond, 50),
		"sporadic":            plan{}.gaps(10*time.Minute, 5),
		"burst then silence":  plan{}.gaps(time.Second, 20).gaps(10*time.Minute, 2),
		"hovering at 10/min:": plan{}.alternate(gap105, gap95, 60),
	}
	for _, m := range []Mode{EndOfInvocation, Continuous, Periodic} {
		for name, p := range plans {
			t.Run(m.String()+"/"+name, func(t *testing.T) {
				s := New(Options{Forced: m})
				if got := s.Mode(); got != m {
					t.Fatalf("initial Mode() = %v, want %v", got, m)
				}
				ds := run(t, s, p, nil) // never a change
				want := "forced by O2_FLUSH_STRATEGY=" + m.String()
				for i, d := range ds {
					if d.Reason != want {
						t.Fatalf("start %d: Reason = %q, want %q", i, d.Reason, want)
					}
				}
			})
		}
	}
}

func TestInitialMode(t *testing.T) {
	tests := []struct {
		opts Options
		want Mode
	}{
		{Options{}, EndOfInvocation}, // the zero Options is forced end
		{Options{Forced: Continuous}, Continuous},
		{Options{Forced: Periodic}, Periodic},
		{Options{Forced: Mode(42)}, EndOfInvocation},
		{Options{Auto: true}, EndOfInvocation},
		{Options{Auto: true, Forced: Continuous}, EndOfInvocation}, // Forced is unused when Auto
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%+v", tt.opts), func(t *testing.T) {
			if got := New(tt.opts).Mode(); got != tt.want {
				t.Errorf("Mode() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseMode(t *testing.T) {
	tests := []struct {
		in      string
		want    Mode
		auto    bool
		wantErr bool
	}{
		{in: "auto", want: EndOfInvocation, auto: true},
		{in: "AUTO", want: EndOfInvocation, auto: true},
		{in: "end", want: EndOfInvocation},
		{in: " End ", want: EndOfInvocation},
		{in: "continuous", want: Continuous},
		{in: "CONTINUOUS", want: Continuous},
		{in: "Periodic", want: Periodic},
		{in: "", wantErr: true},
		{in: "continuously", wantErr: true},
		{in: "end,1000", wantErr: true},
		{in: "end-of-invocation", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, auto, err := ParseMode(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseMode(%q) = %v, %v, nil; want an error", tt.in, got, auto)
				}
				for _, allowed := range []string{"auto", "end", "continuous", "periodic", fmt.Sprintf("%q", tt.in)} {
					if !strings.Contains(err.Error(), allowed) {
						t.Errorf("error %q does not mention %s", err, allowed)
					}
				}
				return
			}
			if err != nil || got != tt.want || auto != tt.auto {
				t.Errorf("ParseMode(%q) = %v, %v, %v; want %v, %v, nil", tt.in, got, auto, err, tt.want, tt.auto)
			}
		})
	}
}

func TestModeString(t *testing.T) {
	tests := []struct {
		m    Mode
		want string
	}{
		{EndOfInvocation, "end"},
		{Continuous, "continuous"},
		{Periodic, "periodic"},
		{Mode(3), "Mode(3)"},
		{Mode(-1), "Mode(-1)"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.m.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			// Every name String prints for a valid mode parses back to it.
			if tt.m.valid() {
				if back, auto, err := ParseMode(tt.want); err != nil || auto || back != tt.m {
					t.Errorf("ParseMode(%q) = %v, %v, %v", tt.want, back, auto, err)
				}
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	defaults := Options{
		Threshold: 10, Window: 5 * time.Minute, MinSamples: 10, ExitRatio: 0.8,
		LongRunning: 30 * time.Second, MaxSamples: 1024,
	}
	tests := []struct {
		name string
		in   Options
		want Options
	}{
		{name: "zero", in: Options{}, want: defaults},
		{name: "negative", in: Options{Threshold: -1, Window: -1, MinSamples: -1, ExitRatio: -1, LongRunning: -1, MaxSamples: -1},
			want: defaults},
		{name: "kept", in: Options{Auto: true, Forced: Periodic, Threshold: 3, Window: time.Minute, MinSamples: 4, ExitRatio: 0.5, LongRunning: time.Second, MaxSamples: 8},
			want: Options{Auto: true, Forced: Periodic, Threshold: 3, Window: time.Minute, MinSamples: 4, ExitRatio: 0.5, LongRunning: time.Second, MaxSamples: 8}},
		{name: "a rate needs two samples", in: Options{MinSamples: 1},
			want: func() Options { o := defaults; o.MinSamples = 2; return o }()},
		{name: "exit ratio above 1 would flap", in: Options{ExitRatio: 1.5},
			want: func() Options { o := defaults; o.ExitRatio = 1; return o }()},
		{name: "max samples at least min samples", in: Options{MinSamples: 20, MaxSamples: 5},
			want: func() Options { o := defaults; o.MinSamples, o.MaxSamples = 20, 20; return o }()},
		{name: "unknown forced mode", in: Options{Forced: Mode(9)}, want: defaults},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := New(tt.in).o; got != tt.want {
				t.Errorf("options = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// op is a Start or End in a Long or NextPeriodic test.
type op struct {
	end bool
	at  time.Duration
	id  string
}

func start(d time.Duration, id string) op { return op{at: d, id: id} }
func end(d time.Duration, id string) op   { return op{end: true, at: d, id: id} }

// apply runs ops against s, ignoring the decisions.
func apply(s *Selector, ops []op) {
	for _, o := range ops {
		if o.end {
			s.End(at(o.at), o.id)
		} else {
			s.Start(at(o.at), o.id)
		}
	}
}

func TestLong(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		ops     []op
		now     time.Duration
		wantID  string
		wantRun time.Duration
		wantOK  bool
	}{
		{name: "nothing running", now: time.Hour},
		{name: "29 s is not long", ops: []op{start(0, "a")}, now: 29 * time.Second},
		{name: "exactly 30 s is not longer", ops: []op{start(0, "a")}, now: 30 * time.Second},
		{name: "30 s and 1 ns is long", ops: []op{start(0, "a")}, now: 30*time.Second + 1,
			wantID: "a", wantRun: 30*time.Second + 1, wantOK: true},
		{name: "31 s is long", ops: []op{start(0, "a")}, now: 31 * time.Second,
			wantID: "a", wantRun: 31 * time.Second, wantOK: true},
		{name: "End clears it", ops: []op{start(0, "a"), end(31*time.Second, "a")}, now: 40 * time.Second},
		{name: "End of an unknown id is ignored", ops: []op{start(0, "a"), end(5*time.Second, "b"), end(6*time.Second, "")},
			now: 31 * time.Second, wantID: "a", wantRun: 31 * time.Second, wantOK: true},
		{name: "a second End is ignored", ops: []op{start(0, "a"), end(time.Second, "a"), start(2*time.Second, "b"), end(3*time.Second, "a")},
			now: 33 * time.Second, wantID: "b", wantRun: 31 * time.Second, wantOK: true},
		{name: "the oldest of two concurrent ones", ops: []op{start(0, "a"), start(10*time.Second, "b")},
			now: 35 * time.Second, wantID: "a", wantRun: 35 * time.Second, wantOK: true},
		{name: "the other one once the oldest ended, not yet long", ops: []op{start(0, "a"), start(10*time.Second, "b"), end(20*time.Second, "a")},
			now: 35 * time.Second},
		{name: "the other one once the oldest ended, long", ops: []op{start(0, "a"), start(10*time.Second, "b"), end(20*time.Second, "a")},
			now: 41 * time.Second, wantID: "b", wantRun: 31 * time.Second, wantOK: true},
		{name: "equal starts pick the smallest id", ops: []op{start(0, "b"), start(0, "a"), start(0, "c")},
			now: 31 * time.Second, wantID: "a", wantRun: 31 * time.Second, wantOK: true},
		{name: "a repeated id restarts", ops: []op{start(0, "a"), start(20*time.Second, "a")}, now: 31 * time.Second},
		{name: "custom LongRunning", opts: Options{LongRunning: 5 * time.Second}, ops: []op{start(0, "a")},
			now: 6 * time.Second, wantID: "a", wantRun: 6 * time.Second, wantOK: true},
		{name: "applies in continuous mode too", opts: Options{Forced: Continuous}, ops: []op{start(0, "a")},
			now: 31 * time.Second, wantID: "a", wantRun: 31 * time.Second, wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(tt.opts)
			apply(s, tt.ops)
			id, running, ok := s.long(at(tt.now))
			if id != tt.wantID || running != tt.wantRun || ok != tt.wantOK {
				t.Errorf("Long(+%v) = %q, %v, %v; want %q, %v, %v", tt.now, id, running, ok, tt.wantID, tt.wantRun, tt.wantOK)
			}
		})
	}
}

func TestNextPeriodic(t *testing.T) {
	never := time.Duration(-1) // stands for the zero time.Time
	tests := []struct {
		name      string
		opts      Options
		ops       []op
		now       time.Duration
		lastFlush time.Duration // never: the zero time
		interval  time.Duration
		want      time.Duration // never: the zero time
	}{
		{name: "nothing running", now: time.Hour, lastFlush: never, interval: 5 * time.Second, want: never},
		{name: "running, not yet long: due when it crosses", ops: []op{start(0, "a")},
			now: 10 * time.Second, lastFlush: never, interval: 5 * time.Second, want: 30 * time.Second},
		{name: "first due at start+LongRunning", ops: []op{start(0, "a")},
			now: 31 * time.Second, lastFlush: never, interval: 5 * time.Second, want: 30 * time.Second},
		{name: "a flush before the crossing does not move it", ops: []op{start(0, "a")},
			now: 31 * time.Second, lastFlush: 20 * time.Second, interval: 5 * time.Second, want: 30 * time.Second},
		{name: "then lastFlush+interval", ops: []op{start(0, "a")},
			now: 31 * time.Second, lastFlush: 30 * time.Second, interval: 5 * time.Second, want: 35 * time.Second},
		{name: "from the actual last flush", ops: []op{start(0, "a")},
			now: 38 * time.Second, lastFlush: 37 * time.Second, interval: 5 * time.Second, want: 42 * time.Second},
		{name: "the oldest running one decides", ops: []op{start(0, "a"), start(10*time.Second, "b")},
			now: 12 * time.Second, lastFlush: never, interval: 5 * time.Second, want: 30 * time.Second},
		{name: "the next one after the oldest ends", ops: []op{start(0, "a"), start(10*time.Second, "b"), end(20*time.Second, "a")},
			now: 21 * time.Second, lastFlush: 20 * time.Second, interval: 5 * time.Second, want: 40 * time.Second},
		{name: "none after End", ops: []op{start(0, "a"), end(40*time.Second, "a")},
			now: 41 * time.Second, lastFlush: 35 * time.Second, interval: 5 * time.Second, want: never},
		{name: "a non-positive interval disables it", ops: []op{start(0, "a")},
			now: 31 * time.Second, lastFlush: never, interval: 0, want: never},
		{name: "custom LongRunning", opts: Options{LongRunning: 2 * time.Second}, ops: []op{start(time.Second, "a")},
			now: 4 * time.Second, lastFlush: never, interval: time.Second, want: 3 * time.Second},
		{name: "after a 10 min freeze: one due time in the past", ops: []op{start(0, "a")},
			now: 35*time.Second + 10*time.Minute, lastFlush: 35 * time.Second, interval: 5 * time.Second, want: 40 * time.Second},
	}
	toTime := func(d time.Duration) time.Time {
		if d == never {
			return time.Time{}
		}
		return at(d)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(tt.opts)
			apply(s, tt.ops)
			got := s.NextPeriodic(at(tt.now), toTime(tt.lastFlush), tt.interval)
			if want := toTime(tt.want); !got.Equal(want) {
				t.Errorf("NextPeriodic = %v, want %v", got, want)
			}
		})
	}
}

// TestPeriodicFlusher drives NextPeriodic the way a flusher does (flush
// whenever the due time is not after now, then ask again) over a list of
// wake-ups, and counts the flushes at each: a freeze never causes a burst.
func TestPeriodicFlusher(t *testing.T) {
	const interval = 5 * time.Second
	tests := []struct {
		name    string
		wakeups []time.Duration
		want    []int // flushes at each wake-up
	}{
		{name: "before the crossing nothing is due", wakeups: []time.Duration{10 * time.Second, 29 * time.Second}, want: []int{0, 0}},
		{name: "every interval once long", wakeups: []time.Duration{30 * time.Second, 35 * time.Second, 37 * time.Second, 40 * time.Second},
			want: []int{1, 1, 0, 1}},
		{name: "a 10 min freeze gives one flush", wakeups: []time.Duration{30 * time.Second, 35 * time.Second, 35*time.Second + 10*time.Minute, 40*time.Second + 10*time.Minute},
			want: []int{1, 1, 1, 1}},
		{name: "a freeze before the crossing gives one flush", wakeups: []time.Duration{10 * time.Second, time.Hour, time.Hour + time.Second},
			want: []int{0, 1, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(Options{})
			s.Start(t0, "a")
			var last time.Time
			for i, w := range tt.wakeups {
				now, n := at(w), 0
				for due := s.NextPeriodic(now, last, interval); !due.IsZero() && !due.After(now); due = s.NextPeriodic(now, last, interval) {
					if n++; n > 100 {
						t.Fatal("flusher does not settle")
					}
					last = now // flushed
				}
				if n != tt.want[i] {
					t.Errorf("wake-up %d at +%v: %d flushes, want %d", i, w, n, tt.want[i])
				}
			}
		})
	}
}

func TestBounds(t *testing.T) {
	t.Run("MaxSamples bounds the window", func(t *testing.T) {
		s := New(Options{Auto: true, MaxSamples: 16})
		var d Decision
		for i := range 1000 {
			d = s.Start(at(time.Duration(i)*time.Second), "r")
			if n := len(s.buf) - s.lo; n > 16 {
				t.Fatalf("start %d: %d starts remembered, want <= 16", i, n)
			}
		}
		if cap(s.buf) > 32 {
			t.Errorf("cap = %d, want <= 32", cap(s.buf))
		}
		if d.Mode != Continuous || d.rate != 60 {
			t.Errorf("last decision %v at %v/min, want continuous at 60", d.Mode, d.rate)
		}
	})
	t.Run("default bound under a flood", func(t *testing.T) {
		s := New(Options{Auto: true})
		for i := range 20000 {
			s.Start(at(time.Duration(i)*10*time.Millisecond), "r")
		}
		if n := len(s.buf) - s.lo; n != DefaultMaxSamples {
			t.Errorf("%d starts remembered, want %d", n, DefaultMaxSamples)
		}
		if cap(s.buf) > 2*DefaultMaxSamples {
			t.Errorf("cap = %d, want <= %d", cap(s.buf), 2*DefaultMaxSamples)
		}
	})
	t.Run("running set", func(t *testing.T) {
		s := New(Options{})
		const n = maxRunning + 500
		for i := range n { // Ends lost: the set must not grow without bound
			s.Start(at(time.Duration(i)*time.Millisecond), fmt.Sprintf("r%d", i))
		}
		if len(s.running) != maxRunning {
			t.Errorf("%d running, want %d", len(s.running), maxRunning)
		}
		// The oldest were evicted first.
		id, _, ok := s.long(at(time.Hour))
		if want := fmt.Sprintf("r%d", n-maxRunning); !ok || id != want {
			t.Errorf("Long = %q, %v; want %q", id, ok, want)
		}
	})
	t.Run("clock stepping back", func(t *testing.T) {
		s := New(Options{Auto: true, MinSamples: 2})
		for i, off := range []time.Duration{10 * time.Second, 5 * time.Second, 12 * time.Second, 0, 20 * time.Second} {
			d := s.Start(at(off), "r")
			if d.rate < 0 {
				t.Fatalf("start %d: negative rate %v", i, d.rate)
			}
			w := s.buf[s.lo:]
			for j := 1; j < len(w); j++ {
				if w[j].Before(w[j-1]) {
					t.Fatalf("start %d: window out of order: %v", i, w)
				}
			}
		}
	})
}

// TestConcurrent runs Start, End, Long and NextPeriodic from several
// goroutines, as the lifecycle loop, the telemetry listener and a flusher
// do, for the race detector; every invocation ends, so none stays running.
func TestConcurrent(t *testing.T) {
	s := New(Options{Auto: true})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				now := at(time.Duration(i) * 100 * time.Millisecond)
				id := fmt.Sprintf("g%d-%d", g, i)
				s.Start(now, id)
				s.long(now)
				s.NextPeriodic(now, now, time.Second)
				s.Mode()
				s.End(now, id)
			}
		})
	}
	wg.Wait()
	if id, _, ok := s.long(at(time.Hour)); ok {
		t.Errorf("Long = %q, want none running", id)
	}
	if got := s.Mode(); got != Continuous {
		t.Errorf("Mode() = %v after 40 starts a second, want continuous", got)
	}
}

func BenchmarkStart(b *testing.B) {
	s := New(Options{Auto: true})
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(100 * time.Millisecond)
		s.Start(now, "request-id")
		s.End(now, "request-id")
	}
}
