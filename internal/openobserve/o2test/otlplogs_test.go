package o2test

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	collogspb "go.opentelemetry.io/proto/slim/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/slim/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/slim/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/slim/otlp/resource/v1"
	"google.golang.org/protobuf/proto"
)

var logsNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func logsRequest(times ...time.Time) *collogspb.ExportLogsServiceRequest {
	sl := &logspb.ScopeLogs{Scope: &commonpb.InstrumentationScope{Name: "app", Version: "2.0"}}
	for i, at := range times {
		sl.LogRecords = append(sl.LogRecords, &logspb.LogRecord{
			TimeUnixNano: uint64(at.UnixNano()), SeverityNumber: logspb.SeverityNumber_SEVERITY_NUMBER_WARN,
			Body:       &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "line " + string(rune('a'+i))}},
			Attributes: []*commonpb.KeyValue{str("http.route", "/orders")},
			TraceId:    []byte{0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, 0x0c},
			SpanId:     []byte{0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74},
		})
	}
	return &collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{
		{Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", "orders")}}, ScopeLogs: []*logspb.ScopeLogs{sl}},
		{Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", "skipped")}}}, // no scope logs
	}}
}

// /v1/logs takes protobuf when the Content-Type is absent or exactly
// application/x-protobuf, JSON only for exactly application/json, and
// refuses the rest with 400 "Bad Request".
func TestOTLPLogsContentTypes(t *testing.T) {
	tests := []struct {
		name, contentType string
		json              bool
		status            int
		stored            int
	}{
		{"protobuf", "application/x-protobuf", false, 200, 1},
		{"no content type is protobuf", "", false, 200, 1},
		{"json", "application/json", true, 200, 1},
		{"json with charset", "application/json; charset=utf-8", true, 400, 0},
		{"text", "text/plain", false, 400, 0},
		{"protobuf body as json", "application/json", false, 400, 0},
		{"json body as protobuf", "application/x-protobuf", true, 400, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(Options{Now: func() time.Time { return logsNow }})
			body := marshal(t, logsRequest(logsNow), false)
			if tt.json {
				body = []byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":"` +
					strconv.FormatInt(logsNow.UnixNano(), 10) + `","traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"eee19b7ec3c1b174","body":{"stringValue":"hi"}}]}]}]}`)
			}
			h := authHeader()
			if tt.contentType != "" {
				h.Set("Content-Type", tt.contentType)
			}
			rec := do(t, s.Handler(), http.MethodPost, "/api/default/v1/logs", body, h)
			if rec.Code != tt.status || len(s.Logs()) != tt.stored {
				t.Fatalf("status %d, %d stored; want %d, %d: %s", rec.Code, len(s.Logs()), tt.status, tt.stored, rec.Body)
			}
			switch {
			case tt.status == 400 && tt.contentType != "" && !strings.HasPrefix(rec.Body.String(), `{"code":400,"message":"`):
				t.Errorf("400 body %s", rec.Body)
			case tt.name == "text" && rec.Body.String() != `{"code":400,"message":"Bad Request"}`:
				t.Errorf("400 body %s", rec.Body)
			case tt.name == "protobuf body as json" && !strings.Contains(rec.Body.String(), "Invalid json: "):
				t.Errorf("400 body %s", rec.Body)
			case tt.name == "json body as protobuf" && !strings.Contains(rec.Body.String(), "Invalid proto: "):
				t.Errorf("400 body %s", rec.Body)
			}
			if tt.status != 200 {
				return
			}
			// The reply is protobuf, even when the request and the
			// Content-Type are JSON (res.encode in otlp.rs).
			var resp collogspb.ExportLogsServiceResponse
			if err := proto.Unmarshal(rec.Body.Bytes(), &resp); err != nil || resp.PartialSuccess != nil {
				t.Errorf("reply %q: %v", rec.Body, err)
			}
			want := "application/x-protobuf"
			if tt.json {
				want = "application/json"
			}
			if ct := rec.Header().Get("Content-Type"); ct != want {
				t.Errorf("Content-Type %q, want %q", ct, want)
			}
			if l := s.Logs()[0]; l.TraceID != "5b8efff798038103d269b633813fc60c" || l.SpanID != "eee19b7ec3c1b174" {
				t.Errorf("ids %q %q", l.TraceID, l.SpanID)
			}
		})
	}
}

// The stream comes from stream-name, normalised, "default" without it;
// records outside the ingestion window are rejected in partial_success;
// the stored record is OpenObserve's.
func TestOTLPLogsStoreAndReject(t *testing.T) {
	s := New(Options{Now: func() time.Time { return logsNow }})
	h := withHeader("Content-Type", "application/x-protobuf")
	h.Set("stream-name", "Lambda-Logs")
	req := logsRequest(logsNow, logsNow.Add(-6*time.Hour), logsNow.Add(-time.Minute), logsNow.Add(25*time.Hour))
	rec := do(t, s.Handler(), http.MethodPost, "/api/default/v1/logs", marshal(t, req, false), h)
	var resp collogspb.ExportLogsServiceResponse
	if rec.Code != 200 || proto.Unmarshal(rec.Body.Bytes(), &resp) != nil {
		t.Fatalf("status %d %q", rec.Code, rec.Body)
	}
	ps := resp.GetPartialSuccess()
	if ps.GetRejectedLogRecords() != 2 || !strings.HasPrefix(ps.GetErrorMessage(), "Too far data, only future 24 hours") {
		t.Errorf("partial_success %v", ps)
	}
	logs := s.Logs()
	if len(logs) != 2 {
		t.Fatalf("%d stored, want 2", len(logs))
	}
	l := logs[1]
	if l.Org != "default" || l.Stream != "lambda_logs" || !l.Time.Equal(logsNow.Add(-time.Minute)) || l.Body != "line c" ||
		l.Resource["service.name"] != "orders" || l.Attributes["http.route"] != "/orders" || l.ScopeName != "app" {
		t.Errorf("stored %+v", l)
	}
	f := l.Fields
	for k, want := range map[string]string{
		"service_name": "orders", "http_route": "/orders", "severity": "13", "body": "line c",
		"instrumentation_library_name": "app", "instrumentation_library_version": "2.0",
		"trace_id": "5b8efff798038103d269b633813fc60c", "span_id": "eee19b7ec3c1b174", "dropped_attributes_count": "0",
		"_timestamp": strconv.FormatInt(logsNow.Add(-time.Minute).UnixMicro(), 10),
	} {
		if got := toString(f[k]); got != want {
			t.Errorf("field %s = %q, want %q", k, got, want)
		}
	}

	// Without stream-name: "default".
	h.Del("stream-name")
	do(t, s.Handler(), http.MethodPost, "/api/default/v1/logs", marshal(t, logsRequest(logsNow), false), h)
	if logs := s.Logs(); len(logs) != 3 || logs[2].Stream != "default" {
		t.Errorf("stream without the header: %+v", logs[len(logs)-1])
	}
}

func toString(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// Authentication and the organization rules come first, as for _json.
func TestOTLPLogsAuth(t *testing.T) {
	s := New(Options{Orgs: []string{"default"}, Credentials: map[string]string{DefaultEmail: DefaultSecret, "user@example.com": "pw"}})
	body := marshal(t, logsRequest(time.Now()), false)
	if rec := do(t, s.Handler(), http.MethodPost, "/api/default/v1/logs", body, nil); rec.Code != 401 {
		t.Errorf("no auth: %d", rec.Code)
	}
	user := http.Header{"Authorization": {BasicAuth("user@example.com", "pw")}}
	if rec := do(t, s.Handler(), http.MethodPost, "/api/other/v1/logs", body, user); rec.Code != 401 {
		t.Errorf("unknown org, not root: %d", rec.Code)
	}
	if rec := do(t, s.Handler(), http.MethodPost, "/api/created/v1/logs", body, authHeader()); rec.Code != 200 || len(s.CreatedOrgs()) != 1 {
		t.Errorf("unknown org, root: %d, created %v", rec.Code, s.CreatedOrgs())
	}
	if n := len(s.OTLPRequests()); n != 3 {
		t.Errorf("%d OTLP requests logged", n)
	}
}
