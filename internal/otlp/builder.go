// Package otlp turns Lambda's platform events into OpenTelemetry metrics
// and traces (OTLP protobuf, the OpenTelemetry project's generated types),
// one metrics body and one trace per invocation, carried through the
// extension's buffer as events of their own types; and it gives every log
// record of an invocation that invocation's trace context.
package otlp

import (
	"time"

	commonpb "go.opentelemetry.io/proto/slim/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/slim/otlp/resource/v1"

	"github.com/o2-extension/o2-extension/internal/telemetry"
)

// Event types of what a Builder produces. The Record of such an event is
// not JSON: it is a serialized ExportMetricsServiceRequest or
// ExportTraceServiceRequest, and the OpenObserve client posts it to
// /v1/metrics or /v1/traces. Protobuf messages concatenate (repeated fields
// append), so the bodies of one signal taken in one batch go out as one
// request.
const (
	MetricsType = "o2-extension.otlp.metrics"
	TracesType  = "o2-extension.otlp.traces"
)

// DefaultMaxInvocations bounds the invocations a Builder remembers.
const DefaultMaxInvocations = 256

// scopeName names the instrumentation scope of everything produced.
const scopeName = "o2-extension"

// Options configure a Builder.
type Options struct {
	// Metrics and Traces turn each signal on.
	Metrics, Traces bool
	// Resource describes the function; it becomes the resource of every
	// metric and span.
	Resource Resource
	// Version is the extension's version, the instrumentation scope's.
	Version string
	// MaxInvocations bounds the request ids remembered for the trace
	// context of late log lines (a callback printing after its invocation
	// ended); 0 means DefaultMaxInvocations.
	MaxInvocations int
}

// Resource is the function the telemetry is about (OpenTelemetry's
// semantic conventions for FaaS and cloud resources).
type Resource struct {
	// ServiceName is service.name: OTEL_SERVICE_NAME, else the function name.
	ServiceName string
	// FunctionName and FunctionVersion are faas.name and faas.version.
	FunctionName, FunctionVersion string
	// Region is cloud.region.
	Region string
	// MemoryMB is the configured memory; faas.max_memory is in bytes, as the
	// conventions define it.
	MemoryMB int
}

// attributes are the resource's attributes, the empty ones left out.
func (r Resource) attributes() []*commonpb.KeyValue {
	kv := []*commonpb.KeyValue{strAttr("cloud.provider", "aws"), strAttr("cloud.platform", "aws_lambda")}
	add := func(k, v string) {
		if v != "" {
			kv = append(kv, strAttr(k, v))
		}
	}
	add("service.name", r.ServiceName)
	add("faas.name", r.FunctionName)
	add("faas.version", r.FunctionVersion)
	add("cloud.region", r.Region)
	if r.MemoryMB > 0 {
		kv = append(kv, intAttr("faas.max_memory", int64(r.MemoryMB)<<20))
	}
	return kv
}

// Builder follows the invocations of one sandbox through their platform
// events. Annotate and Observe must be called from one goroutine (the
// listener's decoding goroutine), Annotate on every event before it is
// buffered, Observe after; they are not safe for concurrent use.
type Builder struct {
	o        Options
	resource *resourcepb.Resource
	scope    *commonpb.InstrumentationScope

	// invs holds the invocations by request id; order is their insertion
	// order, a ring that bounds invs.
	invs  map[string]*invocation
	order []string
	next  int

	// init is the init phase in progress or last seen; coldPending is set
	// from an initStart until the first invocation after it starts.
	init        *initPhase
	coldPending bool
	// pendingInit is the finished init phase whose span waits for the
	// first invocation's trace.
	pendingInit *initPhase
}

// invocation is what is known of one request id.
type invocation struct {
	id      string
	trace   TraceID
	root    SpanID
	parent  SpanID // the X-Ray Parent: the caller's span
	sampled bool
	// traceHex and spanHex are the ids as log records carry them.
	traceHex, spanHex string

	start    time.Time // platform.start's time; zero if not seen
	cold     bool
	init     *initPhase // the init phase before it, for its trace
	done     *runtimeDoneRecord
	doneTime time.Time
	reported bool
}

// initPhase is one init phase (initStart, initRuntimeDone, initReport).
type initPhase struct {
	start, runtimeDone, report time.Time
	typ                        string
	runtimeDoneRec, reportRec  *initRecord
}

// New returns a Builder.
func New(o Options) *Builder {
	if o.MaxInvocations <= 0 {
		o.MaxInvocations = DefaultMaxInvocations
	}
	return &Builder{
		o:        o,
		resource: &resourcepb.Resource{Attributes: o.Resource.attributes()},
		scope:    &commonpb.InstrumentationScope{Name: scopeName, Version: o.Version},
		invs:     make(map[string]*invocation, o.MaxInvocations),
		order:    make([]string, o.MaxInvocations),
	}
}

// Annotate sets ev's TraceID and SpanID to those of its invocation (the
// invocation span's id) when traces are on and ev names a request id:
// function and extension log records, and the platform events of an
// invocation. It is meant for telemetry.Filter.Annotate.
//
// An invocation's trace id is fixed by the first of its events seen. That
// is platform.start, whose tracing field carries the X-Ray header when the
// invocation is traced: Lambda generates platform.start before the runtime
// receives the invocation, so before any line the function prints, and the
// Telemetry API delivers events in order. Should a line come first anyway
// (platform.start dropped in platform.logsDropped), the id is derived from
// the request id (RequestTraceID), the id the invocation would have without
// X-Ray, and then stays, so that logs and spans agree.
func (b *Builder) Annotate(ev *telemetry.Event) {
	if !b.o.Traces || ev.RequestID == "" {
		return
	}
	var inv *invocation
	if ev.Type == "platform.start" {
		inv = b.lookup(ev.RequestID)
		if inv == nil {
			var rec startRecord
			decode(ev.Record, &rec)
			inv = b.add(ev.RequestID, rec.Tracing)
		}
	} else {
		inv = b.get(ev.RequestID)
	}
	ev.TraceID, ev.SpanID = inv.traceHex, inv.spanHex
}

// lookup returns the invocation of id, or nil.
func (b *Builder) lookup(id string) *invocation { return b.invs[id] }

// get returns the invocation of id, remembering a new one if needed.
func (b *Builder) get(id string) *invocation {
	if inv := b.invs[id]; inv != nil {
		return inv
	}
	return b.add(id, nil)
}

// add remembers a new invocation, evicting the oldest beyond the bound. Its
// trace id comes from the X-Ray header in tr when there is one.
func (b *Builder) add(id string, tr *tracingField) *invocation {
	inv := &invocation{id: id, trace: RequestTraceID(id), root: DeriveSpanID(id, "invocation")}
	if tr != nil {
		if x, ok := ParseXRay(tr.Value); ok {
			inv.trace, inv.parent, inv.sampled = x.Trace, x.Parent, x.Sampled
		}
	}
	inv.traceHex, inv.spanHex = inv.trace.String(), inv.root.String()
	if old := b.order[b.next]; old != "" {
		delete(b.invs, old)
	}
	b.order[b.next] = id
	b.next = (b.next + 1) % len(b.order)
	b.invs[id] = inv
	return inv
}

// Observe follows the platform events and returns, when an invocation is
// complete (its platform.report), its metrics and its trace as events of
// MetricsType and TracesType; and at platform.initReport the init phase's
// metrics. now is unused: every time comes from the events. It is meant
// for the extension's Derive hook.
func (b *Builder) Observe(ev *telemetry.Event, _ time.Time) []telemetry.Event {
	if !b.o.Metrics && !b.o.Traces {
		return nil
	}
	switch ev.Type {
	case "platform.initStart":
		var rec initRecord
		decode(ev.Record, &rec)
		b.init = &initPhase{start: ev.Time, typ: rec.InitializationType}
		// Provisioned concurrency initialises ahead of any request: its
		// first invocation does not wait for it.
		b.coldPending = rec.InitializationType != "provisioned-concurrency"
	case "platform.initRuntimeDone":
		var rec initRecord
		if decode(ev.Record, &rec) && b.init != nil {
			b.init.runtimeDone, b.init.runtimeDoneRec = ev.Time, &rec
		}
	case "platform.initReport":
		var rec initRecord
		if !decode(ev.Record, &rec) {
			return nil
		}
		if b.init == nil {
			b.init = &initPhase{typ: rec.InitializationType}
		}
		b.init.report, b.init.reportRec = ev.Time, &rec
		b.pendingInit = b.init
		b.init = nil
		if b.o.Metrics {
			return b.event(MetricsType, ev.Time, b.initMetrics(ev.Time, rec))
		}
	case "platform.start":
		if ev.RequestID == "" {
			return nil
		}
		inv := b.lookup(ev.RequestID)
		if inv == nil {
			// Traces off: no Annotate made it.
			var rec startRecord
			decode(ev.Record, &rec)
			inv = b.add(ev.RequestID, rec.Tracing)
		}
		inv.start = ev.Time
		inv.cold, b.coldPending = b.coldPending, false
		inv.init, b.pendingInit = b.pendingInit, nil
	case "platform.runtimeDone":
		var rec runtimeDoneRecord
		if ev.RequestID == "" || !decode(ev.Record, &rec) {
			return nil
		}
		inv := b.get(ev.RequestID)
		inv.done, inv.doneTime = &rec, ev.Time
	case "platform.report":
		var rec reportRecord
		if ev.RequestID == "" || !decode(ev.Record, &rec) {
			return nil
		}
		inv := b.get(ev.RequestID)
		if inv.reported {
			return nil
		}
		inv.reported = true
		var out []telemetry.Event
		if b.o.Metrics {
			out = append(out, b.event(MetricsType, ev.Time, b.invocationMetrics(inv, ev.Time, &rec))...)
		}
		if b.o.Traces {
			out = append(out, b.event(TracesType, ev.Time, b.invocationTrace(inv, ev.Time, &rec))...)
		}
		// Only the ids are needed from now on (late log lines).
		inv.done, inv.init = nil, nil
		return out
	}
	return nil
}

// event wraps a serialized body; none when it is empty.
func (b *Builder) event(typ string, t time.Time, body []byte) []telemetry.Event {
	if len(body) == 0 {
		return nil
	}
	return []telemetry.Event{{Time: t, Type: typ, Record: body}}
}

// strAttr, intAttr, boolAttr and floatAttr make attributes.
func strAttr(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func intAttr(k string, v int64) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}}
}

func boolAttr(k string, v bool) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: v}}}
}

func floatAttr(k string, v float64) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: v}}}
}

// unixNano is t in OTLP's unsigned nanoseconds; 0 for the zero time.
func unixNano(t time.Time) uint64 {
	if t.IsZero() || t.UnixNano() < 0 {
		return 0
	}
	return uint64(t.UnixNano())
}
