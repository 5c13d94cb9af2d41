package otlp

import (
	"encoding/json"
	"time"
)

// The record fields of the platform events the builder reads
// (lambda-platform.md §2.3). Numbers are pointers where absence matters.

type lambdaSpan struct {
	Name       string  `json:"name"`
	Start      string  `json:"start"`
	DurationMs float64 `json:"durationMs"`
}

// interval is the span's start and end, ok false when its start is not a
// time.
func (s lambdaSpan) interval() (start, end time.Time, ok bool) {
	t, err := time.Parse(time.RFC3339Nano, s.Start)
	if err != nil {
		return time.Time{}, time.Time{}, false
	}
	return t, t.Add(msDuration(s.DurationMs)), true
}

type tracingField struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

type startRecord struct {
	RequestID string        `json:"requestId"`
	Version   string        `json:"version"`
	Tracing   *tracingField `json:"tracing"`
}

type runtimeDoneRecord struct {
	RequestID string `json:"requestId"`
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Metrics   struct {
		DurationMs    *float64 `json:"durationMs"`
		ProducedBytes *float64 `json:"producedBytes"`
	} `json:"metrics"`
	Spans []lambdaSpan `json:"spans"`
}

type reportRecord struct {
	RequestID string `json:"requestId"`
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Metrics   struct {
		DurationMs        *float64 `json:"durationMs"`
		BilledDurationMs  *float64 `json:"billedDurationMs"`
		MemorySizeMB      *float64 `json:"memorySizeMB"`
		MaxMemoryUsedMB   *float64 `json:"maxMemoryUsedMB"`
		InitDurationMs    *float64 `json:"initDurationMs"`
		RestoreDurationMs *float64 `json:"restoreDurationMs"`
	} `json:"metrics"`
	Spans []lambdaSpan `json:"spans"`
}

type initRecord struct {
	InitializationType string `json:"initializationType"`
	Phase              string `json:"phase"`
	Status             string `json:"status"`
	ErrorType          string `json:"errorType"`
	Metrics            struct {
		DurationMs *float64 `json:"durationMs"`
	} `json:"metrics"`
	Spans []lambdaSpan `json:"spans"`
}

// decode unmarshals an object record into v, reporting success.
func decode(raw json.RawMessage, v any) bool {
	if len(raw) == 0 || raw[0] != '{' {
		return false
	}
	return json.Unmarshal(raw, v) == nil
}

// msDuration converts Lambda's float milliseconds.
func msDuration(ms float64) time.Duration {
	return time.Duration(ms * float64(time.Millisecond))
}
