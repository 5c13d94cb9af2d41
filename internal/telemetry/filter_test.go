package telemetry

import (
	"net/http"
	"strings"
	"testing"
)

func TestFilterKeep(t *testing.T) {
	ev := func(typ, level string) *Event { return &Event{Type: typ, Level: level, Record: []byte(`"x"`)} }
	tests := []struct {
		name string
		f    Filter
		ev   *Event
		keep bool
	}{
		{"zero filter keeps all", Filter{}, ev("platform.start", ""), true},
		{"exact type", Filter{ExcludeTypes: []string{"platform.start"}}, ev("platform.start", ""), false},
		{"exact type is not a prefix", Filter{ExcludeTypes: []string{"platform.start"}}, ev("platform.startX", ""), true},
		{"other type", Filter{ExcludeTypes: []string{"platform.start"}}, ev("platform.report", ""), true},
		{"prefix", Filter{ExcludeTypes: []string{"platform.*"}}, ev("platform.runtimeDone", ""), false},
		{"prefix spares others", Filter{ExcludeTypes: []string{"platform.*"}}, ev("function", "INFO"), true},
		{"star excludes all", Filter{ExcludeTypes: []string{"*"}}, ev("function", ""), false},
		{"below min level", Filter{MinLevel: "WARN"}, ev("function", "INFO"), false},
		{"at min level", Filter{MinLevel: "WARN"}, ev("function", "WARN"), true},
		{"WARNING is WARN", Filter{MinLevel: "WARN"}, ev("function", "WARNING"), true},
		{"above min level, any case", Filter{MinLevel: "WARN"}, ev("function", "error"), true},
		{"CRITICAL is FATAL", Filter{MinLevel: "FATAL"}, ev("function", "CRITICAL"), true},
		{"extension records too", Filter{MinLevel: "ERROR"}, ev("extension", "DEBUG"), false},
		{"no level is kept", Filter{MinLevel: "FATAL"}, ev("function", ""), true},
		{"unknown level is kept", Filter{MinLevel: "FATAL"}, ev("function", "NOTICE"), true},
		{"platform events have no log level", Filter{MinLevel: "FATAL"}, ev("platform.report", "INFO"), true},
		{"type and level together", Filter{ExcludeTypes: []string{"extension"}, MinLevel: "ERROR"}, ev("function", "ERROR"), true},
	}
	for _, tt := range tests {
		if got := tt.f.Keep(tt.ev); got != tt.keep {
			t.Errorf("%s: Keep(%s %s) = %v, want %v", tt.name, tt.ev.Type, tt.ev.Level, got, tt.keep)
		}
	}
	if (Filter{MinLevel: "TRACE"}).Active() || (Filter{}).Active() {
		t.Error("a filter that leaves nothing out reports itself active")
	}
}

// Filtered events are not buffered, but OnEvent still sees every event (the
// flush modes need platform.runtimeDone), and they are counted.
func TestListenerFilter(t *testing.T) {
	h := listen(t, ListenerOptions{Filter: Filter{ExcludeTypes: []string{"platform.runtimeDone"}, MinLevel: "WARN"}})
	body := []byte(`[{"time":"2025-06-01T08:00:00.100Z","type":"platform.start","record":{"requestId":"` + exampleRequestID + `"}},` +
		`{"time":"2025-06-01T08:00:00.101Z","type":"function","record":{"level":"INFO","message":"chatty"}},` +
		`{"time":"2025-06-01T08:00:00.102Z","type":"function","record":{"level":"ERROR","message":"boom"}},` +
		`{"time":"2025-06-01T08:00:00.103Z","type":"function","record":"plain text"},` +
		`{"time":"2025-06-01T08:00:00.104Z","type":"platform.runtimeDone","record":{"requestId":"` + exampleRequestID + `","status":"success"}}]`)
	if code := h.post(t, body); code != http.StatusOK {
		t.Fatalf("POST answered %d, want 200", code)
	}
	if got := types(h.next(5)); len(got) != 5 || got[4] != "platform.runtimeDone" {
		t.Fatalf("OnEvent saw %v, want all 5 events", got)
	}
	var kept []string
	for _, e := range h.buf.Take(100, 1<<30) {
		kept = append(kept, e.Type+" "+string(e.Record))
	}
	want := []string{
		`platform.start {"requestId":"` + exampleRequestID + `"}`,
		`function {"level":"ERROR","message":"boom"}`,
		`function "plain text"`,
	}
	if len(kept) != len(want) {
		t.Fatalf("buffered %q, want %q", kept, want)
	}
	for i := range want {
		if kept[i] != want[i] {
			t.Errorf("buffered[%d] = %s, want %s", i, kept[i], want[i])
		}
	}
	if st := h.l.Stats(); st.Events != 5 || st.Filtered != 2 {
		t.Errorf("Stats: events %d, filtered %d; want 5 and 2", st.Events, st.Filtered)
	}
}

// Annotate sees every event, excluded ones too, in order and before it is
// buffered: what it sets is in the buffered copy and in what OnEvent sees;
// it filters nothing by itself.
func TestListenerAnnotate(t *testing.T) {
	var seen []string
	annotate := func(e *Event) {
		seen = append(seen, e.Type)
		e.TraceID, e.SpanID = "t-"+e.Type, "s"
	}
	h := listen(t, ListenerOptions{Filter: Filter{ExcludeTypes: []string{"platform.start"}, Annotate: annotate}})
	body := []byte(`[{"time":"2025-06-01T08:00:00.100Z","type":"platform.start","record":{"requestId":"` + exampleRequestID + `"}},` +
		`{"time":"2025-06-01T08:00:00.101Z","type":"function","record":"plain text"}]`)
	if code := h.post(t, body); code != http.StatusOK {
		t.Fatalf("POST answered %d", code)
	}
	for _, e := range h.next(2) {
		if e.TraceID != "t-"+e.Type {
			t.Errorf("OnEvent saw %s with trace %q", e.Type, e.TraceID)
		}
	}
	buffered := h.buf.Take(100, 1<<30)
	if len(buffered) != 1 || buffered[0].TraceID != "t-function" || buffered[0].SpanID != "s" {
		t.Errorf("buffered %+v", buffered)
	}
	if strings.Join(seen, ",") != "platform.start,function" {
		t.Errorf("Annotate saw %v", seen)
	}
	if !(Filter{Annotate: annotate}).Active() || !(Filter{Annotate: annotate}).Keep(&Event{Type: "x"}) {
		t.Error("an annotating filter must be active and keep everything")
	}
}
