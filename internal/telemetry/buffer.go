package telemetry

import (
	"sync"
	"time"
)

// Buffer is a FIFO of events bounded by bytes. When an event does not fit,
// the oldest events are dropped to make room and the drop is counted: a busy
// function must never grow the extension until Lambda kills it for memory.
// It is safe for concurrent use.
type Buffer struct {
	mu    sync.Mutex
	q     []Event // q[head:] are queued, oldest first
	head  int
	bytes int
	max   int

	droppedRecords uint64
	droppedBytes   uint64

	// since is when the buffer last went from empty to not empty: no
	// queued record has waited longer than time.Since(since).
	since time.Time
	added chan struct{} // signalled after every Add and PutBack
}

// NewBuffer returns a buffer holding at most maxBytes (as counted by
// Event.Size).
func NewBuffer(maxBytes int) *Buffer {
	return &Buffer{max: maxBytes, added: make(chan struct{}, 1)}
}

// Added is signalled, without blocking the producer, after events are added
// or put back: the consumer then looks at Len, Bytes and Since.
func (b *Buffer) Added() <-chan struct{} { return b.added }

func (b *Buffer) signal() {
	select {
	case b.added <- struct{}{}:
	default:
	}
}

// Since is when the oldest queued event was queued, or at least no later:
// the time the buffer last went from empty to not empty, or putBackSince
// once events were put back (they have waited already). It is zero when
// the buffer is empty.
func (b *Buffer) Since() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.since
}

// putBackSince is the Since of put-back events: long past, not zero.
var putBackSince = time.Unix(0, 1)

// markLocked notes the time the buffer goes from empty to not empty.
func (b *Buffer) markLocked(wasEmpty bool) {
	if wasEmpty && b.head < len(b.q) {
		b.since = time.Now()
	}
}

// Add appends events, dropping the oldest queued ones when the bound would be
// exceeded. An event larger than the whole bound is dropped itself.
func (b *Buffer) Add(evs ...Event) {
	b.mu.Lock()
	wasEmpty := b.head == len(b.q)
	for _, e := range evs {
		size := e.Size()
		if size > b.max {
			b.droppedRecords++
			b.droppedBytes += uint64(size)
			continue
		}
		for b.bytes+size > b.max {
			b.dropOldestLocked()
		}
		b.q = append(b.q, e)
		b.bytes += size
	}
	b.markLocked(wasEmpty)
	b.mu.Unlock()
	b.signal()
}

func (b *Buffer) dropOldestLocked() {
	e := b.q[b.head]
	size := e.Size()
	b.q[b.head] = Event{}
	b.head++
	b.bytes -= size
	b.droppedRecords++
	b.droppedBytes += uint64(size)
	b.compactLocked()
}

// compactLocked releases the consumed prefix of the slice once it dominates,
// so a long-lived buffer does not keep a growing backing array.
func (b *Buffer) compactLocked() {
	n := len(b.q) - b.head
	if n == 0 {
		b.q, b.head = b.q[:0], 0
		b.since = time.Time{}
		return
	}
	if b.head > 64 && b.head > n {
		copy(b.q, b.q[b.head:])
		clear(b.q[n:])
		b.q, b.head = b.q[:n], 0
	}
}

// Take removes and returns the oldest events: at most maxCount of them and at
// most maxBytes in total, but always at least one when the buffer is not
// empty, so a single oversize event can never stall the queue (the sender
// splits it).
func (b *Buffer) Take(maxCount, maxBytes int) []Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []Event
	total := 0
	for b.head < len(b.q) && len(out) < maxCount {
		e := b.q[b.head]
		size := e.Size()
		if len(out) > 0 && total+size > maxBytes {
			break
		}
		out = append(out, e)
		total += size
		b.q[b.head] = Event{}
		b.head++
		b.bytes -= size
	}
	b.compactLocked()
	return out
}

// TakeNewest removes and returns the newest events, in their order: at most
// maxCount of them and at most maxBytes in total, but always at least one
// when the buffer is not empty. At SHUTDOWN the newest data (the last
// invocation's lines and report) matter most, so they go first.
func (b *Buffer) TakeNewest(maxCount, maxBytes int) []Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	start, total := len(b.q), 0
	for start > b.head && len(b.q)-start < maxCount {
		size := b.q[start-1].Size()
		if start < len(b.q) && total+size > maxBytes {
			break
		}
		total += size
		start--
	}
	out := make([]Event, len(b.q)-start)
	copy(out, b.q[start:])
	clear(b.q[start:])
	b.q = b.q[:start]
	b.bytes -= total
	b.compactLocked()
	return out
}

// PutBack returns events that could not be delivered to the buffer, in
// their order and by age (Time): usually they are older than everything
// queued and go to the front, so they go out first next time. But with
// several batches in flight one taken later can come back after one taken
// before it, or after newer events were queued; those are merged in by
// time, so that the order, and which events a full buffer drops, still go
// by age. When there is not room for all, the oldest events (put back or
// queued) are dropped and counted; an event larger than the whole bound is
// dropped itself. It reports how many were dropped.
func (b *Buffer) PutBack(evs []Event) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	// keep is evs without the events larger than the whole bound; it is
	// evs itself (never retained: every path below copies it) unless one
	// is that large.
	dropped, total := 0, 0
	keep := evs
	for i, e := range evs {
		size := e.Size()
		if size <= b.max {
			total += size
			if dropped > 0 {
				keep = append(keep, e)
			}
			continue
		}
		if dropped == 0 {
			keep = append(make([]Event, 0, len(evs)), evs[:i]...)
		}
		b.droppedRecords++
		b.droppedBytes += uint64(size)
		dropped++
	}
	if len(keep) == 0 {
		return dropped
	}
	wasEmpty := b.head == len(b.q)
	defer b.signal()
	queued := b.q[b.head:]
	switch {
	case len(queued) > 0 && queued[0].Time.Before(keep[len(keep)-1].Time):
		merged := make([]Event, 0, len(keep)+len(queued))
		i, j := 0, 0
		for i < len(keep) && j < len(queued) {
			if queued[j].Time.Before(keep[i].Time) {
				merged = append(merged, queued[j])
				j++
			} else {
				merged = append(merged, keep[i])
				i++
			}
		}
		merged = append(append(merged, keep[i:]...), queued[j:]...)
		clear(b.q)
		b.q, b.head = merged, 0
	case b.head >= len(keep):
		b.head -= len(keep)
		copy(b.q[b.head:], keep)
	default:
		q := make([]Event, 0, len(keep)+len(queued))
		q = append(q, keep...)
		q = append(q, queued...)
		b.q, b.head = q, 0
	}
	b.bytes += total
	if wasEmpty || b.since.After(putBackSince) {
		// They were queued long ago: their wait is over.
		b.since = putBackSince
	}
	for b.bytes > b.max {
		b.dropOldestLocked()
		dropped++
	}
	return dropped
}

// Len is the number of queued events.
func (b *Buffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.q) - b.head
}

// Bytes is the size of the queued events as counted against the bound.
func (b *Buffer) Bytes() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.bytes
}

// Cap is the buffer's bound in bytes (as counted by Event.Size): events
// adding up to more than this can never all be queued at once.
func (b *Buffer) Cap() int { return b.max }

// Dropped reports how many records and bytes were dropped since the buffer
// was made.
func (b *Buffer) Dropped() (records, bytes uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.droppedRecords, b.droppedBytes
}
