// Package strategy decides, per invocation, how the extension flushes
// telemetry to OpenObserve: at the end of each invocation, continuously in
// the background, or periodically while a long invocation runs.
//
// The package is pure: it does no I/O, starts no goroutines and reads no
// clock. Every method takes the current time as an argument, so the caller
// passes the time it observed (time.Now in production, literal times in
// tests) and a frozen sandbox that thaws minutes later is handled from the
// timestamps alone rather than from timers that may or may not have fired.
package strategy

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"time"
)

// Mode is a way of flushing buffered telemetry.
type Mode int

const (
	// EndOfInvocation waits for the function's platform.runtimeDone, flushes,
	// then calls /next, so the logs reach OpenObserve before the sandbox
	// freezes. It is the default and suits sporadic functions.
	EndOfInvocation Mode = iota
	// Continuous calls /next at once and flushes in the background while the
	// sandbox is thawed; it adds about 0 ms per invocation and suits busy
	// functions.
	Continuous
	// Periodic flushes every interval while an invocation runs. Start reports
	// it only when forced; for any mode, Long and NextPeriodic say when a
	// long-running invocation needs periodic flushes.
	Periodic
)

// Defaults applied by New to zero (or out of range) Options fields.
const (
	DefaultThreshold   = 10.0            // invocations per minute
	DefaultWindow      = 5 * time.Minute // sliding window of the rate
	DefaultMinSamples  = 10              // starts in the window before continuous is possible
	DefaultExitRatio   = 0.8             // leave continuous below Threshold*ExitRatio
	DefaultLongRunning = 30 * time.Second
	DefaultMaxSamples  = 1024
)

// maxRunning bounds the set of invocations that started and have not ended.
// An End can be lost (a runtimeDone that never arrives), and a set that only
// grows would leak; the bound is far above the concurrency of one execution
// environment, so in practice only such stale entries are ever evicted.
const maxRunning = 1024

// minSpan is the smallest time span a rate is divided by: starts recorded at
// the very same instant give a large finite rate instead of +Inf.
const minSpan = time.Millisecond

// modeNames are the spellings accepted by ParseMode and printed by String.
var modeNames = [...]string{
	EndOfInvocation: "end",
	Continuous:      "continuous",
	Periodic:        "periodic",
}

// String returns the mode's configuration spelling: "end", "continuous" or
// "periodic".
func (m Mode) String() string {
	if m >= 0 && int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// valid reports whether m is one of the declared modes.
func (m Mode) valid() bool { return m >= 0 && int(m) < len(modeNames) }

// ParseMode parses a flush strategy setting, case-insensitively and ignoring
// surrounding spaces: "auto" returns auto=true (forced is then
// EndOfInvocation, the mode an adaptive selector starts in); "end",
// "continuous" and "periodic" return that mode with auto=false.
func ParseMode(s string) (forced Mode, auto bool, err error) {
	v := strings.ToLower(strings.TrimSpace(s))
	if v == "auto" {
		return EndOfInvocation, true, nil
	}
	for m, name := range modeNames {
		if v == name {
			return Mode(m), false, nil
		}
	}
	return EndOfInvocation, false, fmt.Errorf("unknown flush strategy %q (allowed: auto, end, continuous, periodic)", s)
}

// Options configures a Selector. New replaces zero or out-of-range fields
// with the defaults above. Note that the zero Options is a selector forced to
// EndOfInvocation: set Auto to choose from the rate.
type Options struct {
	Auto        bool          // true: choose from the rate; false: always Forced
	Forced      Mode          // the mode when Auto is false; an unknown value means EndOfInvocation
	Threshold   float64       // invocations per minute to enter continuous; default 10
	Window      time.Duration // sliding window for the rate; default 5 min
	MinSamples  int           // starts needed in the window before continuous is possible; default 10, at least 2
	ExitRatio   float64       // hysteresis: leave continuous only below Threshold*ExitRatio; default 0.8, at most 1
	LongRunning time.Duration // an invocation running longer turns periodic; default 30 s
	MaxSamples  int           // bound on remembered start times; default 1024, at least MinSamples
}

// withDefaults returns o with every unset or meaningless field replaced, so
// the Selector never divides by zero or compares against NaN.
func (o Options) withDefaults() Options {
	if !o.Forced.valid() {
		o.Forced = EndOfInvocation
	}
	if !(o.Threshold > 0) || math.IsInf(o.Threshold, 0) { // also catches NaN
		o.Threshold = DefaultThreshold
	}
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	if o.MinSamples <= 0 {
		o.MinSamples = DefaultMinSamples
	}
	// A rate needs at least one gap, hence two starts.
	o.MinSamples = max(o.MinSamples, 2)
	if !(o.ExitRatio > 0) {
		o.ExitRatio = DefaultExitRatio
	}
	// A ratio above 1 would leave continuous at rates that enter it: flapping.
	o.ExitRatio = min(o.ExitRatio, 1)
	if o.LongRunning <= 0 {
		o.LongRunning = DefaultLongRunning
	}
	if o.MaxSamples <= 0 {
		o.MaxSamples = DefaultMaxSamples
	}
	// Fewer remembered starts than MinSamples could never reach continuous.
	o.MaxSamples = max(o.MaxSamples, o.MinSamples)
	return o
}

// Decision is the mode chosen for one invocation and why.
type Decision struct {
	Mode    Mode
	Changed bool    // differs from the previous decision's mode
	Reason  string  // human readable, for the log line of a change
	rate    float64 // invocations per minute as measured (0 when not enough samples); read by the tests
}

// Selector chooses the flush mode from the history of invocation starts and
// tracks running invocations for periodic flushing. It is safe for
// concurrent use: the lifecycle loop calls Start, the telemetry listener
// calls End, and a flusher may ask Long and NextPeriodic.
type Selector struct {
	mu sync.Mutex
	o  Options

	// buf[lo:] holds the start times within the window, oldest first and
	// never decreasing. Pruning advances lo; appending compacts buf in place
	// when it is full, so steady use does not allocate.
	buf []time.Time
	lo  int

	running map[string]time.Time // request id -> start, until End
	mode    Mode                 // the last decision's mode
}

// New returns a Selector for o; zero fields take the defaults. It starts in
// EndOfInvocation when Auto is set and in Forced otherwise.
func New(o Options) *Selector {
	o = o.withDefaults()
	s := &Selector{
		o:       o,
		buf:     make([]time.Time, 0, min(o.MaxSamples, 64)),
		running: make(map[string]time.Time),
		mode:    EndOfInvocation,
	}
	if !o.Auto {
		s.mode = o.Forced
	}
	return s
}

// Start records that an invocation began at now and returns the mode for it:
// EndOfInvocation or Continuous when adaptive, the forced mode otherwise.
// The rate is measured at now, so the silence since the previous start
// counts: after a burst and a long pause the mode returns to end.
func (s *Selector) Start(now time.Time, requestID string) Decision {
	s.mu.Lock()
	defer s.mu.Unlock()

	s.track(now, requestID)
	n, span, rate := s.record(now)

	prev := s.mode
	next, reason := s.decide(prev, n, span, rate)
	s.mode = next
	return Decision{Mode: next, Changed: next != prev, Reason: reason, rate: rate}
}

// track adds requestID to the running set, evicting the oldest entry when the
// set is full (that one most likely lost its End).
func (s *Selector) track(now time.Time, requestID string) {
	if _, ok := s.running[requestID]; !ok && len(s.running) >= maxRunning {
		if id, _, ok := s.oldestRunning(); ok {
			delete(s.running, id)
		}
	}
	// A repeated id replaces the earlier start: the newer one is the
	// invocation that is running now.
	s.running[requestID] = now
}

// record appends the start at now, drops starts that left the window or
// exceed MaxSamples, and measures the rate. It returns the number of starts
// in the window, the span from the oldest to now, and the rate in
// invocations per minute (0 below MinSamples).
func (s *Selector) record(now time.Time) (n int, span time.Duration, rate float64) {
	starts := s.buf[s.lo:]
	// A clock that steps backwards must not make spans negative or the list
	// unordered: such a start counts as happening with the newest one.
	if k := len(starts); k > 0 && now.Before(starts[k-1]) {
		now = starts[k-1]
	}
	// Keep starts with now-t <= Window; the list is ordered, so the stale
	// ones are a prefix.
	cut := now.Add(-s.o.Window)
	for s.lo < len(s.buf) && s.buf[s.lo].Before(cut) {
		s.lo++
	}
	// Make room for the new start within MaxSamples by forgetting the oldest.
	if len(s.buf)-s.lo >= s.o.MaxSamples {
		s.lo = len(s.buf) - s.o.MaxSamples + 1
	}
	if len(s.buf) == cap(s.buf) && s.lo > 0 {
		// Compact in place instead of letting append grow the array.
		k := copy(s.buf, s.buf[s.lo:])
		clear(s.buf[k:]) // drop references held by time.Time's location
		s.buf, s.lo = s.buf[:k], 0
	}
	s.buf = append(s.buf, now)

	starts = s.buf[s.lo:]
	n = len(starts)
	span = now.Sub(starts[0])
	if n < s.o.MinSamples {
		return n, span, 0
	}
	// N starts have N-1 gaps between them: the rate is gaps per minute over
	// the span they cover (the Rust layer's N over N-1 gaps made two calls
	// 12 s apart look like 10/min). Integer nanoseconds keep exact
	// boundaries exact: 10 starts 6 s apart give exactly 10/min.
	rate = float64(n-1) * float64(time.Minute) / float64(max(span, minSpan))
	return n, span, rate
}

// decide picks the next mode from the previous one and the measurement.
func (s *Selector) decide(prev Mode, n int, span time.Duration, rate float64) (Mode, string) {
	o := s.o
	if !o.Auto {
		return o.Forced, "forced by O2_FLUSH_STRATEGY=" + o.Forced.String()
	}
	exit := o.Threshold * o.ExitRatio
	// The printed rate is truncated, not rounded, so a rate just below a
	// bound never reads as equal to it ("7.99", not "8.00", below 8).
	shown := math.Floor(rate*100) / 100
	measured := fmt.Sprintf("%.2f invocations/min, %d starts over the last %v", shown, n, span.Round(time.Millisecond))
	switch {
	case n < o.MinSamples:
		// Too little history: two or three quick calls must not flip a
		// sporadic function, and a window emptied by silence returns to end.
		return EndOfInvocation, fmt.Sprintf("end: %d %s seen in the last %v, need %d before switching",
			n, plural(n, "invocation", "invocations"), o.Window, o.MinSamples)
	case rate >= o.Threshold:
		return Continuous, fmt.Sprintf("continuous: %s (threshold %g)", measured, o.Threshold)
	case prev == Continuous && rate >= exit:
		// Hysteresis: a rate hovering around the threshold keeps the mode.
		return Continuous, fmt.Sprintf("continuous: %s (threshold %g, stays until below %g)", measured, o.Threshold, exit)
	case prev == Continuous:
		return EndOfInvocation, fmt.Sprintf("end: %s (below %g, threshold %g)", measured, exit, o.Threshold)
	default:
		return EndOfInvocation, fmt.Sprintf("end: %s (threshold %g)", measured, o.Threshold)
	}
}

// plural returns one when n is 1 and many otherwise.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// End records that the invocation's runtime finished at now
// (platform.runtimeDone, or the extension gave up waiting). An unknown
// request id, such as a second End or the end of an evicted invocation, is
// ignored. Only the fact of ending matters to the decisions; now is taken
// for symmetry with Start.
func (s *Selector) End(now time.Time, requestID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.running, requestID)
}

// NextPeriodic returns when the next periodic flush is due, given the time
// of the last flush: for the oldest running invocation, the moment it
// crosses LongRunning if the last flush came before that, otherwise
// lastFlush+interval. The result may lie in the future (arm a timer for it)
// or at or before now (flush now). It is the zero time when no invocation is
// running or interval is not positive.
//
// Only timestamps decide: after a freeze (a big jump in now) the due time is
// in the past, the caller flushes once, and the next call, with lastFlush at
// that flush, is an interval ahead, so a thaw never causes a burst.
func (s *Selector) NextPeriodic(now, lastFlush time.Time, interval time.Duration) time.Time {
	if interval <= 0 {
		return time.Time{}
	}
	crossing := s.LongAt()
	if crossing.IsZero() || lastFlush.Before(crossing) {
		return crossing
	}
	return lastFlush.Add(interval)
}

// LongAt returns when the oldest running invocation becomes long-running
// (its start plus LongRunning), or the zero time when none is running.
func (s *Selector) LongAt() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, start, ok := s.oldestRunning()
	if !ok {
		return time.Time{}
	}
	return start.Add(s.o.LongRunning)
}

// Mode returns the current mode: the last decision's, or the initial one
// before any Start.
func (s *Selector) Mode() Mode {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mode
}

// oldestRunning returns the running invocation with the earliest start; on a
// tie the smallest id, so the answer does not depend on map order. The scan
// is linear in a set bounded by maxRunning and normally of size one.
func (s *Selector) oldestRunning() (id string, start time.Time, ok bool) {
	for rid, t := range s.running {
		if !ok || t.Before(start) || (t.Equal(start) && rid < id) {
			id, start, ok = rid, t, true
		}
	}
	return id, start, ok
}
