// Command o2-extension is an AWS Lambda extension that ships a function's logs
// and the platform's telemetry to OpenObserve.
//
// Without arguments it runs as a Lambda extension. With --health-check it
// validates the configuration and checks that OpenObserve can be reached and
// accepts the credentials.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/pflag"
)

// version and commit are set at build time by build.sh, with -ldflags
// "-X main.version=... -X main.commit=...": the release version (the
// VERSION file) and the commit it was built from.
var (
	version = "dev"
	commit  = ""
)

// versionString is the version with its commit, e.g. "0.1.0 (commit
// 1dc10af2b3c4)".
func versionString() string {
	if c := buildCommit(); c != "" {
		return version + " (commit " + c + ")"
	}
	return version
}

// buildCommit is the stamped commit; without one (go build, go run) the
// one the go command recorded, if any; else "".
func buildCommit() string {
	if commit != "" {
		return commit
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision" && len(s.Value) >= 12:
			rev = s.Value[:12]
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = "-dirty"
		}
	}
	if rev == "" {
		return ""
	}
	return rev + dirty
}

func main() {
	tuneGC(os.Getenv)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Environ(), os.Stdout, os.Stderr); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			if ee.msg != "" {
				fmt.Fprintln(os.Stderr, "o2-extension:", ee.msg)
			}
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "o2-extension:", err)
		os.Exit(1)
	}
}

// exitError asks main to exit with a code, printing msg if there is one.
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return fmt.Sprintf("exit %d: %s", e.code, e.msg) }

// run is the whole program, with its environment passed in so tests can run
// it in-process: getenv reads one variable, environ lists them all (as
// os.Environ does; only to warn about misspelt O2_* names).
func run(ctx context.Context, args []string, getenv func(string) string, environ []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("o2-extension", pflag.ContinueOnError)
	fs.SetOutput(io.Discard) // we print usage ourselves, once
	healthCheck := fs.Bool("health-check", false, "validate the configuration and check that OpenObserve accepts it, then exit")
	sendTest := fs.Bool("send-test-record", false, "with --health-check: also write one real record to the stream")
	showVersion := fs.Bool("version", false, "print the version and exit")
	help := fs.BoolP("help", "h", false, "print this help and exit")
	err := fs.Parse(args)
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err != nil {
		fmt.Fprintf(stderr, "o2-extension: %v\n\n", err)
		usage(stderr, fs)
		return exitError{code: 2}
	}
	switch {
	case *help:
		usage(stdout, fs)
		return nil
	case *showVersion:
		fmt.Fprintln(stdout, "o2-extension", versionString())
		return nil
	case *sendTest && !*healthCheck:
		fmt.Fprintln(stderr, "o2-extension: --send-test-record goes with --health-check")
		return exitError{code: 2}
	case *healthCheck:
		return runHealthCheck(ctx, getenv, environ, stdout, healthCheckOptions{sendTest: *sendTest, budget: healthCheckBudget})
	}
	return runExtension(ctx, getenv, environ, stdout)
}

func usage(w io.Writer, fs *pflag.FlagSet) {
	fmt.Fprintf(w, `o2-extension %s: ships AWS Lambda logs and telemetry to OpenObserve.

Usage:
  o2-extension                      run as a Lambda extension (from /opt/extensions)
  o2-extension --health-check       check the O2_* configuration and OpenObserve, then exit
  o2-extension --version

Flags:
%s
Configuration comes from O2_* environment variables. Required:
O2_ORGANIZATION_ID, and the credential from exactly one of
O2_AUTHORIZATION_HEADER_SECRET_ARN (Secrets Manager, recommended),
O2_AUTHORIZATION_HEADER_SSM_PARAMETER (SSM Parameter Store) or
O2_AUTHORIZATION_HEADER (plain text, for local runs). See the README for
every variable.
`, version, fs.FlagUsages())
}
