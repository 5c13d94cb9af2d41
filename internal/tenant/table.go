package tenant

import "time"

// item is one entry of a table, linked in insertion order.
type item[V any] struct {
	key        string
	at         time.Time // event time of the entry, for the age bound
	val        V
	prev, next *item[V]
}

// table is a map from request id to V bounded in count and age. Entries
// are kept in a doubly linked list in insertion order so that the oldest
// is found and removed in O(1) and a matched entry leaves no trace behind:
// memory stays proportional to the live entries whatever the traffic.
type table[V any] struct {
	max    int
	maxAge time.Duration
	m      map[string]*item[V]
	head   *item[V] // oldest
	tail   *item[V] // newest
}

func newTable[V any](max int, maxAge time.Duration) *table[V] {
	return &table[V]{max: max, maxAge: maxAge, m: make(map[string]*item[V])}
}

func (t *table[V]) len() int { return len(t.m) }

// put stores v under key at time at, as the newest entry. An existing entry
// for key is replaced. It returns how many entries were evicted to stay
// within the count bound (oldest first).
func (t *table[V]) put(key string, at time.Time, v V) (evicted int) {
	if it, ok := t.m[key]; ok {
		t.unlink(it)
		delete(t.m, key)
	}
	for len(t.m) >= t.max && t.head != nil {
		t.remove(t.head)
		evicted++
	}
	it := &item[V]{key: key, at: at, val: v, prev: t.tail}
	if t.tail != nil {
		t.tail.next = it
	} else {
		t.head = it
	}
	t.tail = it
	t.m[key] = it
	return evicted
}

// take removes and returns the entry for key.
func (t *table[V]) take(key string) (V, bool) {
	it, ok := t.m[key]
	if !ok {
		var zero V
		return zero, false
	}
	t.remove(it)
	return it.val, true
}

// expire removes the entries older than maxAge at now and returns how many
// it removed. Entries are in insertion order, which follows event time
// closely enough: the scan stops at the first entry young enough, so an
// out-of-order straggler behind it is removed on a later call.
func (t *table[V]) expire(now time.Time) (evicted int) {
	cutoff := now.Add(-t.maxAge)
	for t.head != nil && t.head.at.Before(cutoff) {
		t.remove(t.head)
		evicted++
	}
	return evicted
}

func (t *table[V]) remove(it *item[V]) {
	t.unlink(it)
	delete(t.m, it.key)
}

func (t *table[V]) unlink(it *item[V]) {
	if it.prev != nil {
		it.prev.next = it.next
	} else {
		t.head = it.next
	}
	if it.next != nil {
		it.next.prev = it.prev
	} else {
		t.tail = it.prev
	}
	it.prev, it.next = nil, nil
}
