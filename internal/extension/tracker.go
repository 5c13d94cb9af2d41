package extension

import "sync"

// stage is a point in an invocation's telemetry.
type stage uint8

const (
	stageStart  stage = 1 << iota // platform.start seen
	stageDone                     // platform.runtimeDone seen
	stageReport                   // platform.report seen
)

// maxTracked bounds how many invocations the tracker remembers: events of
// invocations nobody waits for must not accumulate forever.
const maxTracked = 256

// tracker records which telemetry stages each invocation has reached, so the
// lifecycle loop can wait for one without polling, whether the event arrives
// before or after the wait begins.
type tracker struct {
	mu      sync.Mutex
	seen    map[string]stage
	order   []string // insertion order, for the bound
	waiters map[waitKey]chan struct{}
}

type waitKey struct {
	id string
	s  stage
}

func newTracker() *tracker {
	return &tracker{seen: map[string]stage{}, waiters: map[waitKey]chan struct{}{}}
}

// mark records that invocation id reached stage s.
func (t *tracker) mark(id string, s stage) {
	if id == "" {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	cur, ok := t.seen[id]
	if !ok {
		t.order = append(t.order, id)
		if len(t.order) > maxTracked {
			old := t.order[0]
			t.order = t.order[1:]
			delete(t.seen, old)
		}
	}
	t.seen[id] = cur | s
	k := waitKey{id, s}
	if ch, ok := t.waiters[k]; ok {
		close(ch)
		delete(t.waiters, k)
	}
}

// wait returns a channel closed once invocation id has reached stage s
// (already closed if it has).
func (t *tracker) wait(id string, s stage) <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	ch := make(chan struct{})
	if t.seen[id]&s != 0 {
		close(ch)
		return ch
	}
	k := waitKey{id, s}
	if old, ok := t.waiters[k]; ok {
		return old
	}
	t.waiters[k] = ch
	return ch
}

// forget drops the waiters of invocation id.
func (t *tracker) forget(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k := range t.waiters {
		if k.id == id {
			delete(t.waiters, k)
		}
	}
}

// unreported returns the invocations that reached platform.start but not
// platform.report, oldest first.
func (t *tracker) unreported() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var ids []string
	for _, id := range t.order {
		if st := t.seen[id]; st&stageStart != 0 && st&stageReport == 0 {
			ids = append(ids, id)
		}
	}
	return ids
}
