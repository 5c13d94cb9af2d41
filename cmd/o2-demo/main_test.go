package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/o2-extension/o2-extension/internal/openobserve/o2test"
)

// extensionBinary is the extension, built once for the tests that run it.
var extensionBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "o2-demo-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	extensionBinary = filepath.Join(dir, "o2-extension")
	build := exec.Command("go", "build", "-o", extensionBinary, "../o2-extension")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build o2-extension:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// demoEnv is an environment holding only vars, with the prebuilt extension.
func demoEnv(vars map[string]string) env {
	var environ []string
	for k, v := range vars {
		environ = append(environ, k+"="+v)
	}
	return env{getenv: func(k string) string { return vars[k] }, environ: environ, extension: extensionBinary}
}

// exitCode is the code main would exit with for err.
func exitCode(err error) int {
	if ee, ok := errors.AsType[exitError](err); ok {
		return ee.code
	}
	if err != nil {
		return 1
	}
	return 0
}

func TestFlagsAreChecked(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--invocations", "-3"}, "--invocations -3: want at least 1"},
		{[]string{"--invocations", "0"}, "--invocations 0: want at least 1"},
		{[]string{"--rate", "-1"}, "--rate -1: want 0"},
		{[]string{"--rate", "NaN"}, "--rate NaN: want 0"},
		{[]string{"--lines", "0"}, "--lines 0: want at least 1"},
		{[]string{"--line-size", "-1"}, "--line-size -1: want at least 1"},
		{[]string{"--gap", "-1s"}, "--gap -1s: want 0 or more"},
		{[]string{"--duration", "-1s"}, "--duration -1s: want 0 or more"},
		{[]string{"--log-format", "xml"}, `--log-format "xml": want text or json`},
		{[]string{"--strategy", "sometimes"}, `--strategy "sometimes": want auto, end, continuous or periodic`},
		{[]string{"stray"}, `unexpected argument "stray"`},
		{[]string{"--nope"}, "unknown flag: --nope"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out bytes.Buffer
			err := run(t.Context(), tt.args, demoEnv(nil), &out)
			if code := exitCode(err); code != 2 || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("exit %d, error %v; want exit 2 and %q", code, err, tt.want)
			}
			if strings.Contains(out.String(), "building") {
				t.Errorf("the demo started despite a bad flag:\n%s", out.String())
			}
		})
	}
}

// closedURL is a loopback URL where nothing listens.
func closedURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + l.Addr().String()
	l.Close()
	return u
}

// TestDemo runs the demo with the real extension. Without -v it still
// shows the extension's errors, warnings and mode changes, and it fails
// when nothing arrived, saying why.
func TestDemo(t *testing.T) {
	stand := o2test.Run(t, o2test.Options{Orgs: []string{"acme"}})
	auth := o2test.BasicAuth(o2test.DefaultEmail, o2test.DefaultSecret)
	tests := []struct {
		name     string
		args     []string
		vars     map[string]string
		wantCode int
		want     []string // in the output, or in the error for a failure
		dontWant []string
	}{
		{name: "output", args: []string{"--invocations", "1", "--lines", "1"},
			want: []string{"running 1 invocation of 1 line ...", "function lines: 1 printed, 0 lost", "a stored function record: {"},
			// The stand-in's plain http:// is the demo's own choice.
			dontWant: []string{"plain http", "1 invocations", "1 lines", "map["}},
		{name: "invalid setting shown", args: []string{"--invocations", "1", "--lines", "1"},
			vars: map[string]string{"O2_BATCH_SIZE": "abc"},
			want: []string{`extension: level=warning msg="O2_BATCH_SIZE: \"abc\" is not a whole number`, "0 lost"}},
		{name: "mode change shown", args: []string{"--invocations", "12", "--rate", "100", "--lines", "1"},
			want: []string{`extension: level=info msg="flush mode: continuous`}},
		{name: "real endpoint without org or credentials", args: []string{"--invocations", "1", "--lines", "1"},
			vars: map[string]string{"O2_ENDPOINT": stand.URL()}, wantCode: 1,
			want: []string{"extension: level=error", "the extension delivered nothing to OpenObserve", "O2_ORGANIZATION_ID is required"}},
		{name: "real endpoint unreachable", args: []string{"--invocations", "1", "--lines", "1"},
			vars: map[string]string{"O2_ENDPOINT": closedURL(t), "O2_ORGANIZATION_ID": "acme", "O2_AUTHORIZATION_HEADER": auth,
				"O2_MAX_RETRIES": "0"}, wantCode: 1,
			want: []string{"the extension delivered nothing to OpenObserve", "connection refused"}},
		{name: "real endpoint", args: []string{"--invocations", "1", "--lines", "1"},
			vars: map[string]string{"O2_ENDPOINT": stand.URL(), "O2_ORGANIZATION_ID": "acme", "O2_AUTHORIZATION_HEADER": auth,
				"O2_STREAM": "my_stream"},
			want: []string{"the extension delivered ", `SELECT * FROM "my_stream" WHERE`}, dontWant: []string{"<stream>"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(t.Context(), tt.args, demoEnv(tt.vars), &out)
			text := out.String()
			if err != nil {
				text += "\nerror: " + err.Error()
			}
			if code := exitCode(err); code != tt.wantCode {
				t.Errorf("exit %d (%v), want %d", code, err, tt.wantCode)
			}
			for _, w := range tt.want {
				if !strings.Contains(text, w) {
					t.Errorf("output lacks %q", w)
				}
			}
			for _, w := range tt.dontWant {
				if strings.Contains(text, w) {
					t.Errorf("output has %q", w)
				}
			}
			if _, rec, ok := strings.Cut(text, "a stored function record: "); ok {
				rec, _, _ = strings.Cut(rec, "\n")
				if !json.Valid([]byte(rec)) {
					t.Errorf("the stored record is not JSON: %s", rec)
				}
			}
			if t.Failed() {
				t.Logf("output:\n%s", text)
			}
		})
	}
}
