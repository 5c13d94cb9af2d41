package openobserve_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/o2-extension/o2-extension/internal/openobserve"
	"github.com/o2-extension/o2-extension/internal/telemetry"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// recorder is a RoundTripper standing in for OpenObserve where only the
// exact bytes sent matter: it keeps each request's headers and decoded body
// and answers 200 with OpenObserve's reply shape.
type recorder struct {
	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	header http.Header
	wire   []byte // as sent
	body   []byte // after gzip decoding
}

func (rc *recorder) RoundTrip(r *http.Request) (*http.Response, error) {
	var wire []byte
	if r.Body != nil {
		var err error
		wire, err = io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return nil, err
		}
	}
	body := wire
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(wire))
		if err != nil {
			return nil, err
		}
		if body, err = io.ReadAll(zr); err != nil {
			return nil, err
		}
	}
	var arr []json.RawMessage
	_ = json.Unmarshal(body, &arr)
	rc.mu.Lock()
	rc.reqs = append(rc.reqs, recorded{header: r.Header.Clone(), wire: wire, body: body})
	rc.mu.Unlock()
	reply := fmt.Sprintf(`{"code":200,"status":[{"name":"default","successful":%d,"failed":0}]}`, len(arr))
	return &http.Response{
		StatusCode: http.StatusOK,
		Header:     http.Header{"Content-Type": {"application/json"}},
		Body:       io.NopCloser(strings.NewReader(reply)),
		Request:    r,
	}, nil
}

func (rc *recorder) requests() []recorded {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]recorded(nil), rc.reqs...)
}

// staticFields is what main passes as Options.Fields.
var staticFields = map[string]any{
	"function_name":    "orders-api",
	"function_version": "$LATEST",
	"region":           "eu-west-1",
	"memory_size_mb":   512,
	"team":             "payments",
	"type":             "collides with the record's own key: ignored",
}

// goldenEvents covers every record shape: text lines, JSON-format logs,
// platform events, escapes, invalid UTF-8, a lone surrogate and a zero time.
func goldenEvents() []telemetry.Event {
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 123456000, time.UTC)
	ms := time.Millisecond
	return []telemetry.Event{
		{Time: t0, Type: "platform.start", RequestID: "6f7f0961-0000-4000-8000-000000000001",
			Record: json.RawMessage(`{"requestId":"6f7f0961-0000-4000-8000-000000000001","version":"$LATEST"}`)},
		{Time: t0.Add(1 * ms), Type: "function", RequestID: "6f7f0961-0000-4000-8000-000000000001",
			Record: json.RawMessage(`"2026-11-22T10:00:00.124Z\t6f7f0961-0000-4000-8000-000000000001\tINFO\tcharging \"order\" 42\n"`)},
		{Time: t0.Add(2 * ms), Type: "function", RequestID: "6f7f0961-0000-4000-8000-000000000001", Level: "ERROR",
			Record: json.RawMessage(`{"timestamp":"2026-11-22T10:00:00.125Z","level":"ERROR","requestId":"6f7f0961-0000-4000-8000-000000000001","message":"card declined","errorType":"PaymentError","stackTrace":["at charge (index.js:10:5)","at handler (index.js:3:9)"],"amount":12.50}`)},
		{Time: t0.Add(3 * ms), Type: "extension",
			Record: json.RawMessage(`"ünïcødé ✓ 日本語 😀 <tag> & \u0001"`)},
		{Time: t0.Add(4 * ms), Type: "function",
			Record: json.RawMessage("\"invalid \xff\xfe UTF-8\"")},
		{Time: t0.Add(5 * ms), Type: "function",
			Record: json.RawMessage(`{"msg":"lone \ud800 surrogate","pair":"\ud83d\ude00"}`)},
		{Time: t0.Add(6 * ms), Type: "platform.report", RequestID: "6f7f0961-0000-4000-8000-000000000001",
			Record: json.RawMessage(`{"requestId":"6f7f0961-0000-4000-8000-000000000001","metrics":{"durationMs":12.5,"billedDurationMs":13,"memorySizeMB":512,"maxMemoryUsedMB":81},"status":"success"}`)},
		{Type: "function", Record: json.RawMessage(`"no time: OpenObserve stamps it"`)},
	}
}

func TestGoldenBody(t *testing.T) {
	rc := &recorder{}
	c := openobserve.NewClient(openobserve.Options{
		IngestURL:     "http://o2.invalid/api/default/default/_json",
		Authorization: "Basic dGVzdDp0ZXN0",
		Fields:        staticFields,
		Transport:     rc,
		GzipMinBytes:  -1,
	})
	res, rest, err := c.Send(t.Context(), goldenEvents())
	if err != nil || rest != nil {
		t.Fatalf("Send: %v (undelivered %d)", err, len(rest))
	}
	if res.Sent != 8 || res.Successful != 8 || res.Requests != 1 {
		t.Errorf("result = %+v, want 8 sent and stored in 1 request", res)
	}
	reqs := rc.requests()
	if len(reqs) != 1 {
		t.Fatalf("requests = %d, want 1", len(reqs))
	}
	got := reqs[0].body
	if !json.Valid(got) || !utf8.Valid(got) {
		t.Fatalf("body is not valid JSON in UTF-8:\n%s", got)
	}
	if bytes.Contains(got, []byte(`\ud800`)) {
		t.Error("lone surrogate escape passed through")
	}
	// A final newline keeps the file friendly to editors and diffs; the
	// body itself is the line above it, byte for byte.
	golden := filepath.Join("testdata", "body.golden")
	if *update {
		if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(append(got, '\n'), want) {
		t.Errorf("body differs from %s (run go test -update if intended)\ngot:\n%s\nwant:\n%s", golden, got, want)
	}
}

// decodeRecords parses records with numbers kept exact.
func decodeRecords(t *testing.T, recs [][]byte) []map[string]any {
	t.Helper()
	out := make([]map[string]any, len(recs))
	for i, r := range recs {
		if !utf8.Valid(r) {
			t.Fatalf("record %d is not valid UTF-8", i)
		}
		d := json.NewDecoder(bytes.NewReader(r))
		d.UseNumber()
		if err := d.Decode(&out[i]); err != nil {
			t.Fatalf("record %d is not a JSON object: %v\n%s", i, err, r)
		}
	}
	return out
}

// keyOrder returns the top-level keys of a JSON object in written order.
func keyOrder(t *testing.T, rec []byte) []string {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(rec))
	var keys []string
	if _, err := d.Token(); err != nil {
		t.Fatal(err)
	}
	for d.More() {
		k, err := d.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k.(string))
		var skip json.RawMessage
		if err := d.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

func TestAppendRecordsShape(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	fields := map[string]any{"region": "eu-west-1", "function_name": "fn"}
	tests := []struct {
		name     string
		ev       telemetry.Event
		keys     []string
		wantKind string // "string" or "object"
	}{
		{
			name:     "text line",
			ev:       telemetry.Event{Time: t0, Type: "function", Record: json.RawMessage(`"hello\n"`), RequestID: "r1"},
			keys:     []string{"_timestamp", "type", "record", "requestId", "function_name", "region"},
			wantKind: "string",
		},
		{
			name: "JSON-format log",
			ev: telemetry.Event{Time: t0, Type: "function", RequestID: "r1", Level: "WARN",
				Record: json.RawMessage(`{"level":"WARN","message":"slow","requestId":"r1"}`)},
			keys:     []string{"_timestamp", "type", "record", "requestId", "level", "function_name", "region"},
			wantKind: "object",
		},
		{
			name: "text line joined to its trace",
			ev: telemetry.Event{Time: t0, Type: "function", Record: json.RawMessage(`"hello"`), RequestID: "r1",
				TraceID: "5759e988bd862e3fe1be46a994272793", SpanID: "53995c3f42cd8ad8"},
			keys:     []string{"_timestamp", "type", "record", "requestId", "trace_id", "span_id", "function_name", "region"},
			wantKind: "string",
		},
		{
			name:     "platform event without request id",
			ev:       telemetry.Event{Time: t0, Type: "platform.initStart", Record: json.RawMessage(`{"initializationType":"on-demand","phase":"init"}`)},
			keys:     []string{"_timestamp", "type", "record", "function_name", "region"},
			wantKind: "object",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs := openobserve.AppendRecords(nil, []telemetry.Event{tt.ev}, &openobserve.Options{Fields: fields})
			if len(recs) != 1 {
				t.Fatalf("records = %d, want 1", len(recs))
			}
			if got := keyOrder(t, recs[0]); strings.Join(got, ",") != strings.Join(tt.keys, ",") {
				t.Errorf("keys = %v, want %v", got, tt.keys)
			}
			m := decodeRecords(t, recs)[0]
			if m["_timestamp"] != json.Number(strconv.FormatInt(t0.UnixMicro(), 10)) {
				t.Errorf("_timestamp = %v, want %d", m["_timestamp"], t0.UnixMicro())
			}
			switch tt.wantKind {
			case "string":
				if _, ok := m["record"].(string); !ok {
					t.Errorf("record = %T, want a string", m["record"])
				}
			case "object":
				if _, ok := m["record"].(map[string]any); !ok {
					t.Errorf("record = %T, want an object", m["record"])
				}
			}
			// The raw record goes out byte for byte.
			if !bytes.Contains(recs[0], tt.ev.Record) {
				t.Errorf("record %s not embedded as received in %s", tt.ev.Record, recs[0])
			}
		})
	}
}

func TestAppendRecordsAppends(t *testing.T) {
	dst := [][]byte{[]byte(`{"already":"there"}`)}
	evs := []telemetry.Event{
		{Type: "function", Record: json.RawMessage(`"a"`)},
		{Type: "function", Record: json.RawMessage(`"b"`)},
	}
	got := openobserve.AppendRecords(dst, evs, nil)
	if len(got) != 3 || string(got[0]) != `{"already":"there"}` {
		t.Fatalf("got %q", got)
	}
	// Records share a backing array; appending to one must not clobber the
	// next.
	_ = append(got[1], "garbage"...)
	if string(got[2]) != `{"type":"function","record":"b"}` {
		t.Errorf("record 2 = %s", got[2])
	}
}

// bigText is about n bytes mixing 1- to 4-byte runes and escapes, so that
// part boundaries fall inside multibyte runes and escapes if cut by bytes.
func bigText(n int) string {
	const unit = "log line with \"quotes\"\tand tabs, ünïcødé, 日本語 and 😀😀 emoji\n"
	var b strings.Builder
	for b.Len() < n {
		b.WriteString(unit)
		b.WriteString("😀") // shifts the phase of the pattern against any bound
	}
	return b.String()
}

func TestSplitLargeStringRecord(t *testing.T) {
	tests := []struct {
		name string
		text string
		max  int
	}{
		{"1 MB mixed text, default bound", bigText(1 << 20), 0},
		{"only 4-byte runes, bound not a multiple of 4", strings.Repeat("😀", 300_000), 100_001},
		{"only escapes", strings.Repeat("\"\n\x01", 100_000), 65_537},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := json.Marshal(tt.text)
			if err != nil {
				t.Fatal(err)
			}
			ev := telemetry.Event{Time: time.Unix(1_700_000_000, 0), Type: "function", RequestID: "r1", Record: raw}
			o := &openobserve.Options{MaxRecordBytes: tt.max, Fields: map[string]any{"region": "eu-west-1"}}
			limit := tt.max
			if limit == 0 {
				limit = openobserve.DefaultMaxRecordBytes
			}
			recs := openobserve.AppendRecords(nil, []telemetry.Event{ev}, o)
			wantParts := len(raw)/limit + 1
			if len(recs) < wantParts-1 || len(recs) > 2*wantParts {
				t.Fatalf("parts = %d for %d bytes with bound %d", len(recs), len(raw), limit)
			}
			var joined strings.Builder
			for i, m := range decodeRecords(t, recs) {
				if want := fmt.Sprintf("%d/%d", i+1, len(recs)); m["part"] != want {
					t.Errorf("part %d: part = %v, want %s", i, m["part"], want)
				}
				if m["requestId"] != "r1" || m["region"] != "eu-west-1" || m["type"] != "function" {
					t.Errorf("part %d lost the event's fields: %v", i, m)
				}
				s, ok := m["record"].(string)
				if !ok {
					t.Fatalf("part %d: record is %T", i, m["record"])
				}
				if n := valueLen(t, recs[i]); n > limit {
					t.Errorf("part %d: record value is %d bytes, bound %d", i, n, limit)
				}
				joined.WriteString(s)
			}
			if joined.String() != tt.text {
				t.Error("joined parts differ from the original text")
			}
		})
	}
}

// valueLen is the length of the "record" value as written in rec.
func valueLen(t *testing.T, rec []byte) int {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(rec, &m); err != nil {
		t.Fatal(err)
	}
	return len(m["record"])
}

var markerRE = regexp.MustCompile(`…\[truncated (\d+) bytes\]$`)

func TestTruncateOversizeObject(t *testing.T) {
	long := bigText(300 << 10)
	medium := strings.Repeat("stack frame\n", 10_000) // 120 KB
	obj := map[string]any{
		"level":      "ERROR",
		"requestId":  "r1",
		"message":    long,
		"nested":     map[string]any{"stack": medium, "n": 7},
		"list":       []any{"short", strings.Repeat("x", 50_000)},
		"amount":     json.Number("12.50"),
		"short_note": "kept",
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	ev := telemetry.Event{Time: time.Unix(1_700_000_000, 0), Type: "function", Record: raw}
	recs := openobserve.AppendRecords(nil, []telemetry.Event{ev}, nil)
	if len(recs) != 1 {
		t.Fatalf("records = %d, want 1", len(recs))
	}
	if n := valueLen(t, recs[0]); n > openobserve.DefaultMaxRecordBytes {
		t.Errorf("record value = %d bytes, bound %d", n, openobserve.DefaultMaxRecordBytes)
	}
	m := decodeRecords(t, recs)[0]
	if m["truncated"] != true {
		t.Errorf("truncated = %v, want true", m["truncated"])
	}
	rec, ok := m["record"].(map[string]any)
	if !ok {
		t.Fatalf("record = %T, want an object", m["record"])
	}
	for k, want := range map[string]any{"level": "ERROR", "requestId": "r1", "amount": json.Number("12.50"), "short_note": "kept"} {
		if rec[k] != want {
			t.Errorf("record.%s = %v, want %v (small fields survive)", k, rec[k], want)
		}
	}
	msg, _ := rec["message"].(string)
	sm := markerRE.FindStringSubmatch(msg)
	if sm == nil {
		t.Fatalf("message does not end with the marker: ...%q", msg[max(0, len(msg)-60):])
	}
	kept := strings.TrimSuffix(msg, sm[0])
	if n, _ := strconv.Atoi(sm[1]); n != len(long)-len(kept) || !strings.HasPrefix(long, kept) {
		t.Errorf("marker says %s bytes cut; kept %d of %d", sm[1], len(kept), len(long))
	}
	if !utf8.ValidString(msg) {
		t.Error("truncated message is not valid UTF-8")
	}
}

func TestTruncateFallsBackToText(t *testing.T) {
	// Thousands of small fields: cutting strings cannot make this fit.
	obj := make(map[string]int, 2000)
	for i := range 2000 {
		obj[fmt.Sprintf("field_%04d", i)] = i
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	const limit = 4096
	ev := telemetry.Event{Type: "function", Record: raw}
	recs := openobserve.AppendRecords(nil, []telemetry.Event{ev}, &openobserve.Options{MaxRecordBytes: limit})
	if len(recs) != 1 {
		t.Fatalf("records = %d, want 1", len(recs))
	}
	if n := valueLen(t, recs[0]); n > limit {
		t.Errorf("record value = %d bytes, bound %d", n, limit)
	}
	m := decodeRecords(t, recs)[0]
	s, ok := m["record"].(string)
	if !ok || m["truncated"] != true {
		t.Fatalf("record = %T, truncated = %v; want a string and true", m["record"], m["truncated"])
	}
	if !strings.HasPrefix(s, `{"field_0000":0,`) || !markerRE.MatchString(s) {
		t.Errorf("record = %.60q...%q, want the object's JSON text with the marker", s, s[max(0, len(s)-30):])
	}
}

func TestInvalidTextIsRepaired(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want any
	}{
		{"invalid UTF-8 in a string", "\"a\xffb\"", "a\uFFFDb"},
		{"invalid UTF-8 in an object", "{\"m\":\"a\xffb\"}", map[string]any{"m": "a\uFFFDb"}},
		{"lone surrogate", `"x\udc00y"`, "x\uFFFDy"},
		{"valid pair kept", `{"e":"\ud83d\ude00"}`, map[string]any{"e": "😀"}},
		{"empty record", ``, ""},
		{"not JSON at all", `oops {`, "oops {"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs := openobserve.AppendRecords(nil, []telemetry.Event{{Type: "function", Record: json.RawMessage(tt.raw)}}, nil)
			m := decodeRecords(t, recs)[0]
			if fmt.Sprint(m["record"]) != fmt.Sprint(tt.want) {
				t.Errorf("record = %#v, want %#v", m["record"], tt.want)
			}
		})
	}
}
