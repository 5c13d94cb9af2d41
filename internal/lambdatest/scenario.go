package lambdatest

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Scenario is a workload: N invocations at a rate or with idle gaps, each
// printing Lines lines of LineSize bytes over Duration.
type Scenario struct {
	// Invocations is how many invocations to run.
	Invocations int
	// Rate is invocations per second, start to start; 0 means back to
	// back. In managed-instances mode invocations overlap when they last
	// longer than 1/Rate.
	Rate float64
	// Gap is the alternative to Rate: idle (frozen) time between the end of
	// one invocation and the start of the next.
	Gap time.Duration
	// Lines is the number of lines printed per invocation.
	Lines int
	// LineSize is the length of each line in bytes (padded).
	LineSize int
	// Duration is the function's duration.
	Duration time.Duration
	// Marker is the unique run marker put in every line.
	Marker string
}

// Report is what a scenario measured.
type Report struct {
	// Invocations are the results in invocation order.
	Invocations []InvokeResult
	// OverheadP50, OverheadP99 and OverheadMax summarise the
	// PostRuntimeOverhead of the invocations (nearest rank).
	OverheadP50, OverheadP99, OverheadMax time.Duration
	// TimedOut counts invocations where an extension missed the deadline.
	TimedOut int
	// Lines is every line printed, for exactly-once checks.
	Lines []string
	// Elapsed is the wall time of the whole run.
	Elapsed time.Duration
}

// ScenarioLine returns line number line of invocation inv:
// "<marker> inv=<inv> line=<line> " padded with '.' to size bytes (longer
// if size is too small to hold the prefix). ParseScenarioLine reads it back.
func ScenarioLine(marker string, inv, line, size int) string {
	s := fmt.Sprintf("%s inv=%d line=%d", marker, inv, line)
	if size > len(s) {
		s += " " + strings.Repeat(".", size-len(s)-1)
	}
	return s
}

// ParseScenarioLine parses a line made by ScenarioLine. ok is false for
// any other text. The marker must not contain " inv=".
func ParseScenarioLine(s string) (marker string, inv, line int, ok bool) {
	i := strings.LastIndex(s, " inv=")
	if i < 0 {
		return "", 0, 0, false
	}
	marker = s[:i]
	invStr, rest, found := strings.Cut(s[i+len(" inv="):], " line=")
	if !found {
		return "", 0, 0, false
	}
	lineStr, _, _ := strings.Cut(rest, " ")
	inv, err1 := strconv.Atoi(invStr)
	line, err2 := strconv.Atoi(lineStr)
	if err1 != nil || err2 != nil {
		return "", 0, 0, false
	}
	return marker, inv, line, true
}

// Run drives a scenario and summarises it. It stops at the first failed
// invocation and returns what it measured so far with the error.
func (p *Platform) Run(ctx context.Context, s Scenario) (Report, error) {
	begin := time.Now()
	var interval time.Duration
	if s.Rate > 0 {
		interval = time.Duration(float64(time.Second) / s.Rate)
	}
	rep := Report{Invocations: make([]InvokeResult, s.Invocations)}
	errs := make([]error, s.Invocations)
	var wg sync.WaitGroup
	concurrent := p.o.ManagedInstances && interval > 0
	lastEnd := begin
	for i := range s.Invocations {
		if i > 0 {
			at := lastEnd.Add(s.Gap)
			if interval > 0 {
				at = begin.Add(time.Duration(i) * interval)
			}
			if err := sleepUntil(ctx, at); err != nil {
				errs[i] = err
				break
			}
		}
		lines := make([]string, s.Lines)
		for j := range lines {
			lines[j] = ScenarioLine(s.Marker, i, j, s.LineSize)
		}
		rep.Lines = append(rep.Lines, lines...)
		inv := Invocation{Lines: lines, Duration: s.Duration}
		if concurrent {
			wg.Go(func() { rep.Invocations[i], errs[i] = p.Invoke(ctx, inv) })
			continue
		}
		rep.Invocations[i], errs[i] = p.Invoke(ctx, inv)
		lastEnd = time.Now()
		if errs[i] != nil {
			break
		}
	}
	wg.Wait()
	rep.Elapsed = time.Since(begin)
	for i, err := range errs {
		if err != nil {
			rep.Invocations = rep.Invocations[:i]
			rep.summarise()
			return rep, fmt.Errorf("lambdatest: scenario invocation %d: %w", i, err)
		}
	}
	rep.summarise()
	return rep, nil
}

// summarise fills the overhead percentiles and the timeout count.
func (r *Report) summarise() {
	var d []time.Duration
	r.TimedOut = 0
	for _, inv := range r.Invocations {
		d = append(d, inv.PostRuntimeOverhead)
		if inv.TimedOut {
			r.TimedOut++
		}
	}
	r.OverheadP50 = percentile(d, 0.50)
	r.OverheadP99 = percentile(d, 0.99)
	r.OverheadMax = percentile(d, 1)
}

// percentile returns the nearest-rank q-quantile of d (0 for none).
func percentile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	rank := int(q*float64(len(s)) + 0.999999999)
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

// Latencies returns, sorted, how long each function line of marker took
// from being printed (its event's time) to its arrival, as arrived gives
// it per line text (e.g. o2test's Arrivals); lines that never arrived are
// left out.
func Latencies(evs []Event, arrived map[string]time.Time, marker string) []time.Duration {
	var lat []time.Duration
	for _, ev := range evs {
		if ev.Type != "function" {
			continue
		}
		text := RecordText(ev.Record)
		if m, _, _, ok := ParseScenarioLine(text); ok && m == marker {
			if at, ok := arrived[text]; ok {
				lat = append(lat, at.Sub(ev.Time))
			}
		}
	}
	slices.Sort(lat)
	return lat
}
