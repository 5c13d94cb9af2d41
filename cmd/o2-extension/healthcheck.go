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

// runHealthCheck validates the configuration, fetches the credential when
// it is kept in AWS, then checks that OpenObserve answers and accepts the
// credentials, organization and stream: GET /healthz, GET
// /api/{org}/_license (read-only: it never creates the organization), then
// POST [] to the ingestion URL, which writes no record. With
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
	opts := clientOptions(cfg, getenv, nil, nil)
	fetched, source := true, ""
	if src := newCredential(cfg, getenv, nil); src != nil {
		source = src.String()
		// One fetch, as its own step; the value goes to the client only
		// (which redacts it), never to the output, nor does its length.
		cctx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
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
	// check runs one step, bounded by O2_REQUEST_TIMEOUT_MS and by what is
	// left of the budget. It reports whether OpenObserve (or whatever is at
	// the endpoint) answered at all, and the step's error.
	check := func(name, what string, call func(context.Context) (time.Duration, error)) (answered bool, err error) {
		cctx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
		defer cancel()
		d, err := call(cctx)
		if err != nil {
			detail := fmt.Sprintf("%s: %s (after %s)", what, explain(err, source), round(d))
			if ctx.Err() != nil {
				detail += fmt.Sprintf("; the whole check is bounded by %s", o.budget)
			}
			step(name, false, detail)
			_, isStatus := errors.AsType[*openobserve.StatusError](err)
			return isStatus || errors.Is(err, openobserve.ErrUnexpectedReply), err
		}
		step(name, true, fmt.Sprintf("%s in %s", what, round(d)))
		return true, nil
	}
	answered, _ := check("reachable", "GET "+cfg.HealthURL(), client.CheckHealthz)
	orgOK := false
	switch {
	case !answered:
		skip("credentials", "nothing answered at O2_ENDPOINT, so the credentials cannot be checked")
	case !fetched:
		skip("credentials", "no credential to check")
	default:
		// Read-only first: a POST would create a missing organization for
		// the root user.
		what := "GET " + cfg.OrgCheckURL() + " (read-only: credentials and organization)"
		cctx, ccancel := context.WithTimeout(ctx, cfg.RequestTimeout)
		d, err := client.CheckOrganization(cctx)
		ccancel()
		switch {
		case err == nil:
			step("credentials", true, fmt.Sprintf("%s in %s", what, round(d)))
			orgOK = true
		case errors.Is(err, openobserve.ErrOrgCheckUnavailable):
			// It could not tell, which is not a failure.
			fmt.Fprintf(w, "[warn] %-14s %s: %s; not posting to find out, as OpenObserve would create a missing organization for the root user\n",
				"credentials", what, openobserve.Explain(err))
		default:
			step("credentials", false, fmt.Sprintf("%s: %s (after %s)", what, explain(err, source), round(d)))
		}
	}
	switch {
	case !orgOK:
		skip("ingestion", "the organization and credentials were not confirmed")
		if o.sendTest {
			skip("test record", "the organization and credentials were not confirmed")
		}
	default:
		_, err := check("ingestion", "POST [] to "+cfg.IngestURL(), client.CheckIngest)
		if o.sendTest {
			if err != nil {
				skip("test record", "the ingestion check failed")
			} else {
				check("test record", "POST 1 record to "+cfg.IngestURL(), func(ctx context.Context) (time.Duration, error) {
					return client.SendTestRecord(ctx, time.Now())
				})
			}
		}
	}
	if failed {
		fmt.Fprintln(w, "verdict: FAILED")
		return exitError{code: 1}
	}
	if !orgOK {
		fmt.Fprintln(w, "verdict: reachable; the credentials could not be verified without writing")
		return nil
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

// explain is openobserve.Explain, naming the secret or parameter instead of
// O2_AUTHORIZATION_HEADER when the credential comes from one (source).
func explain(err error, source string) string {
	e := openobserve.Explain(err)
	if source != "" {
		e = strings.ReplaceAll(e, "O2_AUTHORIZATION_HEADER", "the credential in "+source)
	}
	return e
}

func round(d time.Duration) time.Duration {
	if d > time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(100 * time.Microsecond)
}
