package tenant

// Stats and Pending let the tests read a Tracker's counters.

// Stats is what a Tracker has counted.
type Stats = stats

// Stats returns the counters.
func (t *Tracker) Stats() Stats {
	if t == nil {
		return Stats{}
	}
	return Stats{Marks: t.nMarks.Load(), Matched: t.nMatched.Load(), Evicted: t.nEvicted.Load()}
}

// Pending returns how many marks are waiting for their report.
func (t *Tracker) Pending() int {
	if t == nil {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.marks.len()
}
