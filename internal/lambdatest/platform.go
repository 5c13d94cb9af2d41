// Package lambdatest emulates an AWS Lambda execution environment for
// extensions: the Extensions API, the Telemetry API with batched delivery,
// a simulated function, and the freeze between invocations.
//
// It runs the real extension binary as a child process (or talks to an
// in-process client), follows the platform's documented sequence of events
// and failures (docs/lambda-platform.md), stops the child with SIGSTOP while
// the sandbox is frozen, and measures what a user pays: init time, the
// post-runtime overhead of each invocation, shutdown time, memory and CPU.
package lambdatest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// Errors returned by the Platform.
var (
	// ErrClosed is returned by calls on a closed Platform.
	ErrClosed = errors.New("lambdatest: platform closed")
	// ErrShutdown is returned by Invoke and Shutdown after Shutdown.
	ErrShutdown = errors.New("lambdatest: environment shut down")
	// ErrExtensionFailed reports an extension that crashed or called
	// init/error or exit/error.
	ErrExtensionFailed = errors.New("lambdatest: extension failed")
)

// Platform is one emulated execution environment.
type Platform struct {
	o       Options
	ln      net.Listener
	srv     *http.Server
	mux     *http.ServeMux
	client  *http.Client // deliveries to telemetry listeners
	startAt time.Time
	done    chan struct{} // closed by Close: blocked /next calls return
	wg      sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
	initMu    sync.Mutex   // one init at a time
	opMu      sync.RWMutex // Invoke (shared in managed mode) vs Shutdown
	outMu     sync.Mutex   // serialises writes to o.Output

	mu           sync.Mutex
	changed      chan struct{} // closed and replaced on every state change
	exts         []*extension  // in registration order
	byID         map[string]*extension
	procs        []*process // in Options.Extensions order
	events       []Event
	output       bytes.Buffer
	regClosed    bool // registration closed (runtime ready)
	subClosed    bool // telemetry subscription closed (init done)
	initDone     bool
	initErr      error // set when init failed for good
	initStart    time.Time
	initDuration time.Duration
	coldReported bool // the first platform.report carries initDurationMs
	paused       bool // delivery paused: frozen or freezing
	frozen       bool // processes really stopped (or, in-process, drained)
	shutdown     bool
	closed       bool
	failures     []string // crashes and error calls not yet reported
}

// extension is one registered extension.
type extension struct {
	id       string
	name     string
	events   []string
	invoke   bool
	shutdown bool
	external bool     // may register for SHUTDOWN
	proc     *process // nil in-process or for an internal extension

	queue        []pendingEvent // events not yet handed out by /next
	waiting      bool           // blocked in /next right now
	nextCalls    int
	firstNext    time.Time
	lastNext     time.Time
	gotShutdown  bool
	failed       string // error type from init/error or exit/error
	exited       bool
	exitedAt     time.Time
	registeredAt time.Time
	sub          *subscriber
}

// pendingEvent is an Extensions API event waiting for /next.
type pendingEvent struct {
	body     []byte
	eventID  string // Lambda-Extension-Event-Identifier, INVOKE only
	shutdown bool
}

// idle reports whether the extension has consumed its events and is
// waiting in /next (or is gone): what Lambda waits for before freezing.
func (e *extension) idle() bool {
	return e.exited || (e.waiting && len(e.queue) == 0)
}

// Start serves the APIs on 127.0.0.1:0, starts the extensions and runs
// init. With Options.Extensions it returns once init is complete (every
// extension has called /next) or failed (init timeout, an extension exited
// or called init/error). In in-process mode it returns at once with
// registration open; init completes on CompleteInit or the first Invoke.
func Start(ctx context.Context, o Options) (*Platform, error) {
	o = o.withDefaults()
	if o.LogFormat != "text" && o.LogFormat != "json" {
		return nil, fmt.Errorf("lambdatest: log format %q: want text or json", o.LogFormat)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("lambdatest: listen: %w", err)
	}
	p := &Platform{
		o:       o,
		ln:      ln,
		startAt: time.Now(),
		done:    make(chan struct{}),
		changed: make(chan struct{}),
		byID:    map[string]*extension{},
		// No client timeout: a POST to a frozen listener stalls until the
		// thaw, as on Lambda; Close cancels it.
		client: &http.Client{Transport: &http.Transport{
			DisableCompression:  true,
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     time.Minute,
		}},
	}
	p.mux = p.routes()
	p.srv = &http.Server{Handler: p.mux, ReadHeaderTimeout: 10 * time.Second}
	p.wg.Go(func() { _ = p.srv.Serve(ln) })

	p.mu.Lock()
	p.initStart = time.Now()
	p.emitLocked("platform.initStart", map[string]any{
		"initializationType": o.initializationType(),
		"phase":              "init",
		"functionName":       o.FunctionName,
		"functionVersion":    o.FunctionVersion,
	})
	p.mu.Unlock()

	if len(o.Extensions) == 0 {
		return p, nil
	}
	for _, path := range o.Extensions {
		if _, err := p.startProcess(path); err != nil {
			p.Close()
			return nil, fmt.Errorf("lambdatest: %w", err)
		}
	}
	if err := p.CompleteInit(ctx, 0); err != nil {
		p.Close()
		return nil, fmt.Errorf("%w\n--- extension output (tail) ---\n%s", err, tail(p.Output(), 4096))
	}
	return p, nil
}

// CompleteInit runs the rest of init in RAPID's order: wait until every
// started extension (in-process: at least n) has registered, runtime ready,
// close registration, wait for every extension's first /next, close the
// telemetry subscription, then emit platform.initRuntimeDone,
// platform.extension per extension and platform.initReport. In on-demand
// mode the environment is then frozen until the first Invoke. Calling it
// again returns the first result.
func (p *Platform) CompleteInit(ctx context.Context, n int) error {
	p.initMu.Lock()
	defer p.initMu.Unlock()
	p.mu.Lock()
	if p.initDone || p.initErr != nil {
		err := p.initErr
		p.mu.Unlock()
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, p.o.InitTimeout)
	defer cancel()

	err := p.waitLocked(ctx, func() (bool, error) {
		if err := p.initFailureLocked(); err != nil {
			return false, err
		}
		for _, pr := range p.procs {
			if pr.ext == nil {
				return false, nil
			}
		}
		return len(p.exts) >= n, nil
	})
	if err == nil {
		// The simulated runtime is ready at once: registration closes.
		p.regClosed = true
		p.broadcastLocked()
		err = p.waitLocked(ctx, func() (bool, error) {
			if err := p.initFailureLocked(); err != nil {
				return false, err
			}
			for _, e := range p.exts {
				if !e.idle() {
					return false, nil
				}
			}
			return true, nil
		})
	}
	if err != nil {
		err = p.describeInitErrLocked(ctx, err)
		p.failInitLocked(err)
		p.mu.Unlock()
		return err
	}
	p.regClosed, p.subClosed = true, true
	it := p.o.initializationType()
	p.emitLocked("platform.initRuntimeDone", map[string]any{
		"initializationType": it, "phase": "init", "status": "success",
	})
	for _, e := range p.exts {
		p.emitLocked("platform.extension", map[string]any{
			"name": e.name, "state": "Ready", "events": nonNil(e.events),
		})
	}
	p.initDuration = time.Since(p.initStart)
	p.emitLocked("platform.initReport", map[string]any{
		"initializationType": it, "phase": "init", "status": "success",
		"metrics": map[string]any{"durationMs": ms(p.initDuration)},
	})
	p.initDone = true
	p.broadcastLocked()
	freeze := !p.o.ManagedInstances
	if freeze {
		p.pauseLocked()
	}
	p.mu.Unlock()
	if freeze {
		p.freeze(ctx)
	}
	return nil
}

// initFailureLocked reports an extension that made init fail: it called
// init/error or exit/error, or exited.
func (p *Platform) initFailureLocked() error {
	for _, e := range p.exts {
		if e.failed != "" {
			return fmt.Errorf("%w: %s reported %s during init", ErrExtensionFailed, e.name, e.failed)
		}
	}
	for _, pr := range p.procs {
		if pr.exited {
			return fmt.Errorf("%w: %s exited during init (exit code %d)", ErrExtensionFailed, pr.name, pr.exitCode)
		}
	}
	return nil
}

// describeInitErrLocked names who was missing when init timed out.
func (p *Platform) describeInitErrLocked(ctx context.Context, err error) error {
	if errors.Is(err, ErrExtensionFailed) || errors.Is(err, ErrClosed) {
		return err
	}
	if !errors.Is(err, context.DeadlineExceeded) || ctx.Err() == nil {
		return fmt.Errorf("lambdatest: init: %w", err)
	}
	var missing []string
	for _, pr := range p.procs {
		if pr.ext == nil {
			missing = append(missing, pr.name+" (not registered under its file name)")
		}
	}
	for _, e := range p.exts {
		if !e.idle() {
			missing = append(missing, e.name+" (no /next)")
		}
	}
	return fmt.Errorf("lambdatest: init timed out after %v waiting for %v: %w", p.o.InitTimeout, missing, err)
}

// failInitLocked records a failed init as Lambda reports it.
func (p *Platform) failInitLocked(err error) {
	p.initErr = err
	it := p.o.initializationType()
	errType := "Extension.InitError"
	if errors.Is(err, context.DeadlineExceeded) {
		errType = "Sandbox.Timedout"
	}
	p.emitLocked("platform.initRuntimeDone", map[string]any{
		"initializationType": it, "phase": "init", "status": "error", "errorType": errType,
	})
	p.emitLocked("platform.initReport", map[string]any{
		"initializationType": it, "phase": "init", "status": "error", "errorType": errType,
		"metrics": map[string]any{"durationMs": ms(time.Since(p.initStart))},
	})
	p.broadcastLocked()
}

// URL returns the "127.0.0.1:PORT" given to extensions as
// AWS_LAMBDA_RUNTIME_API.
func (p *Platform) URL() string { return p.ln.Addr().String() }

// Handler returns the APIs as an http.Handler, so a test can reach them
// through an http.RoundTripper without a socket.
func (p *Platform) Handler() http.Handler { return p.mux }

// Close kills every process still running, stops deliveries and the
// server, and waits for every goroutine. It is safe to call twice.
func (p *Platform) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		close(p.done)
		procs := append([]*process(nil), p.procs...)
		subs := p.subscribersLocked()
		p.broadcastLocked()
		p.mu.Unlock()
		for _, pr := range procs {
			p.signal(pr, syscall.SIGKILL) // also ends a stopped process
		}
		for _, s := range subs {
			s.close()
		}
		for _, pr := range procs {
			<-pr.done
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := p.srv.Shutdown(ctx); err != nil {
			p.closeErr = p.srv.Close()
		}
		p.wg.Wait()
		p.client.CloseIdleConnections()
	})
	return p.closeErr
}

// Frozen reports whether the environment is frozen right now: every
// extension is at /next, deliveries are paused and the processes are
// stopped.
func (p *Platform) Frozen() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.frozen
}

// Output returns everything the extensions printed so far.
func (p *Platform) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.output.String()
}

// Events returns every telemetry event the platform generated so far, in
// order, whoever it was delivered to.
func (p *Platform) Events() []Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Event(nil), p.events...)
}

// PIDs returns the process ids of the started extensions.
func (p *Platform) PIDs() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	pids := make([]int, len(p.procs))
	for i, pr := range p.procs {
		pids[i] = pr.pid
	}
	return pids
}

// DeliveryStats counts the delivery POSTs to one subscriber.
type DeliveryStats struct {
	Attempts int // POSTs tried, retries included
	Failures int // POSTs that failed (connection error or non-2xx)
}

// Deliveries returns the delivery counts per subscribed extension name.
func (p *Platform) Deliveries() map[string]DeliveryStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := map[string]DeliveryStats{}
	for _, e := range p.exts {
		if e.sub != nil {
			a, f := e.sub.counts()
			m[e.name] = DeliveryStats{Attempts: a, Failures: f}
		}
	}
	return m
}

// WaitDelivered waits until the Telemetry API has delivered every event
// produced so far to every subscriber (each answered 2xx, or the batch was
// dropped after its retries), or ctx ends. Called from an Invocation's Func,
// while the environment is thawed, it makes sure the extension holds the
// invocation's lines before the invocation ends; while frozen nothing is
// delivered, and it waits for the thaw.
func (p *Platform) WaitDelivered(ctx context.Context) error {
	p.mu.Lock()
	subs := p.subscribersLocked()
	p.mu.Unlock()
	for _, s := range subs {
		if err := s.waitDelivered(ctx); err != nil {
			return err
		}
	}
	return nil
}

// subscribersLocked returns the extensions' telemetry subscribers.
func (p *Platform) subscribersLocked() []*subscriber {
	var subs []*subscriber
	for _, e := range p.exts {
		if e.sub != nil {
			subs = append(subs, e.sub)
		}
	}
	return subs
}

// ExtensionExited tells the platform that the in-process extension name
// has exited, as a process would by ending; Shutdown waits for it. An
// in-process extension that calls /next after SHUTDOWN counts as exited too.
func (p *Platform) ExtensionExited(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.exts {
		if e.name == name && e.proc == nil && !e.exited {
			e.exited = true
			e.exitedAt = time.Now()
			p.broadcastLocked()
		}
	}
}

// broadcastLocked wakes every waiter; p.mu must be held.
func (p *Platform) broadcastLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// waitLocked waits, with p.mu held on entry and on return, until cond
// reports true or an error, ctx ends or the platform closes.
func (p *Platform) waitLocked(ctx context.Context, cond func() (bool, error)) error {
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if p.closed {
			return ErrClosed
		}
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		case <-p.done:
		}
		p.mu.Lock()
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// emitLocked generates a telemetry event: it joins the log and every
// subscriber's queue. rec is marshalled unless it is already JSON.
func (p *Platform) emitLocked(typ string, rec any) Event {
	var raw json.RawMessage
	switch r := rec.(type) {
	case json.RawMessage:
		raw = r
	default:
		raw, _ = json.Marshal(r)
	}
	ev := Event{Time: time.Now().UTC(), Type: typ, Record: raw}
	p.events = append(p.events, ev)
	for _, e := range p.exts {
		if e.sub != nil {
			e.sub.offer(ev)
		}
	}
	return ev
}

// recordEvent logs an event a subscriber generated for itself
// (platform.logsDropped).
func (p *Platform) recordEvent(ev Event) {
	p.mu.Lock()
	p.events = append(p.events, ev)
	p.mu.Unlock()
}

// extensionLine handles one line an extension printed: kept for Output,
// copied to Options.Output, and delivered as an "extension" record, as
// Lambda does with an extension's stdout and stderr.
func (p *Platform) extensionLine(line string) {
	rec, _ := json.Marshal(line)
	p.mu.Lock()
	p.output.WriteString(line)
	p.output.WriteByte('\n')
	p.emitLocked("extension", json.RawMessage(rec))
	p.mu.Unlock()
	if w := p.o.Output; w != nil {
		p.outMu.Lock()
		fmt.Fprintln(w, line)
		p.outMu.Unlock()
	}
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// isUUID reports whether s has the 8-4-4-4-12 hex shape of a UUID.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// newTrace returns an X-Ray trace header value, as Lambda passes in INVOKE.
func newTrace(now time.Time) string {
	var b [20]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("Root=1-%08x-%s;Parent=%s;Sampled=0",
		now.Unix(), hex.EncodeToString(b[:12]), hex.EncodeToString(b[12:]))
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
