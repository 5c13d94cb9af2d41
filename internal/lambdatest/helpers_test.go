package lambdatest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// testext is the path of the compiled test extension (TestMain).
var testext string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "lambdatest-ext")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// go test puts its own toolchain first in PATH.
	testext = filepath.Join(dir, "testext")
	cmd := exec.Command("go", "build", "-o", testext, "./internal/testext")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build test extension:", err)
		return 1
	}
	return m.Run()
}

// startInProcess starts an in-process platform closed by the test.
func startInProcess(t *testing.T, o Options) *Platform {
	t.Helper()
	p, err := Start(t.Context(), o)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// client is an in-process extension talking to the platform over HTTP.
type client struct {
	t    *testing.T
	base string
	hc   *http.Client
	id   string
	name string
}

// reply is one API answer.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// errorType returns the errorType of a JSON error body.
func (r reply) errorType() string {
	var e apiError
	_ = json.Unmarshal(r.body, &e)
	return e.ErrorType
}

func newClient(t *testing.T, p *Platform) *client {
	return &client{t: t, base: "http://" + p.URL(), hc: &http.Client{}}
}

func (c *client) call(ctx context.Context, method, path string, hdr map[string]string, body []byte) (reply, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return reply{}, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: b}, err
}

// mustCall is call failing the test on a transport error.
func (c *client) mustCall(method, path string, hdr map[string]string, body []byte) reply {
	c.t.Helper()
	r, err := c.call(c.t.Context(), method, path, hdr, body)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// register registers the client under name for events.
func (c *client) register(name string, events ...string) reply {
	c.t.Helper()
	body, _ := json.Marshal(map[string]any{"events": events})
	r := c.mustCall(http.MethodPost, "/2020-01-01/extension/register", map[string]string{hdrName: name}, body)
	if r.status == http.StatusOK {
		c.id, c.name = r.header.Get(hdrIdentifier), name
	}
	return r
}

// mustRegister registers and fails the test unless it succeeded.
func mustRegister(t *testing.T, p *Platform, name string, events ...string) *client {
	t.Helper()
	c := newClient(t, p)
	if r := c.register(name, events...); r.status != http.StatusOK {
		t.Fatalf("register %s: %d %s", name, r.status, r.body)
	}
	return c
}

// nextEvent is an Extensions API event.
type nextEvent struct {
	EventType          string `json:"eventType"`
	DeadlineMs         int64  `json:"deadlineMs"`
	RequestID          string `json:"requestId"`
	InvokedFunctionArn string `json:"invokedFunctionArn"`
	ShutdownReason     string `json:"shutdownReason"`
	Tracing            *struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	} `json:"tracing"`
	header http.Header
}

// next calls /next and decodes the event.
func (c *client) next(ctx context.Context) (nextEvent, error) {
	r, err := c.call(ctx, http.MethodGet, "/2020-01-01/extension/event/next", map[string]string{hdrIdentifier: c.id}, nil)
	if err != nil {
		return nextEvent{}, err
	}
	if r.status != http.StatusOK {
		return nextEvent{}, fmt.Errorf("next: %d %s", r.status, r.body)
	}
	var ev nextEvent
	if err := json.Unmarshal(r.body, &ev); err != nil {
		return nextEvent{}, err
	}
	ev.header = r.header
	return ev, nil
}

// subscribe sends a subscription request.
func (c *client) subscribe(req map[string]any) reply {
	c.t.Helper()
	body, _ := json.Marshal(req)
	return c.mustCall(http.MethodPut, "/2022-07-01/telemetry",
		map[string]string{hdrIdentifier: c.id, "Content-Type": "application/json"}, body)
}

// subRequest builds a subscription request to listener l.
func subRequest(schema string, l *listener, buffering map[string]int, types ...string) map[string]any {
	if len(types) == 0 {
		types = []string{"platform", "function", "extension"}
	}
	req := map[string]any{
		"schemaVersion": schema,
		"types":         types,
		"destination":   map[string]string{"protocol": "HTTP", "URI": l.uri()},
	}
	if buffering != nil {
		req["buffering"] = buffering
	}
	return req
}

// listener is an in-process telemetry listener recording every POST.
type listener struct {
	t       *testing.T
	srv     *httptest.Server
	frozen  func() bool // the platform's Frozen, checked at each receipt
	respond func(n int, body []byte) int

	mu      sync.Mutex
	changed chan struct{}
	posts   []post
}

// post is one delivery as the listener saw it.
type post struct {
	status int
	frozen bool
	body   []byte
	events []Event
}

func newListener(t *testing.T, p *Platform, respond func(n int, body []byte) int) *listener {
	l := &listener{t: t, frozen: p.Frozen, respond: respond, changed: make(chan struct{})}
	l.srv = httptest.NewServer(http.HandlerFunc(l.serve))
	t.Cleanup(l.srv.Close)
	return l
}

func (l *listener) uri() string {
	return "http://sandbox.localdomain:" + l.srv.URL[strings.LastIndex(l.srv.URL, ":")+1:] + "/telemetry"
}

func (l *listener) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	evs, err := DecodeBatch(body)
	if err != nil {
		l.t.Errorf("listener: %v", err)
	}
	frozen := l.frozen()
	l.mu.Lock()
	n := len(l.posts)
	l.mu.Unlock()
	status := http.StatusOK
	if l.respond != nil {
		status = l.respond(n, body)
	}
	l.mu.Lock()
	l.posts = append(l.posts, post{status: status, frozen: frozen, body: body, events: evs})
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
	w.WriteHeader(status)
}

// delivered returns the events of the successful POSTs.
func (l *listener) delivered() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var evs []Event
	for _, p := range l.posts {
		if p.status == http.StatusOK {
			evs = append(evs, p.events...)
		}
	}
	return evs
}

func (l *listener) snapshot() []post {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]post(nil), l.posts...)
}

// waitFor waits until cond holds on the delivered events, or the test's
// context ends (the test then fails).
func (l *listener) waitFor(ctx context.Context, what string, cond func([]Event) bool) {
	l.t.Helper()
	// A bound so that a broken platform fails the test quickly instead of
	// hanging until the test binary's timeout.
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for {
		// Take the channel before looking: a POST landing in between then
		// still wakes us.
		l.mu.Lock()
		ch := l.changed
		l.mu.Unlock()
		if cond(l.delivered()) {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			l.t.Fatalf("listener never got %s: %v (%d POSTs)", what, ctx.Err(), len(l.snapshot()))
		}
	}
}

// has reports whether evs hold an event of type typ for request id.
func has(evs []Event, typ, reqID string) bool {
	for _, ev := range evs {
		if ev.Type == typ && (reqID == "" || ev.RequestID() == reqID) {
			return true
		}
	}
	return false
}

// runLoop runs the client as a simple extension: every event is passed to
// handle, then /next is called again. It ends when /next fails (Close).
func (c *client) runLoop(t *testing.T, handle func(nextEvent)) {
	var wg sync.WaitGroup
	ctx := t.Context()
	wg.Go(func() {
		for {
			ev, err := c.next(ctx)
			if err != nil {
				return
			}
			handle(ev)
		}
	})
	// t.Context is cancelled before cleanups run, which ends the loop.
	t.Cleanup(wg.Wait)
}

// countWanted counts the events of the given categories in evs.
func countWanted(evs []Event, types ...string) int {
	n := 0
	for _, ev := range evs {
		for _, t := range types {
			if category(ev.Type) == t {
				n++
			}
		}
	}
	return n
}
