// Package config holds every O2_* setting of the extension: defaults, parsing from the environment, validation and redaction.
package config

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
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
	defaultInitialRetryDelay = 100 * time.Millisecond
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
	FlushInterval          time.Duration     // O2_FLUSH_INTERVAL_MS: the linger of a record while thawed
	MaxInFlight            int               // O2_MAX_IN_FLIGHT: requests in flight at once
	MaxBufferBytes         int               // O2_MAX_BUFFER_SIZE_MB (stored in bytes): bound of the whole in-memory buffer
	RequestTimeout         time.Duration     // O2_REQUEST_TIMEOUT_MS: one HTTP attempt
	MaxRetries             int               // O2_MAX_RETRIES
	InitialRetryDelay      time.Duration     // O2_INITIAL_RETRY_DELAY_MS, <= MaxRetryDelay
	MaxRetryDelay          time.Duration     // O2_MAX_RETRY_DELAY_MS
	LogLevel               string            // O2_LOG_LEVEL: trace, debug, info, warn or error
	ListenerPort           int               // O2_LISTENER_PORT: 0 lets the OS choose
	OTLPPort               int               // O2_OTLP_PORT: the OTLP/HTTP receiver on 127.0.0.1; 0 turns it off
	FlushStrategy          Strategy          // O2_FLUSH_STRATEGY
	HighFrequencyThreshold float64           // O2_HIGH_FREQUENCY_THRESHOLD: invocations per minute
	RateWindow             time.Duration     // O2_RATE_WINDOW_MS
	LongRunning            time.Duration     // O2_LONG_RUNNING_MS
	FlushBudget            time.Duration     // O2_FLUSH_BUDGET_MS: most an end-of-invocation flush may add
	Fields                 map[string]string // O2_FIELDS: extra fields on every record
	ExcludeTypes           []string          // O2_EXCLUDE_TYPES: event types not forwarded ("x.*" for a prefix)
	MinLevel               string            // O2_MIN_LEVEL: "" or a level in capitals; lower-level log records are not forwarded
	Metrics                bool              // O2_METRICS: OTLP metrics of each invocation to /v1/metrics
	Traces                 bool              // O2_TRACES: a trace per invocation to /v1/traces, trace_id on its logs
	TenantReport           bool              // O2_TENANT_REPORT
	TenantMessage          string            // O2_TENANT_MESSAGE
	TenantField            string            // O2_TENANT_FIELD
	TenantStream           string            // O2_TENANT_STREAM: "" means the logs stream
	TenantEMF              bool              // O2_TENANT_EMF: also print a CloudWatch EMF line
	TenantEMFNamespace     string            // O2_TENANT_EMF_NAMESPACE
	TenantEMFMetric        string            // O2_TENANT_EMF_METRIC
	TenantEMFDimension     string            // O2_TENANT_EMF_DIMENSION

	// asSet holds the values as set of the variables Load refused or
	// repaired, for Redacted; nil when there are none.
	asSet map[string]setValue
}

// Default returns the settings used when no variable is set. It is not valid
// on its own: O2_ORGANIZATION_ID and the credential (O2_AUTHORIZATION_HEADER
// or a secret naming it) have no default.
func Default() Config {
	return Config{
		Endpoint:               defaultEndpoint,
		Stream:                 "default",
		AuthSecretKey:          defaultSecretKey,
		BatchSize:              1000,
		MaxBatchBytes:          1 * mib,
		MaxRecordBytes:         defaultMaxRecordBytes,
		FlushInterval:          500 * time.Millisecond,
		MaxInFlight:            4,
		MaxBufferBytes:         10 * mib,
		RequestTimeout:         30000 * time.Millisecond,
		MaxRetries:             3,
		InitialRetryDelay:      defaultInitialRetryDelay,
		MaxRetryDelay:          1000 * time.Millisecond,
		LogLevel:               "info",
		ListenerPort:           0,
		OTLPPort:               4318,
		FlushStrategy:          StrategyAuto,
		HighFrequencyThreshold: 10,
		RateWindow:             300000 * time.Millisecond,
		LongRunning:            30000 * time.Millisecond,
		FlushBudget:            2000 * time.Millisecond,
		Metrics:                true,
		Traces:                 true,
		TenantReport:           true,
		TenantMessage:          "customer-memory-report",
		TenantField:            "customerId",
		TenantEMFNamespace:     "CustomerMemoryReport",
		TenantEMFMetric:        "CustomerMemoryUsage",
		TenantEMFDimension:     "CustomerId",
	}
}

// Load reads every O2_* variable through getenv on top of Default.
//
// Only a problem with a setting without which nothing can be sent (the
// endpoint, organization and authorization) is an error: the extension then
// fails open. Any other bad value cannot stop the logs: a number out of range
// is clamped to the nearest allowed value, and a value that cannot be read at
// all (not a number, not a level, ...) is replaced by its default, each with
// one warning that names the variable and the value used.
//
// environ is the process environment as os.Environ returns it: a name in it
// that starts with O2_ but is none of the extension's variables (a typo, most
// likely) is warned about, with the closest known name.
//
// Load always returns the config it could build, internally consistent, so
// that the extension can still run fail-open. The warnings come in a stable
// order: those about values as set, unknown names, then notes about valid
// values that are probably not what was meant. The error joins every fatal
// problem (errors.Join), one per problem.
func Load(getenv func(string) string, environ []string) (Config, []string, error) {
	c := Default()
	var errs []error
	var warns []string
	given := make(map[string]bool) // set to a value that was accepted or repaired
	bad := make(map[string]bool)   // set to a value that was refused
	asSet := make(map[string]setValue)
	for _, s := range settings {
		v := strings.TrimSpace(getenv(s.name))
		if v == "" {
			continue // an empty variable means the default
		}
		// Parse into a copy so that a refused value leaves the default in place.
		next := c
		perr := s.parse(&next, v)
		err := perr
		if !isOutOfRange(perr) { // a saturated number would be reported twice
			err = errors.Join(perr, s.check(next))
		}
		if err == nil {
			c = next
			given[s.name] = true
			continue
		}
		if (perr == nil || isOutOfRange(perr)) && s.fix != nil && s.fix(&next) && s.check(next) == nil {
			c = next
			given[s.name] = true
			asSet[s.name] = setValue{raw: v}
			warns = append(warns, oneLine(err)+"; using "+showValue(s.show(c)))
			continue
		}
		bad[s.name] = true
		asSet[s.name] = setValue{raw: v, refused: true}
		if s.fatal {
			errs = appendErrs(errs, err)
			continue
		}
		warns = append(warns, oneLine(err)+"; using the default "+showValue(s.show(c)))
	}

	// Two defaults depend on another setting: a record bound or a first
	// retry delay nobody asked for follows a smaller explicit maximum
	// instead of turning a valid choice of that maximum into a problem.
	// One set explicitly above its maximum is lowered to it.
	if c.MaxRecordBytes > c.MaxBatchBytes {
		if given[envMaxRecordBytes] {
			warns = append(warns, fmt.Sprintf("%s: %d is larger than %s (%d): a record must fit in one request; using %d",
				envMaxRecordBytes, c.MaxRecordBytes, envMaxBatchBytes, c.MaxBatchBytes, c.MaxBatchBytes))
			asSet[envMaxRecordBytes] = setValue{raw: strings.TrimSpace(getenv(envMaxRecordBytes))}
		}
		c.MaxRecordBytes = c.MaxBatchBytes
	}
	if c.OTLPPort != 0 && c.OTLPPort == c.ListenerPort {
		// Both would bind 127.0.0.1 where sandbox.localdomain is not in
		// /etc/hosts (a laptop, CI): the telemetry listener, bound second,
		// would fail, and nothing would be forwarded. The logs matter more.
		warns = append(warns, fmt.Sprintf("%s and %s are both %d: the OTLP receiver is turned off; give it another port",
			envOTLPPort, envListenerPort, c.OTLPPort))
		c.OTLPPort = 0
	}
	if c.InitialRetryDelay > c.MaxRetryDelay {
		if given[envInitialRetryDelay] {
			warns = append(warns, fmt.Sprintf("%s: %s is larger than %s (%s); using %s",
				envInitialRetryDelay, formatMs(c.InitialRetryDelay), envMaxRetryDelay, formatMs(c.MaxRetryDelay), formatMs(c.MaxRetryDelay)))
			asSet[envInitialRetryDelay] = setValue{raw: strings.TrimSpace(getenv(envInitialRetryDelay))}
		}
		c.InitialRetryDelay = c.MaxRetryDelay
	}

	// Variables left at their default can still be wrong: the required ones.
	// Those already reported are skipped so that each problem appears once.
	for _, s := range settings {
		if !bad[s.name] {
			errs = appendErrs(errs, s.check(c))
		}
	}
	errs = append(errs, c.sourceProblems()...)
	if len(asSet) > 0 {
		c.asSet = asSet
	}
	warns = append(warns, unknownVariables(environ)...)
	warns = append(warns, c.warnings()...)
	return c, warns, errors.Join(errs...)
}

// setValue is a variable's value as set, kept for Redacted when Load
// refused or repaired it, so that --health-check shows what was written.
type setValue struct {
	raw     string // trimmed; for the authorization, only ever shown redacted
	refused bool   // the default is used, not a repaired value
}

// showValue writes a shown value for a message; an empty one is "(none)".
func showValue(v string) string {
	if v == "" {
		return "(none)"
	}
	return v
}

// validate reports every problem of c at once, joined with errors.Join, or
// nil if c is usable. It checks the same rules as Load, on typed values.
func (c Config) validate() error {
	var errs []error
	for _, s := range settings {
		errs = appendErrs(errs, s.check(c))
	}
	errs = append(errs, c.crossProblems()...)
	return errors.Join(errs...)
}

// sourceProblems reports more than one source of the credential: which one
// was meant cannot be guessed, and nothing can be sent without it.
func (c Config) sourceProblems() []error {
	set := c.authSources()
	if len(set) <= 1 {
		return nil
	}
	both := "both"
	if len(set) > 2 {
		both = "all"
	}
	return []error{fmt.Errorf("%s and %s are %s set: give exactly one source of the credential",
		strings.Join(set[:len(set)-1], ", "), set[len(set)-1], both)}
}

// crossProblems checks the rules that tie two settings together.
func (c Config) crossProblems() []error {
	errs := c.sourceProblems()
	if c.MaxRecordBytes > c.MaxBatchBytes {
		errs = append(errs, fmt.Errorf("%s: %d is larger than %s (%d): a record must fit in one request",
			envMaxRecordBytes, c.MaxRecordBytes, envMaxBatchBytes, c.MaxBatchBytes))
	}
	if c.OTLPPort != 0 && c.OTLPPort == c.ListenerPort {
		errs = append(errs, fmt.Errorf("%s and %s are both %d", envOTLPPort, envListenerPort, c.OTLPPort))
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

// MetricsURL returns {endpoint}/api/{org}/v1/metrics, OpenObserve's
// OTLP/HTTP metrics endpoint (each metric becomes a stream of its own: no
// stream in the path).
func (c Config) MetricsURL() string {
	return strings.TrimRight(c.Endpoint, "/") + "/api/" + url.PathEscape(c.Organization) + "/v1/metrics"
}

// TracesURL returns {endpoint}/api/{org}/v1/traces, OpenObserve's
// OTLP/HTTP traces endpoint (stream "default" unless a stream-name header
// says otherwise).
func (c Config) TracesURL() string {
	return strings.TrimRight(c.Endpoint, "/") + "/api/" + url.PathEscape(c.Organization) + "/v1/traces"
}

// LogsURL returns {endpoint}/api/{org}/v1/logs, OpenObserve's OTLP/HTTP
// logs endpoint (the stream in a stream-name header: O2_STREAM).
func (c Config) LogsURL() string {
	return strings.TrimRight(c.Endpoint, "/") + "/api/" + url.PathEscape(c.Organization) + "/v1/logs"
}

// OrgCheckURL returns {endpoint}/api/{org}/_license: a read-only route
// that takes every kind of ingestion credential and answers 404
// "Organization not found" for an organization the root user does not
// have, where an ingestion write would create it (openobserve-api.md §2).
func (c Config) OrgCheckURL() string {
	return strings.TrimRight(c.Endpoint, "/") + "/api/" + url.PathEscape(c.Organization) + "/_license"
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

// oneLine joins every problem of a joined error on one line.
func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

// unknownVariables warns about each name in environ that starts with O2_
// (in any case) but is not a variable of the extension, naming the closest
// known one when there is one.
func unknownVariables(environ []string) []string {
	var w []string
	seen := make(map[string]bool)
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if len(name) < 3 || !strings.EqualFold(name[:3], "O2_") || seen[name] {
			continue
		}
		seen[name] = true
		if slices.ContainsFunc(settings, func(s setting) bool { return s.name == name }) {
			continue
		}
		msg := name + " is not a variable of the extension and is ignored"
		if near := closestName(name); near != "" {
			msg += "; did you mean " + near + "?"
		}
		w = append(w, msg)
	}
	slices.Sort(w)
	return w
}

// closestName returns the known variable nearest to name: the one with the
// smallest edit distance, compared in upper case, if that distance is at
// most a third of the name's length (a typo, not another word); else "".
func closestName(name string) string {
	upper := strings.ToUpper(name)
	best, bestD := "", len(upper)/3+1
	for _, s := range settings {
		if d := editDistance(upper, s.name); d < bestD {
			best, bestD = s.name, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes (the
// names are ASCII).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
