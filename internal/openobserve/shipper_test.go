package openobserve_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/o2-extension/o2-extension/internal/openobserve"
	"github.com/o2-extension/o2-extension/internal/openobserve/o2test"
	"github.com/o2-extension/o2-extension/internal/telemetry"
)

// concurrency wraps a transport and records the most requests it saw in
// flight at once.
type concurrency struct {
	next      http.RoundTripper
	mu        sync.Mutex
	now, peak int
}

func (c *concurrency) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.now++
	c.peak = max(c.peak, c.now)
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.now--
		c.mu.Unlock()
	}()
	return c.next.RoundTrip(r)
}

func (c *concurrency) max() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peak
}

// lines returns n text-line events with unique texts "<tag>-<i>".
func lines(tag string, n int) []telemetry.Event {
	evs := make([]telemetry.Event, n)
	for i := range evs {
		evs[i] = telemetry.Event{Time: time.Now(), Type: "function", Record: []byte(fmt.Sprintf("%q", fmt.Sprintf("%s-%d padded to look like a log line", tag, i)))}
	}
	return evs
}

// stored counts how often each line arrived in stream "lambda".
func stored(s *o2test.Server) map[string]int {
	n := map[string]int{}
	for _, r := range s.StreamRecords("default", "lambda") {
		if txt, ok := r["record"].(string); ok {
			n[txt]++
		}
	}
	return n
}

// exactlyOnce fails unless every line of evs arrived once.
func exactlyOnce(t *testing.T, s *o2test.Server, evs []telemetry.Event) {
	t.Helper()
	got := stored(s)
	lost, dup := 0, 0
	for _, ev := range evs {
		txt := strings.Trim(string(ev.Record), `"`)
		switch n := got[txt]; {
		case n == 0:
			lost++
		case n > 1:
			dup += n - 1
		}
	}
	if lost+dup > 0 {
		t.Errorf("of %d lines: %d lost, %d duplicated", len(evs), lost, dup)
	}
}

// newShipper starts a Shipper on an in-process stand-in and stops it at
// the end of the test.
func newShipper(t *testing.T, so o2test.Options, o func(*openobserve.Options), sh openobserve.ShipperOptions) (*openobserve.Shipper, *telemetry.Buffer, *o2test.Server, *concurrency) {
	s, opts := inProcess(so)
	cc := &concurrency{next: opts.Transport}
	opts.Transport = cc
	opts.GzipMinBytes = -1
	if o != nil {
		o(&opts)
	}
	buf := telemetry.NewBuffer(16 << 20)
	sp := openobserve.NewShipper(openobserve.NewClient(opts), buf, sh)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = sp.Shutdown(ctx, nil, nil)
	})
	return sp, buf, s, cc
}

// A slow backend is kept busy with InFlight requests at once, each record
// in one of them.
func TestShipperPipelines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sp, buf, s, cc := newShipper(t, o2test.Options{}, nil, openobserve.ShipperOptions{InFlight: 4, BatchCount: 100})
		s.SetLatency(150 * time.Millisecond)
		evs := lines("p", 1000)
		buf.Add(evs...)
		start := time.Now()
		if err := sp.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		// 10 batches, 4 at a time, 150 ms each: 3 rounds.
		if d := time.Since(start); d != 450*time.Millisecond {
			t.Errorf("flush took %v, want 450ms (3 rounds of 4 requests in flight)", d)
		}
		if got := cc.max(); got != 4 {
			t.Errorf("at most %d requests in flight, want 4", got)
		}
		exactlyOnce(t, s, evs)
		if n := s.Calls(); n != 10 {
			t.Errorf("%d requests, want 10", n)
		}
	})
}

// Records go out after the linger, or at once when a batch is full, without
// anyone asking.
func TestShipperLingerAndFullBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, buf, s, _ := newShipper(t, o2test.Options{}, nil, openobserve.ShipperOptions{BatchCount: 50, Linger: time.Second})
		buf.Add(lines("a", 10)...)
		time.Sleep(999 * time.Millisecond)
		synctest.Wait()
		if n := s.Calls(); n != 0 {
			t.Fatalf("%d requests before the linger ran out, want 0", n)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if n := len(s.StreamRecords("default", "lambda")); n != 10 {
			t.Fatalf("%d records after the linger, want 10", n)
		}
		buf.Add(lines("b", 50)...) // a full batch
		synctest.Wait()
		if n := len(s.StreamRecords("default", "lambda")); n != 60 {
			t.Fatalf("%d records after a full batch, want 60 at once", n)
		}
	})
}

// A failed request waits out its backoff while the others keep flowing,
// and nothing is lost or sent twice.
func TestShipperFailedRequestDoesNotStallTheOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sp, buf, s, _ := newShipper(t, o2test.Options{}, nil, openobserve.ShipperOptions{InFlight: 4, BatchCount: 10})
		s.SetLatency(50 * time.Millisecond)
		// Requests 1 and 2 fail: the first batch fails twice and backs off.
		s.SetFaultFunc(func(n int, _ *http.Request) *o2test.Fault {
			if n == 1 || n == 5 {
				return &o2test.Fault{Status: 500}
			}
			return nil
		})
		evs := lines("f", 100)
		buf.Add(evs...)
		if err := sp.Flush(t.Context()); err != nil && !errors.Is(err, openobserve.ErrFailing) {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		exactlyOnce(t, s, evs)
	})
}

// The end-of-invocation flush never waits out a backoff: with a failing
// backend it costs two attempts, and the next flushes do not wait at all
// until a send succeeds again.
func TestShipperFlushAgainstAFailingBackend(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sp, buf, s, _ := newShipper(t, o2test.Options{}, nil, openobserve.ShipperOptions{})
		s.SetLatency(20 * time.Millisecond)
		failing := true
		var mu sync.Mutex
		s.SetFaultFunc(func(int, *http.Request) *o2test.Fault {
			mu.Lock()
			defer mu.Unlock()
			if failing {
				return &o2test.Fault{Status: 503}
			}
			return nil
		})
		var evs []telemetry.Event
		for i, want := range []time.Duration{40 * time.Millisecond, 0, 0} {
			batch := lines(fmt.Sprint("inv", i), 5)
			evs = append(evs, batch...)
			buf.Add(batch...)
			start := time.Now()
			err := sp.Flush(t.Context())
			if !errors.Is(err, openobserve.ErrFailing) {
				t.Errorf("flush %d: err = %v, want ErrFailing", i, err)
			}
			if d := time.Since(start); d != want {
				t.Errorf("flush %d held %v, want %v", i, d, want)
			}
			if !sp.Failing() {
				t.Errorf("flush %d: Failing() = false with a failing backend", i)
			}
		}
		mu.Lock()
		failing = false
		mu.Unlock()
		recovered := time.Now()
		// A probe finds the backend back within RetryWaitMax (1 s).
		if err := s.Wait(t.Context(), func(s *o2test.Server) bool { return len(s.StreamRecords("default", "lambda")) > 0 }); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(recovered); d > openobserve.DefaultRetryWaitMax+20*time.Millisecond {
			t.Errorf("first delivery %v after the recovery, want within %v", d, openobserve.DefaultRetryWaitMax)
		}
		synctest.Wait()
		if sp.Failing() {
			t.Error("still failing after a delivery")
		}
		buf.Add(lines("after", 5)...)
		start := time.Now()
		if err := sp.Flush(t.Context()); err != nil {
			t.Errorf("flush after the recovery: %v", err)
		}
		if d := time.Since(start); d != 20*time.Millisecond {
			t.Errorf("flush after the recovery held %v, want one round trip (20ms)", d)
		}
		time.Sleep(3 * time.Second)
		synctest.Wait()
		exactlyOnce(t, s, evs)
	})
}

// A Retry-After pauses the whole client, not only the request it answered.
func TestShipperRetryAfterPausesEveryRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sp, buf, s, _ := newShipper(t, o2test.Options{}, func(o *openobserve.Options) { o.RetryWaitMax = 10 * time.Second },
			openobserve.ShipperOptions{InFlight: 4, BatchCount: 10})
		s.Inject(o2test.Fault{Status: 429, RetryAfter: "3"})
		buf.Add(lines("r", 10)...)
		if err := sp.Flush(t.Context()); !errors.Is(err, openobserve.ErrFailing) {
			t.Fatalf("flush during a pause: err = %v, want ErrFailing", err)
		}
		start := time.Now()
		buf.Add(lines("r2", 30)...)
		time.Sleep(2900 * time.Millisecond)
		synctest.Wait()
		if n := s.Calls(); n != 1 {
			t.Fatalf("%d requests during the 3 s pause, want only the first", n)
		}
		time.Sleep(200 * time.Millisecond)
		synctest.Wait()
		if n := len(s.StreamRecords("default", "lambda")); n != 40 {
			t.Errorf("%d records %v after the pause began, want 40", n, time.Since(start))
		}
	})
}

// A flush stuck on a hanging backend costs one budget; the next flushes do
// not wait until a send succeeds.
func TestShipperStuckFlushDoesNotHoldTheNext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sp, buf, s, _ := newShipper(t, o2test.Options{}, func(o *openobserve.Options) { o.AttemptTimeout = 10 * time.Second }, openobserve.ShipperOptions{})
		s.Inject(o2test.Fault{Hang: true})
		evs := lines("h", 5)
		buf.Add(evs...)
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		if err := sp.Flush(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want the budget's deadline", err)
		}
		start := time.Now()
		if err := sp.Flush(t.Context()); !errors.Is(err, openobserve.ErrFailing) || time.Since(start) != 0 {
			t.Errorf("second flush: err = %v after %v, want ErrFailing at once", err, time.Since(start))
		}
		time.Sleep(12 * time.Second) // the hung attempt times out; the retry delivers
		synctest.Wait()
		exactlyOnce(t, s, evs)
		if sp.Failing() {
			t.Error("still failing after a delivery")
		}
	})
}

// SHUTDOWN behind a backlog: the newest records go first, the summary goes
// last with the final tally, and Shutdown returns before its deadline.
func TestShipperShutdownKeepsWhatMatters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sp, buf, s, _ := newShipper(t, o2test.Options{}, nil, openobserve.ShipperOptions{InFlight: 4, BatchCount: 100})
		s.SetLatency(200 * time.Millisecond)
		old := lines("old", 9000)
		last := lines("last", 50)
		buf.Add(old...)
		buf.Add(last...)
		start := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
		defer cancel()
		var tally openobserve.Stats
		err := sp.Shutdown(ctx, nil, func() []telemetry.Event {
			tally = sp.Stats()
			return []telemetry.Event{{Time: time.Now(), Type: "o2-extension.summary", Record: []byte(fmt.Sprintf(`{"delivered":%d}`, tally.Delivered))}}
		})
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d >= 1500*time.Millisecond {
			t.Errorf("Shutdown took %v, past its 1.5 s deadline", d)
		}
		got := stored(s)
		for _, ev := range last {
			if txt := strings.Trim(string(ev.Record), `"`); got[txt] != 1 {
				t.Fatalf("last invocation's line %q arrived %d times, want 1", txt, got[txt])
			}
		}
		var summaries int
		for _, r := range s.StreamRecords("default", "lambda") {
			if r["type"] == "o2-extension.summary" {
				summaries++
			}
		}
		if summaries != 1 {
			t.Errorf("%d summary records, want 1", summaries)
		}
		delivered := len(s.StreamRecords("default", "lambda")) - summaries
		if uint64(delivered) != tally.Delivered {
			t.Errorf("summary says %d delivered, the stand-in stored %d", tally.Delivered, delivered)
		}
		// A second call returns at once.
		if err := sp.Shutdown(ctx, nil, nil); err != nil {
			t.Errorf("second Shutdown: %v", err)
		}
	})
}

// Shutdown against a backend that never answers still returns before its
// deadline.
func TestShipperShutdownHangingBackend(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sp, buf, s, _ := newShipper(t, o2test.Options{}, nil, openobserve.ShipperOptions{})
		s.SetFaultFunc(func(int, *http.Request) *o2test.Fault { return &o2test.Fault{Hang: true} })
		buf.Add(lines("x", 100)...)
		ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
		defer cancel()
		start := time.Now()
		_ = sp.Shutdown(ctx, nil, func() []telemetry.Event { return lines("summary", 1) })
		if d := time.Since(start); d > 1500*time.Millisecond {
			t.Errorf("Shutdown took %v, past its deadline", d)
		}
		if st := sp.Stats(); st.BufferedRecords != 100 {
			t.Errorf("BufferedRecords = %d, want the 100 never delivered", st.BufferedRecords)
		}
	})
}

// SHUTDOWN right after an outage: the batches still waiting out their
// backoff give their slots to the final drain, which sends the newest
// records first; nothing is sent twice.
func TestShipperShutdownAfterAnOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sp, buf, s, _ := newShipper(t, o2test.Options{}, nil, openobserve.ShipperOptions{InFlight: 4, BatchCount: 1000})
		var mu sync.Mutex
		down := true
		s.SetFaultFunc(func(int, *http.Request) *o2test.Fault {
			mu.Lock()
			defer mu.Unlock()
			if down {
				return &o2test.Fault{Status: 503}
			}
			return nil
		})
		old := lines("old", 8950)
		last := lines("last", 50)
		buf.Add(old...)
		time.Sleep(3 * time.Second)
		buf.Add(last...)
		synctest.Wait()
		mu.Lock()
		down = false
		mu.Unlock()
		s.SetLatency(200 * time.Millisecond)
		ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
		defer cancel()
		start := time.Now()
		if err := sp.Shutdown(ctx, nil, func() []telemetry.Event { return lines("summary", 1) }); err != nil {
			t.Fatal(err)
		}
		// The drain starts at once, not after a backoff: 9 batches, 4 at a
		// time, 200 ms each, then the summary.
		if d := time.Since(start); d != 800*time.Millisecond {
			t.Errorf("Shutdown took %v, want 800ms (three rounds of 200 ms, then the summary)", d)
		}
		exactlyOnce(t, s, append(old, last...))
		if n := stored(s)["summary-0 padded to look like a log line"]; n != 1 {
			t.Errorf("summary stored %d times, want 1", n)
		}
	})
}

// A reply that is not OpenObserve's, or a 400 about its own state, keeps
// the data, holds no invocation, and tries again after a pause, not at
// once: the failing streak's backoff (at least RetryWaitMin) for a reply
// that is not OpenObserve's, 2 s for OpenObserve's own state.
func TestShipperSlowRetryKeepsTheData(t *testing.T) {
	for _, tt := range []struct {
		name   string
		status int
		body   string
		pause  time.Duration
	}{
		{"html from a proxy", 200, "<html>ok</html>", openobserve.DefaultRetryWaitMin},
		{"quota exceeded", 400, `{"code":400,"message":"Error# Quota exceeded for this organization [default]"}`, 2 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s, o := inProcess(o2test.Options{})
				var mu sync.Mutex
				bad := 1
				real := o.Transport
				o.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
					mu.Lock()
					defer mu.Unlock()
					if bad > 0 {
						bad--
						_ = r.Body.Close()
						return &http.Response{StatusCode: tt.status, Header: http.Header{}, Request: r, Body: io.NopCloser(strings.NewReader(tt.body))}, nil
					}
					return real.RoundTrip(r)
				})
				buf := telemetry.NewBuffer(1 << 20)
				sp := openobserve.NewShipper(openobserve.NewClient(o), buf, openobserve.ShipperOptions{})
				defer func() { _ = sp.Shutdown(context.Background(), nil, nil) }()
				evs := lines("q", 10)
				buf.Add(evs...)
				if err := sp.Flush(t.Context()); !errors.Is(err, openobserve.ErrFailing) {
					t.Fatalf("flush: err = %v, want ErrFailing", err)
				}
				time.Sleep(tt.pause - time.Millisecond)
				synctest.Wait()
				if n := len(s.StreamRecords("default", "lambda")); n != 0 {
					t.Fatalf("%d records stored before the %v pause ended", n, tt.pause)
				}
				time.Sleep(200 * time.Millisecond)
				synctest.Wait()
				exactlyOnce(t, s, evs)
			})
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// A batch whose request was on the wire when SHUTDOWN began, and then
// failed, yields to the final drain instead of retrying its old records in
// its slot: with one slot, the first request after SHUTDOWN carries the
// last invocation's lines, not a retry of what was taken before.
func TestShipperShutdownOnTheWireFailureYields(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sp, buf, s, _ := newShipper(t, o2test.Options{}, nil, openobserve.ShipperOptions{InFlight: 1, BatchCount: 2000})
		var mu sync.Mutex
		calls := 0
		s.SetFaultFunc(func(int, *http.Request) *o2test.Fault {
			mu.Lock()
			defer mu.Unlock()
			calls++
			if calls == 1 {
				return &o2test.Fault{Status: http.StatusServiceUnavailable, Delay: 300 * time.Millisecond}
			}
			return nil
		})
		old := lines("old", 1000)
		last := lines("last", 50)
		buf.Add(old...)
		time.Sleep(600 * time.Millisecond) // the old batch went out at the linger and is on the wire
		synctest.Wait()
		if st := sp.Stats(); st.BufferedRecords != 0 {
			t.Fatalf("%d records still buffered, want the old batch on the wire", st.BufferedRecords)
		}
		buf.Add(last...)
		shutdownAt := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
		defer cancel()
		if err := sp.Shutdown(ctx, nil, nil); err != nil {
			t.Fatal(err)
		}
		exactlyOnce(t, s, append(old, last...))
		var first []byte
		for _, rq := range s.Requests() {
			if !rq.Time.Before(shutdownAt) {
				first = rq.Body
				break
			}
		}
		if !strings.Contains(string(first), "last-49 ") {
			t.Errorf("the first request after SHUTDOWN does not carry the last invocation's newest line: %.80q", first)
		}
	})
}

// A batch's destinations are sent as separate legs: at SHUTDOWN the leg
// that waits (a tenant stream paused by a 503 with Retry-After) yields,
// while the logs' request on the wire is let finish, not cut and sent
// again (which OpenObserve, had it stored them, would duplicate).
func TestShipperShutdownYieldDoesNotCutASiblingOnTheWire(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sp, buf, s, _ := newShipper(t, o2test.Options{}, func(o *openobserve.Options) {
			o.Routes = map[string]string{"platform.report": "http://o2.test/api/default/reports/_json"}
		}, openobserve.ShipperOptions{InFlight: 4})
		s.SetFaultFunc(func(_ int, r *http.Request) *o2test.Fault {
			if strings.Contains(r.URL.Path, "/reports/") {
				return &o2test.Fault{Status: http.StatusServiceUnavailable, RetryAfter: "1", Delay: 10 * time.Millisecond}
			}
			return &o2test.Fault{Delay: 300 * time.Millisecond}
		})
		evs := lines("logs", 100)
		buf.Add(evs...)
		buf.Add(telemetry.Event{Time: time.Now(), Type: "platform.report", RequestID: "r1", Record: []byte(`{"requestId":"r1"}`)})
		time.Sleep(600 * time.Millisecond) // one batch, both legs started at the linger; the report's waits out the pause
		synctest.Wait()
		ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
		defer cancel()
		if err := sp.Shutdown(ctx, nil, nil); err != nil {
			t.Fatal(err)
		}
		exactlyOnce(t, s, evs)
		carried := 0
		for _, rq := range s.Requests() {
			if strings.Contains(string(rq.Body), "logs-0 ") {
				carried++
			}
		}
		if carried != 1 {
			t.Errorf("%d requests carried the logs, want 1: the request on the wire was cut and its records sent again", carried)
		}
	})
}

// While Shutdown settles (the lifecycle waits for the last report), the
// background sends nothing: the batch on the wire that fails then gives
// its old records back instead of retrying them, and no new batch is
// taken; the drain after it starts with the newest records, the ones that
// arrived during the settling included.
func TestShipperShutdownSettlesBeforeTheDrain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sp, buf, s, _ := newShipper(t, o2test.Options{}, nil, openobserve.ShipperOptions{InFlight: 4, BatchCount: 2000})
		var mu sync.Mutex
		calls := 0
		s.SetFaultFunc(func(int, *http.Request) *o2test.Fault {
			mu.Lock()
			defer mu.Unlock()
			calls++
			if calls == 1 {
				return &o2test.Fault{Status: http.StatusServiceUnavailable, Delay: 300 * time.Millisecond}
			}
			return nil
		})
		old := lines("old", 1000)
		report := lines("report", 1)
		buf.Add(old...)
		time.Sleep(600 * time.Millisecond) // the old batch is on the wire, answered 503 at 800 ms
		synctest.Wait()
		settleStart := time.Now()
		var settleEnd time.Time
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		err := sp.Shutdown(ctx, func(context.Context) {
			time.Sleep(400 * time.Millisecond) // the last report comes late
			buf.Add(report...)
			settleEnd = time.Now()
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		exactlyOnce(t, s, append(old, report...))
		var after []o2test.Request
		for _, rq := range s.Requests() {
			if !rq.Time.Before(settleStart) {
				after = append(after, rq)
			}
		}
		if len(after) == 0 || after[0].Time.Before(settleEnd) {
			t.Fatalf("a request went out while Shutdown settled (%d requests after it began)", len(after))
		}
		if !strings.Contains(string(after[0].Body), "report-0 ") {
			t.Errorf("the drain's first request does not carry the record that came while settling: %.80q", after[0].Body)
		}
	})
}

// A record split into parts across several requests, whose first request
// is on the wire when SHUTDOWN comes, goes on to its last part: giving it
// back at the next request would send its first parts twice.
func TestShipperShutdownDoesNotSplitARecordTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sp, buf, s, _ := newShipper(t, o2test.Options{}, func(o *openobserve.Options) {
			o.MaxBatchBytes = 64 << 10
			o.MaxRecordBytes = 16 << 10
		}, openobserve.ShipperOptions{InFlight: 1})
		s.SetLatency(300 * time.Millisecond)
		huge := strings.Repeat("0123456789abcdef", 200<<10/16)
		buf.Add(telemetry.Event{Time: time.Now(), Type: "function", Record: []byte(strconv.Quote(huge))})
		time.Sleep(100 * time.Millisecond) // the first of its requests is on the wire
		synctest.Wait()
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		if err := sp.Shutdown(ctx, nil, nil); err != nil {
			t.Fatal(err)
		}
		parts := map[string]int{}
		n := 0
		for _, r := range s.StreamRecords("default", "lambda") {
			if p, ok := r["part"].(string); ok {
				parts[p]++
				n++
			}
		}
		if n < 4 {
			t.Fatalf("%d parts stored, want the record split over several requests", n)
		}
		for p, c := range parts {
			if c != 1 {
				t.Errorf("part %s stored %d times", p, c)
			}
		}
		if len(parts) != n {
			t.Errorf("%d distinct parts of %d stored", len(parts), n)
		}
	})
}
