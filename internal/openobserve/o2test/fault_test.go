package o2test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// send posts body to the `_json` route through c and returns the status and
// reply body.
func send(ctx context.Context, c *http.Client, base, body string) (int, string, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", base+"/api/default/app/_json", strings.NewReader(body))
	if err != nil {
		return 0, "", nil, err
	}
	req.Header.Set("Authorization", BasicAuth(DefaultEmail, DefaultSecret))
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header, err
}

func TestFaultStatusAndRetryAfter(t *testing.T) {
	s := Run(t, Options{})
	s.Inject(Fault{Status: 429, RetryAfter: "7"}, Fault{Status: 503})
	steps := []struct {
		name       string
		status     int
		retryAfter string
		body       string
	}{
		{"429", 429, "7", `{"code":429,"message":"Too Many Requests"}`},
		{"503", 503, "", `{"code":503,"message":"Service Unavailable"}`},
		{"queue drained", 200, "", `{"code":200,"status":[{"name":"app","successful":1,"failed":0}]}`},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			status, body, h, err := send(t.Context(), http.DefaultClient, s.URL(), `[{"a":1}]`)
			if err != nil {
				t.Fatal(err)
			}
			if status != st.status || body != st.body || h.Get("Retry-After") != st.retryAfter {
				t.Errorf("got %d %s Retry-After %q; want %d %s %q",
					status, body, h.Get("Retry-After"), st.status, st.body, st.retryAfter)
			}
		})
	}
	if n := len(s.Records()); n != 1 {
		t.Errorf("%d records stored, want 1 (faulted requests store nothing)", n)
	}
	reqs := s.Requests()
	if len(reqs) != 3 || reqs[0].Status != 429 || reqs[0].Records != 1 || string(reqs[0].Body) != `[{"a":1}]` {
		t.Errorf("Requests() = %+v", reqs)
	}
}

func TestFaultFunc(t *testing.T) {
	s := New(Options{})
	var seen []int
	s.SetFaultFunc(func(n int, r *http.Request) *Fault {
		seen = append(seen, n) // requests are sequential here
		if n == 3 {
			return &Fault{Status: 500}
		}
		return nil
	})
	s.Inject(Fault{Status: 502})
	want := []int{502, 200, 500, 200}
	for i, w := range want {
		rec := do(t, s.Handler(), "POST", "/api/default/app/_json", []byte(`[]`), authHeader())
		if rec.Code != w {
			t.Errorf("request %d: status %d, want %d", i+1, rec.Code, w)
		}
	}
	// The queue served request 1, so the func saw 2, 3 and 4.
	if got := seen; len(got) != 3 || got[0] != 2 || got[2] != 4 {
		t.Errorf("fault func saw %v, want [2 3 4]", got)
	}
	s.SetFaultFunc(nil)
	if rec := do(t, s.Handler(), "POST", "/api/default/app/_json", []byte(`[]`), authHeader()); rec.Code != 200 {
		t.Errorf("after clearing: status %d", rec.Code)
	}
	if s.Calls() != 5 {
		t.Errorf("Calls() = %d, want 5", s.Calls())
	}
}

func TestFaultResetRealClient(t *testing.T) {
	s := Run(t, Options{})
	s.Inject(Fault{Reset: true})
	_, _, _, err := send(t.Context(), http.DefaultClient, s.URL(), `[{"a":1}]`)
	if err == nil {
		t.Fatal("reset request succeeded")
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want a connection error, got %v", err)
	}
	status, _, _, err := send(t.Context(), http.DefaultClient, s.URL(), `[{"a":1}]`)
	if err != nil || status != 200 {
		t.Fatalf("next request: %d, %v", status, err)
	}
	reqs := s.Requests()
	if len(reqs) != 2 || reqs[0].Status != 0 || !reqs[0].Done {
		t.Errorf("Requests() = %+v", reqs)
	}
	if n := len(s.Records()); n != 1 {
		t.Errorf("%d records, want 1", n)
	}
}

// startHung posts in the background and returns once the stand-in has
// logged the request, with a channel for the client's error.
func startHung(t *testing.T, s *Server, ctx context.Context) <-chan error {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		_, _, _, err := send(ctx, http.DefaultClient, s.URL(), `[{"a":1}]`)
		errc <- err
	}()
	if err := s.Wait(t.Context(), func(s *Server) bool { return len(s.Requests()) == 1 }); err != nil {
		t.Fatal(err)
	}
	return errc
}

func TestFaultHangReleasedByClientCancel(t *testing.T) {
	s := Run(t, Options{})
	s.Inject(Fault{Hang: true})
	ctx, cancel := context.WithCancel(t.Context())
	errc := startHung(t, s, ctx)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("client error = %v, want context.Canceled", err)
	}
	// The handler is released too, and leaves nothing stored.
	if err := s.Wait(t.Context(), func(s *Server) bool { return s.Requests()[0].Done }); err != nil {
		t.Fatal(err)
	}
	if r := s.Requests()[0]; r.Status != 0 || len(s.Records()) != 0 {
		t.Errorf("request %+v, %d records", r, len(s.Records()))
	}
}

func TestFaultHangReleasedByClose(t *testing.T) {
	s := Run(t, Options{})
	s.Inject(Fault{Hang: true})
	errc := startHung(t, s, t.Context())
	s.Close() // returns only once the hung handler has finished
	if err := <-errc; err == nil {
		t.Error("hung request succeeded after Close")
	}
	if r := s.Requests()[0]; !r.Done || r.Status != 0 {
		t.Errorf("request after Close: %+v", r)
	}
}

func TestInProcessFaults(t *testing.T) {
	const base = "http://o2.invalid"
	tests := []struct {
		name string
		run  func(t *testing.T, s *Server, c *http.Client)
	}{
		{"delay past the client timeout", func(t *testing.T, s *Server, c *http.Client) {
			s.Inject(Fault{Delay: 10 * time.Second})
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			_, _, _, err := send(ctx, c, base, `[{"a":1}]`)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want DeadlineExceeded", err)
			}
			if n := len(s.Records()); n != 0 {
				t.Errorf("%d records stored for an abandoned request", n)
			}
			if r := s.Requests()[0]; !r.Done || r.Status != 0 {
				t.Errorf("abandoned request logged as %+v", r)
			}
		}},
		{"delay within the client timeout", func(t *testing.T, s *Server, c *http.Client) {
			s.Inject(Fault{Delay: 2 * time.Second, RetryAfter: "1"})
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			start := time.Now()
			status, _, h, err := send(ctx, c, base, `[{"a":1}]`)
			if err != nil || status != 200 || h.Get("Retry-After") != "1" {
				t.Fatalf("got %d, %v, Retry-After %q", status, err, h.Get("Retry-After"))
			}
			if d := time.Since(start); d != 2*time.Second { // fake clock: exact
				t.Errorf("answer took %v, want 2s", d)
			}
			if n := len(s.Records()); n != 1 {
				t.Errorf("%d records stored, want 1", n)
			}
		}},
		{"latency on every request", func(t *testing.T, s *Server, c *http.Client) {
			s.SetLatency(time.Second)
			s.Inject(Fault{Delay: time.Second})
			for _, want := range []time.Duration{2 * time.Second, time.Second} {
				start := time.Now()
				if status, _, _, err := send(t.Context(), c, base, `[]`); err != nil || status != 200 {
					t.Fatalf("got %d, %v", status, err)
				}
				if d := time.Since(start); d != want {
					t.Errorf("answer took %v, want %v", d, want)
				}
			}
		}},
		{"status after a delay", func(t *testing.T, s *Server, c *http.Client) {
			s.Inject(Fault{Status: 503, Delay: time.Second})
			start := time.Now()
			status, body, _, err := send(t.Context(), c, base, `[]`)
			if err != nil || status != 503 || body != `{"code":503,"message":"Service Unavailable"}` || time.Since(start) != time.Second {
				t.Errorf("got %d %s %v after %v", status, body, err, time.Since(start))
			}
		}},
		{"reset", func(t *testing.T, s *Server, c *http.Client) {
			s.Inject(Fault{Reset: true})
			if _, _, _, err := send(t.Context(), c, base, `[]`); !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("err = %v, want ECONNRESET", err)
			}
		}},
		{"hang until the client gives up", func(t *testing.T, s *Server, c *http.Client) {
			s.Inject(Fault{Hang: true, Status: 500})
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			start := time.Now()
			if _, _, _, err := send(ctx, c, base, `[]`); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err = %v, want DeadlineExceeded", err)
			}
			if d := time.Since(start); d != time.Minute {
				t.Errorf("released after %v, want 1m", d)
			}
		}},
		{"hang until Close", func(t *testing.T, s *Server, c *http.Client) {
			s.Inject(Fault{Hang: true})
			errc := make(chan error, 1)
			go func() {
				_, _, _, err := send(t.Context(), c, base, `[]`)
				errc <- err
			}()
			synctest.Wait() // the request is hung
			s.Close()
			if err := <-errc; !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("err = %v, want a dropped connection", err)
			}
		}},
		{"healthz", func(t *testing.T, s *Server, c *http.Client) {
			resp, err := c.Get(base + "/healthz")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != `{"status":"ok"}` {
				t.Errorf("got %d %s", resp.StatusCode, b)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := New(Options{})
				defer s.Close()
				tt.run(t, s, &http.Client{Transport: s.Transport()})
			})
		})
	}
}

func TestWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(Options{})
		done := make(chan error, 1)
		go func() {
			// cond calls methods: Wait must not hold a lock while calling it.
			done <- s.Wait(t.Context(), func(s *Server) bool { return len(s.StreamRecords("default", "app")) == 2 })
		}()
		synctest.Wait() // the waiter is blocked
		select {
		case err := <-done:
			t.Fatalf("Wait returned %v before any request", err)
		default:
		}
		rec := do(t, s.Handler(), "POST", "/api/default/app/_json", []byte(`[{"a":1},{"a":2}]`), authHeader())
		if rec.Code != 200 {
			t.Fatalf("status %d", rec.Code)
		}
		if err := <-done; err != nil {
			t.Errorf("Wait = %v", err)
		}

		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if err := s.Wait(ctx, func(*Server) bool { return false }); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Wait with an ending ctx = %v", err)
		}
		// A true cond returns at once.
		if err := s.Wait(t.Context(), func(*Server) bool { return true }); err != nil {
			t.Errorf("Wait = %v", err)
		}
	})
}

func TestReset(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(Options{})
		if rec := do(t, s.Handler(), "POST", "/api/default/app/_json", []byte(`[{"a":1}]`), authHeader()); rec.Code != 200 {
			t.Fatalf("status %d", rec.Code)
		}
		s.Inject(Fault{Status: 500})
		s.SetFaultFunc(func(int, *http.Request) *Fault { return &Fault{Status: 502} })
		s.SetLatency(time.Hour)
		s.Reset()
		if len(s.Requests()) != 0 || len(s.Records()) != 0 || s.Calls() != 0 {
			t.Fatalf("after Reset: %d requests, %d records, %d calls", len(s.Requests()), len(s.Records()), s.Calls())
		}
		start := time.Now()
		rec := do(t, s.Handler(), "POST", "/api/default/app/_json", []byte(`[{"a":1}]`), authHeader())
		if rec.Code != 200 || time.Since(start) != 0 {
			t.Errorf("after Reset: status %d after %v; want 200 at once", rec.Code, time.Since(start))
		}
		if s.Calls() != 1 || len(s.Records()) != 1 {
			t.Errorf("after one more request: %d calls, %d records", s.Calls(), len(s.Records()))
		}
	})
}

// TestRequestLog checks what is logged for each kind of request.
func TestRequestLog(t *testing.T) {
	s := New(Options{})
	do(t, s.Handler(), "GET", "/healthz", nil, nil)
	do(t, s.Handler(), "POST", "/api/default/app/_json", gzipped(t, []byte(`[{"a":1},3]`)), withHeader("Content-Encoding", "gzip"))
	do(t, s.Handler(), "POST", "/api/default/app/_json", []byte(`not json`), authHeader())
	reqs := s.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests logged", len(reqs))
	}
	if r := reqs[0]; r.Path != "/healthz" || r.Status != 200 || r.Method != "GET" {
		t.Errorf("healthz: %+v", r)
	}
	r := reqs[1]
	if !bytes.Equal(r.Body, []byte(`[{"a":1},3]`)) || r.Records != 2 || r.Successful != 1 || r.Failed != 1 ||
		r.Header.Get("Content-Encoding") != "gzip" || r.Header.Get("Authorization") == "" || r.Time.IsZero() {
		t.Errorf("ingest: %+v", r)
	}
	if r := reqs[2]; r.Status != 400 || r.Records != 0 {
		t.Errorf("bad JSON: %+v", r)
	}
	// Returned values are copies.
	reqs[1].Body[0] = 'X'
	reqs[1].Header.Set("Authorization", "changed")
	if again := s.Requests()[1]; again.Body[0] != '[' || again.Header.Get("Authorization") == "changed" {
		t.Error("Requests() shares memory with the log")
	}
}
