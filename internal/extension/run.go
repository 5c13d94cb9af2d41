package extension

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/o2-extension/o2-extension/internal/strategy"
	"github.com/o2-extension/o2-extension/internal/telemetry"
	"github.com/sirupsen/logrus"
)

// Margins keep the extension clear of Lambda's hard deadlines.
const (
	// invokeMargin: how long before an invocation's deadlineMs a wait
	// gives up. /next must come before the function times out, or Lambda
	// reports a finished invocation as timed out; a sandbox with a
	// fraction of a vCPU (128 MB) can take tens of milliseconds to wake and
	// call /next, so the margin is wide. What is not flushed by then goes
	// in the background, later, not lost.
	invokeMargin = 300 * time.Millisecond
	// shutdownMargin: exit this long before SHUTDOWN's deadlineMs, leaving
	// time for the process to exit before Lambda's SIGKILL.
	shutdownMargin = 250 * time.Millisecond
	// reportGrace: the most SHUTDOWN waits for the last invocation's
	// platform.report, which Lambda produces only after our /next.
	reportGrace = 500 * time.Millisecond
	// startTimeout: if platform.start for an invocation has not arrived
	// this long after INVOKE, the telemetry stream is not flowing and
	// waiting for platform.runtimeDone would only hold the invocation.
	startTimeout = 2 * time.Second
	// defaultShutdown is the budget when SHUTDOWN carries no deadline, or
	// when the process is told to stop by a signal.
	defaultShutdown = 1500 * time.Millisecond
	// quietPeriod: at SHUTDOWN, telemetry is taken to be all in once the
	// Telemetry API has posted nothing for this long (it buffers 25 ms).
	quietPeriod = 60 * time.Millisecond
)

// SummaryType is the type of the extension's own record sent at SHUTDOWN.
const SummaryType = "o2-extension.summary"

// Delivery sends what the buffer holds. It owns its goroutines: it streams
// records in the background from the moment it is made, and the lifecycle
// only tells it when an invocation ends and when the sandbox shuts down.
type Delivery interface {
	// Flush sends what is buffered now and waits until it is delivered, or
	// has failed once and been retried once, or ctx ends. It returns at
	// once, with an error, when the backend is failing: an invocation is
	// never billed for waiting out a backoff.
	Flush(ctx context.Context) error
	// Shutdown stops the background sends, calls settle (the wait for
	// late telemetry), drains what is left, most recent first, then sends
	// the records summary returns, and returns before ctx's deadline. Safe
	// to call twice.
	Shutdown(ctx context.Context, settle func(context.Context), summary func() []telemetry.Event) error
	// Stats returns the delivery counters; their JSON object's fields go
	// into the summary record.
	Stats() any
}

// Receiver is another source that fills the buffer beside the Telemetry
// API listener: the OTLP receiver for the function's own SDK.
type Receiver interface {
	// Close stops taking data: from its start nothing more is buffered.
	// It returns by ctx's deadline.
	Close(ctx context.Context) error
	// Stats returns its counters; their JSON object's fields go into the
	// summary record.
	Stats() any
}

// receiverClose bounds the receiver's Close at SHUTDOWN: its handlers
// only read, decode and buffer, in well under this.
const receiverClose = 100 * time.Millisecond

// Options configure Run.
type Options struct {
	RuntimeAPI string // AWS_LAMBDA_RUNTIME_API, host:port
	Name       string // registration name: the executable's base name
	Version    string // reported in the summary record

	// ManagedInstances selects Lambda Managed Instances behaviour: no
	// INVOKE events, schema 2025-01-29, flush in the background.
	ManagedInstances bool

	// Delivery, when set, makes the delivery for the buffer the listener
	// fills. Nil means fail open: register, answer every event at once and
	// forward nothing.
	Delivery func(buf *telemetry.Buffer) Delivery

	// ListenAddr is the telemetry listener's bind address, host:port.
	ListenAddr string
	// DestinationHost is the host Lambda is told to post to.
	DestinationHost string

	BufferBytes int           // bound of the whole buffer
	FlushBudget time.Duration // the most an end-of-invocation flush may hold /next

	// Buffer, if set, is the buffer the listener fills, made by the caller
	// because another source (Receiver) fills it too; nil means a new one
	// of BufferBytes.
	Buffer *telemetry.Buffer
	// Receiver, if set, fills Buffer too. It is closed at SHUTDOWN once
	// late telemetry had its grace and before the final drain, so that the
	// drain takes everything it received; and at once if telemetry cannot
	// start (nothing would deliver what it takes). Its counters go into
	// the summary record.
	Receiver Receiver

	// Strategy chooses the flush mode per invocation.
	Strategy strategy.Options

	// Filter leaves events out of what is sent; the extension still sees
	// every event.
	Filter telemetry.Filter

	// Derive, if set, sees every telemetry event (on the listener's
	// decoding goroutine; it must be quick) and returns records of its own
	// to buffer, e.g. the per-tenant memory report.
	Derive func(ev *telemetry.Event, now time.Time) []telemetry.Event

	Logger     *logrus.Entry
	HTTPClient *http.Client // for the Lambda APIs; must have no timeout
}

// ext is the state of one running extension. Its fields are the Run
// goroutine's alone (invoke, waitRuntimeDone, shutdown and the summary all
// run there), but for what onEvent touches on the listener's goroutine:
// the selector and the tracker, which lock themselves, and the atomics.
type ext struct {
	o   Options
	log *logrus.Entry
	api *Client

	buf      *telemetry.Buffer
	listener *telemetry.Listener
	delivery Delivery
	tracker  *tracker

	sel         *strategy.Selector
	modeCounts  map[strategy.Mode]int
	invocations int
	lastRequest string
	warnedAt    time.Time
	// doneAt is when the last platform.runtimeDone reached the listener
	// (unix ns): the start of the extension's own share of a hold.
	doneAt atomic.Int64
	// started counts platform.start events: the requests served, as the
	// telemetry shows them (on Managed Instances there is no INVOKE).
	started atomic.Int64
}

// newExt returns the state of an extension for o, not yet registered.
func newExt(o Options) *ext {
	log := o.Logger
	if log == nil {
		log = logrus.NewEntry(logrus.StandardLogger())
	}
	return &ext{
		o:          o,
		log:        log,
		api:        NewClient(o.RuntimeAPI, o.HTTPClient),
		tracker:    newTracker(),
		sel:        strategy.New(o.Strategy),
		modeCounts: map[strategy.Mode]int{},
	}
}

// Run registers the extension and runs its lifecycle until SHUTDOWN (nil
// error), until ctx ends (a signal: a short final flush, then nil), or until
// the Extensions API fails (an error: nothing more can be done).
func Run(ctx context.Context, o Options) error {
	e := newExt(o)
	log := e.log
	events := []string{EventInvoke, EventShutdown}
	if o.ManagedInstances {
		// INVOKE cannot be registered on Managed Instances: Lambda answers
		// 403 and the function's init fails.
		events = []string{EventShutdown}
	}
	if _, err := e.api.Register(ctx, o.Name, events); err != nil {
		return err
	}
	if o.Delivery != nil {
		if err := e.startTelemetry(ctx); err != nil {
			log.WithError(err).Error("telemetry is not flowing: nothing will be forwarded; the function is not affected")
			e.stopTelemetry()
		}
	}
	for {
		ev, err := e.api.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				e.shutdown(context.WithoutCancel(ctx), time.Now().Add(defaultShutdown), "signal")
				return nil
			}
			e.shutdown(context.WithoutCancel(ctx), time.Now().Add(defaultShutdown), "error")
			return err
		}
		switch ev.EventType {
		case EventInvoke:
			e.invoke(ctx, ev)
		case EventShutdown:
			deadline := time.UnixMilli(ev.DeadlineMs)
			if ev.DeadlineMs <= 0 || time.Until(deadline) <= 0 {
				deadline = time.Now().Add(defaultShutdown)
			}
			e.shutdown(context.WithoutCancel(ctx), deadline, ev.ShutdownReason)
			return nil
		}
	}
}

// startTelemetry binds the listener, subscribes and starts the flusher.
func (e *ext) startTelemetry(ctx context.Context) error {
	o := e.o
	e.buf = o.Buffer
	if e.buf == nil {
		e.buf = telemetry.NewBuffer(o.BufferBytes)
	}
	ln, err := telemetry.Listen(telemetry.ListenerOptions{
		Addr:    o.ListenAddr,
		Buffer:  e.buf,
		OnEvent: e.onEvent,
		Filter:  o.Filter,
	})
	if err != nil {
		return err
	}
	e.listener = ln
	schema := telemetry.SchemaDefault
	if o.ManagedInstances {
		schema = telemetry.SchemaManagedInstances
	}
	host := o.DestinationHost
	if host == "" {
		host = "sandbox.localdomain"
	}
	err = telemetry.Subscribe(ctx, e.o.HTTPClient, o.RuntimeAPI, e.api.ID(), telemetry.Subscription{
		SchemaVersion: schema,
		Types:         []string{"platform", "function", "extension"},
		Buffering:     telemetry.LowLatency,
		Destination: telemetry.Destination{
			Protocol: "HTTP",
			URI:      "http://" + net.JoinHostPort(host, strconv.Itoa(ln.Addr().Port)),
		},
	})
	if errors.Is(err, telemetry.ErrNotSupported) {
		return errors.New("the Telemetry API answered 202 (not supported, as under AWS's Runtime Interface Emulator): no event will be delivered")
	}
	if err != nil {
		return err
	}
	e.delivery = o.Delivery(e.buf)
	return nil
}

func (e *ext) stopTelemetry() {
	e.closeReceiver(100 * time.Millisecond)
	if e.listener != nil {
		cctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		_ = e.listener.Close(cctx)
		cancel()
		e.listener = nil
	}
	e.delivery = nil
}

// onEvent runs on the listener's decoding goroutine for every event.
func (e *ext) onEvent(ev *telemetry.Event) {
	if e.o.Derive != nil {
		// Before the tracker marks the report: SHUTDOWN waits for the last
		// report and must then find what it derived already buffered.
		if recs := e.o.Derive(ev, time.Now()); len(recs) > 0 {
			e.buf.Add(recs...)
		}
	}
	switch ev.Type {
	case "platform.start":
		e.started.Add(1)
		e.tracker.mark(ev.RequestID, stageStart)
	case "platform.runtimeDone":
		e.doneAt.Store(time.Now().UnixNano())
		e.tracker.mark(ev.RequestID, stageDone)
		e.sel.End(time.Now(), ev.RequestID)
	case "platform.report":
		e.tracker.mark(ev.RequestID, stageReport)
	}
}

// invoke handles one INVOKE according to the flush mode chosen for it.
// Records stream to OpenObserve in the background in every mode while the
// sandbox is thawed; the mode decides only whether /next waits for the rest
// once the runtime is done.
func (e *ext) invoke(ctx context.Context, ev Event) {
	now := time.Now()
	e.invocations++
	prev := e.lastRequest
	e.lastRequest = ev.RequestID
	if e.delivery == nil {
		return
	}
	if prev != "" {
		// Invocations of one sandbox never overlap: a new INVOKE means the
		// previous one ended, even if its runtimeDone was never seen.
		e.sel.End(now, prev)
	}
	d := e.sel.Start(now, ev.RequestID)
	e.modeCounts[d.Mode]++
	if d.Changed {
		e.log.WithField("mode", d.Mode.String()).Info("flush mode: " + d.Reason)
	}
	e.log.WithFields(logrus.Fields{"mode": d.Mode.String(), "requestId": ev.RequestID}).Debug("invocation")

	if d.Mode != strategy.EndOfInvocation {
		// Continuous (or forced periodic): /next at once; what is buffered
		// streams in the background while the sandbox is thawed.
		return
	}
	deadline := time.UnixMilli(ev.DeadlineMs).Add(-invokeMargin)
	if ev.DeadlineMs <= 0 {
		deadline = now.Add(15 * time.Minute) // Lambda's longest timeout
	}
	if !e.waitRuntimeDone(ctx, ev.RequestID, deadline) {
		return
	}
	budget := time.Now().Add(e.o.FlushBudget)
	if deadline.Before(budget) {
		budget = deadline
	}
	fctx, cancel := context.WithDeadline(ctx, budget)
	defer cancel()
	err := e.delivery.Flush(fctx)
	if e.log.Logger.IsLevelEnabled(logrus.DebugLevel) {
		own := time.Since(time.Unix(0, e.doneAt.Load()))
		e.log.WithFields(logrus.Fields{"requestId": ev.RequestID, "own_hold_us": own.Microseconds()}).
			Debug("end of invocation: /next after the flush")
	}
	if err != nil {
		// The rest goes in the background, after the thaw; it is not lost,
		// only later.
		if errors.Is(err, context.DeadlineExceeded) {
			e.warnRarely("end-of-invocation flush did not finish within O2_FLUSH_BUDGET_MS; the rest is sent later")
		} else {
			e.warnRarely("OpenObserve is failing; invocations are not held for it until a send succeeds (" + err.Error() + ")")
		}
	}
}

// waitRuntimeDone waits for the invocation's platform.runtimeDone. It gives
// up at the deadline, when ctx ends, or when the telemetry stream shows no
// sign of the invocation; it reports whether runtimeDone arrived. Records
// stream while it waits; an invocation that runs past O2_LONG_RUNNING_MS is
// counted and logged as periodic once.
func (e *ext) waitRuntimeDone(ctx context.Context, id string, deadline time.Time) bool {
	done := e.tracker.wait(id, stageDone)
	started := e.tracker.wait(id, stageStart)
	defer e.tracker.forget(id)

	deadlineTimer := time.NewTimer(time.Until(deadline))
	defer deadlineTimer.Stop()
	startTimer := time.NewTimer(startTimeout)
	defer startTimer.Stop()
	var longC <-chan time.Time
	if at := e.sel.LongAt(); !at.IsZero() {
		t := time.NewTimer(time.Until(at))
		defer t.Stop()
		longC = t.C
	}
	for {
		select {
		case <-done:
			return true
		case <-started:
			started = nil
			startTimer.Stop()
		case <-startTimer.C:
			if started != nil {
				e.warnRarely("no telemetry for the invocation after INVOKE; not waiting for its end")
				e.endWithoutRuntimeDone(id)
				return false
			}
		case <-longC:
			longC = nil
			e.log.WithFields(logrus.Fields{"mode": strategy.Periodic.String(), "requestId": id}).
				Info("flush mode: periodic: invocation running longer than O2_LONG_RUNNING_MS; its records keep streaming")
			e.modeCounts[strategy.Periodic]++
		case <-deadlineTimer.C:
			e.endWithoutRuntimeDone(id)
			return false
		case <-ctx.Done():
			return false
		}
	}
}

func (e *ext) endWithoutRuntimeDone(id string) {
	e.sel.End(time.Now(), id)
}

// warnRarely logs at most once a minute: these conditions can repeat on
// every invocation, and every line we print comes back as telemetry.
func (e *ext) warnRarely(msg string) {
	now := time.Now()
	ok := now.Sub(e.warnedAt) >= time.Minute
	if ok {
		e.warnedAt = now
	}
	if ok {
		e.log.Warn(msg)
	}
}

// shutdown gives late events a short grace, then hands over to the
// delivery's Shutdown, which sends the summary record last.
func (e *ext) shutdown(ctx context.Context, deadline time.Time, reason string) {
	end := deadline.Add(-shutdownMargin)
	sctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	if e.delivery == nil {
		e.closeReceiver(min(receiverClose, time.Until(end)))
		e.log.WithFields(logrus.Fields{"reason": reason, "invocations": e.invocations}).Info("shutdown")
		return
	}
	settle := func(ctx context.Context) {
		// The platform.report of the last invocation (Lambda makes it only
		// after our /next), and of every invocation whose platform.start
		// came without its report yet (on Managed Instances there is no
		// INVOKE, and several run at once), within the grace.
		gctx, gcancel := context.WithTimeout(ctx, min(reportGrace, time.Until(end)/3))
		defer gcancel()
		waitFor := e.tracker.unreported()
		if last := e.lastRequest; last != "" && !slices.Contains(waitFor, last) {
			waitFor = append(waitFor, last)
		}
		for _, id := range waitFor {
			select {
			case <-e.tracker.wait(id, stageReport):
			case <-gctx.Done():
			}
			e.tracker.forget(id)
		}
		// Whatever else is still on its way lands before the final drain:
		// wait until the Telemetry API has been quiet for a little longer
		// than its 25 ms buffering.
		e.waitQuiet(gctx, quietPeriod)
		gcancel()
		// The function's SDK may export during the grace too (a runtime's
		// SIGTERM hook); from here on what the receiver took is all there is.
		e.closeReceiver(min(receiverClose, time.Until(end)/4))
	}
	// The delivery stops its background sends at once (a batch taken
	// before SHUTDOWN gives its old records back rather than retry them),
	// settles, then drains newest first.
	_ = e.delivery.Shutdown(sctx, settle, func() []telemetry.Event {
		return []telemetry.Event{{Time: time.Now(), Type: SummaryType, Record: e.summary(reason)}}
	})
	lctx, lcancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	_ = e.listener.Close(lctx)
	lcancel()
	st := e.deliveryStats()
	e.log.WithFields(logrus.Fields{
		"reason":          reason,
		"invocations":     e.invocations,
		"delivered":       st["delivered"],
		"buffered_left":   e.buf.Len(),
		"dropped_records": st["droppedRecords"],
	}).Info("shutdown")
}

// closeReceiver closes the receiver, if any, within d.
func (e *ext) closeReceiver(d time.Duration) {
	if e.o.Receiver == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := e.o.Receiver.Close(ctx); err != nil {
		e.log.WithError(err).Debug("OTLP receiver: close")
	}
}

// deliveryStats is the delivery's counters as a JSON object's fields.
func (e *ext) deliveryStats() map[string]any {
	out := map[string]any{}
	if b, err := json.Marshal(e.delivery.Stats()); err == nil {
		_ = json.Unmarshal(b, &out)
	}
	return out
}

// waitQuiet returns once no telemetry has arrived for quiet, counted from
// the later of the last POST and the call (Lambda may still hold events it
// buffered before SHUTDOWN: it posts them at once, but they can reach the
// listener just after SHUTDOWN reaches us), and everything that arrived is
// decoded and buffered; or when ctx ends.
func (e *ext) waitQuiet(ctx context.Context, quiet time.Duration) {
	defer e.listener.Sync(ctx)
	start := time.Now()
	t := time.NewTimer(quiet)
	defer t.Stop()
	for {
		last := e.listener.LastActivity()
		if last.Before(start) {
			last = start
		}
		idle := time.Since(last)
		if idle >= quiet {
			return
		}
		t.Reset(quiet - idle)
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// summary is the extension's own record: what it did over its life, with
// the delivery's counters as they stand once the final drain is over.
type summary struct {
	Version        string         `json:"version"`
	ShutdownReason string         `json:"shutdownReason"`
	Invocations    int            `json:"invocations"` // requests served (platform.start on Managed Instances)
	Modes          map[string]int `json:"modes"`
	Mode           string         `json:"mode"`
	// What the listener received.
	EventsReceived       uint64 `json:"eventsReceived"`
	MalformedEvents      uint64 `json:"malformedEvents"`
	TruncatedBodies      uint64 `json:"truncatedBodies"`
	IncompleteBodies     uint64 `json:"incompleteBodies"` // cut mid-body: nothing kept, 503 so Lambda resends
	TimedOutBodies       uint64 `json:"timedOutBodies"`   // too slow: nothing kept, 503
	RefusedBodies        uint64 `json:"refusedBodies"`    // no room under the listener's byte cap: 503 unread
	FilteredEvents       uint64 `json:"filteredEvents"`
	LambdaDroppedRecords uint64 `json:"lambdaDroppedRecords"`
	LambdaDroppedBytes   uint64 `json:"lambdaDroppedBytes"`
}

// summary builds the summary record: its own fields, then the delivery's
// counters in the same object.
func (e *ext) summary(reason string) json.RawMessage {
	ls := e.listener.Stats()
	s := summary{
		Version:              e.o.Version,
		ShutdownReason:       reason,
		Invocations:          e.invocations,
		Modes:                map[string]int{},
		Mode:                 e.sel.Mode().String(),
		EventsReceived:       ls.Events,
		MalformedEvents:      ls.Malformed,
		TruncatedBodies:      ls.Truncated,
		IncompleteBodies:     ls.Incomplete,
		TimedOutBodies:       ls.TimedOut,
		RefusedBodies:        ls.Refused,
		FilteredEvents:       ls.Filtered,
		LambdaDroppedRecords: ls.LambdaDroppedRecords,
		LambdaDroppedBytes:   ls.LambdaDroppedBytes,
	}
	for m, n := range e.modeCounts {
		s.Modes[m.String()] = n
	}
	if e.o.ManagedInstances {
		// No INVOKE: the requests the telemetry shows, all flushed in the
		// background.
		s.Invocations = int(e.started.Load())
		s.Mode = strategy.Continuous.String()
		s.Modes = map[string]int{s.Mode: s.Invocations}
	}
	own, _ := json.Marshal(s)
	own = splice(own, e.delivery.Stats())
	if e.o.Receiver != nil {
		own = splice(own, e.o.Receiver.Stats())
	}
	return own
}

// splice adds the fields of stats' JSON object to the object obj.
func splice(obj []byte, stats any) []byte {
	more, err := json.Marshal(stats)
	if err != nil || len(more) < 2 || more[0] != '{' || string(more) == "{}" {
		return obj
	}
	// Two objects become one: {obj...,more...}.
	return append(append(obj[:len(obj)-1:len(obj)-1], ','), more[1:]...)
}
