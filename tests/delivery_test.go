package tests

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/o2-extension/o2-extension/internal/lambdatest"
	"github.com/o2-extension/o2-extension/internal/openobserve/o2test"
)

// The rows of the delivery issue (a pipelined sender with one lifecycle),
// run at the scale the issue measured: the busy function is 300
// invocations at 20/s of 50 lines of 120 B (mxBusy). Each row adds its line
// to TestFaultMatrix's table.

// mxHoldBound is the worst hold of /next allowed with a failing backend in
// end-of-invocation mode: the 250 ms, plus a margin for a loaded
// two-core machine running the other rows beside it. The table reports the
// measured value.
const mxHoldBound = 250*time.Millisecond + 300*time.Millisecond

// mxEvery answers f to the requests whose number n (1-based) satisfies
// pick, healthy otherwise: a fixed pattern, so a run is reproducible.
func mxEvery(pick func(n int) bool, f o2test.Fault) func(int, *http.Request) *o2test.Fault {
	return func(n int, _ *http.Request) *o2test.Fault {
		if pick(n) {
			return &f
		}
		return nil
	}
}

// mxBusyRow runs the busy function against the stand-in as set up by
// setup, with the extension's defaults, and expects every line once. No
// invocation is held longer than mxContinuousBound plus one round trip
// (rtt, the stand-in's added latency): the first invocations, before the
// selector sees the rate, end in end-of-invocation mode and wait for one
// request.
func mxBusyRow(t *testing.T, name, marker string, rtt time.Duration, setup func(h *harness)) mxRow {
	h := start(t, lambdatest.Options{}, true, mxExtraEnv()...)
	setup(h)
	rep := mxRun(t, h, mxBusy(marker))
	h.shutdown()
	r := mxMeasure(t, h, name, marker, rep.Lines, rep.Invocations)
	mxNoTimeouts(t, rep.Invocations)
	mxExactlyOnce(t, h, r)
	for i, inv := range rep.Invocations {
		if inv.PostRuntimeOverhead > mxContinuousBound+rtt {
			t.Errorf("invocation %d held %v after its runtime was done, want at most one round trip (< %v)", i, inv.PostRuntimeOverhead, mxContinuousBound+rtt)
		}
	}
	return r
}

// 20% of requests answered 500 or 503: the issue measured 4,254-5,375 of
// 15,000 lines delivered before the redesign.
func mxFaults20Busy(t *testing.T, name string) mxRow {
	return mxBusyRow(t, name, "mx-5xx20", 0, func(h *harness) {
		h.o2.SetFaultFunc(func(n int, _ *http.Request) *o2test.Fault {
			switch n % 10 {
			case 3:
				return &o2test.Fault{Status: http.StatusInternalServerError}
			case 7:
				return &o2test.Fault{Status: http.StatusServiceUnavailable}
			}
			return nil
		})
	})
}

// A rate-limiting OpenObserve: one request in ten answered 429 with a
// Retry-After of 1 s, which pauses every sender.
func mxRateLimitedBusy(t *testing.T, name string) mxRow {
	return mxBusyRow(t, name, "mx-429", 0, func(h *harness) {
		h.o2.SetFaultFunc(mxEvery(func(n int) bool { return n%10 == 4 },
			o2test.Fault{Status: http.StatusTooManyRequests, RetryAfter: "1"}))
	})
}

// A slow OpenObserve: every request takes 300 ms. With one request in
// flight and 100-record batches this capped delivery at 333 records/s,
// below the function's 1,000 lines/s.
func mxSlowBusy(t *testing.T, name string) mxRow {
	return mxBusyRow(t, name, "mx-slow", 300*time.Millisecond, func(h *harness) { h.o2.SetLatency(300 * time.Millisecond) })
}

// A sporadic function (end-of-invocation mode, frozen between
// invocations) with 30% of requests failing: no invocation pays for the
// failures with more than about two round trips (the issue measured one
// held 1,094 ms before the redesign), and every line arrives once.
func mxFaults30Sporadic(t *testing.T, name string) mxRow {
	h := start(t, lambdatest.Options{}, true, "O2_FLUSH_STRATEGY=end")
	h.o2.SetLatency(10 * time.Millisecond)
	h.o2.SetFaultFunc(func(n int, _ *http.Request) *o2test.Fault {
		switch n % 10 {
		case 1, 5:
			return &o2test.Fault{Status: http.StatusInternalServerError}
		case 8:
			return &o2test.Fault{Status: http.StatusServiceUnavailable}
		}
		return nil
	})
	sc := lambdatest.Scenario{Invocations: 100, Gap: 50 * time.Millisecond, Lines: 50, LineSize: 120, Duration: 5 * time.Millisecond, Marker: "mx-5xx30-s"}
	rep := mxRun(t, h, sc)
	h.shutdown()
	r := mxMeasure(t, h, name, sc.Marker, rep.Lines, rep.Invocations)
	mxNoTimeouts(t, rep.Invocations)
	mxExactlyOnce(t, h, r)
	if n := mxStatuses(h)[http.StatusInternalServerError]; n == 0 {
		t.Errorf("no request failed: the scenario did not test failures")
	}
	if r.worst > mxHoldBound {
		t.Errorf("worst hold %v with a failing backend, want at most %v", r.worst, mxHoldBound)
	}
	return r
}

// One 40 s invocation printing 10 lines a second, with the default
// settings: lines stream while it runs, each within about the 500 ms linger
// (the issue measured a p99 of 9.7 s before, when lines waited for a batch
// of 100).
func mxLongInvocation(t *testing.T, name string) mxRow {
	const duration = 40 * time.Second
	h := start(t, lambdatest.Options{FunctionTimeout: duration + 20*time.Second}, true, mxExtraEnv()...)
	lines := make([]string, 400)
	for i := range lines {
		lines[i] = lambdatest.ScenarioLine("mx-long", 0, i, 120)
	}
	res, err := h.p.Invoke(t.Context(), lambdatest.Invocation{Lines: lines, Duration: duration})
	if err != nil {
		t.Fatalf("invoke: %v\n%s", err, tail(h.p.Output()))
	}
	h.shutdown()
	invs := []lambdatest.InvokeResult{res}
	r := mxMeasure(t, h, name, "mx-long", lines, invs)
	mxNoTimeouts(t, invs)
	mxExactlyOnce(t, h, r)
	if r.e2eP99 > 2*time.Second {
		t.Errorf("end-to-end p99 %v for a long invocation, want at most 2 s", r.e2eP99)
	}
	return r
}

// SHUTDOWN behind a backlog: OpenObserve refuses everything (503) while
// 180 invocations print 9,000 lines, then answers, 200 ms late, from the
// moment SHUTDOWN comes. The final drain sends the newest records first
// with every sender; the last invocation's lines and platform.report, and
// the summary record with its final tally, arrive (the issue measured 393
// lines delivered and neither the report nor the summary before). What the
// 1.7 s cannot carry is lost by design.
func mxBacklogShutdown(t *testing.T, name string) mxRow {
	h := start(t, lambdatest.Options{}, true)
	h.o2.SetFaultFunc(func(int, *http.Request) *o2test.Fault { return &o2test.Fault{Status: http.StatusServiceUnavailable} })
	sc := mxBusy("mx-backlog")
	sc.Invocations = 180
	rep := mxRun(t, h, sc)
	if early := len(h.marked(sc.Marker)); early > 0 {
		t.Fatalf("%d lines stored before SHUTDOWN, want none", early)
	}
	h.o2.SetFaultFunc(nil)
	h.o2.SetLatency(200 * time.Millisecond)
	h.shutdown()
	r := mxMeasure(t, h, name, sc.Marker, rep.Lines, rep.Invocations)
	r.expectedLoss = r.lost > 0
	if r.dup != 0 {
		t.Errorf("duplicated %d lines", r.dup)
	}
	last := rep.Invocations[len(rep.Invocations)-1].RequestID
	reports := 0
	for _, rec := range h.records("platform.report") {
		if rec["requestid"] == last {
			reports++
		}
	}
	if reports != 1 {
		t.Errorf("the last invocation's platform.report arrived %d times, want 1\n%s", reports, tail(h.p.Output()))
	}
	got := h.marked(sc.Marker)
	for _, l := range rep.Lines[len(rep.Lines)-sc.Lines:] {
		if got[l] != 1 {
			t.Errorf("the last invocation's line %.40q arrived %d times, want 1", l, got[l])
			break
		}
	}
	sums := h.records("o2-extension.summary")
	if len(sums) != 1 {
		t.Fatalf("summary records = %d, want 1\n%s", len(sums), tail(h.p.Output()))
	}
	// The summary's tally is the final one: what it says was delivered is
	// what the stand-in stored, less the summary itself, but for the
	// requests the deadline cut on the wire, whose fate it cannot know (it
	// counts them apart).
	delivered, _ := mxNumber(sums[0]["record_delivered"])
	cut, _ := mxNumber(sums[0]["record_cutatshutdown"])
	stored := float64(len(h.o2.StreamRecords(org, stream)) - 1)
	if stored < delivered || stored > delivered+cut {
		t.Errorf("summary says %v delivered and %v cut at SHUTDOWN, the stand-in stored %v records besides it", delivered, cut, stored)
	}
	if r.lost > 0 && !strings.Contains(h.p.Output(), "records still buffered at SHUTDOWN are lost") {
		t.Errorf("%d lines left at SHUTDOWN without a warning\n%s", r.lost, tail(h.p.Output()))
	}
	t.Logf("backlog: %s", fmt.Sprint(r.delivered, " of ", r.lines, " delivered"))
	return r
}

// The rows of the replies issue, at the busy scale: each would have lost
// data before.

// A proxy in front of OpenObserve answers one request in ten with 200 and
// an HTML page, storing nothing: each such batch is kept and sent again.
func mxNotOpenObserveBusy(t *testing.T, name string) mxRow {
	return mxBusyRow(t, name, "mx-html", 0, func(h *harness) {
		h.o2.SetFaultFunc(mxEvery(func(n int) bool { return n%10 == 6 },
			o2test.Fault{Body: "<html><body>OK</body></html>"}))
	})
}

// One line in the run is a record OpenObserve's parser refuses: the
// stand-in answers 400 SerdeJsonError to every request that holds it, as
// OpenObserve does for a record nested past 128 levels. The batch is split
// until the record is alone; only that line is lost (by design).
func mxPoisonRecordBusy(t *testing.T, name string) mxRow {
	const poison = "mx-poison inv=150 line=25 "
	h := start(t, lambdatest.Options{}, true)
	h.o2.SetBodyFaultFunc(func(body []byte) *o2test.Fault {
		if strings.Contains(string(body), poison) {
			return &o2test.Fault{Status: http.StatusBadRequest, Message: "SerdeJsonError# recursion limit exceeded at line 1 column 4120"}
		}
		return nil
	})
	rep := mxRun(t, h, mxBusy("mx-poison"))
	h.shutdown()
	r := mxMeasure(t, h, name, "mx-poison", rep.Lines, rep.Invocations)
	mxNoTimeouts(t, rep.Invocations)
	r.expectedLoss = true
	got := h.marked("mx-poison")
	for _, l := range rep.Lines {
		want := 1
		if strings.HasPrefix(l, poison) {
			want = 0
		}
		if got[l] != want {
			t.Errorf("line %.40q stored %d times, want %d", l, got[l], want)
		}
	}
	if r.lost != 1 {
		t.Errorf("lost %d lines, want only the poison one", r.lost)
	}
	return r
}

// A stream column limit that a batch of mixed platform events and lines
// exceeds, though each record fits: OpenObserve answers 200 and stores
// nothing. The batches are split until they fit, and nothing is lost or
// stored twice.
func mxColumnLimitBusy(t *testing.T, name string) mxRow {
	h := mxStart(t, o2test.Options{ColumnLimit: 22}, lambdatest.Options{})
	rep := mxRun(t, h, mxBusy("mx-cols"))
	h.shutdown()
	r := mxMeasure(t, h, name, "mx-cols", rep.Lines, rep.Invocations)
	mxNoTimeouts(t, rep.Invocations)
	mxExactlyOnce(t, h, r)
	nothing := 0
	for _, rq := range h.o2.Requests() {
		if rq.Status == http.StatusOK && rq.Records > 0 && rq.Successful+rq.Failed == 0 {
			nothing++
		}
	}
	if nothing == 0 {
		t.Errorf("no request exceeded the column limit: the scenario did not test the split")
	}
	if len(h.records("platform.report")) == 0 {
		t.Errorf("no platform.report stored")
	}
	return r
}

// OpenObserve answers one request in twenty with a 400 about its own state
// (an organization over its quota): the data is kept and sent again after a
// pause, and nothing is lost.
func mxQuota400Busy(t *testing.T, name string) mxRow {
	return mxBusyRow(t, name, "mx-quota", 0, func(h *harness) {
		h.o2.SetFaultFunc(mxEvery(func(n int) bool { return n%20 == 7 },
			o2test.Fault{Status: http.StatusBadRequest, Message: "Error# Quota exceeded for this organization [default]"}))
	})
}

// BenchmarkEndOfInvocationOwnHold measures the extension's own share of an
// end-of-invocation hold against the local stand-in: from
// platform.runtimeDone reaching its listener to its /next, the flush of
// the invocation's 50 lines included (the Telemetry API's own buffering
// before that is Lambda's). The extension logs it at debug for each
// invocation. Besides the hold it reports the stand-in's own handling of
// the flush request (stand-in-p50-ms) and the hold without it
// (without-stand-in-p50-ms): the part that is the extension's code.
//
//	go test -run '^$' -bench EndOfInvocationOwnHold ./tests/
func BenchmarkEndOfInvocationOwnHold(b *testing.B) {
	for b.Loop() {
		o2 := o2test.Run(b, o2test.Options{})
		lo := lambdatest.Options{Extensions: []string{binary}, Env: append(o2Env(o2), "O2_FLUSH_STRATEGY=end", "O2_LOG_LEVEL=debug")}
		p, err := lambdatest.Start(b.Context(), lo)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := p.Run(b.Context(), lambdatest.Scenario{Invocations: 50, Gap: 20 * time.Millisecond, Lines: 50, LineSize: 120, Duration: 5 * time.Millisecond, Marker: "own"}); err != nil {
			b.Fatal(err)
		}
		if _, err := p.Shutdown(b.Context(), "spindown"); err != nil {
			b.Fatal(err)
		}
		out := p.Output()
		p.Close()
		// The stand-in's own handling of each invocation's flush request
		// (the first request carrying its lines) is part of the hold but
		// not the extension's: reported apart, and taken out of the share.
		reqs := o2.Requests()
		var own, server, share []time.Duration
		for l := range strings.SplitSeq(out, "\n") {
			_, v, ok := strings.Cut(l, "own_hold_us=")
			if !ok {
				continue
			}
			v, _, _ = strings.Cut(v, " ")
			us, _ := strconv.Atoi(v)
			hold := time.Duration(us) * time.Microsecond
			own = append(own, hold)
			_, id, _ := strings.Cut(l, "requestId=")
			id, _, _ = strings.Cut(id, " ")
			if i := slices.IndexFunc(reqs, func(rq o2test.Request) bool { return id != "" && bytes.Contains(rq.Body, []byte(id)) }); i >= 0 && !reqs[i].End.IsZero() {
				d := reqs[i].End.Sub(reqs[i].Time)
				server = append(server, d)
				share = append(share, hold-d)
			}
		}
		if len(own) == 0 || len(share) == 0 {
			b.Fatalf("no own_hold_us in the extension's debug log, or no request to pair it with\n%s", tail(out))
		}
		for _, ds := range [][]time.Duration{own, server, share} {
			slices.Sort(ds)
		}
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		b.ReportMetric(ms(own[len(own)/2]), "own-hold-p50-ms")
		b.ReportMetric(ms(own[len(own)*99/100]), "own-hold-p99-ms")
		b.ReportMetric(ms(server[len(server)/2]), "stand-in-p50-ms")
		b.ReportMetric(ms(share[len(share)/2]), "without-stand-in-p50-ms")
	}
}

// mxExtraEnv is O2_MATRIX_ENV split on spaces: settings to try on the
// rows that run with the defaults, to compare them by hand, e.g.
//
//	O2_MATRIX_ENV=O2_FLUSH_INTERVAL_MS=500 O2_FAULT_MATRIX_OUT=/tmp/m.md go test -run TestFaultMatrix ./tests/
func mxExtraEnv() []string { return strings.Fields(os.Getenv("O2_MATRIX_ENV")) }
