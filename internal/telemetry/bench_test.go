package telemetry

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// BenchmarkDecodeBatch measures the listener's hot path: one Telemetry API
// POST of 1,000 events (text lines of about 120 bytes, half of them with
// the Node.js prefix, JSON-format lines and the platform events of an
// invocation), as Lambda sends them with maxItems 1000.
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
		case 2, 3, 4, 5: // with the Node.js prefix
			fmt.Fprintf(&sb, `{"time":%q,"type":"function","record":%q}`, ts, fmt.Sprintf("%s\t%s\tINFO\tline %04d %s", ts, id, i, strings.Repeat(".", 50)))
		default:
			fmt.Fprintf(&sb, `{"time":%q,"type":"function","record":%q}`, ts, fmt.Sprintf("line %04d %s", i, strings.Repeat(".", 110)))
		}
	}
	sb.WriteByte(']')
	body := []byte(sb.String())
	now := func() time.Time { return time.Time{} }
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		current := id // the invocation in progress, from its platform.start
		if evs := DecodeBatch(body, now, &current, func() { b.Fatal("malformed") }); len(evs) != 1000 {
			b.Fatalf("decoded %d events, want 1000", len(evs))
		}
	}
}

// BenchmarkValid compares the listener's validator with json.Valid on a
// body of 1,000 text lines.
func BenchmarkValid(b *testing.B) {
	body := []byte(`[` + strings.Repeat(`{"time":"2025-06-01T08:00:00.000Z","type":"function","record":"2025-06-01T08:00:00.000Z\t0c1f9a52-7d1e-4b8e-9a64-2f3c5d7e9b10\tINFO\tline 0001 ..................................................................."},`, 999) + `{"a":1}]`)
	b.Run("mine", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if !valid(body) {
				b.Fatal()
			}
		}
	})
	b.Run("json", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if !json.Valid(body) {
				b.Fatal()
			}
		}
	})
}
