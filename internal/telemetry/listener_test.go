package telemetry

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"
)

// harness is a Listener on loopback with a client and a channel that sees
// every decoded event.
type harness struct {
	l      *Listener
	buf    *Buffer
	events chan Event
	client *http.Client
	url    string
}

// listen starts a listener on 127.0.0.1 and stops it when the test ends.
// Every decoded event is copied to h.events, which is large enough that the
// listener never waits on it in these tests.
func listen(t *testing.T, o ListenerOptions) *harness {
	t.Helper()
	h := &harness{buf: NewBuffer(1 << 20), events: make(chan Event, 4096)}
	o.Addr = "127.0.0.1:0"
	if o.Buffer == nil {
		o.Buffer = h.buf
	}
	if o.Now == nil {
		o.Now = nowFunc
	}
	if o.OnEvent == nil {
		o.OnEvent = func(e *Event) { h.events <- *e }
	}
	l, err := Listen(o)
	if err != nil {
		t.Fatal(err)
	}
	h.l = l
	h.url = "http://" + l.Addr().String()
	tr := &http.Transport{}
	h.client = &http.Client{Transport: tr}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		if err := l.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h
}

// post sends body and returns the status code.
func (h *harness) post(t *testing.T, body []byte) int {
	t.Helper()
	return h.do(t, http.MethodPost, body)
}

func (h *harness) do(t *testing.T, method string, body []byte) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, h.url+"/telemetry", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatal(err)
	}
	if method != http.MethodPost && resp.StatusCode == http.StatusMethodNotAllowed {
		if got := resp.Header.Get("Allow"); got != http.MethodPost {
			t.Errorf("%s: Allow = %q, want POST", method, got)
		}
	}
	return resp.StatusCode
}

// next waits for n events from the listener. It blocks until they arrive:
// a lost event fails the test through go test's -timeout, never passes it.
func (h *harness) next(n int) []Event {
	out := make([]Event, 0, n)
	for range n {
		out = append(out, <-h.events)
	}
	return out
}

func (h *harness) close(t *testing.T) {
	t.Helper()
	if err := h.l.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// noMoreEvents checks that nothing beyond what was expected was decoded. Call
// it after Close, when the decoder has finished.
func (h *harness) noMoreEvents(t *testing.T) {
	t.Helper()
	select {
	case e := <-h.events:
		t.Errorf("unexpected extra event %q %s", e.Type, e.Record)
	default:
	}
}

func sameEvents(t *testing.T, what string, got, want []Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d events %v, want %d %v", what, len(got), types(got), len(want), types(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Type != w.Type || string(g.Record) != string(w.Record) || g.RequestID != w.RequestID || g.Level != w.Level || !g.Time.Equal(w.Time) {
			t.Errorf("%s: event %d = %+v, want %+v", what, i, g, w)
		}
	}
}

func TestListenerDeliversInOrder(t *testing.T) {
	h := listen(t, ListenerOptions{})
	example := exampleBatch(t)
	second := []byte(`[{"time":"2025-06-01T08:00:00.400Z","type":"function","record":"text line\n"},` +
		`{"time":"2025-06-01T08:00:00.401Z","type":"extension","record":{"level":"DEBUG","message":"ext"}}]`)
	for _, body := range [][]byte{example, second} {
		if code := h.post(t, body); code != http.StatusOK {
			t.Fatalf("POST answered %d, want 200", code)
		}
	}
	want, _, cur := decode(example)
	want = append(want, DecodeBatch(second, nowFunc, &cur, func() { t.Error("second batch malformed") })...)
	if len(want) != 11 {
		t.Fatalf("test setup: decoded %d events, want 11", len(want))
	}
	if want[9].RequestID != exampleRequestID || want[10].RequestID != exampleRequestID {
		t.Fatalf("test setup: request ids of the second batch = %q, %q", want[9].RequestID, want[10].RequestID)
	}

	sameEvents(t, "OnEvent", h.next(len(want)), want)
	// OnEvent runs after its batch is buffered, so the buffer is complete.
	sameEvents(t, "Buffer", h.buf.Take(100, 1<<30), want)
	if got, want := h.l.Stats(), (ListenerStats{Requests: 2, Events: 11}); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
	h.close(t)
	h.noMoreEvents(t)
}

func TestListenerMethods(t *testing.T) {
	h := listen(t, ListenerOptions{})
	for _, method := range []string{http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodHead, http.MethodPatch} {
		t.Run(method, func(t *testing.T) {
			if code := h.do(t, method, exampleBatch(t)); code != http.StatusMethodNotAllowed {
				t.Errorf("%s answered %d, want 405", method, code)
			}
		})
	}
	h.close(t)
	if got := h.l.Stats(); got != (ListenerStats{}) {
		t.Errorf("Stats = %+v, want zero", got)
	}
	if n := h.buf.Len(); n != 0 {
		t.Errorf("%d events buffered from non-POST requests", n)
	}
}

func TestListenerMaxBody(t *testing.T) {
	// Three events: body is "[" + e1 + "," + e2 + "," + e3 + "]".
	e1 := `{"time":"2025-06-01T08:00:00.001Z","type":"function","record":"first"}`
	e2 := `{"time":"2025-06-01T08:00:00.002Z","type":"function","record":"second"}`
	e3 := `{"time":"2025-06-01T08:00:00.003Z","type":"function","record":"third"}`
	body := "[" + e1 + "," + e2 + "," + e3 + "]"
	huge := "[" + e1 + "," + e2 + "," + strings.Repeat(e3+",", 2000) + e3 + "]"
	tests := []struct {
		name          string
		max           int64
		body          string
		want          []string // records
		wantTruncated uint64
		wantMalformed uint64
	}{
		{name: "under the cap", max: int64(len(body)) + 1, body: body, want: []string{`"first"`, `"second"`, `"third"`}},
		{name: "exactly the cap", max: int64(len(body)), body: body, want: []string{`"first"`, `"second"`, `"third"`}},
		// Only the closing bracket is lost: every event is complete.
		{name: "one byte over", max: int64(len(body)) - 1, body: body, want: []string{`"first"`, `"second"`, `"third"`}, wantTruncated: 1},
		{name: "cut inside the second event", max: int64(len("["+e1+",") + 10), body: body, want: []string{`"first"`}, wantTruncated: 1, wantMalformed: 1},
		{name: "far over the cap", max: int64(len("["+e1+","+e2+",") + 5), body: huge, want: []string{`"first"`, `"second"`}, wantTruncated: 1, wantMalformed: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := listen(t, ListenerOptions{MaxBody: tt.max})
			if code := h.post(t, []byte(tt.body)); code != http.StatusOK {
				t.Fatalf("POST answered %d, want 200", code)
			}
			h.close(t) // waits for the decoder
			var got []string
			for _, e := range h.buf.Take(1<<20, 1<<30) {
				got = append(got, string(e.Record))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("buffered records = %q, want %q", got, tt.want)
			}
			st := h.l.Stats()
			if st.Requests != 1 || st.Events != uint64(len(tt.want)) || st.Truncated != tt.wantTruncated || st.Malformed != tt.wantMalformed {
				t.Errorf("Stats = %+v, want 1 request, %d events, %d truncated, %d malformed", st, len(tt.want), tt.wantTruncated, tt.wantMalformed)
			}
		})
	}
}

func TestListenerDefaultMaxBody(t *testing.T) {
	// The largest body the listener takes whole gets in, even with a cap
	// on held bytes below it (raised to MaxBody).
	for _, o := range []ListenerOptions{{}, {MaxHeld: 1}} {
		h := listen(t, o)
		if code := h.post(t, paddedBody("largest", DefaultMaxBody)); code != http.StatusOK {
			t.Fatalf("MaxHeld %d: POST of DefaultMaxBody bytes answered %d, want 200", o.MaxHeld, code)
		}
		h.next(1)
		if st := h.l.Stats(); st.Truncated != 0 || st.Events != 1 || st.Refused != 0 {
			t.Errorf("MaxHeld %d: Stats = %+v, want 1 event, nothing truncated or refused", o.MaxHeld, st)
		}
	}

	h := listen(t, ListenerOptions{})
	// Lambda sends up to 2*maxBytes (2 MiB) plus metadata per POST; all of
	// it must get through under the default cap.
	line := `{"time":"2025-06-01T08:00:00.001Z","type":"function","record":"` + strings.Repeat("x", 1000) + `"}`
	n := (2<<20)/len(line) + 10
	body := "[" + strings.Repeat(line+",", n-1) + line + "]"
	if code := h.post(t, []byte(body)); code != http.StatusOK {
		t.Fatalf("POST answered %d, want 200", code)
	}
	h.next(n)
	if st := h.l.Stats(); st.Truncated != 0 || st.Events != uint64(n) || st.Malformed != 0 {
		t.Errorf("Stats = %+v, want %d events, nothing truncated or malformed", st, n)
	}
}

func TestListenerLambdaDrops(t *testing.T) {
	drop := func(records, bytes string) string {
		return `{"time":"2025-06-01T08:00:00Z","type":"platform.logsDropped","record":{"reason":"Consumer seems to have fallen behind as it has not acknowledged receipt of logs.","droppedRecords":` + records + `,"droppedBytes":` + bytes + `}}`
	}
	h := listen(t, ListenerOptions{})
	bodies := []string{
		"[" + drop("3", "1024") + "," + ok1 + "]",
		"[" + drop("2", "10") + "]",
		// Nonsense counts are not added.
		"[" + drop("-4", "-100") + "]",
		// Records of other types are not counted even with the same keys.
		`[{"time":"2025-06-01T08:00:00Z","type":"function","record":{"droppedRecords":100,"droppedBytes":100}}]`,
	}
	for _, b := range bodies {
		if code := h.post(t, []byte(b)); code != http.StatusOK {
			t.Fatalf("POST answered %d", code)
		}
	}
	evs := h.next(5)
	if evs[4].Type != "function" {
		t.Fatalf("last event %q, want function", evs[4].Type)
	}
	// The counters are updated before OnEvent sees the event.
	st := h.l.Stats()
	if st.LambdaDroppedRecords != 5 || st.LambdaDroppedBytes != 1034 {
		t.Errorf("Lambda drops = %d records, %d bytes; want 5, 1034", st.LambdaDroppedRecords, st.LambdaDroppedBytes)
	}
	if st.Events != 5 || st.Requests != 4 {
		t.Errorf("Stats = %+v, want 4 requests, 5 events", st)
	}
}

func TestListenerCarriesInvocationAcrossPosts(t *testing.T) {
	h := listen(t, ListenerOptions{})
	posts := []string{
		`[{"time":"2025-06-01T08:00:00.315Z","type":"platform.start","record":{"requestId":"req-A"}}]`,
		`[{"time":"2025-06-01T08:00:00.316Z","type":"function","record":"hello"}]`,
	}
	for _, p := range posts {
		if code := h.post(t, []byte(p)); code != http.StatusOK {
			t.Fatalf("POST answered %d", code)
		}
	}
	if got := ids(h.next(2)); !slices.Equal(got, []string{"req-A", "req-A"}) {
		t.Errorf("request ids = %q, want req-A twice", got)
	}
}

func TestListenerMalformedCounted(t *testing.T) {
	h := listen(t, ListenerOptions{})
	posts := []string{
		"",
		"not json",
		`[1,` + ok1 + `,"x"]`,
		`[{"time":"soon","type":"function","record":"late"}]`,
		// A second array: its events are not taken, and it is counted.
		"[" + ok3 + "][" + ok2 + "]",
	}
	for _, p := range posts {
		if code := h.post(t, []byte(p)); code != http.StatusOK {
			t.Fatalf("POST %q answered %d, want 200", p, code)
		}
	}
	evs := h.next(3)
	if string(evs[0].Record) != `"one"` || string(evs[1].Record) != `"late"` || !evs[1].Time.Equal(fixedNow) || string(evs[2].Record) != `"three"` {
		t.Errorf("events = %+v, want \"one\", \"late\" at the listener's Now, then \"three\"", evs)
	}
	h.close(t)
	h.noMoreEvents(t)
	if got, want := h.l.Stats(), (ListenerStats{Requests: 5, Events: 3, Malformed: 5}); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}

// TestListenerAnswersBeforeDecodingAndCloseDrains holds the decoder inside
// OnEvent: POSTs must still be answered at once, and Close, once started,
// must decode every body it had accepted.
func TestListenerAnswersBeforeDecodingAndCloseDrains(t *testing.T) {
	blocked, release := make(chan struct{}), make(chan struct{})
	var seen []string // written by the decoder only, read after Close
	h := listen(t, ListenerOptions{OnEvent: func(e *Event) {
		if len(seen) == 0 {
			close(blocked)
			<-release
		}
		seen = append(seen, string(e.Record))
	}})
	post := func(record string) {
		t.Helper()
		body := `[{"time":"2025-06-01T08:00:00Z","type":"function","record":"` + record + `"}]`
		if code := h.post(t, []byte(body)); code != http.StatusOK {
			t.Fatalf("POST answered %d, want 200", code)
		}
	}
	post("r0")
	<-blocked // the decoder is stuck in OnEvent
	var want []string
	want = append(want, `"r0"`)
	for i := 1; i <= 5; i++ {
		r := "r" + strconv.Itoa(i)
		post(r) // answered although nothing is being decoded
		want = append(want, `"`+r+`"`)
	}
	closed := make(chan error, 1)
	go func() { closed <- h.l.Close(context.Background()) }()
	<-h.l.done // Close has stopped the server and told the decoder to finish
	close(release)
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !slices.Equal(seen, want) {
		t.Errorf("decoded %q, want %q", seen, want)
	}
	if got := ids(h.buf.Take(100, 1<<30)); len(got) != len(want) {
		t.Errorf("buffered %d events, want %d", len(got), len(want))
	}
	// A second Close is harmless and returns at once.
	if err := h.l.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// The port is released.
	if _, err := h.client.Post(h.url, "application/json", strings.NewReader("[]")); err == nil {
		t.Errorf("POST after Close succeeded")
	}
}

// TestListenerServeHTTP calls the handler directly for what a loopback
// client cannot produce: a body that fails while being read. A body that is
// not read to its end keeps nothing (Lambda sends it again) and is answered
// 503.
func TestListenerServeHTTP(t *testing.T) {
	const max = 256
	h := listen(t, ListenerOptions{MaxBody: max})
	reset := func() io.Reader { return iotest.ErrReader(errors.New("connection reset")) }
	tests := []struct {
		name     string
		body     io.Reader
		size     int64 // declared length; 0: as httptest.NewRequest sets it
		wantCode int
		want     []string
	}{
		{name: "read error before anything", body: reset(), wantCode: http.StatusServiceUnavailable},
		{name: "read error after an event", body: io.MultiReader(strings.NewReader("["+ok1+","), reset()), wantCode: http.StatusServiceUnavailable},
		{name: "read error after an event, length declared", body: io.MultiReader(strings.NewReader("["+ok1+","), reset()), size: 1000, wantCode: http.StatusServiceUnavailable},
		{name: "shorter than declared", body: strings.NewReader("[" + ok1 + "," + ok3), size: 1000, wantCode: http.StatusServiceUnavailable},
		{name: "read error after the cap", body: io.MultiReader(strings.NewReader("["+ok1+","+strings.Repeat(" ", max)), reset()), wantCode: http.StatusServiceUnavailable},
		{name: "read error after the cap, length declared", body: io.MultiReader(strings.NewReader("["+ok1+","+strings.Repeat(" ", max)), reset()), size: 2 * max, wantCode: http.StatusServiceUnavailable},
		{name: "whole body", body: strings.NewReader("[" + ok3 + "]"), wantCode: http.StatusOK, want: []string{`"three"`}},
		{name: "whole body, length unknown", body: io.MultiReader(strings.NewReader("["+ok1+","), strings.NewReader(ok3+"]")), wantCode: http.StatusOK, want: []string{`"one"`, `"three"`}},
		{name: "whole body past the cap", body: strings.NewReader("[" + ok1 + "," + strings.Repeat(" ", max) + ok3 + "]"), wantCode: http.StatusOK, want: []string{`"one"`}},
	}
	var incomplete uint64
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/", tt.body)
			if tt.size != 0 {
				req.ContentLength = tt.size
			}
			rec := httptest.NewRecorder()
			h.l.ServeHTTP(rec, req)
			if rec.Code != tt.wantCode {
				t.Fatalf("code = %d, want %d", rec.Code, tt.wantCode)
			}
			if rec.Code != http.StatusOK {
				incomplete++
			}
			var got []string
			for _, e := range h.next(len(tt.want)) {
				got = append(got, string(e.Record))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("decoded %q, want %q", got, tt.want)
			}
		})
	}
	h.close(t)
	h.noMoreEvents(t)
	if st := h.l.Stats(); st.Incomplete != incomplete || st.Requests != uint64(len(tests)) {
		t.Errorf("Stats = %+v, want %d requests, %d incomplete", st, len(tests), incomplete)
	}
}

// TestListenerCutBodyKeepsNothing cuts POSTs off mid-body on a real
// connection, at many points, with the length declared and chunked: none
// keeps any event, each is answered 503, and a whole POST afterwards is
// taken on its own. (Before the fix the events before the cut were kept and
// answered 200, so Lambda's retry stored them twice.)
func TestListenerCutBodyKeepsNothing(t *testing.T) {
	h := listen(t, ListenerOptions{})
	body := "[" + ok1 + "," + ok2 + "," + ok3 + "]"
	send := func(t *testing.T, head, payload string) *http.Response {
		t.Helper()
		c, err := net.Dial("tcp", h.l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// A lost reply fails the test instead of hanging it.
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.WriteString(c, "POST /telemetry HTTP/1.1\r\nHost: sandbox\r\nContent-Type: application/json\r\n"+head+"\r\n"+payload); err != nil {
			t.Fatal(err)
		}
		// The sender stops writing; the listener sees the body end early.
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("reading the reply: %v", err)
		}
		resp.Body.Close()
		return resp
	}
	cuts := 0
	for cut := 0; cut < len(body); cut += len(body)/40 + 1 {
		cuts++
		resp := send(t, "Content-Length: "+strconv.Itoa(len(body))+"\r\n", body[:cut])
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("cut at %d of %d bytes: answered %d, want 503", cut, len(body), resp.StatusCode)
		}
	}
	for _, cut := range []int{len(ok1) + 1, len(body) - 1} {
		cuts++
		// Chunked: the chunk says the whole body, but only a part follows.
		resp := send(t, "Transfer-Encoding: chunked\r\n", strconv.FormatInt(int64(len(body)), 16)+"\r\n"+body[:cut])
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("chunked, cut at %d: answered %d, want 503", cut, resp.StatusCode)
		}
	}
	// The same body whole, as the retry would send it: taken once.
	if code := h.post(t, []byte(body)); code != http.StatusOK {
		t.Fatalf("whole POST answered %d, want 200", code)
	}
	h.close(t)
	var got []string
	for _, e := range h.buf.Take(100, 1<<30) {
		got = append(got, string(e.Record))
	}
	if want := []string{`"one"`, `{"level":"INFO","message":"two"}`, `"three"`}; !slices.Equal(got, want) {
		t.Errorf("buffered %q, want %q once", got, want)
	}
	if st := h.l.Stats(); st.Incomplete != uint64(cuts) || st.Events != 3 || st.Malformed != 0 {
		t.Errorf("Stats = %+v, want %d incomplete, 3 events, 0 malformed", st, cuts)
	}
}

func TestListenBindError(t *testing.T) {
	h := listen(t, ListenerOptions{})
	l, err := Listen(ListenerOptions{Addr: h.l.Addr().String(), Buffer: NewBuffer(1024)})
	if err == nil {
		l.Close(context.Background())
		t.Fatalf("Listen on a port in use succeeded")
	}
	if !strings.Contains(err.Error(), "telemetry listener") {
		t.Errorf("error %q does not say what failed", err)
	}
}

// Sync returns only once every body accepted before it is decoded and
// buffered, even while the decoder is behind (SHUTDOWN relies on it before
// the final flush).
func TestListenerSync(t *testing.T) {
	gate := make(chan struct{})
	var once sync.Once
	h := listen(t, ListenerOptions{OnEvent: func(*Event) { once.Do(func() { <-gate }) }})
	one := []byte(`[{"time":"2025-06-01T08:00:00.100Z","type":"function","record":"one"}]`)
	two := []byte(`[{"time":"2025-06-01T08:00:00.200Z","type":"function","record":"two"},{"time":"2025-06-01T08:00:00.201Z","type":"function","record":"three"}]`)
	for _, b := range [][]byte{one, two} {
		if code := h.post(t, b); code != http.StatusOK {
			t.Fatalf("POST answered %d", code)
		}
	}
	synced := make(chan bool, 1)
	go func() { synced <- h.l.Sync(t.Context()) }()
	close(gate) // the decoder was held on the first event
	if !<-synced {
		t.Fatal("Sync returned false")
	}
	if n := h.buf.Len(); n != 3 {
		t.Errorf("buffered %d events after Sync, want all 3", n)
	}
}
