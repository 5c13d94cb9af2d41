package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/o2-extension/o2-extension/internal/config"
	"github.com/o2-extension/o2-extension/internal/otlp"
	"github.com/o2-extension/o2-extension/internal/telemetry"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// The builder exists when either signal is on, and the URLs only for the
// signals that are, or for all three while the OTLP receiver is on (the
// function's own data goes there whatever O2_METRICS and O2_TRACES say).
func TestSignalsWiring(t *testing.T) {
	cfg := config.Default()
	cfg.Endpoint, cfg.Organization, cfg.Stream = "https://o2.example.com", "acme", "lambda_logs"
	if o := clientOptions(cfg, env(nil), nil, nil); o.LogsURL != "https://o2.example.com/api/acme/v1/logs" || o.LogsStream != "lambda_logs" {
		t.Errorf("receiver on: logs URL %q, stream %q", o.LogsURL, o.LogsStream)
	}
	cfg.Metrics, cfg.Traces = false, false
	if o := clientOptions(cfg, env(nil), nil, nil); o.MetricsURL == "" || o.TracesURL == "" || o.LogsURL == "" {
		t.Errorf("receiver on, platform signals off: URLs %q %q %q", o.MetricsURL, o.TracesURL, o.LogsURL)
	}
	cfg.Metrics, cfg.Traces = true, true
	cfg.OTLPPort = 0
	getenv := env(map[string]string{"AWS_LAMBDA_FUNCTION_NAME": "orders", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512"})
	if newBuilder(cfg, getenv) == nil {
		t.Fatal("no builder with both signals on")
	}
	o := clientOptions(cfg, getenv, nil, nil)
	if o.MetricsURL != "https://o2.example.com/api/acme/v1/metrics" || o.TracesURL != "https://o2.example.com/api/acme/v1/traces" || o.LogsURL != "" {
		t.Errorf("URLs %q %q %q", o.MetricsURL, o.TracesURL, o.LogsURL)
	}
	cfg.Traces = false
	if o := clientOptions(cfg, getenv, nil, nil); o.TracesURL != "" || o.MetricsURL == "" {
		t.Errorf("traces off: URLs %q %q", o.MetricsURL, o.TracesURL)
	}
	cfg.Metrics = false
	if newBuilder(cfg, getenv) != nil {
		t.Error("a builder with both signals off")
	}
}

// derive runs the tenant hook and the builder on every event, and keeps
// what both return.
func TestDeriveRunsBoth(t *testing.T) {
	cfg := config.Default()
	b := newBuilder(cfg, env(map[string]string{"AWS_LAMBDA_FUNCTION_NAME": "orders"}))
	tenantCalls := 0
	tenantHook := func(*telemetry.Event, time.Time) []telemetry.Event {
		tenantCalls++
		return []telemetry.Event{{Type: "tenant.memory"}}
	}
	d := derive(tenantHook, b)
	ev := telemetry.Event{Time: time.Now(), Type: "platform.report", RequestID: "r1",
		Record: json.RawMessage(`{"requestId":"r1","status":"success","metrics":{"durationMs":5}}`)}
	out := d(&ev, time.Now())
	types := map[string]int{}
	for _, e := range out {
		types[e.Type]++
	}
	if tenantCalls != 1 || types["tenant.memory"] != 1 || types[otlp.MetricsType] != 1 || types[otlp.TracesType] != 1 {
		t.Errorf("derived %v after %d tenant calls", types, tenantCalls)
	}
	if derive(nil, nil) != nil {
		t.Error("derive of nothing is not nil")
	}
}
