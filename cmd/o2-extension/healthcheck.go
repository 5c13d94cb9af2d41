package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/o2-extension/o2-extension/internal/config"
	"github.com/o2-extension/o2-extension/internal/openobserve"
)

// healthCheckBudget bounds the whole --health-check: a person is waiting at
// a terminal, and with the defaults (30 s per attempt) a hung endpoint would
// otherwise take a minute.
const healthCheckBudget = 10 * time.Second

// healthCheckOptions are the flags of --health-check.
type healthCheckOptions struct {
	sendTest bool          // also write one real record
	budget   time.Duration // the most the whole check may take
}

// runHealthCheck validates the configuration, then checks that OpenObserve
// answers and accepts the credentials, organization and stream: GET
// /healthz, then POST [] to the ingestion URL, which writes nothing. With
// sendTest it also writes one real record. Each step prints one line with
// its result and latency; the authorization value is never printed, only
// its scheme. All steps together take at most o.budget, and a step that
// cannot succeed after an earlier failure is skipped: nothing answered at
// the endpoint, so no credentials can be checked there.
func runHealthCheck(ctx context.Context, getenv func(string) string, environ []string, w io.Writer, o healthCheckOptions) error {
	cfg, warnings, cfgErr := config.Load(getenv, environ)
	fmt.Fprintf(w, "o2-extension %s health check\n", versionString())
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
	skip := func(name, why string) { fmt.Fprintf(w, "[skip] %-14s %s\n", name, why) }
	warn := func() {
		for _, msg := range warnings {
			fmt.Fprintf(w, "[warn] %-14s %s\n", "configuration", msg)
		}
	}
	if cfgErr != nil {
		problems := strings.Split(cfgErr.Error(), "\n")
		step("configuration", false, fmt.Sprintf("%d problem(s):", len(problems)))
		for _, p := range problems {
			fmt.Fprintf(w, "         - %s\n", p)
		}
		warn()
		skip("connectivity", "fix the configuration first")
		fmt.Fprintln(w, "verdict: FAILED")
		return exitError{code: 1}
	}
	step("configuration", true, "valid")
	warn()

	ctx, cancel := context.WithTimeout(ctx, o.budget)
	defer cancel()
	client := openobserve.NewClient(clientOptions(cfg, getenv, nil))
	// check runs one step, bounded by O2_REQUEST_TIMEOUT_MS and by what is
	// left of the budget. It reports whether OpenObserve (or whatever is at
	// the endpoint) answered at all, and whether the step passed.
	check := func(name, what string, call func(context.Context) (time.Duration, error)) (answered, ok bool) {
		cctx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
		defer cancel()
		d, err := call(cctx)
		if err != nil {
			detail := fmt.Sprintf("%s: %s (after %s)", what, openobserve.Explain(err), round(d))
			if ctx.Err() != nil {
				detail += fmt.Sprintf("; the whole check is bounded by %s", o.budget)
			}
			step(name, false, detail)
			_, isStatus := errors.AsType[*openobserve.StatusError](err)
			return isStatus || errors.Is(err, openobserve.ErrUnexpectedReply), false
		}
		step(name, true, fmt.Sprintf("%s in %s", what, round(d)))
		return true, true
	}
	answered, _ := check("reachable", "GET "+cfg.HealthURL(), client.CheckHealthz)
	if !answered {
		skip("credentials", "nothing answered at O2_ENDPOINT, so the credentials cannot be checked")
		if o.sendTest {
			skip("test record", "nothing answered at O2_ENDPOINT")
		}
	} else {
		_, ok := check("credentials", "POST [] to "+cfg.IngestURL(), client.CheckIngest)
		switch {
		case !o.sendTest:
		case !ok:
			skip("test record", "the credentials check failed")
		default:
			check("test record", "POST 1 record to "+cfg.IngestURL(), func(ctx context.Context) (time.Duration, error) {
				return client.SendTestRecord(ctx, time.Now())
			})
		}
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
