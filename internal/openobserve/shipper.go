package openobserve

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/o2-extension/o2-extension/internal/telemetry"
)

// Defaults applied by NewShipper to zero ShipperOptions fields.
const (
	// DefaultInFlight: four requests in flight keep a backend that answers
	// in 150 ms busy with 1,000-record batches (measured: see the README),
	// while one failed request never stalls the rest.
	DefaultInFlight   = 4
	DefaultBatchCount = 1000
	DefaultLinger     = 500 * time.Millisecond
)

const (
	// At SHUTDOWN, the final drain takes no new batch later than
	// drainStop before the deadline, lets the requests on the wire finish
	// until summaryReserve before it, then cuts them (their outcome is
	// unknown) and sends the summary record alone, with the final tally,
	// finishing exitMargin before the deadline so that the process exits
	// in time even on a loaded machine.
	drainStop      = 600 * time.Millisecond
	summaryReserve = 450 * time.Millisecond
	exitMargin     = 100 * time.Millisecond
	// authPause is how long every send waits after OpenObserve refused the
	// credentials or the organization: the data is kept, and asking again
	// at once would only repeat the refusal.
	authPause = 2 * time.Second
	// slowRetry is the pause after a 400 about OpenObserve's own state (quota, a node that is not an
	// ingester, a stream being deleted): sending again at once would only
	// get the same answer.
	slowRetry = 2 * time.Second
	// warnEvery bounds the extension's own warnings to one per kind per
	// period (with a count of the repeats): every line it prints comes back
	// to it as telemetry.
	warnEvery = 10 * time.Second
	// defaultShutdown bounds Shutdown when its ctx has no deadline.
	defaultShutdown = 1500 * time.Millisecond
)

var (
	// ErrFailing reports that Flush did not wait because the backend is
	// failing (the breaker is open) or asked for a pause: holding the
	// invocation would bill it for nothing. The data is kept and sent in
	// the background.
	ErrFailing = errors.New("openobserve: backend failing or paused; not waiting")
	// errShutdown is the cause of the context of requests still in flight
	// when Shutdown's drain runs out of time.
	errShutdown = errors.New("openobserve: shut down")
	// errYield is the cause of the context of a batch's leg that was
	// waiting when Shutdown began, or whose attempt failed after it: its
	// records go back to the buffer, so that the final drain sends the
	// newest first with every slot.
	errYield = errors.New("openobserve: yielded to the final drain")
)

// shipState is the yield state of one batch. A batch's destinations (the
// stream, a tenant stream, the OTLP signals) are sent in parallel, each as
// a leg with its own context: making one leg yield never cuts another's
// request on the wire. Only a waiting leg (before its first attempt, in a
// backoff, at the gate) is cancelled when the batch yields: cutting a
// request on the wire could lose the reply to a request OpenObserve stored,
// and sending it again would duplicate it. A leg on the wire yields when
// its attempt has failed, before it would try again: at SHUTDOWN, records
// taken before it go back to the buffer instead of being retried ahead of
// the final drain's newest.
type shipState struct {
	mu      sync.Mutex
	noYield bool // taken by the final drain: it is not to yield to itself
	yield   bool // the batch is to yield
	legs    []*leg
}

// leg is one destination's share of a batch.
type leg struct {
	st      *shipState
	waiting bool // not on the wire
	yielded bool
	cancel  context.CancelCauseFunc
}

type legKey struct{}

// newLeg returns the context of a new leg of the batch ctx carries (ctx
// itself when it carries none) and its release.
func newLeg(ctx context.Context) (context.Context, func()) {
	st, ok := ctx.Value(shipKey{}).(*shipState)
	if !ok {
		return ctx, func() {}
	}
	lctx, cancel := context.WithCancelCause(ctx)
	l := &leg{st: st, waiting: true, cancel: cancel}
	st.mu.Lock()
	st.legs = append(st.legs, l)
	l.yieldIfAskedLocked()
	st.mu.Unlock()
	return context.WithValue(lctx, legKey{}, l), func() { cancel(nil) }
}

type shipKey struct{}

func (l *leg) yieldIfAskedLocked() {
	if l.st.yield && !l.st.noYield && !l.yielded {
		l.yielded = true
		l.cancel(errYield)
	}
}

// begin is called right before an attempt goes on the wire; it reports
// false if the leg yielded. A leg whose request went through does not
// yield at its next request (the rest of the batch): that request may
// carry the remaining parts of a record split across requests, and giving
// the record back would send its first parts twice.
func (l *leg) begin() bool {
	l.st.mu.Lock()
	defer l.st.mu.Unlock()
	if l.yielded {
		return false
	}
	l.waiting = false
	return true
}

// wait marks the leg waiting (a backoff, a pause), yielding if asked to.
func (l *leg) wait() {
	l.st.mu.Lock()
	defer l.st.mu.Unlock()
	l.waiting = true
	l.yieldIfAskedLocked()
}

// onWire reports whether some leg's request is on the wire or done.
func (st *shipState) onWire() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, l := range st.legs {
		if !l.waiting && !l.yielded {
			return true
		}
	}
	return false
}

// yieldNow makes the batch yield: its waiting legs at once, the others
// once their attempt on the wire is over.
func (st *shipState) yieldNow() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.yield = true
	for _, l := range st.legs {
		if l.waiting {
			l.yieldIfAskedLocked()
		}
	}
}

// beginAttempt is gatedTransport's hook: false means the leg yielded.
func beginAttempt(ctx context.Context) bool {
	l, ok := ctx.Value(legKey{}).(*leg)
	return !ok || l.begin()
}

// legWaiting marks the leg ctx carries as waiting.
func legWaiting(ctx context.Context) {
	if l, ok := ctx.Value(legKey{}).(*leg); ok {
		l.wait()
	}
}

// DroppedType is the type of the record that reports buffer drops.
const DroppedType = "o2-extension.dropped"

// ShipperOptions configures a Shipper. Zero values mean the defaults.
type ShipperOptions struct {
	// InFlight is the most requests in flight at once (default 4). Each
	// record is in at most one of them.
	InFlight int
	// BatchCount bounds the records of one batch (default 1,000). Batches
	// are bounded by bytes first: the client's MaxBatchBytes.
	BatchCount int
	// Linger is the most a record waits in the buffer, while the process
	// runs, before it is sent even though its batch is not full (default
	// 500 ms). The sandbox is thawed while an invocation runs, and a send then
	// costs no billed time, so records stream in every flush mode.
	Linger time.Duration
	// Logger receives the shipper's warnings; nil means none.
	Logger *logrus.Entry
}

func (o *ShipperOptions) setDefaults() {
	if o.InFlight <= 0 {
		o.InFlight = DefaultInFlight
	}
	if o.BatchCount <= 0 {
		o.BatchCount = DefaultBatchCount
	}
	if o.Linger <= 0 {
		o.Linger = DefaultLinger
	}
	if o.Logger == nil {
		l := logrus.New()
		l.SetLevel(logrus.PanicLevel)
		o.Logger = logrus.NewEntry(l)
	}
}

// Shipper moves records from a telemetry.Buffer to OpenObserve: a
// dispatcher takes batches (when one is full, when the oldest record has
// lingered, when a Flush asks, or at Shutdown) and up to InFlight senders
// post them, each with its own retries, so that one failing request never
// holds the others. It owns its goroutines; the lifecycle loop calls Flush
// at the end of an invocation and Shutdown once.
type Shipper struct {
	c     *Client
	buf   *telemetry.Buffer
	o     ShipperOptions
	log   *logrus.Entry
	batch int // bytes taken per batch, as telemetry.Event.Size counts them

	// ctx is the context of every send; Shutdown cancels it once its drain
	// is out of time.
	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup
	quit   chan struct{}
	slots  chan struct{} // one token per request in flight
	poked  chan struct{}

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change below
	urgent  int           // Flush calls waiting: take without lingering
	// stopping: Shutdown has begun; no batch is taken until the final
	// drain (final), newest first and without lingering.
	stopping, final bool
	// unsettled counts batches whose first attempts are still running: a
	// Flush waits for them, but not for a batch that waits out a backoff.
	unsettled int
	stalled   bool // a Flush ran out of time; cleared by the next success
	reported  uint64
	warnings  warner
	ships     map[*shipState]struct{} // batches taken and not yet finished

	shutdownOnce sync.Once
	shutdownDone chan struct{}
}

// NewShipper starts shipping what buf holds through c.
func NewShipper(c *Client, buf *telemetry.Buffer, o ShipperOptions) *Shipper {
	o.setDefaults()
	ctx, cancel := context.WithCancelCause(context.Background())
	s := &Shipper{
		c:   c,
		buf: buf,
		o:   o,
		log: o.Logger,
		// Event.Size underestimates the encoded record (the static fields
		// are added when it is sent): leave room so that a batch is one
		// request.
		batch:        c.o.MaxBatchBytes * 3 / 4,
		ctx:          ctx,
		cancel:       cancel,
		quit:         make(chan struct{}),
		slots:        make(chan struct{}, o.InFlight),
		poked:        make(chan struct{}, 1),
		changed:      make(chan struct{}),
		warnings:     warner{every: warnEvery},
		ships:        map[*shipState]struct{}{},
		shutdownDone: make(chan struct{}),
	}
	s.wg.Go(s.dispatch)
	return s
}

// Client returns the client the shipper sends through.
func (s *Shipper) Client() *Client { return s.c }

func (s *Shipper) broadcastLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Shipper) poke() {
	select {
	case s.poked <- struct{}{}:
	default:
	}
}

// dispatch takes batches while a request slot is free. Lingering is
// decided from timestamps: a timer that was due while the sandbox was
// frozen fires once at the thaw and finds the linger long over.
func (s *Shipper) dispatch() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case s.slots <- struct{}{}:
		case <-s.quit:
			return
		}
		for {
			b, wake := s.next(time.Now())
			if b != nil {
				s.wg.Go(func() { s.ship(b) })
				break
			}
			var tick <-chan time.Time
			if !wake.IsZero() {
				timer.Reset(max(time.Until(wake), 0))
				tick = timer.C
			}
			select {
			case <-s.buf.Added():
			case <-s.poked:
			case <-tick:
			case <-s.quit:
				<-s.slots
				return
			}
		}
	}
}

// batch is the records of one ship and its state.
type batch struct {
	evs []telemetry.Event
	ctx context.Context // the shipper's, carrying st
	st  *shipState
}

// next takes the next batch if one is due at now; otherwise it returns when
// to look again (zero: when something changes).
func (s *Shipper) next(now time.Time) (*batch, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.buf.Len() == 0 || (s.stopping && !s.final) {
		return nil, time.Time{}
	}
	if until, paused := s.c.gate.paused(now); paused && !s.final {
		// Leave the records in the buffer, where its bound applies.
		return nil, until
	}
	due := s.final || s.urgent > 0 || s.buf.Len() >= s.o.BatchCount || s.buf.Bytes() >= s.batch
	if !due {
		at := s.buf.Since().Add(s.o.Linger)
		if now.Before(at) {
			return nil, at
		}
	}
	var evs []telemetry.Event
	if s.final {
		// The last invocation's lines and report matter most.
		evs = s.buf.TakeNewest(s.o.BatchCount, s.batch)
	} else {
		evs = s.buf.Take(s.o.BatchCount, s.batch)
	}
	if report := s.dropReportLocked(now); report != nil {
		// The drop report rides with a batch rather than going through the
		// full buffer, where it would push out more data.
		evs = append([]telemetry.Event{*report}, evs...)
	}
	st := &shipState{noYield: s.final}
	s.ships[st] = struct{}{}
	s.unsettled++
	s.broadcastLocked()
	return &batch{evs: evs, ctx: context.WithValue(s.ctx, shipKey{}, st), st: st}, time.Time{}
}

// ship sends one batch and deals with what could not be delivered.
func (s *Shipper) ship(b *batch) {
	ctx, st, evs := b.ctx, b.st, b.evs
	settled := false
	settle := func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !settled {
			settled = true
			s.unsettled--
			s.broadcastLocked()
		}
	}
	res, rest, err := s.c.sendRouted(ctx, evs, settle)
	s.c.stats.add(res, err)
	if errors.Is(context.Cause(ctx), errShutdown) && st.onWire() {
		// Cut on the wire: OpenObserve may have stored them.
		s.c.stats.cut(len(rest))
	}
	s.report(ctx, res, err, rest)
	settle()
	s.mu.Lock()
	delete(s.ships, st)
	if err == nil {
		s.stalled = false
	}
	s.broadcastLocked()
	s.mu.Unlock()
	<-s.slots
	s.poke()
}

// report logs what went wrong (rate-limited) and keeps or drops the
// records not delivered.
func (s *Shipper) report(ctx context.Context, res Result, err error, rest []telemetry.Event) {
	now := time.Now()
	if res.Failed > 0 || res.Missing > 0 {
		msg := "OpenObserve did not store every record"
		if res.TypeConflicts > 0 {
			msg += ": a field's value could not be cast to the type its column already has (" + res.Error + "); give that field one type, or rename it"
		}
		s.warnings.warn(s.log, now, "not stored", logrus.Fields{"failed": res.Failed, "silently_dropped": res.Missing, "type_conflicts": res.TypeConflicts, "openobserve_error": res.Error}, msg)
	}
	if res.SignalsDropped > 0 || res.SignalsRejected > 0 {
		s.warnings.warn(s.log, now, "signals", logrus.Fields{"bodies_dropped": res.SignalsDropped, "rejected": res.SignalsRejected},
			"OpenObserve refused metrics or traces: "+res.Error)
	}
	if res.AsText > 0 {
		s.warnings.warn(s.log, now, "as text", logrus.Fields{"records": res.AsText},
			"records with too many fields for the stream's column limit were sent with their record as one string (record_as_text=true)")
	}
	if res.Rejected > 0 {
		s.c.stats.reject(res.Rejected)
	}
	switch {
	case err == nil:
	case errors.Is(err, ErrNoCredential):
		// No credential can be had (the source logged why, once): fail
		// open, forwarding nothing, rather than hold data that can never
		// be sent. Counted.
		s.c.stats.noCredential(len(rest))
	case IsPermanent(err):
		// Sending the refused records again cannot succeed: drop and count.
		s.c.stats.reject(len(rest))
		s.warnings.error(s.log, now, "rejected", logrus.Fields{"records": len(rest)},
			"OpenObserve refused a batch as invalid; it was dropped: "+Explain(err))
	case errors.Is(err, ErrUnexpectedReply):
		// What was stored is unknown: keep it, and try again as after a
		// failed attempt (the breaker opens, and the next attempt waits
		// the backoff of the failing streak), not at once.
		// The pause first: records put back before it would be taken
		// again at once.
		streak := s.c.gate.fail()
		s.c.gate.pause(now.Add(max(s.c.retryWait(streak), s.c.o.RetryWaitMin)))
		s.keep(rest)
		s.warnings.warn(s.log, now, "unexpected", logrus.Fields{"records": len(rest)},
			"data is kept and retried: "+Explain(err))
	case IsTransient(err):
		// OpenObserve cannot take data now (quota, a node that is not an
		// ingester, a stream being deleted): keep it, and try again slowly.
		s.c.gate.slowDown(now.Add(slowRetry))
		s.keep(rest)
		s.warnings.warn(s.log, now, "transient", logrus.Fields{"records": len(rest)},
			"data is kept and retried slowly: "+Explain(err))
	case IsAuth(err):
		s.c.gate.pause(now.Add(authPause))
		s.keep(rest)
		s.warnings.error(s.log, now, "auth", nil,
			"OpenObserve refused the credentials or organization; data is kept while the buffer has room: "+Explain(err))
	case errors.Is(context.Cause(ctx), errShutdown), errors.Is(err, errYield):
		s.keep(rest) // sent by the final drain, or counted as left over
	default:
		s.keep(rest)
		s.warnings.warn(s.log, now, "send", nil, "sending to OpenObserve failed; data is kept and retried: "+Explain(err))
	}
}

func (s *Shipper) keep(evs []telemetry.Event) {
	if len(evs) > 0 {
		s.buf.PutBack(evs)
	}
}

// dropReportLocked returns a record saying how much the full buffer
// dropped since the last report, logging it once; nil when nothing new was
// dropped.
func (s *Shipper) dropReportLocked(now time.Time) *telemetry.Event {
	recs, bytes := s.buf.Dropped()
	if recs == s.reported {
		return nil
	}
	n := recs - s.reported
	s.reported = recs
	s.warnings.warn(s.log, now, "buffer full", logrus.Fields{"dropped_records": n, "dropped_records_total": recs, "dropped_bytes_total": bytes},
		"buffer full (O2_MAX_BUFFER_SIZE_MB): oldest records were dropped")
	rec, _ := json.Marshal(map[string]any{
		"droppedRecords":      n,
		"droppedRecordsTotal": recs,
		"droppedBytesTotal":   bytes,
		"reason":              "buffer full (O2_MAX_BUFFER_SIZE_MB)",
	})
	return &telemetry.Event{Time: now, Type: DroppedType, Record: rec}
}

// Failing reports whether an end-of-invocation flush would return at once
// without waiting: the breaker is open, the server asked for a pause, or a
// flush ran out of time and nothing has been delivered since.
func (s *Shipper) Failing() bool {
	s.mu.Lock()
	stalled := s.stalled
	s.mu.Unlock()
	_, paused := s.c.gate.paused(time.Now())
	return stalled || paused || s.c.gate.failing()
}

// Flush sends what the buffer holds now, without lingering, and waits until
// every batch has been delivered or has failed its first attempt and an
// immediate retry; or until ctx ends. It never waits out a backoff: a batch
// that failed twice is retried in the background. While the backend is
// failing it returns ErrFailing at once (see Failing).
func (s *Shipper) Flush(ctx context.Context) error {
	if s.Failing() {
		s.poke()
		return ErrFailing
	}
	s.mu.Lock()
	s.urgent++
	s.mu.Unlock()
	s.poke()
	defer func() {
		s.mu.Lock()
		s.urgent--
		s.mu.Unlock()
	}()
	for {
		s.mu.Lock()
		idle := s.buf.Len() == 0 && s.unsettled == 0
		ch := s.changed
		s.mu.Unlock()
		gateCh := s.c.gate.changes()
		// A batch that failed twice is settled (it waits out its backoff in
		// the background), so failing goes before idle.
		if _, paused := s.c.gate.paused(time.Now()); paused || s.c.gate.failing() {
			return ErrFailing
		}
		if idle {
			return nil
		}
		select {
		case <-ch:
		case <-gateCh:
		case <-ctx.Done():
			s.mu.Lock()
			s.stalled = true
			s.mu.Unlock()
			return ctx.Err()
		}
	}
}

// Shutdown first stops the background: no new batch is taken, batches
// waiting out a backoff give their records back at once, and those on the
// wire give them back if their attempt fails, instead of retrying old
// records. Then it calls settle (if set) with a context bounded by the
// drain's time: the lifecycle's wait for late telemetry (the last
// platform.report), which lands in the buffer before the drain. The drain
// then sends the buffer with every request slot, newest records first,
// until drainStop before ctx's deadline, lets the requests on the wire
// finish until summaryReserve before it, then cuts them, sends the records
// summary returns (the extension's final tally, built once the drain is
// over), and returns exitMargin before the deadline. Records still
// buffered then are lost, and logged. It is safe to call more than once:
// later calls wait for the first, within their own ctx.
func (s *Shipper) Shutdown(ctx context.Context, settle func(context.Context), summary func() []telemetry.Event) error {
	s.shutdownOnce.Do(func() {
		s.shutdown(ctx, settle, summary)
		close(s.shutdownDone)
	})
	select {
	case <-s.shutdownDone:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Shipper) shutdown(ctx context.Context, settle func(context.Context), summary func() []telemetry.Event) {
	end, ok := ctx.Deadline()
	if !ok {
		end = time.Now().Add(defaultShutdown)
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, end)
		defer cancel()
	}
	// On a short budget the phases shrink in proportion.
	scale := func(d time.Duration) time.Duration { return min(d, time.Until(end)*d/(2*drainStop)) }
	stop, reserve, margin := scale(drainStop), scale(summaryReserve), scale(exitMargin)
	s.mu.Lock()
	s.stopping = true
	ships := make([]*shipState, 0, len(s.ships))
	for st := range s.ships {
		ships = append(ships, st)
	}
	s.broadcastLocked()
	s.mu.Unlock()
	// Batches taken before SHUTDOWN give their records back to the final
	// drain, which takes the newest first with every slot.
	for _, st := range ships {
		st.yieldNow()
	}
	if settle != nil {
		sctx, cancel := context.WithDeadline(ctx, end.Add(-stop))
		settle(sctx)
		cancel()
	}
	s.mu.Lock()
	s.final = true
	s.broadcastLocked()
	s.mu.Unlock()
	s.c.gate.setFinal()
	s.poke()

	dctx, cancel := context.WithDeadline(ctx, end.Add(-stop))
	s.waitIdle(dctx)
	cancel()
	close(s.quit) // no new batch
	wctx, cancel := context.WithDeadline(ctx, end.Add(-reserve))
	s.waitIdle(wctx)
	cancel()
	s.cancel(errShutdown) // requests still on the wire are cut; their records kept
	s.wg.Wait()

	ctx, cancel = context.WithDeadline(ctx, end.Add(-margin))
	defer cancel()
	if summary != nil {
		evs := summary()
		res, _, err := s.c.sendRouted(ctx, evs, nil)
		s.c.stats.add(res, err)
		if err != nil {
			s.log.WithError(err).Warn("the summary record could not be sent: " + Explain(err))
		}
	}
	if n := s.buf.Len(); n > 0 {
		s.log.WithField("records", n).Warn("records still buffered at SHUTDOWN are lost: OpenObserve did not take them in time")
	}
}

// waitIdle returns when nothing is in flight and, until the dispatcher
// stops, the buffer is empty; or when ctx ends.
func (s *Shipper) waitIdle(ctx context.Context) {
	for {
		s.mu.Lock()
		stopped := false
		select {
		case <-s.quit:
			stopped = true
		default:
		}
		idle := (stopped || s.buf.Len() == 0) && len(s.ships) == 0
		ch := s.changed
		s.mu.Unlock()
		if idle {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

// Stats returns the delivery counters, the buffer's included.
func (s *Shipper) Stats() Stats {
	st := s.c.Stats()
	st.DroppedRecords, st.DroppedBytes = s.buf.Dropped()
	st.BufferedRecords = s.buf.Len()
	return st
}

// Stats counts what a client delivered over its life. Its JSON form is the
// summary record's delivery fields.
type Stats struct {
	Delivered     uint64 `json:"delivered"`       // records OpenObserve stored
	Failed        uint64 `json:"failed"`          // records OpenObserve refused, or too large for it
	Missing       uint64 `json:"silentlyDropped"` // records OpenObserve dropped without a word
	Rejected      uint64 `json:"rejected"`        // records dropped after a 400
	TypeConflicts uint64 `json:"typeConflicts"`   // of Failed: a value not castable to its column's type
	AsText        uint64 `json:"recordsAsText"`   // sent with their record as one string (column limit)
	// CutAtShutdown counts records whose request was on the wire when the
	// SHUTDOWN deadline cut it: OpenObserve may or may not have stored
	// them. They are among BufferedRecords (not sent again).
	CutAtShutdown uint64 `json:"cutAtShutdown"`
	// NoCredential counts records dropped because no credential could be
	// had (a denied or missing secret): the extension then fails open.
	NoCredential uint64 `json:"droppedNoCredential"`
	// OTLP bodies (metrics, traces): delivered, refused for good, and the
	// data points and spans OpenObserve rejected.
	Signals         uint64 `json:"otlpBodies"`
	SignalsDropped  uint64 `json:"otlpBodiesDropped"`
	SignalsRejected uint64 `json:"otlpItemsRejected"`
	Requests        uint64 `json:"requests"`       // HTTP attempts
	Bytes           uint64 `json:"bytesSent"`      // body bytes on the wire
	SendErrors      uint64 `json:"sendErrors"`     // sends that failed after their retries
	DroppedRecords  uint64 `json:"droppedRecords"` // dropped from the full buffer
	DroppedBytes    uint64 `json:"droppedBytes"`
	BufferedRecords int    `json:"bufferedRecords"` // still buffered
}

// stats is a Client's counters.
type stats struct {
	mu sync.Mutex
	s  Stats
}

func (st *stats) add(r Result, err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.s.Delivered += uint64(r.Successful)
	st.s.Failed += uint64(r.Failed + r.Dropped)
	st.s.Missing += uint64(r.Missing)
	st.s.TypeConflicts += uint64(r.TypeConflicts)
	st.s.AsText += uint64(r.AsText)
	st.s.Signals += uint64(r.Signals)
	st.s.SignalsDropped += uint64(r.SignalsDropped)
	st.s.SignalsRejected += uint64(r.SignalsRejected)
	st.s.Requests += uint64(r.Requests)
	st.s.Bytes += uint64(r.Bytes)
	if err != nil {
		st.s.SendErrors++
	}
}

func (st *stats) noCredential(n int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.s.NoCredential += uint64(n)
}

func (st *stats) cut(n int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.s.CutAtShutdown += uint64(n)
}

func (st *stats) reject(n int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.s.Rejected += uint64(n)
}

// Stats returns a copy of the client's counters.
func (c *Client) Stats() Stats {
	c.stats.mu.Lock()
	defer c.stats.mu.Unlock()
	return c.stats.s
}

// warner rate-limits warnings: one line per kind per period, carrying the
// number of repeats it held back.
type warner struct {
	every time.Duration
	mu    sync.Mutex
	kinds map[string]*warnKind
}

type warnKind struct {
	last    time.Time
	repeats int
}

func (w *warner) allow(now time.Time, kind string) (repeats int, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.kinds == nil {
		w.kinds = map[string]*warnKind{}
	}
	k := w.kinds[kind]
	if k == nil {
		k = &warnKind{}
		w.kinds[kind] = k
	}
	if !k.last.IsZero() && now.Sub(k.last) < w.every {
		k.repeats++
		return 0, false
	}
	repeats, k.repeats, k.last = k.repeats, 0, now
	return repeats, true
}

func (w *warner) warn(log *logrus.Entry, now time.Time, kind string, f logrus.Fields, msg string) {
	w.log(log, logrus.WarnLevel, now, kind, f, msg)
}

func (w *warner) error(log *logrus.Entry, now time.Time, kind string, f logrus.Fields, msg string) {
	w.log(log, logrus.ErrorLevel, now, kind, f, msg)
}

func (w *warner) log(log *logrus.Entry, level logrus.Level, now time.Time, kind string, f logrus.Fields, msg string) {
	repeats, ok := w.allow(now, kind)
	if !ok {
		return
	}
	e := log.WithFields(f)
	if repeats > 0 {
		e = e.WithField("repeats", repeats)
	}
	e.Log(level, msg)
}
