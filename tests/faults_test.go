package tests

import (
	"testing"
	"time"

	"github.com/o2-extension/o2-extension/internal/lambdatest"
)

// The platform freezes the process while a POST is in flight, for longer
// than the attempt timeout. OpenObserve answers during the freeze; after
// the thaw the reply is read and the batch is not sent again.
func TestFreezeDuringARequestSendsOnce(t *testing.T) {
	t.Parallel()
	h := start(t, lambdatest.Options{}, true,
		"O2_FLUSH_STRATEGY=continuous", "O2_FLUSH_INTERVAL_MS=100", "O2_REQUEST_TIMEOUT_MS=500")
	h.o2.SetLatency(300 * time.Millisecond)
	rep, err := h.p.Run(t.Context(), lambdatest.Scenario{
		Invocations: 8, Gap: 1500 * time.Millisecond, Lines: 20, LineSize: 80,
		Duration: 250 * time.Millisecond, Marker: "freeze",
	})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	h.shutdown()
	lost, dup := exactlyOnce(t, rep.Lines, h.marked("freeze"))
	if lost+dup > 0 {
		t.Fatalf("lost %d, duplicated %d lines", lost, dup)
	}
}
