// Package telemetry receives Lambda Telemetry API events and holds them in a
// bounded buffer until they are flushed.
package telemetry

import (
	"encoding/json"
	"time"
)

// Event is one Telemetry API event, decoded and annotated.
type Event struct {
	// Time is when Lambda generated the event (the event's "time").
	Time time.Time
	// Type is the event type as AWS names it: "function", "extension",
	// "platform.start", "platform.report", ...
	Type string
	// Record is the event's record exactly as received: a JSON string for
	// text log lines, a JSON object for platform events and JSON-format logs.
	Record json.RawMessage
	// RequestID is the record's requestId (or the one in a text line's
	// runtime prefix), else the invocation in progress when the event was
	// received; empty when neither is known.
	RequestID string
	// Level is the log level of a JSON-format log record, or of a text line
	// with a runtime's prefix, when it has one.
	Level string
	// Flat marks an event the extension made itself whose Record object is
	// a complete record: its keys go at the top level of what is sent to
	// OpenObserve instead of under "record".
	Flat bool
	// TraceID and SpanID join a log record to its invocation's trace: the
	// W3C trace id (32 lower-case hex digits) and the invocation span's id
	// (16), set before the event is buffered when traces are on; empty
	// otherwise.
	TraceID, SpanID string
}

// eventOverhead approximates the bytes an event costs beyond its record and
// type: the struct, the timestamp and the enrichment added when it is sent.
const eventOverhead = 96

// Size is the number of bytes the event accounts for in the buffer.
func (e Event) Size() int {
	return len(e.Record) + len(e.Type) + len(e.RequestID) + len(e.Level) + len(e.TraceID) + len(e.SpanID) + eventOverhead
}
