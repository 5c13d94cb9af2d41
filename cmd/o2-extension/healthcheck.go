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

	timeout := cfg.RequestTimeout
	opts := clientOptions(cfg, getenv, nil, nil)
	fetched, source := true, ""
	if src := newCredential(cfg, getenv, nil); src != nil {
		source = src.String()
		// One fetch, as its own step; the value goes to the client only
		// (which redacts it), never to the output, nor does its length.
		cctx, cancel := context.WithTimeout(ctx, timeout)
		start := time.Now()
		v, err := src.Fetch(cctx)
		d := time.Since(start)
		cancel()
		if err != nil {
			fetched = false
			step("credential", false, fmt.Sprintf("from %s: %s (after %s)", src, credentialError(err, src), round(d)))
		} else {
			step("credential", true, fmt.Sprintf("from %s: fetched in %s", src, round(d)))
			opts.Authorization = v
		}
	} else {
		step("credential", true, "from O2_AUTHORIZATION_HEADER ("+schemeOf(cfg.AuthScheme())+")")
	}
	client := openobserve.NewClient(opts)
	check := func(name, what string, call func(context.Context) (time.Duration, error)) {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		d, err := call(cctx)
		if err != nil {
			step(name, false, fmt.Sprintf("%s: %s (after %s)", what, explain(err, source), round(d)))
			return
		}
		step(name, true, fmt.Sprintf("%s in %s", what, round(d)))
	}
	check("reachable", "GET "+cfg.HealthURL(), client.CheckHealthz)
	if !fetched {
		fmt.Fprintf(w, "[skip] %-14s no credential to check\n", "credentials")
		fmt.Fprintln(w, "verdict: FAILED")
		return exitError{code: 1}
	}
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

// credentialError is a fetch failure as a step's detail: the source's own
// message, without the repeated "credential from <source>:" prefix.
func credentialError(err error, src fmt.Stringer) string {
	return strings.TrimPrefix(err.Error(), "credential from "+src.String()+": ")
}

// schemeOf names the authorization scheme for the output, never more.
func schemeOf(scheme string) string {
	if scheme == "" {
		return "malformed"
	}
	return scheme + " scheme"
}

func round(d time.Duration) time.Duration {
	if d > time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(100 * time.Microsecond)
}
