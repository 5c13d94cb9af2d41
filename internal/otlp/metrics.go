package otlp

import (
	"strconv"
	"strings"
	"time"

	colmetricspb "go.opentelemetry.io/proto/slim/otlp/collector/metrics/v1"
	commonpb "go.opentelemetry.io/proto/slim/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/slim/otlp/metrics/v1"
	"google.golang.org/protobuf/proto"
)

// Metric names. The aws.lambda.enhanced.* names are those of OpenObserve's
// own Lambda layer, which follow Datadog's enhanced metrics, with the same
// units (milliseconds, MB) so that dashboards and alerts built for either
// keep working. The o2_extension.* ones are what those lack.
const (
	MetricDuration          = "aws.lambda.enhanced.duration"
	MetricBilledDuration    = "aws.lambda.enhanced.billed_duration"
	MetricInitDuration      = "aws.lambda.enhanced.init_duration"
	MetricRestoreDuration   = "aws.lambda.enhanced.restore_duration"
	MetricMemorySize        = "aws.lambda.enhanced.memory_size"
	MetricMaxMemoryUsed     = "aws.lambda.enhanced.max_memory_used"
	MetricMemoryUtilization = "aws.lambda.enhanced.memory_utilization"
	MetricInvocations       = "aws.lambda.enhanced.invocations"
	MetricErrors            = "aws.lambda.enhanced.errors"
	MetricTimeouts          = "aws.lambda.enhanced.timeouts"
	MetricOutOfMemory       = "aws.lambda.enhanced.out_of_memory"
	MetricColdStarts        = "aws.lambda.enhanced.cold_starts"

	MetricRuntimeDuration     = "o2_extension.runtime_duration"
	MetricPostRuntimeDuration = "o2_extension.post_runtime_duration"
	MetricResponseLatency     = "o2_extension.response_latency"
	MetricResponseDuration    = "o2_extension.response_duration"
	MetricRuntimeOverhead     = "o2_extension.runtime_overhead"
	MetricProducedBytes       = "o2_extension.produced_bytes"
	MetricInitPhaseDuration   = "o2_extension.init_phase_duration"
	MetricInitErrors          = "o2_extension.init_errors"
)

// Data point attribute keys: few values each (no request id: each value of
// a label is a series of its own in a metrics store).
const (
	// AttrStatus is the invocation's status: success, error, timeout or
	// failure.
	AttrStatus = "status"
	// AttrColdStart is "true" on the first invocation after an init.
	AttrColdStart = "cold_start"
	// AttrInitType is the init phase's initializationType.
	AttrInitType = "initialization_type"
)

// points collects the metrics of one body.
type points struct {
	metrics []*metricspb.Metric
	attrs   []*commonpb.KeyValue
	start   uint64 // the invocation's start, for the counters' interval
	at      uint64
}

func (p *points) gauge(name, unit string, v float64) {
	p.metrics = append(p.metrics, &metricspb.Metric{
		Name: name, Unit: unit,
		Data: &metricspb.Metric_Gauge{Gauge: &metricspb.Gauge{DataPoints: []*metricspb.NumberDataPoint{{
			Attributes: p.attrs, TimeUnixNano: p.at, Value: &metricspb.NumberDataPoint_AsDouble{AsDouble: v},
		}}}},
	})
}

// gaugeOpt adds a gauge when v is known.
func (p *points) gaugeOpt(name, unit string, v *float64) {
	if v != nil {
		p.gauge(name, unit, *v)
	}
}

// counter adds a delta, monotonic sum: the count over the invocation.
func (p *points) counter(name string, n int64) {
	p.metrics = append(p.metrics, &metricspb.Metric{
		Name: name, Unit: "1",
		Data: &metricspb.Metric_Sum{Sum: &metricspb.Sum{
			AggregationTemporality: metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_DELTA,
			IsMonotonic:            true,
			DataPoints: []*metricspb.NumberDataPoint{{
				Attributes: p.attrs, StartTimeUnixNano: p.start, TimeUnixNano: p.at,
				Value: &metricspb.NumberDataPoint_AsInt{AsInt: n},
			}},
		}},
	})
}

// body serializes the collected metrics as one ExportMetricsServiceRequest.
func (b *Builder) metricsBody(p *points) []byte {
	if len(p.metrics) == 0 {
		return nil
	}
	req := &colmetricspb.ExportMetricsServiceRequest{ResourceMetrics: []*metricspb.ResourceMetrics{{
		Resource:     b.resource,
		ScopeMetrics: []*metricspb.ScopeMetrics{{Scope: b.scope, Metrics: p.metrics}},
	}}}
	out, err := proto.Marshal(req)
	if err != nil {
		return nil // only invalid UTF-8 in a string can fail; nothing to send then
	}
	return out
}

// ending is what an invocation's events say about how it ended.
type ending struct {
	Status    string // the report's status, else runtimeDone's, else "success"
	ErrorType string
	Error     bool // status is not success
	Timeout   bool
	// OutOfMemory: the runtime's or the report's error type says so
	// (Runtime.OutOfMemory), or the invocation failed with its peak memory
	// at the configured size. Peak memory at the size alone is not enough:
	// a function that uses all its memory and succeeds did not run out.
	OutOfMemory bool
}

// outcome reads the invocation's end from its report and runtimeDone.
func outcome(rep *reportRecord, done *runtimeDoneRecord) ending {
	o := ending{Status: "success"}
	switch {
	case rep != nil && rep.Status != "":
		o.Status, o.ErrorType = rep.Status, rep.ErrorType
	case done != nil && done.Status != "":
		o.Status, o.ErrorType = done.Status, done.ErrorType
	}
	if o.ErrorType == "" && done != nil {
		o.ErrorType = done.ErrorType
	}
	o.Error = o.Status != "success"
	o.Timeout = o.Status == "timeout"
	oomType := strings.Contains(o.ErrorType, "OutOfMemory") || (done != nil && strings.Contains(done.ErrorType, "OutOfMemory"))
	atLimit := false
	if rep != nil && rep.Metrics.MaxMemoryUsedMB != nil && rep.Metrics.MemorySizeMB != nil {
		atLimit = *rep.Metrics.MemorySizeMB > 0 && *rep.Metrics.MaxMemoryUsedMB >= *rep.Metrics.MemorySizeMB
	}
	o.OutOfMemory = oomType || (o.Error && atLimit)
	return o
}

// postRuntime is the time the extensions added after the runtime was done
// (Lambda's PostRuntimeExtensionsDuration): the report's extensionOverhead
// span when it has one (RAPID emits it), else the report's duration minus
// runtimeDone's (the invoke phase ends when the last extension calls /next,
// the runtime's part ends at runtimeDone), as Datadog derives its
// post_runtime_duration. ok is false when neither is known.
func postRuntime(rep *reportRecord, done *runtimeDoneRecord) (ms float64, ok bool) {
	for _, s := range rep.Spans {
		if s.Name == "extensionOverhead" {
			return s.DurationMs, true
		}
	}
	if rep.Metrics.DurationMs != nil && done != nil && done.Metrics.DurationMs != nil {
		if d := *rep.Metrics.DurationMs - *done.Metrics.DurationMs; d >= 0 {
			return d, true
		}
	}
	return 0, false
}

// invocationMetrics is the metrics body of one invocation at its report.
func (b *Builder) invocationMetrics(inv *invocation, at time.Time, rep *reportRecord) []byte {
	o := outcome(rep, inv.done)
	cold := inv.cold || rep.Metrics.InitDurationMs != nil
	p := &points{
		attrs: []*commonpb.KeyValue{strAttr(AttrStatus, o.Status), strAttr(AttrColdStart, strconv.FormatBool(cold))},
		at:    unixNano(at),
	}
	p.start = unixNano(inv.start)
	if p.start == 0 && rep.Metrics.DurationMs != nil {
		p.start = unixNano(at.Add(-msDuration(*rep.Metrics.DurationMs)))
	}
	m := rep.Metrics
	p.gaugeOpt(MetricDuration, "ms", m.DurationMs)
	p.gaugeOpt(MetricBilledDuration, "ms", m.BilledDurationMs)
	p.gaugeOpt(MetricInitDuration, "ms", m.InitDurationMs)
	p.gaugeOpt(MetricRestoreDuration, "ms", m.RestoreDurationMs)
	p.gaugeOpt(MetricMemorySize, "MBy", m.MemorySizeMB)
	p.gaugeOpt(MetricMaxMemoryUsed, "MBy", m.MaxMemoryUsedMB)
	if m.MemorySizeMB != nil && m.MaxMemoryUsedMB != nil && *m.MemorySizeMB > 0 {
		p.gauge(MetricMemoryUtilization, "1", *m.MaxMemoryUsedMB / *m.MemorySizeMB)
	}
	if ms, ok := postRuntime(rep, inv.done); ok {
		p.gauge(MetricPostRuntimeDuration, "ms", ms)
	}
	if d := inv.done; d != nil {
		p.gaugeOpt(MetricRuntimeDuration, "ms", d.Metrics.DurationMs)
		p.gaugeOpt(MetricProducedBytes, "By", d.Metrics.ProducedBytes)
	}
	// Lambda's own spans: runtimeDone's, or the report's on Managed
	// Instances (which have no runtimeDone).
	spans := rep.Spans
	if inv.done != nil {
		spans = inv.done.Spans
	}
	for _, s := range spans {
		switch s.Name {
		case "responseLatency":
			p.gauge(MetricResponseLatency, "ms", s.DurationMs)
		case "responseDuration":
			p.gauge(MetricResponseDuration, "ms", s.DurationMs)
		case "runtimeOverhead":
			p.gauge(MetricRuntimeOverhead, "ms", s.DurationMs)
		}
	}
	// Every counter on every invocation, zeros included: the streams exist
	// from the first invocation, so that a dashboard or an alert on errors
	// works before the first error.
	p.counter(MetricInvocations, 1)
	p.counter(MetricErrors, b01(o.Error))
	p.counter(MetricTimeouts, b01(o.Timeout))
	p.counter(MetricOutOfMemory, b01(o.OutOfMemory))
	p.counter(MetricColdStarts, b01(cold))
	return b.metricsBody(p)
}

// initMetrics is the metrics body of an init phase at its initReport: how
// long it took and whether it failed, by initialization type. The cold
// start itself is counted on the invocation that waited for it.
func (b *Builder) initMetrics(at time.Time, rec initRecord) []byte {
	status := rec.Status
	if status == "" {
		status = "success"
	}
	p := &points{
		attrs: []*commonpb.KeyValue{strAttr(AttrStatus, status), strAttr(AttrInitType, rec.InitializationType)},
		at:    unixNano(at),
	}
	p.start = p.at
	if rec.Metrics.DurationMs != nil {
		p.gauge(MetricInitPhaseDuration, "ms", *rec.Metrics.DurationMs)
		p.start = unixNano(at.Add(-msDuration(*rec.Metrics.DurationMs)))
	}
	p.counter(MetricInitErrors, b01(status != "success"))
	return b.metricsBody(p)
}

func b01(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
