// Package config holds every O2_* setting of the extension: defaults, parsing from the environment, validation and redaction.
package config

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Strategy names how the extension decides when to flush.
type Strategy string

// The flush strategies accepted in O2_FLUSH_STRATEGY.
const (
	// StrategyAuto picks end, continuous or periodic from the invocation rate.
	StrategyAuto Strategy = "auto"
	// StrategyEnd always flushes at the end of each invocation.
	StrategyEnd Strategy = "end"
	// StrategyContinuous always flushes in the background.
	StrategyContinuous Strategy = "continuous"
	// StrategyPeriodic flushes every interval while an invocation runs.
	StrategyPeriodic Strategy = "periodic"
)

// Byte sizes used by the defaults and ranges.
const (
	kib = 1 << 10
	mib = 1 << 20
)

// Defaults that other code refers to (the rest live in Default).
const (
	defaultEndpoint          = "https://api.openobserve.ai"
	defaultMaxRecordBytes    = 256 * kib
	defaultInitialRetryDelay = 1000 * time.Millisecond
	defaultSecretKey         = "authorization"
)

// Config is every setting of the extension, typed.
type Config struct {
	Endpoint               string            // O2_ENDPOINT: OpenObserve base URL, no trailing "/"
	Organization           string            // O2_ORGANIZATION_ID (required)
	Stream                 string            // O2_STREAM
	Authorization          string            // O2_AUTHORIZATION_HEADER (one of the three sources is required); SECRET: never printed
	AuthSecretARN          string            // O2_AUTHORIZATION_HEADER_SECRET_ARN: a Secrets Manager secret holding the value
	AuthSecretKey          string            // O2_AUTHORIZATION_HEADER_SECRET_KEY: the key, when that secret is a JSON object
	AuthSSMParameter       string            // O2_AUTHORIZATION_HEADER_SSM_PARAMETER: an SSM parameter (name or ARN) holding the value
	BatchSize              int               // O2_BATCH_SIZE: records per request
	MaxBatchBytes          int               // O2_MAX_BATCH_BYTES: uncompressed body bound of one request
	MaxRecordBytes         int               // O2_MAX_RECORD_BYTES: a longer record is split or truncated
	FlushInterval          time.Duration     // O2_FLUSH_INTERVAL_MS
	MaxBufferBytes         int               // O2_MAX_BUFFER_SIZE_MB (stored in bytes): bound of the whole in-memory buffer
	RequestTimeout         time.Duration     // O2_REQUEST_TIMEOUT_MS: one HTTP attempt
	MaxRetries             int               // O2_MAX_RETRIES
	InitialRetryDelay      time.Duration     // O2_INITIAL_RETRY_DELAY_MS, <= MaxRetryDelay
	MaxRetryDelay          time.Duration     // O2_MAX_RETRY_DELAY_MS
	LogLevel               string            // O2_LOG_LEVEL: trace, debug, info, warn or error
	ListenerPort           int               // O2_LISTENER_PORT: 0 lets the OS choose
	FlushStrategy          Strategy          // O2_FLUSH_STRATEGY
	HighFrequencyThreshold float64           // O2_HIGH_FREQUENCY_THRESHOLD: invocations per minute
	RateWindow             time.Duration     // O2_RATE_WINDOW_MS
	LongRunning            time.Duration     // O2_LONG_RUNNING_MS
	FlushBudget            time.Duration     // O2_FLUSH_BUDGET_MS: most an end-of-invocation flush may add
	Fields                 map[string]string // O2_FIELDS: extra fields on every record
	ExcludeTypes           []string          // O2_EXCLUDE_TYPES: event types not forwarded ("x.*" for a prefix)
	MinLevel               string            // O2_MIN_LEVEL: "" or a level in capitals; lower-level log records are not forwarded
	TenantReport           bool              // O2_TENANT_REPORT
	TenantMessage          string            // O2_TENANT_MESSAGE
	TenantField            string            // O2_TENANT_FIELD
	TenantStream           string            // O2_TENANT_STREAM: "" means the logs stream
	TenantEMF              bool              // O2_TENANT_EMF: also print a CloudWatch EMF line
	TenantEMFNamespace     string            // O2_TENANT_EMF_NAMESPACE
	TenantEMFMetric        string            // O2_TENANT_EMF_METRIC
	TenantEMFDimension     string            // O2_TENANT_EMF_DIMENSION
}

// Default returns the settings used when no variable is set. It is not valid
// on its own: O2_ORGANIZATION_ID and the credential (O2_AUTHORIZATION_HEADER
// or a secret naming it) have no default.
func Default() Config {
	return Config{
		Endpoint:               defaultEndpoint,
		Stream:                 "default",
		AuthSecretKey:          defaultSecretKey,
		BatchSize:              100,
		MaxBatchBytes:          4 * mib,
		MaxRecordBytes:         defaultMaxRecordBytes,
		FlushInterval:          5000 * time.Millisecond,
		MaxBufferBytes:         10 * mib,
		RequestTimeout:         30000 * time.Millisecond,
		MaxRetries:             3,
		InitialRetryDelay:      defaultInitialRetryDelay,
		MaxRetryDelay:          30000 * time.Millisecond,
		LogLevel:               "info",
		ListenerPort:           0,
		FlushStrategy:          StrategyAuto,
		HighFrequencyThreshold: 10,
		RateWindow:             300000 * time.Millisecond,
		LongRunning:            30000 * time.Millisecond,
		FlushBudget:            2000 * time.Millisecond,
		TenantReport:           true,
		TenantMessage:          "customer-memory-report",
		TenantField:            "customerId",
		TenantEMFNamespace:     "CustomerMemoryReport",
		TenantEMFMetric:        "CustomerMemoryUsage",
		TenantEMFDimension:     "CustomerId",
	}
}

// Load reads every O2_* variable through getenv on top of Default and
// validates the result. It always returns the config it could build, in
// which a bad value keeps its default, so that the extension can still run
// fail-open; the error joins every problem found (errors.Join), one per
// problem.
func Load(getenv func(string) string) (Config, error) {
	c := Default()
	var errs []error
	given := make(map[string]bool) // set to a value that was accepted
	bad := make(map[string]bool)   // set to a value that was refused
	for _, s := range settings {
		v := strings.TrimSpace(getenv(s.name))
		if v == "" {
			continue // an empty variable means the default
		}
		// Parse into a copy so that a refused value leaves the default in place.
		next := c
		err := s.parse(&next, v)
		if err == nil {
			err = s.check(next)
		}
		if err != nil {
			errs = appendErrs(errs, err)
			bad[s.name] = true
			continue
		}
		c = next
		given[s.name] = true
	}

	// Two defaults depend on another setting: a record bound or a first
	// retry delay nobody asked for follows a smaller explicit maximum
	// instead of turning a valid choice of that maximum into an error.
	if !given[envMaxRecordBytes] {
		c.MaxRecordBytes = min(c.MaxRecordBytes, c.MaxBatchBytes)
	}
	if !given[envInitialRetryDelay] {
		c.InitialRetryDelay = min(c.InitialRetryDelay, c.MaxRetryDelay)
	}

	// Variables left at their default can still be wrong: the required ones.
	// Those already reported are skipped so that each problem appears once.
	for _, s := range settings {
		if !bad[s.name] {
			errs = appendErrs(errs, s.check(c))
		}
	}
	errs = append(errs, c.crossProblems()...)

	// Keep the returned config internally consistent after a cross-field
	// problem, in the spirit of "a bad value keeps its default".
	if c.InitialRetryDelay > c.MaxRetryDelay {
		c.InitialRetryDelay = min(defaultInitialRetryDelay, c.MaxRetryDelay)
	}
	if c.MaxRecordBytes > c.MaxBatchBytes {
		c.MaxRecordBytes = min(defaultMaxRecordBytes, c.MaxBatchBytes)
	}
	return c, errors.Join(errs...)
}

// Validate reports every problem of c at once, joined with errors.Join, or
// nil if c is usable. It checks the same rules as Load, on typed values.
func (c Config) Validate() error {
	var errs []error
	for _, s := range settings {
		errs = appendErrs(errs, s.check(c))
	}
	errs = append(errs, c.crossProblems()...)
	return errors.Join(errs...)
}

// crossProblems checks the rules that tie two settings together.
func (c Config) crossProblems() []error {
	var errs []error
	if set := c.authSources(); len(set) > 1 {
		both := "both"
		if len(set) > 2 {
			both = "all"
		}
		errs = append(errs, fmt.Errorf("%s and %s are %s set: give exactly one source of the credential",
			strings.Join(set[:len(set)-1], ", "), set[len(set)-1], both))
	}
	if c.MaxRecordBytes > c.MaxBatchBytes {
		errs = append(errs, fmt.Errorf("%s: %d is larger than %s (%d): a record must fit in one request",
			envMaxRecordBytes, c.MaxRecordBytes, envMaxBatchBytes, c.MaxBatchBytes))
	}
	if c.InitialRetryDelay > c.MaxRetryDelay {
		errs = append(errs, fmt.Errorf("%s: %s is larger than %s (%s)",
			envInitialRetryDelay, formatMs(c.InitialRetryDelay), envMaxRetryDelay, formatMs(c.MaxRetryDelay)))
	}
	return errs
}

// appendErrs appends err to errs, flattening a joined error so that every
// problem is its own element of the final errors.Join.
func appendErrs(errs []error, err error) []error {
	if err == nil {
		return errs
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			errs = appendErrs(errs, e)
		}
		return errs
	}
	return append(errs, err)
}

// authSources names the credential sources that are set, in table order.
func (c Config) authSources() []string {
	var set []string
	for _, s := range []struct{ name, v string }{
		{envAuthorization, c.Authorization},
		{envSecretARN, c.AuthSecretARN},
		{envSSMParameter, c.AuthSSMParameter},
	} {
		if s.v != "" {
			set = append(set, s.name)
		}
	}
	return set
}

// IngestURL returns {endpoint}/api/{org}/{stream}/_json, the address records
// are posted to. Organization and stream are path-escaped: OpenObserve uses
// the org verbatim, and a '#' or '/' in either would otherwise change the path.
func (c Config) IngestURL() string {
	return strings.TrimRight(c.Endpoint, "/") + "/api/" + url.PathEscape(c.Organization) + "/" +
		url.PathEscape(c.Stream) + "/_json"
}

// HealthURL returns {endpoint}/healthz, OpenObserve's unauthenticated
// liveness endpoint.
func (c Config) HealthURL() string {
	return strings.TrimRight(c.Endpoint, "/") + "/healthz"
}

// Insecure reports whether the endpoint is plain http://, on which the
// credentials travel unencrypted.
func (c Config) Insecure() bool {
	return len(c.Endpoint) >= len("http://") && strings.EqualFold(c.Endpoint[:len("http://")], "http://")
}
