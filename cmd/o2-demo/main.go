// Command o2-demo shows the extension at work on a laptop: it builds the
// real binary, runs it inside the emulated Lambda platform against a local
// OpenObserve stand-in (or a real OpenObserve when O2_ENDPOINT,
// O2_ORGANIZATION_ID and O2_AUTHORIZATION_HEADER are set), drives a few
// invocations and prints what arrived, how long each invocation was held
// after the runtime finished, and the extension's memory and CPU.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/o2-extension/o2-extension/internal/lambdatest"
	"github.com/o2-extension/o2-extension/internal/openobserve/o2test"
	"github.com/spf13/pflag"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "o2-demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := pflag.NewFlagSet("o2-demo", pflag.ContinueOnError)
	invocations := fs.Int("invocations", 6, "how many invocations")
	rate := fs.Float64("rate", 0, "invocations per second (0: use --gap)")
	gap := fs.Duration("gap", 500*time.Millisecond, "idle (frozen) time between invocations")
	lines := fs.Int("lines", 20, "lines printed per invocation")
	lineSize := fs.Int("line-size", 120, "bytes per line")
	duration := fs.Duration("duration", 30*time.Millisecond, "function duration")
	format := fs.String("log-format", "text", "function log format: text or json")
	strategy := fs.String("strategy", "", "O2_FLUSH_STRATEGY for the run (auto, end, continuous, periodic)")
	verbose := fs.BoolP("verbose", "v", false, "show the extension's own output")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil // pflag has printed the usage
		}
		return err
	}

	fmt.Println("building the extension ...")
	dir, err := os.MkdirTemp("", "o2-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "o2-extension")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./cmd/o2-extension")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // as build.sh: static, no libc pages
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build (run this from the repository root): %w", err)
	}

	var env []string
	var stand *o2test.Server
	org, stream := "default", "demo"
	if os.Getenv("O2_ENDPOINT") != "" {
		fmt.Println("sending to the real OpenObserve at", os.Getenv("O2_ENDPOINT"))
		for _, kv := range os.Environ() {
			if strings.HasPrefix(kv, "O2_") {
				env = append(env, kv)
			}
		}
	} else {
		stand = o2test.New(o2test.Options{})
		if err := stand.Start(); err != nil {
			return err
		}
		defer stand.Close()
		fmt.Println("OpenObserve stand-in listening at", stand.URL())
		env = []string{
			"O2_ENDPOINT=" + stand.URL(),
			"O2_ORGANIZATION_ID=" + org,
			"O2_STREAM=" + stream,
			"O2_AUTHORIZATION_HEADER=" + o2test.BasicAuth(o2test.DefaultEmail, o2test.DefaultSecret),
		}
		// Any other O2_* setting in the environment is passed on, e.g.
		// O2_LONG_RUNNING_MS=5000 to watch a long invocation turn periodic.
		for _, kv := range os.Environ() {
			if strings.HasPrefix(kv, "O2_") && !slices.ContainsFunc(env, func(s string) bool {
				return strings.SplitN(s, "=", 2)[0] == strings.SplitN(kv, "=", 2)[0]
			}) {
				env = append(env, kv)
			}
		}
	}
	if *strategy != "" {
		env = append(env, "O2_FLUSH_STRATEGY="+*strategy)
	}
	opts := lambdatest.Options{Extensions: []string{bin}, Env: env, LogFormat: *format, FunctionName: "demo-function",
		FunctionTimeout: max(3*time.Second, *duration+2*time.Second)}
	if *verbose {
		opts.Output = os.Stdout
	}
	p, err := lambdatest.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer p.Close()

	marker := fmt.Sprintf("demo-%d", time.Now().UnixNano())
	fmt.Printf("running %d invocations of %d lines ...\n", *invocations, *lines)
	rep, err := p.Run(ctx, lambdatest.Scenario{
		Invocations: *invocations, Rate: *rate, Gap: *gap,
		Lines: *lines, LineSize: *lineSize, Duration: *duration, Marker: marker,
	})
	if err != nil {
		return err
	}
	sd, err := p.Shutdown(ctx, "spindown")
	if err != nil {
		return err
	}
	st := p.Stats()

	fmt.Println()
	fmt.Println("invocation  held after the runtime finished")
	for i, inv := range rep.Invocations {
		if i < 10 || i == len(rep.Invocations)-1 {
			fmt.Printf("  %4d      %v\n", i, inv.PostRuntimeOverhead.Round(10*time.Microsecond))
		} else if i == 10 {
			fmt.Println("   ...")
		}
	}
	fmt.Printf("post-runtime overhead: p50 %v, p99 %v, max %v\n", rep.OverheadP50.Round(10*time.Microsecond),
		rep.OverheadP99.Round(10*time.Microsecond), rep.OverheadMax.Round(10*time.Microsecond))
	fmt.Printf("extension: init (start to first /next) %v, peak RSS %.1f MB, CPU %.3f s (%.2f ms per invocation)\n",
		st.InitDuration.Round(10*time.Microsecond), float64(st.PeakRSSBytes)/(1<<20), st.CPUSeconds,
		1000*st.CPUSeconds/float64(max(len(rep.Invocations), 1)))
	fmt.Printf("shutdown: %v, deadline met: %v, exit codes %v\n", sd.Duration.Round(time.Millisecond), sd.DeadlineMet, sd.ExitCodes)

	if stand == nil {
		fmt.Println("\nquery OpenObserve for the lines with:", fmt.Sprintf("SELECT * FROM \"<stream>\" WHERE str_match(record, '%s')", marker))
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
	fmt.Printf("\nOpenObserve received %d records in %d requests:\n", len(recs), stand.Calls())
	names := make([]string, 0, len(types))
	for t := range types {
		names = append(names, t)
	}
	sort.Strings(names)
	for _, t := range names {
		fmt.Printf("  %-28s %d\n", t, types[t])
	}
	if otlpReqs := stand.OTLPRequests(); len(otlpReqs) > 0 {
		fmt.Printf("  OTLP: %d data points and %d spans in %d requests\n", len(stand.Metrics()), len(stand.Spans()), len(otlpReqs))
	}
	fmt.Printf("function lines: %d printed, %d lost, %d duplicated\n", len(rep.Lines), lost, dup)
	if lat := lambdatest.Latencies(p.Events(), stand.Arrivals(), marker); len(lat) > 0 {
		fmt.Printf("end-to-end latency (printed to received by OpenObserve): p50 %v, p99 %v, max %v\n",
			lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)*99/100].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	}
	if len(recs) > 0 {
		for _, r := range recs {
			if r["type"] == "function" {
				fmt.Printf("a stored function record: %v\n", r)
				break
			}
		}
	}
	return nil
}
