// Command o2-demo shows the extension at work on a laptop: it builds the
// real binary, runs it inside the emulated Lambda platform against a local
// OpenObserve stand-in (or a real OpenObserve when O2_ENDPOINT,
// O2_ORGANIZATION_ID and O2_AUTHORIZATION_HEADER are set), drives a few
// invocations and prints what arrived, how long each invocation was held
// after the runtime finished, and the extension's memory and CPU.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/o2-extension/o2-extension/internal/lambdatest"
	"github.com/o2-extension/o2-extension/internal/openobserve/o2test"
	"github.com/spf13/pflag"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err := run(ctx, os.Args[1:], env{getenv: os.Getenv, environ: os.Environ()}, os.Stdout)
	if ee, ok := errors.AsType[exitError](err); ok {
		if ee.msg != "" {
			fmt.Fprintln(os.Stderr, "o2-demo:", ee.msg)
		}
		os.Exit(ee.code)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "o2-demo:", err)
		os.Exit(1)
	}
}

// exitError asks main to exit with a code, printing msg if there is one:
// 2 for a usage error, 1 when nothing arrived.
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return fmt.Sprintf("exit %d: %s", e.code, e.msg) }

// env is the demo's environment, passed in so that tests can run it
// in-process. extension, when set, is a prebuilt extension binary; else
// the demo builds ./cmd/o2-extension (from the repository root).
type env struct {
	getenv    func(string) string
	environ   []string
	extension string
}

// flags are the demo's knobs.
type flags struct {
	invocations, lines, lineSize int
	rate                         float64
	gap, duration                time.Duration
	format, strategy             string
	verbose                      bool
}

// parseFlags reads and checks the flags; a bad one is a usage error.
func parseFlags(args []string, out io.Writer) (flags, error) {
	var f flags
	fs := pflag.NewFlagSet("o2-demo", pflag.ContinueOnError)
	fs.SetOutput(io.Discard) // the error is printed once, by main
	fs.Usage = func() { fmt.Fprintf(out, "Usage of o2-demo:\n%s", fs.FlagUsages()) }
	fs.IntVar(&f.invocations, "invocations", 6, "how many invocations (at least 1)")
	fs.Float64Var(&f.rate, "rate", 0, "invocations per second (0: use --gap)")
	fs.DurationVar(&f.gap, "gap", 500*time.Millisecond, "idle (frozen) time between invocations")
	fs.IntVar(&f.lines, "lines", 20, "lines printed per invocation (at least 1)")
	fs.IntVar(&f.lineSize, "line-size", 120, "bytes per line (at least 1)")
	fs.DurationVar(&f.duration, "duration", 30*time.Millisecond, "function duration")
	fs.StringVar(&f.format, "log-format", "text", "function log format: text or json")
	fs.StringVar(&f.strategy, "strategy", "", "O2_FLUSH_STRATEGY for the run (auto, end, continuous, periodic)")
	fs.BoolVarP(&f.verbose, "verbose", "v", false, "show all of the extension's own output (errors, warnings and flush mode changes are always shown)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return f, exitError{code: 0}
		}
		return f, exitError{code: 2, msg: err.Error()}
	}
	var bad []string
	if fs.NArg() > 0 {
		bad = append(bad, fmt.Sprintf("unexpected argument %q (the demo takes only flags; -h lists them)", fs.Arg(0)))
	}
	if f.invocations < 1 {
		bad = append(bad, fmt.Sprintf("--invocations %d: want at least 1", f.invocations))
	}
	if !(f.rate >= 0) || math.IsInf(f.rate, 0) { // also NaN
		bad = append(bad, fmt.Sprintf("--rate %v: want 0 (use --gap) or a positive number of invocations per second", f.rate))
	}
	if f.gap < 0 {
		bad = append(bad, fmt.Sprintf("--gap %v: want 0 or more", f.gap))
	}
	if f.lines < 1 {
		bad = append(bad, fmt.Sprintf("--lines %d: want at least 1", f.lines))
	}
	if f.lineSize < 1 {
		bad = append(bad, fmt.Sprintf("--line-size %d: want at least 1", f.lineSize))
	}
	if f.duration < 0 {
		bad = append(bad, fmt.Sprintf("--duration %v: want 0 or more", f.duration))
	}
	if f.format != "text" && f.format != "json" {
		bad = append(bad, fmt.Sprintf("--log-format %q: want text or json", f.format))
	}
	if !slices.Contains([]string{"", "auto", "end", "continuous", "periodic"}, f.strategy) {
		bad = append(bad, fmt.Sprintf("--strategy %q: want auto, end, continuous or periodic", f.strategy))
	}
	if len(bad) > 0 {
		return f, exitError{code: 2, msg: strings.Join(bad, "\n")}
	}
	return f, nil
}

func run(ctx context.Context, args []string, e env, stdout io.Writer) error {
	// The extension's lines are printed from the platform's goroutines
	// while run prints its own.
	stdout = &syncWriter{w: stdout}
	f, err := parseFlags(args, stdout)
	if err != nil {
		return err
	}

	bin := e.extension
	if bin == "" {
		fmt.Fprintln(stdout, "building the extension ...")
		dir, err := os.MkdirTemp("", "o2-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		bin = filepath.Join(dir, "o2-extension")
		build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-tags", "nethttpomithttp2", "-ldflags", "-s -w", "-o", bin, "./cmd/o2-extension")
		build.Env = append(os.Environ(), "CGO_ENABLED=0") // as build.sh: static, no libc pages
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("build (run this from the repository root): %w", err)
		}
	}

	var extEnv []string
	var stand *o2test.Server
	org, stream := "default", "demo"
	if endpoint := e.getenv("O2_ENDPOINT"); endpoint != "" {
		fmt.Fprintln(stdout, "sending to the real OpenObserve at", endpoint)
		for _, kv := range e.environ {
			if strings.HasPrefix(kv, "O2_") {
				extEnv = append(extEnv, kv)
			}
		}
		stream = cmp.Or(strings.TrimSpace(e.getenv("O2_STREAM")), "default")
	} else {
		stand = o2test.New(o2test.Options{})
		if err := stand.Start(); err != nil {
			return err
		}
		defer stand.Close()
		fmt.Fprintln(stdout, "OpenObserve stand-in listening at", stand.URL())
		extEnv = []string{
			"O2_ENDPOINT=" + stand.URL(),
			"O2_ORGANIZATION_ID=" + org,
			"O2_STREAM=" + stream,
			"O2_AUTHORIZATION_HEADER=" + o2test.BasicAuth(o2test.DefaultEmail, o2test.DefaultSecret),
		}
		// Any other O2_* setting in the environment is passed on, e.g.
		// O2_LONG_RUNNING_MS=5000 to watch a long invocation turn periodic.
		for _, kv := range e.environ {
			if strings.HasPrefix(kv, "O2_") && !slices.ContainsFunc(extEnv, func(s string) bool {
				return strings.SplitN(s, "=", 2)[0] == strings.SplitN(kv, "=", 2)[0]
			}) {
				extEnv = append(extEnv, kv)
			}
		}
	}
	// The demo's function exports no OpenTelemetry data, and the demo may
	// run beside a sandbox (a test, another demo) that holds 4318: the
	// OTLP receiver is off unless O2_OTLP_PORT says otherwise (it comes
	// later, so it wins).
	extEnv = append([]string{"O2_OTLP_PORT=0"}, extEnv...)
	if f.strategy != "" {
		extEnv = append(extEnv, "O2_FLUSH_STRATEGY="+f.strategy)
	}
	ext := &extensionLog{w: stdout, all: f.verbose, standIn: stand != nil}
	opts := lambdatest.Options{Extensions: []string{bin}, Env: extEnv, LogFormat: f.format, FunctionName: "demo-function",
		FunctionTimeout: max(3*time.Second, f.duration+2*time.Second), Output: ext}
	p, err := lambdatest.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer p.Close()

	marker := fmt.Sprintf("demo-%d", time.Now().UnixNano())
	fmt.Fprintf(stdout, "running %s of %s ...\n", plural(f.invocations, "invocation"), plural(f.lines, "line"))
	rep, err := p.Run(ctx, lambdatest.Scenario{
		Invocations: f.invocations, Rate: f.rate, Gap: f.gap,
		Lines: f.lines, LineSize: f.lineSize, Duration: f.duration, Marker: marker,
	})
	if err != nil {
		return err
	}
	sd, err := p.Shutdown(ctx, "spindown")
	if err != nil {
		return err
	}
	st := p.Stats()

	fmt.Fprintln(stdout)
	fmt.Fprintln(stdout, "invocation  held after the runtime finished")
	for i, inv := range rep.Invocations {
		if i < 10 || i == len(rep.Invocations)-1 {
			fmt.Fprintf(stdout, "  %4d      %v\n", i, inv.PostRuntimeOverhead.Round(10*time.Microsecond))
		} else if i == 10 {
			fmt.Fprintln(stdout, "   ...")
		}
	}
	fmt.Fprintf(stdout, "post-runtime overhead: p50 %v, p99 %v, max %v\n", rep.OverheadP50.Round(10*time.Microsecond),
		rep.OverheadP99.Round(10*time.Microsecond), rep.OverheadMax.Round(10*time.Microsecond))
	fmt.Fprintf(stdout, "extension: init (start to first /next) %v, peak RSS %.1f MB, CPU %.3f s (%.2f ms per invocation)\n",
		st.InitDuration.Round(10*time.Microsecond), float64(st.PeakRSSBytes)/(1<<20), st.CPUSeconds,
		1000*st.CPUSeconds/float64(max(len(rep.Invocations), 1)))
	fmt.Fprintf(stdout, "shutdown: %v, deadline met: %v, exit codes %v\n", sd.Duration.Round(time.Millisecond), sd.DeadlineMet, sd.ExitCodes)

	if stand == nil {
		// What arrived cannot be counted here; the extension's own
		// summary says how many records it delivered.
		delivered, ok := ext.delivered()
		if !ok || delivered == 0 {
			return exitError{code: 1, msg: "the extension delivered nothing to OpenObserve: " + ext.reason()}
		}
		fmt.Fprintf(stdout, "\nthe extension delivered %s to OpenObserve\n", plural(delivered, "record"))
		fmt.Fprintf(stdout, "query OpenObserve for the lines with: SELECT * FROM %q WHERE str_match(record, '%s')\n", stream, marker)
		return nil
	}
	recs := stand.StreamRecords(org, stream)
	types := map[string]int{}
	got := map[string]int{}
	for _, r := range recs {
		t, _ := r["type"].(string)
		types[t]++
		text, _ := r["record"].(string)
		if text == "" {
			text, _ = r["record_message"].(string)
		}
		if m, _, _, ok := lambdatest.ParseScenarioLine(text); ok && m == marker {
			got[text]++
		}
	}
	lost, dup := 0, 0
	for _, l := range rep.Lines {
		switch n := got[l]; {
		case n == 0:
			lost++
		case n > 1:
			dup += n - 1
		}
	}
	fmt.Fprintf(stdout, "\nOpenObserve received %s in %s:\n", plural(len(recs), "record"), plural(stand.Calls(), "request"))
	names := make([]string, 0, len(types))
	for t := range types {
		names = append(names, t)
	}
	sort.Strings(names)
	for _, t := range names {
		fmt.Fprintf(stdout, "  %-30s %d\n", t, types[t])
	}
	if otlpReqs := stand.OTLPRequests(); len(otlpReqs) > 0 {
		fmt.Fprintf(stdout, "  OTLP: %d data points and %d spans in %s\n", len(stand.Metrics()), len(stand.Spans()), plural(len(otlpReqs), "request"))
	}
	fmt.Fprintf(stdout, "function lines: %d printed, %d lost, %d duplicated\n", len(rep.Lines), lost, dup)
	if lat := lambdatest.Latencies(p.Events(), stand.Arrivals(), marker); len(lat) > 0 {
		fmt.Fprintf(stdout, "end-to-end latency (printed to received by OpenObserve): p50 %v, p99 %v, max %v\n",
			lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)*99/100].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	}
	for _, r := range recs {
		if r["type"] == "function" {
			b, err := json.Marshal(r)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "a stored function record: %s\n", b)
			break
		}
	}
	if lost == len(rep.Lines) {
		return exitError{code: 1, msg: "no function line reached OpenObserve: " + ext.reason()}
	}
	return nil
}

// syncWriter serialises writes to w.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

// plural writes n and the noun, with an s unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// extensionLog receives the extension's output lines. It shows all of them
// with -v; otherwise only what a user must see: errors, warnings and flush
// mode changes. It keeps the errors and the shutdown summary, to say why
// nothing arrived.
type extensionLog struct {
	w       io.Writer
	all     bool
	standIn bool // the demo's own stand-in: its plain http:// is expected

	mu       sync.Mutex
	problems []string // error and warning lines, in order
	summary  string   // the shutdown line
}

// Write takes one line (lambdatest writes each line on its own).
func (l *extensionLog) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for line := range strings.Lines(string(b)) {
		line = strings.TrimRight(line, "\r\n")
		isProblem := strings.HasPrefix(line, "level=error") || strings.HasPrefix(line, "level=warning") || strings.HasPrefix(line, "level=fatal")
		if l.standIn && strings.Contains(line, "uses plain http://") {
			isProblem = false // the local stand-in speaks plain http
		}
		if isProblem {
			l.problems = append(l.problems, line)
		}
		if strings.Contains(line, "msg=shutdown ") && strings.Contains(line, "delivered=") {
			l.summary = line
		}
		if l.all || isProblem || strings.Contains(line, `msg="flush mode:`) {
			fmt.Fprintln(l.w, "extension:", line)
		}
	}
	return len(b), nil
}

// delivered reads the delivered count of the extension's shutdown line.
func (l *extensionLog) delivered() (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for f := range strings.FieldsSeq(l.summary) {
		if v, ok := strings.CutPrefix(f, "delivered="); ok {
			n, err := strconv.Atoi(v)
			return n, err == nil
		}
	}
	return 0, false
}

// reason is the best explanation of a failed run the extension gave.
func (l *extensionLog) reason() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	// The latest error, else the latest warning: the first warnings are
	// usually notes about the configuration, the last ones why a send failed.
	for _, p := range slices.Backward(l.problems) {
		if strings.HasPrefix(p, "level=error") {
			return "the extension said: " + p
		}
	}
	if n := len(l.problems); n > 0 {
		return "the extension said: " + l.problems[n-1]
	}
	return "the extension logged no error; run with -v to see all of its output"
}
