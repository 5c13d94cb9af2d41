package telemetry

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// BenchmarkDecodeBatch measures the listener's hot path: one Telemetry API
// POST of 1,000 events (function lines of 120 bytes, JSON-format lines and
// the platform events of an invocation), as Lambda sends them with
// maxItems 1000.
func BenchmarkDecodeBatch(b *testing.B) {
	var sb strings.Builder
	sb.WriteByte('[')
	const id = "0c1f9a52-7d1e-4b8e-9a64-2f3c5d7e9b10"
	for i := range 1000 {
		if i > 0 {
			sb.WriteByte(',')
		}
		ts := time.Date(2025, 6, 1, 8, 0, 0, i*1000, time.UTC).Format(time.RFC3339Nano)
		switch i % 10 {
		case 0:
			fmt.Fprintf(&sb, `{"time":%q,"type":"platform.runtimeDone","record":{"requestId":%q,"status":"success","metrics":{"durationMs":35.8,"producedBytes":27}}}`, ts, id)
		case 1:
			fmt.Fprintf(&sb, `{"time":%q,"type":"function","record":{"timestamp":%q,"level":"INFO","requestId":%q,"message":"order %d accepted"}}`, ts, ts, id, i)
		default:
			fmt.Fprintf(&sb, `{"time":%q,"type":"function","record":%q}`, ts, fmt.Sprintf("%s INFO line %04d %s", ts, i, strings.Repeat(".", 80)))
		}
	}
	sb.WriteByte(']')
	body := []byte(sb.String())
	now := func() time.Time { return time.Time{} }
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var current string
		if evs := DecodeBatch(body, now, &current, func() { b.Fatal("malformed") }); len(evs) != 1000 {
			b.Fatalf("decoded %d events, want 1000", len(evs))
		}
	}
}
