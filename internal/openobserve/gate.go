package openobserve

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"
)

// failingStreak is the number of failed attempts in a row, across all
// requests in flight, from which the backend counts as failing: the breaker
// opens. While it is open, invocations are not held for a flush, and only
// one attempt at a time probes the backend, so that an outage costs about
// one request per backoff, not one per sender.
const failingStreak = 2

// errPausePastDeadline is returned by gate.wait when a pause asked for by
// the server (Retry-After) would end after the caller's deadline.
var errPausePastDeadline = errors.New("openobserve: server asked to pause past the deadline")

// gate is the client-wide state every attempt goes through: a pause the
// server asked for (429 or 503 with Retry-After) holds back every request,
// not only the one that was answered; and a run of failed attempts opens a
// breaker. It is safe for concurrent use; waiters block on channels, not on
// the mutex, so that fake time advances in tests.
type gate struct {
	mu          sync.Mutex
	pausedUntil time.Time
	streak      int  // failed attempts in a row, client-wide
	probing     bool // an attempt is probing a failing backend
	final       bool // SHUTDOWN: every sender may try at once
	changed     chan struct{}
}

func newGate() *gate { return &gate{changed: make(chan struct{})} }

// broadcastLocked wakes every waiter.
func (g *gate) broadcastLocked() {
	close(g.changed)
	g.changed = make(chan struct{})
}

// failing reports whether the breaker is open.
func (g *gate) failing() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.streak >= failingStreak
}

// changes returns a channel closed at the next change of the gate.
func (g *gate) changes() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.changed
}

// failures is the number of failed attempts in a row.
func (g *gate) failures() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.streak
}

// pausedUntilTime is the end of the last pause asked for.
func (g *gate) pausedUntilTime() time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.pausedUntil
}

// paused returns the end of the server's pause, if one is in force at now.
func (g *gate) paused(now time.Time) (time.Time, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.pausedUntil, now.Before(g.pausedUntil)
}

// pause holds back every attempt until t (a later pause wins).
func (g *gate) pause(t time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if t.After(g.pausedUntil) && !g.final {
		g.pausedUntil = t
		g.broadcastLocked()
	}
}

// fail counts a failed attempt that the transport saw as answered (a 2xx
// that was not OpenObserve's reply) and returns the streak.
func (g *gate) fail() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.streak++
	g.broadcastLocked()
	return g.streak
}

// slowDown opens the breaker and holds every attempt back until t: the
// backend answered, but not in a way that another attempt at once would
// change.
func (g *gate) slowDown(t time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.streak = max(g.streak, failingStreak)
	if t.After(g.pausedUntil) && !g.final {
		g.pausedUntil = t
	}
	g.broadcastLocked()
}

// setFinal lifts the one-probe limit and any pause: at SHUTDOWN there is
// no later, and one more refusal costs less than the data.
func (g *gate) setFinal() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.final = true
	g.pausedUntil = time.Time{}
	g.broadcastLocked()
}

// wait blocks until an attempt may start: after any pause, and while the
// breaker is open, when no other attempt is probing. It reports whether
// this attempt is the probe (then done must be told so).
func (g *gate) wait(ctx context.Context) (probe bool, err error) {
	for {
		g.mu.Lock()
		now := time.Now()
		ch := g.changed
		var timer *time.Timer
		var tick <-chan time.Time
		switch {
		case now.Before(g.pausedUntil):
			if dl, ok := ctx.Deadline(); ok && g.pausedUntil.After(dl) {
				g.mu.Unlock()
				return false, errPausePastDeadline
			}
			timer = time.NewTimer(g.pausedUntil.Sub(now))
			tick = timer.C
		case g.streak >= failingStreak && !g.final && g.probing:
			// Another attempt is finding out whether the backend is back.
		default:
			probe = g.streak >= failingStreak && !g.final
			if probe {
				g.probing = true
			}
			g.mu.Unlock()
			return probe, nil
		}
		g.mu.Unlock()
		select {
		case <-ch:
		case <-tick:
		case <-ctx.Done():
			err = context.Cause(ctx)
		}
		if timer != nil {
			timer.Stop()
		}
		if err != nil {
			return false, err
		}
	}
}

// outcome is what an attempt says about the backend.
type outcome int

const (
	answered outcome = iota // a success, or a refusal of the data itself
	failed                  // worth a retry: the backend is busy or down
	refused                 // credentials or organization refused
)

// outcomeOf classifies an attempt's result for the gate.
func outcomeOf(resp *http.Response, err error) outcome {
	if retryable(resp, err) {
		return failed
	}
	if err == nil {
		switch resp.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound:
			return refused
		}
	}
	return answered
}

// done records an attempt's outcome. A failure lengthens the failing
// streak; refused credentials open the breaker at once (until they work
// again, one attempt at a time finds out, after each pause); anything else
// closes it.
func (g *gate) done(o outcome, probe bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if probe {
		g.probing = false
	}
	switch o {
	case answered:
		g.streak = 0
	case failed:
		g.streak++
	case refused:
		g.streak = max(g.streak, failingStreak)
	}
	g.broadcastLocked()
}

// release gives up a probe turn without an outcome.
func (g *gate) release(probe bool) {
	if !probe {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.probing = false
	g.broadcastLocked()
}

// gatedTransport sends every attempt of the delivery path through the gate.
// The health check's calls bypass it: a person at a terminal wants the
// answer at once.
type gatedTransport struct {
	next http.RoundTripper
	g    *gate
}

func (t gatedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	probe, err := t.g.wait(req.Context())
	if err != nil {
		return nil, err
	}
	if !beginAttempt(req.Context()) {
		t.g.release(probe)
		return nil, context.Cause(req.Context())
	}
	resp, err := t.next.RoundTrip(req)
	t.g.done(outcomeOf(resp, err), probe)
	return resp, err
}
