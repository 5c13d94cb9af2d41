package lambdatest

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func TestBatchReady(t *testing.T) {
	t0 := time.Date(2025, 6, 1, 8, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		now       time.Time
		n, size   int
		flush     bool
		wantReady bool
		wantWait  time.Duration
	}{
		{name: "empty", now: t0, wantWait: -1},
		{name: "young", now: t0.Add(400 * time.Millisecond), n: 3, size: 300, wantWait: 600 * time.Millisecond},
		{name: "timeout", now: t0.Add(time.Second), n: 3, size: 300, wantReady: true},
		{name: "items", now: t0, n: 1000, size: 300, wantReady: true},
		{name: "bytes", now: t0, n: 3, size: 262144, wantReady: true},
		{name: "flush", now: t0, n: 1, size: 10, flush: true, wantReady: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ready, wait := batchReady(tt.now, tt.n, tt.size, t0, 1000, 262144, time.Second, tt.flush)
			if ready != tt.wantReady || wait != tt.wantWait {
				t.Errorf("batchReady = %v %v, want %v %v", ready, wait, tt.wantReady, tt.wantWait)
			}
		})
	}
}

func TestRetryDelay(t *testing.T) {
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		if got := retryDelay(100*time.Millisecond, i); got != w*time.Millisecond {
			t.Errorf("retryDelay(%d) = %v, want %v", i, got, w*time.Millisecond)
		}
	}
}

// fakeListener answers delivery POSTs inside a synctest bubble.
type fakeListener struct {
	mu     sync.Mutex
	at     []time.Time
	bodies [][]Event
	status func(n int) int             // reply for POST number n
	hold   func(n int) <-chan struct{} // optional: block POST n until closed
}

func (f *fakeListener) RoundTrip(r *http.Request) (*http.Response, error) {
	body, _ := io.ReadAll(r.Body)
	evs, err := DecodeBatch(body)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	n := len(f.at)
	f.at = append(f.at, time.Now())
	f.bodies = append(f.bodies, evs)
	f.mu.Unlock()
	if f.hold != nil {
		if ch := f.hold(n); ch != nil {
			<-ch
		}
	}
	status := http.StatusOK
	if f.status != nil {
		status = f.status(n)
	}
	if status < 0 {
		return nil, errors.New("connection refused")
	}
	return &http.Response{StatusCode: status, Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
}

func (f *fakeListener) posts() ([]time.Time, [][]Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.at...), append([][]Event(nil), f.bodies...)
}

// newTestSubscriber runs a subscriber against f until the test ends.
func newTestSubscriber(t *testing.T, f *fakeListener, maxQueue, retries int, record func(Event)) *subscriber {
	sub := subscription{
		schema: "2022-12-13", types: map[string]bool{"platform": true, "function": true},
		url: "http://127.0.0.1:1/x", maxItems: 1000, maxBytes: 262144, timeout: time.Second,
	}
	s := newSubscriber("ext", sub, &http.Client{Transport: f}, maxQueue, retries, 100*time.Millisecond, record)
	var wg sync.WaitGroup
	wg.Go(func() { s.run(t.Context()) })
	t.Cleanup(func() { s.close(); wg.Wait() })
	return s
}

func fnEvent(text string) Event {
	rec, _ := json.Marshal(text)
	return Event{Time: time.Now(), Type: "function", Record: rec}
}

func TestSubscriberTimeoutAndPause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeListener{}
		s := newTestSubscriber(t, f, 100, 0, nil)
		for _, l := range []string{"a", "b", "c"} {
			s.offer(fnEvent(l))
		}
		s.offer(Event{Time: time.Now(), Type: "extension", Record: json.RawMessage(`"not subscribed"`)})
		time.Sleep(999 * time.Millisecond)
		synctest.Wait()
		if at, _ := f.posts(); len(at) != 0 {
			t.Fatalf("%d POSTs before timeoutMs", len(at))
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		at, bodies := f.posts()
		if len(at) != 1 || len(bodies[0]) != 3 {
			t.Fatalf("posts = %v, want one batch of 3 subscribed events", bodies)
		}

		// Frozen: nothing ships, however long; the thaw ships at once.
		s.setPaused(true)
		s.offer(fnEvent("d"))
		time.Sleep(time.Hour)
		synctest.Wait()
		if at, _ := f.posts(); len(at) != 1 {
			t.Fatalf("%d POSTs while paused", len(at))
		}
		s.setPaused(false)
		synctest.Wait()
		if at, _ := f.posts(); len(at) != 2 {
			t.Fatalf("%d POSTs after the thaw, want 2", len(at))
		}
	})
}

func TestSubscriberRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeListener{status: func(n int) int {
			switch n {
			case 0:
				return -1 // connection error
			case 1:
				return http.StatusServiceUnavailable
			}
			return http.StatusOK
		}}
		s := newTestSubscriber(t, f, 100, 5, nil)
		start := time.Now()
		s.offer(fnEvent("a"))
		s.flushNow()
		time.Sleep(time.Second)
		synctest.Wait()
		at, bodies := f.posts()
		want := []time.Duration{0, 100 * time.Millisecond, 300 * time.Millisecond}
		if len(at) != len(want) {
			t.Fatalf("%d attempts, want %d", len(at), len(want))
		}
		for i, w := range want {
			if at[i].Sub(start) != w || len(bodies[i]) != 1 {
				t.Errorf("attempt %d at %v with %d events, want at %v with 1", i, at[i].Sub(start), len(bodies[i]), w)
			}
		}
		if a, fl := s.counts(); a != 3 || fl != 2 {
			t.Errorf("counts = %d attempts %d failures, want 3 and 2", a, fl)
		}
	})
}

func TestSubscriberDropsAndReports(t *testing.T) {
	t.Run("queue overflow", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			release := make(chan struct{})
			f := &fakeListener{hold: func(n int) <-chan struct{} {
				if n == 0 {
					return release
				}
				return nil
			}}
			var recorded []Event
			var mu sync.Mutex
			s := newTestSubscriber(t, f, 5, 0, func(ev Event) { mu.Lock(); recorded = append(recorded, ev); mu.Unlock() })
			s.offer(fnEvent("first"))
			s.flushNow()
			synctest.Wait() // the first POST is held in flight
			for i := range 10 {
				s.offer(fnEvent(ScenarioLine("m", 0, i, 10)))
			}
			// Queue bound 5 = 1 in flight + 4 queued; 6 dropped.
			close(release)
			synctest.Wait()
			_, bodies := f.posts()
			if len(bodies) != 2 {
				t.Fatalf("%d POSTs, want 2", len(bodies))
			}
			second := bodies[1]
			if len(second) != 5 || second[4].Type != "platform.logsDropped" {
				t.Fatalf("second batch = %v, want 4 lines and logsDropped", second)
			}
			var d struct {
				DroppedRecords, DroppedBytes int
				Reason                       string
			}
			_ = json.Unmarshal(second[4].Record, &d)
			if d.DroppedRecords != 6 || d.DroppedBytes <= 0 || d.Reason == "" {
				t.Errorf("logsDropped = %+v, want 6 records", d)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(recorded) != 1 || recorded[0].Type != "platform.logsDropped" {
				t.Errorf("recorded = %v", recorded)
			}
		})
	})
	t.Run("retries exhausted", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := &fakeListener{status: func(n int) int {
				if n < 3 {
					return http.StatusInternalServerError
				}
				return http.StatusOK
			}}
			s := newTestSubscriber(t, f, 100, 2, nil)
			s.offer(fnEvent("a"))
			s.offer(fnEvent("b"))
			s.flushNow()
			time.Sleep(time.Second)
			synctest.Wait()
			_, bodies := f.posts()
			if len(bodies) != 4 || len(bodies[3]) != 1 || bodies[3][0].Type != "platform.logsDropped" {
				t.Fatalf("bodies = %v, want 3 failed attempts then logsDropped", bodies)
			}
			var d struct{ DroppedRecords int }
			_ = json.Unmarshal(bodies[3][0].Record, &d)
			if d.DroppedRecords != 2 {
				t.Errorf("droppedRecords = %d, want 2", d.DroppedRecords)
			}
		})
	})
}

func TestEncodeFor(t *testing.T) {
	obj := Event{Time: time.Date(2025, 6, 1, 8, 0, 0, 123456789, time.UTC), Type: "function",
		Record: json.RawMessage(`{"level":"INFO","message":"hi"}`)}
	tests := []struct {
		schema string
		ev     Event
		want   string
	}{
		{"2022-12-13", obj, `{"time":"2025-06-01T08:00:00.123Z","type":"function","record":{"level":"INFO","message":"hi"}}`},
		{"2022-07-01", obj, `{"time":"2025-06-01T08:00:00.123Z","type":"function","record":"{\"level\":\"INFO\",\"message\":\"hi\"}"}`},
		{"2022-07-01", Event{Time: obj.Time, Type: "platform.start", Record: json.RawMessage(`{"requestId":"r"}`)},
			`{"time":"2025-06-01T08:00:00.123Z","type":"platform.start","record":{"requestId":"r"}}`},
	}
	for _, tt := range tests {
		if got := string(encodeFor(tt.schema, tt.ev)); got != tt.want {
			t.Errorf("encodeFor(%s) = %s, want %s", tt.schema, got, tt.want)
		}
	}
}
