package openobserve_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/o2-extension/o2-extension/internal/openobserve"
	"github.com/o2-extension/o2-extension/internal/telemetry"
)

// BenchmarkAppendRecordsGzip encodes and compresses a typical batch: 100
// text lines of 200 bytes.
func BenchmarkAppendRecordsGzip(b *testing.B) {
	evs := make([]telemetry.Event, 100)
	t0 := time.Now()
	for i := range evs {
		line := fmt.Sprintf("2026-11-22T10:00:00.%03dZ\t6f7f0961-0000-4000-8000-000000000001\tINFO\tprocessed order %d for customer %d in %d ms ", i, 10000+i*7, 500+i*13, i%37)
		line += strings.Repeat("-", 200-len(line))
		raw, _ := json.Marshal(line)
		evs[i] = telemetry.Event{Time: t0.Add(time.Duration(i) * time.Millisecond), Type: "function",
			RequestID: "6f7f0961-0000-4000-8000-000000000001", Record: raw}
	}
	o := openobserve.Options{Fields: map[string]any{"function_name": "orders-api", "region": "eu-west-1", "memory_size_mb": 512}}
	c := openobserve.NewClient(o)
	for _, bm := range []struct {
		name   string
		append func([][]byte) [][]byte
	}{
		{"Client", func(dst [][]byte) [][]byte { return c.AppendRecords(dst, evs) }},
		{"func", func(dst [][]byte) [][]byte { return openobserve.AppendRecords(dst, evs, &o) }},
	} {
		b.Run(bm.name, func(b *testing.B) {
			var recs [][]byte
			var body, out bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&out, gzip.BestSpeed)
			b.ReportAllocs()
			for b.Loop() {
				recs = bm.append(recs[:0])
				body.Reset()
				body.WriteByte('[')
				for i, r := range recs {
					if i > 0 {
						body.WriteByte(',')
					}
					body.Write(r)
				}
				body.WriteByte(']')
				out.Reset()
				zw.Reset(&out)
				_, _ = zw.Write(body.Bytes())
				_ = zw.Close()
			}
			b.ReportMetric(float64(body.Len()), "body-bytes")
			b.ReportMetric(float64(out.Len()), "gzip-bytes")
		})
	}
}
