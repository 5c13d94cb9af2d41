package otlpreceiver

import (
	collogspb "go.opentelemetry.io/proto/slim/otlp/collector/logs/v1"
	colmetricspb "go.opentelemetry.io/proto/slim/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/slim/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// signals are the three OTLP signals, indexed by sigTraces, sigMetrics and
// sigLogs. Their messages come from the OpenTelemetry project's generated
// types (the gRPC-free "slim" module): the same wire format as every SDK.
var signals = [numSignals]signal{
	sigTraces: {
		path: "/v1/traces", name: "traces", eventType: TracesType, items: "spans",
		newRequest: func() proto.Message { return &coltracepb.ExportTraceServiceRequest{} },
		count: func(m proto.Message) int {
			n := 0
			for _, rs := range m.(*coltracepb.ExportTraceServiceRequest).GetResourceSpans() {
				n += resourceSpanCount(rs)
			}
			return n
		},
		split: func(m proto.Message, max int) ([]proto.Message, int) {
			return splitTraces(m.(*coltracepb.ExportTraceServiceRequest), max)
		},
		response: func(rejected int64, msg string) proto.Message {
			r := &coltracepb.ExportTraceServiceResponse{}
			if rejected > 0 {
				r.PartialSuccess = &coltracepb.ExportTracePartialSuccess{RejectedSpans: rejected, ErrorMessage: msg}
			}
			return r
		},
	},
	sigMetrics: {
		path: "/v1/metrics", name: "metrics", eventType: MetricsType, items: "data points",
		newRequest: func() proto.Message { return &colmetricspb.ExportMetricsServiceRequest{} },
		count: func(m proto.Message) int {
			n := 0
			for _, rm := range m.(*colmetricspb.ExportMetricsServiceRequest).GetResourceMetrics() {
				n += resourcePointCount(rm)
			}
			return n
		},
		split: func(m proto.Message, max int) ([]proto.Message, int) {
			return splitMetrics(m.(*colmetricspb.ExportMetricsServiceRequest), max)
		},
		response: func(rejected int64, msg string) proto.Message {
			r := &colmetricspb.ExportMetricsServiceResponse{}
			if rejected > 0 {
				r.PartialSuccess = &colmetricspb.ExportMetricsPartialSuccess{RejectedDataPoints: rejected, ErrorMessage: msg}
			}
			return r
		},
	},
	sigLogs: {
		path: "/v1/logs", name: "logs", eventType: LogsType, items: "log records",
		newRequest: func() proto.Message { return &collogspb.ExportLogsServiceRequest{} },
		count: func(m proto.Message) int {
			n := 0
			for _, rl := range m.(*collogspb.ExportLogsServiceRequest).GetResourceLogs() {
				n += resourceLogCount(rl)
			}
			return n
		},
		split: func(m proto.Message, max int) ([]proto.Message, int) {
			return splitLogs(m.(*collogspb.ExportLogsServiceRequest), max)
		},
		response: func(rejected int64, msg string) proto.Message {
			r := &collogspb.ExportLogsServiceResponse{}
			if rejected > 0 {
				r.PartialSuccess = &collogspb.ExportLogsPartialSuccess{RejectedLogRecords: rejected, ErrorMessage: msg}
			}
			return r
		},
	},
}

// signalIndex is the signal served at path.
func signalIndex(path string) (int, bool) {
	for i := range signals {
		if signals[i].path == path {
			return i, true
		}
	}
	return 0, false
}
