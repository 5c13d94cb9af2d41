package lambdatest

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// startExt starts a platform running the test extension, which writes its
// facts to the returned file. env adds TESTEXT_* settings.
func startExt(t *testing.T, o Options, env ...string) (*Platform, string) {
	t.Helper()
	facts := filepath.Join(t.TempDir(), "facts")
	o.Extensions = []string{testext}
	o.Env = append(append([]string{"TESTEXT_OUT=" + facts}, env...), o.Env...)
	o.Output = t.Output()
	p, err := Start(t.Context(), o)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p, facts
}

// readFacts returns the extension's fact lines.
func readFacts(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func indexOf(lines []string, prefix string) int {
	return slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, prefix) })
}

func TestChildEnvironment(t *testing.T) {
	tests := []struct {
		name    string
		o       Options
		env     []string
		want    []string
		wantNot []string
	}{
		{
			name: "on-demand",
			o:    Options{FunctionName: "orders", MemoryMB: 512, Region: "eu-west-1", Env: []string{"O2_ORG=acme"}},
			want: []string{"AWS_LAMBDA_FUNCTION_NAME=orders", "AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
				"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=512", "AWS_REGION=eu-west-1", "AWS_DEFAULT_REGION=eu-west-1",
				"AWS_LAMBDA_INITIALIZATION_TYPE=on-demand", "TZ=:UTC", "PATH=", "O2_ORG=acme"},
			wantNot: []string{"AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_LAMBDA_MAX_CONCURRENCY", "_HANDLER"},
		},
		{
			name: "managed instances",
			o:    Options{ManagedInstances: true, MaxConcurrency: 4},
			env:  []string{"TESTEXT_EVENTS=SHUTDOWN", "TESTEXT_SCHEMA=2025-01-29"},
			want: []string{"AWS_LAMBDA_INITIALIZATION_TYPE=lambda-managed-instances", "AWS_LAMBDA_MAX_CONCURRENCY=4"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, facts := startExt(t, tt.o, tt.env...)
			envLine := readFacts(t, facts)[0]
			vars := strings.Split(strings.TrimPrefix(envLine, "ENV "), "|")
			if !slices.Contains(vars, "AWS_LAMBDA_RUNTIME_API="+p.URL()) {
				t.Errorf("AWS_LAMBDA_RUNTIME_API is not %s: %v", p.URL(), vars)
			}
			for _, w := range tt.want {
				if !slices.ContainsFunc(vars, func(v string) bool { return strings.HasPrefix(v, w) }) {
					t.Errorf("missing %s in %v", w, vars)
				}
			}
			for _, w := range tt.wantNot {
				if slices.ContainsFunc(vars, func(v string) bool { return strings.HasPrefix(v, w+"=") }) {
					t.Errorf("%s must be hidden from extensions", w)
				}
			}
		})
	}
}

// TestFreezeStopsProcess checks that the extension process is really
// stopped between invocations and that the report reaches it only after
// its /next.
func TestFreezeStopsProcess(t *testing.T) {
	p, facts := startExt(t, Options{}, "TESTEXT_WAIT_RUNTIMEDONE=1")
	pid := p.PIDs()[0]
	checkStopped := func(when string) {
		t.Helper()
		st, err := ProcState(pid)
		if err != nil || st != 'T' || !p.Frozen() {
			t.Fatalf("%s: state %c (%v), Frozen %v; want stopped", when, st, err, p.Frozen())
		}
	}
	checkStopped("after init")
	var ids []string
	for i := range 3 {
		res, err := p.Invoke(t.Context(), Invocation{Lines: []string{ScenarioLine("freeze", i, 0, 0)}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.RequestID)
		checkStopped("after invoke")
		if res.TimedOut || res.Next.IsZero() {
			t.Fatalf("result = %+v", res)
		}
	}
	res, err := p.Shutdown(t.Context(), "spindown")
	if err != nil {
		t.Fatal(err)
	}
	if !res.DeadlineMet || res.Killed || !slices.Equal(res.ExitCodes, []int{0}) || res.Duration <= 0 {
		t.Errorf("shutdown = %+v", res)
	}
	lines := readFacts(t, facts)
	for _, id := range ids {
		next := indexOf(lines, "NEXT "+id)
		rep := indexOf(lines, "EVENT platform.report "+id)
		rt := indexOf(lines, "EVENT platform.runtimeDone "+id)
		if next < 0 || rep < 0 || rt < 0 || rep < next || rt > next {
			t.Errorf("request %s: runtimeDone at %d, NEXT at %d, report at %d; want runtimeDone < NEXT < report", id, rt, next, rep)
		}
	}
	if indexOf(lines, "LASTREPORT true") < 0 {
		t.Error("the last report did not arrive after SHUTDOWN")
	}
	if shut := indexOf(lines, "SHUTDOWN spindown "); shut < 0 {
		t.Errorf("no lowercase SHUTDOWN spindown in %v", lines)
	}
	if !strings.Contains(p.Output(), "testext: registered") {
		t.Errorf("output = %q", p.Output())
	}
	// The extension's own stdout came back to it as extension records.
	if indexOf(lines, "EXT testext: invoke") < 0 {
		t.Error("no extension record delivered")
	}
}

func TestShutdownKillsStubbornExtension(t *testing.T) {
	p, _ := startExt(t, Options{ShutdownTimeout: 300 * time.Millisecond}, "TESTEXT_IGNORE_SHUTDOWN=1")
	if _, err := p.Invoke(t.Context(), Invocation{}); err != nil {
		t.Fatal(err)
	}
	res, err := p.Shutdown(t.Context(), "timeout")
	if err != nil {
		t.Fatal(err)
	}
	if !res.Killed || res.DeadlineMet || !slices.Equal(res.ExitCodes, []int{-1}) || res.Duration < 300*time.Millisecond {
		t.Errorf("shutdown = %+v, want killed after the 300ms deadline", res)
	}
	if st := p.Stats(); st.PeakRSSBytes <= 0 {
		t.Errorf("stats = %+v, want the peak RSS sampled before the kill", st)
	}
}

func TestInitFailures(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		want string
	}{
		{"init error", []string{"TESTEXT_INIT_ERROR=1"}, "Extension.ConfigInvalid"},
		{"crash", []string{"TESTEXT_CRASH_INIT=1"}, "exit code 3"},
		// Another name makes it an internal extension, which may not have SHUTDOWN.
		{"internal with SHUTDOWN", []string{"TESTEXT_NAME=not-the-file-name"}, "Extension.InvalidEventType"},
		// An internal INVOKE-only registration is fine, but the started file
		// never registered.
		{"wrong name", []string{"TESTEXT_NAME=not-the-file-name", "TESTEXT_EVENTS=INVOKE"}, "not registered under its file name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := Options{
				Extensions:  []string{testext},
				Env:         append([]string{"TESTEXT_OUT=" + filepath.Join(t.TempDir(), "facts")}, tt.env...),
				InitTimeout: 300 * time.Millisecond,
			}
			p, err := Start(t.Context(), o)
			if err == nil {
				p.Close()
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Start = %v, want it to mention %q", err, tt.want)
			}
			if tt.name != "wrong name" && !errors.Is(err, ErrExtensionFailed) {
				t.Errorf("Start = %v, want ErrExtensionFailed", err)
			}
		})
	}
}

// TestScenario runs a workload against the real process and checks that
// every line arrived exactly once and the measurements are populated.
func TestScenario(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			// Waiting for runtimeDone before /next makes every overhead positive.
			p, facts := startExt(t, Options{LogFormat: format}, "TESTEXT_TYPES=platform,function", "TESTEXT_WAIT_RUNTIMEDONE=1")
			marker := "MARK " + newUUID()[:8]
			rep, err := p.Run(t.Context(), Scenario{Invocations: 4, Lines: 25, LineSize: 120, Marker: marker, Gap: time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Invocations) != 4 || len(rep.Lines) != 100 || rep.TimedOut != 0 {
				t.Fatalf("report: %d invocations, %d lines, %d timed out", len(rep.Invocations), len(rep.Lines), rep.TimedOut)
			}
			if rep.OverheadP50 < 0 || rep.OverheadP50 > rep.OverheadP99 || rep.OverheadP99 > rep.OverheadMax || rep.OverheadMax <= 0 {
				t.Errorf("overheads p50 %v p99 %v max %v", rep.OverheadP50, rep.OverheadP99, rep.OverheadMax)
			}
			if _, err := p.Shutdown(t.Context(), "spindown"); err != nil {
				t.Fatal(err)
			}
			seen := map[string]int{}
			for _, l := range readFacts(t, facts) {
				if rest, ok := strings.CutPrefix(l, "FUNC "); ok {
					_, text, _ := strings.Cut(rest, " ")
					seen[text]++
				}
			}
			for _, line := range rep.Lines {
				if _, inv, n, ok := ParseScenarioLine(line); !ok || len(line) != 120 || seen[line] != 1 {
					t.Errorf("line inv=%d line=%d (len %d) arrived %d times", inv, n, len(line), seen[line])
				}
			}
			st := p.Stats()
			if st.InitDuration <= 0 || st.PeakRSSBytes <= 0 || st.CPUSeconds <= 0 {
				t.Errorf("stats = %+v, want all positive", st)
			}
		})
	}
}
