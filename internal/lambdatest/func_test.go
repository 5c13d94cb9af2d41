package lambdatest

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

// TestFuncHook checks the Invocation.Func hook with an in-process
// extension: it runs after the invocation's lines and before
// platform.runtimeDone, with the request id, deadline and X-Ray header of
// the INVOKE the extension got, in an environment carrying
// _X_AMZN_TRACE_ID; a failing Func ends the invocation with status
// "error" and Invoke says so; without tracing the header is empty.
func TestFuncHook(t *testing.T) {
	p := startInProcess(t, Options{Env: []string{"O2_X=1"}})
	c := mustRegister(t, p, "ext", "INVOKE", "SHUTDOWN")
	invokes := make(chan nextEvent, 8)
	c.runLoop(t, func(ev nextEvent) {
		if ev.EventType == "INVOKE" {
			invokes <- ev
		}
	})
	if err := p.CompleteInit(t.Context(), 1); err != nil {
		t.Fatal(err)
	}

	// runs plays one invocation whose Func records what it saw and
	// returns ret.
	type seen struct {
		info            FuncInfo
		started, lineIn bool // platform.start and the line came before Func
		doneBefore      bool // platform.runtimeDone came before Func
		hasDeadline     bool
	}
	run := func(inv Invocation, ret error) (seen, InvokeResult, error) {
		var s seen
		inv.Lines = []string{"line of " + inv.RequestID}
		inv.Func = func(ctx context.Context, info FuncInfo) error {
			s.info = info
			evs := p.Events()
			s.started = has(evs, "platform.start", inv.RequestID)
			s.doneBefore = has(evs, "platform.runtimeDone", inv.RequestID)
			s.lineIn = slices.ContainsFunc(evs, func(ev Event) bool {
				var text string
				return ev.Type == "function" && json.Unmarshal(ev.Record, &text) == nil && text == inv.Lines[0]
			})
			dl, ok := ctx.Deadline()
			s.hasDeadline = ok && dl.Equal(info.Deadline)
			return ret
		}
		res, err := p.Invoke(t.Context(), inv)
		return s, res, err
	}

	id := newUUID()
	s, _, err := run(Invocation{RequestID: id}, nil)
	if err != nil {
		t.Fatalf("invoke: %v", err)
	}
	ev := <-invokes
	if s.info.RequestID != id || ev.RequestID != id {
		t.Errorf("request ids: Func %q, INVOKE %q, want %q", s.info.RequestID, ev.RequestID, id)
	}
	if ev.Tracing == nil || s.info.TraceHeader != ev.Tracing.Value || s.info.TraceHeader == "" {
		t.Errorf("trace header = %q, INVOKE tracing %+v", s.info.TraceHeader, ev.Tracing)
	}
	if s.info.Deadline.UnixMilli() != ev.DeadlineMs {
		t.Errorf("deadline = %v, INVOKE deadlineMs %d", s.info.Deadline, ev.DeadlineMs)
	}
	if !s.hasDeadline {
		t.Error("Func's ctx does not end at the deadline")
	}
	if !s.started || !s.lineIn || s.doneBefore {
		t.Errorf("Func ran with platform.start %v, its line %v, runtimeDone %v; want true, true, false", s.started, s.lineIn, s.doneBefore)
	}
	for _, kv := range []string{"_X_AMZN_TRACE_ID=" + ev.Tracing.Value, "_HANDLER=index.handler", "AWS_LAMBDA_FUNCTION_NAME=test-function", "O2_X=1"} {
		if !slices.Contains(s.info.Env, kv) {
			t.Errorf("Func's env lacks %s: %q", kv, s.info.Env)
		}
	}
	if s.info.FunctionARN != ev.InvokedFunctionArn {
		t.Errorf("ARN = %q, INVOKE %q", s.info.FunctionARN, ev.InvokedFunctionArn)
	}

	// A failing handler: status error, and Invoke reports it after the
	// invocation completed (the report exists).
	id = newUUID()
	boom := errors.New("boom")
	_, _, err = run(Invocation{RequestID: id, ErrorType: "Runtime.HandlerError"}, boom)
	if !errors.Is(err, ErrFunctionFailed) || !errors.Is(err, boom) {
		t.Fatalf("invoke with a failing Func: err = %v, want ErrFunctionFailed and boom", err)
	}
	<-invokes
	var done platformRecordT
	for _, e := range p.Events() {
		if e.Type == "platform.runtimeDone" && e.RequestID() == id {
			_ = json.Unmarshal(e.Record, &done)
		}
	}
	if done.Status != "error" || done.ErrorType != "Runtime.HandlerError" {
		t.Errorf("runtimeDone of a failing Func = %+v, want error Runtime.HandlerError", done)
	}
	if !has(p.Events(), "platform.report", id) {
		t.Error("no platform.report after a failing Func")
	}

	// Without tracing.
	s, _, err = run(Invocation{RequestID: newUUID(), NoTrace: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	<-invokes
	if s.info.TraceHeader != "" || slices.ContainsFunc(s.info.Env, func(kv string) bool { return strings.HasPrefix(kv, "_X_AMZN_TRACE_ID=") }) {
		t.Errorf("NoTrace: header %q, env %q", s.info.TraceHeader, s.info.Env)
	}
}

// platformRecordT is what TestFuncHook reads of runtimeDone.
type platformRecordT struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
}
