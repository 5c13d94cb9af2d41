package telemetry

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/o2-extension/o2-extension/internal/lambdatest"
)

// platform starts the emulated Lambda platform in in-process mode and
// registers a client, returning the runtime API address and its identifier.
func platform(t *testing.T, o lambdatest.Options) (runtimeAPI, id string, p *lambdatest.Platform) {
	t.Helper()
	p, err := lambdatest.Start(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	req, _ := http.NewRequest(http.MethodPost, "http://"+p.URL()+"/2020-01-01/extension/register", strings.NewReader(`{"events":[]}`))
	req.Header.Set("Lambda-Extension-Name", "telemetry-test")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("register: %s", resp.Status)
	}
	return p.URL(), resp.Header.Get("Lambda-Extension-Identifier"), p
}

// Subscribe against the emulated platform, which validates the request as
// lambda-platform.md §2.1 says Lambda does.
func TestSubscribe(t *testing.T) {
	good := Subscription{
		SchemaVersion: SchemaDefault,
		Types:         []string{"platform", "function", "extension"},
		Buffering:     LowLatency,
		Destination:   Destination{Protocol: "HTTP", URI: "http://sandbox.localdomain:4323"},
	}
	with := func(f func(*Subscription)) Subscription {
		s := good
		f(&s)
		return s
	}
	tests := []struct {
		name       string
		opts       lambdatest.Options
		sub        Subscription
		badID      bool
		wantErr    error // nil or ErrNotSupported
		wantStatus int   // for a *SubscribeError
		wantType   string
	}{
		{name: "subscribed", sub: good},
		{name: "runtime interface emulator", opts: lambdatest.Options{TelemetryNotSupported: true}, sub: good, wantErr: ErrNotSupported},
		{name: "buffering out of range", sub: with(func(s *Subscription) { s.Buffering.MaxItems = 5 }), wantStatus: 400, wantType: "ValidationError"},
		{name: "destination not the sandbox", sub: with(func(s *Subscription) { s.Destination.URI = "http://localhost:4323" }), wantStatus: 400, wantType: "ValidationError"},
		{name: "managed instances need 2025-01-29", opts: lambdatest.Options{ManagedInstances: true}, sub: good, wantStatus: 400},
		{name: "managed instances", opts: lambdatest.Options{ManagedInstances: true}, sub: with(func(s *Subscription) { s.SchemaVersion = SchemaManagedInstances })},
		{name: "unknown identifier", sub: good, badID: true, wantStatus: 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api, id, p := platform(t, tt.opts)
			if tt.badID {
				id = "7f1e6a2c-0000-4000-8000-000000000000"
			}
			err := Subscribe(t.Context(), http.DefaultClient, api, id, tt.sub)
			switch {
			case tt.wantStatus != 0:
				se, ok := errors.AsType[*SubscribeError](err)
				if !ok {
					t.Fatalf("err = %v, want a *SubscribeError", err)
				}
				if se.Status != tt.wantStatus || (tt.wantType != "" && se.Type != tt.wantType) || se.Message == "" {
					t.Errorf("err = %+v, want status %d type %q and a message", se, tt.wantStatus, tt.wantType)
				}
			case !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil):
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == nil && tt.wantStatus == 0 {
				subscribed := false
				for _, ev := range p.Events() {
					subscribed = subscribed || ev.Type == "platform.telemetrySubscription"
				}
				if !subscribed {
					t.Error("the platform emitted no platform.telemetrySubscription")
				}
			}
		})
	}
}

func TestSubscribeTransportErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := ln.Addr().String()
	ln.Close() // nothing listens there any more

	api, _, _ := platform(t, lambdatest.Options{})
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
