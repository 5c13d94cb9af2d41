package telemetry

import (
	"context"
	"sync"
	"time"
)

// gate is a semaphore counted in bytes: the listener takes a body's bytes
// from it before reading the body and gives them back once the body has
// been decoded (or refused), so the bytes of all bodies held at once never
// exceed max.
//
// Waiters are served first come, first served: a large body is not starved
// by a stream of small ones. A waiter holds nothing while it waits, so two
// bodies can never deadlock each holding part of the room.
type gate struct {
	mu      sync.Mutex
	max     int64
	held    int64
	peak    int64 // the most held at once, for tests
	waiters []*gateWaiter
}

type gateWaiter struct {
	n     int64
	ready chan struct{} // closed when the bytes are granted
}

func newGate(max int64) *gate { return &gate{max: max} }

// acquire takes n bytes (n <= g.max), waiting at most wait for room. It
// returns false, holding nothing, if there was no room in time or if ctx or
// stop ended first.
//
// The wait is on channels and a timer, never on the mutex, so it works under
// testing/synctest's fake clock.
func (g *gate) acquire(ctx context.Context, n int64, wait time.Duration, stop <-chan struct{}) bool {
	g.mu.Lock()
	if len(g.waiters) == 0 && g.held+n <= g.max {
		g.takeLocked(n)
		g.mu.Unlock()
		return true
	}
	w := &gateWaiter{n: n, ready: make(chan struct{})}
	g.waiters = append(g.waiters, w)
	g.mu.Unlock()

	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-w.ready:
		return true
	case <-t.C:
	case <-ctx.Done():
	case <-stop:
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-w.ready:
		// Granted just as the wait ended: give the bytes back.
		g.held -= n
	default:
		for i, x := range g.waiters {
			if x == w {
				g.waiters = append(g.waiters[:i], g.waiters[i+1:]...)
				break
			}
		}
	}
	// Leaving the head of the queue may let those behind in.
	g.grantLocked()
	return false
}

// release gives back n bytes taken by acquire.
func (g *gate) release(n int64) {
	g.mu.Lock()
	g.held -= n
	g.grantLocked()
	g.mu.Unlock()
}

func (g *gate) takeLocked(n int64) {
	g.held += n
	g.peak = max(g.peak, g.held)
}

// grantLocked lets in the waiters at the head of the queue that now fit.
func (g *gate) grantLocked() {
	for len(g.waiters) > 0 {
		w := g.waiters[0]
		if g.held+w.n > g.max {
			return
		}
		g.takeLocked(w.n)
		close(w.ready)
		g.waiters[0] = nil
		g.waiters = g.waiters[1:]
	}
}

// usage reports the bytes held now and the most held at once.
func (g *gate) usage() (held, peak int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.held, g.peak
}
