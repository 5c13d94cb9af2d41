package otlpreceiver

import (
	coltracepb "go.opentelemetry.io/proto/slim/otlp/collector/trace/v1"
	logspb "go.opentelemetry.io/proto/slim/otlp/logs/v1"
	metricspb "go.opentelemetry.io/proto/slim/otlp/metrics/v1"
	tracepb "go.opentelemetry.io/proto/slim/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	collogspb "go.opentelemetry.io/proto/slim/otlp/collector/logs/v1"
	colmetricspb "go.opentelemetry.io/proto/slim/otlp/collector/metrics/v1"
)

// Splitting a request that is larger than one OpenObserve request may be.
//
// An Export…ServiceRequest is a list of resources, each a list of scopes,
// each a list of items (spans, log records, metrics; a metric is a list of
// data points). Protobuf messages merge when their encodings are
// concatenated: the client concatenates the bodies it sends together, and
// a request cut into several whose resources and scopes are repeated in
// each says the same as the whole. So a request too large is cut at the
// highest level that can be cut: whole resources while they fit, a
// resource too large alone into copies of it with some of its scopes each,
// a scope into copies with some of its items, and a metric into copies
// with some of its points. An item too large for a request even alone is
// dropped and counted: it could never be delivered (the client sends no
// body over its bound), and keeping it would only cost buffer room.
//
// Sizes are exact where that is cheap: proto.Size of what is kept, plus
// what each child costs as a field of its parent (a one-byte tag, as every
// field cut here is numbered below 16, then its length as a varint). The
// wrappers whose length is not known until they are filled are allowed
// the largest varint the bound can need.

// entrySize is what a child message of n bytes costs as a field of its
// parent.
func entrySize(n int) int { return 1 + protowire.SizeVarint(uint64(n)) + n }

// childBudget is the room left for the children of a piece built on
// shell (the parent without its children) when the piece, as a field of
// its own parent, may cost at most limit bytes. Two varints of the limit
// are kept back: the piece's own length, and that of a wrapper between it
// and its children (a metric's gauge or sum).
func childBudget(shell proto.Message, limit int) int {
	return limit - 1 - 2*protowire.SizeVarint(uint64(limit)) - proto.Size(shell)
}

// fit packs kids, in order, into groups whose field encodings add up to at
// most budget bytes. A kid too large for a group of its own is cut by
// split into pieces that each fit, or, at the lowest level (split nil),
// dropped. It returns the groups and how many items were dropped; items
// counts the items of a kid.
func fit[K proto.Message](kids []K, budget int, split func(K, int) ([]K, int), items func(K) int) (groups [][]K, dropped int) {
	var cur []K
	used := 0
	add := func(k K, size int) {
		if len(cur) > 0 && used+size > budget {
			groups = append(groups, cur)
			cur, used = nil, 0
		}
		cur = append(cur, k)
		used += size
	}
	for _, k := range kids {
		if size := entrySize(proto.Size(k)); size <= budget {
			add(k, size)
			continue
		}
		if split == nil || budget <= 0 {
			dropped += items(k)
			continue
		}
		pieces, d := split(k, budget)
		dropped += d
		for _, p := range pieces {
			add(p, entrySize(proto.Size(p)))
		}
	}
	if len(cur) > 0 {
		groups = append(groups, cur)
	}
	return groups, dropped
}

func one[K any](K) int { return 1 }

// splitTraces cuts req into requests of at most max bytes each; see above.
func splitTraces(req *coltracepb.ExportTraceServiceRequest, max int) ([]proto.Message, int) {
	groups, dropped := fit(req.GetResourceSpans(), max, splitResourceSpans, resourceSpanCount)
	out := make([]proto.Message, len(groups))
	for i, g := range groups {
		out[i] = &coltracepb.ExportTraceServiceRequest{ResourceSpans: g}
	}
	return out, dropped
}

func splitResourceSpans(rs *tracepb.ResourceSpans, limit int) ([]*tracepb.ResourceSpans, int) {
	shell := func(ss []*tracepb.ScopeSpans) *tracepb.ResourceSpans {
		return &tracepb.ResourceSpans{Resource: rs.GetResource(), SchemaUrl: rs.GetSchemaUrl(), ScopeSpans: ss}
	}
	groups, dropped := fit(rs.GetScopeSpans(), childBudget(shell(nil), limit), splitScopeSpans, scopeSpanCount)
	out := make([]*tracepb.ResourceSpans, len(groups))
	for i, g := range groups {
		out[i] = shell(g)
	}
	return out, dropped
}

func splitScopeSpans(ss *tracepb.ScopeSpans, limit int) ([]*tracepb.ScopeSpans, int) {
	shell := func(spans []*tracepb.Span) *tracepb.ScopeSpans {
		return &tracepb.ScopeSpans{Scope: ss.GetScope(), SchemaUrl: ss.GetSchemaUrl(), Spans: spans}
	}
	groups, dropped := fit(ss.GetSpans(), childBudget(shell(nil), limit), nil, one)
	out := make([]*tracepb.ScopeSpans, len(groups))
	for i, g := range groups {
		out[i] = shell(g)
	}
	return out, dropped
}

func resourceSpanCount(rs *tracepb.ResourceSpans) int {
	n := 0
	for _, ss := range rs.GetScopeSpans() {
		n += scopeSpanCount(ss)
	}
	return n
}

func scopeSpanCount(ss *tracepb.ScopeSpans) int { return len(ss.GetSpans()) }

// splitLogs cuts req into requests of at most max bytes each.
func splitLogs(req *collogspb.ExportLogsServiceRequest, max int) ([]proto.Message, int) {
	groups, dropped := fit(req.GetResourceLogs(), max, splitResourceLogs, resourceLogCount)
	out := make([]proto.Message, len(groups))
	for i, g := range groups {
		out[i] = &collogspb.ExportLogsServiceRequest{ResourceLogs: g}
	}
	return out, dropped
}

func splitResourceLogs(rl *logspb.ResourceLogs, limit int) ([]*logspb.ResourceLogs, int) {
	shell := func(sl []*logspb.ScopeLogs) *logspb.ResourceLogs {
		return &logspb.ResourceLogs{Resource: rl.GetResource(), SchemaUrl: rl.GetSchemaUrl(), ScopeLogs: sl}
	}
	groups, dropped := fit(rl.GetScopeLogs(), childBudget(shell(nil), limit), splitScopeLogs, scopeLogCount)
	out := make([]*logspb.ResourceLogs, len(groups))
	for i, g := range groups {
		out[i] = shell(g)
	}
	return out, dropped
}

func splitScopeLogs(sl *logspb.ScopeLogs, limit int) ([]*logspb.ScopeLogs, int) {
	shell := func(recs []*logspb.LogRecord) *logspb.ScopeLogs {
		return &logspb.ScopeLogs{Scope: sl.GetScope(), SchemaUrl: sl.GetSchemaUrl(), LogRecords: recs}
	}
	groups, dropped := fit(sl.GetLogRecords(), childBudget(shell(nil), limit), nil, one)
	out := make([]*logspb.ScopeLogs, len(groups))
	for i, g := range groups {
		out[i] = shell(g)
	}
	return out, dropped
}

func resourceLogCount(rl *logspb.ResourceLogs) int {
	n := 0
	for _, sl := range rl.GetScopeLogs() {
		n += scopeLogCount(sl)
	}
	return n
}

func scopeLogCount(sl *logspb.ScopeLogs) int { return len(sl.GetLogRecords()) }

// splitMetrics cuts req into requests of at most max bytes each; a metric
// too large alone is cut into copies with some of its data points each.
func splitMetrics(req *colmetricspb.ExportMetricsServiceRequest, max int) ([]proto.Message, int) {
	groups, dropped := fit(req.GetResourceMetrics(), max, splitResourceMetrics, resourcePointCount)
	out := make([]proto.Message, len(groups))
	for i, g := range groups {
		out[i] = &colmetricspb.ExportMetricsServiceRequest{ResourceMetrics: g}
	}
	return out, dropped
}

func splitResourceMetrics(rm *metricspb.ResourceMetrics, limit int) ([]*metricspb.ResourceMetrics, int) {
	shell := func(sm []*metricspb.ScopeMetrics) *metricspb.ResourceMetrics {
		return &metricspb.ResourceMetrics{Resource: rm.GetResource(), SchemaUrl: rm.GetSchemaUrl(), ScopeMetrics: sm}
	}
	groups, dropped := fit(rm.GetScopeMetrics(), childBudget(shell(nil), limit), splitScopeMetrics, scopePointCount)
	out := make([]*metricspb.ResourceMetrics, len(groups))
	for i, g := range groups {
		out[i] = shell(g)
	}
	return out, dropped
}

func splitScopeMetrics(sm *metricspb.ScopeMetrics, limit int) ([]*metricspb.ScopeMetrics, int) {
	shell := func(ms []*metricspb.Metric) *metricspb.ScopeMetrics {
		return &metricspb.ScopeMetrics{Scope: sm.GetScope(), SchemaUrl: sm.GetSchemaUrl(), Metrics: ms}
	}
	groups, dropped := fit(sm.GetMetrics(), childBudget(shell(nil), limit), splitMetric, metricPointCount)
	out := make([]*metricspb.ScopeMetrics, len(groups))
	for i, g := range groups {
		out[i] = shell(g)
	}
	return out, dropped
}

// splitMetric cuts a metric into copies of it (name, unit, type, temporality)
// with some of its data points each. A metric without data points that is
// still too large (its metadata alone) is dropped, counting nothing: it
// holds no data point.
func splitMetric(m *metricspb.Metric, limit int) ([]*metricspb.Metric, int) {
	base := func() *metricspb.Metric {
		return &metricspb.Metric{Name: m.GetName(), Description: m.GetDescription(), Unit: m.GetUnit(), Metadata: m.GetMetadata()}
	}
	switch d := m.GetData().(type) {
	case *metricspb.Metric_Gauge:
		return splitPoints(d.Gauge.GetDataPoints(), limit, func(p []*metricspb.NumberDataPoint) *metricspb.Metric {
			x := base()
			x.Data = &metricspb.Metric_Gauge{Gauge: &metricspb.Gauge{DataPoints: p}}
			return x
		})
	case *metricspb.Metric_Sum:
		return splitPoints(d.Sum.GetDataPoints(), limit, func(p []*metricspb.NumberDataPoint) *metricspb.Metric {
			x := base()
			x.Data = &metricspb.Metric_Sum{Sum: &metricspb.Sum{DataPoints: p,
				AggregationTemporality: d.Sum.GetAggregationTemporality(), IsMonotonic: d.Sum.GetIsMonotonic()}}
			return x
		})
	case *metricspb.Metric_Histogram:
		return splitPoints(d.Histogram.GetDataPoints(), limit, func(p []*metricspb.HistogramDataPoint) *metricspb.Metric {
			x := base()
			x.Data = &metricspb.Metric_Histogram{Histogram: &metricspb.Histogram{DataPoints: p,
				AggregationTemporality: d.Histogram.GetAggregationTemporality()}}
			return x
		})
	case *metricspb.Metric_ExponentialHistogram:
		return splitPoints(d.ExponentialHistogram.GetDataPoints(), limit, func(p []*metricspb.ExponentialHistogramDataPoint) *metricspb.Metric {
			x := base()
			x.Data = &metricspb.Metric_ExponentialHistogram{ExponentialHistogram: &metricspb.ExponentialHistogram{DataPoints: p,
				AggregationTemporality: d.ExponentialHistogram.GetAggregationTemporality()}}
			return x
		})
	case *metricspb.Metric_Summary:
		return splitPoints(d.Summary.GetDataPoints(), limit, func(p []*metricspb.SummaryDataPoint) *metricspb.Metric {
			x := base()
			x.Data = &metricspb.Metric_Summary{Summary: &metricspb.Summary{DataPoints: p}}
			return x
		})
	}
	return nil, 0
}

// splitPoints cuts a metric's points into groups, each made into a metric
// by wrap.
func splitPoints[P proto.Message](pts []P, limit int, wrap func([]P) *metricspb.Metric) ([]*metricspb.Metric, int) {
	groups, dropped := fit(pts, childBudget(wrap(nil), limit), nil, one)
	out := make([]*metricspb.Metric, len(groups))
	for i, g := range groups {
		out[i] = wrap(g)
	}
	return out, dropped
}

func resourcePointCount(rm *metricspb.ResourceMetrics) int {
	n := 0
	for _, sm := range rm.GetScopeMetrics() {
		n += scopePointCount(sm)
	}
	return n
}

func scopePointCount(sm *metricspb.ScopeMetrics) int {
	n := 0
	for _, m := range sm.GetMetrics() {
		n += metricPointCount(m)
	}
	return n
}

// metricPointCount is the number of data points of m, whatever its type.
func metricPointCount(m *metricspb.Metric) int {
	switch d := m.GetData().(type) {
	case *metricspb.Metric_Gauge:
		return len(d.Gauge.GetDataPoints())
	case *metricspb.Metric_Sum:
		return len(d.Sum.GetDataPoints())
	case *metricspb.Metric_Histogram:
		return len(d.Histogram.GetDataPoints())
	case *metricspb.Metric_ExponentialHistogram:
		return len(d.ExponentialHistogram.GetDataPoints())
	case *metricspb.Metric_Summary:
		return len(d.Summary.GetDataPoints())
	}
	return 0
}
