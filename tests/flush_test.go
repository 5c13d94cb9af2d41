package tests

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/o2-extension/o2-extension/internal/lambdatest"
	"github.com/o2-extension/o2-extension/internal/openobserve/o2test"
)

// A busy function (20 invocations/s) switches to continuous flushing within
// its first invocations: /next is no longer held for a flush, and nothing
// is lost or duplicated.
func TestBusyFunctionSwitchesToContinuous(t *testing.T) {
	t.Parallel()
	h := start(t, lambdatest.Options{}, true)
	rep, err := h.p.Run(t.Context(), lambdatest.Scenario{Invocations: 300, Rate: 20, Lines: 50, LineSize: 100, Marker: "busy", Duration: 5 * time.Millisecond})
	if err != nil {
		t.Fatalf("run: %v\n%s", err, tail(h.p.Output()))
	}
	h.shutdown()
	if lost, dup := exactlyOnce(t, rep.Lines, h.marked("busy")); lost+dup > 0 {
		t.Fatalf("lost %d, duplicated %d", lost, dup)
	}
	out := h.p.Output()
	if !strings.Contains(out, "flush mode: continuous") {
		t.Fatalf("never switched to continuous:\n%s", tail(out))
	}
	// After the switch (the 10th start at the latest) invocations are not
	// held for a flush: compare the held time of the first 10 with the rest.
	after := overheads(rep.Invocations[20:])
	before := overheads(rep.Invocations[:9])
	if after[len(after)/2] >= before[len(before)/2] {
		t.Errorf("median overhead after the switch %v is not below the end-of-invocation median %v", after[len(after)/2], before[len(before)/2])
	}
	t.Logf("overhead p50: end-of-invocation %v, continuous %v; requests %d", before[len(before)/2], after[len(after)/2], h.o2.Calls())

	// The summary record says so too: every invocation counted under the
	// mode it ran in, the first ones (before enough samples) at the end of
	// the invocation, most in continuous, which is the mode at the end.
	sum := trustSummary(t, h)
	end, cont := trustNum(sum["record_modes_end"]), trustNum(sum["record_modes_continuous"])
	if inv := trustNum(sum["record_invocations"]); inv != 300 || end+cont != 300 || end < 9 || cont < 250 || sum["record_mode"] != "continuous" {
		t.Errorf("summary: invocations %d, end-of-invocation %d, continuous %d, mode %v; want 300 = at least 9 + at least 250, mode continuous\n%v", inv, end, cont, sum["record_mode"], sum)
	}
}

func overheads(invs []lambdatest.InvokeResult) []time.Duration {
	d := make([]time.Duration, len(invs))
	for i, inv := range invs {
		d[i] = inv.PostRuntimeOverhead
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d
}

// Forced continuous with an interval and a batch too large to ever trigger:
// leftovers from before a freeze go out only at the next INVOKE, so the
// last invocation's lines are still buffered at SHUTDOWN and arrive in the
// final drain; everything arrives exactly once.
func TestContinuousLeftoversGoOutAtShutdown(t *testing.T) {
	t.Parallel()
	h := start(t, lambdatest.Options{}, true, "O2_FLUSH_STRATEGY=continuous", "O2_FLUSH_INTERVAL_MS=600000", "O2_BATCH_SIZE=10000")
	rep, err := h.p.Run(t.Context(), lambdatest.Scenario{Invocations: 5, Lines: 30, LineSize: 80, Marker: "drain", Gap: 10 * time.Millisecond})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	for line := range h.marked("drain") {
		if _, inv, _, _ := lambdatest.ParseScenarioLine(line); inv == 4 {
			t.Fatalf("a line of the last invocation was sent before SHUTDOWN: %.40q", line)
		}
	}
	h.shutdown()
	if lost, dup := exactlyOnce(t, rep.Lines, h.marked("drain")); lost+dup > 0 {
		t.Fatalf("lost %d, duplicated %d", lost, dup)
	}
}

// A long invocation turns periodic: its lines arrive while it runs, within
// about one flush interval of being printed, not at its end.
func TestLongInvocationFlushesPeriodically(t *testing.T) {
	t.Parallel()
	h := start(t, lambdatest.Options{FunctionTimeout: time.Minute}, true, "O2_LONG_RUNNING_MS=5000", "O2_FLUSH_INTERVAL_MS=2000")
	const n = 400 // 10 lines/s over 40 s
	lines := make([]string, n)
	for i := range lines {
		lines[i] = lambdatest.ScenarioLine("long", 0, i, 60)
	}
	done := make(chan error, 1)
	go func() {
		_, err := h.p.Invoke(t.Context(), lambdatest.Invocation{Lines: lines, Duration: 40 * time.Second})
		done <- err
	}()
	// Line 100 is printed at about 10 s, past the 5 s threshold: it must be
	// stored while the invocation still runs.
	h.waitFor("a line printed after the threshold", 30*time.Second, func(s *o2test.Server) bool {
		for _, r := range s.StreamRecords(org, stream) {
			if r["record"] == lines[100] {
				return true
			}
		}
		return false
	})
	select {
	case err := <-done:
		t.Fatalf("the invocation ended (%v) before its lines arrived: nothing was flushed while it ran", err)
	default:
	}
	if err := <-done; err != nil {
		t.Fatalf("invoke: %v", err)
	}
	h.shutdown()
	if lost, dup := exactlyOnce(t, lines, h.marked("long")); lost+dup > 0 {
		t.Fatalf("lost %d, duplicated %d", lost, dup)
	}
	// Latency of the lines printed after the threshold.
	printed := map[string]time.Time{}
	for _, ev := range h.p.Events() {
		if ev.Type == "function" {
			printed[lambdatest.RecordText(ev.Record)] = ev.Time
		}
	}
	var lat []time.Duration
	for _, rq := range h.o2.Requests() {
		var recs []map[string]any
		if json.Unmarshal(rq.Body, &recs) != nil {
			continue
		}
		for _, r := range recs {
			if s, _ := r["record"].(string); printed[s].After(time.Time{}) {
				if _, i, j, ok := lambdatest.ParseScenarioLine(s); ok && i == 0 && j >= 60 && j < n-30 {
					lat = append(lat, rq.Time.Sub(printed[s]))
				}
			}
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) == 0 {
		t.Fatal("no latency samples")
	}
	if p50 := lat[len(lat)/2]; p50 > 4*time.Second {
		t.Errorf("median delivery latency after the threshold = %v, want about one 2 s interval", p50)
	}
	t.Logf("delivery latency after the threshold: p50 %v, max %v", lat[len(lat)/2], lat[len(lat)-1])
	// The summary counts the invocation as periodic (its end was handled at
	// the end of the invocation, counted as such).
	sum := trustSummary(t, h)
	if p, e := trustNum(sum["record_modes_periodic"]), trustNum(sum["record_modes_end"]); p != 1 || e != 1 {
		t.Errorf("summary modes: periodic %d, end %d; want 1 and 1\n%v", p, e, sum)
	}
}

// The per-tenant memory report: every invocation logs a tenant mark and a
// tenant.memory record with that invocation's memory arrives, the last one
// during SHUTDOWN.
func TestTenantMemoryReport(t *testing.T) {
	t.Parallel()
	h := start(t, lambdatest.Options{}, true)
	tenants := map[string]string{} // request id -> tenant
	for i := range 4 {
		customer := fmt.Sprintf("acme-%d", i)
		mark := fmt.Sprintf(`{"message":"customer-memory-report","customerId":%q}`, customer)
		res, err := h.p.Invoke(t.Context(), lambdatest.Invocation{Lines: []string{"working", mark}})
		if err != nil {
			t.Fatalf("invoke %d: %v", i, err)
		}
		tenants[res.RequestID] = customer
	}
	h.shutdown()
	memory := map[string]float64{}
	for _, ev := range h.p.Events() {
		if ev.Type == "platform.report" {
			var r struct {
				RequestID string
				Metrics   struct{ MaxMemoryUsedMB float64 }
			}
			if err := json.Unmarshal(ev.Record, &r); err == nil {
				memory[r.RequestID] = r.Metrics.MaxMemoryUsedMB
			}
		}
	}
	got := h.records("tenant.memory")
	if len(got) != len(tenants) {
		t.Fatalf("tenant.memory records = %d, want %d: %v", len(got), len(tenants), got)
	}
	for _, r := range got {
		id, _ := r["requestid"].(string)
		if r["customerid"] != tenants[id] {
			t.Errorf("request %s: customerid = %v, want %s", id, r["customerid"], tenants[id])
		}
		if fmt.Sprint(r["memoryusage"]) != fmt.Sprint(memory[id]) {
			t.Errorf("request %s: memoryusage = %v, want %v", id, r["memoryusage"], memory[id])
		}
		if r["function_name"] == nil || r["billeddurationms"] == nil {
			t.Errorf("request %s: record lacks enrichment or billing fields: %v", id, r)
		}
	}
}
