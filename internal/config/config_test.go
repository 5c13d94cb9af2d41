package config_test

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/o2-extension/o2-extension/internal/config"
)

// validAuth is a well-formed Basic value that decodes to "email:password".
var validAuth = "Basic " + base64.StdEncoding.EncodeToString([]byte("dev@example.com:ingest-token"))

// getenv turns a map into the getenv func Load takes.
func getenv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// environ turns a map into the environment list Load takes, sorted.
func environ(m map[string]string) []string {
	var env []string
	for k, v := range m {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	return env
}

// load calls Load with m as the whole environment.
func load(m map[string]string) (config.Config, []string, error) {
	return config.Load(getenv(m), environ(m))
}

// withRequired returns the two required variables plus extra.
func withRequired(extra map[string]string) map[string]string {
	m := map[string]string{"O2_ORGANIZATION_ID": "acme", "O2_AUTHORIZATION_HEADER": validAuth}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

// loadedDefault is what Load returns for withRequired(nil).
func loadedDefault() config.Config {
	c := config.Default()
	c.Organization = "acme"
	c.Authorization = validAuth
	return c
}

// problems splits a joined error into its messages.
func problems(err error) []string {
	if err == nil {
		return nil
	}
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []string{err.Error()}
	}
	var out []string
	for _, e := range j.Unwrap() {
		out = append(out, e.Error())
	}
	return out
}

func TestDefault(t *testing.T) {
	want := config.Config{
		Endpoint:               "https://api.openobserve.ai",
		Stream:                 "default",
		AuthSecretKey:          "authorization",
		BatchSize:              1000,
		MaxBatchBytes:          1048576,
		MaxRecordBytes:         262144,
		FlushInterval:          500 * time.Millisecond,
		MaxInFlight:            4,
		MaxBufferBytes:         10 << 20,
		RequestTimeout:         30 * time.Second,
		MaxRetries:             3,
		InitialRetryDelay:      100 * time.Millisecond,
		MaxRetryDelay:          time.Second,
		LogLevel:               "info",
		OTLPPort:               4318,
		FlushStrategy:          config.StrategyAuto,
		HighFrequencyThreshold: 10,
		RateWindow:             5 * time.Minute,
		LongRunning:            30 * time.Second,
		FlushBudget:            2 * time.Second,
		Metrics:                true,
		Traces:                 true,
		TenantReport:           true,
		TenantMessage:          "customer-memory-report",
		TenantField:            "customerId",
		TenantEMFNamespace:     "CustomerMemoryReport",
		TenantEMFMetric:        "CustomerMemoryUsage",
		TenantEMFDimension:     "CustomerId",
	}
	if got := config.Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("Default() =\n%+v\nwant\n%+v", got, want)
	}

	// Only the two required settings are missing from the defaults.
	got := problems(config.Default().Validate())
	wantProblems := []string{"O2_ORGANIZATION_ID is required", "O2_AUTHORIZATION_HEADER is required"}
	if len(got) != len(wantProblems) {
		t.Fatalf("Default().Validate() = %q, want %d problems", got, len(wantProblems))
	}
	for i, w := range wantProblems {
		if !strings.HasPrefix(got[i], w) {
			t.Errorf("problem %d = %q, want prefix %q", i, got[i], w)
		}
	}

	// Empty or blank variables mean the default.
	blank := withRequired(nil)
	for _, v := range config.Variables() {
		if _, ok := blank[v.Name]; !ok {
			blank[v.Name] = "  \t"
		}
	}
	for _, env := range []map[string]string{withRequired(nil), blank} {
		c, _, err := load(env)
		if err != nil {
			t.Fatalf("Load(required only) error: %v", err)
		}
		if !reflect.DeepEqual(c, loadedDefault()) {
			t.Errorf("Load(required only) =\n%+v\nwant\n%+v", c, loadedDefault())
		}
	}
}

func TestLoadParsesEachVariable(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		apply func(c *config.Config)
	}{
		{"endpoint", map[string]string{"O2_ENDPOINT": "https://o2.example.com:5080"},
			func(c *config.Config) { c.Endpoint = "https://o2.example.com:5080" }},
		{"endpoint trailing slashes trimmed", map[string]string{"O2_ENDPOINT": " http://localhost:5080// "},
			func(c *config.Config) { c.Endpoint = "http://localhost:5080" }},
		{"endpoint with base path", map[string]string{"O2_ENDPOINT": "https://example.com/openobserve/"},
			func(c *config.Config) { c.Endpoint = "https://example.com/openobserve" }},
		{"organization trimmed", map[string]string{"O2_ORGANIZATION_ID": "  my org  "},
			func(c *config.Config) { c.Organization = "my org" }},
		{"stream", map[string]string{"O2_STREAM": "lambda_logs"},
			func(c *config.Config) { c.Stream = "lambda_logs" }},
		{"authorization trimmed", map[string]string{"O2_AUTHORIZATION_HEADER": "  " + validAuth + "\n"},
			func(c *config.Config) { c.Authorization = validAuth }},
		{"batch size", map[string]string{"O2_BATCH_SIZE": "500"},
			func(c *config.Config) { c.BatchSize = 500 }},
		{"batch size bounds", map[string]string{"O2_BATCH_SIZE": "10000", "O2_MAX_RETRIES": "0"},
			func(c *config.Config) { c.BatchSize = 10000; c.MaxRetries = 0 }},
		{"max batch bytes", map[string]string{"O2_MAX_BATCH_BYTES": "1048576"},
			func(c *config.Config) { c.MaxBatchBytes = 1 << 20 }},
		{"max record bytes", map[string]string{"O2_MAX_RECORD_BYTES": "1024"},
			func(c *config.Config) { c.MaxRecordBytes = 1024 }},
		{"record bytes default follows a smaller batch bound", map[string]string{"O2_MAX_BATCH_BYTES": "65536"},
			func(c *config.Config) { c.MaxBatchBytes = 65536; c.MaxRecordBytes = 65536 }},
		{"flush interval", map[string]string{"O2_FLUSH_INTERVAL_MS": "250"},
			func(c *config.Config) { c.FlushInterval = 250 * time.Millisecond }},
		{"max buffer size", map[string]string{"O2_MAX_BUFFER_SIZE_MB": "64"},
			func(c *config.Config) { c.MaxBufferBytes = 64 << 20 }},
		{"request timeout", map[string]string{"O2_REQUEST_TIMEOUT_MS": "1500"},
			func(c *config.Config) { c.RequestTimeout = 1500 * time.Millisecond }},
		{"max retries", map[string]string{"O2_MAX_RETRIES": "10"},
			func(c *config.Config) { c.MaxRetries = 10 }},
		{"retry delays", map[string]string{"O2_INITIAL_RETRY_DELAY_MS": "200", "O2_MAX_RETRY_DELAY_MS": "200"},
			func(c *config.Config) {
				c.InitialRetryDelay = 200 * time.Millisecond
				c.MaxRetryDelay = 200 * time.Millisecond
			}},
		{"initial delay default follows a smaller max", map[string]string{"O2_MAX_RETRY_DELAY_MS": "50"},
			func(c *config.Config) {
				c.InitialRetryDelay = 50 * time.Millisecond
				c.MaxRetryDelay = 50 * time.Millisecond
			}},
		{"log level lower-cased", map[string]string{"O2_LOG_LEVEL": "DEBUG"},
			func(c *config.Config) { c.LogLevel = "debug" }},
		{"log level warning is warn", map[string]string{"O2_LOG_LEVEL": "Warning"},
			func(c *config.Config) { c.LogLevel = "warn" }},
		{"log level trace", map[string]string{"O2_LOG_LEVEL": "trace"},
			func(c *config.Config) { c.LogLevel = "trace" }},
		{"listener port", map[string]string{"O2_LISTENER_PORT": "4243"},
			func(c *config.Config) { c.ListenerPort = 4243 }},
		{"listener port bounds", map[string]string{"O2_LISTENER_PORT": "65535"},
			func(c *config.Config) { c.ListenerPort = 65535 }},
		{"otlp port", map[string]string{"O2_OTLP_PORT": "14318"},
			func(c *config.Config) { c.OTLPPort = 14318 }},
		{"otlp port off", map[string]string{"O2_OTLP_PORT": "0"},
			func(c *config.Config) { c.OTLPPort = 0 }},
		{"flush strategy case-insensitive", map[string]string{"O2_FLUSH_STRATEGY": "Continuous"},
			func(c *config.Config) { c.FlushStrategy = config.StrategyContinuous }},
		{"flush strategy end", map[string]string{"O2_FLUSH_STRATEGY": "end"},
			func(c *config.Config) { c.FlushStrategy = config.StrategyEnd }},
		{"flush strategy periodic", map[string]string{"O2_FLUSH_STRATEGY": "PERIODIC"},
			func(c *config.Config) { c.FlushStrategy = config.StrategyPeriodic }},
		{"high frequency threshold", map[string]string{"O2_HIGH_FREQUENCY_THRESHOLD": "2.5"},
			func(c *config.Config) { c.HighFrequencyThreshold = 2.5 }},
		{"rate window", map[string]string{"O2_RATE_WINDOW_MS": "60000"},
			func(c *config.Config) { c.RateWindow = time.Minute }},
		{"long running", map[string]string{"O2_LONG_RUNNING_MS": "900000"},
			func(c *config.Config) { c.LongRunning = 15 * time.Minute }},
		{"flush budget", map[string]string{"O2_FLUSH_BUDGET_MS": "50"},
			func(c *config.Config) { c.FlushBudget = 50 * time.Millisecond }},
		{"fields", map[string]string{"O2_FIELDS": " env = prod , team=core,Build_2=a=b, ,"},
			func(c *config.Config) { c.Fields = map[string]string{"env": "prod", "team": "core", "Build_2": "a=b"} }},
		{"fields empty value", map[string]string{"O2_FIELDS": "env="},
			func(c *config.Config) { c.Fields = map[string]string{"env": ""} }},
		{"fields only commas", map[string]string{"O2_FIELDS": ",,"},
			func(c *config.Config) {}},
		{"exclude types", map[string]string{"O2_EXCLUDE_TYPES": " platform.start, platform.runtimeDone,,platform.start "},
			func(c *config.Config) { c.ExcludeTypes = []string{"platform.start", "platform.runtimeDone"} }},
		{"exclude types prefix", map[string]string{"O2_EXCLUDE_TYPES": "platform.*,extension"},
			func(c *config.Config) { c.ExcludeTypes = []string{"platform.*", "extension"} }},
		{"exclude types only commas", map[string]string{"O2_EXCLUDE_TYPES": ", ,"},
			func(c *config.Config) {}},
		{"min level lower-case", map[string]string{"O2_MIN_LEVEL": "error"},
			func(c *config.Config) { c.MinLevel = "ERROR" }},
		{"min level WARNING", map[string]string{"O2_MIN_LEVEL": "Warning"},
			func(c *config.Config) { c.MinLevel = "WARN" }},
		{"min level CRITICAL", map[string]string{"O2_MIN_LEVEL": "CRITICAL"},
			func(c *config.Config) { c.MinLevel = "FATAL" }},
		{"metrics off", map[string]string{"O2_METRICS": "false"},
			func(c *config.Config) { c.Metrics = false }},
		{"traces off", map[string]string{"O2_TRACES": "0"},
			func(c *config.Config) { c.Traces = false }},
		{"tenant report off", map[string]string{"O2_TENANT_REPORT": "off"},
			func(c *config.Config) { c.TenantReport = false }},
		{"tenant report 0", map[string]string{"O2_TENANT_REPORT": "0"},
			func(c *config.Config) { c.TenantReport = false }},
		{"tenant report NO", map[string]string{"O2_TENANT_REPORT": "NO"},
			func(c *config.Config) { c.TenantReport = false }},
		{"tenant report false", map[string]string{"O2_TENANT_REPORT": "False"},
			func(c *config.Config) { c.TenantReport = false }},
		{"tenant message", map[string]string{"O2_TENANT_MESSAGE": "mem"},
			func(c *config.Config) { c.TenantMessage = "mem" }},
		{"tenant field", map[string]string{"O2_TENANT_FIELD": "tenant"},
			func(c *config.Config) { c.TenantField = "tenant" }},
		{"tenant stream", map[string]string{"O2_TENANT_STREAM": "tenants"},
			func(c *config.Config) { c.TenantStream = "tenants" }},
		{"tenant emf yes", map[string]string{"O2_TENANT_EMF": "yes"},
			func(c *config.Config) { c.TenantEMF = true }},
		{"tenant emf on", map[string]string{"O2_TENANT_EMF": "ON"},
			func(c *config.Config) { c.TenantEMF = true }},
		{"tenant emf 1", map[string]string{"O2_TENANT_EMF": "1"},
			func(c *config.Config) { c.TenantEMF = true }},
		{"tenant emf true", map[string]string{"O2_TENANT_EMF": "true"},
			func(c *config.Config) { c.TenantEMF = true }},
		{"tenant emf names", map[string]string{
			"O2_TENANT_EMF_NAMESPACE": "NS", "O2_TENANT_EMF_METRIC": "Mem", "O2_TENANT_EMF_DIMENSION": "Tenant"},
			func(c *config.Config) {
				c.TenantEMFNamespace, c.TenantEMFMetric, c.TenantEMFDimension = "NS", "Mem", "Tenant"
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := loadedDefault()
			tt.apply(&want)
			got, _, err := load(withRequired(tt.env))
			if err != nil {
				t.Fatalf("Load error: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Load =\n%+v\nwant\n%+v", got, want)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate() of the loaded config: %v", err)
			}
		})
	}
}

// allSet sets every variable to a valid value different from its default.
var allSet = map[string]string{
	"O2_ENDPOINT":             "http://127.0.0.1:5080",
	"O2_ORGANIZATION_ID":      "org1",
	"O2_STREAM":               "logs",
	"O2_AUTHORIZATION_HEADER": "Basic b3BzQGV4YW1wbGUuY29tOm90aGVy", // ops@example.com:other
	// Only one credential source may be set: Load(allSet) reports that one
	// problem and nothing else.
	"O2_AUTHORIZATION_HEADER_SECRET_ARN":    "arn:aws:secretsmanager:eu-west-1:123456789012:secret:o2/ingest-AbCdEf",
	"O2_AUTHORIZATION_HEADER_SECRET_KEY":    "header",
	"O2_AUTHORIZATION_HEADER_SSM_PARAMETER": "/o2/ingest",
	"O2_BATCH_SIZE":                         "7",
	"O2_MAX_BATCH_BYTES":                    "131072",
	"O2_MAX_RECORD_BYTES":                   "2048",
	"O2_FLUSH_INTERVAL_MS":                  "3000",
	"O2_MAX_IN_FLIGHT":                      "2",
	"O2_MAX_BUFFER_SIZE_MB":                 "2",
	"O2_REQUEST_TIMEOUT_MS":                 "700",
	"O2_MAX_RETRIES":                        "1",
	"O2_INITIAL_RETRY_DELAY_MS":             "20",
	"O2_MAX_RETRY_DELAY_MS":                 "40",
	"O2_LOG_LEVEL":                          "error",
	"O2_LISTENER_PORT":                      "7070",
	"O2_OTLP_PORT":                          "7071",
	"O2_FLUSH_STRATEGY":                     "periodic",
	"O2_HIGH_FREQUENCY_THRESHOLD":           "30",
	"O2_RATE_WINDOW_MS":                     "20000",
	"O2_LONG_RUNNING_MS":                    "5000",
	"O2_FLUSH_BUDGET_MS":                    "300",
	"O2_FIELDS":                             "env=test",
	"O2_EXCLUDE_TYPES":                      "platform.start",
	"O2_MIN_LEVEL":                          "warn",
	"O2_METRICS":                            "false",
	"O2_TRACES":                             "off",
	"O2_TENANT_REPORT":                      "false",
	"O2_TENANT_MESSAGE":                     "m",
	"O2_TENANT_FIELD":                       "f",
	"O2_TENANT_STREAM":                      "s",
	"O2_TENANT_EMF":                         "true",
	"O2_TENANT_EMF_NAMESPACE":               "n",
	"O2_TENANT_EMF_METRIC":                  "x",
	"O2_TENANT_EMF_DIMENSION":               "d",
}

// TestEveryVariableIsRead proves that Variables() and Load cover every
// Config field: each variable set in allSet changes a different field.
func TestEveryVariableIsRead(t *testing.T) {
	vars := config.Variables()
	fields := 0 // the exported ones, which come first
	for f := range reflect.TypeFor[config.Config]().Fields() {
		if f.IsExported() {
			fields++
		}
	}
	if len(vars) != fields || len(allSet) != fields {
		t.Fatalf("Variables() has %d entries, allSet %d, Config %d fields", len(vars), len(allSet), fields)
	}
	for _, v := range vars {
		if _, ok := allSet[v.Name]; !ok {
			t.Errorf("variable %s is not in the test's env map", v.Name)
		}
		if v.Description == "" {
			t.Errorf("variable %s has no description", v.Name)
		}
	}

	got, _, err := load(allSet)
	if p := problems(err); len(p) != 1 || !strings.Contains(p[0], "give exactly one source of the credential") {
		t.Fatalf("Load(allSet) problems %q, want only the one about the three credential sources", p)
	}
	gv, dv := reflect.ValueOf(got), reflect.ValueOf(config.Default())
	for i := range fields {
		if reflect.DeepEqual(gv.Field(i).Interface(), dv.Field(i).Interface()) {
			t.Errorf("field %s kept its default: no variable set it", gv.Type().Field(i).Name)
		}
	}

	// Each variable alone changes its own field only, except that a smaller
	// maximum also lowers the default that depends on it.
	for _, v := range vars {
		t.Run(v.Name, func(t *testing.T) {
			env := withRequired(map[string]string{v.Name: allSet[v.Name]})
			base := loadedDefault()
			if v.Name == "O2_AUTHORIZATION_HEADER_SECRET_ARN" || v.Name == "O2_AUTHORIZATION_HEADER_SSM_PARAMETER" {
				// Another source of the credential, instead of the plain one.
				delete(env, "O2_AUTHORIZATION_HEADER")
				base.Authorization = ""
			}
			c, _, err := load(env)
			if err != nil {
				t.Fatalf("Load error: %v", err)
			}
			cv, lv := reflect.ValueOf(c), reflect.ValueOf(base)
			var changed []string
			for i := range fields {
				if !reflect.DeepEqual(cv.Field(i).Interface(), lv.Field(i).Interface()) {
					changed = append(changed, cv.Type().Field(i).Name)
				}
			}
			want := 1
			if v.Name == "O2_MAX_BATCH_BYTES" || v.Name == "O2_MAX_RETRY_DELAY_MS" {
				want = 2
			}
			if len(changed) != want {
				t.Errorf("%s changed fields %v, want %d", v.Name, changed, want)
			}
		})
	}
}

// TestLoadRefuses covers the settings without which nothing can be sent: a
// bad value is an error (the extension fails open) and keeps the default.
func TestLoadRefuses(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want []string // substrings of the single problem; the first is its prefix
	}{
		{name: "endpoint scheme", env: map[string]string{"O2_ENDPOINT": "ftp://files.example.com"},
			want: []string{`O2_ENDPOINT: "ftp://files.example.com" is not an absolute http:// or https:// URL with a host`}},
		{name: "endpoint without scheme", env: map[string]string{"O2_ENDPOINT": "api.openobserve.ai"},
			want: []string{"O2_ENDPOINT:", "http:// or https://", "api.openobserve.ai"}},
		{name: "endpoint without host", env: map[string]string{"O2_ENDPOINT": "https://"},
			want: []string{"O2_ENDPOINT:", "with a host"}},
		{name: "endpoint unparsable", env: map[string]string{"O2_ENDPOINT": "http://[::1"},
			want: []string{"O2_ENDPOINT:", "http:// or https://"}},
		{name: "endpoint query", env: map[string]string{"O2_ENDPOINT": "https://o2.example.com?x=1"},
			want: []string{"O2_ENDPOINT:", "must not have a query or fragment"}},
		{name: "endpoint fragment", env: map[string]string{"O2_ENDPOINT": "https://o2.example.com/#x"},
			want: []string{"O2_ENDPOINT:", "must not have a query or fragment"}},
		{name: "endpoint credentials", env: map[string]string{"O2_ENDPOINT": "https://bob:hunter2@o2.example.com"},
			want: []string{"O2_ENDPOINT:", "must not contain credentials", "O2_AUTHORIZATION_HEADER", "xxxxx@o2.example.com"}},
		{name: "organization missing", env: map[string]string{"O2_ORGANIZATION_ID": ""},
			want: []string{"O2_ORGANIZATION_ID is required"}},
		{name: "organization blank", env: map[string]string{"O2_ORGANIZATION_ID": "  \t "},
			want: []string{"O2_ORGANIZATION_ID is required"}},
		{name: "authorization missing", env: map[string]string{"O2_AUTHORIZATION_HEADER": ""},
			want: []string{"O2_AUTHORIZATION_HEADER is required", "'<scheme> <credentials>'"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := load(withRequired(tt.env))
			ps := problems(err)
			if len(ps) != 1 {
				t.Fatalf("Load problems = %q, want 1", ps)
			}
			if !strings.HasPrefix(ps[0], tt.want[0]) {
				t.Errorf("problem = %q, want prefix %q", ps[0], tt.want[0])
			}
			for _, w := range tt.want[1:] {
				if !strings.Contains(ps[0], w) {
					t.Errorf("problem = %q, want it to contain %q", ps[0], w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "bob") {
				t.Errorf("endpoint credentials leaked: %q", err)
			}
			if got.Endpoint != "https://api.openobserve.ai" {
				t.Errorf("Endpoint = %q, want the default", got.Endpoint)
			}
		})
	}
}

// TestLoadRepairs: a bad tunable never stops forwarding. A number out of
// range is clamped to the nearest allowed value, anything else unreadable
// gets the default, each with exactly one warning that names the variable
// and the value used, and Load returns no error.
func TestLoadRepairs(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		warn  string // the one warning, in full
		apply func(c *config.Config)
	}{
		{"batch size too big", map[string]string{"O2_BATCH_SIZE": "100000"},
			"O2_BATCH_SIZE: 100000 is out of range (allowed 1..10000); using 10000",
			func(c *config.Config) { c.BatchSize = 10000 }},
		{"batch size zero", map[string]string{"O2_BATCH_SIZE": "0"},
			"O2_BATCH_SIZE: 0 is out of range (allowed 1..10000); using 1",
			func(c *config.Config) { c.BatchSize = 1 }},
		{"batch size overflow", map[string]string{"O2_BATCH_SIZE": "99999999999999999999"},
			`O2_BATCH_SIZE: "99999999999999999999" is out of range (allowed 1..10000); using 10000`,
			func(c *config.Config) { c.BatchSize = 10000 }},
		{"batch size negative overflow", map[string]string{"O2_BATCH_SIZE": "-99999999999999999999"},
			`O2_BATCH_SIZE: "-99999999999999999999" is out of range (allowed 1..10000); using 1`,
			func(c *config.Config) { c.BatchSize = 1 }},
		{"batch size not a number", map[string]string{"O2_BATCH_SIZE": "abc"},
			`O2_BATCH_SIZE: "abc" is not a whole number (allowed 1..10000); using the default 1000`, nil},
		{"batch size fraction", map[string]string{"O2_BATCH_SIZE": "1.5"},
			`O2_BATCH_SIZE: "1.5" is not a whole number (allowed 1..10000); using the default 1000`, nil},
		{"long value cut", map[string]string{"O2_BATCH_SIZE": strings.Repeat("9x", 100)},
			`O2_BATCH_SIZE: "` + strings.Repeat("9x", 32) + `…" is not a whole number (allowed 1..10000); using the default 1000`, nil},
		{"max batch bytes low", map[string]string{"O2_MAX_BATCH_BYTES": "65535"},
			"O2_MAX_BATCH_BYTES: 65535 is out of range (allowed 65536..67108864 bytes); using 65536",
			func(c *config.Config) { c.MaxBatchBytes = 65536; c.MaxRecordBytes = 65536 }},
		{"max batch bytes with unit", map[string]string{"O2_MAX_BATCH_BYTES": "4MiB"},
			`O2_MAX_BATCH_BYTES: "4MiB" is not a whole number (allowed 65536..67108864 bytes); using the default 1048576`, nil},
		{"max record bytes low", map[string]string{"O2_MAX_RECORD_BYTES": "1023"},
			"O2_MAX_RECORD_BYTES: 1023 is out of range (allowed 1024..67108864 bytes); using 1024",
			func(c *config.Config) { c.MaxRecordBytes = 1024 }},
		{"max record bytes above batch bytes",
			map[string]string{"O2_MAX_BATCH_BYTES": "65536", "O2_MAX_RECORD_BYTES": "131072"},
			"O2_MAX_RECORD_BYTES: 131072 is larger than O2_MAX_BATCH_BYTES (65536): a record must fit in one request; using 65536",
			func(c *config.Config) { c.MaxBatchBytes = 65536; c.MaxRecordBytes = 65536 }},
		{"flush interval low", map[string]string{"O2_FLUSH_INTERVAL_MS": "50"},
			"O2_FLUSH_INTERVAL_MS: 50 is out of range (allowed 100..600000); using 100",
			func(c *config.Config) { c.FlushInterval = 100 * time.Millisecond }},
		{"flush interval high", map[string]string{"O2_FLUSH_INTERVAL_MS": "600001"},
			"O2_FLUSH_INTERVAL_MS: 600001 is out of range (allowed 100..600000); using 600000",
			func(c *config.Config) { c.FlushInterval = 10 * time.Minute }},
		{"flush interval overflow", map[string]string{"O2_FLUSH_INTERVAL_MS": "9223372036854775807"},
			`O2_FLUSH_INTERVAL_MS: "9223372036854775807" is out of range (allowed 100..600000); using 600000`,
			func(c *config.Config) { c.FlushInterval = 10 * time.Minute }},
		{"flush interval with unit", map[string]string{"O2_FLUSH_INTERVAL_MS": "5s"},
			`O2_FLUSH_INTERVAL_MS: "5s" is not a whole number of milliseconds (allowed 100..600000); using the default 500`, nil},
		{"buffer size zero", map[string]string{"O2_MAX_BUFFER_SIZE_MB": "0", "O2_MAX_BATCH_BYTES": "65536"},
			"O2_MAX_BUFFER_SIZE_MB: 0 is out of range (allowed 1..1024); using 1",
			func(c *config.Config) { c.MaxBufferBytes = 1 << 20; c.MaxBatchBytes = 65536; c.MaxRecordBytes = 65536 }},
		{"buffer size high", map[string]string{"O2_MAX_BUFFER_SIZE_MB": "99999999999"},
			"O2_MAX_BUFFER_SIZE_MB: 1073741824 is out of range (allowed 1..1024); using 1024",
			func(c *config.Config) { c.MaxBufferBytes = 1 << 30 }},
		{"buffer size fraction", map[string]string{"O2_MAX_BUFFER_SIZE_MB": "0.5"},
			`O2_MAX_BUFFER_SIZE_MB: "0.5" is not a whole number (allowed 1..1024); using the default 10`, nil},
		{"request timeout low", map[string]string{"O2_REQUEST_TIMEOUT_MS": "99"},
			"O2_REQUEST_TIMEOUT_MS: 99 is out of range (allowed 100..300000); using 100",
			func(c *config.Config) { c.RequestTimeout = 100 * time.Millisecond }},
		{"retries negative", map[string]string{"O2_MAX_RETRIES": "-1"},
			"O2_MAX_RETRIES: -1 is out of range (allowed 0..10); using 0",
			func(c *config.Config) { c.MaxRetries = 0 }},
		{"retries not a number", map[string]string{"O2_MAX_RETRIES": "three"},
			`O2_MAX_RETRIES: "three" is not a whole number (allowed 0..10); using the default 3`, nil},
		{"initial delay above max",
			map[string]string{"O2_INITIAL_RETRY_DELAY_MS": "5000", "O2_MAX_RETRY_DELAY_MS": "500"},
			"O2_INITIAL_RETRY_DELAY_MS: 5000 is larger than O2_MAX_RETRY_DELAY_MS (500); using 500",
			func(c *config.Config) {
				c.MaxRetryDelay = 500 * time.Millisecond
				c.InitialRetryDelay = 500 * time.Millisecond
			}},
		{"max delay low", map[string]string{"O2_MAX_RETRY_DELAY_MS": "9"},
			"O2_MAX_RETRY_DELAY_MS: 9 is out of range (allowed 10..300000); using 10",
			func(c *config.Config) {
				c.MaxRetryDelay = 10 * time.Millisecond
				c.InitialRetryDelay = 10 * time.Millisecond
			}},
		{"log level", map[string]string{"O2_LOG_LEVEL": "verbose"},
			`O2_LOG_LEVEL: "verbose" is not a log level (allowed trace, debug, info, warn, error); using the default info`, nil},
		{"port privileged", map[string]string{"O2_LISTENER_PORT": "80"},
			"O2_LISTENER_PORT: 80 is out of range (allowed 0 or 1024..65535, except 9001); using the default 0", nil},
		{"port runtime api", map[string]string{"O2_LISTENER_PORT": "9001"},
			"O2_LISTENER_PORT: 9001 is reserved by the Lambda Runtime API (allowed 0 or 1024..65535, except 9001); using the default 0", nil},
		{"port not a number", map[string]string{"O2_LISTENER_PORT": "http"},
			`O2_LISTENER_PORT: "http" is not a whole number (allowed 0 or 1024..65535, except 9001); using the default 0`, nil},
		{"otlp port out of range", map[string]string{"O2_OTLP_PORT": "99999"},
			"O2_OTLP_PORT: 99999 is out of range (allowed 0 or 1024..65535, except 9001); using the default 4318", nil},
		{"otlp port privileged", map[string]string{"O2_OTLP_PORT": "-1"},
			"O2_OTLP_PORT: -1 is out of range (allowed 0 or 1024..65535, except 9001); using the default 4318", nil},
		{"otlp port runtime api", map[string]string{"O2_OTLP_PORT": "9001"},
			"O2_OTLP_PORT: 9001 is reserved by the Lambda Runtime API (allowed 0 or 1024..65535, except 9001); using the default 4318", nil},
		{"otlp port not a number", map[string]string{"O2_OTLP_PORT": "4318/tcp"},
			`O2_OTLP_PORT: "4318/tcp" is not a whole number (allowed 0 or 1024..65535, except 9001); using the default 4318`, nil},
		{"otlp port is the listener's", map[string]string{"O2_LISTENER_PORT": "4318"},
			"O2_OTLP_PORT and O2_LISTENER_PORT are both 4318: the OTLP receiver is turned off; give it another port",
			func(c *config.Config) { c.ListenerPort, c.OTLPPort = 4318, 0 }},
		{"strategy", map[string]string{"O2_FLUSH_STRATEGY": "sometimes"},
			`O2_FLUSH_STRATEGY: "sometimes" is not a flush strategy (allowed auto, end, continuous, periodic); using the default auto`, nil},
		{"threshold zero", map[string]string{"O2_HIGH_FREQUENCY_THRESHOLD": "0"},
			"O2_HIGH_FREQUENCY_THRESHOLD: 0 is out of range (allowed >0..100000); using the default 10", nil},
		{"threshold high", map[string]string{"O2_HIGH_FREQUENCY_THRESHOLD": "100000.5"},
			"O2_HIGH_FREQUENCY_THRESHOLD: 100000.5 is out of range (allowed >0..100000); using 100000",
			func(c *config.Config) { c.HighFrequencyThreshold = 100000 }},
		{"threshold overflow", map[string]string{"O2_HIGH_FREQUENCY_THRESHOLD": "1e400"},
			`O2_HIGH_FREQUENCY_THRESHOLD: "1e400" is out of range (allowed >0..100000); using 100000`,
			func(c *config.Config) { c.HighFrequencyThreshold = 100000 }},
		{"threshold NaN", map[string]string{"O2_HIGH_FREQUENCY_THRESHOLD": "NaN"},
			`O2_HIGH_FREQUENCY_THRESHOLD: "NaN" is not a number (allowed >0..100000); using the default 10`, nil},
		{"rate window low", map[string]string{"O2_RATE_WINDOW_MS": "9999"},
			"O2_RATE_WINDOW_MS: 9999 is out of range (allowed 10000..3600000); using 10000",
			func(c *config.Config) { c.RateWindow = 10 * time.Second }},
		{"long running high", map[string]string{"O2_LONG_RUNNING_MS": "900001"},
			"O2_LONG_RUNNING_MS: 900001 is out of range (allowed 1000..900000); using 900000",
			func(c *config.Config) { c.LongRunning = 15 * time.Minute }},
		{"flush budget low", map[string]string{"O2_FLUSH_BUDGET_MS": "49"},
			"O2_FLUSH_BUDGET_MS: 49 is out of range (allowed 50..60000); using 50",
			func(c *config.Config) { c.FlushBudget = 50 * time.Millisecond }},
		{"fields without =", map[string]string{"O2_FIELDS": "env=prod,team"},
			`O2_FIELDS: entry "team" is not key=value; using the default (none)`, nil},
		{"fields reserved key", map[string]string{"O2_FIELDS": "type=x"},
			`O2_FIELDS: key "type" is reserved (reserved: _timestamp, type, record, requestId, level, trace_id, span_id, part, truncated, record_as_text, function_name, function_version, region, memory_size_mb); using the default (none)`, nil},
		{"fields reserved by the encoder", map[string]string{"O2_FIELDS": "part=x,truncated=y"},
			`O2_FIELDS: key "part" is reserved (reserved: _timestamp, type, record, requestId, level, trace_id, span_id, part, truncated, record_as_text, function_name, function_version, region, memory_size_mb); O2_FIELDS: key "truncated" is reserved (reserved: _timestamp, type, record, requestId, level, trace_id, span_id, part, truncated, record_as_text, function_name, function_version, region, memory_size_mb); using the default (none)`, nil},
		{"fields every problem at once", map[string]string{"O2_FIELDS": "x,a-b=1,ok=3,ok=4"},
			`O2_FIELDS: entry "x" is not key=value; O2_FIELDS: key "ok" is given twice; O2_FIELDS: key "a-b" may contain only letters, digits and '_'; using the default (none)`, nil},
		{"exclude types bad entry", map[string]string{"O2_EXCLUDE_TYPES": "platform.start,plat form"},
			`O2_EXCLUDE_TYPES: "plat form" is not an event type (letters and '.', or a prefix ending in '*', e.g. platform.start or platform.*); using the default (none)`, nil},
		{"min level unknown", map[string]string{"O2_MIN_LEVEL": "loud"},
			`O2_MIN_LEVEL: "LOUD" is not a level (allowed TRACE, DEBUG, INFO, WARN, ERROR, FATAL); using the default (none)`, nil},
		{"tenant report", map[string]string{"O2_TENANT_REPORT": "maybe"},
			`O2_TENANT_REPORT: "maybe" is not a boolean (allowed true/false, 1/0, yes/no, on/off); using the default true`, nil},
		{"endpoint ending in /api", map[string]string{"O2_ENDPOINT": "https://o2.example.com/api/"},
			`O2_ENDPOINT: "https://o2.example.com/api" ends in /api, which the extension appends itself (it wants the server's base URL); using https://o2.example.com`,
			func(c *config.Config) { c.Endpoint = "https://o2.example.com" }},
		{"endpoint with a base path ending in /api", map[string]string{"O2_ENDPOINT": "https://example.com/o2/api"},
			`O2_ENDPOINT: "https://example.com/o2/api" ends in /api, which the extension appends itself (it wants the server's base URL); using https://example.com/o2`,
			func(c *config.Config) { c.Endpoint = "https://example.com/o2" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, warns, err := load(withRequired(tt.env))
			if err != nil {
				t.Fatalf("Load error: %v (a tunable must not stop forwarding)", err)
			}
			if len(warns) != 1 || warns[0] != tt.warn {
				t.Errorf("warnings = %q\nwant [%q]", warns, tt.warn)
			}
			want := loadedDefault()
			if tt.apply != nil {
				tt.apply(&want)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("the repaired config is invalid: %v", err)
			}
			// What Load keeps of the value as set is Redacted's; compare the rest.
			if !reflect.DeepEqual(stripped(got), want) {
				t.Errorf("Load config =\n%+v\nwant\n%+v", stripped(got), want)
			}
		})
	}
}

// stripped returns c without what Load remembers of the values as set.
func stripped(c config.Config) config.Config {
	var d config.Config
	cv, dv := reflect.ValueOf(c), reflect.ValueOf(&d).Elem()
	for i := range cv.NumField() {
		if cv.Type().Field(i).IsExported() {
			dv.Field(i).Set(cv.Field(i))
		}
	}
	return d
}

func TestLoadReportsEveryProblem(t *testing.T) {
	env := map[string]string{
		"O2_ENDPOINT":           "not a url",
		"O2_BATCH_SIZE":         "abc",
		"O2_MAX_RETRIES":        "99",
		"O2_LOG_LEVEL":          "loud",
		"O2_LISTENER_PORT":      "9001",
		"O2_FIELDS":             "type=x",
		"O2_MAX_RETRY_DELAY_MS": "50",
		// explicit and above the (valid) max: a cross-field problem
		"O2_INITIAL_RETRY_DELAY_MS": "200",
		"O2_BATCHSIZE":              "5",
	}
	c, warns, err := load(env)
	ps := problems(err)
	wantErrs := []string{"O2_ENDPOINT:", "O2_ORGANIZATION_ID is required", "O2_AUTHORIZATION_HEADER is required"}
	if len(ps) != len(wantErrs) {
		t.Fatalf("got %d problems %q, want %d", len(ps), ps, len(wantErrs))
	}
	for i, w := range wantErrs {
		if !strings.HasPrefix(ps[i], w) {
			t.Errorf("problem %d = %q, want prefix %q", i, ps[i], w)
		}
	}
	wantWarns := []string{
		"O2_BATCH_SIZE:", "O2_MAX_RETRIES: 99 is out of range (allowed 0..10); using 10", "O2_LOG_LEVEL:", "O2_LISTENER_PORT:", "O2_FIELDS:",
		"O2_INITIAL_RETRY_DELAY_MS: 200 is larger than O2_MAX_RETRY_DELAY_MS (50); using 50",
		"O2_BATCHSIZE is not a variable of the extension and is ignored; did you mean O2_BATCH_SIZE?",
	}
	if len(warns) != len(wantWarns) {
		t.Fatalf("got %d warnings %q, want %d", len(warns), warns, len(wantWarns))
	}
	for i, w := range wantWarns {
		if !strings.HasPrefix(warns[i], w) {
			t.Errorf("warning %d = %q, want prefix %q", i, warns[i], w)
		}
	}
	// The config built alongside keeps defaults where values were refused
	// and is consistent, so a fail-open extension can still print it.
	if c.BatchSize != 1000 || c.LogLevel != "info" || c.ListenerPort != 0 || c.Fields != nil || c.MaxRetries != 10 {
		t.Errorf("refused values did not keep their defaults: %+v", c)
	}
	if c.MaxRetryDelay != 50*time.Millisecond || c.InitialRetryDelay != 50*time.Millisecond {
		t.Errorf("retry delays = %v..%v, want 50ms..50ms", c.InitialRetryDelay, c.MaxRetryDelay)
	}
	// Validate of the same config sees only what is still missing.
	if vs := problems(c.Validate()); len(vs) != 2 {
		t.Errorf("Validate() after Load = %q, want the two required problems", vs)
	}
}

// TestLoadWarnsUnknownVariables: a misspelt O2_* name is not ignored
// silently; the closest known name is suggested when there is one.
func TestLoadWarnsUnknownVariables(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		want []string
	}{
		{"none", []string{"O2_STREAM=x", "HOME=/root", "PO2_X=1"}, nil},
		{"missing underscore", []string{"O2_BATCHSIZE=5"},
			[]string{"O2_BATCHSIZE is not a variable of the extension and is ignored; did you mean O2_BATCH_SIZE?"}},
		{"misspelt", []string{"O2_STREEM=logs"},
			[]string{"O2_STREEM is not a variable of the extension and is ignored; did you mean O2_STREAM?"}},
		{"lower case", []string{"o2_stream=logs"},
			[]string{"o2_stream is not a variable of the extension and is ignored; did you mean O2_STREAM?"}},
		{"nothing close", []string{"O2_SOMETHING_ELSE_ENTIRELY=1"},
			[]string{"O2_SOMETHING_ELSE_ENTIRELY is not a variable of the extension and is ignored"}},
		{"sorted, once each", []string{"O2_STREEM=a", "O2_BATCHSIZE=1", "O2_STREEM=b"},
			[]string{"O2_BATCHSIZE is not a variable of the extension and is ignored; did you mean O2_BATCH_SIZE?",
				"O2_STREEM is not a variable of the extension and is ignored; did you mean O2_STREAM?"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, warns, err := config.Load(getenv(withRequired(nil)), tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(warns, tt.want) {
				t.Errorf("warnings = %q\nwant %q", warns, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *config.Config)
		want   []string // prefixes, in order; nil means valid
	}{
		{"loaded default", func(c *config.Config) {}, nil},
		{"log level must be stored lower-case", func(c *config.Config) { c.LogLevel = "INFO" },
			[]string{`O2_LOG_LEVEL: "INFO" is not a log level`}},
		{"strategy must be canonical", func(c *config.Config) { c.FlushStrategy = "Auto" },
			[]string{`O2_FLUSH_STRATEGY: "Auto" is not a flush strategy`}},
		{"empty endpoint", func(c *config.Config) { c.Endpoint = "" },
			[]string{"O2_ENDPOINT must not be empty"}},
		{"empty stream", func(c *config.Config) { c.Stream = " " },
			[]string{"O2_STREAM must not be empty"}},
		{"empty tenant names", func(c *config.Config) {
			c.TenantMessage, c.TenantField, c.TenantEMFNamespace, c.TenantEMFMetric, c.TenantEMFDimension = "", "", "", "", ""
		}, []string{"O2_TENANT_MESSAGE must not be empty", "O2_TENANT_FIELD must not be empty",
			"O2_TENANT_EMF_NAMESPACE must not be empty", "O2_TENANT_EMF_METRIC must not be empty",
			"O2_TENANT_EMF_DIMENSION must not be empty"}},
		{"fractional buffer", func(c *config.Config) { c.MaxBufferBytes = 512 << 10 },
			[]string{"O2_MAX_BUFFER_SIZE_MB: 0.5 is out of range (allowed 1..1024)"}},
		{"sub-millisecond interval", func(c *config.Config) { c.FlushInterval = 99500 * time.Microsecond },
			[]string{"O2_FLUSH_INTERVAL_MS: 99.5 is out of range (allowed 100..600000)"}},
		{"NaN threshold", func(c *config.Config) { c.HighFrequencyThreshold = nan() },
			[]string{"O2_HIGH_FREQUENCY_THRESHOLD: NaN is out of range"}},
		{"port", func(c *config.Config) { c.ListenerPort = 1023 },
			[]string{"O2_LISTENER_PORT: 1023 is out of range"}},
		{"otlp port", func(c *config.Config) { c.OTLPPort = 70000 },
			[]string{"O2_OTLP_PORT: 70000 is out of range"}},
		{"otlp port clash", func(c *config.Config) { c.OTLPPort, c.ListenerPort = 5000, 5000 },
			[]string{"O2_OTLP_PORT and O2_LISTENER_PORT are both 5000"}},
		{"bad fields", func(c *config.Config) { c.Fields = map[string]string{"": "x", "a.b": "y", "level": "z", "ok": "1"} },
			[]string{"O2_FIELDS: a key is empty", `O2_FIELDS: key "a.b"`, `O2_FIELDS: key "level" is reserved`}},
		{"cross-field", func(c *config.Config) {
			c.MaxRecordBytes = c.MaxBatchBytes + 1
			c.InitialRetryDelay = c.MaxRetryDelay + time.Millisecond
		}, []string{"O2_MAX_RECORD_BYTES: 1048577 is larger than O2_MAX_BATCH_BYTES (1048576)",
			"O2_INITIAL_RETRY_DELAY_MS: 1001 is larger than O2_MAX_RETRY_DELAY_MS (1000)"}},
		{"authorization without scheme", func(c *config.Config) { c.Authorization = "dXNlcjpwYXNz" },
			[]string{"O2_AUTHORIZATION_HEADER must be '<scheme> <credentials>', e.g. 'Basic <base64"}},
		{"authorization scheme only", func(c *config.Config) { c.Authorization = "Basic " },
			[]string{"O2_AUTHORIZATION_HEADER must be '<scheme> <credentials>'"}},
		{"authorization leading space", func(c *config.Config) { c.Authorization = " Basic abc" },
			[]string{"O2_AUTHORIZATION_HEADER must be '<scheme> <credentials>'"}},
		{"authorization line break", func(c *config.Config) { c.Authorization = validAuth + "\r\nX-Injected: 1" },
			[]string{"O2_AUTHORIZATION_HEADER must not contain line breaks (CR or LF)"}},
		{"authorization bare LF", func(c *config.Config) { c.Authorization = "Basic a\nb" },
			[]string{"O2_AUTHORIZATION_HEADER must not contain line breaks"}},
		{"authorization NUL", func(c *config.Config) { c.Authorization = "Basic a\x00b" },
			[]string{"O2_AUTHORIZATION_HEADER must not contain control characters"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := loadedDefault()
			tt.mutate(&c)
			got := problems(c.Validate())
			if len(got) != len(tt.want) {
				t.Fatalf("Validate() = %q, want %d problems", got, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("problem %d = %q, want prefix %q", i, got[i], w)
				}
			}
		})
	}
}

func nan() float64 {
	zero := 0.0
	return zero / zero
}

func TestLoadAuthorizationProblems(t *testing.T) {
	tests := []struct {
		name, value, want string
	}{
		{"no scheme", "dXNlcjpwYXNz", "O2_AUTHORIZATION_HEADER must be '<scheme> <credentials>'"},
		{"scheme only", "Basic", "O2_AUTHORIZATION_HEADER must be '<scheme> <credentials>'"},
		{"header injection", validAuth + "\r\nX-Evil: 1", "O2_AUTHORIZATION_HEADER must not contain line breaks"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := load(withRequired(map[string]string{"O2_AUTHORIZATION_HEADER": tt.value}))
			ps := problems(err)
			if len(ps) != 1 || !strings.HasPrefix(ps[0], tt.want) {
				t.Fatalf("problems = %q, want one starting %q", ps, tt.want)
			}
			// A refused value must not be kept, let alone sent.
			if c.Authorization != "" {
				t.Errorf("Authorization kept after refusal (len %d)", len(c.Authorization))
			}
		})
	}
}

// TestSecretNeverLeaks feeds a distinctive secret through every path that
// produces text and checks that neither it, its base64 form nor its parts
// come out.
func TestSecretNeverLeaks(t *testing.T) {
	const password = "Zq7-SECRET-pw-4471"
	const user = "leak.check@example.com"
	decoded := user + ":" + password
	b64 := base64.StdEncoding.EncodeToString([]byte(decoded))
	noColon := base64.StdEncoding.EncodeToString([]byte(password))
	secrets := []string{password, user, decoded, b64, noColon, b64[:20]}

	values := []string{
		"Basic " + b64,                       // valid
		b64,                                  // no scheme
		b64 + " trailing",                    // first word is the secret itself
		"Basic " + b64 + "\r\nX-Evil: 1",     // header injection
		"Basic " + b64 + "\x00",              // control character
		"basic " + b64,                       // wrong case
		"Bearer " + b64,                      // enterprise only
		"Token " + b64,                       // other scheme
		"Basic " + decoded,                   // not base64
		"Basic " + noColon,                   // base64 without a colon
		"Basic",                              // scheme only
		password,                             // bare password
		"Basic " + b64 + " " + password,      // extra words
		"Basic\t" + b64,                      // tab instead of space
		"X" + strings.Repeat(b64, 5) + " Hi", // long first word
	}
	for i, v := range values {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			env := withRequired(map[string]string{
				"O2_AUTHORIZATION_HEADER": v,
				"O2_BATCH_SIZE":           "abc", // another problem alongside
				"O2_ENDPOINT":             "http://" + user + ":" + password + "@o2.example.com",
			})
			c, warns, err := load(env)
			if err == nil {
				t.Fatalf("value %d: Load gave no error", i)
			}
			raw := config.Default()
			raw.Organization = "acme"
			raw.Authorization = v
			raw.Endpoint = "http://" + b64 + "@o2.example.com"
			var texts []string
			texts = append(texts, err.Error())
			texts = append(texts, warns...)
			for _, cfg := range []config.Config{c, raw} {
				if e := cfg.Validate(); e != nil {
					texts = append(texts, e.Error())
				}
				texts = append(texts, cfg.Redacted()...)
				texts = append(texts, cfg.Warnings()...)
				texts = append(texts, cfg.AuthScheme())
			}
			all := strings.Join(texts, "\n")
			for _, s := range secrets {
				if strings.Contains(all, s) {
					t.Errorf("value %d: secret %q leaked in:\n%s", i, s, all)
				}
			}
		})
	}
}

func TestRedacted(t *testing.T) {
	c := loadedDefault()
	c.Authorization = "Basic " + strings.Repeat("A", 40)
	c.Fields = map[string]string{"team": "core", "env": "prod"}
	c.TenantMessage = "two\nlines"
	want := []string{
		"O2_ENDPOINT=https://api.openobserve.ai",
		"O2_ORGANIZATION_ID=acme",
		"O2_STREAM=default",
		"O2_AUTHORIZATION_HEADER=Basic <redacted>",
		"O2_AUTHORIZATION_HEADER_SECRET_ARN=",
		"O2_AUTHORIZATION_HEADER_SECRET_KEY=authorization",
		"O2_AUTHORIZATION_HEADER_SSM_PARAMETER=",
		"O2_BATCH_SIZE=1000",
		"O2_MAX_BATCH_BYTES=1048576",
		"O2_MAX_RECORD_BYTES=262144",
		"O2_FLUSH_INTERVAL_MS=500",
		"O2_MAX_IN_FLIGHT=4",
		"O2_MAX_BUFFER_SIZE_MB=10",
		"O2_REQUEST_TIMEOUT_MS=30000",
		"O2_MAX_RETRIES=3",
		"O2_INITIAL_RETRY_DELAY_MS=100",
		"O2_MAX_RETRY_DELAY_MS=1000",
		"O2_LOG_LEVEL=info",
		"O2_LISTENER_PORT=0",
		"O2_OTLP_PORT=4318",
		"O2_FLUSH_STRATEGY=auto",
		"O2_HIGH_FREQUENCY_THRESHOLD=10",
		"O2_RATE_WINDOW_MS=300000",
		"O2_LONG_RUNNING_MS=30000",
		"O2_FLUSH_BUDGET_MS=2000",
		"O2_FIELDS=env=prod,team=core",
		"O2_EXCLUDE_TYPES=",
		"O2_MIN_LEVEL=",
		"O2_METRICS=true",
		"O2_TRACES=true",
		"O2_TENANT_REPORT=true",
		`O2_TENANT_MESSAGE="two\nlines"`,
		"O2_TENANT_FIELD=customerId",
		"O2_TENANT_STREAM=",
		"O2_TENANT_EMF=false",
		"O2_TENANT_EMF_NAMESPACE=CustomerMemoryReport",
		"O2_TENANT_EMF_METRIC=CustomerMemoryUsage",
		"O2_TENANT_EMF_DIMENSION=CustomerId",
	}
	if got := c.Redacted(); !slices.Equal(got, want) {
		t.Errorf("Redacted() =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	auth := []struct{ value, want string }{
		{"", "O2_AUTHORIZATION_HEADER=<unset>"},
		{"Bearer abc.def", "O2_AUTHORIZATION_HEADER=Bearer <redacted>"},
		{"Custom abc", "O2_AUTHORIZATION_HEADER=<redacted>"},
		{"abcdef", "O2_AUTHORIZATION_HEADER=<redacted>"},
	}
	for _, tt := range auth {
		t.Run(tt.want, func(t *testing.T) {
			c := loadedDefault()
			c.Authorization = tt.value
			if got := c.Redacted()[3]; got != tt.want {
				t.Errorf("Redacted()[3] = %q, want %q", got, tt.want)
			}
		})
	}

	// Redacted and Variables list the same names in the same order.
	vars := config.Variables()
	for i, line := range c.Redacted() {
		if name, _, _ := strings.Cut(line, "="); name != vars[i].Name {
			t.Errorf("Redacted()[%d] is %s, Variables()[%d] is %s", i, name, i, vars[i].Name)
		}
	}
}

// TestRedactedShowsValuesAsSet: --health-check shows what was set, not the
// default that replaced it, and never the secret or its length.
func TestRedactedShowsValuesAsSet(t *testing.T) {
	const secret = "c2VjcmV0LXZhbHVl"
	c, _, _ := load(map[string]string{
		"O2_ENDPOINT":             "ftp://bob:pw@files.example.com",
		"O2_ORGANIZATION_ID":      "acme",
		"O2_AUTHORIZATION_HEADER": "Basic " + secret + "\nX: y",
		"O2_BATCH_SIZE":           "abc",
		"O2_FLUSH_INTERVAL_MS":    "50",
		"O2_TENANT_MESSAGE":       "m",
	})
	want := map[string]string{
		"O2_ENDPOINT":             "O2_ENDPOINT=ftp://xxxxx@files.example.com (invalid: forwarding nothing)",
		"O2_AUTHORIZATION_HEADER": "O2_AUTHORIZATION_HEADER=Basic <redacted> (invalid: forwarding nothing)",
		"O2_BATCH_SIZE":           "O2_BATCH_SIZE=abc (invalid; using the default 1000)",
		"O2_FLUSH_INTERVAL_MS":    "O2_FLUSH_INTERVAL_MS=50 (invalid; using 100)",
		"O2_TENANT_MESSAGE":       "O2_TENANT_MESSAGE=m",
	}
	for _, line := range c.Redacted() {
		name, _, _ := strings.Cut(line, "=")
		if w, ok := want[name]; ok && line != w {
			t.Errorf("Redacted: %q, want %q", line, w)
		}
		if strings.Contains(line, secret) || strings.Contains(line, "chars") {
			t.Errorf("Redacted leaks the secret or its length: %q", line)
		}
	}
}

func TestVariablesDefaults(t *testing.T) {
	d := config.Default()
	lines := d.Redacted()
	seen := map[string]bool{}
	for i, v := range config.Variables() {
		if seen[v.Name] || !strings.HasPrefix(v.Name, "O2_") {
			t.Errorf("bad or duplicate name %q", v.Name)
		}
		seen[v.Name] = true
		want := strings.TrimPrefix(lines[i], v.Name+"=")
		if v.Name == "O2_AUTHORIZATION_HEADER" {
			want = ""
		}
		if v.Default != want {
			t.Errorf("%s default = %q, want %q", v.Name, v.Default, want)
		}
	}
	// Loading each documented default gives Default() back.
	env := withRequired(nil)
	for _, v := range config.Variables() {
		if v.Default != "" {
			env[v.Name] = v.Default
		}
	}
	if c, _, err := load(env); err != nil || !reflect.DeepEqual(c, loadedDefault()) {
		t.Errorf("Load(documented defaults) = %+v, %v", c, err)
	}
}

func TestURLs(t *testing.T) {
	tests := []struct {
		endpoint, org, stream string
		ingest, health        string
	}{
		{"https://api.openobserve.ai", "acme", "default",
			"https://api.openobserve.ai/api/acme/default/_json", "https://api.openobserve.ai/healthz"},
		{"http://localhost:5080/", "my org", "a#b",
			"http://localhost:5080/api/my%20org/a%23b/_json", "http://localhost:5080/healthz"},
		{"https://example.com/o2", "a/b", "c?d",
			"https://example.com/o2/api/a%2Fb/c%3Fd/_json", "https://example.com/o2/healthz"},
		{"https://example.com", "日志", "ストリーム",
			"https://example.com/api/%E6%97%A5%E5%BF%97/%E3%82%B9%E3%83%88%E3%83%AA%E3%83%BC%E3%83%A0/_json", "https://example.com/healthz"},
		{"https://example.com", "50%", "x",
			"https://example.com/api/50%25/x/_json", "https://example.com/healthz"},
	}
	for _, tt := range tests {
		t.Run(tt.ingest, func(t *testing.T) {
			c := loadedDefault()
			c.Endpoint, c.Organization, c.Stream = tt.endpoint, tt.org, tt.stream
			if got := c.IngestURL(); got != tt.ingest {
				t.Errorf("IngestURL() = %q, want %q", got, tt.ingest)
			}
			if got := c.HealthURL(); got != tt.health {
				t.Errorf("HealthURL() = %q, want %q", got, tt.health)
			}
			// The OTLP endpoints: the org escaped as for _json, no stream.
			base := strings.TrimSuffix(tt.ingest, "/"+url.PathEscape(tt.stream)+"/_json")
			if got, want := c.MetricsURL(), base+"/v1/metrics"; got != want {
				t.Errorf("MetricsURL() = %q, want %q", got, want)
			}
			if got, want := c.TracesURL(), base+"/v1/traces"; got != want {
				t.Errorf("TracesURL() = %q, want %q", got, want)
			}
			if got, want := c.LogsURL(), base+"/v1/logs"; got != want {
				t.Errorf("LogsURL() = %q, want %q", got, want)
			}
		})
	}

	// Through Load: the trailing slash is trimmed and names are escaped.
	c, _, err := load(withRequired(map[string]string{
		"O2_ENDPOINT": "http://127.0.0.1:5080/", "O2_ORGANIZATION_ID": "team one", "O2_STREAM": "x/y",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.IngestURL(), "http://127.0.0.1:5080/api/team%20one/x%2Fy/_json"; got != want {
		t.Errorf("IngestURL() = %q, want %q", got, want)
	}
}

func TestAuthSchemeAndInsecure(t *testing.T) {
	schemes := []struct{ value, want string }{
		{"", ""},
		{validAuth, "Basic"},
		{"Bearer tok", "Bearer"},
		{"basic abc", "basic"},
		{"Token abc", "Token"},
		{"Weird abc", "custom"},
		{"abc", ""},
		{"Basic ", ""},
		{"Ba/sic abc", ""},
	}
	for _, tt := range schemes {
		t.Run("scheme "+tt.value, func(t *testing.T) {
			c := config.Config{Authorization: tt.value}
			if got := c.AuthScheme(); got != tt.want {
				t.Errorf("AuthScheme() = %q, want %q", got, tt.want)
			}
		})
	}
	insecure := []struct {
		endpoint string
		want     bool
	}{
		{"http://localhost:5080", true},
		{"HTTP://LOCALHOST", true},
		{"https://api.openobserve.ai", false},
		{"", false},
		{"http", false},
	}
	for _, tt := range insecure {
		t.Run("insecure "+tt.endpoint, func(t *testing.T) {
			if got := (config.Config{Endpoint: tt.endpoint}).Insecure(); got != tt.want {
				t.Errorf("Insecure() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWarnings(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *config.Config)
		want   []string // prefixes, in order; nil means none
	}{
		{"defaults", func(c *config.Config) {}, nil},
		{"plain http", func(c *config.Config) { c.Endpoint = "http://localhost:5080" },
			[]string{"O2_ENDPOINT uses plain http://: credentials travel unencrypted"}},
		{"endpoint with api path", func(c *config.Config) { c.Endpoint = "https://example.com/api/acme" },
			[]string{"O2_ENDPOINT should be the server's base URL"}},
		{"endpoint with base path", func(c *config.Config) { c.Endpoint = "https://example.com/apis" }, nil},
		{"bearer", func(c *config.Config) { c.Authorization = "Bearer abc" },
			[]string{"O2_AUTHORIZATION_HEADER uses the Bearer scheme, which only enterprise and cloud builds"}},
		{"other scheme", func(c *config.Config) { c.Authorization = "Token abc" },
			[]string{"O2_AUTHORIZATION_HEADER uses a scheme other than Basic or Bearer"}},
		{"lower-case basic", func(c *config.Config) { c.Authorization = "basic" + strings.TrimPrefix(validAuth, "Basic") },
			[]string{"O2_AUTHORIZATION_HEADER: OpenObserve expects the scheme spelled exactly 'Basic'"}},
		{"basic not base64", func(c *config.Config) { c.Authorization = "Basic user:pass" },
			[]string{"O2_AUTHORIZATION_HEADER: the Basic credentials are not valid base64"}},
		{"basic without colon", func(c *config.Config) {
			c.Authorization = "Basic " + base64.StdEncoding.EncodeToString([]byte("token-only"))
		}, []string{"O2_AUTHORIZATION_HEADER: the Basic credentials do not decode to 'email:password'"}},
		{"stream renamed", func(c *config.Config) { c.Stream = "My-App logs" },
			[]string{`O2_STREAM: OpenObserve stores stream "My-App logs" as "my_app_logs"`}},
		{"tenant stream renamed", func(c *config.Config) { c.TenantStream = "Tenants" },
			[]string{`O2_TENANT_STREAM: OpenObserve stores stream "Tenants" as "tenants"`}},
		{"buffer below batch", func(c *config.Config) { c.MaxBufferBytes = 1 << 20; c.MaxBatchBytes = 4 << 20 },
			[]string{"O2_MAX_BUFFER_SIZE_MB (1 MiB) is smaller than O2_MAX_BATCH_BYTES (4194304 bytes)"}},
		{"port 8080", func(c *config.Config) { c.ListenerPort = 8080 },
			[]string{"O2_LISTENER_PORT 8080 is used by many other extensions"}},
		{"exclude known types", func(c *config.Config) { c.ExcludeTypes = []string{"platform.start", "platform.*", "function", "*"} }, nil},
		{"exclude unknown types", func(c *config.Config) {
			c.ExcludeTypes = []string{"platform.runtimedone", "platform.start", "telemetry.*"}
		},
			[]string{`O2_EXCLUDE_TYPES: "platform.runtimedone" matches no event type`, `O2_EXCLUDE_TYPES: "telemetry.*" matches no event type`}},
		{"flush budget at typical", func(c *config.Config) { c.FlushBudget = 5 * time.Second }, nil},
		{"flush budget large", func(c *config.Config) { c.FlushBudget = 8 * time.Second },
			[]string{"O2_FLUSH_BUDGET_MS: 8000 is larger than typical (at most 5000)"}},
		{"several at once", func(c *config.Config) {
			c.Endpoint = "http://localhost"
			c.Authorization = "Bearer x"
			c.FlushBudget = time.Minute
		}, []string{"O2_ENDPOINT uses plain http://", "O2_AUTHORIZATION_HEADER uses the Bearer scheme", "O2_FLUSH_BUDGET_MS:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := loadedDefault()
			tt.mutate(&c)
			got := c.Warnings()
			if len(got) != len(tt.want) {
				t.Fatalf("Warnings() = %q, want %d", got, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("warning %d = %q, want prefix %q", i, got[i], w)
				}
			}
			// Warnings are never errors.
			if err := c.Validate(); err != nil {
				t.Errorf("Validate() = %v, want nil for a warning-only config", err)
			}
		})
	}
}

// TestLoadErrorIsJoined checks the error can be unwrapped per problem.
func TestLoadErrorIsJoined(t *testing.T) {
	_, _, err := load(map[string]string{})
	var j interface{ Unwrap() []error }
	if !errors.As(err, &j) || len(j.Unwrap()) != 2 {
		t.Fatalf("Load(empty env) error %v is not a join of 2 problems", err)
	}
}

// O2_ENDPOINT with a port out of range fails at start, once, instead of
// on every flush; a query (a token, say) is refused and never echoed.
func TestEndpointPortAndQuery(t *testing.T) {
	tests := []struct {
		endpoint, want, never string
	}{
		{"http://o2.example.com:99999", "has port 99999, out of range (allowed 1..65535)", ""},
		{"http://o2.example.com:0", "has port 0, out of range", ""},
		{"https://o2.example.com/?token=s3cr3t-t0ken&x=1", "must not have a query or fragment", "s3cr3t-t0ken"},
		{"https://o2.example.com/#s3cr3t-frag", "must not have a query or fragment", "s3cr3t-frag"},
	}
	for _, tt := range tests {
		c, _, err := load(withRequired(map[string]string{"O2_ENDPOINT": tt.endpoint}))
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		if !strings.Contains(msg, tt.want) {
			t.Errorf("%s: error %q, want %q", tt.endpoint, msg, tt.want)
		}
		if tt.never != "" {
			shown := msg + strings.Join(c.Redacted(), "\n")
			if strings.Contains(shown, tt.never) {
				t.Errorf("%s: the query value is shown: %q", tt.endpoint, shown)
			}
		}
	}
	if _, _, err := load(withRequired(map[string]string{"O2_ENDPOINT": "http://127.0.0.1:5080"})); err != nil {
		t.Errorf("a valid port refused: %v", err)
	}
}
