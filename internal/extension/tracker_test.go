package extension

import (
	"slices"
	"testing"
)

// At SHUTDOWN the lifecycle waits for the report of every invocation that
// started without one: on Managed Instances there is no INVOKE to say
// which was last, and several run at once.
func TestTrackerUnreported(t *testing.T) {
	tr := newTracker()
	tr.mark("a", stageStart)
	tr.mark("b", stageStart)
	tr.mark("c", stageStart)
	tr.mark("a", stageDone)
	tr.mark("a", stageReport)
	tr.mark("c", stageReport)
	tr.mark("d", stageDone) // a runtimeDone whose platform.start was never seen
	if got := tr.unreported(); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("unreported = %v, want [b]", got)
	}
	ch := tr.wait("b", stageReport)
	tr.mark("b", stageReport)
	<-ch
	if got := tr.unreported(); len(got) != 0 {
		t.Errorf("unreported = %v after every report, want none", got)
	}
}
