package strategy

import "time"

// The tests observe the running invocations through long.

// long reports whether an invocation has been running longer than
// LongRunning at now without an End, that is, whether periodic flushing
// applies now. With several running invocations it considers the oldest.
// ok is false, with zero id and duration, when none is that long.
func (s *Selector) long(now time.Time) (requestID string, running time.Duration, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, start, found := s.oldestRunning()
	if !found {
		return "", 0, false
	}
	if d := now.Sub(start); d > s.o.LongRunning {
		return id, d, true
	}
	return "", 0, false
}
