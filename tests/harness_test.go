// Package tests runs the real o2-extension binary inside the emulated Lambda
// platform (internal/lambdatest) against the OpenObserve stand-in
// (internal/openobserve/o2test).
package tests

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/o2-extension/o2-extension/internal/lambdatest"
	"github.com/o2-extension/o2-extension/internal/openobserve/o2test"
)

// binary is the extension built once for the whole package; otelFunc the
// function instrumented with the OpenTelemetry SDK (otelsdk_test.go).
var binary, otelFunc string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "o2-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "o2-extension")
	// Built as build.sh builds the layer: static, trimmed, stripped,
	// without net/http's HTTP/2, so what the tests measure (RSS, init) is
	// what users run.
	build := exec.Command("go", "build", "-trimpath", "-tags", "nethttpomithttp2", "-ldflags", "-s -w", "-o", binary, "../cmd/o2-extension")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build o2-extension:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	// The OpenTelemetry SDK function is its own module (tests/otelfunc);
	// built as a user would build a function.
	otelFunc = filepath.Join(dir, "otelfunc")
	build = exec.Command("go", "build", "-trimpath", "-o", otelFunc, ".")
	build.Dir = "otelfunc"
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build otelfunc:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	org    = "default"
	stream = "lambda_logs"
)

// harness is one emulated sandbox running the real binary against a fresh
// OpenObserve stand-in.
type harness struct {
	t  *testing.T
	p  *lambdatest.Platform
	o2 *o2test.Server
}

// o2Env is the configuration that points the extension at the stand-in.
// The OTLP receiver is off: the tests run many sandboxes at once on one
// machine, and each would take 127.0.0.1:4318; a test that wants it sets
// O2_OTLP_PORT to a free port (otlpPort) after these.
func o2Env(o2 *o2test.Server) []string {
	return []string{
		"O2_ENDPOINT=" + o2.URL(),
		"O2_ORGANIZATION_ID=" + org,
		"O2_STREAM=" + stream,
		"O2_AUTHORIZATION_HEADER=" + o2test.BasicAuth(o2test.DefaultEmail, o2test.DefaultSecret),
		noOTLP,
	}
}

// noOTLP turns the OTLP receiver off; see o2Env.
const noOTLP = "O2_OTLP_PORT=0"

// otlpPort returns a loopback port free at the time of the call, for a
// test that runs the OTLP receiver ("O2_OTLP_PORT=" + port).
func otlpPort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// start launches the platform with the binary. env comes after the
// stand-in's settings, so a test can override them.
func start(t *testing.T, lo lambdatest.Options, withO2 bool, env ...string) *harness {
	t.Helper()
	h := &harness{t: t, o2: o2test.Run(t, o2test.Options{})}
	if withO2 {
		lo.Env = append(o2Env(h.o2), lo.Env...)
	}
	return h.launch(lo, env...)
}

// launch starts the platform running the binary with lo.Env and then env,
// stopped when the test ends. The OTLP receiver is off unless lo.Env or env
// sets O2_OTLP_PORT (see o2Env).
func (h *harness) launch(lo lambdatest.Options, env ...string) *harness {
	h.t.Helper()
	lo.Env = append(append([]string{noOTLP}, lo.Env...), env...)
	lo.Extensions = []string{binary}
	ctx, cancel := context.WithTimeout(h.t.Context(), 30*time.Second)
	defer cancel()
	p, err := lambdatest.Start(ctx, lo)
	if err != nil {
		h.t.Fatalf("start platform: %v", err)
	}
	h.t.Cleanup(func() { p.Close() })
	h.p = p
	return h
}

// shutdown ends the sandbox and checks the extension exited in time.
func (h *harness) shutdown() lambdatest.ShutdownResult {
	h.t.Helper()
	res, err := h.p.Shutdown(h.t.Context(), "spindown")
	if err != nil {
		h.t.Fatalf("shutdown: %v", err)
	}
	if !res.DeadlineMet || res.Killed {
		h.t.Fatalf("extension missed the shutdown deadline: %+v\n%s", res, tail(h.p.Output()))
	}
	if len(res.ExitCodes) != 1 || res.ExitCodes[0] != 0 {
		h.t.Fatalf("exit codes = %v, want [0]\n%s", res.ExitCodes, tail(h.p.Output()))
	}
	return res
}

// marked counts, per line text, the marker lines stored in OpenObserve.
func (h *harness) marked(marker string) map[string]int {
	got := map[string]int{}
	for _, r := range h.o2.StreamRecords(org, stream) {
		text, _ := r["record"].(string)
		if text == "" {
			text, _ = r["record_message"].(string)
		}
		if m, _, _, ok := lambdatest.ParseScenarioLine(text); ok && m == marker {
			got[text]++
		}
	}
	return got
}

// exactlyOnce fails unless every line arrived once and nothing else with
// the marker did.
func exactlyOnce(t *testing.T, want []string, got map[string]int) (lost, dup int) {
	t.Helper()
	seen := map[string]bool{}
	for _, l := range want {
		seen[l] = true
		switch n := got[l]; {
		case n == 0:
			lost++
		case n > 1:
			dup += n - 1
		}
	}
	for l := range got {
		if !seen[l] {
			t.Errorf("unexpected line arrived: %.60q", l)
		}
	}
	return lost, dup
}

// records returns the stored records of one type.
func (h *harness) records(typ string) []map[string]any {
	var out []map[string]any
	for _, r := range h.o2.StreamRecords(org, stream) {
		if r["type"] == typ {
			out = append(out, r)
		}
	}
	return out
}

// waitFor waits for cond on the stand-in, failing the test at the timeout.
func (h *harness) waitFor(what string, timeout time.Duration, cond func(*o2test.Server) bool) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(h.t.Context(), timeout)
	defer cancel()
	if err := h.o2.Wait(ctx, cond); err != nil {
		h.t.Fatalf("waiting for %s: %v\n%s", what, err, tail(h.p.Output()))
	}
}

func tail(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return "extension output (tail):\n" + strings.Join(lines, "\n")
}

// runBinary runs the extension binary with only env set and returns what it
// printed (stdout and stderr) and its exit code.
func runBinary(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("run %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return string(out), code
}
