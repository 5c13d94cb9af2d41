package otlpreceiver

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/o2-extension/o2-extension/internal/telemetry"
)

// BenchmarkExport is the receiver's CPU for one SDK export of 512 spans
// (the batch span processor's default batch), each with a few attributes:
// protobuf as sent, gzipped protobuf, and OTLP JSON. ns/span is the
// handler's own cost per span, buffering included.
//
//	go test -run '^$' -bench Export ./internal/otlpreceiver
func BenchmarkExport(b *testing.B) {
	req := traces(1, 1, 512, 40)
	plain := mustMarshal(req)
	for _, tc := range []struct {
		name, contentType, encoding string
		body                        []byte
	}{
		{"protobuf", contentTypeProto, "", plain},
		{"protobuf-gzip", contentTypeProto, "gzip", gz(plain)},
		{"json", contentTypeJSON, "", hexJSON(b, req)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			buf := telemetry.NewBuffer(64 << 20)
			r := newReceiver(Options{Buffer: buf})
			b.SetBytes(int64(len(tc.body)))
			b.ReportAllocs()
			for b.Loop() {
				hr := httptest.NewRequest(http.MethodPost, "/v1/traces", bytes.NewReader(tc.body))
				hr.Header.Set("Content-Type", tc.contentType)
				if tc.encoding != "" {
					hr.Header.Set("Content-Encoding", tc.encoding)
				}
				rec := httptest.NewRecorder()
				r.ServeHTTP(rec, hr)
				if rec.Code != http.StatusOK {
					b.Fatalf("status %d", rec.Code)
				}
				buf.Take(1<<30, 1<<40)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/512, "ns/span")
		})
	}
}
