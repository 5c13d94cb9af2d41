package openobserve

import (
	"context"
	"io"
	"net/http"
	"sync"
	"time"
)

// attemptTimeoutError is the error of an attempt that ran out of
// AttemptTimeout. It is a net.Error with Timeout() true, as the standard
// client's timeout error is.
type attemptTimeoutError struct{ d time.Duration }

func (e attemptTimeoutError) Error() string {
	return "attempt timed out after " + e.d.String() + " (O2_REQUEST_TIMEOUT_MS)"
}
func (attemptTimeoutError) Timeout() bool   { return true }
func (attemptTimeoutError) Temporary() bool { return true }

// thawedTimeout bounds each attempt, reply body included, by time the
// process was actually running. Lambda freezes the sandbox between
// invocations: a request in flight then stays in flight, and the server's
// answer waits in the socket. A wall-clock timeout (http.Client.Timeout)
// would fire at the thaw, racing the reply that is already there, and the
// batch would be sent a second time although OpenObserve stored it. Here a
// watcher samples the clock in small steps and counts a gap much longer
// than a step (a freeze) as one step only.
type thawedTimeout struct {
	next http.RoundTripper
	d    time.Duration
}

// thawStep is the watcher's sampling step: short enough that a freeze is
// seen as a gap, long enough to cost nothing.
const thawStep = 100 * time.Millisecond

func (t thawedTimeout) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(req.Context())
	w := &watcher{done: make(chan struct{})}
	w.wg.Go(func() { w.run(t.d, cancel) })
	resp, err := t.next.RoundTrip(req.WithContext(ctx))
	if err != nil {
		w.stop()
		cancel(nil)
		if _, ok := context.Cause(ctx).(attemptTimeoutError); ok {
			return nil, context.Cause(ctx)
		}
		return nil, err
	}
	resp.Body = &watchedBody{ReadCloser: resp.Body, w: w, cancel: cancel, ctx: ctx}
	return resp, nil
}

// watcher cancels the attempt once d of running time has passed.
type watcher struct {
	done chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

func (w *watcher) run(d time.Duration, cancel context.CancelCauseFunc) {
	step := min(thawStep, max(d/10, time.Millisecond))
	remaining := d
	last := time.Now()
	timer := time.NewTimer(min(step, remaining))
	defer timer.Stop()
	for {
		select {
		case <-w.done:
			return
		case <-timer.C:
		}
		now := time.Now()
		gap := now.Sub(last)
		last = now
		if gap > 3*step {
			gap = step // the process was frozen: that time does not count
		}
		remaining -= gap
		if remaining <= 0 {
			cancel(attemptTimeoutError{d})
			return
		}
		timer.Reset(min(step, remaining))
	}
}

// stop ends the watcher and waits for it; safe to call twice.
func (w *watcher) stop() {
	w.once.Do(func() { close(w.done) })
	w.wg.Wait()
}

// watchedBody keeps the attempt's timeout running while the reply is read
// and releases the watcher when the body is closed.
type watchedBody struct {
	io.ReadCloser
	w      *watcher
	cancel context.CancelCauseFunc
	ctx    context.Context
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		if cause, ok := context.Cause(b.ctx).(attemptTimeoutError); ok {
			err = cause
		}
	}
	return n, err
}

func (b *watchedBody) Close() error {
	err := b.ReadCloser.Close()
	b.w.stop()
	b.cancel(nil)
	return err
}
