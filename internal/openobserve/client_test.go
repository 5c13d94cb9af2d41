package openobserve_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/o2-extension/o2-extension/internal/openobserve"
	"github.com/o2-extension/o2-extension/internal/openobserve/o2test"
	"github.com/o2-extension/o2-extension/internal/telemetry"
)

var goodAuth = o2test.BasicAuth(o2test.DefaultEmail, o2test.DefaultSecret)

// options returns client options for base (a URL or "http://o2.test" for
// in-process use) and org "default", stream "lambda".
func options(base string) openobserve.Options {
	return openobserve.Options{
		IngestURL:     base + "/api/default/lambda/_json",
		HealthURL:     base + "/healthz",
		Authorization: goodAuth,
		MaxRetries:    openobserve.DefaultMaxRetries,
		Fields:        map[string]any{"function_name": "orders-api", "region": "eu-west-1"},
	}
}

// inProcess returns a stand-in and client options that reach it without a
// socket, for synctest bubbles.
func inProcess(o o2test.Options) (*o2test.Server, openobserve.Options) {
	s := o2test.New(o)
	opts := options("http://o2.test")
	opts.Transport = s.Transport()
	return s, opts
}

// textEvents returns n text-line events stamped now.
func textEvents(n int, now time.Time) []telemetry.Event {
	evs := make([]telemetry.Event, n)
	for i := range evs {
		raw, _ := json.Marshal(fmt.Sprintf("line %d of the test, padded to look like a real log line", i))
		evs[i] = telemetry.Event{Time: now.Add(time.Duration(i) * time.Microsecond), Type: "function", RequestID: "req-1", Record: raw}
	}
	return evs
}

func TestSendStoresRecordShapes(t *testing.T) {
	s := o2test.Run(t, o2test.Options{})
	c := openobserve.NewClient(options(s.URL()))
	now := time.Now()
	evs := []telemetry.Event{
		{Time: now, Type: "function", RequestID: "req-1", Record: json.RawMessage(`"plain text line\n"`)},
		{Time: now, Type: "function", RequestID: "req-1", Level: "ERROR",
			Record: json.RawMessage(`{"level":"ERROR","message":"boom","requestId":"req-1"}`)},
		{Time: now, Type: "platform.report", RequestID: "req-1",
			Record: json.RawMessage(`{"requestId":"req-1","metrics":{"durationMs":12.5,"maxMemoryUsedMB":81},"status":"success"}`)},
	}
	res, rest, err := c.Send(t.Context(), evs)
	if err != nil || rest != nil {
		t.Fatalf("Send: %v (undelivered %d)", err, len(rest))
	}
	if res.Sent != 3 || res.Successful != 3 || res.Failed != 0 || res.Missing != 0 || res.Requests != 1 {
		t.Errorf("result = %+v", res)
	}
	recs := s.StreamRecords("default", "lambda")
	if len(recs) != 3 {
		t.Fatalf("stored %d records, want 3", len(recs))
	}
	tests := []struct {
		name string
		rec  map[string]any
		want map[string]any
	}{
		{"text line", recs[0], map[string]any{
			"record": "plain text line\n", "type": "function", "requestid": "req-1",
			"function_name": "orders-api", "region": "eu-west-1", "_timestamp": now.UnixMicro(),
		}},
		{"JSON-format log", recs[1], map[string]any{
			"record_message": "boom", "record_level": "ERROR", "level": "ERROR", "requestid": "req-1", "type": "function",
		}},
		{"platform event", recs[2], map[string]any{
			"record_metrics_durationms": json.Number("12.5"), "record_status": "success", "type": "platform.report",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, want := range tt.want {
				if got := tt.rec[k]; fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("%s = %v (%T), want %v", k, got, got, want)
				}
			}
		})
	}
	h := s.Requests()[0].Header
	if _, ok := h["X-Idempotency-Key"]; ok {
		t.Error("the empty X-Idempotency-Key marker went out on the wire")
	}
	for k, want := range map[string]string{
		"Authorization": goodAuth, "Content-Type": "application/json", "User-Agent": "o2-extension",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
}

func TestSendSplitRecordReassembles(t *testing.T) {
	s := o2test.Run(t, o2test.Options{})
	c := openobserve.NewClient(options(s.URL()))
	text := bigText(1 << 20)
	raw, _ := json.Marshal(text)
	res, rest, err := c.Send(t.Context(), []telemetry.Event{{Time: time.Now(), Type: "function", Record: raw}})
	if err != nil || rest != nil {
		t.Fatalf("Send: %v", err)
	}
	recs := s.StreamRecords("default", "lambda")
	if len(recs) < 4 || res.Sent != len(recs) || res.Successful != len(recs) {
		t.Fatalf("stored %d parts, result %+v", len(recs), res)
	}
	var b strings.Builder
	for i, r := range recs {
		if want := fmt.Sprintf("%d/%d", i+1, len(recs)); r["part"] != want {
			t.Errorf("part = %v, want %s", r["part"], want)
		}
		b.WriteString(r["record"].(string))
	}
	if b.String() != text {
		t.Error("stored parts do not reassemble the original text")
	}
}

func TestGzipBySize(t *testing.T) {
	tests := []struct {
		name     string
		events   int
		gzipMin  int
		wantGzip bool
	}{
		{"small body plain", 1, 0, false},
		{"large body gzipped", 50, 0, true},
		{"threshold raised", 50, 1 << 20, false},
		{"compression disabled", 50, -1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := o2test.Run(t, o2test.Options{})
			o := options(s.URL())
			o.GzipMinBytes = tt.gzipMin
			c := openobserve.NewClient(o)
			res, _, err := c.Send(t.Context(), textEvents(tt.events, time.Now()))
			if err != nil {
				t.Fatal(err)
			}
			reqs := s.Requests()
			if len(reqs) != 1 || res.Successful != tt.events {
				t.Fatalf("requests = %d, result %+v", len(reqs), res)
			}
			gotGzip := reqs[0].Header.Get("Content-Encoding") == "gzip"
			if gotGzip != tt.wantGzip {
				t.Errorf("gzip = %v, want %v", gotGzip, tt.wantGzip)
			}
			if plain := len(reqs[0].Body); gotGzip && res.Bytes >= plain || !gotGzip && res.Bytes != plain {
				t.Errorf("wire bytes = %d for a %d-byte body (gzip %v)", res.Bytes, plain, gotGzip)
			}
		})
	}
}

func TestUnsupportedMediaTypeResendsPlain(t *testing.T) {
	s := o2test.Run(t, o2test.Options{})
	c := openobserve.NewClient(options(s.URL()))
	s.Inject(o2test.Fault{Status: http.StatusUnsupportedMediaType})
	res, rest, err := c.Send(t.Context(), textEvents(50, time.Now()))
	if err != nil || rest != nil {
		t.Fatalf("Send: %v", err)
	}
	if res.Requests != 2 || res.Successful != 50 {
		t.Errorf("result = %+v, want 2 requests and 50 stored", res)
	}
	// Compression stays off for the life of the client.
	if _, _, err := c.Send(t.Context(), textEvents(50, time.Now())); err != nil {
		t.Fatal(err)
	}
	var encodings []string
	for _, r := range s.Requests() {
		encodings = append(encodings, r.Header.Get("Content-Encoding"))
	}
	if want := []string{"gzip", "", ""}; !slices.Equal(encodings, want) {
		t.Errorf("Content-Encoding per request = %q, want %q", encodings, want)
	}
	if n := len(s.StreamRecords("default", "lambda")); n != 100 {
		t.Errorf("stored %d records, want 100", n)
	}
}

func TestPayloadTooLargeSplits(t *testing.T) {
	s := o2test.Run(t, o2test.Options{MaxBodyBytes: 4096})
	o := options(s.URL())
	o.MaxRecordBytes = 1 << 20 // so that the big record below is not split
	c := openobserve.NewClient(o)

	evs := textEvents(40, time.Now()) // about 7 KB: 413, then halves
	res, rest, err := c.Send(t.Context(), evs)
	if err != nil || rest != nil {
		t.Fatalf("Send: %v", err)
	}
	if res.Successful != 40 || res.Sent != 40 || res.Requests < 3 {
		t.Errorf("result = %+v, want 40 stored over at least 3 requests", res)
	}
	if n := len(s.StreamRecords("default", "lambda")); n != 40 {
		t.Errorf("stored %d, want 40", n)
	}

	// A record the server refuses even alone is dropped, not returned.
	s.Reset()
	huge, _ := json.Marshal(strings.Repeat("z", 8000))
	evs = append(textEvents(3, time.Now()), telemetry.Event{Time: time.Now(), Type: "function", Record: huge})
	evs = append(evs, textEvents(2, time.Now())...)
	res, rest, err = c.Send(t.Context(), evs)
	if rest != nil {
		t.Errorf("undelivered = %d events, want none (the big one is dropped)", len(rest))
	}
	if se, ok := errors.AsType[*openobserve.StatusError](err); !ok || se.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("err = %v, want one reporting the 413 drop", err)
	}
	if openobserve.IsPermanent(err) || openobserve.IsAuth(err) {
		t.Errorf("a 413 drop is neither permanent nor auth: %v", err)
	}
	if res.Dropped != 1 || res.Successful != 5 {
		t.Errorf("result = %+v, want 1 dropped and 5 stored", res)
	}
}

// elapsed runs f and returns the fake time it took; call inside a bubble.
func elapsed(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}

func TestRetriesThenSuccess(t *testing.T) {
	tests := []struct {
		name     string
		faults   []o2test.Fault
		min, max time.Duration // fake time spent waiting
	}{
		// The first failure is retried at once; then full jitter up to a
		// cap that doubles from RetryWaitMin (100 ms).
		{"500", []o2test.Fault{{Status: 500}}, 0, 0},
		{"503", []o2test.Fault{{Status: 503}}, 0, 0},
		{"429", []o2test.Fault{{Status: 429}}, 0, 0},
		{"502 504", []o2test.Fault{{Status: 502}, {Status: 504}}, 0, 100 * time.Millisecond},
		{"reset", []o2test.Fault{{Reset: true}}, 0, 0},
		{"500 503 429", []o2test.Fault{{Status: 500}, {Status: 503}, {Status: 429}}, 0, 300 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s, o := inProcess(o2test.Options{})
				c := openobserve.NewClient(o)
				s.Inject(tt.faults...)
				var res openobserve.Result
				var err error
				d := elapsed(func() { res, _, err = c.Send(t.Context(), textEvents(5, time.Now())) })
				if err != nil {
					t.Fatalf("Send: %v", err)
				}
				if want := len(tt.faults) + 1; res.Requests != want || s.Calls() != want {
					t.Errorf("requests = %d (server saw %d), want %d", res.Requests, s.Calls(), want)
				}
				if res.Successful != 5 {
					t.Errorf("successful = %d, want 5", res.Successful)
				}
				if d < tt.min || d > tt.max {
					t.Errorf("waited %v, want within [%v, %v]", d, tt.min, tt.max)
				}
			})
		})
	}
}

func TestRetriesExhausted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, o := inProcess(o2test.Options{})
		o.MaxRetries = 2
		c := openobserve.NewClient(o)
		s.SetFaultFunc(func(int, *http.Request) *o2test.Fault { return &o2test.Fault{Status: 503} })
		evs := textEvents(3, time.Now())
		res, rest, err := c.Send(t.Context(), evs)
		if se, ok := errors.AsType[*openobserve.StatusError](err); !ok || se.Code != 503 {
			t.Fatalf("err = %v, want the last 503", err)
		}
		if res.Requests != 3 || len(rest) != 3 {
			t.Errorf("requests = %d, undelivered = %d; want 3 and 3", res.Requests, len(rest))
		}
		if openobserve.IsPermanent(err) || openobserve.IsAuth(err) {
			t.Errorf("503 classified as permanent or auth")
		}
	})
}

func TestRetryAfterHonoured(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		retryAfter func(now time.Time) string
		waitMax    time.Duration
		want       time.Duration
	}{
		{"seconds on 429", 429, func(time.Time) string { return "7" }, time.Minute, 7 * time.Second},
		{"HTTP date on 503", 503, func(now time.Time) string { return now.Add(10 * time.Second).UTC().Format(http.TimeFormat) }, time.Minute, 10 * time.Second},
		{"capped at RetryWaitMax", 429, func(time.Time) string { return "120" }, 20 * time.Second, 20 * time.Second},
		{"capped at the default RetryWaitMax", 429, func(time.Time) string { return "120" }, 0, openobserve.DefaultRetryWaitMax},
		{"zero means at once", 503, func(time.Time) string { return "0" }, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s, o := inProcess(o2test.Options{})
				o.RetryWaitMax = tt.waitMax
				c := openobserve.NewClient(o)
				s.Inject(o2test.Fault{Status: tt.status, RetryAfter: tt.retryAfter(time.Now())})
				var err error
				d := elapsed(func() { _, _, err = c.Send(t.Context(), textEvents(1, time.Now())) })
				if err != nil {
					t.Fatal(err)
				}
				if d != tt.want {
					t.Errorf("waited %v, want exactly %v", d, tt.want)
				}
			})
		})
	}
}

func TestNoRetryOnClientErrors(t *testing.T) {
	tests := []struct {
		name          string
		setup         func(s *o2test.Server, o *openobserve.Options)
		code          int
		permanent     bool
		auth          bool
		explainPrefix string
	}{
		{"400", func(s *o2test.Server, _ *openobserve.Options) { s.Inject(o2test.Fault{Status: 400}) },
			400, true, false, "request refused"},
		{"401 wrong password", func(_ *o2test.Server, o *openobserve.Options) {
			o.Authorization = o2test.BasicAuth(o2test.DefaultEmail, "wrong")
		}, 401, false, true, "wrong credentials or organization: check O2_AUTHORIZATION_HEADER"},
		{"403", func(s *o2test.Server, _ *openobserve.Options) { s.Inject(o2test.Fault{Status: 403}) },
			403, false, true, "forbidden"},
		{"404 unknown org", func(_ *o2test.Server, o *openobserve.Options) {
			o.IngestURL = strings.Replace(o.IngestURL, "/api/default/", "/api/nosuchorg/", 1)
		}, 404, false, true, "unknown organization: check O2_ORGANIZATION_ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := o2test.Run(t, o2test.Options{Orgs: []string{"default"}, NoAutoCreateOrg: true})
			o := options(s.URL())
			tt.setup(s, &o)
			c := openobserve.NewClient(o)
			evs := textEvents(4, time.Now())
			res, rest, err := c.Send(t.Context(), evs)
			se, ok := errors.AsType[*openobserve.StatusError](err)
			if !ok || se.Code != tt.code {
				t.Fatalf("err = %v, want HTTP %d", err, tt.code)
			}
			if s.Calls() != 1 || res.Requests != 1 {
				t.Errorf("requests = %d (server saw %d), want 1: no retry", res.Requests, s.Calls())
			}
			if len(rest) != len(evs) {
				t.Errorf("undelivered = %d, want all %d", len(rest), len(evs))
			}
			if got := openobserve.IsPermanent(err); got != tt.permanent {
				t.Errorf("IsPermanent = %v, want %v", got, tt.permanent)
			}
			if got := openobserve.IsAuth(err); got != tt.auth {
				t.Errorf("IsAuth = %v, want %v", got, tt.auth)
			}
			if got := openobserve.Explain(err); !strings.HasPrefix(got, tt.explainPrefix) {
				t.Errorf("Explain = %q, want prefix %q", got, tt.explainPrefix)
			}
		})
	}
}

// failFromSecond answers 500 to every request after the first.
func failFromSecond(n int, _ *http.Request) *o2test.Fault {
	if n >= 2 {
		return &o2test.Fault{Status: 500}
	}
	return nil
}

func TestUndeliveredEventsReturned(t *testing.T) {
	s := o2test.Run(t, o2test.Options{})
	o := options(s.URL())
	o.MaxBatchBytes = 1500 // a few records per request
	o.MaxRetries = 0
	c := openobserve.NewClient(o)
	s.SetFaultFunc(failFromSecond)
	evs := textEvents(30, time.Now())
	res, rest, err := c.Send(t.Context(), evs)
	if err == nil {
		t.Fatal("Send succeeded against a failing server")
	}
	stored := len(s.StreamRecords("default", "lambda"))
	if stored == 0 || stored != res.Successful {
		t.Fatalf("stored %d, result %+v: want the first request delivered", stored, res)
	}
	if s.Calls() != 2 {
		t.Errorf("requests = %d, want 2: sending stops at the first failure", s.Calls())
	}
	// What was not delivered comes back, in order, and nothing else.
	if len(rest) != len(evs)-stored || &rest[0] != &evs[stored] {
		t.Errorf("undelivered = %d events, want evs[%d:] (%d)", len(rest), stored, len(evs)-stored)
	}
}

func TestDeadlineGivesUpAtOnce(t *testing.T) {
	tests := []struct {
		name  string
		fault o2test.Fault
		opts  func(*openobserve.Options)
	}{
		// A backoff is full jitter, so whether it passes a deadline is
		// chance; a server's pause is not.
		{"Retry-After 5 s", o2test.Fault{Status: 503, RetryAfter: "5"}, func(o *openobserve.Options) { o.RetryWaitMax = time.Minute }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s, o := inProcess(o2test.Options{})
				tt.opts(&o)
				c := openobserve.NewClient(o)
				s.Inject(tt.fault)
				ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
				defer cancel()
				evs := textEvents(2, time.Now())
				var res openobserve.Result
				var rest []telemetry.Event
				var err error
				d := elapsed(func() { res, rest, err = c.Send(ctx, evs) })
				if !errors.Is(err, openobserve.ErrDeadline) {
					t.Fatalf("err = %v, want ErrDeadline", err)
				}
				if d != 0 {
					t.Errorf("spent %v before giving up, want 0", d)
				}
				if res.Requests != 1 || len(rest) != 2 {
					t.Errorf("requests = %d, undelivered = %d; want 1 and 2", res.Requests, len(rest))
				}
				if se, ok := errors.AsType[*openobserve.StatusError](err); !ok || se.Code != tt.fault.Status {
					t.Errorf("err = %v, want it to wrap the last HTTP %d", err, tt.fault.Status)
				}
			})
		})
	}
}

func TestHangingServerStopsAtAttemptTimeout(t *testing.T) {
	tests := []struct {
		name     string
		retries  int
		min, max time.Duration
	}{
		{"no retry", -1, 3 * time.Second, 3 * time.Second},
		{"one retry", 1, 6 * time.Second, 6 * time.Second}, // 3 s + at once + 3 s
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s, o := inProcess(o2test.Options{})
				o.AttemptTimeout = 3 * time.Second
				o.MaxRetries = tt.retries
				c := openobserve.NewClient(o)
				s.SetFaultFunc(func(int, *http.Request) *o2test.Fault { return &o2test.Fault{Hang: true} })
				var res openobserve.Result
				var err error
				d := elapsed(func() { res, _, err = c.Send(t.Context(), textEvents(1, time.Now())) })
				if err == nil {
					t.Fatal("Send succeeded against a hanging server")
				}
				if d < tt.min || d > tt.max {
					t.Errorf("took %v, want within [%v, %v]", d, tt.min, tt.max)
				}
				if want := max(tt.retries, 0) + 1; res.Requests != want {
					t.Errorf("requests = %d, want %d", res.Requests, want)
				}
				if got := openobserve.Explain(err); !strings.HasPrefix(got, "timed out") {
					t.Errorf("Explain = %q, want a timeout", got)
				}
			})
		})
	}
}

func TestContextCancelledDuringBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, o := inProcess(o2test.Options{})
		o.RetryWaitMax = time.Minute
		c := openobserve.NewClient(o)
		s.Inject(o2test.Fault{Status: 503, RetryAfter: "10"})
		ctx, cancel := context.WithCancelCause(t.Context())
		stop := errors.New("shutdown")
		// A fake-time timer: the cancel lands 4 s into the 10 s wait.
		time.AfterFunc(4*time.Second, func() { cancel(stop) })
		var err error
		var rest []telemetry.Event
		d := elapsed(func() { _, rest, err = c.Send(ctx, textEvents(1, time.Now())) })
		if !errors.Is(err, stop) || len(rest) != 1 {
			t.Errorf("err = %v, undelivered %d; want the cancel cause and 1", err, len(rest))
		}
		if d != 4*time.Second {
			t.Errorf("returned after %v, want 4s", d)
		}
	})
}

func TestFailedAndSilentlyDroppedRecords(t *testing.T) {
	t.Run("too old", func(t *testing.T) {
		s := o2test.Run(t, o2test.Options{AllowedUpto: time.Hour})
		c := openobserve.NewClient(options(s.URL()))
		evs := append(textEvents(2, time.Now().Add(-2*time.Hour)), textEvents(3, time.Now())...)
		res, rest, err := c.Send(t.Context(), evs)
		if err != nil || rest != nil {
			t.Fatalf("Send: %v (rejected records are not a send error)", err)
		}
		if res.Sent != 5 || res.Successful != 3 || res.Failed != 2 || res.Missing != 0 {
			t.Errorf("result = %+v, want 3 stored, 2 failed", res)
		}
		if !strings.Contains(res.Error, "Too old data") {
			t.Errorf("Error = %q, want OpenObserve's reason", res.Error)
		}
	})
	// OpenObserve drops a request whose columns exceed its limit with a 200
	// that counts nothing (openobserve-api.md §5.6): the batch is split to
	// find the wide record, which goes again with its record as one
	// string; the others go as they are, each once.
	t.Run("column limit", func(t *testing.T) {
		s := o2test.Run(t, o2test.Options{ColumnLimit: 10})
		c := openobserve.NewClient(options(s.URL()))
		obj := map[string]int{}
		for i := range 20 {
			obj[fmt.Sprintf("f%d", i)] = i
		}
		raw, _ := json.Marshal(obj)
		evs := textEvents(6, time.Now())
		evs = slices.Insert(evs, 3, telemetry.Event{Time: time.Now(), Type: "function", Record: raw})
		res, rest, err := c.Send(t.Context(), evs)
		if err != nil || rest != nil {
			t.Fatalf("Send: %v", err)
		}
		if res.Sent != 7 || res.Successful != 7 || res.AsText != 1 || res.Missing != 0 {
			t.Errorf("result = %+v, want 7 stored, one of them as text", res)
		}
		recs := s.StreamRecords("default", "lambda")
		if len(recs) != 7 {
			t.Fatalf("stored %d records, want 7 (none twice)", len(recs))
		}
		wide := 0
		for _, r := range recs {
			if r["record_as_text"] == true {
				wide++
				if txt, _ := r["record"].(string); !strings.Contains(txt, `"f19":19`) {
					t.Errorf("record as text = %q, want the object's JSON", txt)
				}
			}
		}
		if wide != 1 {
			t.Errorf("%d records marked record_as_text, want 1", wide)
		}
	})
	t.Run("column limit even as text", func(t *testing.T) {
		s := o2test.Run(t, o2test.Options{ColumnLimit: 3})
		c := openobserve.NewClient(options(s.URL()))
		res, rest, err := c.Send(t.Context(), textEvents(2, time.Now()))
		if err != nil || rest != nil {
			t.Fatalf("Send: %v", err)
		}
		if res.Sent != 2 || res.Successful != 0 || res.Missing != 2 {
			t.Errorf("result = %+v, want 2 silently dropped", res)
		}
	})
}

// A 2xx that is not OpenObserve's reply (a proxy, a wrong path) or counts
// that cannot be true: nothing is known to be stored, so the records come
// back to be kept, and the error says what came back.
func TestUnexpectedReplyKeepsTheData(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"html", `<html>OK</html>`, "<html>OK</html>"},
		{"empty", ``, "(empty)"},
		{"no status", `{"code":200}`, `{"code":200}`},
		{"negative count", `{"code":200,"status":[{"name":"lambda","successful":500,"failed":-400}]}`, "impossible counts"},
		{"more than sent", `{"code":200,"status":[{"name":"lambda","successful":3,"failed":0}]}`, "impossible counts (successful 3, failed 0) for 2 records"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = w.Write([]byte(tt.body))
			}))
			t.Cleanup(srv.Close)
			c := openobserve.NewClient(options(srv.URL))
			evs := textEvents(2, time.Now())
			res, rest, err := c.Send(t.Context(), evs)
			if !errors.Is(err, openobserve.ErrUnexpectedReply) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrUnexpectedReply naming %q", err, tt.want)
			}
			if len(rest) != 2 || res.Successful != 0 {
				t.Errorf("undelivered %d, result %+v; want both kept and none counted delivered", len(rest), res)
			}
			if openobserve.IsPermanent(err) {
				t.Error("an unexpected reply is not a permanent refusal")
			}
		})
	}
}

// One record OpenObserve's parser refuses (400 SerdeJsonError) costs only
// itself: the batch is split until it is alone, then dropped and counted.
func TestUnparsableRecordIsIsolated(t *testing.T) {
	var mu sync.Mutex
	var stored []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var rd io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				t.Errorf("gzip: %v", err)
				return
			}
			rd = zr
		}
		body, _ := io.ReadAll(rd)
		var recs []map[string]any
		_ = json.Unmarshal(body, &recs)
		for _, rec := range recs {
			if rec["record"] == "poison" {
				w.WriteHeader(400)
				_, _ = w.Write([]byte(`{"code":400,"message":"SerdeJsonError# recursion limit exceeded at line 1 column 900"}`))
				return
			}
		}
		mu.Lock()
		for _, rec := range recs {
			stored = append(stored, rec["record"].(string))
		}
		mu.Unlock()
		fmt.Fprintf(w, `{"code":200,"status":[{"name":"lambda","successful":%d,"failed":0}]}`, len(recs))
	}))
	t.Cleanup(srv.Close)
	c := openobserve.NewClient(options(srv.URL))
	evs := textEvents(20, time.Now())
	evs[13].Record = json.RawMessage(`"poison"`)
	res, rest, err := c.Send(t.Context(), evs)
	if rest != nil || !openobserve.IsPermanent(err) {
		t.Fatalf("Send: undelivered %d, err %v, result %+v; want only the poison record dropped, reported", len(rest), err, res)
	}
	if res.Rejected != 1 || res.Successful != 19 {
		t.Errorf("result = %+v, want 19 stored and 1 rejected", res)
	}
	if len(stored) != 19 || slices.Contains(stored, "poison") {
		t.Errorf("stored %d records, want the 19 others once each", len(stored))
	}
	if got := openobserve.Explain(err); !strings.Contains(got, "nested deeper") {
		t.Errorf("Explain = %q, want the parser's limit named", got)
	}
}

// OpenObserve's 400s about its own state keep the data (openobserve-api.md
// §8); others drop it.
func TestTransient400(t *testing.T) {
	tests := []struct {
		msg       string
		transient bool
	}{
		{"Error# not an ingester", true},
		{"Error# Quota exceeded for this organization [default]", true},
		{"Error# stream [lambda] is being deleted", true},
		{"Error# Stream name is empty", false},
		{"SerdeJsonError# expected value at line 1 column 1", false},
	}
	for _, tt := range tests {
		se := &openobserve.StatusError{Code: 400, Message: tt.msg}
		if se.Transient() != tt.transient || openobserve.IsPermanent(se) == tt.transient || openobserve.IsTransient(se) != tt.transient {
			t.Errorf("%q: Transient %v, IsPermanent %v; want transient %v", tt.msg, se.Transient(), openobserve.IsPermanent(se), tt.transient)
		}
	}
}

func TestRedirectIsNotFollowed(t *testing.T) {
	srv := httptest.NewServer(http.RedirectHandler("https://elsewhere.example/api", http.StatusMovedPermanently))
	t.Cleanup(srv.Close)
	c := openobserve.NewClient(options(srv.URL))
	_, rest, err := c.Send(t.Context(), textEvents(1, time.Now()))
	se, ok := errors.AsType[*openobserve.StatusError](err)
	if !ok || se.Code != 301 || !strings.Contains(se.Message, "elsewhere.example") || len(rest) != 1 {
		t.Errorf("err = %v, undelivered %d; want a 301 naming the target", err, len(rest))
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr
}

func TestHealthChecks(t *testing.T) {
	s := o2test.Run(t, o2test.Options{Orgs: []string{"default"}, NoAutoCreateOrg: true})
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(tlsSrv.Close)

	type call struct {
		name string
		run  func(*openobserve.Client) (time.Duration, error)
	}
	healthz := call{"CheckHealthz", func(c *openobserve.Client) (time.Duration, error) { return c.CheckHealthz(t.Context()) }}
	ingest := call{"CheckIngest", func(c *openobserve.Client) (time.Duration, error) { return c.CheckIngest(t.Context()) }}
	record := call{"SendTestRecord", func(c *openobserve.Client) (time.Duration, error) {
		return c.SendTestRecord(t.Context(), time.Now())
	}}
	tests := []struct {
		name    string
		opts    func() openobserve.Options
		call    call
		explain string // "" means success
	}{
		{"healthz ok", func() openobserve.Options { return options(s.URL()) }, healthz, ""},
		{"ingest ok", func() openobserve.Options { return options(s.URL()) }, ingest, ""},
		{"test record ok", func() openobserve.Options { return options(s.URL()) }, record, ""},
		{"healthz needs no credentials", func() openobserve.Options {
			o := options(s.URL())
			o.Authorization = ""
			return o
		}, healthz, ""},
		{"ingest 401", func() openobserve.Options {
			o := options(s.URL())
			o.Authorization = o2test.BasicAuth(o2test.DefaultEmail, "nope")
			return o
		}, ingest, "wrong credentials or organization: check O2_AUTHORIZATION_HEADER"},
		{"test record 401", func() openobserve.Options {
			o := options(s.URL())
			o.Authorization = o2test.BasicAuth("someone@example.com", o2test.DefaultSecret)
			return o
		}, record, "wrong credentials or organization: check O2_AUTHORIZATION_HEADER"},
		{"ingest 404", func() openobserve.Options {
			o := options(s.URL())
			o.IngestURL = s.URL() + "/api/typo/lambda/_json"
			return o
		}, ingest, "unknown organization: check O2_ORGANIZATION_ID"},
		{"healthz 404 is a wrong endpoint", func() openobserve.Options {
			o := options(s.URL())
			o.HealthURL = s.URL() + "/o2/healthz"
			return o
		}, healthz, "no /healthz at this endpoint: check O2_ENDPOINT"},
		{"healthz unreachable", func() openobserve.Options { return options(closedPort(t)) }, healthz, "unreachable: connection refused"},
		{"ingest unreachable", func() openobserve.Options { return options(closedPort(t)) }, ingest, "unreachable: connection refused"},
		{"healthz untrusted TLS", func() openobserve.Options { return options(tlsSrv.URL) }, healthz, "TLS certificate not trusted"},
		{"ingest untrusted TLS", func() openobserve.Options { return options(tlsSrv.URL) }, ingest, "TLS certificate not trusted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := openobserve.NewClient(tt.opts())
			d, err := tt.call.run(c)
			if tt.explain == "" {
				if err != nil {
					t.Fatalf("%s: %v (%s)", tt.call.name, err, openobserve.Explain(err))
				}
				if d <= 0 {
					t.Errorf("duration = %v, want > 0", d)
				}
				return
			}
			if err == nil {
				t.Fatalf("%s succeeded, want %q", tt.call.name, tt.explain)
			}
			if got := openobserve.Explain(err); !strings.HasPrefix(got, tt.explain) {
				t.Errorf("Explain(%v) = %q, want prefix %q", err, got, tt.explain)
			}
		})
	}

	// CheckIngest wrote nothing; SendTestRecord wrote exactly one record.
	var types []string
	for _, r := range s.Records() {
		types = append(types, fmt.Sprint(r.Fields["type"]))
	}
	if !slices.Equal(types, []string{openobserve.HealthCheckType}) {
		t.Errorf("stored record types = %q, want one %q", types, openobserve.HealthCheckType)
	}
}

func TestTLSErrorIsNotRetried(t *testing.T) {
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(tlsSrv.Close)
	c := openobserve.NewClient(options(tlsSrv.URL))
	res, rest, err := c.Send(t.Context(), textEvents(1, time.Now()))
	if err == nil || res.Requests != 1 || len(rest) != 1 {
		t.Errorf("err = %v, requests = %d, undelivered = %d; want 1 failed attempt", err, res.Requests, len(rest))
	}
}

func TestSendTestRecordRejected(t *testing.T) {
	s := o2test.Run(t, o2test.Options{})
	c := openobserve.NewClient(options(s.URL()))
	_, err := c.SendTestRecord(t.Context(), time.Now().Add(-10*time.Hour)) // a skewed clock
	if !errors.Is(err, openobserve.ErrRejected) {
		t.Fatalf("err = %v, want ErrRejected", err)
	}
	if got := openobserve.Explain(err); !strings.Contains(got, "Too old data") {
		t.Errorf("Explain = %q, want OpenObserve's reason", got)
	}
}

func TestSecretNeverLeaks(t *testing.T) {
	const secret = "Basic c2VjcmV0LXVzZXI6dG9wLXNlY3JldC10b2tlbg=="
	// A hostile or misconfigured server that echoes the Authorization
	// header back in every error body.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := http.StatusInternalServerError
		if r.URL.Path == "/healthz" {
			code = http.StatusUnauthorized
		}
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"code":%d,"message":"bad header %s"}`, code, r.Header.Get("Authorization"))
	}))
	t.Cleanup(srv.Close)

	var logs bytes.Buffer
	l := logrus.New()
	l.SetOutput(&logs)
	l.SetLevel(logrus.TraceLevel) // every line retryablehttp can log
	o := options(srv.URL)
	o.Authorization = secret
	o.Logger = logrus.NewEntry(l)
	o.RetryWaitMin, o.RetryWaitMax = time.Millisecond, time.Millisecond
	c := openobserve.NewClient(o)

	var texts []string
	_, _, err := c.Send(t.Context(), textEvents(3, time.Now()))
	texts = append(texts, err.Error(), openobserve.Explain(err))
	_, err = c.CheckHealthz(t.Context())
	texts = append(texts, err.Error(), openobserve.Explain(err))
	_, err = c.CheckIngest(t.Context())
	texts = append(texts, err.Error(), openobserve.Explain(err))
	_, err = c.SendTestRecord(t.Context(), time.Now())
	texts = append(texts, err.Error(), openobserve.Explain(err))
	texts = append(texts, logs.String())

	if !strings.Contains(logs.String(), "retrying request") || !strings.Contains(logs.String(), "level=debug") {
		t.Fatalf("no debug log of the retries captured:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "level=error") || strings.Contains(logs.String(), "level=info") {
		t.Errorf("retryablehttp messages must all be at debug level:\n%s", logs.String())
	}
	for _, s := range texts {
		if strings.Contains(s, "c2VjcmV0LXVzZXI6dG9wLXNlY3JldC10b2tlbg") {
			t.Errorf("secret leaked: %s", s)
		}
	}
	if !strings.Contains(texts[0], "[redacted]") {
		t.Errorf("the echoed header should show as redacted: %s", texts[0])
	}
}

func TestSendNothing(t *testing.T) {
	c := openobserve.NewClient(options(closedPort(t)))
	res, rest, err := c.Send(t.Context(), nil)
	if err != nil || rest != nil || res != (openobserve.Result{}) {
		t.Errorf("Send(nil) = %+v, %d, %v; want a no-op", res, len(rest), err)
	}
}

func TestBatchesBoundedByBytes(t *testing.T) {
	rc := &recorder{}
	o := options("http://o2.invalid")
	o.Transport = rc
	o.MaxBatchBytes = 2000
	o.GzipMinBytes = -1
	c := openobserve.NewClient(o)
	evs := textEvents(50, time.Now())
	res, rest, err := c.Send(t.Context(), evs)
	if err != nil || rest != nil {
		t.Fatal(err)
	}
	total := 0
	for i, r := range rc.requests() {
		if len(r.body) > o.MaxBatchBytes {
			t.Errorf("request %d: %d bytes, bound %d", i, len(r.body), o.MaxBatchBytes)
		}
		var arr []json.RawMessage
		if err := json.Unmarshal(r.body, &arr); err != nil {
			t.Fatal(err)
		}
		total += len(arr)
	}
	if total != 50 || res.Requests != len(rc.requests()) || res.Requests < 2 {
		t.Errorf("records = %d over %d requests (result %+v)", total, len(rc.requests()), res)
	}
}

// At DEBUG a healthy send logs nothing: the extension's own lines come back
// as telemetry, so a line per request would feed itself forever. The
// per-request line is there at TRACE.
func TestDebugLogsNoLinePerRequest(t *testing.T) {
	for _, tt := range []struct {
		level logrus.Level
		want  bool
	}{{logrus.DebugLevel, false}, {logrus.TraceLevel, true}} {
		t.Run(tt.level.String(), func(t *testing.T) {
			var logs bytes.Buffer
			l := logrus.New()
			l.SetOutput(&logs)
			l.SetLevel(tt.level)
			_, o := inProcess(o2test.Options{})
			o.Logger = logrus.NewEntry(l)
			if _, _, err := openobserve.NewClient(o).Send(t.Context(), textEvents(3, time.Now())); err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(logs.String(), "performing request"); got != tt.want {
				t.Errorf("per-request line logged = %v, want %v:\n%s", got, tt.want, logs.String())
			}
		})
	}
}

// A split event does not straddle two requests when it fits in one: when
// the request after the first fails, the event comes back whole and, sent
// again, each of its parts is stored exactly once.
func TestSplitEventNotSentTwiceAfterAFailure(t *testing.T) {
	s := o2test.Run(t, o2test.Options{})
	o := options(s.URL())
	o.MaxRecordBytes = 1000
	o.MaxBatchBytes = 4000 // the small event and two parts fit; all parts fit alone
	o.MaxRetries = 0
	c := openobserve.NewClient(o)
	s.SetFaultFunc(failFromSecond)
	small, _ := json.Marshal(strings.Repeat("s", 900))
	text := bigText(2500)
	big, _ := json.Marshal(text)
	evs := []telemetry.Event{
		{Time: time.Now(), Type: "function", Record: small},
		{Time: time.Now(), Type: "function", Record: big},
	}
	_, rest, err := c.Send(t.Context(), evs)
	if err == nil || len(rest) != 1 {
		t.Fatalf("Send = %d undelivered, %v; want the split event back after the failing second request", len(rest), err)
	}
	s.SetFaultFunc(nil)
	if _, rest, err = c.Send(t.Context(), rest); err != nil || rest != nil {
		t.Fatalf("resend: %d undelivered, %v", len(rest), err)
	}
	seen := map[string]int{}
	var parts []string
	for _, r := range s.StreamRecords("default", "lambda") {
		if p, _ := r["part"].(string); p != "" {
			seen[p]++
			parts = append(parts, r["record"].(string))
		}
	}
	for p, n := range seen {
		if n != 1 {
			t.Errorf("part %s stored %d times", p, n)
		}
	}
	if strings.Join(parts, "") != text {
		t.Errorf("the %d stored parts do not reassemble the text (%v)", len(parts), seen)
	}
}

// A record nested past OpenObserve's parser limit (serde_json stops at 128
// levels and refuses the whole request) goes as its JSON text, marked, and
// its neighbours with it as usual.
func TestTooDeepRecordGoesAsText(t *testing.T) {
	s := o2test.Run(t, o2test.Options{})
	c := openobserve.NewClient(options(s.URL()))
	deep := strings.Repeat(`{"a":`, 150) + "1" + strings.Repeat("}", 150)
	evs := append(textEvents(3, time.Now()), telemetry.Event{Time: time.Now(), Type: "function", Record: json.RawMessage(deep)})
	res, rest, err := c.Send(t.Context(), evs)
	if err != nil || rest != nil {
		t.Fatalf("Send: %v", err)
	}
	if res.Successful != 4 {
		t.Errorf("result = %+v, want all 4 stored", res)
	}
	var marked int
	for _, r := range s.StreamRecords("default", "lambda") {
		if r["record_as_text"] == true {
			marked++
			if txt, _ := r["record"].(string); txt != deep {
				t.Errorf("record as text = %.40q..., want the record's JSON", txt)
			}
		}
	}
	if marked != 1 {
		t.Errorf("%d records marked record_as_text, want 1", marked)
	}
}

// JSON logs whose field types vary: OpenObserve refuses a value its
// column cannot take; the client counts it as a type conflict and keeps
// OpenObserve's words, which name the field and the type.
func TestTypeConflictsAreCounted(t *testing.T) {
	s := o2test.Run(t, o2test.Options{})
	c := openobserve.NewClient(options(s.URL()))
	ev := func(rec string) telemetry.Event {
		return telemetry.Event{Time: time.Now(), Type: "function", Record: json.RawMessage(rec)}
	}
	if _, _, err := c.Send(t.Context(), []telemetry.Event{ev(`{"orderId":123,"message":"a"}`)}); err != nil {
		t.Fatal(err)
	}
	res, rest, err := c.Send(t.Context(), []telemetry.Event{ev(`{"orderId":"A-17","message":"b"}`), ev(`{"orderId":18,"message":"c"}`)})
	if err != nil || rest != nil {
		t.Fatalf("Send: %v", err)
	}
	if res.Successful != 1 || res.Failed != 1 || res.TypeConflicts != 1 {
		t.Errorf("result = %+v, want 1 stored, 1 failed as a type conflict", res)
	}
	if !strings.Contains(res.Error, "Failed to cast record_orderid to type Int64") {
		t.Errorf("Error = %q, want the field and the type named", res.Error)
	}
}

// The health check's read-only probe of the organization: it tells a
// missing organization from wrong credentials where OpenObserve does, and
// never creates one, where any ingestion write by the root user would.
func TestCheckOrganization(t *testing.T) {
	s := o2test.Run(t, o2test.Options{
		Orgs:            []string{"default"},
		Credentials:     map[string]string{o2test.DefaultEmail: o2test.DefaultSecret, "dev@example.com": "devpass"},
		IngestionTokens: map[string]string{o2test.DefaultEmail: "ingest-token"},
		OrgTokens:       map[string]string{"o2oi_0123456789": "default"},
	})
	withOrg := func(org, auth string) openobserve.Options {
		o := options(s.URL())
		o.OrgCheckURL = s.URL() + "/api/" + org + "/_license"
		o.IngestURL = s.URL() + "/api/" + org + "/lambda/_json"
		o.Authorization = auth
		return o
	}
	tests := []struct {
		name, org, auth string
		want            error
		explain         string
	}{
		{"root, known org", "default", goodAuth, nil, ""},
		{"root's ingestion token", "default", o2test.BasicAuth(o2test.DefaultEmail, "ingest-token"), nil, ""},
		{"an org token", "default", o2test.BasicAuth("anyone", "o2oi_0123456789"), nil, ""},
		{"root, typo org: 404, nothing created", "defualt", goodAuth, openobserve.ErrOrgUnknown, "unknown organization: check O2_ORGANIZATION_ID"},
		{"another user, typo org: 401 names both", "defualt", o2test.BasicAuth("dev@example.com", "devpass"), nil, "wrong credentials or organization: check O2_AUTHORIZATION_HEADER (Basic base64(email:token)) and O2_ORGANIZATION_ID"},
		{"wrong password", "default", o2test.BasicAuth(o2test.DefaultEmail, "nope"), nil, "wrong credentials or organization"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := openobserve.NewClient(withOrg(tt.org, tt.auth))
			_, err := c.CheckOrganization(t.Context())
			switch {
			case tt.explain == "" && err != nil:
				t.Fatalf("CheckOrganization: %v", err)
			case tt.explain != "" && !strings.HasPrefix(openobserve.Explain(err), tt.explain):
				t.Fatalf("Explain = %q, want prefix %q", openobserve.Explain(err), tt.explain)
			case tt.want != nil && !errors.Is(err, tt.want):
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if got := s.CreatedOrgs(); len(got) != 0 {
		t.Fatalf("the checks created organizations %v", got)
	}
	// What the probe avoids: an ingestion write by root creates the typo.
	if _, err := openobserve.NewClient(withOrg("defualt", goodAuth)).CheckIngest(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := s.CreatedOrgs(); !slices.Equal(got, []string{"defualt"}) {
		t.Errorf("CreatedOrgs = %v after root's POST [], want [defualt]: the stand-in no longer models auto-create", got)
	}
}
