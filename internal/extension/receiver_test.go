package extension

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/o2-extension/o2-extension/internal/telemetry"
)

// steps records what happened, in order, from any goroutine.
type steps struct {
	mu   sync.Mutex
	list []string
}

func (s *steps) add(step string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.list = append(s.list, step)
}

func (s *steps) get() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.list)
}

type fakeReceiver struct{ steps *steps }

func (r fakeReceiver) Close(context.Context) error { r.steps.add("receiver closed"); return nil }
func (r fakeReceiver) Stats() any                  { return map[string]uint64{"otlpReceivedSpans": 3} }

// drainDelivery records its Shutdown and the summary it was given.
type drainDelivery struct {
	fakeDelivery
	steps   *steps
	summary json.RawMessage
}

// Shutdown settles (the report grace; the receiver closes at its end), then
// drains, as the Shipper does.
func (d *drainDelivery) Shutdown(ctx context.Context, settle func(context.Context), summary func() []telemetry.Event) error {
	settle(ctx)
	d.steps.add("final drain")
	d.summary = summary()[0].Record
	return nil
}

func (d *drainDelivery) Stats() any { return map[string]int{"delivered": 7} }

// At SHUTDOWN the receiver stops before the final drain, so that the drain
// takes all it received; its counters and the delivery's are both in the
// summary record.
func TestShutdownClosesReceiverBeforeDrain(t *testing.T) {
	st := &steps{}
	d := &drainDelivery{steps: st}
	e := testExt(d, Options{Receiver: fakeReceiver{st}})
	ln, err := telemetry.Listen(telemetry.ListenerOptions{Addr: "127.0.0.1:0", Buffer: e.buf})
	if err != nil {
		t.Fatal(err)
	}
	e.listener = ln
	t.Cleanup(func() { _ = ln.Close(context.Background()) })

	e.shutdown(t.Context(), time.Now().Add(time.Second), "spindown")
	if got := st.get(); !slices.Equal(got, []string{"receiver closed", "final drain"}) {
		t.Errorf("steps %q, want the receiver closed, then the final drain", got)
	}
	var sum map[string]any
	if err := json.Unmarshal(d.summary, &sum); err != nil {
		t.Fatalf("summary %s: %v", d.summary, err)
	}
	if sum["otlpReceivedSpans"] != 3.0 || sum["delivered"] != 7.0 || sum["shutdownReason"] != "spindown" {
		t.Errorf("summary %s", d.summary)
	}
}

// Without a delivery (telemetry could not start), the receiver is closed
// all the same: nothing would deliver what it takes.
func TestShutdownWithoutDeliveryClosesReceiver(t *testing.T) {
	st := &steps{}
	e := newExt(Options{Receiver: fakeReceiver{st}, Logger: quietLog()})
	e.shutdown(t.Context(), time.Now().Add(time.Second), "spindown")
	if got := st.get(); !slices.Equal(got, []string{"receiver closed"}) {
		t.Errorf("steps %q", got)
	}
}
