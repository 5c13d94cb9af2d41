package o2test

import (
	"encoding/json"
	"testing"
	"time"
)

func TestParseTimestamp(t *testing.T) {
	now := time.Date(2026, 11, 3, 12, 0, 0, 0, time.UTC).UnixMicro()
	const jan2021 = 1609459200000000 // 2021-01-01T00:00:00Z in µs
	tests := []struct {
		name string
		in   any
		want int64
		err  bool
	}{
		// Numbers: the unit follows the magnitude.
		{"seconds", json.Number("1609459200"), jan2021, false},
		{"milliseconds", json.Number("1609459200000"), jan2021, false},
		{"microseconds", json.Number("1609459200000000"), jan2021, false},
		{"nanoseconds", json.Number("1609459200000000999"), jan2021, false},
		{"zero is now", json.Number("0"), now, false},
		{"float truncated", json.Number("1609459200.999"), jan2021, false},
		{"exponent", json.Number("1.6094592e9"), jan2021, false},
		{"huge integer", json.Number("123456789012345678901234567890"), 0, true},
		{"infinite float", json.Number("1e400"), 0, true},
		// Strings.
		{"integer string by magnitude", "1609459200000", jan2021, false},
		{"decimal string truncated", "1609459200.789", jan2021, false},
		{"space form is UTC", "2021-01-01 00:00:00", jan2021, false},
		{"T form without zone is UTC", "2021-01-01T00:00:00", jan2021, false},
		{"3 fraction digits without zone", "2021-01-01T00:00:00.123", jan2021 + 123000, false},
		{"6 fraction digits without zone", "2021-01-01T00:00:00.123456", jan2021 + 123456, false},
		{"9 fraction digits need a zone", "2021-01-01T00:00:00.123456789", 0, true},
		{"1 fraction digit needs a zone", "2021-01-01T00:00:00.5", 0, true},
		{"RFC 3339 Z", "2021-01-01T00:00:00Z", jan2021, false},
		{"RFC 3339 lower-case z", "2021-01-01T00:00:00z", jan2021, false},
		{"RFC 3339 offset", "2021-01-01T00:00:00+08:00", jan2021 - 8*3600*1e6, false},
		{"RFC 3339 nanoseconds truncated", "2021-01-01T00:00:00.123456789-08:00", jan2021 + 8*3600*1e6 + 123456, false},
		{"RFC 3339 odd fraction", "2021-01-01T00:00:00.12Z", jan2021 + 120000, false},
		{"quotes trimmed", `"2021-01-01T00:00:00Z"`, jan2021, false},
		{"RFC 2822 obsolete zone", "Wed, 8 Mar 2023 16:46:51 CST", 1678315611000000, false},
		{"RFC 2822 numeric zone", "Fri, 01 Jan 2021 01:00:00 +0100", jan2021, false},
		{"RFC 2822 no weekday, no seconds, 2-digit year", "1 jan 21 00:00 GMT", jan2021, false},
		{"RFC 2822 wrong weekday", "Thu, 01 Jan 2021 00:00:00 +0000", 0, true},
		{"RFC 2822 impossible date", "31 Feb 2021 00:00:00 +0000", 0, true},
		{"date only", "2021-01-01", 0, true},
		{"words", "yesterday", 0, true},
		{"empty", "", 0, true},
		{"1970 date rescaled like the original", "1970-01-01T00:00:01Z", 1_000_000 * 1_000_000, false},
		// Other types.
		{"bool", true, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseTimestamp(tt.in, now)
			if tt.err {
				if err == nil {
					t.Errorf("parseTimestamp(%v) = %d, want an error", tt.in, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("parseTimestamp(%v) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}
