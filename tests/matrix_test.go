package tests

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/o2-extension/o2-extension/internal/lambdatest"
	"github.com/o2-extension/o2-extension/internal/openobserve/o2test"
)

// The fault matrix (issue 6, items 1-3 and 9): every delivery scenario runs
// the real binary in the emulator, asserts its own expectations, and adds
// one row to a table printed at the end (and written to the file named by
// O2_FAULT_MATRIX_OUT), so that the next change can be compared with it in
// one run:
//
//	O2_FAULT_MATRIX_OUT=/tmp/matrix.md go test -run TestFaultMatrix -v ./tests/
//
// One scenario alone: go test -run 'TestFaultMatrix/rows/outage' -v ./tests/

// mxRow is one line of the fault matrix.
type mxRow struct {
	scenario             string
	invocations, lines   int
	delivered, lost, dup int
	worst, p50           time.Duration // post-runtime overhead (the hold of /next)
	e2eP50, e2eP99       time.Duration // printed by the function to received by OpenObserve
	rssMB                float64       // the extension's peak resident memory
	cpuPerLine           time.Duration // the extension's CPU time over the lines printed
	requests             int           // `_json` requests the stand-in got
	// expectedLoss marks rows where OpenObserve (or the buffer bound)
	// loses lines by design; measured is set once the row has run.
	expectedLoss, measured bool
	// marker and want are the lines printed, for diagnostics.
	marker string
	want   []string
}

// mxScenario is one row's scenario: it runs, asserts and measures.
type mxScenario struct {
	name string
	run  func(t *testing.T, name string) mxRow
}

// TestFaultMatrix runs every row in parallel, then logs the table; a row
// that fails its own expectations still has its line in the table.
func TestFaultMatrix(t *testing.T) {
	t.Parallel()
	scenarios := []mxScenario{
		{"healthy baseline, busy", mxBaseline},
		{"20% 5xx, busy", mxFaults20Busy},
		{"429 with Retry-After 1 s on 10%, busy", mxRateLimitedBusy},
		{"slow backend (300 ms per request), busy", mxSlowBusy},
		{"30% 5xx, sporadic (end-of-invocation)", mxFaults30Sporadic},
		{"one 40 s invocation, 10 lines/s, defaults", mxLongInvocation},
		{"SHUTDOWN behind a 9,000-record backlog, answers 200 ms late", mxBacklogShutdown},
		{"200 with an HTML page on 10% (a proxy), busy", mxNotOpenObserveBusy},
		{"400 SerdeJsonError for one record, busy", mxPoisonRecordBusy},
		{"column limit (22) exceeded by mixed batches, busy", mxColumnLimitBusy},
		{"400 quota exceeded on 5%, busy", mxQuota400Busy},
		{"outage 503 6 s, auto (continuous)", mxOutageContinuous},
		{"outage 503 6 s, end-of-invocation", mxOutageEnd},
		{"faults 20% 5xx, 5% 429, 5% resets, latency, busy", mxFaultsBusy},
		{"faults 20% 5xx, 5% 429, 5% resets, latency, sporadic", mxFaultsSporadic},
		{"500 on every other request, one 5 s invocation", mxJitter},
		{"hang until the 1 s timeout, then recovery", mxHangThenRecover},
		{"hang through SHUTDOWN (30 s timeout)", mxHangThroughShutdown},
		{"401 for 2.5 s, then recovery (continuous)", mxUnauthorized},
		{"403 for 2.5 s, then recovery (end-of-invocation)", mxForbidden},
		{"401 with a 1 MiB buffer: oldest dropped", mxUnauthorizedDrops},
		{"413 above 64 KiB: batches split", mxTooLarge},
		{"200 with failed records (2 of 6 invocations too old)", mxFailedRecords},
		{"200 with records silently dropped (column limit)", mxSilentlyDropped},
	}
	rows := make([]mxRow, len(scenarios))
	// The group returns once every parallel row has finished.
	t.Run("rows", func(t *testing.T) {
		for i, sc := range scenarios {
			t.Run(sc.name, func(t *testing.T) {
				t.Parallel()
				rows[i] = sc.run(t, sc.name)
				rows[i].measured = true
			})
		}
	})
	table := mxTable(rows)
	t.Log("fault matrix:\n" + table)
	if path := os.Getenv("O2_FAULT_MATRIX_OUT"); path != "" {
		if err := os.WriteFile(path, []byte(table), 0o644); err != nil {
			t.Errorf("write O2_FAULT_MATRIX_OUT: %v", err)
		}
	}
}

// mxTable renders the rows that ran as a Markdown table.
func mxTable(rows []mxRow) string {
	var b strings.Builder
	b.WriteString("| scenario | invocations | lines | delivered | lost | duplicated | worst hold | p50 hold | end-to-end p50 | end-to-end p99 | requests | peak RSS | CPU per line |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		if !r.measured {
			continue // filtered out by -run, or failed before measuring
		}
		lost := fmt.Sprint(r.lost)
		if r.expectedLoss {
			lost += " (by design)"
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %s | %d | %v | %v | %v | %v | %d | %.1f MB | %v |\n",
			r.scenario, r.invocations, r.lines, r.delivered, lost, r.dup,
			r.worst.Round(time.Millisecond), r.p50.Round(time.Millisecond),
			r.e2eP50.Round(time.Millisecond), r.e2eP99.Round(time.Millisecond), r.requests,
			r.rssMB, r.cpuPerLine.Round(100*time.Nanosecond))
	}
	return b.String()
}

// mxStart is start with stand-in options of the test's choosing (a body
// limit, a clock, a column limit).
func mxStart(t *testing.T, oo o2test.Options, lo lambdatest.Options, env ...string) *harness {
	t.Helper()
	h := &harness{t: t, o2: o2test.Run(t, oo)}
	lo.Env = append(o2Env(h.o2), lo.Env...)
	return h.launch(lo, env...)
}

// mxMeasure makes a row from what the stand-in stored and what the
// invocations measured. Unlike exactlyOnce it does not judge: each scenario
// states what it expects.
func mxMeasure(t *testing.T, h *harness, name, marker string, want []string, invs []lambdatest.InvokeResult) mxRow {
	t.Helper()
	got := h.marked(marker)
	r := mxRow{scenario: name, invocations: len(invs), lines: len(want), requests: h.o2.Calls(), marker: marker, want: want}
	seen := make(map[string]bool, len(want))
	for _, l := range want {
		seen[l] = true
		switch n := got[l]; {
		case n == 0:
			r.lost++
		default:
			r.delivered++
			r.dup += n - 1
		}
	}
	for l := range got {
		if !seen[l] {
			t.Errorf("unexpected line arrived: %.60q", l)
		}
	}
	d := make([]time.Duration, len(invs))
	for i, inv := range invs {
		d[i] = inv.PostRuntimeOverhead
	}
	slices.Sort(d)
	if len(d) > 0 {
		r.worst = d[len(d)-1]
		r.p50 = d[(len(d)+1)/2-1] // nearest rank
	}
	r.e2eP50, r.e2eP99 = mxEndToEnd(h, marker)
	st := h.p.Stats()
	r.rssMB = float64(st.PeakRSSBytes) / (1 << 20)
	if len(want) > 0 {
		r.cpuPerLine = time.Duration(st.CPUSeconds * float64(time.Second) / float64(len(want)))
	}
	return r
}

// mxEndToEnd is the p50 and p99 (nearest rank) of how long the marker's
// lines took from being printed to reaching OpenObserve.
func mxEndToEnd(h *harness, marker string) (p50, p99 time.Duration) {
	lat := lambdatest.Latencies(h.p.Events(), h.o2.Arrivals(), marker)
	if len(lat) == 0 {
		return 0, 0
	}
	rank := func(q float64) time.Duration { return lat[max(int(math.Ceil(q*float64(len(lat))))-1, 0)] }
	return rank(0.50), rank(0.99)
}

// mxNoTimeouts fails for every invocation an extension held past its
// deadline.
func mxNoTimeouts(t *testing.T, invs []lambdatest.InvokeResult) {
	t.Helper()
	for i, inv := range invs {
		if inv.TimedOut {
			t.Errorf("invocation %d timed out: held past its deadline (overhead %v)", i, inv.PostRuntimeOverhead)
		}
	}
}

// mxExactlyOnce fails unless the row lost and duplicated nothing, saying
// which invocations the lost or duplicated lines came from.
func mxExactlyOnce(t *testing.T, h *harness, r mxRow) {
	t.Helper()
	if r.lost+r.dup == 0 {
		return
	}
	got := h.marked(r.marker)
	lost, dup := map[int]int{}, map[int]int{}
	for _, l := range r.want {
		_, inv, _, _ := lambdatest.ParseScenarioLine(l)
		switch n := got[l]; {
		case n == 0:
			lost[inv]++
		case n > 1:
			dup[inv] += n - 1
		}
	}
	// A loss on Lambda's side (delivery to the listener abandoned) shows
	// as platform.logsDropped.
	var lambdaDrops []string
	for _, ev := range h.p.Events() {
		if ev.Type == "platform.logsDropped" {
			lambdaDrops = append(lambdaDrops, string(ev.Record))
		}
	}
	t.Errorf("lost %d, duplicated %d of %d lines (per invocation: lost %v, duplicated %v; platform.logsDropped: %v)\n%s",
		r.lost, r.dup, r.lines, lost, dup, lambdaDrops, tail(h.p.Output()))
}

// mxRun runs a scenario and fails the test if it could not complete.
func mxRun(t *testing.T, h *harness, s lambdatest.Scenario) lambdatest.Report {
	t.Helper()
	rep, err := h.p.Run(t.Context(), s)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, tail(h.p.Output()))
	}
	return rep
}

// mxInvokeN runs n invocations of lines lines of size bytes each, one
// after the other, calling between(i) (if not nil) after invocation i
// returned.
func mxInvokeN(t *testing.T, h *harness, marker string, n, lines, size int, between func(i int)) ([]string, []lambdatest.InvokeResult) {
	t.Helper()
	var want []string
	var invs []lambdatest.InvokeResult
	for i := range n {
		ls := make([]string, lines)
		for j := range ls {
			ls[j] = lambdatest.ScenarioLine(marker, i, j, size)
		}
		want = append(want, ls...)
		res, err := h.p.Invoke(t.Context(), lambdatest.Invocation{Lines: ls, Duration: 5 * time.Millisecond})
		if err != nil {
			t.Fatalf("invoke %d: %v\n%s", i, err, tail(h.p.Output()))
		}
		invs = append(invs, res)
		if between != nil {
			between(i)
		}
	}
	return want, invs
}

// mxStatuses counts the `_json` requests answered with each status (0: no
// answer: reset, hung or abandoned).
func mxStatuses(h *harness) map[int]int {
	n := map[int]int{}
	for _, rq := range h.o2.Requests() {
		if strings.HasSuffix(rq.Path, "/_json") && rq.Done {
			n[rq.Status]++
		}
	}
	return n
}

// mxBusy is the busy function of the delivery issue, at its full scale:
// 300 invocations at 20/s, 50 text lines of 120 B each (15,000 lines).
func mxBusy(marker string) lambdatest.Scenario {
	return lambdatest.Scenario{Invocations: 300, Rate: 20, Lines: 50, LineSize: 120, Duration: 5 * time.Millisecond, Marker: marker}
}

// The same workload as the outages, with nothing wrong: the reference for
// the other rows.
func mxBaseline(t *testing.T, name string) mxRow {
	h := start(t, lambdatest.Options{}, true)
	rep := mxRun(t, h, mxBusy("mx-base"))
	h.shutdown()
	r := mxMeasure(t, h, name, "mx-base", rep.Lines, rep.Invocations)
	mxNoTimeouts(t, rep.Invocations)
	mxExactlyOnce(t, h, r)
	return r
}

// mxOutage answers 503 to every request from 4.5 s to 10.5 s into the run
// (6 s in the middle of 15 s) and returns the window.
func mxOutage(h *harness) (from, to time.Time) {
	from = time.Now().Add(4500 * time.Millisecond)
	to = from.Add(6 * time.Second)
	h.o2.SetFaultFunc(func(int, *http.Request) *o2test.Fault {
		if now := time.Now(); now.After(from) && now.Before(to) {
			return &o2test.Fault{Status: http.StatusServiceUnavailable}
		}
		return nil
	})
	return from, to
}

// mxCheckKept fails unless some send gave up during the outage (and said
// that its data was kept): the path the exactly-once check is about.
func mxCheckKept(t *testing.T, h *harness) {
	t.Helper()
	if !strings.Contains(h.p.Output(), "data is kept and retried") {
		t.Errorf("no send gave up during the outage: the scenario did not test keeping the data\n%s", tail(h.p.Output()))
	}
}

// mxCheckLogVolume fails if a failure burst of about span made the
// extension print more warnings than one per kind per 10 s (every line it
// prints comes back to it as telemetry): the outage row once logged 58.
func mxCheckLogVolume(t *testing.T, h *harness, span time.Duration) {
	t.Helper()
	kinds := map[string]int{}
	for l := range strings.SplitSeq(h.p.Output(), "\n") {
		if strings.Contains(l, "level=warning") || strings.Contains(l, "level=error") {
			msg, _, _ := strings.Cut(l[strings.Index(l, "msg=")+4:], ":")
			kinds[msg]++
		}
	}
	for k, n := range kinds {
		if most := int(span/(10*time.Second)) + 2; n > most {
			t.Errorf("%d warnings %s over about %v, want at most %d (one per 10 s per kind)", n, k, span, most)
		}
	}
}

// mxResumeBound is how soon after the backend's recovery sending must
// resume: the probe interval (O2_MAX_RETRY_DELAY_MS, 1 s) plus a margin
// for a loaded machine.
const mxResumeBound = time.Second + 300*time.Millisecond

// mxCheckResumed fails unless a request was stored within mxResumeBound of
// the recovery at to, and returns how long it took.
func mxCheckResumed(t *testing.T, h *harness, to time.Time) time.Duration {
	t.Helper()
	for _, rq := range h.o2.Requests() {
		if rq.Status == http.StatusOK && strings.HasSuffix(rq.Path, "/_json") && rq.Time.After(to) {
			d := rq.Time.Sub(to)
			if d > mxResumeBound {
				t.Errorf("first delivery %v after the recovery, want within %v", d, mxResumeBound)
			}
			t.Logf("sending resumed %v after the recovery", d)
			return d
		}
	}
	t.Errorf("nothing delivered after the recovery")
	return 0
}

// mxContinuousBound is the most a continuous-mode invocation may be held
// after its runtime is done. /next is called at INVOKE, so the overhead is
// scheduling noise, which on a loaded 2-core machine reaches a few hundred
// ms; the bound keeps that margin. It catches a hold through failing or
// slow requests (each backoff starts at O2_INITIAL_RETRY_DELAY_MS, 100 ms,
// and doubles), not one fast request to the stand-in.
const mxContinuousBound = 500 * time.Millisecond

// Item 1, busy function: it flushes in the background, so the outage never
// reaches /next, and after the recovery every line arrives exactly once.
func mxOutageContinuous(t *testing.T, name string) mxRow {
	h := start(t, lambdatest.Options{}, true)
	from, to := mxOutage(h)
	rep := mxRun(t, h, mxBusy("mx-out-c"))
	h.shutdown()
	r := mxMeasure(t, h, name, "mx-out-c", rep.Lines, rep.Invocations)
	mxNoTimeouts(t, rep.Invocations)
	mxExactlyOnce(t, h, r)
	if n := mxStatuses(h)[http.StatusServiceUnavailable]; n == 0 {
		t.Errorf("no request hit the outage")
	}
	mxCheckKept(t, h)
	mxCheckResumed(t, h, to)
	mxCheckLogVolume(t, h, 15*time.Second)
	if !strings.Contains(h.p.Output(), "flush mode: continuous") {
		t.Errorf("never switched to continuous:\n%s", tail(h.p.Output()))
	}
	for i, inv := range rep.Invocations {
		if inv.Start.After(from) && inv.Start.Before(to) && inv.PostRuntimeOverhead > mxContinuousBound {
			t.Errorf("invocation %d during the outage held %v after its runtime was done, want /next at once (< %v)", i, inv.PostRuntimeOverhead, mxContinuousBound)
		}
	}
	return r
}

// Item 1, forced end-of-invocation: each invocation waits for its flush at
// most O2_FLUSH_BUDGET_MS, then calls /next and keeps the data for later.
func mxOutageEnd(t *testing.T, name string) mxRow {
	const budget = 200 * time.Millisecond
	// Time for runtimeDone to reach the extension and for /next to reach
	// the platform; far below the 1 s first retry wait that a flush
	// ignoring its budget would spend.
	const margin = 500 * time.Millisecond
	h := start(t, lambdatest.Options{}, true, "O2_FLUSH_STRATEGY=end", fmt.Sprintf("O2_FLUSH_BUDGET_MS=%d", budget.Milliseconds()))
	_, to := mxOutage(h)
	rep := mxRun(t, h, mxBusy("mx-out-e"))
	h.shutdown()
	r := mxMeasure(t, h, name, "mx-out-e", rep.Lines, rep.Invocations)
	mxNoTimeouts(t, rep.Invocations)
	mxExactlyOnce(t, h, r)
	if n := mxStatuses(h)[http.StatusServiceUnavailable]; n == 0 {
		t.Errorf("no request hit the outage")
	}
	mxCheckKept(t, h)
	mxCheckResumed(t, h, to)
	if r.worst > budget+margin {
		t.Errorf("worst post-runtime overhead %v, want at most O2_FLUSH_BUDGET_MS %v + %v", r.worst, budget, margin)
	}
	return r
}

// mxRetryAfter is the Retry-After of the injected 429s, in seconds.
const mxRetryAfter = 1

// mxFaults is the mixed fault policy of item 2, a fixed pattern over the
// request number so that a run is reproducible: per 20 requests, four 500
// or 503 (20%), one 429 with Retry-After (5%) and one connection reset
// (5%), never two in a row, so every fault is followed by a retry of the
// same request (O2_MAX_RETRIES 3); healthy answers get 0-60 ms of added
// latency on top of the SetLatency base.
func mxFaults(n int, _ *http.Request) *o2test.Fault {
	switch n % 20 {
	case 2, 9:
		return &o2test.Fault{Status: http.StatusInternalServerError}
	case 5, 13:
		return &o2test.Fault{Status: http.StatusServiceUnavailable}
	case 16:
		return &o2test.Fault{Status: http.StatusTooManyRequests, RetryAfter: fmt.Sprint(mxRetryAfter)}
	case 19:
		return &o2test.Fault{Reset: true}
	}
	return &o2test.Fault{Delay: time.Duration(n*37%61) * time.Millisecond}
}

// mxCheckFaults asserts what the request log must show: each fault kind
// was hit, and a 429's Retry-After paused the whole client: no request
// (from any sender) arrived until it was over, but for those already on
// their way when the 429 was answered. Requests from SHUTDOWN on (sent at
// shutdownAt) are not judged: the final drain goes at once.
func mxCheckFaults(t *testing.T, h *harness, shutdownAt time.Time) {
	t.Helper()
	// A request sent before the client read the 429 can arrive just after.
	const onTheirWay = 50 * time.Millisecond
	var reqs []o2test.Request
	for _, rq := range h.o2.Requests() {
		if strings.HasSuffix(rq.Path, "/_json") {
			reqs = append(reqs, rq)
		}
	}
	st := mxStatuses(h)
	if st[http.StatusTooManyRequests] == 0 || st[http.StatusInternalServerError]+st[http.StatusServiceUnavailable] == 0 || st[0] == 0 {
		t.Errorf("not every fault kind was hit (%d requests): %v", len(reqs), st)
	}
	judged := 0 // 429s followed by a request before SHUTDOWN
	for i, rq := range reqs {
		if rq.Status != http.StatusTooManyRequests {
			continue
		}
		pauseEnd := rq.Time.Add(mxRetryAfter * time.Second)
		if pauseEnd.After(shutdownAt) {
			continue
		}
		judged++
		for _, next := range reqs[i+1:] {
			if next.Time.After(pauseEnd) {
				break
			}
			if next.Time.After(rq.Time.Add(onTheirWay)) {
				t.Errorf("a request came %v after a 429 with Retry-After: %d: the pause did not hold every sender", next.Time.Sub(rq.Time), mxRetryAfter)
				break
			}
		}
	}
	if judged == 0 {
		t.Errorf("no 429 was followed by a request before SHUTDOWN: Retry-After was not tested")
	}
}

// Item 2, busy function (continuous flushing): nothing lost, nothing
// duplicated (a faulted request stores nothing, so a duplicate is ours).
func mxFaultsBusy(t *testing.T, name string) mxRow {
	return mxFaultRun(t, name, nil, mxBusy("mx-flt-b"))
}

// Item 2, sporadic function (end-of-invocation flushing, frozen between
// invocations): the same faults, the same expectations.
func mxFaultsSporadic(t *testing.T, name string) mxRow {
	return mxFaultRun(t, name, []string{"O2_FLUSH_STRATEGY=end"},
		lambdatest.Scenario{Invocations: 45, Gap: 20 * time.Millisecond, Lines: 20, LineSize: 100, Duration: 5 * time.Millisecond, Marker: "mx-flt-s"})
}

// mxFaultRun runs sc under the item-2 faults with the extension configured
// by env, and checks nothing was lost or duplicated and the faults were
// honoured.
func mxFaultRun(t *testing.T, name string, env []string, sc lambdatest.Scenario) mxRow {
	h := start(t, lambdatest.Options{}, true, env...)
	h.o2.SetLatency(10 * time.Millisecond)
	h.o2.SetFaultFunc(mxFaults)
	rep := mxRun(t, h, sc)
	// The faults end with the run: a 1 s Retry-After during the 1.7 s of
	// SHUTDOWN would, by design, leave a batch unsent.
	h.o2.SetFaultFunc(nil)
	shutdownAt := time.Now()
	h.shutdown()
	r := mxMeasure(t, h, name, sc.Marker, rep.Lines, rep.Invocations)
	mxNoTimeouts(t, rep.Invocations)
	mxExactlyOnce(t, h, r)
	mxCheckFaults(t, h, shutdownAt)
	return r
}

// A lone failure is retried at once: in one long invocation (thawed
// throughout, so the gaps in the request log are the client's own), every
// other request is answered 500, and each is retried within a round trip,
// not after a backoff (the jittered backoff of a run of failures is
// TestRetryWait's). Nothing is lost or sent twice. The backoff is set long
// (a draw up to 2 s, median 1 s) so that a median gap under 400 ms tells
// the two apart with a wide margin on a loaded machine.
func mxJitter(t *testing.T, name string) mxRow {
	h := start(t, lambdatest.Options{FunctionTimeout: 10 * time.Second}, true,
		"O2_FLUSH_STRATEGY=continuous", "O2_FLUSH_INTERVAL_MS=100", "O2_MAX_IN_FLIGHT=1",
		"O2_INITIAL_RETRY_DELAY_MS=2000", "O2_MAX_RETRY_DELAY_MS=4000")
	h.o2.SetFaultFunc(func(n int, _ *http.Request) *o2test.Fault {
		if n%2 == 1 {
			return &o2test.Fault{Status: http.StatusInternalServerError}
		}
		return nil
	})
	lines := make([]string, 250)
	for i := range lines {
		lines[i] = lambdatest.ScenarioLine("mx-jitter", 0, i, 100)
	}
	res, err := h.p.Invoke(t.Context(), lambdatest.Invocation{Lines: lines, Duration: 5 * time.Second})
	if err != nil {
		t.Fatalf("invoke: %v", err)
	}
	h.o2.SetFaultFunc(nil)
	shutdownAt := time.Now()
	h.shutdown()
	invs := []lambdatest.InvokeResult{res}
	r := mxMeasure(t, h, name, "mx-jitter", lines, invs)
	mxNoTimeouts(t, invs)
	mxExactlyOnce(t, h, r)
	var gaps []time.Duration
	reqs := h.o2.Requests()
	for i, rq := range reqs[:len(reqs)-1] {
		if rq.Status == http.StatusInternalServerError && reqs[i+1].Time.Before(shutdownAt) {
			gaps = append(gaps, reqs[i+1].Time.Sub(rq.Time))
		}
	}
	slices.Sort(gaps)
	if len(gaps) < 20 {
		t.Fatalf("only %d retries after a 500 before SHUTDOWN, want 20", len(gaps))
	}
	// The median, so that one retry delayed by a loaded machine does not
	// decide; a backoff would put it near 1 s.
	if med := gaps[len(gaps)/2]; med >= 400*time.Millisecond {
		t.Errorf("median gap after a lone 500 is %v (%v .. %v over %d retries), want a retry at once", med, gaps[0], gaps[len(gaps)-1], len(gaps))
	}
	t.Logf("%d retry gaps after a 500: %v .. %v", len(gaps), gaps[0], gaps[len(gaps)-1])
	return r
}

// Item 2, a server that accepts the request and never answers, for the
// first 2 s: with a flush budget far past the 1.5 s function timeout, only
// the invocation's deadline bounds the wait, and no invocation times out;
// after the recovery every line arrives once.
func mxHangThenRecover(t *testing.T, name string) mxRow {
	h := start(t, lambdatest.Options{FunctionTimeout: 1500 * time.Millisecond}, true,
		"O2_FLUSH_STRATEGY=end", "O2_FLUSH_BUDGET_MS=60000", "O2_REQUEST_TIMEOUT_MS=1000", "O2_INITIAL_RETRY_DELAY_MS=100")
	until := time.Now().Add(2 * time.Second)
	h.o2.SetFaultFunc(func(int, *http.Request) *o2test.Fault {
		if time.Now().Before(until) {
			return &o2test.Fault{Hang: true}
		}
		return nil
	})
	want, invs := mxInvokeN(t, h, "mx-hang", 6, 20, 100, nil)
	h.shutdown()
	r := mxMeasure(t, h, name, "mx-hang", want, invs)
	mxNoTimeouts(t, invs)
	mxExactlyOnce(t, h, r)
	if n := mxStatuses(h)[0]; n == 0 {
		t.Errorf("no request hung")
	}
	return r
}

// Item 2, a server that hangs for good, with the default 30 s attempt
// timeout: no invocation times out and SHUTDOWN still ends before its
// deadline (h.shutdown checks it). Nothing can be delivered.
func mxHangThroughShutdown(t *testing.T, name string) mxRow {
	h := start(t, lambdatest.Options{}, true, "O2_FLUSH_STRATEGY=end")
	h.o2.SetFaultFunc(func(int, *http.Request) *o2test.Fault { return &o2test.Fault{Hang: true} })
	want, invs := mxInvokeN(t, h, "mx-hang-sd", 3, 10, 100, nil)
	h.shutdown()
	r := mxMeasure(t, h, name, "mx-hang-sd", want, invs)
	r.expectedLoss = true
	mxNoTimeouts(t, invs)
	if r.delivered != 0 || r.dup != 0 {
		t.Errorf("delivered %d, duplicated %d through a server that never answers", r.delivered, r.dup)
	}
	return r
}

// mxAuthWindow answers status to every request for the next d.
func mxAuthWindow(h *harness, status int, d time.Duration) {
	until := time.Now().Add(d)
	h.o2.SetFaultFunc(func(int, *http.Request) *o2test.Fault {
		if time.Now().Before(until) {
			return &o2test.Fault{Status: status}
		}
		return nil
	})
}

// mxCheckAuth asserts item 3's rules for refused credentials: about one
// request per flush interval while they are refused (no retry storm), one
// clear error line per interval, and at least one of each.
func mxCheckAuth(t *testing.T, h *harness, status int, interval time.Duration, words string) {
	t.Helper()
	var first, last time.Time
	n := 0
	for _, rq := range h.o2.Requests() {
		if rq.Status == status {
			if n == 0 {
				first = rq.Time
			}
			last = rq.Time
			n++
		}
	}
	if n == 0 {
		t.Fatalf("no request was refused with %d", status)
	}
	// One per interval over the span, plus the first, plus one whose
	// interval started just before the span.
	most := int(last.Sub(first)/interval) + 2
	if n > most {
		t.Errorf("%d requests refused with %d over %v: a retry storm (want at most %d, one per %v flush interval)", n, status, last.Sub(first), most, interval)
	}
	lines := 0
	for l := range strings.SplitSeq(h.p.Output(), "\n") {
		if strings.Contains(l, "refused the credentials") {
			lines++
			if !strings.Contains(l, words) {
				t.Errorf("error line does not say %q: %s", words, l)
			}
		}
	}
	if lines == 0 || lines > most {
		t.Errorf("%d credential error lines for %d refused requests over %v, want between 1 and %d (one per flush interval)\n%s",
			lines, n, last.Sub(first), most, tail(h.p.Output()))
	}
	t.Logf("%d requests refused with %d over %v; %d error lines", n, status, last.Sub(first), lines)
}

// Item 3, 401 while the function is busy (continuous: a flush is asked for
// at every INVOKE and every full batch): at most one request per interval,
// the data kept, and all of it delivered once the credentials work again.
func mxUnauthorized(t *testing.T, name string) mxRow {
	return mxAuthRecovery(t, name, http.StatusUnauthorized, "wrong credentials or organization: check O2_AUTHORIZATION_HEADER",
		lambdatest.Scenario{Invocations: 100, Rate: 20, Lines: 20, LineSize: 100, Duration: 5 * time.Millisecond, Marker: "mx-401"},
		"O2_FLUSH_STRATEGY=continuous", "O2_BATCH_SIZE=50")
}

// Item 3, 403 for a sporadic function (end-of-invocation: a flush at every
// invocation): the same rules.
func mxForbidden(t *testing.T, name string) mxRow {
	return mxAuthRecovery(t, name, http.StatusForbidden, "forbidden: the credentials are valid but may not ingest",
		lambdatest.Scenario{Invocations: 80, Gap: 40 * time.Millisecond, Lines: 20, LineSize: 100, Duration: 5 * time.Millisecond, Marker: "mx-403"},
		"O2_FLUSH_STRATEGY=end")
}

// mxAuthRecovery runs sc while OpenObserve answers status for 2.5 s, with a
// 500 ms flush interval: nothing lost or duplicated, no invocation held to
// its deadline, and the refusal logged once per interval with explain.
func mxAuthRecovery(t *testing.T, name string, status int, explain string, sc lambdatest.Scenario, env ...string) mxRow {
	const interval = 500 * time.Millisecond
	h := start(t, lambdatest.Options{}, true, append(env, fmt.Sprintf("O2_FLUSH_INTERVAL_MS=%d", interval.Milliseconds()))...)
	mxAuthWindow(h, status, 2500*time.Millisecond)
	rep := mxRun(t, h, sc)
	h.shutdown()
	r := mxMeasure(t, h, name, sc.Marker, rep.Lines, rep.Invocations)
	mxNoTimeouts(t, rep.Invocations)
	mxExactlyOnce(t, h, r)
	mxCheckAuth(t, h, status, interval, explain)
	return r
}

// Item 3, 401 for longer than a 1 MiB buffer lasts (about 1 MB/s of
// lines): the oldest records are dropped, and the drop is counted (summary),
// logged and reported as an o2-extension.dropped record; what was not
// dropped arrives once.
func mxUnauthorizedDrops(t *testing.T, name string) mxRow {
	h := start(t, lambdatest.Options{}, true, "O2_FLUSH_STRATEGY=continuous", "O2_FLUSH_INTERVAL_MS=500", "O2_MAX_BUFFER_SIZE_MB=1")
	mxAuthWindow(h, http.StatusUnauthorized, 3*time.Second)
	rep := mxRun(t, h, lambdatest.Scenario{Invocations: 100, Rate: 20, Lines: 50, LineSize: 1000, Duration: 5 * time.Millisecond, Marker: "mx-401-drop"})
	h.shutdown()
	r := mxMeasure(t, h, name, "mx-401-drop", rep.Lines, rep.Invocations)
	r.expectedLoss = true
	mxNoTimeouts(t, rep.Invocations)
	if r.dup != 0 {
		t.Errorf("duplicated %d lines", r.dup)
	}
	if r.lost == 0 {
		t.Fatalf("nothing lost with 3 MB held in a 1 MiB buffer: the scenario did not overflow")
	}
	reported := 0.0
	for _, rec := range h.records("o2-extension.dropped") {
		n, _ := mxNumber(rec["record_droppedrecords"])
		reported += n
	}
	if reported == 0 {
		t.Errorf("no o2-extension.dropped record reports the drop")
	}
	sums := h.records("o2-extension.summary")
	if len(sums) != 1 {
		t.Fatalf("summary records = %d, want 1", len(sums))
	}
	total, _ := mxNumber(sums[0]["record_droppedrecords"])
	if total < float64(r.lost) {
		t.Errorf("summary droppedRecords = %v, but %d lines were lost", sums[0]["record_droppedrecords"], r.lost)
	}
	if reported > total {
		t.Errorf("dropped records report %v, more than the summary's %v", reported, total)
	}
	if !strings.Contains(h.p.Output(), "oldest records were dropped") {
		t.Errorf("the drop was not logged:\n%s", tail(h.p.Output()))
	}
	return r
}

// mxNumber reads a stored number (json.Number or a Go number).
func mxNumber(v any) (float64, bool) {
	switch n := v.(type) {
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	case float64:
		return n, true
	case int64:
		return float64(n), true
	}
	return 0, false
}

// Item 3, 413: OpenObserve takes at most 64 KiB per request and a flush
// holds about 90 KB; the batch is split and everything arrives once.
func mxTooLarge(t *testing.T, name string) mxRow {
	const limit = 64 << 10
	h := mxStart(t, o2test.Options{MaxBodyBytes: limit}, lambdatest.Options{},
		"O2_FLUSH_STRATEGY=end", "O2_BATCH_SIZE=1000", "O2_MAX_BATCH_BYTES=1048576")
	want, invs := mxInvokeN(t, h, "mx-413", 8, 200, 200, nil)
	h.shutdown()
	r := mxMeasure(t, h, name, "mx-413", want, invs)
	mxNoTimeouts(t, invs)
	mxExactlyOnce(t, h, r)
	if n := mxStatuses(h)[http.StatusRequestEntityTooLarge]; n == 0 {
		t.Errorf("no request was refused with 413: the scenario did not test the split")
	}
	return r
}

// Item 3, records OpenObserve counts as failed: its clock is 6 h ahead
// during invocations 2 and 3, so their records are "too old". Those lines
// are lost by design; the others arrive once, and the warning carries
// OpenObserve's error text.
func mxFailedRecords(t *testing.T, name string) mxRow {
	var ahead atomic.Bool
	now := func() time.Time {
		if ahead.Load() {
			return time.Now().Add(6 * time.Hour)
		}
		return time.Now()
	}
	h := mxStart(t, o2test.Options{Now: now}, lambdatest.Options{}, "O2_FLUSH_STRATEGY=end")
	// End-of-invocation: an invocation's lines are stored before Invoke
	// returns, so the clock applies to exactly the invocations it spans.
	ahead.Store(false)
	want, invs := mxInvokeN(t, h, "mx-failed", 6, 20, 100, func(i int) { ahead.Store(i == 1 || i == 2) })
	h.shutdown()
	r := mxMeasure(t, h, name, "mx-failed", want, invs)
	r.expectedLoss = true
	// The stand-in's clock runs 6 h ahead for part of the run, and its
	// request times with it: no end-to-end latency to report.
	r.e2eP50, r.e2eP99 = 0, 0
	mxNoTimeouts(t, invs)
	got := h.marked("mx-failed")
	for _, l := range want {
		_, inv, _, _ := lambdatest.ParseScenarioLine(l)
		wantN := 1
		if inv == 2 || inv == 3 {
			wantN = 0
		}
		if got[l] != wantN {
			t.Errorf("line %.40q stored %d times, want %d", l, got[l], wantN)
		}
	}
	out := h.p.Output()
	if !strings.Contains(out, "OpenObserve did not store every record") || !strings.Contains(out, "Too old data, only last 5 hours") {
		t.Errorf("no warning with OpenObserve's error text:\n%s", tail(out))
	}
	return r
}

// Item 3, records OpenObserve drops silently (200, neither successful nor
// failed: more columns than its limit): all lost by design, and the
// warning counts them.
func mxSilentlyDropped(t *testing.T, name string) mxRow {
	h := mxStart(t, o2test.Options{ColumnLimit: 5}, lambdatest.Options{}, "O2_FLUSH_STRATEGY=end")
	want, invs := mxInvokeN(t, h, "mx-silent", 3, 20, 100, nil)
	h.shutdown()
	r := mxMeasure(t, h, name, "mx-silent", want, invs)
	r.expectedLoss = true
	mxNoTimeouts(t, invs)
	if r.delivered != 0 {
		t.Errorf("%d lines stored past a 5-column limit", r.delivered)
	}
	var warn string
	for l := range strings.SplitSeq(h.p.Output(), "\n") {
		if strings.Contains(l, "OpenObserve did not store every record") && strings.Contains(l, "silently_dropped=") && !strings.Contains(l, "silently_dropped=0") {
			warn = l
		}
	}
	if warn == "" {
		t.Errorf("no warning counting the silently dropped records:\n%s", tail(h.p.Output()))
	}
	return r
}
