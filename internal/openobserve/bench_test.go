package openobserve_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/o2-extension/o2-extension/internal/openobserve"
	"github.com/o2-extension/o2-extension/internal/openobserve/o2test"
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

// discard answers every request as OpenObserve would a batch it stored,
// after reading the body: the client's own cost, without a server's.
type discard struct{}

func (discard) RoundTrip(r *http.Request) (*http.Response, error) {
	_, _ = io.Copy(io.Discard, r.Body)
	_ = r.Body.Close()
	return &http.Response{StatusCode: 200, Header: http.Header{}, Request: r,
		Body: io.NopCloser(strings.NewReader(`{"code":200,"status":[{"name":"lambda","successful":1000,"failed":0}]}`))}, nil
}

// burstLines is n text lines of 200 bytes, as in the burst scenario.
func burstLines(n int) []telemetry.Event {
	evs := make([]telemetry.Event, n)
	t0 := time.Now()
	for i := range evs {
		line := fmt.Sprintf("2026-11-22T10:00:00.%03dZ\t6f7f0961-0000-4000-8000-000000000001\tINFO\tprocessed order %d for customer %d in %d ms ", i%1000, 10000+i*7, 500+i*13, i%37)
		line += strings.Repeat("-", 200-len(line))
		raw, _ := json.Marshal(line)
		evs[i] = telemetry.Event{Time: t0.Add(time.Duration(i) * time.Microsecond), Type: "function",
			RequestID: "6f7f0961-0000-4000-8000-000000000001", Record: raw, Level: "INFO"}
	}
	return evs
}

// BenchmarkSendPerLine is the client's CPU per line on the delivery path:
// encode, gzip and post a batch of 1,000 lines of 200 bytes.
func BenchmarkSendPerLine(b *testing.B) {
	evs := burstLines(1000)
	c := openobserve.NewClient(openobserve.Options{IngestURL: "http://o2.test/api/default/lambda/_json",
		Authorization: goodAuth, Transport: discard{},
		Fields: map[string]any{"function_name": "orders-api", "region": "eu-west-1", "memory_size_mb": 512}})
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := c.Send(b.Context(), evs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(evs)), "ns/line")
}

// BenchmarkShipperThroughput is the records per second the Shipper
// delivers to the stand-in over loopback, with no added latency and with
// 150 ms per request (a distant or busy OpenObserve), for 1 to 8 requests
// in flight (the default is 4).
func BenchmarkShipperThroughput(b *testing.B) {
	for _, latency := range []time.Duration{0, 150 * time.Millisecond} {
		for _, inFlight := range []int{1, 2, 4, 8} {
			b.Run(fmt.Sprintf("latency=%v/inflight=%d", latency, inFlight), func(b *testing.B) {
				s := o2test.Run(b, o2test.Options{})
				s.SetLatency(latency)
				opts := options(s.URL())
				buf := telemetry.NewBuffer(64 << 20)
				sp := openobserve.NewShipper(openobserve.NewClient(opts), buf, openobserve.ShipperOptions{InFlight: inFlight})
				defer func() { _ = sp.Shutdown(context.Background(), nil, nil) }()
				evs := burstLines(20000)
				records := 0
				for b.Loop() {
					buf.Add(evs...)
					if err := sp.Flush(b.Context()); err != nil {
						b.Fatal(err)
					}
					records += len(evs)
				}
				b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
				b.ReportMetric(float64(s.Calls())/float64(b.N), "requests/op")
			})
		}
	}
}
