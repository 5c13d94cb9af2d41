package otlp

import (
	"time"

	coltracepb "go.opentelemetry.io/proto/slim/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/slim/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/slim/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// Span names besides Lambda's own (responseLatency, responseDuration,
// runtimeOverhead, extensionOverhead, and the init phase's).
const (
	// SpanInit is the cold start's init phase.
	SpanInit = "init"
	// SpanPostRuntime is the extensions' time after the runtime was done.
	SpanPostRuntime = "postRuntimeExtensions"
)

// invocationTrace is the trace of one invocation at its report:
//
//	<function name> (SERVER: platform.start to runtimeDone; status, faas.invocation_id)
//	├── responseLatency, responseDuration, runtimeOverhead (runtimeDone's spans)
//	├── postRuntimeExtensions (runtimeDone to the end of the invoke phase)
//	└── init (on a cold start: initStart to initRuntimeDone)
//	    └── the initReport's phases, if it lists any
//
// The root's parent is the X-Ray Parent when the invocation is traced, so
// the spans hang under Lambda's own segment and beside the function's.
// The init span precedes its parent in time; it is in this trace because
// this is the invocation that waited for it.
func (b *Builder) invocationTrace(inv *invocation, at time.Time, rep *reportRecord) []byte {
	o := outcome(rep, inv.done)
	name := b.o.Resource.FunctionName
	if name == "" {
		name = "invocation"
	}
	start := inv.start
	if start.IsZero() && rep.Metrics.DurationMs != nil {
		start = at.Add(-msDuration(*rep.Metrics.DurationMs))
	}
	end := inv.doneTime
	if d := inv.done; d != nil && d.Metrics.DurationMs != nil && !start.IsZero() {
		end = start.Add(msDuration(*d.Metrics.DurationMs))
	}
	if end.IsZero() && rep.Metrics.DurationMs != nil {
		end = start.Add(msDuration(*rep.Metrics.DurationMs))
	}
	if end.IsZero() {
		end = at
	}
	cold := inv.cold || rep.Metrics.InitDurationMs != nil
	root := &tracepb.Span{
		TraceId: inv.trace[:], SpanId: inv.root[:], Name: name,
		Kind:              tracepb.Span_SPAN_KIND_SERVER,
		StartTimeUnixNano: unixNano(start), EndTimeUnixNano: unixNano(end),
		Attributes: []*commonpb.KeyValue{
			strAttr("faas.invocation_id", inv.id),
			boolAttr("faas.coldstart", cold),
			strAttr("aws.lambda.status", o.Status),
		},
		Status: spanStatus(o),
	}
	if !inv.parent.IsZero() {
		root.ParentSpanId = inv.parent[:]
	}
	if o.ErrorType != "" {
		root.Attributes = append(root.Attributes, strAttr("error.type", o.ErrorType))
	}
	if m := rep.Metrics; m.DurationMs != nil {
		root.Attributes = append(root.Attributes, floatAttr("aws.lambda.duration_ms", *m.DurationMs))
	}
	if m := rep.Metrics; m.BilledDurationMs != nil {
		root.Attributes = append(root.Attributes, floatAttr("aws.lambda.billed_duration_ms", *m.BilledDurationMs))
	}
	if m := rep.Metrics; m.MaxMemoryUsedMB != nil {
		root.Attributes = append(root.Attributes, floatAttr("aws.lambda.max_memory_used_mb", *m.MaxMemoryUsedMB))
	}
	spans := []*tracepb.Span{root}
	child := func(name string, s, e time.Time, parent SpanID) *tracepb.Span {
		sp := &tracepb.Span{
			TraceId: inv.trace[:], SpanId: b.spanID(inv, name), ParentSpanId: parent[:], Name: name,
			Kind:              tracepb.Span_SPAN_KIND_INTERNAL,
			StartTimeUnixNano: unixNano(s), EndTimeUnixNano: unixNano(e),
		}
		spans = append(spans, sp)
		return sp
	}
	lambdaSpans := rep.Spans // Managed Instances: no runtimeDone, its spans are on the report
	if inv.done != nil {
		lambdaSpans = inv.done.Spans
	}
	for _, s := range lambdaSpans {
		if s.Name == "extensionOverhead" {
			continue // the post-runtime span below
		}
		if st, en, ok := s.interval(); ok && s.Name != "" {
			child(s.Name, st, en, inv.root)
		}
	}
	if ms, ok := postRuntime(rep, inv.done); ok {
		st := end
		for _, s := range rep.Spans {
			if t, _, ok := s.interval(); ok && s.Name == "extensionOverhead" {
				st = t
			}
		}
		sp := child(SpanPostRuntime, st, st.Add(msDuration(ms)), inv.root)
		sp.Attributes = []*commonpb.KeyValue{floatAttr("aws.lambda.post_runtime_duration_ms", ms)}
	}
	if ip := inv.init; ip != nil && cold {
		b.initSpans(inv, ip, child)
	}
	req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource:   b.resource,
		ScopeSpans: []*tracepb.ScopeSpans{{Scope: b.scope, Spans: spans}},
	}}}
	out, err := proto.Marshal(req)
	if err != nil {
		return nil
	}
	return out
}

// initSpans adds the init span (and its phases) under the invocation span.
func (b *Builder) initSpans(inv *invocation, ip *initPhase, child func(string, time.Time, time.Time, SpanID) *tracepb.Span) {
	start, end := ip.start, ip.runtimeDone
	rr := ip.reportRec
	if end.IsZero() && rr != nil && rr.Metrics.DurationMs != nil && !start.IsZero() {
		end = start.Add(msDuration(*rr.Metrics.DurationMs))
	}
	if start.IsZero() && rr != nil && rr.Metrics.DurationMs != nil {
		start = ip.report.Add(-msDuration(*rr.Metrics.DurationMs))
	}
	if start.IsZero() || end.IsZero() {
		return
	}
	sp := child(SpanInit, start, end, inv.root)
	status := "success"
	if rr != nil && rr.Status != "" {
		status = rr.Status
	}
	sp.Attributes = []*commonpb.KeyValue{
		strAttr("aws.lambda.initialization_type", ip.typ),
		strAttr("aws.lambda.status", status),
		boolAttr("faas.coldstart", true),
	}
	if rr != nil && rr.Metrics.DurationMs != nil {
		sp.Attributes = append(sp.Attributes, floatAttr("aws.lambda.init_duration_ms", *rr.Metrics.DurationMs))
	}
	if status != "success" {
		sp.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: status}
	}
	initID := SpanID(sp.SpanId)
	// The phases Lambda lists (e.g. runtimeInit), from initReport or else
	// initRuntimeDone.
	var phases []lambdaSpan
	if rr != nil {
		phases = rr.Spans
	}
	if len(phases) == 0 && ip.runtimeDoneRec != nil {
		phases = ip.runtimeDoneRec.Spans
	}
	for _, s := range phases {
		if st, en, ok := s.interval(); ok && s.Name != "" {
			child("init."+s.Name, st, en, initID)
		}
	}
}

// spanID is the id of the named span of inv.
func (b *Builder) spanID(inv *invocation, name string) []byte {
	id := DeriveSpanID(inv.id, name)
	return id[:]
}

// spanStatus is OK for a success, ERROR with the error type otherwise.
func spanStatus(o ending) *tracepb.Status {
	if !o.Error {
		return &tracepb.Status{Code: tracepb.Status_STATUS_CODE_OK}
	}
	msg := o.Status
	if o.ErrorType != "" {
		msg += ": " + o.ErrorType
	}
	return &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: msg}
}
