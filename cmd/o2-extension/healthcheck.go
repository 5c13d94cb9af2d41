package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/o2-extension/o2-extension/internal/config"
	"github.com/o2-extension/o2-extension/internal/openobserve"
)

// runHealthCheck validates the configuration, then checks that OpenObserve
// answers and accepts the credentials, organization and stream: GET
// /healthz, then POST [] to the ingestion URL, which writes nothing. With
// sendTest it also writes one real record. Each step prints one line with
// its result and latency; the authorization value is never printed, only
// its scheme.
func runHealthCheck(ctx context.Context, getenv func(string) string, w io.Writer, sendTest bool) error {
	cfg, cfgErr := config.Load(getenv)
	fmt.Fprintf(w, "o2-extension %s health check\n", version)
	for _, line := range cfg.Redacted() {
		fmt.Fprintf(w, "  %s\n", line)
	}
	failed := false
	step := func(name string, ok bool, detail string) {
		mark := "ok  "
		if !ok {
			mark = "FAIL"
			failed = true
		}
		fmt.Fprintf(w, "[%s] %-14s %s\n", mark, name, detail)
	}
	if cfgErr != nil {
		problems := strings.Split(cfgErr.Error(), "\n")
		step("configuration", false, fmt.Sprintf("%d problem(s):", len(problems)))
		for _, p := range problems {
			fmt.Fprintf(w, "         - %s\n", p)
		}
		fmt.Fprintln(w, "[skip] connectivity   fix the configuration first")
		fmt.Fprintln(w, "verdict: FAILED")
		return exitError{code: 1}
	}
	step("configuration", true, "valid")
	for _, warn := range cfg.Warnings() {
		fmt.Fprintf(w, "[warn] %-14s %s\n", "configuration", warn)
	}

	client := openobserve.NewClient(clientOptions(cfg, getenv, nil))
	timeout := cfg.RequestTimeout
	check := func(name, what string, call func(context.Context) (time.Duration, error)) {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		d, err := call(cctx)
		if err != nil {
			step(name, false, fmt.Sprintf("%s: %s (after %s)", what, openobserve.Explain(err), round(d)))
			return
		}
		step(name, true, fmt.Sprintf("%s in %s", what, round(d)))
	}
	check("reachable", "GET "+cfg.HealthURL(), client.CheckHealthz)
	check("credentials", "POST [] to "+cfg.IngestURL(), client.CheckIngest)
	if sendTest {
		check("test record", "POST 1 record to "+cfg.IngestURL(), func(ctx context.Context) (time.Duration, error) {
			return client.SendTestRecord(ctx, time.Now())
		})
	}
	if failed {
		fmt.Fprintln(w, "verdict: FAILED")
		return exitError{code: 1}
	}
	fmt.Fprintln(w, "verdict: healthy")
	return nil
}

func round(d time.Duration) time.Duration {
	if d > time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(100 * time.Microsecond)
}
