package extension

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/o2-extension/o2-extension/internal/strategy"
	"github.com/o2-extension/o2-extension/internal/telemetry"
	"github.com/sirupsen/logrus"
)

// Margins keep the extension clear of Lambda's hard deadlines.
const (
	// invokeMargin: the most we let a wait run up to an invocation's
	// deadlineMs; /next must be called before the function times out.
	invokeMargin = 100 * time.Millisecond
	// shutdownMargin: exit this long before SHUTDOWN's deadlineMs, leaving
	// time for the process to exit before Lambda's SIGKILL.
	shutdownMargin = 150 * time.Millisecond
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

// Options configure Run.
type Options struct {
	RuntimeAPI string // AWS_LAMBDA_RUNTIME_API, host:port
	Name       string // registration name: the executable's base name
	Version    string // reported in the summary record

	// ManagedInstances selects Lambda Managed Instances behaviour: no
	// INVOKE events, schema 2025-01-29, flush in the background.
	ManagedInstances bool

	// Sender delivers batches. Nil means fail open: register, answer every
	// event at once and forward nothing.
	Sender Sender

	// ListenAddr is the telemetry listener's bind address, host:port.
	ListenAddr string
	// DestinationHost is the host Lambda is told to post to.
	DestinationHost string

	BufferBytes   int           // bound of the whole buffer
	BatchCount    int           // records per request
	BatchBytes    int           // bytes per request (before encoding)
	FlushInterval time.Duration // continuous and periodic interval
	FlushBudget   time.Duration // the most an end-of-invocation flush may hold /next

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

// ext is the state of one running extension.
type ext struct {
	o   Options
	log *logrus.Entry
	api *Client

	buf      *telemetry.Buffer
	listener *telemetry.Listener
	flusher  *flusher
	tracker  *tracker
	// stopBackground cancels the context of every drain the flusher starts
	// on its own (kicks, full batches, intervals); the final drain at
	// SHUTDOWN has a context of its own.
	stopBackground context.CancelFunc

	mu          sync.Mutex // guards modeCounts, invocations, lastRequest, warnedAt (sel locks itself)
	sel         *strategy.Selector
	modeCounts  map[strategy.Mode]int
	invocations int
	lastRequest string
	warnedAt    time.Time
}

// Run registers the extension and runs its lifecycle until SHUTDOWN (nil
// error), until ctx ends (a signal: a short final flush, then nil), or until
// the Extensions API fails (an error: nothing more can be done).
func Run(ctx context.Context, o Options) error {
	log := o.Logger
	if log == nil {
		log = logrus.NewEntry(logrus.StandardLogger())
	}
	e := &ext{
		o:          o,
		log:        log,
		api:        NewClient(o.RuntimeAPI, o.HTTPClient),
		tracker:    newTracker(),
		sel:        strategy.New(o.Strategy),
		modeCounts: map[strategy.Mode]int{},
	}
	events := []string{EventInvoke, EventShutdown}
	if o.ManagedInstances {
		// INVOKE cannot be registered on Managed Instances: Lambda answers
		// 403 and the function's init fails.
		events = []string{EventShutdown}
	}
	if _, err := e.api.Register(ctx, o.Name, events); err != nil {
		return err
	}
	if o.Sender != nil {
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
	e.buf = telemetry.NewBuffer(o.BufferBytes)
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
	e.flusher = newFlusher(e.buf, o.Sender, e.log, o.BatchCount, o.BatchBytes, o.FlushInterval)
	bctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e.stopBackground = cancel
	e.flusher.start(bctx)
	if o.ManagedInstances {
		e.flusher.setContinuous(true)
	}
	return nil
}

func (e *ext) stopTelemetry() {
	if e.listener != nil {
		cctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		_ = e.listener.Close(cctx)
		cancel()
		e.listener = nil
	}
	e.flusher = nil
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
		e.tracker.mark(ev.RequestID, stageStart)
	case "platform.runtimeDone":
		e.tracker.mark(ev.RequestID, stageDone)
		e.sel.End(time.Now(), ev.RequestID)
	case "platform.report":
		e.tracker.mark(ev.RequestID, stageReport)
	}
}

// invoke handles one INVOKE according to the flush mode chosen for it.
func (e *ext) invoke(ctx context.Context, ev Event) {
	now := time.Now()
	e.mu.Lock()
	e.invocations++
	prev := e.lastRequest
	e.lastRequest = ev.RequestID
	if e.flusher == nil {
		e.mu.Unlock()
		return
	}
	if prev != "" && !e.o.ManagedInstances {
		// Invocations of one sandbox never overlap: a new INVOKE means the
		// previous one ended, even if its runtimeDone was never seen.
		e.sel.End(now, prev)
	}
	d := e.sel.Start(now, ev.RequestID)
	e.modeCounts[d.Mode]++
	e.mu.Unlock()
	if d.Changed {
		e.log.WithField("mode", d.Mode.String()).Info("flush mode: " + d.Reason)
	}
	e.log.WithFields(logrus.Fields{"mode": d.Mode.String(), "requestId": ev.RequestID}).Debug("invocation")

	deadline := time.UnixMilli(ev.DeadlineMs).Add(-invokeMargin)
	if ev.DeadlineMs <= 0 {
		deadline = now.Add(15 * time.Minute) // Lambda's longest timeout
	}
	if d.Mode != strategy.EndOfInvocation {
		// Continuous (or forced periodic): /next at once; leftovers from
		// before the freeze go out in the background.
		e.flusher.setContinuous(true)
		if n := e.buf.Len(); n > 0 {
			e.flusher.kick(n)
		}
		return
	}
	e.flusher.setContinuous(false)
	if !e.waitRuntimeDone(ctx, ev.RequestID, deadline) {
		return
	}
	if since := e.flusher.busySince(); !since.IsZero() && time.Since(since) >= e.o.FlushBudget {
		// A drain has been stuck on a slow or hanging backend for longer
		// than a whole budget: waiting again would bill every invocation
		// the full budget for nothing. It carries on in the background and
		// takes this invocation's data when the backend answers.
		e.warnRarely("OpenObserve is not answering; invocations are no longer held for it")
		return
	}
	budget := time.Now().Add(e.o.FlushBudget)
	if deadline.Before(budget) {
		budget = deadline
	}
	fctx, cancel := context.WithDeadline(ctx, budget)
	defer cancel()
	if !e.flusher.flush(fctx) {
		// The drain carries on in the background and resumes after the
		// freeze; the data is not lost, only later.
		e.warnRarely("end-of-invocation flush did not finish within O2_FLUSH_BUDGET_MS; the rest is sent later")
	}
}

// waitRuntimeDone waits for the invocation's platform.runtimeDone, flushing
// periodically while it runs long. It gives up at the deadline, when ctx
// ends, or when the telemetry stream shows no sign of the invocation; it
// reports whether runtimeDone arrived.
func (e *ext) waitRuntimeDone(ctx context.Context, id string, deadline time.Time) bool {
	done := e.tracker.wait(id, stageDone)
	started := e.tracker.wait(id, stageStart)
	defer e.tracker.forget(id)

	deadlineTimer := time.NewTimer(time.Until(deadline))
	defer deadlineTimer.Stop()
	startTimer := time.NewTimer(startTimeout)
	defer startTimer.Stop()
	periodic := time.NewTimer(time.Hour)
	defer periodic.Stop()
	var lastKick time.Time
	announced := false
	for {
		now := time.Now()
		last := e.flusher.lastFlush()
		if lastKick.After(last) {
			last = lastKick
		}
		next := e.sel.NextPeriodic(now, last, e.o.FlushInterval)
		var periodicC <-chan time.Time
		if !next.IsZero() {
			periodic.Reset(max(next.Sub(now), 0))
			periodicC = periodic.C
		}
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
		case <-periodicC:
			if !announced {
				announced = true
				e.log.WithFields(logrus.Fields{"mode": strategy.Periodic.String(), "requestId": id}).
					Info("flush mode: periodic: invocation running longer than O2_LONG_RUNNING_MS")
				e.mu.Lock()
				e.modeCounts[strategy.Periodic]++
				e.mu.Unlock()
			}
			lastKick = time.Now()
			e.flusher.kick(0)
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
	e.mu.Lock()
	now := time.Now()
	ok := now.Sub(e.warnedAt) >= time.Minute
	if ok {
		e.warnedAt = now
	}
	e.mu.Unlock()
	if ok {
		e.log.Warn(msg)
	}
}

// shutdown gives late events a short grace, queues the summary record and
// flushes within the deadline.
func (e *ext) shutdown(ctx context.Context, deadline time.Time, reason string) {
	end := deadline.Add(-shutdownMargin)
	sctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	if e.flusher == nil {
		e.log.WithFields(logrus.Fields{"reason": reason, "invocations": e.invocations}).Info("shutdown")
		return
	}
	e.mu.Lock()
	last := e.lastRequest
	e.mu.Unlock()
	gctx, gcancel := context.WithTimeout(sctx, min(reportGrace, time.Until(end)/3))
	if last != "" {
		select {
		case <-e.tracker.wait(last, stageReport):
		case <-gctx.Done():
		}
		e.tracker.forget(last)
	}
	// Whatever else is still on its way (on Managed Instances there is no
	// INVOKE, so no last request to wait for) lands before the final drain:
	// wait until the Telemetry API has been quiet for a little longer than
	// its 25 ms buffering.
	e.waitQuiet(gctx, quietPeriod)
	gcancel()
	summary := e.summary(reason)
	e.buf.Add(telemetry.Event{Time: time.Now(), Type: SummaryType, Record: summary})

	// The final drain goes before anything queued; a background drain in
	// progress gets half the time to finish its current request.
	e.flusher.finishWithin(sctx, time.Until(end)/2)
	// Out of time, or everything sent. A full batch or an interval may
	// still start a background drain (even after the final one), and
	// stopping the flusher cancels only a drain already running: one that
	// starts just after would hold the exit on a slow backend past the
	// deadline. Cancelling their common context makes any such drain
	// return at once.
	e.stopBackground()
	e.flusher.stop()
	lctx, lcancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	_ = e.listener.Close(lctx)
	lcancel()
	st := e.flusher.Stats()
	e.log.WithFields(logrus.Fields{
		"reason":          reason,
		"invocations":     e.invocations,
		"delivered":       st.Delivered,
		"buffered_left":   e.buf.Len(),
		"dropped_records": st.DroppedRecords,
		"failed":          st.Failed + st.Missing + st.Rejected,
	}).Info("shutdown")
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

// summary is the extension's own record: what it did over its life.
func (e *ext) summary(reason string) json.RawMessage {
	st := e.flusher.Stats()
	ls := e.listener.Stats()
	e.mu.Lock()
	modes := map[string]int{}
	for m, n := range e.modeCounts {
		modes[m.String()] = n
	}
	s := map[string]any{
		"version":              e.o.Version,
		"shutdownReason":       reason,
		"invocations":          e.invocations,
		"modes":                modes,
		"mode":                 e.sel.Mode().String(),
		"eventsReceived":       ls.Events,
		"malformedEvents":      ls.Malformed,
		"truncatedBodies":      ls.Truncated,
		"filteredEvents":       ls.Filtered,
		"lambdaDroppedRecords": ls.LambdaDroppedRecords,
		"lambdaDroppedBytes":   ls.LambdaDroppedBytes,
		"delivered":            st.Delivered,
		"failed":               st.Failed,
		"silentlyDropped":      st.Missing,
		"rejected":             st.Rejected,
		"droppedRecords":       st.DroppedRecords,
		"droppedBytes":         st.DroppedBytes,
		"requests":             st.Requests,
		"bytesSent":            st.Bytes,
		"sendErrors":           st.SendErrors,
		"bufferedRecords":      e.buf.Len(),
	}
	e.mu.Unlock()
	b, _ := json.Marshal(s)
	return b
}
