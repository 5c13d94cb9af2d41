package layerzip

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The exec wrapper, run by /bin/sh (dash here; bash on Amazon Linux) with a
// fake runtime that prints its
// arguments and environment: it sets the OTLP variables to the receiver
// unless the function set them, keeps everything else, passes the runtime's
// arguments through as they were, and execs it (the exit code is the
// runtime's).
func TestWrapper(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, WrapperName)
	if err := os.WriteFile(script, Wrapper, Perm); err != nil {
		t.Fatal(err)
	}
	runtime := filepath.Join(dir, "bootstrap")
	if err := os.WriteFile(runtime, []byte("#!/bin/sh\nfor a in \"$@\"; do echo \"arg=$a\"; done\nenv\nexit 7\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	defaults := []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318",
		"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_BSP_SCHEDULE_DELAY=500",
		"OTEL_BLRP_SCHEDULE_DELAY=500",
		"OTEL_METRIC_EXPORT_INTERVAL=1000",
	}
	tests := []struct {
		name string
		env  []string
		want []string
	}{
		{"defaults", nil, defaults},
		{"O2_OTLP_PORT", []string{"O2_OTLP_PORT=4999"}, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4999"}},
		{"the function's values win", []string{
			"OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318", "OTEL_EXPORTER_OTLP_PROTOCOL=http/json",
			"OTEL_BSP_SCHEDULE_DELAY=5000", "OTEL_BLRP_SCHEDULE_DELAY=100", "OTEL_METRIC_EXPORT_INTERVAL=60000",
		}, []string{
			"OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318", "OTEL_EXPORTER_OTLP_PROTOCOL=http/json",
			"OTEL_BSP_SCHEDULE_DELAY=5000", "OTEL_BLRP_SCHEDULE_DELAY=100", "OTEL_METRIC_EXPORT_INTERVAL=60000",
		}},
		{"other variables kept", []string{"_HANDLER=index.handler", "OTEL_SERVICE_NAME=orders"}, append([]string{"_HANDLER=index.handler", "OTEL_SERVICE_NAME=orders"}, defaults...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command("/bin/sh", script, runtime, "--handler", "a b", "")
			cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, tt.env...)
			out, err := cmd.Output()
			if ee, ok := errors.AsType[*exec.ExitError](err); !ok || ee.ExitCode() != 7 {
				t.Fatalf("run: %v, want the runtime's exit 7\n%s", err, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if got, want := lines[:3], []string{"arg=--handler", "arg=a b", "arg="}; !slices.Equal(got, want) {
				t.Errorf("runtime arguments %q, want %q", got, want)
			}
			for _, kv := range tt.want {
				if !slices.Contains(lines, kv) {
					t.Errorf("runtime env lacks %s:\n%s", kv, out)
				}
			}
		})
	}
}
