package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/o2-extension/o2-extension/internal/lambdatest"
	"github.com/o2-extension/o2-extension/internal/openobserve/o2test"
)

// The lifecycle in process: run() against the emulated Lambda APIs (no
// binary, so the race detector sees the whole extension), through the
// invoke, timeout and shutdown paths. tests/ runs the built binary the
// same way.

// lockedBuffer is a strings.Builder safe for the extension's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// inProcess starts the emulated platform and the stand-in, runs run() with
// env on top of the settings that reach them, and returns once init is
// complete. The returned wait gives run's error once it has returned.
func inProcess(t *testing.T, lo lambdatest.Options, env ...string) (p *lambdatest.Platform, o2 *o2test.Server, out *lockedBuffer, wait func() error) {
	t.Helper()
	o2 = o2test.Run(t, o2test.Options{})
	p, err := lambdatest.Start(t.Context(), lo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	vars := map[string]string{
		"AWS_LAMBDA_RUNTIME_API":          p.URL(),
		"AWS_LAMBDA_FUNCTION_NAME":        "in-process",
		"AWS_LAMBDA_FUNCTION_VERSION":     "$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
		"AWS_REGION":                      "us-east-1",
		"O2_ENDPOINT":                     o2.URL(),
		"O2_ORGANIZATION_ID":              "default",
		"O2_STREAM":                       "lambda",
		"O2_AUTHORIZATION_HEADER":         o2test.BasicAuth(o2test.DefaultEmail, o2test.DefaultSecret),
		"O2_METRICS":                      "false",
		"O2_TRACES":                       "false",
	}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	var environ []string
	for k, v := range vars {
		environ = append(environ, k+"="+v)
	}
	out = &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		err := run(ctx, nil, func(k string) string { return vars[k] }, environ, out, out)
		// As a process would by ending: SHUTDOWN waits for it.
		p.ExtensionExited(extensionName())
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	if err := p.CompleteInit(t.Context(), 1); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	var once sync.Once
	var runErr error
	wait = func() error {
		once.Do(func() {
			select {
			case runErr = <-done:
			case <-time.After(10 * time.Second):
				runErr = errors.New("run did not return")
			}
			done <- runErr // for the cleanup
		})
		return runErr
	}
	return p, o2, out, wait
}

func lines(marker string, inv, n int) []string {
	ls := make([]string, n)
	for i := range ls {
		ls[i] = lambdatest.ScenarioLine(marker, inv, i, 100)
	}
	return ls
}

// stored counts the marker's lines in the stand-in.
func storedLines(o2 *o2test.Server, marker string) map[string]int {
	got := map[string]int{}
	for _, r := range o2.StreamRecords("default", "lambda") {
		if text, _ := r["record"].(string); strings.HasPrefix(text, marker+" ") {
			got[text]++
		}
	}
	return got
}

// A sporadic function: each invocation's lines are in OpenObserve when
// /next is called (end-of-invocation), and SHUTDOWN ends run with nil and
// the summary record.
func TestRunInvokeAndShutdown(t *testing.T) {
	p, o2, out, wait := inProcess(t, lambdatest.Options{})
	for i := range 3 {
		ls := lines("inproc", i, 20)
		if _, err := p.Invoke(t.Context(), lambdatest.Invocation{Lines: ls, Duration: 5 * time.Millisecond}); err != nil {
			t.Fatalf("invoke %d: %v\n%s", i, err, out)
		}
		got := storedLines(o2, "inproc")
		for _, l := range ls {
			if got[l] != 1 {
				t.Fatalf("invocation %d: line %q stored %d times when /next came, want 1\n%s", i, l, got[l], out)
			}
		}
	}
	res, err := p.Shutdown(t.Context(), "spindown")
	if err != nil {
		t.Fatal(err)
	}
	if err := wait(); err != nil {
		t.Fatalf("run: %v", err)
	}
	if !res.DeadlineMet {
		t.Errorf("shutdown %+v: past the deadline", res)
	}
	var sums int
	for _, r := range o2.StreamRecords("default", "lambda") {
		if r["type"] == "o2-extension.summary" {
			sums++
			if n := fmt.Sprint(r["record_invocations"]); n != "3" {
				t.Errorf("summary invocations = %s, want 3", n)
			}
		}
	}
	if sums != 1 {
		t.Errorf("%d summary records, want 1\n%s", sums, out)
	}
}

// An invocation that times out: /next is not held past its deadline, its
// lines still arrive, and the next invocation is served as usual.
func TestRunInvocationTimeout(t *testing.T) {
	p, o2, out, wait := inProcess(t, lambdatest.Options{FunctionTimeout: 500 * time.Millisecond})
	slow := lines("timeout", 0, 10)
	res, err := p.Invoke(t.Context(), lambdatest.Invocation{Lines: slow, Duration: time.Second, Outcome: "timeout"})
	if err != nil {
		t.Fatalf("invoke: %v\n%s", err, out)
	}
	if res.TimedOut {
		t.Errorf("the extension held /next past the function's deadline: %+v", res)
	}
	next := lines("timeout", 1, 10)
	if _, err := p.Invoke(t.Context(), lambdatest.Invocation{Lines: next, Duration: 5 * time.Millisecond}); err != nil {
		t.Fatalf("invoke after the timeout: %v\n%s", err, out)
	}
	if _, err := p.Shutdown(t.Context(), "spindown"); err != nil {
		t.Fatal(err)
	}
	if err := wait(); err != nil {
		t.Fatalf("run: %v", err)
	}
	got := storedLines(o2, "timeout")
	for _, l := range append(slow, next...) {
		if got[l] != 1 {
			t.Errorf("line %q stored %d times, want 1", l, got[l])
		}
	}
}
