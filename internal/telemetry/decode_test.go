package telemetry

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// exampleRequestID is the invocation of the lambda-platform.md §2.5 example.
const exampleRequestID = "0c1f9a52-7d1e-4b8e-9a64-2f3c5d7e9b10"

// fixedNow stands in for the clock: events whose time cannot be read get it.
var fixedNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func nowFunc() time.Time { return fixedNow }

// exampleBatch is the §2.5 body: a cold start and one invocation.
func exampleBatch(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/example_2_5.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decode runs DecodeBatch with a fresh invocation and counts malformed events.
func decode(body []byte) (evs []Event, malformed int, current string) {
	evs = DecodeBatch(body, nowFunc, &current, func() { malformed++ })
	return evs, malformed, current
}

func types(evs []Event) []string {
	out := make([]string, 0, len(evs))
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return out
}

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

func TestDecodeBatchExample(t *testing.T) {
	body := exampleBatch(t)
	evs, malformed, current := decode(body)
	if malformed != 0 {
		t.Errorf("malformed = %d, want 0", malformed)
	}
	if current != exampleRequestID {
		t.Errorf("current invocation = %q, want %q", current, exampleRequestID)
	}
	// The records must come out byte for byte as they went in.
	var wire []struct {
		Time   string          `json:"time"`
		Record json.RawMessage `json:"record"`
	}
	if err := json.Unmarshal(body, &wire); err != nil {
		t.Fatal(err)
	}
	want := []struct{ typ, requestID, level string }{
		{"platform.initStart", "", ""},
		{"platform.telemetrySubscription", "", ""},
		{"platform.initRuntimeDone", "", ""},
		{"platform.extension", "", ""},
		{"platform.initReport", "", ""},
		{"platform.start", exampleRequestID, ""},
		{"function", exampleRequestID, "INFO"},
		{"platform.runtimeDone", exampleRequestID, ""},
		{"platform.report", exampleRequestID, ""},
	}
	if len(evs) != len(want) {
		t.Fatalf("decoded %d events %v, want %d", len(evs), types(evs), len(want))
	}
	for i, w := range want {
		e := evs[i]
		if e.Type != w.typ || e.RequestID != w.requestID || e.Level != w.level {
			t.Errorf("event %d = {%q, requestId %q, level %q}, want {%q, %q, %q}", i, e.Type, e.RequestID, e.Level, w.typ, w.requestID, w.level)
		}
		if string(e.Record) != string(wire[i].Record) {
			t.Errorf("event %d record = %s, want %s", i, e.Record, wire[i].Record)
		}
		if wt := mustTime(t, wire[i].Time); !e.Time.Equal(wt) {
			t.Errorf("event %d time = %v, want %v", i, e.Time, wt)
		}
	}
	if got, want := evs[0].Time, time.Date(2025, 6, 1, 8, 0, 0, 120e6, time.UTC); !got.Equal(want) {
		t.Errorf("first event time = %v, want %v", got, want)
	}
}

// withFunctionRecord is the §2.5 example with the function record replaced,
// e.g. by a string, as the text log format delivers it.
func withFunctionRecord(t testing.TB, record string) []byte {
	t.Helper()
	body := string(exampleBatch(t))
	const old = `{"timestamp":"2025-06-01T08:00:00.329Z","level":"INFO","requestId":"0c1f9a52-7d1e-4b8e-9a64-2f3c5d7e9b10","message":"order 42 accepted"}`
	if !strings.Contains(body, old) {
		t.Fatal("example batch changed: function record not found")
	}
	return []byte(strings.Replace(body, old, record, 1))
}

func TestDecodeBatchRequestIDAndLevel(t *testing.T) {
	tests := []struct {
		name          string
		record        string // the function record of the §2.5 example
		wantRequestID string
		wantLevel     string
	}{
		{name: "text line takes platform.start's", record: `"order 42 accepted\n"`, wantRequestID: exampleRequestID},
		{name: "JSON line keeps its own", record: `{"level":"WARN","requestId":"other-id","message":"m"}`, wantRequestID: "other-id", wantLevel: "WARN"},
		{name: "JSON line without requestId", record: `{"level":"ERROR","message":"m"}`, wantRequestID: exampleRequestID, wantLevel: "ERROR"},
		{name: "level that is not a string", record: `{"level":5,"message":"m"}`, wantRequestID: exampleRequestID},
		{name: "requestId that is not a string", record: `{"level":"DEBUG","requestId":42}`, wantRequestID: exampleRequestID, wantLevel: "DEBUG"},
		{name: "escaped strings are decoded", record: `{"level":"\u0057ARN","requestId":"a\"b"}`, wantRequestID: `a"b`, wantLevel: "WARN"},
		// A JSON-format record is whatever the function printed: keys that
		// happen to share a name with platform.logsDropped's counters must
		// not hide the ones we read.
		{name: "unrelated keys do not hide level", record: `{"level":"WARN","requestId":"own-id","droppedBytes":"n/a","droppedRecords":{"x":1}}`, wantRequestID: "own-id", wantLevel: "WARN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs, malformed, _ := decode(withFunctionRecord(t, tt.record))
			if malformed != 0 || len(evs) != 9 {
				t.Fatalf("decoded %d events, %d malformed; want 9, 0", len(evs), malformed)
			}
			e := evs[6]
			if e.Type != "function" || string(e.Record) != tt.record {
				t.Fatalf("event 6 = %q %s, want function %s", e.Type, e.Record, tt.record)
			}
			if e.RequestID != tt.wantRequestID || e.Level != tt.wantLevel {
				t.Errorf("requestId, level = %q, %q; want %q, %q", e.RequestID, e.Level, tt.wantRequestID, tt.wantLevel)
			}
		})
	}
}

// TestDecodeBatchInvocationAcrossBatches follows the invocation in progress
// from one body to the next: Lambda splits batches anywhere.
func TestDecodeBatchInvocationAcrossBatches(t *testing.T) {
	batches := []struct {
		body string
		want []string // RequestID of each event
	}{
		{`[{"time":"2025-06-01T08:00:00.100Z","type":"function","record":"before any invocation"}]`, []string{""}},
		{`[{"time":"2025-06-01T08:00:00.200Z","type":"platform.start","record":{"requestId":"req-1"}}]`, []string{"req-1"}},
		{`[{"time":"2025-06-01T08:00:00.300Z","type":"function","record":"line"},` +
			`{"time":"2025-06-01T08:00:00.301Z","type":"extension","record":"ext line"},` +
			`{"time":"2025-06-01T08:00:00.302Z","type":"platform.logsDropped","record":{"droppedRecords":1,"droppedBytes":10,"reason":"r"}}]`,
			[]string{"req-1", "req-1", ""}},
		{`[{"time":"2025-06-01T08:00:01.000Z","type":"platform.start","record":{"requestId":"req-2"}},` +
			`{"time":"2025-06-01T08:00:01.100Z","type":"function","record":"next"}]`, []string{"req-2", "req-2"}},
		// platform.start without a requestId does not forget the last one.
		{`[{"time":"2025-06-01T08:00:02.000Z","type":"platform.start","record":{}},` +
			`{"time":"2025-06-01T08:00:02.100Z","type":"function","record":"x"}]`, []string{"", "req-2"}},
	}
	current := ""
	for i, b := range batches {
		malformed := 0
		evs := DecodeBatch([]byte(b.body), nowFunc, &current, func() { malformed++ })
		if malformed != 0 {
			t.Errorf("batch %d: malformed = %d", i, malformed)
		}
		if got := ids(evs); !slices.Equal(got, b.want) {
			t.Errorf("batch %d: request ids = %q, want %q", i, got, b.want)
		}
	}
}

// ok1..ok3 are well-formed events used around the malformed ones.
const (
	ok1 = `{"time":"2025-06-01T08:00:00.330Z","type":"function","record":"one"}`
	ok2 = `{"time":"2025-06-01T08:00:00.331Z","type":"function","record":{"level":"INFO","message":"two"}}`
	ok3 = `{"time":"2025-06-01T08:00:00.332Z","type":"extension","record":"three"}`
)

func TestDecodeBatchMalformed(t *testing.T) {
	deep := strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000)
	tests := []struct {
		name          string
		body          string
		want          []string // Record of each event kept
		wantMalformed int      // -1: not specified
	}{
		{name: "empty body", body: "", wantMalformed: 1},
		{name: "whitespace", body: " \n\t", wantMalformed: 1},
		{name: "empty array", body: "[]", wantMalformed: 0},
		{name: "empty array with whitespace", body: " [ ]\n", wantMalformed: 0},
		{name: "object, not an array", body: ok1, wantMalformed: 1},
		{name: "string, not an array", body: `"[]"`, wantMalformed: 1},
		{name: "null", body: `null`, wantMalformed: 1},
		{name: "garbage", body: `<html>`, wantMalformed: 1},
		{name: "truncated inside an element", body: "[" + ok1 + "," + ok2 + `,{"time":"2025-06-01T08:00`, want: []string{`"one"`, `{"level":"INFO","message":"two"}`}, wantMalformed: 1},
		{name: "truncated inside a record", body: "[" + ok1 + `,{"time":"2025-06-01T08:00:00.331Z","type":"function","record":{"level":"IN`, want: []string{`"one"`}, wantMalformed: 1},
		// Cut between elements, nothing was lost that could be counted.
		{name: "truncated after a comma", body: "[" + ok1 + ",", want: []string{`"one"`}, wantMalformed: -1},
		{name: "closing bracket missing", body: "[" + ok1 + "," + ok3, want: []string{`"one"`, `"three"`}, wantMalformed: -1},
		{name: "just an opening bracket", body: "[", wantMalformed: -1},
		{name: "missing comma stops the batch", body: "[" + ok1 + " " + ok2 + "]", want: []string{`"one"`}, wantMalformed: 1},
		// Whatever follows the array is one malformed value; the array's
		// events are kept.
		{name: "trailing garbage after the array", body: "[" + ok1 + "] trailing", want: []string{`"one"`}, wantMalformed: 1},
		{name: "second array after the first", body: "[" + ok1 + "][" + ok2 + "]", want: []string{`"one"`}, wantMalformed: 1},
		{name: "second array after white space", body: "[" + ok1 + "," + ok3 + "]\n [" + ok2 + "]\n", want: []string{`"one"`, `"three"`}, wantMalformed: 1},
		{name: "empty second array", body: "[" + ok1 + "][]", want: []string{`"one"`}, wantMalformed: 1},
		{name: "trailing white space only", body: "[" + ok1 + "] \r\n\t", want: []string{`"one"`}, wantMalformed: 0},
		{
			name: "elements of the wrong type skipped, neighbours kept",
			body: "[1," + ok1 + `,"text",` + ok2 + `,null,[],true,{},` + ok3 + "]",
			want: []string{`"one"`, `{"level":"INFO","message":"two"}`, `"three"`}, wantMalformed: 6,
		},
		{name: "field of the wrong type", body: "[" + ok1 + `,{"time":"2025-06-01T08:00:00Z","type":7,"record":"x"},` + ok3 + "]", want: []string{`"one"`, `"three"`}, wantMalformed: 1},
		{name: "missing type", body: "[" + ok1 + `,{"time":"2025-06-01T08:00:00Z","record":"x"},` + ok3 + "]", want: []string{`"one"`, `"three"`}, wantMalformed: 1},
		{name: "empty type", body: `[{"time":"2025-06-01T08:00:00Z","type":"","record":"x"},` + ok3 + "]", want: []string{`"three"`}, wantMalformed: 1},
		{name: "missing record", body: `[{"time":"2025-06-01T08:00:00Z","type":"function"},` + ok3 + "]", want: []string{`"three"`}, wantMalformed: 1},
		{name: "unknown event type kept", body: `[{"time":"2025-06-01T08:00:00Z","type":"platform.someday","record":{"a":1}}]`, want: []string{`{"a":1}`}},
		{name: "invalid UTF-8 in a record kept", body: "[" + `{"time":"2025-06-01T08:00:00Z","type":"function","record":"caf` + "\xe9" + `"},` + ok3 + "]", want: []string{"\"caf\xe9\"", `"three"`}},
		{name: "invalid UTF-8 between elements", body: "[" + ok1 + ",\xff" + ok3 + "]", want: []string{`"one"`}, wantMalformed: 1},
		{name: "deeply nested record", body: "[" + ok1 + `,{"time":"2025-06-01T08:00:00Z","type":"function","record":` + deep + "}]", want: []string{`"one"`}, wantMalformed: 1},
		{name: "nested record within limits", body: `[{"time":"2025-06-01T08:00:00Z","type":"function","record":{"a":` + strings.Repeat("[", 500) + strings.Repeat("]", 500) + `}},` + ok3 + "]", want: []string{`{"a":` + strings.Repeat("[", 500) + strings.Repeat("]", 500) + "}", `"three"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs, malformed, _ := decode([]byte(tt.body))
			var got []string
			for _, e := range evs {
				got = append(got, string(e.Record))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("records = %q, want %q", got, tt.want)
			}
			if tt.wantMalformed >= 0 && malformed != tt.wantMalformed {
				t.Errorf("malformed = %d, want %d", malformed, tt.wantMalformed)
			}
			checkEvents(t, []byte(tt.body), evs)
		})
	}
}

// checkEvents asserts what holds for every event DecodeBatch returns.
func checkEvents(t *testing.T, body []byte, evs []Event) {
	t.Helper()
	for i, e := range evs {
		if e.Type == "" {
			t.Errorf("event %d has no type", i)
		}
		if !json.Valid(e.Record) {
			t.Errorf("event %d record is not valid JSON: %q", i, e.Record)
		}
		if !strings.Contains(string(body), string(e.Record)) {
			t.Errorf("event %d record %q is not from the body", i, e.Record)
		}
		for _, s := range []string{e.Type, e.RequestID, e.Level} {
			if !utf8.ValidString(s) {
				t.Errorf("event %d has invalid UTF-8 %q", i, s)
			}
		}
		if e.Time.IsZero() {
			t.Errorf("event %d has no time", i)
		}
	}
}

func TestDecodeBatchTime(t *testing.T) {
	tests := []struct {
		name string
		time string // the "time" member, raw JSON; "" leaves it out
		want time.Time
	}{
		{name: "milliseconds UTC", time: `"2025-06-01T08:00:00.120Z"`, want: time.Date(2025, 6, 1, 8, 0, 0, 120e6, time.UTC)},
		{name: "no fraction", time: `"2025-06-01T08:00:00Z"`, want: time.Date(2025, 6, 1, 8, 0, 0, 0, time.UTC)},
		{name: "offset", time: `"2025-06-01T10:00:00.5+02:00"`, want: time.Date(2025, 6, 1, 8, 0, 0, 500e6, time.UTC)},
		{name: "unparseable kept with now", time: `"yesterday"`, want: fixedNow},
		{name: "empty kept with now", time: `""`, want: fixedNow},
		{name: "missing kept with now", want: fixedNow},
		{name: "null kept with now", time: `null`, want: fixedNow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			el := `{"type":"function","record":"line"}`
			if tt.time != "" {
				el = `{"time":` + tt.time + `,"type":"function","record":"line"}`
			}
			evs, malformed, _ := decode([]byte("[" + el + "]"))
			if len(evs) != 1 || malformed != 0 {
				t.Fatalf("decoded %d events, %d malformed; want 1, 0", len(evs), malformed)
			}
			if !evs[0].Time.Equal(tt.want) {
				t.Errorf("time = %v, want %v", evs[0].Time, tt.want)
			}
		})
	}
}

func TestEventSize(t *testing.T) {
	small := Event{Type: "function", Record: []byte(`""`)}
	big := Event{Type: "function", Record: []byte(`"` + strings.Repeat("x", 1000) + `"`), RequestID: exampleRequestID, Level: "INFO"}
	if small.Size() <= len(small.Record)+len(small.Type) {
		t.Errorf("Size = %d does not account for per-event overhead", small.Size())
	}
	if got, want := big.Size()-small.Size(), 1000+len(exampleRequestID)+len("INFO"); got != want {
		t.Errorf("Size grows by %d for %d more bytes of content", got, want)
	}
}

// StringValue's fast path (plain ASCII, returned as is) must agree with
// encoding/json on every input, including the ones it leaves to it.
func TestStringValue(t *testing.T) {
	for _, tt := range []struct{ raw, want string }{
		{`"2025-06-01T08:00:00.351Z"`, "2025-06-01T08:00:00.351Z"},
		{`""`, ""},
		{`"a\"b"`, `a"b`},
		{`"tab\there"`, "tab\there"},
		{`"\u00e9t\u00e9"`, "été"},
		{`"été"`, "été"},
		{"\"bad \xff utf8\"", "bad \ufffd utf8"},
		{`"unterminated`, ""},
		{`"`, ""},
		{`42`, ""},
		{`{"a":1}`, ""},
		{`null`, ""},
		{"\"ctl \x01\"", ""}, // invalid JSON: a raw control character
	} {
		if got := StringValue(json.RawMessage(tt.raw)); got != tt.want {
			t.Errorf("StringValue(%q) = %q, want %q", tt.raw, got, tt.want)
		}
	}
}

func FuzzStringValue(f *testing.F) {
	for _, s := range []string{`"plain"`, `"a\"b"`, `"\u00e9"`, "\"\xff\"", `"x`, `12`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var want string
		if len(raw) >= 2 && raw[0] == '"' && json.Unmarshal(raw, &want) != nil {
			want = ""
		}
		if got := StringValue(raw); got != want {
			t.Fatalf("StringValue(%q) = %q, encoding/json says %q", raw, got, want)
		}
	})
}

func TestTextPrefix(t *testing.T) {
	const id = "0c1f9a52-7d1e-4b8e-9a64-2f3c5d7e9b10"
	for _, tt := range []struct {
		name, line, id, level string
	}{
		{"node", "2024-01-01T00:00:00.000Z\t" + id + "\tINFO\torder 42 accepted", id, "INFO"},
		{"node error", "2024-01-01T00:00:00.123Z\t" + id + "\tERROR\tInvoke Error \t{\"x\":1}", id, "ERROR"},
		{"node warn, empty message", "2024-01-01T00:00:00.123Z\t" + id + "\tWARN\t", id, "WARN"},
		{"python", "[WARNING]\t2024-01-01T00:00:00.000Z\t" + id + "\tdisk almost full", id, "WARNING"},
		{"python critical", "[CRITICAL]\t2024-01-01T00:00:00.000Z\t" + id + "\tbye", id, "CRITICAL"},
		{"no prefix", "order 42 accepted", "", ""},
		{"unknown level", "2024-01-01T00:00:00.000Z\t" + id + "\tNOTICE\tx", "", ""},
		{"lower-case level", "2024-01-01T00:00:00.000Z\t" + id + "\tinfo\tx", id, "INFO"},
		{"not a request id", "2024-01-01T00:00:00.000Z\tnot-an-id\tINFO\tx", "", ""},
		{"not a time", "yesterday\t" + id + "\tINFO\tx", "", ""},
		{"python without brackets", "INFO\t2024-01-01T00:00:00.000Z\t" + id + "\tx", "", ""},
		{"too few fields", "2024-01-01T00:00:00.000Z\t" + id + "\tINFO", "", ""},
		{"escape in a field", "2024-01-01T00:00:00.000Z\t" + id + "\t\"INFO\"\tx", "", ""},
		{"tabs far in", strings.Repeat("x", 100) + "\t" + id + "\tINFO\tx", "", ""},
	} {
		raw, _ := json.Marshal(tt.line)
		id, level := textPrefix(raw)
		if string(id) != tt.id || level != tt.level {
			t.Errorf("%s: textPrefix(%s) = %q, %q; want %q, %q", tt.name, raw, id, level, tt.id, tt.level)
		}
	}
}

// A text line's prefix gives the event its level and its own request id,
// even when it arrives after the next invocation started.
func TestDecodeTextLineLevelAndRequestID(t *testing.T) {
	const late = "0c1f9a52-7d1e-4b8e-9a64-2f3c5d7e9b10"
	const next = "11111111-2222-3333-4444-555555555555"
	body := `[{"time":"2024-01-01T00:00:01.000Z","type":"platform.start","record":{"requestId":"` + next + `"}},` +
		`{"time":"2024-01-01T00:00:01.001Z","type":"function","record":"2024-01-01T00:00:01.001Z\t` + late + `\tERROR\tcallback failed"},` +
		`{"time":"2024-01-01T00:00:01.002Z","type":"function","record":"plain line"}]`
	var current string
	evs := DecodeBatch([]byte(body), time.Now, &current, func() { t.Error("malformed") })
	if len(evs) != 3 {
		t.Fatalf("decoded %d events, want 3", len(evs))
	}
	if evs[1].RequestID != late || evs[1].Level != "ERROR" {
		t.Errorf("prefixed line: requestId %q level %q, want %q ERROR", evs[1].RequestID, evs[1].Level, late)
	}
	if evs[2].RequestID != next || evs[2].Level != "" {
		t.Errorf("plain line: requestId %q level %q, want the invocation in progress %q and no level", evs[2].RequestID, evs[2].Level, next)
	}
}

// An extension's logfmt line gets its level as function lines do.
func TestExtensionLineLevel(t *testing.T) {
	tests := []struct{ record, want string }{
		{`"level=warning msg=\"buffer full\" ext=o2-extension"`, "WARNING"},
		{`"time=\"2026-01-01T00:00:00Z\" level=error msg=x"`, "ERROR"},
		{`"level=info msg=start"`, "INFO"},
		{`"msg=\"no level=here\" other=1"`, ""},
		{`"mylevel=warning msg=x"`, ""},
		{`"plain text"`, ""},
		{`{"level":"warn"}`, ""},
	}
	for _, tt := range tests {
		body := []byte(`[{"time":"2026-01-01T00:00:00Z","type":"extension","record":` + tt.record + `}]`)
		current := ""
		evs := DecodeBatch(body, nowFunc, &current, func() { t.Fatalf("%s: malformed", tt.record) })
		if len(evs) != 1 || (tt.record[0] == '"' && evs[0].Level != tt.want) {
			t.Errorf("%s: %d events, level %q; want %q", tt.record, len(evs), evs[0].Level, tt.want)
		}
	}
}
