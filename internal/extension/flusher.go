package extension

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/o2-extension/o2-extension/internal/telemetry"
	"github.com/sirupsen/logrus"
)

// SendResult is what a Sender reports about one Send.
type SendResult struct {
	Sent       int    // records posted
	Successful int    // records OpenObserve stored
	Failed     int    // records OpenObserve rejected (not retried)
	Missing    int    // records OpenObserve silently dropped
	Error      string // OpenObserve's last per-record error
	Requests   int    // HTTP requests, retries included
	Bytes      int    // bytes on the wire
}

// Sender delivers one batch of events. It returns the events it could not
// deliver, which the flusher puts back in the buffer. Errors that wrap
// ErrRejected or ErrUnauthorized change what the flusher does next.
type Sender interface {
	Send(ctx context.Context, evs []telemetry.Event) (SendResult, []telemetry.Event, error)
}

var (
	// ErrRejected marks a batch the backend refused as invalid (HTTP 400):
	// sending it again cannot succeed, so it is dropped and counted.
	ErrRejected = errors.New("extension: batch rejected as invalid")
	// ErrUnauthorized marks refused credentials or an unknown organization:
	// the data is kept and sending pauses for one flush interval.
	ErrUnauthorized = errors.New("extension: credentials or organization refused")
)

// FlushStats counts what the flusher has done.
type FlushStats struct {
	Delivered      uint64 // records OpenObserve stored
	Failed         uint64 // records OpenObserve rejected
	Missing        uint64 // records OpenObserve silently dropped
	Rejected       uint64 // records dropped after a 400
	Requests       uint64
	Bytes          uint64
	SendErrors     uint64
	DroppedRecords uint64 // dropped from the full buffer (including put-backs that no longer fit)
	DroppedBytes   uint64
}

// flushRequest asks for one drain of the buffer; done is closed when a drain
// that started after the request was made has finished.
type flushRequest struct {
	ctx context.Context // bounds the final drain; background drains have the flusher's
	// limit bounds how many events the drain takes (0: until the buffer is
	// empty). A kick at INVOKE sends only the leftovers from before the
	// freeze: the new invocation's own events wait for their flush rule.
	limit int
	done  chan struct{}
}

// flusher owns every send: one goroutine drains the buffer, so the same
// records are never in flight twice, and callers only ever wait on it with
// their own deadline. A caller that stops waiting (end of an invocation's
// flush budget) leaves the drain running: the sandbox freezes it and it
// resumes at the next thaw, so nothing is cancelled half-sent.
type flusher struct {
	buf        *telemetry.Buffer
	send       Sender
	log        *logrus.Entry
	batchCount int
	batchBytes int
	interval   time.Duration

	reqs chan flushRequest
	// finals carries the SHUTDOWN drain, which goes before any queued
	// background request; yield makes a background drain in progress stop
	// after its current request, so that final drain starts without cutting
	// a request short (a request cut short may have been stored already,
	// and would be sent twice).
	finals chan flushRequest
	yield  atomic.Bool
	wake   chan struct{}
	quit   chan struct{}
	wg     sync.WaitGroup

	continuous atomic.Bool
	lastStart  atomic.Int64 // unix ns of the last drain's start

	mu            sync.Mutex
	stats         FlushStats
	pausedUntil   time.Time
	cancelCurrent context.CancelFunc
	running       chan struct{} // closed when the drain in progress ends
	runningSince  time.Time     // when the drain in progress started
	reportedDrop  uint64        // buffer drops already reported
	lastAuthLog   time.Time
	finalDone     chan struct{} // the final drain's, once asked for
}

func newFlusher(buf *telemetry.Buffer, send Sender, log *logrus.Entry, batchCount, batchBytes int, interval time.Duration) *flusher {
	buf.SetBatch(batchCount, batchBytes)
	return &flusher{
		buf:        buf,
		send:       send,
		log:        log,
		batchCount: batchCount,
		batchBytes: batchBytes,
		interval:   interval,
		reqs:       make(chan flushRequest, 16),
		finals:     make(chan flushRequest, 1),
		wake:       make(chan struct{}, 1),
		quit:       make(chan struct{}),
	}
}

// start runs the flusher goroutine until stop.
func (f *flusher) start(ctx context.Context) {
	f.wg.Go(func() { f.run(ctx) })
}

// stop ends the goroutine, aborting a drain in progress, and waits for it.
func (f *flusher) stop() {
	close(f.quit)
	f.mu.Lock()
	if f.cancelCurrent != nil {
		f.cancelCurrent()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// setContinuous switches interval flushing while thawed on or off.
func (f *flusher) setContinuous(on bool) {
	if f.continuous.Swap(on) != on {
		f.poke()
	}
}

func (f *flusher) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// kick asks for a drain in the background, without waiting for it, of at
// most limit events (0: everything).
func (f *flusher) kick(limit int) {
	select {
	case f.reqs <- flushRequest{limit: limit}:
	default:
		// A drain is already queued; it will take these events too.
	}
}

// flush asks for a background drain and waits for it until ctx ends (the
// final drain is finishWithin's). It reports whether the drain finished in
// time; if not, it carries on and the data it could not send stays buffered.
func (f *flusher) flush(ctx context.Context) bool {
	r := flushRequest{done: make(chan struct{})}
	select {
	case f.reqs <- r:
	case <-ctx.Done():
		return false
	}
	return f.wait(ctx, r.done)
}

// finish asks for the final drain, bounded by ctx, without waiting for it:
// it goes before every queued background request, and a background drain
// in progress stops after its current request. The returned channel is
// closed when the final drain has finished. Only the first call asks;
// later ones get the same channel.
func (f *flusher) finish(ctx context.Context) <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.finalDone == nil {
		r := flushRequest{ctx: ctx, done: make(chan struct{})}
		f.finalDone = r.done
		f.yield.Store(true)
		f.finals <- r // never blocks: room for one, sent once
	}
	return f.finalDone
}

// finishWithin runs the final drain, bounded by ctx, and reports whether it
// finished. A background drain in progress stops after its current request
// (a healthy backend answers in milliseconds); if that request is still
// unanswered after grace, it is cut short so that the final drain can use
// the rest of the time. Only a request cut short can have been stored and
// still be sent again.
func (f *flusher) finishWithin(ctx context.Context, grace time.Duration) bool {
	running := f.current() // before finish: it can only be a background drain
	final := f.finish(ctx)
	if running != nil {
		t := time.NewTimer(grace)
		select {
		case <-running:
		case <-t.C:
			f.abort(running)
		case <-ctx.Done():
		}
		t.Stop()
	}
	return f.wait(ctx, final)
}

func (f *flusher) wait(ctx context.Context, done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

// abort cancels the drain that current returned as running, if it still
// runs (used at SHUTDOWN when a background drain is stuck on a slow
// backend); the drain that follows it, the final one, is not touched.
func (f *flusher) abort(running <-chan struct{}) {
	f.mu.Lock()
	if f.cancelCurrent != nil && f.running == running {
		f.cancelCurrent()
	}
	f.mu.Unlock()
}

// current returns a channel closed when the drain in progress ends, or nil
// when no drain is running.
func (f *flusher) current() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.running
}

// busySince is when the drain in progress started, or zero when none runs.
func (f *flusher) busySince() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.running == nil {
		return time.Time{}
	}
	return f.runningSince
}

// lastFlush is when the last drain started (zero if none).
func (f *flusher) lastFlush() time.Time {
	ns := f.lastStart.Load()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

func (f *flusher) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		// Interval flushing is decided from timestamps: a timer that was due
		// while the sandbox was frozen fires once at thaw, finds the
		// interval elapsed, and causes one drain, never a burst.
		var tick <-chan time.Time
		if f.continuous.Load() {
			due := f.lastFlush().Add(f.interval)
			timer.Reset(max(time.Until(due), 0))
			tick = timer.C
		}
		// The final drain goes first, whatever else is queued.
		select {
		case r := <-f.finals:
			f.final(r)
			continue
		default:
		}
		select {
		case <-f.quit:
			return
		case r := <-f.finals:
			f.final(r)
		case r := <-f.reqs:
			batch := []flushRequest{r}
			for more := true; more; {
				select {
				case r2 := <-f.reqs:
					batch = append(batch, r2)
				default:
					more = false
				}
			}
			limit := 0
			for i, r := range batch {
				if i == 0 || (limit > 0 && (r.limit == 0 || r.limit > limit)) {
					limit = r.limit // the widest request wins
				}
			}
			f.drain(ctx, false, limit)
			for _, r := range batch {
				if r.done != nil {
					close(r.done)
				}
			}
		case <-f.buf.Full():
			f.drain(ctx, false, 0)
		case <-tick:
			if time.Since(f.lastFlush()) >= f.interval {
				f.drain(ctx, false, 0)
			}
		case <-f.wake:
		}
	}
}

// final runs the final drain: everything, bounded by its own context, paused
// or not.
func (f *flusher) final(r flushRequest) {
	f.drain(r.ctx, true, 0)
	close(r.done)
}

// drain sends batches until the buffer is empty (or limit events were
// taken, when limit > 0), a send fails, or ctx ends.
func (f *flusher) drain(ctx context.Context, final bool, limit int) {
	now := time.Now()
	// Recorded even when paused, so interval flushing waits a full interval
	// before trying again instead of spinning.
	f.lastStart.Store(now.UnixNano())
	f.mu.Lock()
	paused := now.Before(f.pausedUntil)
	f.mu.Unlock()
	if !final && (paused || f.yield.Load()) {
		return
	}
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	running := make(chan struct{})
	f.mu.Lock()
	f.cancelCurrent = cancel
	f.running = running
	f.runningSince = now
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.cancelCurrent = nil
		f.running = nil
		f.mu.Unlock()
		close(running)
	}()

	report := f.dropReport()
	var failed, missing int
	var lastErr string
	taken := 0
	for dctx.Err() == nil && (limit == 0 || taken < limit) {
		if !final && taken > 0 && f.yield.Load() {
			break // the final drain is waiting: it takes the rest
		}
		n := f.batchCount
		if limit > 0 {
			n = min(n, limit-taken)
		}
		evs := f.buf.Take(n, f.batchBytes)
		taken += len(evs)
		if report != nil {
			// The drop report rides with the first batch rather than going
			// through the full buffer, where it would push out more data.
			evs = append([]telemetry.Event{*report}, evs...)
			report = nil
		}
		if len(evs) == 0 {
			break
		}
		res, undelivered, err := f.send.Send(dctx, evs)
		f.account(res)
		failed += res.Failed
		missing += res.Missing
		if res.Error != "" {
			lastErr = res.Error
		}
		if err != nil {
			f.sendFailed(err, undelivered)
			break
		}
	}
	if failed > 0 || missing > 0 {
		// One line per drain at most, never per batch.
		f.log.WithFields(logrus.Fields{"failed": failed, "silently_dropped": missing, "openobserve_error": lastErr}).
			Warn("OpenObserve did not store every record")
	}
}

func (f *flusher) account(r SendResult) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stats.Delivered += uint64(r.Successful)
	f.stats.Failed += uint64(r.Failed)
	f.stats.Missing += uint64(r.Missing)
	f.stats.Requests += uint64(r.Requests)
	f.stats.Bytes += uint64(r.Bytes)
}

func (f *flusher) sendFailed(err error, undelivered []telemetry.Event) {
	now := time.Now()
	f.mu.Lock()
	f.stats.SendErrors++
	f.mu.Unlock()
	switch {
	case errors.Is(err, ErrRejected):
		// Sending the refused records again cannot succeed: drop and count.
		f.mu.Lock()
		f.stats.Rejected += uint64(len(undelivered))
		f.mu.Unlock()
		f.log.WithError(err).Error("OpenObserve refused a batch as invalid; it was dropped")
	case errors.Is(err, ErrUnauthorized):
		f.putBack(undelivered)
		f.mu.Lock()
		f.pausedUntil = now.Add(f.interval)
		logIt := now.Sub(f.lastAuthLog) >= f.interval
		if logIt {
			f.lastAuthLog = now
		}
		f.mu.Unlock()
		if logIt {
			f.log.WithError(err).Error("OpenObserve refused the credentials or organization; data is kept while the buffer has room")
		}
	default:
		f.putBack(undelivered)
		f.log.WithError(err).Warn("sending to OpenObserve failed; data is kept for the next flush")
	}
}

func (f *flusher) putBack(evs []telemetry.Event) {
	if len(evs) > 0 {
		f.buf.PutBack(evs)
	}
}

// DroppedType is the type of the record that reports buffer drops.
const DroppedType = "o2-extension.dropped"

// dropReport logs buffer drops once per drain and returns a record saying
// how much was lost, so the loss is visible in OpenObserve too; nil when
// nothing new was dropped.
func (f *flusher) dropReport() *telemetry.Event {
	recs, bytes := f.buf.Dropped()
	f.mu.Lock()
	newRecs := recs - f.reportedDrop
	if newRecs == 0 {
		f.mu.Unlock()
		return nil
	}
	f.reportedDrop = recs
	f.mu.Unlock()
	f.log.WithFields(logrus.Fields{"dropped_records": newRecs, "dropped_records_total": recs, "dropped_bytes_total": bytes}).
		Warn("buffer full (O2_MAX_BUFFER_SIZE_MB): oldest records were dropped")
	rec, _ := json.Marshal(map[string]any{
		"droppedRecords":      newRecs,
		"droppedRecordsTotal": recs,
		"droppedBytesTotal":   bytes,
		"reason":              "buffer full (O2_MAX_BUFFER_SIZE_MB)",
	})
	return &telemetry.Event{Time: time.Now(), Type: DroppedType, Record: rec}
}

// Stats returns a copy of the counters.
func (f *flusher) Stats() FlushStats {
	recs, bytes := f.buf.Dropped()
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.stats
	s.DroppedRecords, s.DroppedBytes = recs, bytes
	return s
}
