package tenant_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/o2-extension/o2-extension/internal/telemetry"
	"github.com/o2-extension/o2-extension/internal/tenant"
)

// t0 is the start of every scenario; events are placed relative to it.
var t0 = time.Date(2025, 6, 1, 8, 0, 0, 0, time.UTC)

const (
	reqA = "0c1f9a52-7d1e-4b8e-9a64-2f3c5d7e9b10"
	reqB = "1d2e3f40-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
	reqC = "2e3f4051-6b7c-4d8e-9fa0-1b2c3d4e5f60"
)

// markLine is the function-side trigger line for tenant.
func markLine(tenantID string) string {
	return `{"message":"customer-memory-report","customerId":"` + tenantID + `"}`
}

// textLog is a text-format function event: the record is a JSON string.
// current is what the listener attributes it to (the invocation in
// progress).
func textLog(at time.Time, current, line string) telemetry.Event {
	rec, _ := json.Marshal(line)
	return telemetry.Event{Time: at, Type: "function", Record: rec, RequestID: current}
}

// jsonLog is a JSON-format function event: the record is an object; the
// listener copies its requestId into RequestID, else the current request.
func jsonLog(at time.Time, current, obj string) telemetry.Event {
	var f struct {
		RequestID string `json:"requestId"`
	}
	_ = json.Unmarshal([]byte(obj), &f)
	if f.RequestID == "" {
		f.RequestID = current
	}
	return telemetry.Event{Time: at, Type: "function", Record: json.RawMessage(obj), RequestID: f.RequestID}
}

// reportEv is a platform.report for id with maxMemoryUsedMB mem.
func reportEv(at time.Time, id string, mem int) telemetry.Event {
	rec := fmt.Sprintf(`{"requestId":%q,"status":"success","metrics":{"durationMs":42.6,"billedDurationMs":43,"memorySizeMB":512,"maxMemoryUsedMB":%d}}`, id, mem)
	return telemetry.Event{Time: at, Type: "platform.report", Record: json.RawMessage(rec), RequestID: id}
}

// rec is the part of a produced record the correlation tests compare.
type rec struct {
	Tenant    string
	RequestID string
	Memory    int
}

// decodeRecord parses a produced event, checking its envelope.
func decodeRecord(t *testing.T, ev telemetry.Event, field string) (rec, map[string]any) {
	t.Helper()
	if ev.Type != tenant.RecordType {
		t.Fatalf("type = %q, want %q", ev.Type, tenant.RecordType)
	}
	var m map[string]any
	if err := json.Unmarshal(ev.Record, &m); err != nil {
		t.Fatalf("record %s: %v", ev.Record, err)
	}
	r := rec{RequestID: fmt.Sprint(m["requestId"])}
	r.Tenant, _ = m[field].(string)
	if f, ok := m["memoryUsage"].(float64); ok {
		r.Memory = int(f)
	}
	if ev.RequestID != r.RequestID {
		t.Errorf("event RequestID = %q, record requestId = %q", ev.RequestID, r.RequestID)
	}
	return r, m
}

// step is one event observed at a time, and the records it must produce.
type step struct {
	ev   telemetry.Event
	now  time.Time // zero: the event's time
	want []rec
}

func TestCorrelation(t *testing.T) {
	sec := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }
	tests := []struct {
		name  string
		o     tenant.Options
		steps []step
		stats tenant.Stats
	}{
		{
			name: "report after the mark, at the next thaw",
			steps: []step{
				{ev: textLog(sec(0), reqA, markLine("acme"))},
				// Delivered hours later in wall time: the sandbox was
				// frozen, but the report's own time is the invocation's end.
				{ev: reportEv(sec(1), reqA, 78), now: t0.Add(5 * time.Hour),
					want: []rec{{"acme", reqA, 78}}},
			},
			stats: tenant.Stats{Marks: 1, Matched: 1},
		},
		{
			name: "mark after the report (split batches)",
			steps: []step{
				{ev: reportEv(sec(1), reqA, 91)},
				{ev: textLog(sec(0), reqA, markLine("acme")), now: sec(2),
					want: []rec{{"acme", reqA, 91}}},
			},
			stats: tenant.Stats{Marks: 1, Matched: 1},
		},
		{
			name: "two tenants in a row",
			steps: []step{
				{ev: textLog(sec(0), reqA, markLine("acme"))},
				{ev: textLog(sec(10), reqB, markLine("globex")), now: sec(10)},
				{ev: reportEv(sec(1), reqA, 70), now: sec(10),
					want: []rec{{"acme", reqA, 70}}},
				{ev: reportEv(sec(11), reqB, 120), now: sec(20),
					want: []rec{{"globex", reqB, 120}}},
			},
			stats: tenant.Stats{Marks: 2, Matched: 2},
		},
		{
			name: "a report without a mark produces nothing",
			steps: []step{
				{ev: reportEv(sec(1), reqA, 70)},
				{ev: textLog(sec(2), reqB, markLine("acme"))},
				{ev: reportEv(sec(3), reqB, 80), want: []rec{{"acme", reqB, 80}}},
			},
			stats: tenant.Stats{Marks: 1, Matched: 1},
		},
		{
			name: "a mark with no report is evicted by age and counted",
			o:    tenant.Options{MaxAge: time.Minute},
			steps: []step{
				{ev: textLog(sec(0), reqA, markLine("acme"))},
				// An invocation more than a minute later: the first mark
				// is now stale.
				{ev: textLog(sec(61), reqB, markLine("globex"))},
				{ev: reportEv(sec(62), reqA, 70)},
				{ev: reportEv(sec(63), reqB, 80), want: []rec{{"globex", reqB, 80}}},
			},
			stats: tenant.Stats{Marks: 2, Matched: 1, Evicted: 1},
		},
		{
			name: "a mark within the age bound survives a long freeze",
			o:    tenant.Options{MaxAge: time.Minute},
			steps: []step{
				{ev: textLog(sec(0), reqA, markLine("acme"))},
				{ev: reportEv(sec(59), reqA, 70), now: t0.Add(24 * time.Hour),
					want: []rec{{"acme", reqA, 70}}},
			},
			stats: tenant.Stats{Marks: 1, Matched: 1},
		},
		{
			name: "MaxPending evicts the oldest mark and counts it",
			o:    tenant.Options{MaxPending: 2},
			steps: []step{
				{ev: textLog(sec(0), reqA, markLine("a"))},
				{ev: textLog(sec(1), reqB, markLine("b"))},
				{ev: textLog(sec(2), reqC, markLine("c"))}, // evicts a
				{ev: reportEv(sec(3), reqA, 10)},
				{ev: reportEv(sec(3), reqB, 20), want: []rec{{"b", reqB, 20}}},
				{ev: reportEv(sec(3), reqC, 30), want: []rec{{"c", reqC, 30}}},
			},
			stats: tenant.Stats{Marks: 3, Matched: 2, Evicted: 1},
		},
		{
			name: "kept reports are bounded too, uncounted",
			o:    tenant.Options{MaxPending: 1},
			steps: []step{
				{ev: reportEv(sec(1), reqA, 10)},
				{ev: reportEv(sec(2), reqB, 20)}, // evicts the report of A
				{ev: textLog(sec(3), reqA, markLine("a"))},
				{ev: textLog(sec(3), reqB, markLine("b")), want: []rec{{"b", reqB, 20}}},
			},
			stats: tenant.Stats{Marks: 2, Matched: 1, Evicted: 0},
		},
		{
			name: "a second mark for a request replaces the first",
			steps: []step{
				{ev: textLog(sec(0), reqA, markLine("first"))},
				{ev: textLog(sec(0), reqA, markLine("second"))},
				{ev: reportEv(sec(1), reqA, 10), want: []rec{{"second", reqA, 10}}},
			},
			stats: tenant.Stats{Marks: 2, Matched: 1},
		},
		{
			name: "a request is reported once",
			steps: []step{
				{ev: textLog(sec(0), reqA, markLine("acme"))},
				{ev: reportEv(sec(1), reqA, 10), want: []rec{{"acme", reqA, 10}}},
				{ev: reportEv(sec(1), reqA, 10)},
			},
			stats: tenant.Stats{Marks: 1, Matched: 1},
		},
		{
			name: "event without a time uses now",
			o:    tenant.Options{MaxAge: time.Minute},
			steps: []step{
				{ev: textLog(time.Time{}, reqA, markLine("acme")), now: sec(0)},
				{ev: reportEv(time.Time{}, reqB, 1), now: sec(120)}, // a's mark is stale
				{ev: reportEv(time.Time{}, reqA, 1), now: sec(121)},
			},
			stats: tenant.Stats{Marks: 1, Evicted: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := tenant.New(tt.o)
			for i, s := range tt.steps {
				now := s.now
				if now.IsZero() {
					now = s.ev.Time
				}
				out := tr.Observe(&s.ev, now)
				var got []rec
				for _, ev := range out {
					r, _ := decodeRecord(t, ev, "customerId")
					got = append(got, r)
					if !ev.Time.Equal(s.ev.Time) && s.ev.Type == "platform.report" {
						t.Errorf("step %d: record time %v, want the report's %v", i, ev.Time, s.ev.Time)
					}
				}
				if fmt.Sprint(got) != fmt.Sprint(s.want) {
					t.Errorf("step %d (%s): got %v, want %v", i, s.ev.Type, got, s.want)
				}
			}
			if got := tr.Stats(); got != tt.stats {
				t.Errorf("Stats() = %+v, want %+v", got, tt.stats)
			}
		})
	}
}

func TestTriggers(t *testing.T) {
	const prefixID = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"
	tests := []struct {
		name    string
		o       tenant.Options
		ev      telemetry.Event
		want    bool   // a mark is recorded
		wantReq string // the request it is recorded for
		tenant  string
	}{
		{
			name: "JSON format, requestId in the object",
			ev:   jsonLog(t0, reqB, `{"timestamp":"2025-06-01T08:00:00.329Z","level":"INFO","requestId":"`+reqA+`","message":"customer-memory-report","customerId":"acme"}`),
			want: true, wantReq: reqA, tenant: "acme",
		},
		{
			name: "JSON format, requestId from the invocation in progress",
			ev:   jsonLog(t0, reqA, `{"message":"customer-memory-report","customerId":"acme"}`),
			want: true, wantReq: reqA, tenant: "acme",
		},
		{
			name: "JSON format, Node.js console.log of the JSON text",
			ev:   jsonLog(t0, reqB, `{"timestamp":"2025-06-01T08:00:00.329Z","level":"INFO","requestId":"`+reqA+`","message":"{\"message\":\"customer-memory-report\",\"customerId\":\"acme\"}"}`),
			want: true, wantReq: reqA, tenant: "acme",
		},
		{
			name: "JSON format, message is an object",
			ev:   jsonLog(t0, reqA, `{"level":"INFO","message":{"message":"customer-memory-report","customerId":"acme"}}`),
			want: true, wantReq: reqA, tenant: "acme",
		},
		{
			name: "text format, the line is the JSON object",
			ev:   textLog(t0, reqA, markLine("acme")),
			want: true, wantReq: reqA, tenant: "acme",
		},
		{
			name: "text format, requestId in the line wins",
			ev:   textLog(t0, reqB, `{"message":"customer-memory-report","customerId":"acme","requestId":"`+reqA+`"}`),
			want: true, wantReq: reqA, tenant: "acme",
		},
		{
			name: "text format, Node.js prefix names the request",
			ev:   textLog(t0, reqB, "2025-06-01T08:00:00.329Z\t"+prefixID+"\tINFO\t"+markLine("acme")+"\n"),
			want: true, wantReq: prefixID, tenant: "acme",
		},
		{
			name: "text format, Python logger prefix",
			ev:   textLog(t0, reqB, "[INFO]\t2025-06-01T08:00:00.329Z\t"+prefixID+"\t"+markLine("acme")),
			want: true, wantReq: prefixID, tenant: "acme",
		},
		{
			name: "text format, prefix without a request id",
			ev:   textLog(t0, reqA, "INFO "+markLine("acme")),
			want: true, wantReq: reqA, tenant: "acme",
		},
		{
			name: "text format, JSON log record as a string (schema 2022-07-01)",
			ev:   textLog(t0, reqB, `{"timestamp":"2025-06-01T08:00:00.329Z","level":"INFO","requestId":"`+reqA+`","message":"customer-memory-report","customerId":"acme"}`),
			want: true, wantReq: reqA, tenant: "acme",
		},
		{
			name: "text format, trailing text after the object",
			ev:   textLog(t0, reqA, markLine("acme")+" (sent)"),
			want: true, wantReq: reqA, tenant: "acme",
		},
		{
			name: "numeric tenant kept as its JSON text",
			ev:   textLog(t0, reqA, `{"message":"customer-memory-report","customerId":42}`),
			want: true, wantReq: reqA, tenant: "42",
		},
		{
			name: "tenant with characters JSON escapes",
			ev:   textLog(t0, reqA, `{"message":"customer-memory-report","customerId":"a\"b\\c/é"}`),
			want: true, wantReq: reqA, tenant: `a"b\c/é`,
		},
		{
			name: "custom message and field",
			o:    tenant.Options{Message: "tenant-usage", Field: "tenantId"},
			ev:   textLog(t0, reqA, `{"message":"tenant-usage","tenantId":"acme"}`),
			want: true, wantReq: reqA, tenant: "acme",
		},
		{
			name: "custom message that JSON escapes",
			o:    tenant.Options{Message: `mem/"report"`},
			ev:   textLog(t0, reqA, `{"message":"mem\/\"report\"","customerId":"acme"}`),
			want: true, wantReq: reqA, tenant: "acme",
		},
		{
			name: "custom message, default one ignored",
			o:    tenant.Options{Message: "tenant-usage"},
			ev:   textLog(t0, reqA, markLine("acme")),
		},
		{
			name: "custom field, default one ignored",
			o:    tenant.Options{Field: "tenantId"},
			ev:   textLog(t0, reqA, markLine("acme")),
		},
		{name: "message differs in case", ev: textLog(t0, reqA, `{"message":"Customer-Memory-Report","customerId":"acme"}`)},
		{name: "message with more text", ev: textLog(t0, reqA, `{"message":"customer-memory-report for acme","customerId":"acme"}`)},
		{name: "message with spaces", ev: textLog(t0, reqA, `{"message":" customer-memory-report","customerId":"acme"}`)},
		{name: "message not in the message field", ev: textLog(t0, reqA, `{"msg":"customer-memory-report","customerId":"acme"}`)},
		{name: "plain text mentioning the message", ev: textLog(t0, reqA, `customer-memory-report customerId=acme`)},
		{name: "invalid JSON", ev: textLog(t0, reqA, `{"message":"customer-memory-report","customerId":`)},
		{name: "no tenant field", ev: textLog(t0, reqA, `{"message":"customer-memory-report"}`)},
		{name: "tenant null", ev: textLog(t0, reqA, `{"message":"customer-memory-report","customerId":null}`)},
		{name: "tenant blank", ev: textLog(t0, reqA, `{"message":"customer-memory-report","customerId":"  "}`)},
		{name: "tenant boolean", ev: textLog(t0, reqA, `{"message":"customer-memory-report","customerId":true}`)},
		{name: "tenant object", ev: textLog(t0, reqA, `{"message":"customer-memory-report","customerId":{"id":1}}`)},
		{name: "no request id anywhere", ev: textLog(t0, "", markLine("acme"))},
		{
			name: "extension log is not a function log",
			ev:   telemetry.Event{Time: t0, Type: "extension", Record: json.RawMessage(`{"message":"customer-memory-report","customerId":"acme"}`), RequestID: reqA},
		},
		{
			name: "a record that is neither string nor object",
			ev:   telemetry.Event{Time: t0, Type: "function", Record: json.RawMessage(`["customer-memory-report"]`), RequestID: reqA},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := tenant.New(tt.o)
			if out := tr.Observe(&tt.ev, t0); out != nil {
				t.Fatalf("a mark produced %d records before any report", len(out))
			}
			gotMarks := tr.Stats().Marks
			if !tt.want {
				if gotMarks != 0 || tr.Pending() != 0 {
					t.Fatalf("marks = %d, pending = %d, want none", gotMarks, tr.Pending())
				}
				return
			}
			if gotMarks != 1 {
				t.Fatalf("marks = %d, want 1", gotMarks)
			}
			rep := reportEv(t0.Add(time.Second), tt.wantReq, 64)
			out := tr.Observe(&rep, rep.Time)
			if len(out) != 1 {
				t.Fatalf("report for %s: %d records, want 1 (mark kept for another request?)", tt.wantReq, len(out))
			}
			field := tt.o.Field
			if field == "" {
				field = "customerId"
			}
			r, _ := decodeRecord(t, out[0], field)
			if r.Tenant != tt.tenant || r.RequestID != tt.wantReq {
				t.Errorf("record tenant %q request %q, want %q %q", r.Tenant, r.RequestID, tt.tenant, tt.wantReq)
			}
		})
	}
}

func TestRecordShape(t *testing.T) {
	at := time.Date(2025, 6, 1, 8, 0, 0, 358_000_000, time.UTC)
	tests := []struct {
		name   string
		o      tenant.Options
		report string
		want   string
	}{
		{
			name:   "every field, default key",
			report: `{"requestId":"` + reqA + `","status":"success","metrics":{"durationMs":42.6,"billedDurationMs":43,"memorySizeMB":512,"maxMemoryUsedMB":78,"initDurationMs":191.7}}`,
			want:   `{"customerId":"acme","message":"Customer memory report","requestId":"` + reqA + `","memoryUsage":78,"memorySizeMB":512,"durationMs":42.6,"billedDurationMs":43,"timestamp":"2025-06-01T08:00:00.358Z"}`,
		},
		{
			name:   "custom field is the key",
			o:      tenant.Options{Field: "tenantId"},
			report: `{"requestId":"` + reqA + `","metrics":{"durationMs":1,"billedDurationMs":1,"memorySizeMB":128,"maxMemoryUsedMB":30}}`,
			want:   `{"tenantId":"acme","message":"Customer memory report","requestId":"` + reqA + `","memoryUsage":30,"memorySizeMB":128,"durationMs":1,"billedDurationMs":1,"timestamp":"2025-06-01T08:00:00.358Z"}`,
		},
		{
			name:   "metrics a report lacks are left out (Managed Instances)",
			report: `{"requestId":"` + reqA + `","status":"success","metrics":{"durationMs":12.5}}`,
			want:   `{"customerId":"acme","message":"Customer memory report","requestId":"` + reqA + `","durationMs":12.5,"timestamp":"2025-06-01T08:00:00.358Z"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := tenant.New(tt.o)
			field := tt.o.Field
			if field == "" {
				field = "customerId"
			}
			mark := textLog(at.Add(-time.Second), reqA, `{"message":"customer-memory-report","`+field+`":"acme"}`)
			tr.Observe(&mark, mark.Time)
			rep := telemetry.Event{Time: at, Type: "platform.report", Record: json.RawMessage(tt.report), RequestID: reqA}
			out := tr.Observe(&rep, at)
			if len(out) != 1 {
				t.Fatalf("got %d records, want 1", len(out))
			}
			if got := string(out[0].Record); got != tt.want {
				t.Errorf("record\n got %s\nwant %s", got, tt.want)
			}
			if !out[0].Time.Equal(at) || out[0].Type != tenant.RecordType || out[0].RequestID != reqA {
				t.Errorf("event = %v %q %q, want %v %q %q", out[0].Time, out[0].Type, out[0].RequestID, at, tenant.RecordType, reqA)
			}
		})
	}
}

func TestMalformedReportsIgnored(t *testing.T) {
	for _, recText := range []string{
		`"REPORT RequestId: x"`,
		`{"status":"success","metrics":{"maxMemoryUsedMB":78}}`,
		`{"requestId":"` + reqA + `","metrics":{"maxMemoryUsedMB":"lots"}}`,
		`{"requestId":`,
		``,
	} {
		t.Run(recText, func(t *testing.T) {
			tr := tenant.New(tenant.Options{})
			mark := textLog(t0, reqA, markLine("acme"))
			tr.Observe(&mark, t0)
			rep := telemetry.Event{Time: t0, Type: "platform.report", Record: json.RawMessage(recText), RequestID: reqA}
			if out := tr.Observe(&rep, t0); len(out) != 0 {
				t.Fatalf("malformed report produced %s", out[0].Record)
			}
			if tr.Pending() != 1 {
				t.Errorf("pending = %d, want the mark still waiting", tr.Pending())
			}
		})
	}
}

func TestNilTracker(t *testing.T) {
	var tr *tenant.Tracker
	ev := textLog(t0, reqA, markLine("acme"))
	if out := tr.Observe(&ev, t0); out != nil {
		t.Errorf("nil tracker produced %v", out)
	}
	if s := tr.Stats(); s != (tenant.Stats{}) {
		t.Errorf("nil tracker stats %+v", s)
	}
}

// plainLines are what every function prints all day: they must cost no
// allocation on the listener's goroutine.
var plainLines = map[string]telemetry.Event{
	"text":           textLog(t0, reqA, "2025-06-01T08:00:00.329Z\t"+reqA+"\tINFO\torder 42 accepted for customer acme, total 99.50 EUR"),
	"json":           jsonLog(t0, reqA, `{"timestamp":"2025-06-01T08:00:00.329Z","level":"INFO","requestId":"`+reqA+`","message":"order 42 accepted for customer acme, total 99.50 EUR"}`),
	"platform.start": {Time: t0, Type: "platform.start", Record: json.RawMessage(`{"requestId":"` + reqA + `","version":"$LATEST"}`), RequestID: reqA},
}

func TestPlainLinesDoNotAllocate(t *testing.T) {
	tr := tenant.New(tenant.Options{})
	for name, ev := range plainLines {
		t.Run(name, func(t *testing.T) {
			allocs := testing.AllocsPerRun(100, func() { tr.Observe(&ev, t0) })
			if allocs != 0 {
				t.Errorf("Observe allocated %.0f times per plain line, want 0", allocs)
			}
		})
	}
}

func BenchmarkObservePlainLine(b *testing.B) {
	tr := tenant.New(tenant.Options{})
	for _, name := range []string{"text", "json"} {
		ev := plainLines[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tr.Observe(&ev, t0)
			}
		})
	}
}

func BenchmarkObserveMarkAndReport(b *testing.B) {
	tr := tenant.New(tenant.Options{})
	mark := textLog(t0, reqA, markLine("acme"))
	rep := reportEv(t0, reqA, 78)
	b.ReportAllocs()
	for b.Loop() {
		tr.Observe(&mark, t0)
		if len(tr.Observe(&rep, t0)) != 1 {
			b.Fatal("no record")
		}
	}
}

// TestEventsAreNotRetained checks that Observe copies what it keeps: the
// listener reuses nothing today, but the contract of OnEvent says the
// pointer must not be kept.
func TestEventsAreNotRetained(t *testing.T) {
	tr := tenant.New(tenant.Options{})
	line := []byte(`{"message":"customer-memory-report","customerId":"acme"}`)
	ev := telemetry.Event{Time: t0, Type: "function", Record: line, RequestID: reqA}
	tr.Observe(&ev, t0)
	copy(line, bytes.Repeat([]byte("x"), len(line)))
	ev.RequestID = "changed"
	rep := reportEv(t0, reqA, 5)
	out := tr.Observe(&rep, t0)
	if len(out) != 1 {
		t.Fatalf("got %d records, want 1", len(out))
	}
	if r, _ := decodeRecord(t, out[0], "customerId"); r.Tenant != "acme" {
		t.Errorf("tenant = %q after the caller reused its buffer", r.Tenant)
	}
}
