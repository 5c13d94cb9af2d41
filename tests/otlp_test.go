package tests

import (
	"encoding/json"
	"math"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/o2-extension/o2-extension/internal/lambdatest"
	"github.com/o2-extension/o2-extension/internal/openobserve/o2test"
)

// platformRecord is what the test reads of the platform events the
// emulator sent.
type platformRecord struct {
	RequestID string `json:"requestId"`
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Tracing   *struct {
		Value string `json:"value"`
	} `json:"tracing"`
	Metrics map[string]float64 `json:"metrics"`
	Spans   []struct {
		Name       string  `json:"name"`
		DurationMs float64 `json:"durationMs"`
	} `json:"spans"`
}

// A cold start, then 5 invocations: one fails with Runtime.OutOfMemory, one
// times out, one runs without X-Ray tracing. What OpenObserve stores must
// say what the platform events said: metric values and labels, one trace
// per invocation with the expected tree and ids, every function line
// carrying its invocation's trace_id and span_id; and the dashboard's
// queries name only what this run stored.
func TestInvocationMetricsTracesAndJoinedLogs(t *testing.T) {
	t.Parallel()
	const logs = "default" // the dashboard's logs stream
	h := start(t, lambdatest.Options{
		FunctionName: "orders", MemoryMB: 256, Region: "eu-west-1",
		FunctionTimeout: 1500 * time.Millisecond,
	}, true, "O2_STREAM="+logs, "OTEL_SERVICE_NAME=orders-svc")
	invs := []lambdatest.Invocation{
		{Duration: 20 * time.Millisecond},
		{Duration: 10 * time.Millisecond, Outcome: "error", ErrorType: "Runtime.OutOfMemory"},
		{Duration: 10 * time.Millisecond},
		{Duration: 10 * time.Millisecond, Outcome: "timeout"},
		{Duration: 10 * time.Millisecond, NoTrace: true},
	}
	var ids []string
	for i := range invs {
		for j := range 3 {
			invs[i].Lines = append(invs[i].Lines, lambdatest.ScenarioLine("otlp", i, j, 60))
		}
		res, err := h.p.Invoke(t.Context(), invs[i])
		if err != nil {
			t.Fatalf("invoke %d: %v", i, err)
		}
		ids = append(ids, res.RequestID)
	}
	h.shutdown()

	// What the platform said, by request id.
	reports, dones, starts := map[string]platformRecord{}, map[string]platformRecord{}, map[string]platformRecord{}
	reportTime := map[string]time.Time{}
	var initStart, initDone time.Time
	for _, ev := range h.p.Events() {
		// Events go out with the time in milliseconds.
		ev.Time = ev.Time.Truncate(time.Millisecond)
		var r platformRecord
		_ = json.Unmarshal(ev.Record, &r)
		switch ev.Type {
		case "platform.report":
			reports[r.RequestID], reportTime[r.RequestID] = r, ev.Time
		case "platform.runtimeDone":
			dones[r.RequestID] = r
		case "platform.start":
			starts[r.RequestID] = r
		case "platform.initStart":
			initStart = ev.Time
		case "platform.initRuntimeDone":
			initDone = ev.Time
		}
	}
	if len(reports) != len(invs) {
		t.Fatalf("the emulator sent %d reports, want %d", len(reports), len(invs))
	}
	if r := reports[ids[1]]; r.Status != "error" || r.ErrorType != "Runtime.OutOfMemory" {
		t.Fatalf("invocation 1 report = %+v, want an OOM error", r)
	}
	if r := reports[ids[3]]; r.Status != "timeout" {
		t.Fatalf("invocation 3 report = %+v, want a timeout", r)
	}

	metrics := h.o2.Metrics()
	spans := h.o2.Spans()

	t.Run("metrics", func(t *testing.T) {
		// The points of one invocation are those stamped with its report's
		// time (no request id on a data point, by design).
		byInv := map[string]map[string]o2test.Metric{}
		for _, m := range metrics {
			for id, at := range reportTime {
				if m.Time.Equal(at) {
					if byInv[id] == nil {
						byInv[id] = map[string]o2test.Metric{}
					}
					if _, dup := byInv[id][m.Name]; dup {
						t.Errorf("%s twice for %s", m.Name, id)
					}
					byInv[id][m.Name] = m
				}
			}
		}
		for i, id := range ids {
			rep, done := reports[id], dones[id]
			got := byInv[id]
			want := map[string]float64{
				"aws.lambda.enhanced.duration":        rep.Metrics["durationMs"],
				"aws.lambda.enhanced.billed_duration": rep.Metrics["billedDurationMs"],
				"aws.lambda.enhanced.memory_size":     rep.Metrics["memorySizeMB"],
				"aws.lambda.enhanced.max_memory_used": rep.Metrics["maxMemoryUsedMB"],
				"aws.lambda.enhanced.memory_utilization": rep.Metrics["maxMemoryUsedMB"] /
					rep.Metrics["memorySizeMB"],
				"o2_extension.runtime_duration":     done.Metrics["durationMs"],
				"aws.lambda.enhanced.invocations":   1,
				"aws.lambda.enhanced.errors":        b01(i == 1 || i == 3),
				"aws.lambda.enhanced.timeouts":      b01(i == 3),
				"aws.lambda.enhanced.out_of_memory": b01(i == 1),
				"aws.lambda.enhanced.cold_starts":   b01(i == 0),
			}
			for _, s := range rep.Spans {
				if s.Name == "extensionOverhead" {
					want["o2_extension.post_runtime_duration"] = s.DurationMs
				}
			}
			for _, s := range done.Spans {
				if s.Name == "responseLatency" {
					want["o2_extension.response_latency"] = s.DurationMs
				}
			}
			if i == 0 {
				want["aws.lambda.enhanced.init_duration"] = rep.Metrics["initDurationMs"]
			} else if _, ok := got["aws.lambda.enhanced.init_duration"]; ok {
				t.Errorf("invocation %d: init_duration on a warm invocation", i)
			}
			for name, v := range want {
				m, ok := got[name]
				if !ok {
					t.Errorf("invocation %d: no %s", i, name)
					continue
				}
				if math.Abs(m.Value-v) > 1e-9 {
					t.Errorf("invocation %d: %s = %v, want %v (the platform's)", i, name, m.Value, v)
				}
				wantStatus := rep.Status
				if m.Attributes["status"] != wantStatus || m.Attributes["cold_start"] != map[bool]string{true: "true", false: "false"}[i == 0] {
					t.Errorf("invocation %d: %s attributes = %v", i, name, m.Attributes)
				}
				if len(m.Attributes) != 2 {
					t.Errorf("invocation %d: %s has labels %v, want only status and cold_start", i, name, m.Attributes)
				}
				if strings.HasSuffix(name, "invocations") && (m.Kind != "sum" || !m.Monotonic || m.Temporality.String() != "AGGREGATION_TEMPORALITY_DELTA") {
					t.Errorf("%s is %s monotonic=%v %v, want a delta counter", name, m.Kind, m.Monotonic, m.Temporality)
				}
			}
		}
		for _, m := range metrics {
			for k, want := range map[string]any{
				"cloud.provider": "aws", "faas.name": "orders", "faas.version": "$LATEST",
				"cloud.region": "eu-west-1", "faas.max_memory": int64(256 << 20), "service.name": "orders-svc",
			} {
				if m.Resource[k] != want {
					t.Fatalf("%s: resource %s = %v, want %v", m.Name, k, m.Resource[k], want)
				}
			}
		}
	})

	// traceOf is the trace id an invocation must have: X-Ray's root in W3C
	// form, else the request id's hex.
	traceOf := func(id string) string {
		if tr := starts[id].Tracing; tr != nil {
			m := regexp.MustCompile(`Root=1-([0-9a-f]{8})-([0-9a-f]{24})`).FindStringSubmatch(tr.Value)
			return m[1] + m[2]
		}
		return strings.ReplaceAll(id, "-", "")
	}
	roots := map[string]o2test.Span{} // by request id
	t.Run("traces", func(t *testing.T) {
		byTrace := map[string][]o2test.Span{}
		for _, s := range spans {
			byTrace[s.TraceID] = append(byTrace[s.TraceID], s)
		}
		if len(byTrace) != len(invs) {
			t.Fatalf("%d traces, want %d", len(byTrace), len(invs))
		}
		for i, id := range ids {
			tr := byTrace[traceOf(id)]
			var root o2test.Span
			var names []string
			for _, s := range tr {
				if s.Attributes["faas.invocation_id"] == id {
					root = s
				}
			}
			if root.SpanID == "" {
				t.Fatalf("invocation %d: no root span with faas.invocation_id in trace %s", i, traceOf(id))
			}
			roots[id] = root
			if root.Name != "orders" || root.Kind.String() != "SPAN_KIND_SERVER" {
				t.Errorf("invocation %d: root %q %v", i, root.Name, root.Kind)
			}
			if tracing := starts[id].Tracing; tracing != nil {
				parent := regexp.MustCompile(`Parent=([0-9a-f]{16})`).FindStringSubmatch(tracing.Value)[1]
				if root.ParentSpanID != parent {
					t.Errorf("invocation %d: root's parent %q, want X-Ray's Parent %q", i, root.ParentSpanID, parent)
				}
			} else if root.ParentSpanID != "" {
				t.Errorf("invocation %d: untraced root has parent %q", i, root.ParentSpanID)
			}
			wantErr := i == 1 || i == 3
			if (root.StatusCode.String() == "STATUS_CODE_ERROR") != wantErr {
				t.Errorf("invocation %d: root status %v %q", i, root.StatusCode, root.StatusMessage)
			}
			for _, s := range tr {
				if s.SpanID == root.SpanID {
					continue
				}
				names = append(names, s.Name)
				if s.Name == "init" {
					if !s.Start.Equal(initStart) || !s.End.Equal(initDone) {
						t.Errorf("init span %v..%v, want initStart %v to initRuntimeDone %v", s.Start, s.End, initStart, initDone)
					}
				}
				if s.ParentSpanID != root.SpanID {
					t.Errorf("invocation %d: span %s's parent %s, want the root %s", i, s.Name, s.ParentSpanID, root.SpanID)
				}
			}
			slices.Sort(names)
			want := []string{"postRuntimeExtensions", "responseDuration", "responseLatency", "runtimeOverhead"}
			if i == 3 {
				want = []string{"postRuntimeExtensions", "responseLatency"} // a timeout sends no response
			}
			if i == 0 {
				want = append([]string{"init"}, want...)
			}
			if !slices.Equal(names, want) {
				t.Errorf("invocation %d: child spans %v, want %v", i, names, want)
			}
		}
	})

	t.Run("logs joined", func(t *testing.T) {
		n := 0
		for _, r := range h.o2.StreamRecords(org, logs) {
			if r["type"] != "function" {
				continue
			}
			n++
			id, _ := r["requestid"].(string)
			root, ok := roots[id]
			if !ok {
				t.Fatalf("function line of unknown invocation %q: %v", id, r)
			}
			if r["trace_id"] != root.TraceID || r["span_id"] != root.SpanID {
				t.Errorf("line %v: trace_id %v span_id %v, want %s %s", r["record"], r["trace_id"], r["span_id"], root.TraceID, root.SpanID)
			}
		}
		if n != 3*len(invs) {
			t.Errorf("%d function lines stored, want %d", n, 3*len(invs))
		}
	})

	t.Run("dashboard", func(t *testing.T) {
		columns := map[string]map[string]bool{} // stream -> stored columns
		for _, m := range metrics {
			if columns[m.Stream] == nil {
				columns[m.Stream] = map[string]bool{}
			}
			for k := range m.Fields() {
				columns[m.Stream][k] = true
			}
		}
		columns[logs] = map[string]bool{}
		for _, r := range h.o2.StreamRecords(org, logs) {
			for k := range r {
				columns[logs][k] = true
			}
		}
		checkDashboard(t, "../dashboards/lambda.json", columns)
	})
}

func b01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// dashboard is the part of OpenObserve's dashboard JSON (version 8) the
// check reads.
type dashboard struct {
	Version int `json:"version"`
	Tabs    []struct {
		Panels []struct {
			Title   string `json:"title"`
			Queries []struct {
				Query  string `json:"query"`
				Fields struct {
					Stream     string `json:"stream"`
					StreamType string `json:"stream_type"`
					X, Y       []struct {
						Column string `json:"column"`
					}
				} `json:"fields"`
			} `json:"queries"`
		} `json:"panels"`
	} `json:"tabs"`
}

// sqlWords are the SQL keywords and functions the dashboard's queries use;
// every other identifier in a query must be a stored column.
var sqlWords = map[string]bool{
	"select": true, "from": true, "where": true, "group": true, "by": true, "order": true, "as": true,
	"and": true, "or": true, "asc": true, "desc": true, "histogram": true, "sum": true, "avg": true,
	"max": true, "min": true, "count": true, "approx_percentile_cont": true,
}

// checkDashboard fails unless every panel query of the dashboard at path
// reads a stream in columns and only columns stored in it.
func checkDashboard(t *testing.T, path string, columns map[string]map[string]bool) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if d.Version != 8 || len(d.Tabs) == 0 {
		t.Fatalf("%s: version %d, %d tabs", path, d.Version, len(d.Tabs))
	}
	ident := regexp.MustCompile(`'[^']*'|"[^"]*"|[A-Za-z_][A-Za-z0-9_]*|[0-9.]+|\S`)
	panels := 0
	for _, tab := range d.Tabs {
		for _, p := range tab.Panels {
			panels++
			if len(p.Queries) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, q := range p.Queries {
				stream := q.Fields.Stream
				cols, ok := columns[stream]
				if !ok {
					t.Errorf("panel %q: stream %q was not stored by this run", p.Title, stream)
					continue
				}
				for _, a := range append(q.Fields.X, q.Fields.Y...) {
					if !cols[a.Column] {
						t.Errorf("panel %q: axis column %q is not in stream %q", p.Title, a.Column, stream)
					}
				}
				toks := ident.FindAllString(q.Query, -1)
				aliases := map[string]bool{}
				for i, tok := range toks {
					if strings.EqualFold(tok, "as") && i+1 < len(toks) {
						aliases[toks[i+1]] = true
					}
				}
				from := false
				for _, tok := range toks {
					switch {
					case strings.HasPrefix(tok, `"`):
						if !from || strings.Trim(tok, `"`) != stream {
							t.Errorf("panel %q: quoted name %s; want only FROM %q", p.Title, tok, stream)
						}
					case strings.EqualFold(tok, "from"):
						from = true
					case strings.HasPrefix(tok, "'"), tok[0] >= '0' && tok[0] <= '9', len(tok) == 1 && !isLetter(tok[0]):
					case sqlWords[strings.ToLower(tok)], aliases[tok]:
					default:
						if !cols[tok] {
							t.Errorf("panel %q: %q is not a column of %q this run stored", p.Title, tok, stream)
						}
					}
				}
			}
		}
	}
	if panels < 9 {
		t.Errorf("%d panels, want at least 9", panels)
	}
}

func isLetter(c byte) bool { return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// O2_METRICS=false and O2_TRACES=false: nothing goes to the OTLP routes and
// log records carry no trace context; the logs are unaffected.
func TestMetricsAndTracesOff(t *testing.T) {
	t.Parallel()
	h := start(t, lambdatest.Options{}, true, "O2_METRICS=false", "O2_TRACES=false")
	for i := range 2 {
		if _, err := h.p.Invoke(t.Context(), lambdatest.Invocation{Lines: []string{lambdatest.ScenarioLine("off", i, 0, 40)}}); err != nil {
			t.Fatal(err)
		}
	}
	h.shutdown()
	if n := len(h.o2.OTLPRequests()); n != 0 {
		t.Errorf("%d OTLP requests with both signals off", n)
	}
	if got := h.marked("off"); len(got) != 2 {
		t.Errorf("%d lines stored, want 2", len(got))
	}
	for _, r := range h.o2.StreamRecords(org, stream) {
		if _, ok := r["trace_id"]; ok {
			t.Fatalf("trace_id on %v with traces off", r["type"])
		}
	}
}

// Traces alone: spans and joined logs, no metrics.
func TestTracesWithoutMetrics(t *testing.T) {
	t.Parallel()
	h := start(t, lambdatest.Options{}, true, "O2_METRICS=false")
	res, err := h.p.Invoke(t.Context(), lambdatest.Invocation{Lines: []string{"hello"}})
	if err != nil {
		t.Fatal(err)
	}
	h.shutdown()
	if n := len(h.o2.Metrics()); n != 0 {
		t.Errorf("%d data points with metrics off", n)
	}
	var root o2test.Span
	for _, s := range h.o2.Spans() {
		if s.Attributes["faas.invocation_id"] == res.RequestID {
			root = s
		}
	}
	if root.TraceID == "" {
		t.Fatal("no trace for the invocation")
	}
	for _, r := range h.records("function") {
		if r["trace_id"] != root.TraceID {
			t.Errorf("line trace_id %v, want %s", r["trace_id"], root.TraceID)
		}
	}
}

// Lambda Managed Instances: concurrent invocations, no runtimeDone (the
// report carries Lambda's spans and only durationMs): every invocation is
// counted and traced, and each JSON line joins its own invocation's trace.
func TestManagedInstancesMetricsAndTraces(t *testing.T) {
	t.Parallel()
	h := start(t, lambdatest.Options{ManagedInstances: true}, true, "O2_FLUSH_INTERVAL_MS=200")
	const n = 10
	if _, err := h.p.Run(t.Context(), lambdatest.Scenario{Invocations: n, Rate: 50, Lines: 3, LineSize: 60, Marker: "mi-otlp", Duration: 40 * time.Millisecond}); err != nil {
		t.Fatalf("run: %v\n%s", err, tail(h.p.Output()))
	}
	h.shutdown()
	invocations := 0.0
	for _, m := range h.o2.Metrics() {
		if m.Name == "aws.lambda.enhanced.invocations" {
			invocations += m.Value
		}
	}
	if invocations != n {
		t.Errorf("invocations = %v, want %d", invocations, n)
	}
	roots := map[string]o2test.Span{}
	for _, s := range h.o2.Spans() {
		if id, ok := s.Attributes["faas.invocation_id"].(string); ok {
			roots[id] = s
		}
	}
	if len(roots) != n {
		t.Fatalf("%d invocation spans, want %d", len(roots), n)
	}
	lines := 0
	for _, r := range h.records("function") {
		lines++
		root, ok := roots[r["requestid"].(string)]
		if !ok || r["trace_id"] != root.TraceID || r["span_id"] != root.SpanID {
			t.Errorf("line of %v: trace_id %v, want %s", r["requestid"], r["trace_id"], root.TraceID)
		}
	}
	if lines != 3*n {
		t.Errorf("%d lines, want %d", lines, 3*n)
	}
}
