package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

// seenRequest is what the fake Telemetry API received.
type seenRequest struct {
	method, path, id, contentType string
	body                          []byte
}

// fakeTelemetryAPI answers every request with status and reply and reports
// what it received on the returned channel.
func fakeTelemetryAPI(t *testing.T, status int, reply string) (runtimeAPI string, seen <-chan seenRequest) {
	t.Helper()
	ch := make(chan seenRequest, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("fake API: reading body: %v", err)
		}
		ch <- seenRequest{r.Method, r.URL.Path, r.Header.Get("Lambda-Extension-Identifier"), r.Header.Get("Content-Type"), body}
		w.WriteHeader(status)
		io.WriteString(w, reply)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), ch
}

func TestSubscribe(t *testing.T) {
	sub := Subscription{
		SchemaVersion: SchemaDefault,
		Types:         []string{"platform", "function", "extension"},
		Buffering:     LowLatency,
		Destination:   Destination{Protocol: "HTTP", URI: "http://sandbox.localdomain:4323/telemetry"},
	}
	// The body of lambda-platform.md §2.1, key for key.
	wantBody := map[string]any{
		"schemaVersion": "2022-12-13",
		"types":         []any{"platform", "function", "extension"},
		"buffering":     map[string]any{"maxItems": 1000.0, "maxBytes": 262144.0, "timeoutMs": 25.0},
		"destination":   map[string]any{"protocol": "HTTP", "URI": "http://sandbox.localdomain:4323/telemetry"},
	}
	tests := []struct {
		name    string
		status  int
		reply   string
		wantErr error // nil, ErrNotSupported or a *SubscribeError
	}{
		{name: "subscribed", status: http.StatusOK, reply: `"OK"`},
		{name: "emulator stub", status: http.StatusAccepted, reply: `{"errorType":"Telemetry.NotSupported","errorMessage":"Telemetry API is not supported"}`, wantErr: ErrNotSupported},
		{
			name: "validation error", status: http.StatusBadRequest,
			reply:   `{"errorType":"ValidationError","errorMessage":"URI port is not provided; types should not be empty"}`,
			wantErr: &SubscribeError{Status: 400, Type: "ValidationError", Message: "URI port is not provided; types should not be empty"},
		},
		{
			name: "subscription closed", status: http.StatusForbidden,
			reply:   `{"errorType":"Telemetry.SubscriptionClosed","errorMessage":"subscription closed"}`,
			wantErr: &SubscribeError{Status: 403, Type: "Telemetry.SubscriptionClosed", Message: "subscription closed"},
		},
		{name: "plain-text failure", status: http.StatusInternalServerError, reply: "internal failure\n", wantErr: &SubscribeError{Status: 500, Message: "internal failure"}},
		{name: "empty failure", status: http.StatusInternalServerError, wantErr: &SubscribeError{Status: 500}},
		{name: "not found", status: http.StatusNotFound, reply: "404 page not found\n", wantErr: &SubscribeError{Status: 404, Message: "404 page not found"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api, seen := fakeTelemetryAPI(t, tt.status, tt.reply)
			err := Subscribe(t.Context(), &http.Client{}, api, "ext-id-1234", sub)

			switch want := tt.wantErr.(type) {
			case nil:
				if err != nil {
					t.Errorf("Subscribe = %v, want nil", err)
				}
			case *SubscribeError:
				var got *SubscribeError
				if !errors.As(err, &got) {
					t.Fatalf("Subscribe = %v (%T), want *SubscribeError", err, err)
				}
				if *got != *want {
					t.Errorf("Subscribe = %+v, want %+v", *got, *want)
				}
				if errors.Is(err, ErrNotSupported) {
					t.Errorf("a refusal must not read as ErrNotSupported")
				}
			default:
				if !errors.Is(err, want) {
					t.Errorf("Subscribe = %v, want %v", err, want)
				}
			}

			r := <-seen
			if r.method != http.MethodPut || r.path != "/2022-07-01/telemetry" {
				t.Errorf("request = %s %s, want PUT /2022-07-01/telemetry", r.method, r.path)
			}
			if r.id != "ext-id-1234" {
				t.Errorf("Lambda-Extension-Identifier = %q, want ext-id-1234", r.id)
			}
			if r.contentType != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", r.contentType)
			}
			var body map[string]any
			if err := json.Unmarshal(r.body, &body); err != nil {
				t.Fatalf("body %s: %v", r.body, err)
			}
			if !reflect.DeepEqual(body, wantBody) {
				t.Errorf("body = %s\nwant %v", r.body, wantBody)
			}
		})
	}
}

func TestSubscribeTransportErrors(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closedAddr := strings.TrimPrefix(closed.URL, "http://")
	closed.Close()

	api, _ := fakeTelemetryAPI(t, http.StatusOK, `"OK"`)
	canceled, cancel := context.WithCancel(t.Context())
	cancel()

	tests := []struct {
		name string
		ctx  context.Context
		addr string
	}{
		{name: "nothing listening", ctx: t.Context(), addr: closedAddr},
		{name: "canceled context", ctx: canceled, addr: api},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Subscribe(tt.ctx, &http.Client{}, tt.addr, "id", Subscription{SchemaVersion: SchemaDefault, Types: []string{"platform"}})
			if err == nil {
				t.Fatal("Subscribe succeeded")
			}
			var se *SubscribeError
			if errors.As(err, &se) || errors.Is(err, ErrNotSupported) {
				t.Errorf("transport failure reported as an answer: %v", err)
			}
			if !strings.HasPrefix(err.Error(), "telemetry: subscribe") {
				t.Errorf("error %q does not say what failed", err)
			}
		})
	}
}

func TestSubscribeErrorMessage(t *testing.T) {
	tests := []struct {
		err  SubscribeError
		want string
	}{
		{SubscribeError{Status: 400, Type: "ValidationError", Message: "bad URI"}, "telemetry: subscribe answered 400 ValidationError: bad URI"},
		{SubscribeError{Status: 500, Message: "boom"}, "telemetry: subscribe answered 500: boom"},
		{SubscribeError{Status: 403, Type: "Extension.UnknownExtensionIdentifier"}, "telemetry: subscribe answered 403 Extension.UnknownExtensionIdentifier"},
		{SubscribeError{Status: 500}, "telemetry: subscribe answered 500"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestLowLatencyWithinLimits keeps the preset inside the ranges Lambda
// accepts (lambda-platform.md §2.1); outside them it answers 400.
func TestLowLatencyWithinLimits(t *testing.T) {
	b := LowLatency
	if b.MaxItems < 1000 || b.MaxItems > 10000 {
		t.Errorf("maxItems %d outside 1000..10000", b.MaxItems)
	}
	if b.MaxBytes < 262144 || b.MaxBytes > 1048576 {
		t.Errorf("maxBytes %d outside 262144..1048576", b.MaxBytes)
	}
	if b.TimeoutMs < 25 || b.TimeoutMs > 30000 {
		t.Errorf("timeoutMs %d outside 25..30000", b.TimeoutMs)
	}
}

func TestSchemaVersions(t *testing.T) {
	// The versions the Telemetry API documents (lambda-platform.md §2.1).
	for _, v := range []string{SchemaDefault, SchemaManagedInstances} {
		if v != "2022-07-01" && v != "2022-12-13" && v != "2025-01-29" {
			t.Errorf("schema version %q is not one Lambda accepts", v)
		}
	}
	if SchemaManagedInstances != "2025-01-29" {
		t.Errorf("SchemaManagedInstances = %q, want 2025-01-29 (the only one Managed Instances accept)", SchemaManagedInstances)
	}
}
