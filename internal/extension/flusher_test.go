package extension

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/o2-extension/o2-extension/internal/telemetry"
	"github.com/sirupsen/logrus"
)

// fakeSender records batches; fail decides the outcome of the n-th call
// (1-based); hold, when set, blocks every Send until it is closed.
type fakeSender struct {
	mu    sync.Mutex
	calls int
	got   []telemetry.Event
	fail  func(n int) error
	hold  chan struct{}
	// bounded counts the calls whose context had a deadline: the final
	// drain's (background drains have none).
	bounded int
}

func (s *fakeSender) Send(ctx context.Context, evs []telemetry.Event) (SendResult, []telemetry.Event, error) {
	if s.hold != nil {
		select {
		case <-s.hold:
		case <-ctx.Done():
			return SendResult{}, evs, ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if _, ok := ctx.Deadline(); ok {
		s.bounded++
	}
	if s.fail != nil {
		if err := s.fail(s.calls); err != nil {
			return SendResult{Requests: 1}, evs, err
		}
	}
	s.got = append(s.got, evs...)
	return SendResult{Sent: len(evs), Successful: len(evs), Requests: 1}, nil, nil
}

func (s *fakeSender) snapshot() (calls int, got []telemetry.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls, append([]telemetry.Event(nil), s.got...)
}

func quietLog() *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l)
}

func events(n int) []telemetry.Event {
	out := make([]telemetry.Event, n)
	for i := range out {
		out[i] = telemetry.Event{Time: time.Unix(0, 0), Type: "function", Record: json.RawMessage(strconv.Quote("line " + strconv.Itoa(i)))}
	}
	return out
}

// checkOrder fails unless got is exactly events(n) in order.
func checkOrder(t *testing.T, got []telemetry.Event, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("delivered %d events, want %d", len(got), n)
	}
	for i, e := range got {
		if want := strconv.Quote("line " + strconv.Itoa(i)); string(e.Record) != want {
			t.Fatalf("event %d = %s, want %s", i, e.Record, want)
		}
	}
}

func newTestFlusher(t *testing.T, s Sender, bufBytes, batch int, interval time.Duration) (*flusher, *telemetry.Buffer) {
	buf := telemetry.NewBuffer(bufBytes)
	f := newFlusher(buf, s, quietLog(), batch, 1<<20, interval)
	f.start(t.Context())
	t.Cleanup(f.stop)
	return f, buf
}

func TestFlushDrainsEverythingInBatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &fakeSender{}
		f, buf := newTestFlusher(t, s, 1<<20, 100, time.Hour)
		buf.SetBatch(1000, 1<<30) // no full-batch sends: only the flush
		buf.Add(events(250)...)
		if !f.flush(t.Context()) {
			t.Fatal("flush did not finish")
		}
		calls, got := s.snapshot()
		if calls != 3 {
			t.Errorf("sends = %d, want 3", calls)
		}
		checkOrder(t, got, 250)
	})
}

func TestContinuousFlushesEveryIntervalOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &fakeSender{}
		f, buf := newTestFlusher(t, s, 1<<20, 100, 5*time.Second)
		f.setContinuous(true)
		f.kick(0) // first flush at once: nothing to send yet
		synctest.Wait()
		buf.Add(events(1)...)
		time.Sleep(4 * time.Second)
		synctest.Wait()
		if calls, _ := s.snapshot(); calls != 0 {
			t.Fatalf("sent %d times before the interval elapsed", calls)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if calls, _ := s.snapshot(); calls != 1 {
			t.Fatalf("sends after one interval = %d, want 1", calls)
		}
		// A quiet spell sends nothing: an interval with an empty buffer is
		// not a request.
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		if calls, _ := s.snapshot(); calls != 1 {
			t.Fatalf("sends after idle = %d, want 1", calls)
		}
		// After the quiet spell: one send within an interval, not a burst.
		buf.Add(events(1)...)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if calls, _ := s.snapshot(); calls != 2 {
			t.Fatalf("sends after the quiet spell = %d, want exactly 2", calls)
		}
	})
}

func TestFullBatchIsSentWithoutAFlushCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &fakeSender{}
		_, buf := newTestFlusher(t, s, 1<<20, 10, time.Hour)
		buf.Add(events(9)...)
		synctest.Wait()
		if calls, _ := s.snapshot(); calls != 0 {
			t.Fatalf("sent a partial batch: %d sends", calls)
		}
		buf.Add(events(1)...)
		synctest.Wait()
		if calls, got := s.snapshot(); calls != 1 || len(got) != 10 {
			t.Fatalf("after a full batch: %d sends, %d events; want 1, 10", calls, len(got))
		}
	})
}

func TestSendErrors(t *testing.T) {
	for _, tc := range []struct {
		name          string
		err           error
		wantKept      int // events still buffered after the failing flush
		wantRejected  uint64
		retryImmedOK  bool // a second flush at once sends again
		retryInterval bool // a flush one interval later sends again
	}{
		{"transient", fmt.Errorf("post: %w", context.DeadlineExceeded), 5, 0, true, true},
		{"unauthorized", fmt.Errorf("401: %w", ErrUnauthorized), 5, 0, false, true},
		{"rejected", fmt.Errorf("400: %w", ErrRejected), 0, 5, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := &fakeSender{fail: func(n int) error {
					if n == 1 {
						return tc.err
					}
					return nil
				}}
				f, buf := newTestFlusher(t, s, 1<<20, 100, 5*time.Second)
				buf.Add(events(5)...)
				f.flush(t.Context())
				if got := buf.Len(); got != tc.wantKept {
					t.Fatalf("buffered after failure = %d, want %d", got, tc.wantKept)
				}
				if got := f.Stats().Rejected; got != tc.wantRejected {
					t.Errorf("rejected = %d, want %d", got, tc.wantRejected)
				}
				f.flush(t.Context())
				calls, _ := s.snapshot()
				if sentAgain := calls == 2; sentAgain != (tc.retryImmedOK && tc.wantKept > 0) {
					t.Fatalf("immediate retry sent again = %v (calls %d)", sentAgain, calls)
				}
				time.Sleep(5 * time.Second)
				f.flush(t.Context())
				_, got := s.snapshot()
				if tc.retryInterval {
					checkOrder(t, got, 5) // delivered once, in order
				} else if len(got) != 0 {
					t.Fatalf("rejected events were sent again: %d", len(got))
				}
			})
		})
	}
}

func TestFinalFlushIgnoresPause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &fakeSender{fail: func(n int) error {
			if n == 1 {
				return ErrUnauthorized
			}
			return nil
		}}
		f, buf := newTestFlusher(t, s, 1<<20, 100, time.Minute)
		buf.Add(events(3)...)
		f.flush(t.Context())
		f.finishWithin(t.Context(), 0)
		_, got := s.snapshot()
		checkOrder(t, got, 3)
	})
}

func TestFlushBudgetLeavesTheDrainRunning(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &fakeSender{hold: make(chan struct{})}
		f, buf := newTestFlusher(t, s, 1<<20, 100, time.Hour)
		buf.Add(events(4)...)
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		start := time.Now()
		if f.flush(ctx) {
			t.Fatal("flush reported done while the sender was held")
		}
		if waited := time.Since(start); waited != 2*time.Second {
			t.Fatalf("waited %v, want the 2s budget", waited)
		}
		close(s.hold) // the backend answers after the caller moved on
		synctest.Wait()
		_, got := s.snapshot()
		checkOrder(t, got, 4) // once: the drain was not cancelled and resent
	})
}

func TestDropsAreReportedAsARecord(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &fakeSender{}
		one := events(15)[14].Size() // the largest of them
		f, buf := newTestFlusher(t, s, 10*one, 1000, time.Hour)
		buf.SetBatch(1000, 1<<30)
		buf.Add(events(15)...) // 5 oldest dropped
		f.flush(t.Context())
		_, got := s.snapshot()
		if len(got) == 0 || got[0].Type != DroppedType {
			t.Fatalf("first record sent = %+v, want a %s record", got, DroppedType)
		}
		var rec struct{ DroppedRecords int }
		if err := json.Unmarshal(got[0].Record, &rec); err != nil || rec.DroppedRecords != 5 {
			t.Fatalf("drop record = %s (%v), want droppedRecords 5", got[0].Record, err)
		}
		if st := f.Stats(); st.DroppedRecords != 5 {
			t.Errorf("stats dropped = %d, want 5", st.DroppedRecords)
		}
		// Reported once: a second flush adds no new drop record.
		buf.Add(events(1)...)
		f.flush(t.Context())
		_, got = s.snapshot()
		n := 0
		for _, e := range got {
			if e.Type == DroppedType {
				n++
			}
		}
		if n != 1 {
			t.Errorf("drop records = %d, want 1", n)
		}
	})
}

// A kick at INVOKE sends the leftovers it saw, not what arrives meanwhile.
func TestKickIsBoundedToTheLeftovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &fakeSender{}
		f, buf := newTestFlusher(t, s, 1<<20, 3, time.Hour)
		buf.SetBatch(1000, 1<<30)
		buf.Add(events(10)...)
		f.kick(4)
		synctest.Wait()
		calls, got := s.snapshot()
		checkOrder(t, got, 4)
		if calls != 2 {
			t.Errorf("sends = %d, want 2 (a batch of 3, then 1)", calls)
		}
		if n := buf.Len(); n != 6 {
			t.Errorf("left buffered = %d, want 6", n)
		}
	})
}

// At SHUTDOWN the final drain takes over from a background drain in
// progress after its current request (never by cutting it short), and goes
// before a background request queued behind it.
func TestFinalDrainTakesOverAfterTheCurrentRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &fakeSender{hold: make(chan struct{})}
		f, buf := newTestFlusher(t, s, 1<<20, 3, time.Hour)
		buf.SetBatch(1000, 1<<30)
		buf.Add(events(10)...)
		f.kick(0)
		synctest.Wait() // the background drain waits on its first request
		running := f.current()
		if running == nil {
			t.Fatal("no drain in progress")
		}
		f.kick(0) // queued behind it
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		done := f.finish(ctx)
		close(s.hold)
		if !f.wait(ctx, done) {
			t.Fatal("the final drain did not finish")
		}
		s.mu.Lock()
		calls, bounded := s.calls, s.bounded
		got := append([]telemetry.Event(nil), s.got...)
		s.mu.Unlock()
		checkOrder(t, got, 10)
		if calls != 4 || bounded != 3 {
			t.Errorf("sends = %d of which %d by the final drain, want 4 and 3: one background request, then the final drain sends the rest", calls, bounded)
		}
	})
}

// abort cuts short only the drain it was given, not the final drain that
// started after it.
func TestAbortSparesTheNextDrain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &fakeSender{hold: make(chan struct{})}
		f, buf := newTestFlusher(t, s, 1<<20, 100, time.Hour)
		buf.Add(events(2)...)
		f.kick(0)
		synctest.Wait()
		stale := f.current()
		close(s.hold)
		synctest.Wait() // that drain has ended
		s.mu.Lock()
		s.hold = make(chan struct{})
		hold := s.hold
		s.mu.Unlock()
		buf.Add(events(3)[2:]...)
		done := f.finish(t.Context())
		synctest.Wait() // the final drain waits on its request
		f.abort(stale)
		close(hold)
		if !f.wait(t.Context(), done) {
			t.Fatal("the final drain did not finish")
		}
		_, got := s.snapshot()
		checkOrder(t, got, 3)
	})
}

// stuckThenSlow is a backend whose first request never gets an answer and
// whose later ones take delay each.
type stuckThenSlow struct {
	delay time.Duration
	mu    sync.Mutex
	calls int
	got   []telemetry.Event
}

func (s *stuckThenSlow) Send(ctx context.Context, evs []telemetry.Event) (SendResult, []telemetry.Event, error) {
	s.mu.Lock()
	s.calls++
	first := s.calls == 1
	s.mu.Unlock()
	wait := time.After(s.delay)
	if first {
		wait = nil
	}
	select {
	case <-wait:
	case <-ctx.Done():
		return SendResult{Requests: 1}, evs, ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, evs...)
	return SendResult{Sent: len(evs), Successful: len(evs), Requests: 1}, nil, nil
}

// At SHUTDOWN a background request stuck on a hanging connection is cut
// short after the grace, and the final drain sends everything with the rest
// of the time.
func TestFinishWithinCutsAStuckRequestAfterTheGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &stuckThenSlow{delay: 3 * time.Second}
		f, buf := newTestFlusher(t, s, 1<<20, 100, time.Hour)
		buf.SetBatch(1000, 1<<30)
		buf.Add(events(10)...)
		f.kick(0)
		synctest.Wait() // the background request hangs
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		start := time.Now()
		if !f.finishWithin(ctx, 5*time.Second) {
			t.Fatalf("the final drain did not finish within the deadline")
		}
		if took := time.Since(start); took != 8*time.Second {
			t.Errorf("took %v, want 8s: the 5 s grace, then one 3 s request", took)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		checkOrder(t, s.got, 10)
		if s.calls != 2 {
			t.Errorf("requests = %d, want 2 (the stuck one, then the final one)", s.calls)
		}
	})
}
