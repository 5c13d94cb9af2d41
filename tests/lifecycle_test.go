package tests

import (
	"encoding/pem"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/o2-extension/o2-extension/internal/lambdatest"
	"github.com/o2-extension/o2-extension/internal/openobserve/o2test"
)

// A sporadic function: every line is in OpenObserve before the extension
// calls /next, exactly once, with the documented record shape; the last
// platform.report arrives during SHUTDOWN, inside the deadline.
func TestSporadicFunctionLinesArriveBeforeNext(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			h := start(t, lambdatest.Options{LogFormat: format, FunctionName: "orders", MemoryMB: 512, Region: "eu-west-1"}, true)
			marker := "sporadic-" + format
			var want []string
			var lastID string
			for i := range 6 {
				lines := make([]string, 20)
				for j := range lines {
					lines[j] = lambdatest.ScenarioLine(marker, i, j, 120)
				}
				want = append(want, lines...)
				res, err := h.p.Invoke(t.Context(), lambdatest.Invocation{Lines: lines, Duration: 20 * time.Millisecond})
				if err != nil {
					t.Fatalf("invoke %d: %v", i, err)
				}
				if res.TimedOut {
					t.Fatalf("invoke %d timed out", i)
				}
				// No waiting: the lines must already be stored when /next was called.
				got := h.marked(marker)
				for _, l := range lines {
					if got[l] != 1 {
						t.Fatalf("invoke %d: line %.40q stored %d times before /next, want 1", i, l, got[l])
					}
				}
				lastID = res.RequestID
			}
			h.shutdown()
			if lost, dup := exactlyOnce(t, want, h.marked(marker)); lost+dup > 0 {
				t.Fatalf("lost %d, duplicated %d", lost, dup)
			}

			// Record shape.
			var fn map[string]any
			for _, r := range h.o2.StreamRecords(org, stream) {
				if r["type"] == "function" {
					fn = r
					break
				}
			}
			for k, want := range map[string]any{"function_name": "orders", "region": "eu-west-1"} {
				if fn[k] != want {
					t.Errorf("function record %s = %v, want %v", k, fn[k], want)
				}
			}
			if _, ok := fn["_timestamp"].(int64); !ok {
				t.Errorf("_timestamp = %T %v, want integer µs", fn["_timestamp"], fn["_timestamp"])
			}
			if id, _ := fn["requestid"].(string); len(id) != 36 {
				t.Errorf("requestid = %q, want the invocation's request id", id)
			}
			if fn["memory_size_mb"] == nil || fn["function_version"] == nil {
				t.Errorf("enrichment missing: %v", fn)
			}
			if format == "json" && fn["level"] != "INFO" {
				t.Errorf("level = %v, want INFO for a JSON-format log", fn["level"])
			}

			// The last invocation's platform.report is produced after our
			// /next and reaches OpenObserve during SHUTDOWN.
			found := false
			for _, r := range h.records("platform.report") {
				if r["requestid"] == lastID {
					found = true
				}
			}
			if !found {
				t.Errorf("the last invocation's platform.report never arrived")
			}
			if n := len(h.records("o2-extension.summary")); n != 1 {
				t.Errorf("summary records = %d, want 1", n)
			}
		})
	}
}

// Fail open: without configuration the extension registers, never holds an
// invocation, forwards nothing and says why, naming each variable.
func TestFailOpenWithoutConfiguration(t *testing.T) {
	t.Parallel()
	h := start(t, lambdatest.Options{}, false, "O2_BATCH_SIZE=lots")
	for i := range 3 {
		res, err := h.p.Invoke(t.Context(), lambdatest.Invocation{Lines: []string{"hello"}})
		if err != nil || res.TimedOut {
			t.Fatalf("invoke %d: %+v %v", i, res, err)
		}
	}
	h.shutdown()
	out := h.p.Output()
	for _, want := range []string{"configuration is invalid", "O2_ORGANIZATION_ID", "O2_AUTHORIZATION_HEADER", "O2_BATCH_SIZE"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "configuration is invalid"); n != 1 {
		t.Errorf("configuration error logged %d times, want once", n)
	}
	if n := h.o2.Calls(); n != 0 {
		t.Errorf("OpenObserve got %d requests, want none", n)
	}
}

// A tunable out of range or unreadable never stops the logs: it is clamped
// or defaulted with one warning each; a misspelt variable is named with the
// closest known one; and one line at start says what runs and where it
// sends.
func TestBadTunablesStillForward(t *testing.T) {
	t.Parallel()
	h := start(t, lambdatest.Options{}, true,
		"O2_BATCH_SIZE=100000", "O2_FLUSH_INTERVAL_MS=50", "O2_MAX_RETRIES=abc", "O2_STREEM=x")
	line := lambdatest.ScenarioLine("tunables", 0, 0, 80)
	res, err := h.p.Invoke(t.Context(), lambdatest.Invocation{Lines: []string{line}})
	if err != nil || res.TimedOut {
		t.Fatalf("invoke: %+v %v", res, err)
	}
	h.shutdown()
	if got := h.marked("tunables"); got[line] != 1 {
		t.Errorf("line stored %d times, want 1: a bad tunable must not disable forwarding\n%s", got[line], tail(h.p.Output()))
	}
	out := h.p.Output()
	host := strings.TrimPrefix(h.o2.URL(), "http://")
	for _, want := range []string{
		"O2_BATCH_SIZE: 100000 is out of range (allowed 1..10000); using 10000",
		"O2_FLUSH_INTERVAL_MS: 50 is out of range (allowed 100..600000); using 100",
		`O2_MAX_RETRIES: \"abc\" is not a whole number (allowed 0..10); using the default 3`,
		"O2_STREEM is not a variable of the extension and is ignored; did you mean O2_STREAM?",
		`msg="o2-extension starting"`,
	} {
		if n := strings.Count(out, want); n != 1 {
			t.Errorf("output has %q %d times, want once:\n%s", want, n, out)
		}
	}
	for line := range strings.Lines(out) {
		if !strings.Contains(line, `msg="o2-extension starting"`) {
			continue
		}
		for _, f := range []string{`endpoint="` + host + `"`, "org=default", "stream=lambda_logs", "strategy=auto", "version=dev"} {
			if !strings.Contains(line, " "+f) {
				t.Errorf("the start line lacks %s: %s", f, line)
			}
		}
	}
	if strings.Contains(out, "configuration is invalid") {
		t.Errorf("a bad tunable failed the configuration:\n%s", out)
	}
}

// A platform whose Telemetry API answers 202 (as AWS's emulator does): the
// extension says so once and never waits for events that will not come.
func TestTelemetryNotSupported(t *testing.T) {
	t.Parallel()
	h := start(t, lambdatest.Options{TelemetryNotSupported: true}, true)
	for i := range 3 {
		res, err := h.p.Invoke(t.Context(), lambdatest.Invocation{Lines: []string{"hello"}})
		if err != nil || res.TimedOut {
			t.Fatalf("invoke %d: %+v %v", i, res, err)
		}
		if res.PostRuntimeOverhead > time.Second {
			t.Fatalf("invoke %d held for %v with no telemetry flowing", i, res.PostRuntimeOverhead)
		}
	}
	h.shutdown()
	if out := h.p.Output(); !strings.Contains(out, "202") {
		t.Errorf("output does not mention the 202 answer:\n%s", out)
	}
}

// Lambda Managed Instances: SHUTDOWN only, schema 2025-01-29, no
// runtimeDone; lines flow in the background and the rest at SHUTDOWN.
func TestManagedInstances(t *testing.T) {
	t.Parallel()
	h := start(t, lambdatest.Options{ManagedInstances: true}, true, "O2_FLUSH_INTERVAL_MS=200")
	rep, err := h.p.Run(t.Context(), lambdatest.Scenario{Invocations: 20, Rate: 50, Lines: 10, LineSize: 80, Marker: "mi", Duration: 30 * time.Millisecond})
	if err != nil {
		t.Fatalf("run: %v\n%s", err, tail(h.p.Output()))
	}
	h.shutdown()
	if lost, dup := exactlyOnce(t, rep.Lines, h.marked("mi")); lost+dup > 0 {
		t.Fatalf("lost %d, duplicated %d", lost, dup)
	}
	// No INVOKE on Managed Instances: the summary counts the requests the
	// telemetry showed, and names the background mode they were sent in.
	sum := trustSummary(t, h)
	if n := trustNum(sum["record_invocations"]); n != 20 || sum["record_mode"] != "continuous" || trustNum(sum["record_modes_continuous"]) != 20 {
		t.Errorf("summary invocations %v, mode %v, modes.continuous %v; want 20, continuous, 20", sum["record_invocations"], sum["record_mode"], sum["record_modes_continuous"])
	}
	// The extension's own lines carry their level.
	for _, r := range h.records("extension") {
		if txt, _ := r["record"].(string); strings.Contains(txt, "level=info") && r["level"] != "INFO" {
			t.Errorf("extension line %.60q stored with level %v, want INFO", txt, r["level"])
		}
	}
}

// --health-check against the stand-in: one line per step, a verdict, the
// right exit code, words a user can act on, and never the secret.
func TestHealthCheck(t *testing.T) {
	t.Parallel()
	o2 := o2test.Run(t, o2test.Options{Orgs: []string{org}})
	good := o2Env(o2)
	secretAuth := o2test.BasicAuth(o2test.DefaultEmail, "Wr0ng-S3cret-Value")
	closed := "http://127.0.0.1:1" // nothing listens on port 1
	for _, tc := range []struct {
		name     string
		env      []string
		wantCode int
		want     []string
	}{
		{"pass", good, 0, []string{"[ok  ] configuration", "[ok  ] reachable", "[ok  ] credentials", "verdict: healthy", "Basic <redacted"}},
		{"wrong password", append(good[:3:3], "O2_AUTHORIZATION_HEADER="+secretAuth), 1, []string{"[FAIL] credentials", "wrong credentials", "verdict: FAILED"}},
		{"unknown org", append([]string{"O2_ORGANIZATION_ID=nope"}, good[0], good[2], good[3]), 1, []string{"[FAIL] credentials", "organization", "verdict: FAILED"}},
		{"unreachable", append([]string{"O2_ENDPOINT=" + closed}, good[1:]...), 1, []string{"[FAIL] reachable", "unreachable", "verdict: FAILED"}},
		{"missing variables", []string{"O2_ENDPOINT=" + o2.URL()}, 1, []string{"[FAIL] configuration", "O2_ORGANIZATION_ID is required", "O2_AUTHORIZATION_HEADER is required", "verdict: FAILED"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code := runBinary(t, tc.env, "--health-check")
			if code != tc.wantCode {
				t.Errorf("exit code = %d, want %d\n%s", code, tc.wantCode, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, secret := range []string{secretAuth, strings.TrimPrefix(secretAuth, "Basic "), "Wr0ng-S3cret-Value", o2test.DefaultSecret} {
				if strings.Contains(out, secret) {
					t.Errorf("output contains a secret %q:\n%s", secret, out)
				}
			}
		})
	}
	// The check writes nothing.
	if n := len(o2.Records()); n != 0 {
		t.Errorf("health checks stored %d records, want 0", n)
	}
}

func TestCLI(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args     []string
		wantCode int
		want     string
	}{
		{[]string{"--help"}, 0, "Usage:"},
		{[]string{"-h"}, 0, "--health-check"},
		{[]string{"--version"}, 0, "o2-extension "},
		{[]string{"--nope"}, 2, "unknown flag"},
		{[]string{"extra"}, 2, "unexpected argument"},
		{nil, 1, "AWS_LAMBDA_RUNTIME_API is not set"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, code := runBinary(t, nil, tc.args...)
			if code != tc.wantCode || !strings.Contains(out, tc.want) {
				t.Errorf("exit %d, output:\n%s\nwant exit %d and %q", code, out, tc.wantCode, tc.want)
			}
		})
	}
}

// Text lines with a Node.js or Python runtime prefix are stored as printed,
// with the level and the request id read from the prefix: a line a callback
// prints after its invocation ended keeps its own request id; a plain line
// gets the invocation in progress and no level.
func TestTextLinesWithRuntimePrefix(t *testing.T) {
	t.Parallel()
	h := start(t, lambdatest.Options{}, true)
	const a, b = "aaaaaaaa-0000-4000-8000-000000000001", "bbbbbbbb-0000-4000-8000-000000000002"
	node := "2024-01-01T00:00:00.000Z\t" + a + "\tERROR\tprefix-test payment failed"
	python := "[WARNING]\t2024-01-01T00:00:00.001Z\t" + a + "\tprefix-test disk almost full"
	late := "2024-01-01T00:00:01.000Z\t" + a + "\tINFO\tprefix-test callback of the first invocation"
	plain := "prefix-test plain line"
	for _, inv := range []lambdatest.Invocation{
		{RequestID: a, Lines: []string{node, python}},
		{RequestID: b, Lines: []string{late, plain}},
	} {
		if res, err := h.p.Invoke(t.Context(), inv); err != nil || res.TimedOut {
			t.Fatalf("invoke %s: %+v %v", inv.RequestID, res, err)
		}
	}
	h.shutdown()
	want := map[string][2]string{ // line: requestid, level
		node:   {a, "ERROR"},
		python: {a, "WARNING"},
		late:   {a, "INFO"},
		plain:  {b, ""},
	}
	seen := 0
	for _, r := range h.records("function") {
		text, _ := r["record"].(string)
		w, ok := want[text]
		if !ok {
			continue
		}
		seen++
		if id, lvl := r["requestid"], r["level"]; id != w[0] || (w[1] == "" && lvl != nil) || (w[1] != "" && lvl != w[1]) {
			t.Errorf("%q: requestid %v, level %v; want %s, %q", text, id, lvl, w[0], w[1])
		}
	}
	if seen != len(want) {
		t.Errorf("%d of the %d lines stored as printed", seen, len(want))
	}
}

// O2_EXCLUDE_TYPES and O2_MIN_LEVEL leave records out of what is sent, not
// out of what the extension sees: an end-of-invocation flush still waits
// for the excluded platform.runtimeDone, so the kept lines are stored
// before /next, and the summary counts what was left out.
func TestFilterLeavesOutWhatIsSentOnly(t *testing.T) {
	t.Parallel()
	h := start(t, lambdatest.Options{LogFormat: "json"}, true,
		"O2_EXCLUDE_TYPES=platform.start,platform.runtimeDone", "O2_MIN_LEVEL=warn", "O2_FLUSH_STRATEGY=end")
	lines := func(inv int) []string {
		ls := make([]string, 10)
		for j := range ls {
			ls[j] = lambdatest.ScenarioLine("filtered", inv, j, 80)
		}
		return ls
	}
	quiet, loud := lines(0), lines(1)
	if _, err := h.p.Invoke(t.Context(), lambdatest.Invocation{Lines: quiet, Level: "INFO", Duration: 10 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	res, err := h.p.Invoke(t.Context(), lambdatest.Invocation{Lines: loud, Level: "ERROR", Duration: 10 * time.Millisecond})
	if err != nil || res.TimedOut {
		t.Fatalf("invoke: %+v %v", res, err)
	}
	// No waiting: the ERROR lines are stored when /next was called.
	if lost, dup := exactlyOnce(t, loud, h.marked("filtered")); lost+dup > 0 {
		t.Fatalf("ERROR lines before /next: lost %d, duplicated %d", lost, dup)
	}
	h.shutdown()
	got := h.marked("filtered")
	for _, l := range quiet {
		if got[l] > 0 {
			t.Fatalf("INFO line %.30q was sent with O2_MIN_LEVEL=warn", l)
		}
	}
	for _, typ := range []string{"platform.start", "platform.runtimeDone"} {
		if n := len(h.records(typ)); n > 0 {
			t.Errorf("%d %s records sent although excluded", n, typ)
		}
	}
	if n := len(h.records("platform.report")); n != 2 {
		t.Errorf("platform.report records = %d, want 2 (not excluded)", n)
	}
	// 10 INFO lines, two of each excluded type, and the extension's own
	// info lines (its start line), which carry their level too; its
	// shutdown line comes after the summary.
	want := int64(14)
	for _, ev := range h.p.Events() {
		if r := string(ev.Record); ev.Type == "extension" && strings.Contains(r, "level=info") && !strings.Contains(r, "msg=shutdown") {
			want++
		}
	}
	if n := trustNum(trustSummary(t, h)["record_filteredevents"]); n != want {
		t.Errorf("summary filteredEvents = %d, want %d", n, want)
	}
}

// A self-hosted OpenObserve with a private CA (the README's recipe):
// SSL_CERT_FILE names a bundle holding that CA, and the extension trusts
// it; without it, the certificate is refused and said so.
func TestPrivateCAWithSSLCertFile(t *testing.T) {
	t.Parallel()
	o2 := o2test.New(o2test.Options{Orgs: []string{org}})
	srv := httptest.NewTLSServer(o2.Handler())
	t.Cleanup(srv.Close)
	bundle := filepath.Join(t.TempDir(), "ca-bundle.pem")
	pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(bundle, pemCert, 0o644); err != nil {
		t.Fatal(err)
	}
	env := append([]string{"O2_ENDPOINT=" + srv.URL}, o2Env(o2)[1:]...)
	for _, tc := range []struct {
		name     string
		env      []string
		wantCode int
		want     []string
	}{
		{"trusted through SSL_CERT_FILE", append(slices.Clone(env), "SSL_CERT_FILE="+bundle), 0,
			[]string{"[ok  ] reachable", "[ok  ] credentials", "verdict: healthy"}},
		{"not trusted without it", slices.Clone(env), 1,
			[]string{"[FAIL] reachable", "TLS certificate not trusted", "[skip] credentials"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code := runBinary(t, tc.env, "--health-check")
			if code != tc.wantCode {
				t.Errorf("exit code = %d, want %d\n%s", code, tc.wantCode, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}
