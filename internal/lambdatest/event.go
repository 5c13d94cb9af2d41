package lambdatest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// TimeFormat is the layout of the "time" field of a Telemetry API event and
// of every timestamp inside records: ISO-8601, UTC, milliseconds.
const TimeFormat = "2006-01-02T15:04:05.000Z"

// Event is one telemetry event the platform generated, as a subscriber
// receives it: {"time","type","record"}.
type Event struct {
	// Time is when the platform generated the event.
	Time time.Time
	// Type is the event type as AWS names it ("platform.report", "function", ...).
	Type string
	// Record is the event's record: a JSON string for text log lines, a JSON
	// object for platform events and JSON-format log lines.
	Record json.RawMessage
}

// wireEvent is the JSON shape of an Event on the wire.
type wireEvent struct {
	Time   string          `json:"time"`
	Type   string          `json:"type"`
	Record json.RawMessage `json:"record"`
}

// MarshalJSON encodes the event as the Telemetry API does, with the time in
// UTC and milliseconds.
func (e Event) MarshalJSON() ([]byte, error) {
	rec := e.Record
	if len(rec) == 0 {
		rec = json.RawMessage("null")
	}
	return json.Marshal(wireEvent{Time: formatTime(e.Time), Type: e.Type, Record: rec})
}

// UnmarshalJSON decodes an event in the Telemetry API's wire format.
func (e *Event) UnmarshalJSON(b []byte) error {
	var w wireEvent
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	t, err := time.Parse(time.RFC3339Nano, w.Time)
	if err != nil {
		return fmt.Errorf("event time: %w", err)
	}
	*e = Event{Time: t, Type: w.Type, Record: w.Record}
	return nil
}

// DecodeBatch decodes the body of one delivery POST: a JSON array of events.
func DecodeBatch(body []byte) ([]Event, error) {
	var evs []Event
	if err := json.Unmarshal(body, &evs); err != nil {
		return nil, fmt.Errorf("decode telemetry batch: %w", err)
	}
	return evs, nil
}

// RecordText returns the text of a log record: the string itself for a text
// record, the "message" field of a JSON-format record, and the raw JSON
// otherwise. Tests use it to find scenario lines whatever the log format.
func RecordText(rec json.RawMessage) string {
	rec = bytes.TrimSpace(rec)
	if len(rec) > 0 && rec[0] == '"' {
		var s string
		if json.Unmarshal(rec, &s) == nil {
			return s
		}
	}
	if len(rec) > 0 && rec[0] == '{' {
		var m struct {
			Message *string `json:"message"`
		}
		if json.Unmarshal(rec, &m) == nil && m.Message != nil {
			return *m.Message
		}
	}
	return string(rec)
}

// RequestID returns the record's "requestId" field, or "" when it has none.
func (e Event) RequestID() string {
	var m struct {
		RequestID string `json:"requestId"`
	}
	if len(e.Record) == 0 || e.Record[0] != '{' || json.Unmarshal(e.Record, &m) != nil {
		return ""
	}
	return m.RequestID
}

// category is the subscription type ("platform", "function", "extension")
// an event type belongs to.
func category(typ string) string {
	if strings.HasPrefix(typ, "platform.") {
		return "platform"
	}
	return typ
}

func formatTime(t time.Time) string { return t.UTC().Format(TimeFormat) }

// ms converts a duration to the fractional milliseconds the records carry.
func ms(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}

// span is a record span: {name, start, durationMs}.
type span struct {
	Name       string  `json:"name"`
	Start      string  `json:"start"`
	DurationMs float64 `json:"durationMs"`
}

func newSpan(name string, start, end time.Time) span {
	return span{Name: name, Start: formatTime(start), DurationMs: ms(end.Sub(start))}
}

// tracing is the X-Ray tracing context of INVOKE and of platform records.
type tracing struct {
	SpanID string `json:"spanId,omitempty"`
	Type   string `json:"type"`
	Value  string `json:"value"`
}

// encodeFor renders ev as it is delivered to a subscriber with the given
// schema version: with 2022-07-01, function and extension records are
// always strings, so a JSON-format line is sent as its text.
func encodeFor(schema string, ev Event) []byte {
	if schema == "2022-07-01" && (ev.Type == "function" || ev.Type == "extension") {
		rec := bytes.TrimSpace(ev.Record)
		if len(rec) > 0 && rec[0] != '"' {
			s, _ := json.Marshal(string(rec))
			ev.Record = s
		}
	}
	b, _ := ev.MarshalJSON()
	return b
}
