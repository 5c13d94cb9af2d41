package openobserve

import (
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	tests := []struct {
		name, in string
	}{
		{"ascii", "hello world"},
		{"quotes and backslashes", `say "hi" \ bye`},
		{"control", "a\tb\nc\rd\x00e\x1f"},
		{"multibyte", "ünïcødé ✓ 日本語 😀"},
		{"html kept literal", "<a href=\"x\">&</a>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := appendString(nil, tt.in)
			var back string
			if err := json.Unmarshal(got, &back); err != nil {
				t.Fatalf("appendString(%q) = %s: not JSON: %v", tt.in, got, err)
			}
			if back != tt.in {
				t.Errorf("round trip = %q, want %q", back, tt.in)
			}
			if n := escapedLen(tt.in); n != len(got)-2 {
				t.Errorf("escapedLen = %d, want %d", n, len(got)-2)
			}
		})
	}
}

func TestAppendStringReplacesInvalidUTF8(t *testing.T) {
	in := "ok \xff\xfe bad \xed\xa0\x80 surrogate"
	got := appendString(nil, in)
	if !utf8.Valid(got) {
		t.Fatalf("appendString produced invalid UTF-8: %q", got)
	}
	if n := escapedLen(in); n != len(got)-2 {
		t.Errorf("escapedLen = %d, want %d", n, len(got)-2)
	}
	var back string
	if err := json.Unmarshal(got, &back); err != nil {
		t.Fatal(err)
	}
	if want := "ok \uFFFD\uFFFD bad \uFFFD\uFFFD\uFFFD surrogate"; back != want {
		t.Errorf("got %q, want %q", back, want)
	}
}

func TestHasSurrogateEscape(t *testing.T) {
	tests := []struct {
		raw  string
		want bool
	}{
		{`"plain"`, false},
		{`"\u00e9"`, false},
		{`"\ud800"`, true},
		{`"\uDFFF tail"`, true},
		{`"\ud83d\ude00"`, true}, // a valid pair is repaired harmlessly on the slow path
		{`"\\ud800"`, false},     // a literal backslash, then "ud800"
		{`"\\\ud800"`, true},
		{`"\u"`, false},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			if got := hasSurrogateEscape([]byte(tt.raw)); got != tt.want {
				t.Errorf("hasSurrogateEscape(%s) = %v, want %v", tt.raw, got, tt.want)
			}
		})
	}
}

func TestSplitPoints(t *testing.T) {
	tests := []struct {
		name  string
		s     string
		limit int
		want  []int
	}{
		{"fits", "abcdef", 10, []int{6}},
		{"even", "abcdef", 2, []int{2, 4, 6}},
		{"multibyte not cut", "aé€", 3, []int{3, 6}},     // é is 2 bytes, € is 3
		{"escapes count", "a\"b\"", 3, []int{2, 4}},      // \" takes 2
		{"rune larger than limit", "€€", 1, []int{3, 6}}, // progress anyway
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := splitPoints(tt.s, tt.limit)
			if len(got) != len(tt.want) {
				t.Fatalf("splitPoints(%q, %d) = %v, want %v", tt.s, tt.limit, got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("splitPoints(%q, %d) = %v, want %v", tt.s, tt.limit, got, tt.want)
				}
			}
		})
	}
}

func TestTruncateString(t *testing.T) {
	tests := []struct {
		name string
		s    string
		keep int
		want string
	}{
		{"fits", "abc", 3, "abc"},
		{"ascii", "abcdef", 2, "ab…[truncated 4 bytes]"},
		{"rune boundary", "a€b", 2, "a…[truncated 4 bytes]"},
		{"nothing kept", "abc", 0, "…[truncated 3 bytes]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := truncateString(tt.s, tt.keep); got != tt.want {
				t.Errorf("truncateString(%q, %d) = %q, want %q", tt.s, tt.keep, got, tt.want)
			}
		})
	}
}

func TestNewEncoderSkipsCollidingAndBadFields(t *testing.T) {
	e := newEncoder(map[string]any{
		"b_field":   1,
		"a_field":   "x",
		"Type":      "collides with type",
		"requestId": "collides",
		"bad":       func() {},
	}, 0)
	if got, want := string(e.fields), `,"a_field":"x","b_field":1`; got != want {
		t.Errorf("fields = %s, want %s", got, want)
	}
	if e.maxRecord != minRecordBytes {
		t.Errorf("maxRecord = %d, want the floor %d", e.maxRecord, minRecordBytes)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"7", 7 * time.Second, true},
		{" 0 ", 0, true},
		{"-3", 0, false},
		{"", 0, false},
		{"soon", 0, false},
		{now.Add(10 * time.Second).Format(http.TimeFormat), 10 * time.Second, true},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0, true},
		{"99999999999", 24 * time.Hour, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := parseRetryAfter(tt.in, now)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestRetryWait(t *testing.T) {
	c := NewClient(Options{RetryWaitMin: 100 * time.Millisecond, RetryWaitMax: time.Second})
	tests := []struct {
		streak int
		hi     time.Duration // full jitter: every draw in [0, hi]
	}{
		{0, 0}, {1, 0}, // the first failure is retried at once
		{2, 100 * time.Millisecond},
		{3, 200 * time.Millisecond},
		{4, 400 * time.Millisecond},
		{5, 800 * time.Millisecond},
		{6, time.Second},
		{60, time.Second}, // capped
	}
	for _, tt := range tests {
		var top time.Duration
		for range 500 {
			d := c.retryWait(tt.streak)
			if d < 0 || d > tt.hi {
				t.Fatalf("retryWait(%d) = %v, want in [0, %v]", tt.streak, d, tt.hi)
			}
			top = max(top, d)
		}
		if top < tt.hi/2 {
			t.Errorf("retryWait(%d): largest of 500 draws %v; full jitter should reach near %v", tt.streak, top, tt.hi)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	c := NewClient(Options{RetryWaitMin: 100 * time.Millisecond, RetryWaitMax: 5 * time.Second})
	withHeader := func(code int, ra string) *http.Response {
		h := http.Header{}
		if ra != "" {
			h.Set("Retry-After", ra)
		}
		return &http.Response{StatusCode: code, Header: h}
	}
	tests := []struct {
		name string
		resp *http.Response
		want time.Duration
		ok   bool
	}{
		{"429", withHeader(429, "3"), 3 * time.Second, true},
		{"503", withHeader(503, "2"), 2 * time.Second, true},
		{"capped at RetryWaitMax", withHeader(429, "120"), 5 * time.Second, true},
		{"ignored on 500", withHeader(500, "4"), 0, false},
		{"absent", withHeader(429, ""), 0, false},
		{"no response", nil, 0, false},
	}
	for _, tt := range tests {
		if got, ok := c.retryAfter(tt.resp, time.Now()); got != tt.want || ok != tt.ok {
			t.Errorf("%s: retryAfter = %v, %v; want %v, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

func TestBatchEnd(t *testing.T) {
	rec := func(n int) []byte { return make([]byte, n) }
	tests := []struct {
		name   string
		recs   [][]byte
		owners []int
		i, max int
		want   int
	}{
		{"all fit", [][]byte{rec(10), rec(10), rec(10), rec(50)}, []int{0, 1, 2, 3}, 0, 1000, 4},
		{"two fit", [][]byte{rec(10), rec(10), rec(10), rec(50)}, []int{0, 1, 2, 3}, 0, 23, 2}, // "[" + 10 + "," + 10 + "]" = 23
		{"one fits", [][]byte{rec(10), rec(10), rec(10), rec(50)}, []int{0, 1, 2, 3}, 0, 22, 1},
		{"alone, even over the bound", [][]byte{rec(10), rec(10), rec(10), rec(50)}, []int{0, 1, 2, 3}, 3, 10, 4},
		// Event 1 has three parts; only two fit after event 0: the request
		// ends before event 1, which fits in a request of its own.
		{"split event starts the next request", [][]byte{rec(10), rec(10), rec(10), rec(10)}, []int{0, 1, 1, 1}, 0, 34, 1},
		{"split event that fits stays", [][]byte{rec(10), rec(10), rec(10), rec(10)}, []int{0, 1, 1, 1}, 0, 45, 4},
		{"split event larger than a request straddles", [][]byte{rec(10), rec(10), rec(10), rec(10)}, []int{0, 1, 1, 1}, 0, 30, 2},
		{"split event that began the request", [][]byte{rec(10), rec(10), rec(10), rec(10)}, []int{0, 0, 0, 1}, 0, 23, 2},
		{"the next event starts at the break", [][]byte{rec(10), rec(10), rec(10), rec(10)}, []int{0, 0, 1, 1}, 0, 23, 2},
	}
	for _, tt := range tests {
		if got := batchEnd(tt.recs, tt.owners, tt.i, tt.max); got != tt.want {
			t.Errorf("%s: batchEnd(i=%d, max=%d) = %d, want %d", tt.name, tt.i, tt.max, got, tt.want)
		}
	}
}

func TestRedact(t *testing.T) {
	c := NewClient(Options{Authorization: "Basic c2VjcmV0OnBhc3M="})
	got := c.redact("echo: Basic c2VjcmV0OnBhc3M= and c2VjcmV0OnBhc3M=")
	if strings.Contains(got, "c2VjcmV0OnBhc3M=") {
		t.Errorf("redact left the secret: %q", got)
	}
}

// The one transport speaks HTTP/1.1, even to a server that offers HTTP/2
// over TLS (ALPN "h2"): the extension is built without net/http's HTTP/2
// (build.sh's nethttpomithttp2), and must not depend on it. This test
// binary has HTTP/2 linked in, so it fails if the transport asks for it.
func TestTransportSpeaksHTTP11(t *testing.T) {
	var proto string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proto = r.Proto
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()

	tr := newTransport()
	defer tr.CloseIdleConnections()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	tr.TLSClientConfig.RootCAs = pool
	resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 1 || proto != "HTTP/1.1" {
		t.Errorf("reply %s, request %s; want HTTP/1.1 both ways", resp.Proto, proto)
	}
}
