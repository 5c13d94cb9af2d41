package tenant

import (
	"encoding/json"
	"strconv"
	"time"
)

// RecordMessage is the "message" of every produced record, as the Customer
// Memory Report extension writes it.
const RecordMessage = "Customer memory report"

// timestampFormat is RFC 3339 in UTC with milliseconds, like the
// Telemetry API's own times.
const timestampFormat = "2006-01-02T15:04:05.000Z07:00"

// report is what a platform.report contributes to a record. The metrics
// are kept as the JSON number text Lambda sent (empty when absent), so
// they are copied out exactly and never reformatted.
type report struct {
	at               time.Time
	memoryUsedMB     json.Number
	memorySizeMB     json.Number
	durationMs       json.Number
	billedDurationMs json.Number
}

// reportFields is the part of a platform.report record read here.
type reportFields struct {
	RequestID string `json:"requestId"`
	Metrics   struct {
		DurationMs       json.Number `json:"durationMs"`
		BilledDurationMs json.Number `json:"billedDurationMs"`
		MemorySizeMB     json.Number `json:"memorySizeMB"`
		MaxMemoryUsedMB  json.Number `json:"maxMemoryUsedMB"`
	} `json:"metrics"`
}

// parseReport reads a platform.report record generated at at.
func parseReport(rec []byte, at time.Time) (string, report, bool) {
	var f reportFields
	if len(rec) == 0 || rec[0] != '{' || json.Unmarshal(rec, &f) != nil || f.RequestID == "" {
		return "", report{}, false
	}
	return f.RequestID, report{
		at:               at,
		memoryUsedMB:     f.Metrics.MaxMemoryUsedMB,
		memorySizeMB:     f.Metrics.MemorySizeMB,
		durationMs:       f.Metrics.DurationMs,
		billedDurationMs: f.Metrics.BilledDurationMs,
	}, true
}

// appendRecord appends the record of one matched request: a flat JSON
// object whose keys become top-level fields in OpenObserve. A metric the
// report lacks (Managed Instances reports carry only durationMs) is left
// out rather than sent as 0, which would read as a measurement.
func (t *Tracker) appendRecord(b []byte, m mark, r report) []byte {
	b = append(b, '{')
	b = appendString(b, t.o.Field)
	b = append(b, ':')
	b = appendString(b, m.tenant)
	b = append(b, `,"message":`...)
	b = appendString(b, RecordMessage)
	b = append(b, `,"requestId":`...)
	b = appendString(b, m.requestID)
	b = appendNumber(b, "memoryUsage", r.memoryUsedMB)
	b = appendNumber(b, "memorySizeMB", r.memorySizeMB)
	b = appendNumber(b, "durationMs", r.durationMs)
	b = appendNumber(b, "billedDurationMs", r.billedDurationMs)
	b = append(b, `,"timestamp":`...)
	b = appendString(b, r.at.UTC().Format(timestampFormat))
	return append(b, '}')
}

// appendEMF appends one CloudWatch Embedded Metric Format line for a
// matched request: the metric (memory used, in megabytes) with the tenant
// as its only dimension, and the request id as a plain property so the
// line can be traced back. See
// https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
func (t *Tracker) appendEMF(b []byte, m mark, r report) []byte {
	b = append(b, `{"_aws":{"Timestamp":`...)
	b = strconv.AppendInt(b, r.at.UnixMilli(), 10)
	b = append(b, `,"CloudWatchMetrics":[{"Namespace":`...)
	b = appendString(b, t.o.EMFNamespace)
	b = append(b, `,"Dimensions":[[`...)
	b = appendString(b, t.o.EMFDimension)
	b = append(b, `]],"Metrics":[{"Name":`...)
	b = appendString(b, t.o.EMFMetric)
	b = append(b, `,"Unit":"Megabytes"}]}]},`...)
	b = appendString(b, t.o.EMFDimension)
	b = append(b, ':')
	b = appendString(b, m.tenant)
	b = append(b, ',')
	b = appendString(b, t.o.EMFMetric)
	b = append(b, ':')
	b = append(b, r.memoryUsedMB...)
	// A property named like the dimension or the metric would make the
	// key ambiguous; the request id is the one to give way.
	if t.o.EMFDimension != "requestId" && t.o.EMFMetric != "requestId" {
		b = append(b, `,"requestId":`...)
		b = appendString(b, m.requestID)
	}
	return append(b, "}\n"...)
}

// appendNumber appends `,"key":n` when n is present.
func appendNumber(b []byte, key string, n json.Number) []byte {
	if n == "" {
		return b
	}
	b = append(b, ',')
	b = appendString(b, key)
	b = append(b, ':')
	return append(b, n...)
}

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // cannot fail for a string
	return append(b, q...)
}
