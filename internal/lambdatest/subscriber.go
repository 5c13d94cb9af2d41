package lambdatest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// subscription is a validated Telemetry API subscription request.
type subscription struct {
	schema   string
	types    map[string]bool
	url      string // where the emulator POSTs: http://127.0.0.1:PORT/path
	maxItems int
	maxBytes int
	timeout  time.Duration
}

// overflowReason is the reason logsDropped gives when a subscriber's queue
// is full; the wording is the Telemetry API schema reference's example.
const overflowReason = "Consumer seems to have fallen behind as it has not acknowledged receipt of logs."

// queued is one encoded event waiting for delivery.
type queued struct {
	data []byte
	at   time.Time // when it was queued: the start of its batch's timeoutMs
}

// subscriber delivers one extension's subscription: a bounded queue and a
// single delivery loop, so at most one POST is in flight, as on Lambda.
//
// Lock order: the platform's mutex may be held while calling offer, pause,
// resume and flushNow; the subscriber never calls the platform with its own
// mutex held (record is called unlocked).
type subscriber struct {
	name     string
	sub      subscription
	client   *http.Client
	maxQueue int           // queue bound before records are dropped
	retries  int           // extra attempts per batch before it is dropped
	backoff  time.Duration // first retry delay, doubled per attempt
	record   func(Event)   // notes an event this subscriber generated (logsDropped)
	stop     context.CancelFunc

	mu          sync.Mutex
	changed     chan struct{} // closed and replaced on every state change
	queue       []queued
	bytes       int
	paused      bool // the environment is frozen: take no new batch
	flush       bool // ship whatever is queued at once (shutdown)
	closed      bool
	inflight    bool // a batch is taken and not finished (posting or between retries)
	posting     bool // a POST of it is on the wire
	dropRecords int
	dropBytes   int
	dropReason  string
	attempts    int // POSTs tried, for tests
	failures    int // POSTs that failed, for tests
}

func newSubscriber(name string, sub subscription, client *http.Client, maxQueue, retries int, backoff time.Duration, record func(Event)) *subscriber {
	return &subscriber{
		name: name, sub: sub, client: client, maxQueue: maxQueue,
		retries: retries, backoff: backoff, record: record,
		changed: make(chan struct{}),
	}
}

// broadcastLocked wakes everyone waiting for a change; s.mu must be held.
func (s *subscriber) broadcastLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// wants reports whether the subscription includes events of type typ.
func (s *subscriber) wants(typ string) bool { return s.sub.types[category(typ)] }

// offer queues ev if the subscriber wants it; a full queue drops it and
// counts the drop for the next platform.logsDropped.
func (s *subscriber) offer(ev Event) {
	if !s.wants(ev.Type) {
		return
	}
	data := encodeFor(s.sub.schema, ev)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if len(s.queue) >= s.maxQueue {
		s.dropRecords++
		s.dropBytes += len(data)
		if s.dropReason == "" {
			s.dropReason = overflowReason
		}
		return
	}
	s.queue = append(s.queue, queued{data: data, at: time.Now()})
	s.bytes += len(data)
	s.broadcastLocked()
}

func (s *subscriber) setPaused(v bool) {
	s.mu.Lock()
	s.paused = v
	s.broadcastLocked()
	s.mu.Unlock()
}

// flushNow makes every queued event ship at once: an input stream closed.
func (s *subscriber) flushNow() {
	s.mu.Lock()
	s.flush = true
	s.broadcastLocked()
	s.mu.Unlock()
}

// close stops the delivery loop and aborts an in-flight POST; what is still
// queued is lost, like the buffer of a sandbox that is gone.
func (s *subscriber) close() {
	s.mu.Lock()
	s.closed = true
	s.broadcastLocked()
	s.mu.Unlock()
	if s.stop != nil {
		s.stop()
	}
}

// waitIdle waits until no POST is on the wire (or the subscriber is
// closed). A batch between retries does not count: its retry waits for the
// thaw, so waiting for it to finish would deadlock a freeze.
func (s *subscriber) waitIdle(ctx context.Context) error {
	return s.waitUntil(ctx, func() bool { return !s.posting })
}

// waitDelivered waits until every event queued so far has been delivered
// (or dropped after its retries): the queue is empty and no batch is in
// flight; or until the subscriber is closed or ctx ends.
func (s *subscriber) waitDelivered(ctx context.Context) error {
	return s.waitUntil(ctx, func() bool { return len(s.queue) == 0 && !s.inflight })
}

// waitUntil waits until cond (called with s.mu held) holds or the
// subscriber is closed; or until ctx ends.
func (s *subscriber) waitUntil(ctx context.Context, cond func() bool) error {
	for {
		s.mu.Lock()
		if cond() || s.closed {
			s.mu.Unlock()
			return nil
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// counts returns the POSTs attempted and failed so far.
func (s *subscriber) counts() (attempts, failures int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts, s.failures
}

// batchReady decides whether the queue ships now: at maxItems, at maxBytes,
// when the oldest queued event has waited timeout, or at once when flushing.
// Otherwise it returns how long until the timeout fires.
func batchReady(now time.Time, n, size int, oldest time.Time, maxItems, maxBytes int, timeout time.Duration, flush bool) (bool, time.Duration) {
	if n == 0 {
		return false, -1
	}
	if flush || n >= maxItems || size >= maxBytes {
		return true, 0
	}
	due := oldest.Add(timeout)
	if !now.Before(due) {
		return true, 0
	}
	return false, due.Sub(now)
}

// take waits for the next batch and marks it in flight. It returns the
// body and the number of events in it, or ok=false once closed.
func (s *subscriber) take(ctx context.Context) (body []byte, n int, ok bool) {
	s.mu.Lock()
	for {
		if s.closed || ctx.Err() != nil {
			s.mu.Unlock()
			return nil, 0, false
		}
		wait := time.Duration(-1)
		if !s.paused && len(s.queue) > 0 {
			ready, w := batchReady(time.Now(), len(s.queue), s.bytes, s.queue[0].at,
				s.sub.maxItems, s.sub.maxBytes, s.sub.timeout, s.flush)
			if ready {
				body, n = s.buildLocked()
				s.inflight = true
				s.mu.Unlock()
				return body, n, true
			}
			wait = w
		}
		ch := s.changed
		s.mu.Unlock()
		var timer *time.Timer
		var fire <-chan time.Time
		if wait >= 0 {
			timer = time.NewTimer(wait)
			fire = timer.C
		}
		select {
		case <-ch:
		case <-fire:
		case <-ctx.Done():
		}
		if timer != nil {
			timer.Stop()
		}
		s.mu.Lock()
	}
}

// buildLocked renders the head of the queue as a JSON array of at most
// maxItems events and maxBytes bytes (one oversized event still ships).
func (s *subscriber) buildLocked() ([]byte, int) {
	var b bytes.Buffer
	b.WriteByte('[')
	n, size := 0, 0
	for _, q := range s.queue {
		if n >= s.sub.maxItems || (n > 0 && size+len(q.data) > s.sub.maxBytes) {
			break
		}
		if n > 0 {
			b.WriteByte(',')
		}
		b.Write(q.data)
		n++
		size += len(q.data)
	}
	b.WriteByte(']')
	return b.Bytes(), n
}

// run is the delivery loop: one batch at a time, retried with exponential
// backoff while the listener fails (connection error or non-2xx), dropped
// and reported in platform.logsDropped after s.retries retries.
func (s *subscriber) run(ctx context.Context) {
	for {
		body, n, ok := s.take(ctx)
		if !ok {
			return
		}
		var err error
		for attempt := 0; ; attempt++ {
			err = s.post(ctx, body)
			if err == nil || attempt >= s.retries || ctx.Err() != nil {
				break
			}
			if !s.sleep(ctx, retryDelay(s.backoff, attempt)) {
				return
			}
		}
		if ctx.Err() != nil {
			return
		}
		s.finish(n, err)
	}
}

// retryDelay is the wait before retry number attempt+1: backoff doubled per
// attempt, capped at one second so a recovering listener is found quickly.
func retryDelay(backoff time.Duration, attempt int) time.Duration {
	d := backoff
	for range attempt {
		d *= 2
		if d >= time.Second {
			return time.Second
		}
	}
	return d
}

// sleep waits d, then until the environment is thawed: a frozen sandbox
// makes no delivery attempts. It returns false once closed.
func (s *subscriber) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.paused && !s.closed {
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		}
		s.mu.Lock()
		if ctx.Err() != nil {
			return false
		}
	}
	return !s.closed
}

// post sends one batch. Failure is a connection error or a non-2xx reply.
func (s *subscriber) post(ctx context.Context, body []byte) error {
	s.mu.Lock()
	s.attempts++
	s.posting = true
	s.mu.Unlock()
	err := s.doPost(ctx, body)
	s.mu.Lock()
	if err != nil {
		s.failures++
	}
	s.posting = false
	s.broadcastLocked()
	s.mu.Unlock()
	return err
}

func (s *subscriber) doPost(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.sub.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("listener replied %s", resp.Status)
	}
	return nil
}

// finish removes a delivered (or abandoned) batch from the queue and, when
// records were dropped, queues platform.logsDropped now that there is room.
func (s *subscriber) finish(n int, err error) {
	s.mu.Lock()
	if err != nil {
		for _, q := range s.queue[:n] {
			s.dropBytes += len(q.data)
		}
		s.dropRecords += n
		s.dropReason = fmt.Sprintf("delivery failed after %d attempts: %v", s.retries+1, err)
	}
	for _, q := range s.queue[:n] {
		s.bytes -= len(q.data)
	}
	s.queue = append(s.queue[:0:0], s.queue[n:]...)
	s.inflight = false
	var dropped *Event
	if s.dropRecords > 0 && len(s.queue) < s.maxQueue && !s.closed {
		rec, _ := json.Marshal(map[string]any{
			"droppedBytes":   s.dropBytes,
			"droppedRecords": s.dropRecords,
			"reason":         s.dropReason,
		})
		ev := Event{Time: time.Now().UTC(), Type: "platform.logsDropped", Record: rec}
		if s.wants(ev.Type) {
			data := encodeFor(s.sub.schema, ev)
			s.queue = append(s.queue, queued{data: data, at: time.Now()})
			s.bytes += len(data)
		}
		s.dropRecords, s.dropBytes, s.dropReason = 0, 0, ""
		dropped = &ev
	}
	s.broadcastLocked()
	s.mu.Unlock()
	if dropped != nil && s.record != nil {
		s.record(*dropped)
	}
}
