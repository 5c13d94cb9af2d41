package telemetry

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// sized returns a "function" event whose Size is exactly size, carrying id in
// RequestID so tests can follow it through the buffer.
func sized(t testing.TB, id string, size int) Event {
	t.Helper()
	pad := size - eventOverhead - len("function") - len(id) - len(`""`)
	if pad < 0 {
		t.Fatalf("event %q cannot be as small as %d bytes", id, size)
	}
	e := Event{Type: "function", RequestID: id, Record: []byte(`"` + strings.Repeat("x", pad) + `"`)}
	if e.Size() != size {
		t.Fatalf("sized(%q, %d).Size() = %d", id, size, e.Size())
	}
	return e
}

// ids lists the RequestIDs of evs, in order.
func ids(evs []Event) []string {
	out := make([]string, 0, len(evs))
	for _, e := range evs {
		out = append(out, e.RequestID)
	}
	return out
}

// events builds events from a compact spec of id:size pairs, e.g.
// "a:200 b:300".
func events(t testing.TB, spec string) []Event {
	t.Helper()
	var out []Event
	for f := range strings.FieldsSeq(spec) {
		id, n, ok := strings.Cut(f, ":")
		size, err := strconv.Atoi(n)
		if !ok || err != nil {
			t.Fatalf("bad event spec %q", f)
		}
		out = append(out, sized(t, id, size))
	}
	return out
}

func sizeOf(evs []Event) int {
	n := 0
	for _, e := range evs {
		n += e.Size()
	}
	return n
}

// checkQueue drains b and compares what it held with want, then checks the
// byte accounting went back to zero.
func checkQueue(t *testing.T, b *Buffer, want []string) {
	t.Helper()
	got := b.Take(1<<30, 1<<30)
	if !slices.Equal(ids(got), want) {
		t.Errorf("queued = %v, want %v", ids(got), want)
	}
	if b.Len() != 0 || b.Bytes() != 0 {
		t.Errorf("after draining: Len = %d, Bytes = %d, want 0, 0", b.Len(), b.Bytes())
	}
}

func TestBufferAdd(t *testing.T) {
	tests := []struct {
		name         string
		max          int
		adds         []string // one Add call per element, events as "id:size ..."
		want         []string
		wantDropRecs uint64
		wantDropB    uint64
	}{
		{name: "fits", max: 1000, adds: []string{"a:200", "b:200"}, want: []string{"a", "b"}},
		{name: "exact fit", max: 400, adds: []string{"a:200", "b:200"}, want: []string{"a", "b"}},
		{name: "one call, many events", max: 1000, adds: []string{"a:200 b:200 c:200"}, want: []string{"a", "b", "c"}},
		{name: "drops oldest", max: 500, adds: []string{"a:200", "b:200", "c:200"}, want: []string{"b", "c"}, wantDropRecs: 1, wantDropB: 200},
		{name: "drops oldest within one call", max: 500, adds: []string{"a:200 b:200 c:200 d:200"}, want: []string{"c", "d"}, wantDropRecs: 2, wantDropB: 400},
		{name: "big event evicts several", max: 600, adds: []string{"a:200", "b:200", "c:200", "d:500"}, want: []string{"d"}, wantDropRecs: 3, wantDropB: 600},
		{name: "evicts only what is needed", max: 600, adds: []string{"a:200", "b:150", "c:200", "d:300"}, want: []string{"c", "d"}, wantDropRecs: 2, wantDropB: 350},
		{name: "event of exactly max", max: 500, adds: []string{"a:200", "b:500"}, want: []string{"b"}, wantDropRecs: 1, wantDropB: 200},
		{name: "oversize event dropped itself", max: 320, adds: []string{"a:200", "big:321", "b:110"}, want: []string{"a", "b"}, wantDropRecs: 1, wantDropB: 321},
		{name: "oversize event into empty buffer", max: 300, adds: []string{"big:1000"}, want: nil, wantDropRecs: 1, wantDropB: 1000},
		{name: "oversize in the middle of a call", max: 500, adds: []string{"a:200 big:900 b:200"}, want: []string{"a", "b"}, wantDropRecs: 1, wantDropB: 900},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBuffer(tt.max)
			for _, a := range tt.adds {
				b.Add(events(t, a)...)
				if b.Bytes() > tt.max {
					t.Fatalf("Bytes = %d after Add(%s), above max %d", b.Bytes(), a, tt.max)
				}
			}
			if got := b.Len(); got != len(tt.want) {
				t.Errorf("Len = %d, want %d", got, len(tt.want))
			}
			wantBytes := 0
			for _, id := range tt.want {
				for _, a := range tt.adds {
					for _, e := range events(t, a) {
						if e.RequestID == id {
							wantBytes += e.Size()
						}
					}
				}
			}
			if got := b.Bytes(); got != wantBytes {
				t.Errorf("Bytes = %d, want %d", got, wantBytes)
			}
			recs, bytes := b.Dropped()
			if recs != tt.wantDropRecs || bytes != tt.wantDropB {
				t.Errorf("Dropped = %d records, %d bytes; want %d, %d", recs, bytes, tt.wantDropRecs, tt.wantDropB)
			}
			checkQueue(t, b, tt.want)
		})
	}
}

func TestBufferTake(t *testing.T) {
	tests := []struct {
		name      string
		queue     string
		maxCount  int
		maxBytes  int
		want      []string
		wantAfter []string
	}{
		{name: "empty", queue: "", maxCount: 10, maxBytes: 1000, want: nil},
		{name: "all", queue: "a:200 b:200 c:200", maxCount: 10, maxBytes: 1 << 20, want: []string{"a", "b", "c"}},
		{name: "count limit", queue: "a:200 b:200 c:200 d:200 e:200", maxCount: 3, maxBytes: 1 << 20, want: []string{"a", "b", "c"}, wantAfter: []string{"d", "e"}},
		{name: "count of one", queue: "a:200 b:200", maxCount: 1, maxBytes: 1 << 20, want: []string{"a"}, wantAfter: []string{"b"}},
		{name: "byte limit", queue: "a:200 b:200 c:200", maxCount: 10, maxBytes: 450, want: []string{"a", "b"}, wantAfter: []string{"c"}},
		{name: "byte limit met exactly", queue: "a:200 b:200 c:200", maxCount: 10, maxBytes: 400, want: []string{"a", "b"}, wantAfter: []string{"c"}},
		{name: "byte limit stops at first misfit", queue: "a:200 b:400 c:120", maxCount: 10, maxBytes: 350, want: []string{"a"}, wantAfter: []string{"b", "c"}},
		{name: "at least one: oversize head", queue: "a:500 b:120", maxCount: 10, maxBytes: 100, want: []string{"a"}, wantAfter: []string{"b"}},
		{name: "at least one: zero bytes", queue: "a:200", maxCount: 10, maxBytes: 0, want: []string{"a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBuffer(1 << 20)
			q := events(t, tt.queue)
			b.Add(q...)
			got := b.Take(tt.maxCount, tt.maxBytes)
			if !slices.Equal(ids(got), tt.want) {
				t.Fatalf("Take(%d, %d) = %v, want %v", tt.maxCount, tt.maxBytes, ids(got), tt.want)
			}
			if n := sizeOf(got); len(got) > 1 && n > tt.maxBytes {
				t.Errorf("Take returned %d bytes in %d events, over the limit %d", n, len(got), tt.maxBytes)
			}
			if b.Len() != len(tt.wantAfter) || b.Bytes() != sizeOf(q)-sizeOf(got) {
				t.Errorf("after Take: Len = %d, Bytes = %d; want %d, %d", b.Len(), b.Bytes(), len(tt.wantAfter), sizeOf(q)-sizeOf(got))
			}
			if recs, _ := b.Dropped(); recs != 0 {
				t.Errorf("Take counted %d dropped records", recs)
			}
			checkQueue(t, b, tt.wantAfter)
		})
	}
}

func TestBufferPutBack(t *testing.T) {
	tests := []struct {
		name        string
		max         int
		queue       string // added first
		take        int    // then this many are taken (and discarded)
		putBack     string
		want        []string
		wantDropped int
		wantDropB   uint64
	}{
		{name: "into empty", max: 1000, putBack: "a:200 b:200", want: []string{"a", "b"}},
		{name: "nothing", max: 1000, queue: "c:200", putBack: "", want: []string{"c"}},
		{name: "in front, in order", max: 1000, queue: "c:200 d:200", putBack: "a:200 b:200", want: []string{"a", "b", "c", "d"}},
		// With a consumed prefix the buffer can reuse its slice in place.
		{name: "in front after a Take", max: 2000, queue: "x:200 y:200 z:200 c:200 d:200", take: 3, putBack: "a:200 b:200", want: []string{"a", "b", "c", "d"}},
		{name: "more than the consumed prefix", max: 2000, queue: "x:200 c:200", take: 1, putBack: "a:200 b:200", want: []string{"a", "b", "c"}},
		{name: "oldest put-back dropped", max: 600, queue: "c:200 d:200", putBack: "a:200 b:200", want: []string{"b", "c", "d"}, wantDropped: 1, wantDropB: 200},
		{name: "drops until the rest fits", max: 700, queue: "c:300", putBack: "a:300 b:200 e:110", want: []string{"b", "e", "c"}, wantDropped: 1, wantDropB: 300},
		{name: "no room at all", max: 400, queue: "c:200 d:200", putBack: "a:110 b:110", want: []string{"c", "d"}, wantDropped: 2, wantDropB: 220},
		{name: "oversize put-back", max: 400, putBack: "big:500", want: nil, wantDropped: 1, wantDropB: 500},
		{name: "queued events are never dropped for put-backs", max: 500, queue: "c:400", putBack: "a:150", want: []string{"c"}, wantDropped: 1, wantDropB: 150},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBuffer(tt.max)
			b.Add(events(t, tt.queue)...)
			if tt.take > 0 {
				if got := b.Take(tt.take, 1<<30); len(got) != tt.take {
					t.Fatalf("setup Take = %d events, want %d", len(got), tt.take)
				}
			}
			before := b.Bytes()
			back := events(t, tt.putBack)
			if got := b.PutBack(back); got != tt.wantDropped {
				t.Errorf("PutBack dropped %d, want %d", got, tt.wantDropped)
			}
			if b.Bytes() > tt.max {
				t.Errorf("Bytes = %d, above max %d", b.Bytes(), tt.max)
			}
			if got, want := b.Bytes(), before+sizeOf(back)-int(tt.wantDropB); got != want {
				t.Errorf("Bytes = %d, want %d", got, want)
			}
			recs, bytes := b.Dropped()
			if recs != uint64(tt.wantDropped) || bytes != tt.wantDropB {
				t.Errorf("Dropped = %d records, %d bytes; want %d, %d", recs, bytes, tt.wantDropped, tt.wantDropB)
			}
			// The buffer must own its copy: the caller reuses its slice.
			for i := range back {
				back[i] = Event{RequestID: "clobbered"}
			}
			checkQueue(t, b, tt.want)
		})
	}
}

// TestBufferPutBackByAge: with several batches in flight, one taken later
// (newer records) can be put back before one taken earlier, and newer
// events can be queued meanwhile. The buffer keeps its order by age, and a
// full buffer drops the oldest, not whichever batch came back last (at
// SHUTDOWN that lost the newest invocation but one of a function's spans).
func TestBufferPutBackByAge(t *testing.T) {
	at := func(spec string) []Event {
		evs := events(t, spec)
		for i := range evs {
			n, _ := strconv.Atoi(evs[i].RequestID[1:])
			evs[i].Time = time.Unix(1_800_000_000, 0).Add(time.Duration(n) * time.Second)
		}
		return evs
	}
	tests := []struct {
		name        string
		max         int
		first, then string // put back in this order into a buffer holding queued
		queued      string
		want        []string
		wantDropped int
	}{
		{name: "older batch back last", max: 2000, queued: "q9:200", first: "b3:200 b4:200", then: "a1:200 a2:200", want: []string{"a1", "a2", "b3", "b4", "q9"}},
		{name: "newer batch back last", max: 2000, queued: "q9:200", first: "a1:200 a2:200", then: "b3:200 b4:200", want: []string{"a1", "a2", "b3", "b4", "q9"}},
		{name: "newer batch back last, full: the oldest go", max: 800, queued: "q9:200", first: "a1:200 a2:200", then: "b3:200 b4:200", want: []string{"a2", "b3", "b4", "q9"}, wantDropped: 1},
		{name: "interleaved with queued", max: 2000, queued: "q2:200 q5:200", first: "", then: "a1:200 a3:200 a4:200", want: []string{"a1", "q2", "a3", "a4", "q5"}},
		{name: "full, queued older than the batch", max: 600, queued: "q1:200 q2:200", first: "", then: "b3:200 b4:200", want: []string{"q2", "b3", "b4"}, wantDropped: 1},
		{name: "oversize put-back dropped alone", max: 600, queued: "q1:200", first: "", then: "b3:700 b4:200", want: []string{"q1", "b4"}, wantDropped: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBuffer(tt.max)
			b.Add(at(tt.queued)...)
			dropped := b.PutBack(at(tt.first)) + b.PutBack(at(tt.then))
			if dropped != tt.wantDropped {
				t.Errorf("PutBack dropped %d, want %d", dropped, tt.wantDropped)
			}
			if recs, _ := b.Dropped(); recs != uint64(tt.wantDropped) {
				t.Errorf("Dropped = %d records, want %d", recs, tt.wantDropped)
			}
			if b.Bytes() > tt.max {
				t.Errorf("Bytes = %d, above max %d", b.Bytes(), tt.max)
			}
			checkQueue(t, b, tt.want)
		})
	}
}

// TestBufferReleasesConsumedPrefix runs a long-lived buffer in steady state
// (never empty, so never reset) and checks its backing array stays bounded
// by what is queued rather than by how much has passed through.
func TestBufferReleasesConsumedPrefix(t *testing.T) {
	b := NewBuffer(1 << 20)
	for i := range 10 {
		b.Add(sized(t, strconv.Itoa(i), 200))
	}
	e := sized(t, "steady", 200)
	for range 100_000 {
		b.Add(e)
		if got := b.Take(1, 1<<20); len(got) != 1 {
			t.Fatalf("Take = %d events, want 1", len(got))
		}
	}
	if b.Len() != 10 {
		t.Fatalf("Len = %d, want 10", b.Len())
	}
	b.mu.Lock()
	c := cap(b.q)
	b.mu.Unlock()
	if c > 1000 {
		t.Errorf("backing array holds %d events for 10 queued", c)
	}
}

// model is a plain re-statement of the buffer's contract, for the property
// test to compare against.
type model struct {
	max, bytes  int
	q           []Event
	drops       uint64
	droppedSize uint64
}

func (m *model) drop(e Event) {
	m.drops++
	m.droppedSize += uint64(e.Size())
}

func (m *model) add(e Event) {
	if e.Size() > m.max {
		m.drop(e)
		return
	}
	for m.bytes+e.Size() > m.max {
		m.bytes -= m.q[0].Size()
		m.drop(m.q[0])
		m.q = m.q[1:]
	}
	m.q = append(m.q, e)
	m.bytes += e.Size()
}

func (m *model) take(n, maxBytes int) []Event {
	var out []Event
	total := 0
	for len(m.q) > 0 && len(out) < n {
		s := m.q[0].Size()
		if len(out) > 0 && total+s > maxBytes {
			break
		}
		out = append(out, m.q[0])
		total += s
		m.q = m.q[1:]
	}
	m.bytes -= total
	return out
}

func (m *model) putBack(evs []Event) int {
	dropped := 0
	var keep []Event
	for _, e := range evs {
		if e.Size() > m.max {
			m.drop(e)
			dropped++
		} else {
			keep = append(keep, e)
		}
	}
	// By age: stable, put-back events before queued ones of the same time.
	all := append(slices.Clone(keep), m.q...)
	slices.SortStableFunc(all, func(a, b Event) int { return a.Time.Compare(b.Time) })
	m.q = all
	m.bytes += sizeOf(keep)
	for m.bytes > m.max {
		m.bytes -= m.q[0].Size()
		m.drop(m.q[0])
		m.q = m.q[1:]
		dropped++
	}
	return dropped
}

// TestBufferProperty runs long random sequences of operations and checks the
// buffer against the model after each one: the bound always holds, the order
// and drop counts match, and the byte accounting never drifts.
func TestBufferProperty(t *testing.T) {
	for _, max := range []int{150, 1000, 4096, 20000} {
		t.Run(fmt.Sprint("max=", max), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(max), 2026))
			b, m := NewBuffer(max), &model{max: max}
			next := 0
			newEvent := func() Event {
				next++
				// Mostly small, sometimes close to or above the bound.
				size := 110 + rng.IntN(300)
				if rng.IntN(20) == 0 {
					size = 110 + rng.IntN(max+200)
				}
				e := sized(t, strconv.Itoa(next), size)
				e.Time = time.Unix(1_800_000_000, 0).Add(time.Duration(next) * time.Millisecond)
				return e
			}
			// Batches taken and not yet put back: several at once, as with
			// several requests in flight, put back in any order.
			var taken [][]Event
			for step := range 3000 {
				var op string
				switch r := rng.IntN(10); {
				case r < 5:
					n := 1 + rng.IntN(4)
					evs := make([]Event, n)
					for i := range evs {
						evs[i] = newEvent()
						m.add(evs[i])
					}
					b.Add(evs...)
					op = fmt.Sprintf("Add(%d)", n)
				case r < 8:
					n, maxBytes := 1+rng.IntN(8), rng.IntN(1500)
					got, want := b.Take(n, maxBytes), m.take(n, maxBytes)
					if !slices.Equal(ids(got), ids(want)) {
						t.Fatalf("step %d: Take(%d, %d) = %v, want %v", step, n, maxBytes, ids(got), ids(want))
					}
					if len(m.q)+len(got) > 0 && len(got) == 0 {
						t.Fatalf("step %d: Take returned nothing from a non-empty buffer", step)
					}
					if len(got) > 0 {
						taken = append(taken, got)
					}
					op = fmt.Sprintf("Take(%d, %d)", n, maxBytes)
				default:
					var back []Event
					if len(taken) > 0 {
						k := rng.IntN(len(taken))
						back = taken[k]
						taken = slices.Delete(taken, k, k+1)
					}
					got, want := b.PutBack(slices.Clone(back)), m.putBack(back)
					if got != want {
						t.Fatalf("step %d: PutBack(%v) dropped %d, want %d", step, ids(back), got, want)
					}
					op = fmt.Sprintf("PutBack(%d)", len(back))
				}
				if got := b.Bytes(); got > max || got != m.bytes {
					t.Fatalf("step %d after %s: Bytes = %d, want %d (max %d)", step, op, got, m.bytes, max)
				}
				if got := b.Len(); got != len(m.q) {
					t.Fatalf("step %d after %s: Len = %d, want %d", step, op, got, len(m.q))
				}
				if recs, bytes := b.Dropped(); recs != m.drops || bytes != m.droppedSize {
					t.Fatalf("step %d after %s: Dropped = %d, %d; want %d, %d", step, op, recs, bytes, m.drops, m.droppedSize)
				}
			}
			checkQueue(t, b, ids(m.q))
		})
	}
}

// pending counts the signals waiting on Added without blocking.
func pending(b *Buffer) int {
	n := 0
	for {
		select {
		case <-b.Added():
			n++
		default:
			return n
		}
	}
}

func TestBufferAddedAndSince(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewBuffer(1 << 20)
		if !b.Since().IsZero() || pending(b) != 0 {
			t.Fatal("a new buffer is signalled or has a Since")
		}
		t0 := time.Now()
		b.Add(sized(t, "a", 200))
		b.Add(sized(t, "b", 200)) // coalesced with the first signal
		if got := pending(b); got != 1 {
			t.Fatalf("%d signals after two Adds, want 1", got)
		}
		time.Sleep(time.Second)
		b.Add(sized(t, "c", 200))
		if got := b.Since(); !got.Equal(t0) {
			t.Errorf("Since = %v after a later Add, want the first Add's %v", got, t0)
		}
		b.Take(3, 1<<30)
		if !b.Since().IsZero() {
			t.Errorf("Since = %v once empty, want zero", b.Since())
		}
		pending(b)
		time.Sleep(time.Second)
		b.PutBack([]Event{sized(t, "a", 200)})
		if got := pending(b); got != 1 {
			t.Errorf("%d signals after PutBack, want 1", got)
		}
		if got := b.Since(); got.IsZero() || !got.Before(t0) {
			t.Errorf("Since = %v after PutBack, want long before %v: put-back events have waited already", got, t0)
		}
	})
}

func TestBufferTakeNewest(t *testing.T) {
	tests := []struct {
		name               string
		spec               string
		maxCount, maxBytes int
		want, left         string
	}{
		{"all", "a:200 b:200 c:200", 10, 1 << 20, "a b c", ""},
		{"by count", "a:200 b:200 c:200", 2, 1 << 20, "b c", "a"},
		{"by bytes", "a:200 b:200 c:200", 10, 450, "b c", "a"},
		{"one even if too large", "a:200 b:900", 10, 450, "b", "a"},
		{"empty", "", 10, 1 << 20, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBuffer(1 << 20)
			b.Add(events(t, tt.spec)...)
			got := b.TakeNewest(tt.maxCount, tt.maxBytes)
			if g := strings.Join(ids(got), " "); g != tt.want {
				t.Errorf("took %q, want %q", g, tt.want)
			}
			// checkQueue also proves the byte count right: 0 once drained.
			checkQueue(t, b, strings.Fields(tt.left))
		})
	}
}

// TestBufferConcurrent has producers add uniquely numbered events while a
// consumer takes them and sometimes puts some back, as a failed delivery
// would. With a bound nothing reaches, every event must come out exactly once.
func TestBufferConcurrent(t *testing.T) {
	const producers, perProducer = 4, 2000
	b := NewBuffer(1 << 30)
	// The consumer waits on Added when it finds the buffer empty.
	var wg sync.WaitGroup
	done := make(chan struct{})
	for p := range producers {
		wg.Go(func() {
			for i := range perProducer {
				b.Add(Event{Type: "function", RequestID: fmt.Sprintf("%d-%d", p, i), Record: []byte(`"x"`)})
			}
		})
	}
	go func() {
		wg.Wait()
		close(done)
	}()
	defer func() { <-done }()

	seen := make(map[string]int, producers*perProducer)
	got, round := 0, 0
	for got < producers*perProducer {
		evs := b.Take(1+round%13, 1<<20)
		round++
		if len(evs) > 1 && round%3 == 0 {
			// Deliver the first half and return the rest.
			half := len(evs) / 2
			if n := b.PutBack(evs[half:]); n != 0 {
				t.Fatalf("PutBack dropped %d events below the bound", n)
			}
			evs = evs[:half]
		}
		for _, e := range evs {
			seen[e.RequestID]++
		}
		got += len(evs)
		if len(evs) == 0 {
			select {
			case <-b.Added():
			case <-done:
				if b.Len() == 0 && got < producers*perProducer {
					t.Fatalf("producers finished, buffer empty, but only %d of %d events came out", got, producers*perProducer)
				}
			}
		}
	}
	<-done
	if b.Len() != 0 {
		t.Errorf("%d events left over", b.Len())
	}
	if len(seen) != producers*perProducer {
		t.Errorf("%d distinct events, want %d", len(seen), producers*perProducer)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("event %s came out %d times", id, n)
		}
	}
	if recs, _ := b.Dropped(); recs != 0 {
		t.Errorf("Dropped = %d, want 0", recs)
	}
}

// BenchmarkBufferAddTake measures the steady state of the hot path: one
// 200-byte event in per Add, batches of 100 out.
func BenchmarkBufferAddTake(b *testing.B) {
	buf := NewBuffer(1 << 20)
	e := sized(b, "0c1f9a52-7d1e-4b8e-9a64-2f3c5d7e9b10", 200)
	b.ReportAllocs()
	b.SetBytes(int64(e.Size()))
	i := 0
	for b.Loop() {
		buf.Add(e)
		i++
		if i%100 == 0 {
			buf.Take(100, 1<<20)
			pending(buf)
		}
	}
}
