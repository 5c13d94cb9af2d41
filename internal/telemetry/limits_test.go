package telemetry

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// Tests of what the listener holds: the byte cap across in-flight bodies
// (MaxHeld) and the read deadline for slow bodies (BodyTimeout).

// paddedBody is a valid one-event batch of exactly size bytes (size >= 80),
// whose record is name.
func paddedBody(name string, size int) []byte {
	b := `[{"time":"2025-06-01T08:00:00Z","type":"function","record":"` + name + `"}`
	return []byte(b + strings.Repeat(" ", size-len(b)-1) + "]")
}

// serve calls the handler as the server would and returns the recorded reply.
func serve(l *Listener, body io.Reader, size int64) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/", body)
	req.ContentLength = size
	rec := httptest.NewRecorder()
	l.ServeHTTP(rec, req)
	return rec
}

// newTestListener is a listener without a socket, for a synctest bubble;
// it is closed when the bubble's function returns.
func newTestListener(t *testing.T, o ListenerOptions) *Listener {
	t.Helper()
	if o.Buffer == nil {
		o.Buffer = NewBuffer(1 << 20)
	}
	if o.Now == nil {
		o.Now = nowFunc
	}
	l := newListener(o)
	l.start()
	t.Cleanup(func() {
		if err := l.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return l
}

func TestListenerLimitDefaults(t *testing.T) {
	tests := []struct {
		name                 string
		o                    ListenerOptions
		wantMaxBody, wantCap int64
		wantTimeout          time.Duration
	}{
		{name: "zero", wantMaxBody: DefaultMaxBody, wantCap: 2 * DefaultMaxBody, wantTimeout: DefaultBodyTimeout},
		{name: "cap follows MaxBody", o: ListenerOptions{MaxBody: 1000}, wantMaxBody: 1000, wantCap: 2000, wantTimeout: DefaultBodyTimeout},
		// Below MaxBody the largest body could never get in.
		{name: "cap below MaxBody raised", o: ListenerOptions{MaxBody: 1000, MaxHeld: 10}, wantMaxBody: 1000, wantCap: 1000, wantTimeout: DefaultBodyTimeout},
		{name: "as given", o: ListenerOptions{MaxBody: 1000, MaxHeld: 5000, BodyTimeout: time.Second}, wantMaxBody: 1000, wantCap: 5000, wantTimeout: time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newListener(tt.o)
			if l.o.MaxBody != tt.wantMaxBody || l.o.MaxHeld != tt.wantCap || l.held.max != tt.wantCap || l.o.BodyTimeout != tt.wantTimeout {
				t.Errorf("MaxBody, MaxHeld, gate, BodyTimeout = %d, %d, %d, %v; want %d, %d, %d, %v",
					l.o.MaxBody, l.o.MaxHeld, l.held.max, l.o.BodyTimeout, tt.wantMaxBody, tt.wantCap, tt.wantCap, tt.wantTimeout)
			}
		})
	}
}

// TestListenerHeldBytesBounded sends many large bodies at once while the
// decoder is held: the listener takes only as many as fit under MaxHeld,
// refuses the others with 503 (Lambda sends them again) without reading
// them, and never holds more than the cap. Before the cap every body was
// read and queued: 64 bodies of 7 MB took the heap to 919 MB.
func TestListenerHeldBytesBounded(t *testing.T) {
	const (
		maxBody = 1 << 20
		size    = 1_000_000
		posts   = 24
	)
	for _, chunked := range []bool{false, true} {
		t.Run("chunked="+strconv.FormatBool(chunked), func(t *testing.T) {
			// A declared length takes what it declares; an undeclared one
			// the whole MaxBody.
			reserve := int64(size)
			if chunked {
				reserve = maxBody
			}
			const held = 3
			maxHeld := held*reserve + reserve/2 // room for 3, not 4
			release := make(chan struct{})
			var once sync.Once
			h := listen(t, ListenerOptions{
				MaxBody: maxBody,
				MaxHeld: maxHeld,
				Buffer:  NewBuffer(64 << 20),
				OnEvent: func(*Event) { once.Do(func() { <-release }) },
			})
			body := paddedBody("big", size)
			codes := make(chan int, posts)
			var wg sync.WaitGroup
			for range posts {
				wg.Go(func() {
					var r io.Reader = bytes.NewReader(body)
					if chunked {
						r = io.MultiReader(r) // hides the length: sent chunked
					}
					// Without the cap every POST would be taken, and those
					// beyond the queue would wait on the held decoder: the
					// timeout makes that a failure, not a hang.
					ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
					defer cancel()
					req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.url, r)
					resp, err := h.client.Do(req)
					if err != nil {
						// A refused POST may see its connection closed
						// before its reply; Stats.Refused tells.
						codes <- 0
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
						t.Errorf("503 without Retry-After")
					}
					codes <- resp.StatusCode
				})
			}
			wg.Wait() // the refused wait out admitWait (1 s) while the decoder is held
			close(codes)
			n := map[int]int{}
			for c := range codes {
				n[c]++
			}
			if n[http.StatusOK] != held || n[http.StatusOK]+n[http.StatusServiceUnavailable]+n[0] != posts {
				t.Errorf("replies %v, want %d × 200 and the rest 503", n, held)
			}
			if cur, peak := h.l.held.usage(); peak > maxHeld || peak != held*reserve || cur != held*reserve {
				t.Errorf("held %d, peak %d bytes; want %d (%d bodies), never over %d", cur, peak, held*reserve, held, maxHeld)
			}
			close(release)
			h.close(t)
			st := h.l.Stats()
			if st.Refused != posts-held || st.Events != held || st.Requests != posts {
				t.Errorf("Stats = %+v, want %d requests, %d refused, %d events", st, posts, posts-held, held)
			}
			if cur, _ := h.l.held.usage(); cur != 0 {
				t.Errorf("%d bytes still held after every body was decoded", cur)
			}
		})
	}
}

// TestListenerWaitsForRoom: a POST that finds the cap full waits up to
// admitWait for the decoder to give bytes back, and is answered 503 with
// Retry-After if none come; nothing of it is kept then.
func TestListenerWaitsForRoom(t *testing.T) {
	for _, room := range []bool{true, false} {
		t.Run("room="+strconv.FormatBool(room), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const size = 100
				release := make(chan struct{})
				buf := NewBuffer(1 << 20)
				l := newTestListener(t, ListenerOptions{
					MaxBody: size, MaxHeld: 2 * size, Buffer: buf,
					OnEvent: func(e *Event) {
						if string(e.Record) == `"a"` {
							<-release
						}
					},
				})
				for _, name := range []string{"a", "b"} {
					if rec := serve(l, bytes.NewReader(paddedBody(name, size)), size); rec.Code != http.StatusOK {
						t.Fatalf("POST %s answered %d, want 200", name, rec.Code)
					}
				}
				// a is being decoded, b queued: the cap is full.
				start := time.Now()
				got := make(chan *httptest.ResponseRecorder)
				go func() { got <- serve(l, bytes.NewReader(paddedBody("c", size)), size) }()
				if room {
					time.Sleep(admitWait / 2)
					synctest.Wait()
					select {
					case rec := <-got:
						t.Fatalf("POST c answered %d while the cap was full", rec.Code)
					default:
					}
					close(release) // a is decoded: its bytes come back
					rec := <-got
					if rec.Code != http.StatusOK || time.Since(start) != admitWait/2 {
						t.Errorf("POST c answered %d after %v, want 200 as soon as a was decoded (%v)", rec.Code, time.Since(start), admitWait/2)
					}
				} else {
					rec := <-got
					if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" || time.Since(start) != admitWait {
						t.Errorf("POST c answered %d (Retry-After %q) after %v, want 503 with Retry-After 1 after %v",
							rec.Code, rec.Header().Get("Retry-After"), time.Since(start), admitWait)
					}
					close(release)
				}
				if !l.Sync(t.Context()) {
					t.Fatal("Sync failed")
				}
				want := []string{`"a"`, `"b"`}
				var wantRefused uint64 = 1
				if room {
					want, wantRefused = append(want, `"c"`), 0
				}
				var records []string
				for _, e := range buf.Take(10, 1<<20) {
					records = append(records, string(e.Record))
				}
				if strings.Join(records, " ") != strings.Join(want, " ") {
					t.Errorf("buffered %q, want %q", records, want)
				}
				if st := l.Stats(); st.Refused != wantRefused {
					t.Errorf("Refused = %d, want %d", st.Refused, wantRefused)
				}
				if cur, peak := l.held.usage(); cur != 0 || peak != 2*size {
					t.Errorf("held %d, peak %d; want 0 now, %d at most", cur, peak, 2*size)
				}
			})
		})
	}
}

// pipeListener is a net.Listener of in-memory connections (net.Pipe), so
// that an http.Server can run inside a synctest bubble, where a loopback
// socket cannot.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (p *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-p.conns:
		return c, nil
	case <-p.done:
		return nil, net.ErrClosed
	}
}

func (p *pipeListener) Close() error {
	p.once.Do(func() { close(p.done) })
	return nil
}

func (p *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// client is an HTTP client whose every connection is a pipe to p.
func (p *pipeListener) client() (*http.Client, *http.Transport) {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		server, client := net.Pipe()
		select {
		case p.conns <- server:
			return client, nil
		case <-p.done:
			return nil, net.ErrClosed
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}}
	return &http.Client{Transport: tr}, tr
}

// TestListenerCloseEndsWaitForRoom: a POST waiting for room gives up as soon
// as Close starts. The server's Shutdown waits for every handler, so a
// handler waiting out admitWait would hold up the SHUTDOWN budget (under
// two seconds) by up to a second.
func TestListenerCloseEndsWaitForRoom(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const size = 100
		release := make(chan struct{})
		l := newListener(ListenerOptions{
			MaxBody: size, Buffer: NewBuffer(1 << 20), Now: nowFunc,
			OnEvent: func(*Event) { <-release },
		})
		pl := newPipeListener()
		l.serve(pl)
		client, tr := pl.client()
		defer tr.CloseIdleConnections()
		post := func(name string) (int, error) {
			resp, err := client.Post("http://sandbox/", "application/json", bytes.NewReader(paddedBody(name, size)))
			if err != nil {
				return 0, err
			}
			resp.Body.Close()
			return resp.StatusCode, nil
		}
		for _, name := range []string{"a", "b"} {
			if code, err := post(name); code != http.StatusOK {
				t.Fatalf("POST %s answered %d (%v), want 200", name, code, err)
			}
		}
		// a is being decoded, b queued: the default cap, 2*MaxBody, is full.
		got := make(chan int)
		go func() {
			code, _ := post("c")
			got <- code
		}()
		synctest.Wait() // c waits for room
		start := time.Now()
		closed := make(chan error)
		go func() { closed <- l.Close(context.Background()) }()
		if code := <-got; code != http.StatusServiceUnavailable || time.Since(start) != 0 {
			t.Errorf("POST c answered %d after %v of Close, want 503 at once", code, time.Since(start))
		}
		close(release)
		if err := <-closed; err != nil {
			t.Errorf("Close: %v", err)
		}
		if st := l.Stats(); st.Refused != 1 || st.Events != 2 {
			t.Errorf("Stats = %+v, want 1 refused, 2 events", st)
		}
	})
}

// trickle yields its first fast bytes at once, then one byte of b per
// second of (fake) time.
type trickle struct {
	b    []byte
	fast int
}

func (r *trickle) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	if r.fast > 0 {
		n := copy(p[:min(len(p), r.fast)], r.b)
		r.b, r.fast = r.b[n:], r.fast-n
		return n, nil
	}
	time.Sleep(time.Second)
	n := copy(p[:1], r.b)
	r.b = r.b[n:]
	return n, nil
}

// TestListenerSlowBodyCut: a body sent at one byte a second is cut at the
// body deadline, keeps nothing (not even the events that had arrived whole)
// and is answered 503; its bytes are given back.
func TestListenerSlowBodyCut(t *testing.T) {
	for _, tt := range []struct {
		name    string
		timeout time.Duration
		chunked bool
	}{
		{name: "default deadline", chunked: false},
		{name: "default deadline, chunked", chunked: true},
		{name: "3s deadline", timeout: 3 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				buf := NewBuffer(1 << 20)
				l := newTestListener(t, ListenerOptions{BodyTimeout: tt.timeout, Buffer: buf})
				want := tt.timeout
				if want == 0 {
					want = DefaultBodyTimeout
				}
				// The first event arrives whole at once, then the body
				// trickles.
				first := "[" + ok1 + ","
				body := []byte(first + ok3 + "]")
				size := int64(len(body))
				if tt.chunked {
					size = -1
				}
				start := time.Now()
				rec := serve(l, &trickle{b: body, fast: len(first)}, size)
				if took := time.Since(start); rec.Code != http.StatusServiceUnavailable || took != want {
					t.Errorf("answered %d after %v, want 503 at the deadline, %v", rec.Code, took, want)
				}
				if !l.Sync(t.Context()) {
					t.Fatal("Sync failed")
				}
				if n := buf.Len(); n != 0 {
					t.Errorf("%d events buffered from a body cut at the deadline", n)
				}
				if st := l.Stats(); st.TimedOut != 1 || st.Incomplete != 0 || st.Events != 0 {
					t.Errorf("Stats = %+v, want 1 timed out, nothing else", st)
				}
				if cur, _ := l.held.usage(); cur != 0 {
					t.Errorf("%d bytes still held", cur)
				}
			})
		})
	}
}

// TestListenerStalledBodyDeadline stalls a body on a real connection: the
// connection's read deadline ends the read, the POST is answered 503 and
// keeps nothing. Without a deadline the body, and its bytes, were held for
// as long as the sender kept the connection open.
func TestListenerStalledBodyDeadline(t *testing.T) {
	const timeout = 300 * time.Millisecond
	h := listen(t, ListenerOptions{BodyTimeout: timeout})
	c, err := net.Dial("tcp", h.l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Fails the test, instead of hanging it, if nothing ends the read.
	c.SetDeadline(time.Now().Add(20 * time.Second))
	part := "[" + ok1 + ","
	start := time.Now()
	if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: sandbox\r\nContent-Length: 1000\r\n\r\n"+part); err != nil {
		t.Fatal(err)
	}
	// The sender stalls, the connection open.
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the reply: %v", err)
	}
	resp.Body.Close()
	if took := time.Since(start); resp.StatusCode != http.StatusServiceUnavailable || took < timeout {
		t.Errorf("answered %d after %v, want 503 after at least %v", resp.StatusCode, took, timeout)
	}
	h.close(t)
	if n := h.buf.Len(); n != 0 {
		t.Errorf("%d events buffered from a stalled body", n)
	}
	if st := h.l.Stats(); st.TimedOut != 1 || st.Events != 0 {
		t.Errorf("Stats = %+v, want 1 timed out, no events", st)
	}
}

// TestGateFirstComeFirstServed: a waiter is not overtaken by a later, smaller
// one that would fit, and one that gives up lets those behind it in.
func TestGateFirstComeFirstServed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGate(100)
		ctx := t.Context()
		if !g.acquire(ctx, 60, time.Second, nil) {
			t.Fatal("first acquire refused")
		}
		order := make(chan string, 3)
		var wg sync.WaitGroup
		wg.Go(func() { // waits for 60, gives up after 2 s
			if g.acquire(ctx, 60, 2*time.Second, nil) {
				t.Error("B got room that was never freed")
			}
			order <- "B gave up"
		})
		synctest.Wait()
		wg.Go(func() { // would fit now, but B is ahead of it
			if g.acquire(ctx, 30, 10*time.Second, nil) {
				order <- "C in"
			}
		})
		synctest.Wait()
		select {
		case s := <-order:
			t.Fatalf("%s while B waited ahead of C", s)
		default:
		}
		time.Sleep(2 * time.Second) // B's wait ends; C is let in behind it
		wg.Wait()
		if a, b := <-order, <-order; a != "B gave up" || b != "C in" {
			t.Errorf("order %q, %q; want B gave up, C in", a, b)
		}
		if cur, peak := g.usage(); cur != 90 || peak != 90 {
			t.Errorf("held %d, peak %d; want 90, 90", cur, peak)
		}
		g.release(90)
		if cur, _ := g.usage(); cur != 0 {
			t.Errorf("held %d after release, want 0", cur)
		}
	})
}
