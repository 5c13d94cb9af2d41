// Package tenant turns a function's tenant marks and Lambda's
// platform.report events into per-tenant memory records, with the contract
// of the Customer Memory Report extension.
//
// The function prints one log line per invocation naming its tenant, e.g.
// {"message":"customer-memory-report","customerId":"acme"}. Lambda reports
// the invocation's peak memory in platform.report, which is produced only
// after every extension has called /next: it reaches the extension at the
// next thaw or during SHUTDOWN, long after the mark in wall time. A Tracker
// therefore keeps marks (and reports that arrive first) per request id,
// bounded in number and in age, and emits one record when both halves of a
// request have been seen.
package tenant

import (
	"bytes"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/o2-extension/o2-extension/internal/telemetry"
)

// RecordType is the type of the records produced.
const RecordType = "tenant.memory"

// Defaults of Options, those of the Customer Memory Report extension.
const (
	DefaultMessage      = "customer-memory-report"
	DefaultField        = "customerId"
	DefaultMaxPending   = 1000
	DefaultMaxAge       = 15 * time.Minute // Lambda's longest invocation
	DefaultEMFNamespace = "CustomerMemoryReport"
	DefaultEMFMetric    = "CustomerMemoryUsage"
	DefaultEMFDimension = "CustomerId"
)

// Options configure a Tracker. A zero field means its default.
type Options struct {
	// Message is the trigger: a function log whose "message" is exactly
	// this. Default DefaultMessage.
	Message string
	// Field is the log field naming the tenant, and the key of the tenant
	// in the produced records. Default DefaultField.
	Field string
	// MaxPending bounds the marks waiting for their report, and separately
	// the reports waiting for their mark. Past it the oldest entry is
	// evicted; an evicted mark is counted (stats.Evicted). Default
	// DefaultMaxPending.
	MaxPending int
	// MaxAge evicts a mark (counted) or a report that has waited this long
	// for its other half, measured in event time. Default DefaultMaxAge.
	MaxAge time.Duration
	// EMF also writes a CloudWatch Embedded Metric Format line per matched
	// report to EMFOut.
	EMF bool
	// EMFNamespace, EMFMetric and EMFDimension name the CloudWatch
	// namespace, metric and dimension of the EMF lines. Defaults
	// DefaultEMFNamespace, DefaultEMFMetric, DefaultEMFDimension.
	EMFNamespace, EMFMetric, EMFDimension string
	// EMFOut receives the EMF lines, one Write per line. Nil means
	// os.Stdout: Lambda sends an extension's stdout to CloudWatch Logs,
	// where EMF lines become metrics.
	EMFOut io.Writer
}

// withDefaults returns o with every zero field set to its default.
func (o Options) withDefaults() Options {
	if o.Message == "" {
		o.Message = DefaultMessage
	}
	if o.Field == "" {
		o.Field = DefaultField
	}
	if o.MaxPending <= 0 {
		o.MaxPending = DefaultMaxPending
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.EMFNamespace == "" {
		o.EMFNamespace = DefaultEMFNamespace
	}
	if o.EMFMetric == "" {
		o.EMFMetric = DefaultEMFMetric
	}
	if o.EMFDimension == "" {
		o.EMFDimension = DefaultEMFDimension
	}
	if o.EMF && o.EMFOut == nil {
		o.EMFOut = os.Stdout
	}
	return o
}

// stats counts what a Tracker has seen (read by the tests; the summary
// record does not carry them yet).
type stats struct {
	// Marks is the number of tenant marks accepted (trigger, tenant and
	// request id all present).
	Marks uint64
	// Matched is the number of records produced: marks joined with
	// their report.
	Matched uint64
	// Evicted is the number of marks dropped without a report, past
	// MaxPending or MaxAge.
	Evicted uint64
}

// Tracker joins tenant marks with platform.report events. Observe is meant
// to be called from one goroutine (the listener's decoder) but is safe for
// concurrent use; its counters may be read from any goroutine. A nil *Tracker
// observes nothing, so a disabled feature costs a nil check.
type Tracker struct {
	o      Options
	needle []byte // pre-check for trigger lines, see needleFor

	mu      sync.Mutex
	clock   time.Time      // newest event time seen, drives MaxAge
	marks   *table[mark]   // marks waiting for their report
	reports *table[report] // reports waiting for their mark
	buf     []byte         // scratch for EMF lines, reused

	nMarks, nMatched, nEvicted atomic.Uint64
}

// New returns a Tracker configured by o.
func New(o Options) *Tracker {
	o = o.withDefaults()
	return &Tracker{
		o:       o,
		needle:  needleFor(o.Message),
		marks:   newTable[mark](o.MaxPending, o.MaxAge),
		reports: newTable[report](o.MaxPending, o.MaxAge),
	}
}

// Observe looks at one telemetry event received at now. A function log
// whose message is exactly Options.Message and that carries Options.Field
// records a pending mark for its requestId (from the log object, else from
// a runtime's text prefix, else ev.RequestID: the invocation in progress).
// A platform.report for a request with a mark produces one Event of
// RecordType, timed at the report, whose Record is the flat JSON object
// {<Field>, message, requestId, memoryUsage, memorySizeMB, durationMs,
// billedDurationMs, timestamp}. A mark arriving after its report (events
// can be split across batches) matches the kept report.
//
// Ages are measured in event time (ev.Time, else now): a report's time is
// when its invocation ended, so a report delivered hours later, after a
// freeze, still matches; a mark is stale only once events generated more
// than MaxAge after it have been seen.
//
// Every other event costs a type comparison, and a function log a
// substring search; nothing is parsed unless the line contains the
// trigger message.
func (t *Tracker) Observe(ev *telemetry.Event, now time.Time) []telemetry.Event {
	if t == nil || ev == nil {
		return nil
	}
	at := ev.Time
	if at.IsZero() {
		at = now
	}
	switch ev.Type {
	case "function":
		if len(t.needle) > 0 && !bytes.Contains(ev.Record, t.needle) {
			return nil
		}
		m, ok := t.parseMark(ev.Record, ev.RequestID)
		if !ok {
			return nil
		}
		t.nMarks.Add(1)
		return t.addMark(m, at)
	case "platform.report":
		id, r, ok := parseReport(ev.Record, at)
		if !ok {
			return nil
		}
		return t.addReport(id, r)
	}
	return nil
}

// addMark matches m with a kept report, or keeps it.
func (t *Tracker) addMark(m mark, at time.Time) []telemetry.Event {
	t.mu.Lock()
	t.advance(at)
	r, ok := t.reports.take(m.requestID)
	if !ok {
		t.nEvicted.Add(uint64(t.marks.put(m.requestID, at, m)))
	}
	t.expire()
	if !ok {
		t.mu.Unlock()
		return nil
	}
	return t.emitLocked(m, r)
}

// addReport matches r with a pending mark, or keeps it.
func (t *Tracker) addReport(id string, r report) []telemetry.Event {
	t.mu.Lock()
	t.advance(r.at)
	m, ok := t.marks.take(id)
	if !ok {
		// Most reports never meet a mark (a function that names no
		// tenant for some requests); dropping one unmatched is normal,
		// so report evictions are not counted.
		t.reports.put(id, r.at, r)
	}
	t.expire()
	if !ok {
		t.mu.Unlock()
		return nil
	}
	return t.emitLocked(m, r)
}

// advance moves the tracker's clock to at if it is newer.
func (t *Tracker) advance(at time.Time) {
	if at.After(t.clock) {
		t.clock = at
	}
}

// expire drops what has waited longer than MaxAge; only marks are counted.
func (t *Tracker) expire() {
	t.nEvicted.Add(uint64(t.marks.expire(t.clock)))
	t.reports.expire(t.clock)
}

// emitLocked builds the record of a matched request, writes its EMF line
// when enabled and unlocks t.mu.
func (t *Tracker) emitLocked(m mark, r report) []telemetry.Event {
	t.nMatched.Add(1)
	if t.o.EMF && r.memoryUsedMB != "" {
		t.buf = t.appendEMF(t.buf[:0], m, r)
		// Written under the lock so lines never interleave; the error
		// is dropped because there is nowhere to report it per event
		// (logging it would come back as an "extension" event).
		_, _ = t.o.EMFOut.Write(t.buf)
	}
	t.mu.Unlock()
	return []telemetry.Event{{
		Time:      r.at,
		Type:      RecordType,
		Record:    t.appendRecord(nil, m, r),
		RequestID: m.requestID,
		Flat:      true,
	}}
}
