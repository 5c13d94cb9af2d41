package otlpreceiver

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	collogspb "go.opentelemetry.io/proto/slim/otlp/collector/logs/v1"
	colmetricspb "go.opentelemetry.io/proto/slim/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/slim/otlp/collector/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/o2-extension/o2-extension/internal/telemetry"
)

// FuzzDecode posts arbitrary bodies, as protobuf or JSON, to each signal's
// handler, with a small request bound so that bodies are split and a small
// buffer so that some overflow it.
//
// Invariants, for every body:
//   - nothing panics, and the answer is 200 or 400;
//   - a protobuf body is 200 exactly when it decodes as the signal's
//     request (JSON has its own rule for ids, checked by the unit tests);
//   - after a 400 nothing is buffered;
//   - after a 200 every event is of the signal's type, at most
//     MaxBatchBytes, and decodes; every id in it has its proper length; and
//     the items buffered plus those the partial_success rejects are the
//     items of the body.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{specTraceJSON, specLogsJSON, `{}`, `{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m","gauge":{"dataPoints":[{"asInt":"3"}]}}]}]}]}`} {
		f.Add(uint8(sigTraces), true, []byte(s))
		f.Add(uint8(sigLogs), true, []byte(s))
		f.Add(uint8(sigMetrics), true, []byte(s))
	}
	f.Add(uint8(sigTraces), false, mustMarshal(traces(2, 2, 5, 40)))
	f.Add(uint8(sigTraces), false, []byte{0x0a, 0x02, 0x0a, 0x00})
	f.Add(uint8(sigMetrics), false, []byte{})
	f.Add(uint8(sigLogs), false, []byte{0x0a, 0xff, 0x01})

	const max = 512
	f.Fuzz(func(t *testing.T, which uint8, asJSON bool, body []byte) {
		i := int(which) % numSignals
		sig := &signals[i]
		buf := telemetry.NewBuffer(8 << 10)
		r := newReceiver(Options{Buffer: buf, MaxBatchBytes: max})
		req := httptest.NewRequest(http.MethodPost, sig.path, bytes.NewReader(body))
		ct := contentTypeProto
		if asJSON {
			ct = contentTypeJSON
		}
		req.Header.Set("Content-Type", ct)
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)

		evs := buf.Take(1<<30, 1<<40)
		switch rec.Code {
		case http.StatusBadRequest:
			if len(evs) != 0 {
				t.Fatalf("400 with %d events buffered", len(evs))
			}
			if !asJSON && proto.Unmarshal(body, sig.newRequest()) == nil {
				t.Fatalf("400 for a protobuf body that decodes: %s", rec.Body.Bytes())
			}
			return
		case http.StatusOK:
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body.Bytes())
		}
		sent := sig.newRequest()
		if asJSON {
			if err := unmarshal(body, true, sent); err != nil {
				t.Fatalf("200 for a JSON body that does not decode: %v", err)
			}
		} else if err := proto.Unmarshal(body, sent); err != nil {
			t.Fatalf("200 for a protobuf body that does not decode: %v", err)
		}
		taken := 0
		for _, e := range evs {
			if e.Type != sig.eventType || len(e.Record) > max {
				t.Fatalf("event %q of %d bytes", e.Type, len(e.Record))
			}
			m := sig.newRequest()
			if err := proto.Unmarshal(e.Record, m); err != nil {
				t.Fatalf("buffered record does not decode: %v", err)
			}
			if asJSON {
				checkIDs(t, m)
			}
			taken += sig.count(m)
		}
		resp := sig.response(0, "")
		var err error
		if asJSON {
			err = protojson.Unmarshal(rec.Body.Bytes(), resp)
		} else {
			err = proto.Unmarshal(rec.Body.Bytes(), resp)
		}
		if err != nil {
			t.Fatalf("reply does not decode: %v", err)
		}
		if want := sig.count(sent); taken+int(rejected(resp)) != want {
			t.Fatalf("%d items buffered + %d rejected, want %d", taken, rejected(resp), want)
		}
	})
}

// rejected is a response's partial_success count.
func rejected(m proto.Message) int64 {
	switch r := m.(type) {
	case *coltracepb.ExportTraceServiceResponse:
		return r.GetPartialSuccess().GetRejectedSpans()
	case *colmetricspb.ExportMetricsServiceResponse:
		return r.GetPartialSuccess().GetRejectedDataPoints()
	case *collogspb.ExportLogsServiceResponse:
		return r.GetPartialSuccess().GetRejectedLogRecords()
	}
	return -1
}

// checkIDs fails unless every id of m is empty or of its length. Only for
// JSON bodies: a protobuf body's ids are forwarded as sent, whatever they
// are, for OpenObserve to judge.
func checkIDs(t *testing.T, m proto.Message) {
	t.Helper()
	check := func(b []byte, n int, what string) {
		if len(b) != 0 && len(b) != n {
			t.Fatalf("%s of %d bytes from a JSON body", what, len(b))
		}
	}
	switch req := m.(type) {
	case *coltracepb.ExportTraceServiceRequest:
		for _, rs := range req.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				for _, sp := range ss.GetSpans() {
					check(sp.TraceId, traceIDLen, "trace id")
					check(sp.SpanId, spanIDLen, "span id")
					check(sp.ParentSpanId, spanIDLen, "parent span id")
					for _, l := range sp.GetLinks() {
						check(l.TraceId, traceIDLen, "link trace id")
						check(l.SpanId, spanIDLen, "link span id")
					}
				}
			}
		}
	case *collogspb.ExportLogsServiceRequest:
		for _, rl := range req.GetResourceLogs() {
			for _, sl := range rl.GetScopeLogs() {
				for _, lr := range sl.GetLogRecords() {
					check(lr.TraceId, traceIDLen, "trace id")
					check(lr.SpanId, spanIDLen, "span id")
				}
			}
		}
	case *colmetricspb.ExportMetricsServiceRequest:
		for _, rm := range req.GetResourceMetrics() {
			for _, sm := range rm.GetScopeMetrics() {
				for _, mt := range sm.GetMetrics() {
					for _, ex := range exemplars(mt) {
						check(ex.TraceId, traceIDLen, "exemplar trace id")
						check(ex.SpanId, spanIDLen, "exemplar span id")
					}
				}
			}
		}
	}
}
