package lambdatest

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Invocation is what the simulated function does in one invoke.
type Invocation struct {
	// RequestID defaults to a new UUID.
	RequestID string
	// Lines are what the function prints, one function record each.
	Lines []string
	// Duration is how long the function runs; Lines are spread evenly
	// over it.
	Duration time.Duration
	// Level is the level of JSON-format records; default "INFO".
	Level string
	// Outcome is how the function ends: "" (success), "error" (it fails
	// after Duration with ErrorType, default "Runtime.ExitError") or
	// "timeout" (it is still running at the deadline: runtimeDone and the
	// report say timeout, errorType "Sandbox.Timedout"). The reset Lambda
	// makes after a timeout (SHUTDOWN, a new init) is not emulated: the
	// next invocation runs in the same environment.
	Outcome string
	// ErrorType is the errorType of an "error" outcome, e.g.
	// "Runtime.OutOfMemory".
	ErrorType string
	// NoTrace leaves X-Ray tracing out of INVOKE and of the platform events,
	// as for a function without active tracing.
	NoTrace bool
	// Func, when set, is the function's handler: it runs after Lines and
	// Duration, and the runtime is done (platform.runtimeDone) when it
	// returns. Its ctx ends at the function's deadline. An error makes the
	// invocation end with status "error" (ErrorType, default
	// "Runtime.ExitError"), and Invoke return an error wrapping
	// ErrFunctionFailed once the invocation completed.
	Func func(ctx context.Context, info FuncInfo) error
}

// FuncInfo is what the runtime gets from /runtime/invocation/next for one
// invocation, as the Func hook sees it.
type FuncInfo struct {
	// RequestID is Lambda-Runtime-Aws-Request-Id.
	RequestID string
	// Deadline is Lambda-Runtime-Deadline-Ms.
	Deadline time.Time
	// FunctionARN is Lambda-Runtime-Invoked-Function-Arn.
	FunctionARN string
	// TraceHeader is Lambda-Runtime-Trace-Id, which a runtime copies into
	// _X_AMZN_TRACE_ID: "Root=…;Parent=…;Sampled=…", the value of the
	// tracing field of INVOKE and of the platform events; empty with
	// NoTrace.
	TraceHeader string
	// Env is the function process's environment: what Lambda gives the
	// runtime (the extensions' variables plus _HANDLER, LAMBDA_TASK_ROOT
	// and _X_AMZN_TRACE_ID), then Options.Env.
	Env []string
}

// ErrFunctionFailed is wrapped by Invoke's error when Invocation.Func
// returned an error.
var ErrFunctionFailed = errors.New("lambdatest: function failed")

// InvokeResult is what one invocation measured.
type InvokeResult struct {
	RequestID string
	// Start is when INVOKE was sent; RuntimeDone when the function
	// finished (platform.runtimeDone).
	Start, RuntimeDone time.Time
	// Next is when the last extension called /next (zero if one never did;
	// RuntimeDone when no extension is registered for INVOKE).
	Next time.Time
	// PostRuntimeOverhead is Next - RuntimeDone (the extensionOverhead span,
	// Lambda's PostRuntimeExtensionsDuration); when TimedOut, the time
	// waited until the deadline.
	PostRuntimeOverhead time.Duration
	// TimedOut is set when an extension did not call /next before the
	// function deadline.
	TimedOut bool
}

// Invoke runs one invocation: thaw, INVOKE to the extensions registered for
// it, platform.start, the function's records, platform.runtimeDone, wait
// for every extension's /next (bounded by the function timeout), then
// platform.report and freeze. In managed-instances mode invocations may
// run concurrently and nothing freezes. An extension that crashed or
// reported an error during the invocation makes it return an error wrapping
// ErrExtensionFailed, after the invocation completed.
func (p *Platform) Invoke(ctx context.Context, inv Invocation) (InvokeResult, error) {
	managed := p.o.ManagedInstances
	if managed {
		p.opMu.RLock()
		defer p.opMu.RUnlock()
	} else {
		p.opMu.Lock()
		defer p.opMu.Unlock()
	}
	if err := p.CompleteInit(ctx, 0); err != nil {
		return InvokeResult{}, fmt.Errorf("lambdatest: invoke: %w", err)
	}
	p.mu.Lock()
	switch {
	case p.closed:
		p.mu.Unlock()
		return InvokeResult{}, ErrClosed
	case p.shutdown:
		p.mu.Unlock()
		return InvokeResult{}, ErrShutdown
	}
	p.mu.Unlock()
	p.thaw()

	reqID := inv.RequestID
	if reqID == "" {
		reqID = newUUID()
	}
	start := time.Now()
	deadline := start.Add(p.o.FunctionTimeout)
	var trace *tracing
	if !inv.NoTrace {
		trace = &tracing{Type: "X-Amzn-Trace-Id", Value: newTrace(start)}
	}
	// withTrace adds the tracing field to a record when there is one.
	withTrace := func(rec map[string]any) map[string]any {
		if trace != nil {
			rec["tracing"] = trace
		}
		return rec
	}
	status, errorType := "success", ""
	switch inv.Outcome {
	case "", "success":
	case "error":
		status, errorType = "error", inv.ErrorType
		if errorType == "" {
			errorType = "Runtime.ExitError"
		}
	case "timeout":
		status, errorType = "timeout", "Sandbox.Timedout"
	default:
		return InvokeResult{}, fmt.Errorf("lambdatest: invoke: outcome %q: want \"\", \"error\" or \"timeout\"", inv.Outcome)
	}
	res := InvokeResult{RequestID: reqID, Start: start}

	p.mu.Lock()
	var recipients []*extension
	if !managed {
		body, _ := json.Marshal(withTrace(map[string]any{
			"eventType":          "INVOKE",
			"deadlineMs":         deadline.UnixMilli(),
			"requestId":          reqID,
			"invokedFunctionArn": p.o.functionARN(),
		}))
		for _, e := range p.exts {
			if e.invoke && !e.exited && e.failed == "" {
				e.queue = append(e.queue, pendingEvent{body: body, eventID: newUUID()})
				recipients = append(recipients, e)
			}
		}
		p.broadcastLocked()
	}
	p.emitLocked("platform.start", withTrace(map[string]any{
		"requestId": reqID, "version": p.o.FunctionVersion,
	}))
	p.mu.Unlock()

	produced, err := p.runFunction(ctx, inv, reqID, start)
	var funcErr error
	if err == nil && inv.Func != nil {
		info := FuncInfo{RequestID: reqID, Deadline: deadline, FunctionARN: p.o.functionARN()}
		if trace != nil {
			info.TraceHeader = trace.Value
		}
		info.Env = p.functionEnv(info.TraceHeader)
		fctx, fcancel := context.WithDeadline(ctx, deadline)
		funcErr = inv.Func(fctx, info)
		fcancel()
		if ctx.Err() != nil {
			err = ctx.Err()
		} else if funcErr != nil && status == "success" {
			status, errorType = "error", cmp.Or(inv.ErrorType, "Runtime.ExitError")
		}
	}
	if err == nil && status == "timeout" {
		// Still running at the deadline: the function's running time, not a
		// synchronisation.
		err = sleepUntil(ctx, deadline)
	}
	if err != nil {
		return res, fmt.Errorf("lambdatest: invoke %s: %w", reqID, err)
	}
	rtDone := time.Now()
	res.RuntimeDone = rtDone

	p.mu.Lock()
	if !managed {
		// The runtime responded at rtDone; responding and getting back to
		// /next are instantaneous here.
		done := withTrace(map[string]any{
			"requestId": reqID,
			"status":    status,
			"metrics":   map[string]any{"durationMs": ms(rtDone.Sub(start)), "producedBytes": produced},
			"spans": []span{
				newSpan("responseLatency", start, rtDone),
				newSpan("responseDuration", rtDone, rtDone),
				newSpan("runtimeOverhead", rtDone, rtDone),
			},
		})
		if errorType != "" {
			done["errorType"] = errorType
		}
		if status == "timeout" {
			// No response was sent, nor produced.
			done["metrics"] = map[string]any{"durationMs": ms(rtDone.Sub(start))}
			done["spans"] = []span{newSpan("responseLatency", start, rtDone)}
		}
		p.emitLocked("platform.runtimeDone", done)
	}
	dctx, cancel := context.WithDeadline(ctx, deadline)
	werr := p.waitLocked(dctx, func() (bool, error) {
		for _, e := range recipients {
			if !e.idle() {
				return false, nil
			}
		}
		return true, nil
	})
	cancel()
	end := rtDone
	switch {
	case werr == nil:
		res.Next = rtDone
		for _, e := range recipients {
			if !e.exited && e.lastNext.After(res.Next) {
				res.Next = e.lastNext
			}
		}
		// Not negative: after a function timeout the extensions may have
		// called /next before the deadline, as they must.
		res.PostRuntimeOverhead = max(0, res.Next.Sub(rtDone))
		end = res.Next
	case errors.Is(werr, context.DeadlineExceeded) && ctx.Err() == nil:
		res.TimedOut = true
		res.PostRuntimeOverhead = max(0, deadline.Sub(rtDone))
		end = deadline
	default:
		p.mu.Unlock()
		return res, fmt.Errorf("lambdatest: invoke %s: %w", reqID, werr)
	}

	end = latest(end, rtDone) // a function timeout: the extensions were idle before it
	metrics := map[string]any{"durationMs": ms(end.Sub(start))}
	rec := withTrace(map[string]any{"requestId": reqID, "status": status, "metrics": metrics})
	if errorType != "" {
		rec["errorType"] = errorType
	}
	if res.TimedOut {
		rec["status"], rec["errorType"] = "timeout", "Sandbox.Timedout"
	}
	if managed {
		rec["spans"] = []span{
			newSpan("responseLatency", start, rtDone),
			newSpan("responseDuration", rtDone, rtDone),
		}
	} else {
		// The whole invoke phase, extensions included, is what is billed.
		metrics["billedDurationMs"] = int64(math.Ceil(ms(end.Sub(start))))
		metrics["memorySizeMB"] = p.o.MemoryMB
		metrics["maxMemoryUsedMB"] = p.memoryUsedMBLocked()
		if !p.coldReported {
			metrics["initDurationMs"] = ms(p.initDuration)
		}
		rec["spans"] = []span{newSpan("extensionOverhead", rtDone, end)}
	}
	p.coldReported = true
	// platform.report exists only now that every extension called /next,
	// and in the same step the sandbox freezes: it is delivered at the
	// next thaw at the earliest.
	if !managed {
		p.pauseLocked()
	}
	p.emitLocked("platform.report", rec)
	failures := p.failures
	p.failures = nil
	p.mu.Unlock()
	if !managed {
		p.freeze(ctx)
	}
	if len(failures) > 0 {
		return res, errors.Join(fmt.Errorf("%w: %s", ErrExtensionFailed, strings.Join(failures, "; ")), funcFailed(funcErr))
	}
	return res, funcFailed(funcErr)
}

// funcFailed wraps a Func error in ErrFunctionFailed; nil stays nil.
func funcFailed(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrFunctionFailed, err)
}

// runFunction plays the function: its lines spread evenly over
// inv.Duration, then the rest of the duration. It returns the bytes of the
// response ("null").
func (p *Platform) runFunction(ctx context.Context, inv Invocation, reqID string, start time.Time) (int, error) {
	level := inv.Level
	if level == "" {
		level = "INFO"
	}
	n := len(inv.Lines)
	for i, line := range inv.Lines {
		due := start.Add(inv.Duration * time.Duration(i) / time.Duration(n))
		if err := sleepUntil(ctx, due); err != nil {
			return 0, err
		}
		p.mu.Lock()
		var rec json.RawMessage
		if p.o.LogFormat == "json" {
			rec, _ = json.Marshal(map[string]string{
				"timestamp": formatTime(time.Now()),
				"level":     level,
				"requestId": reqID,
				"message":   line,
			})
		} else {
			rec, _ = json.Marshal(line)
		}
		p.emitLocked("function", rec)
		p.mu.Unlock()
	}
	if err := sleepUntil(ctx, start.Add(inv.Duration)); err != nil {
		return 0, err
	}
	return len("null"), nil
}

// sleepUntil waits until t or ctx ends: the simulated function's running
// time, not a synchronisation.
func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// memoryUsedMBLocked is the report's maxMemoryUsedMB: the peak resident
// memory of the extension processes (the simulated function uses none).
func (p *Platform) memoryUsedMBLocked() int64 {
	var total int64
	for _, pr := range p.procs {
		if hwm, err := readVmHWM(pr.pid); err == nil && !pr.exited {
			total += hwm
		} else {
			total += pr.hwm
		}
	}
	return max(1, (total+(1<<20)-1)>>20)
}

// pauseLocked pauses every delivery: the first step of a freeze.
func (p *Platform) pauseLocked() {
	p.paused = true
	for _, e := range p.exts {
		if e.sub != nil {
			e.sub.setPaused(true)
		}
	}
}

// freeze completes a freeze after pauseLocked: every extension process
// group gets SIGSTOP and the call returns once they are stopped. An
// in-process subscriber cannot be stopped, so its in-flight POST is let
// finish instead: nothing reaches it while Frozen() is true.
func (p *Platform) freeze(ctx context.Context) {
	p.mu.Lock()
	var procs []*process
	for _, pr := range p.procs {
		if !pr.exited {
			procs = append(procs, pr)
		}
	}
	var drain []*subscriber
	for _, e := range p.exts {
		if e.sub != nil && e.proc == nil {
			drain = append(drain, e.sub)
		}
	}
	p.mu.Unlock()
	for _, s := range drain {
		_ = s.waitIdle(ctx)
	}
	for _, pr := range procs {
		p.signal(pr, syscall.SIGSTOP)
	}
	for _, pr := range procs {
		p.waitStopped(pr)
		p.sampleRSS(pr)
	}
	p.mu.Lock()
	if p.paused {
		p.frozen = true
	}
	p.mu.Unlock()
}

// thaw resumes the processes (SIGCONT), then deliveries.
func (p *Platform) thaw() {
	p.mu.Lock()
	if !p.paused {
		p.mu.Unlock()
		return
	}
	p.frozen = false
	procs := append([]*process(nil), p.procs...)
	p.mu.Unlock()
	for _, pr := range procs {
		p.signal(pr, syscall.SIGCONT)
	}
	p.mu.Lock()
	p.paused = false
	for _, e := range p.exts {
		if e.sub != nil {
			e.sub.setPaused(false)
		}
	}
	p.broadcastLocked()
	p.mu.Unlock()
}

// ShutdownResult is what Shutdown measured.
type ShutdownResult struct {
	// Duration runs from SHUTDOWN sent to every extension exited.
	Duration time.Duration
	// DeadlineMet is set when every extension exited by the deadline.
	DeadlineMet bool
	// ExitCodes are the started extensions' exit codes, in
	// Options.Extensions order; -1 for a killed one.
	ExitCodes []int
	// Killed is set when an extension was SIGKILLed at the deadline.
	Killed bool
	// Deadline is the SHUTDOWN event's deadlineMs.
	Deadline time.Time
}

// shutdownReasons are the reasons on the wire (lowercase).
var shutdownReasons = []string{"spindown", "timeout", "failure"}

// Shutdown ends the environment: thaw, SHUTDOWN (reason lowercased,
// deadlineMs = now + ShutdownTimeout) to the extensions registered for
// it, deliver what is pending at once, and wait for every extension to
// exit; those still running at the deadline get SIGKILL. Extensions not
// registered for SHUTDOWN are killed at once, as RAPID does. In-process
// extensions exit by calling /next again or through ExtensionExited.
func (p *Platform) Shutdown(ctx context.Context, reason string) (ShutdownResult, error) {
	p.opMu.Lock()
	defer p.opMu.Unlock()
	reason = strings.ToLower(reason)
	if reason == "" {
		reason = "spindown"
	}
	if !slices.Contains(shutdownReasons, reason) {
		return ShutdownResult{}, fmt.Errorf("lambdatest: shutdown reason %q: want one of %v", reason, shutdownReasons)
	}
	p.mu.Lock()
	switch {
	case p.closed:
		p.mu.Unlock()
		return ShutdownResult{}, ErrClosed
	case p.shutdown:
		p.mu.Unlock()
		return ShutdownResult{}, ErrShutdown
	}
	initDone := p.initDone
	p.mu.Unlock()
	if !initDone {
		// An in-process environment that never completed init: do it now
		// so the registered extensions get SHUTDOWN. Its failure does not
		// stop the shutdown.
		_ = p.CompleteInit(ctx, 0)
	}
	p.mu.Lock()
	p.shutdown = true
	p.mu.Unlock()
	p.thaw()

	sent := time.Now()
	deadline := sent.Add(p.o.ShutdownTimeout)
	res := ShutdownResult{Deadline: deadline}
	body, _ := json.Marshal(map[string]any{
		"eventType":      "SHUTDOWN",
		"shutdownReason": reason,
		"deadlineMs":     deadline.UnixMilli(),
	})
	p.mu.Lock()
	var kill []*process
	var waitFor []*extension // in-process extensions that got SHUTDOWN
	for _, e := range p.exts {
		if e.sub != nil {
			// The runtime is gone: the input streams closed, so whatever is
			// buffered ships at once.
			e.sub.flushNow()
		}
		if e.exited {
			continue
		}
		switch {
		case e.shutdown && e.failed == "":
			e.queue = append(e.queue, pendingEvent{body: body, shutdown: true})
			if e.proc == nil {
				waitFor = append(waitFor, e)
			}
		case e.proc != nil:
			kill = append(kill, e.proc)
		}
	}
	for _, pr := range p.procs {
		if pr.ext == nil && !pr.exited {
			kill = append(kill, pr)
		}
	}
	p.broadcastLocked()
	p.mu.Unlock()
	for _, pr := range kill {
		p.kill(pr)
	}

	dctx, cancel := context.WithDeadline(ctx, deadline)
	p.mu.Lock()
	werr := p.waitLocked(dctx, func() (bool, error) {
		for _, pr := range p.procs {
			if !pr.exited {
				return false, nil
			}
		}
		for _, e := range waitFor {
			if !e.exited {
				return false, nil
			}
		}
		return true, nil
	})
	cancel()
	var late []*process
	for _, pr := range p.procs {
		if !pr.exited {
			late = append(late, pr)
		}
	}
	p.mu.Unlock()
	for _, pr := range late {
		p.kill(pr)
	}
	for _, pr := range late {
		<-pr.done
	}

	p.mu.Lock()
	last := sent
	res.DeadlineMet = len(late) == 0
	for _, pr := range p.procs {
		res.ExitCodes = append(res.ExitCodes, pr.exitCode)
		res.Killed = res.Killed || pr.killed
		last = latest(last, pr.exitedAt)
	}
	for _, e := range waitFor {
		if e.exited {
			last = latest(last, e.exitedAt)
		} else {
			res.DeadlineMet = false
			last = latest(last, deadline)
		}
	}
	if last.After(deadline) {
		res.DeadlineMet = false
	}
	res.Duration = last.Sub(sent)
	subs := p.subscribersLocked()
	p.mu.Unlock()
	for _, s := range subs {
		s.close()
	}
	if werr != nil && !errors.Is(werr, context.DeadlineExceeded) || ctx.Err() != nil {
		return res, fmt.Errorf("lambdatest: shutdown: %w", errors.Join(werr, ctx.Err()))
	}
	return res, nil
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// procCPU reads user+system CPU time of a running process from
// /proc/PID/stat (fields 14 and 15, in clock ticks of 1/100 s on Linux).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// Stats is what the first extension cost.
type Stats struct {
	// InitDuration runs from the process start (in-process: Start) to its
	// first /next.
	InitDuration time.Duration
	// PeakRSSBytes is the peak resident memory: the largest VmHWM read
	// from /proc while it ran (sampled every 10 ms, and at each freeze).
	// wait4's Maxrss is not used: it includes the forking process's memory.
	PeakRSSBytes int64
	// CPUSeconds is user+system CPU time, from rusage after exit (or
	// /proc/PID/stat while it runs).
	CPUSeconds float64
}

// Stats returns the first extension's measurements; complete after
// Shutdown.
func (p *Platform) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	var st Stats
	if len(p.procs) > 0 {
		pr := p.procs[0]
		if e := pr.ext; e != nil && !e.firstNext.IsZero() {
			st.InitDuration = e.firstNext.Sub(pr.started)
		}
		st.PeakRSSBytes = pr.hwm
		if pr.exited {
			st.CPUSeconds = pr.cpu.Seconds()
		} else {
			if hwm, err := readVmHWM(pr.pid); err == nil {
				st.PeakRSSBytes = max(st.PeakRSSBytes, hwm)
			}
			st.CPUSeconds = procCPU(pr.pid).Seconds()
		}
		return st
	}
	if len(p.exts) > 0 && !p.exts[0].firstNext.IsZero() {
		st.InitDuration = p.exts[0].firstNext.Sub(p.startAt)
	}
	return st
}
