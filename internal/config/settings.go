package config

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Names of the variables the code refers to outside the table.
const (
	envEndpoint          = "O2_ENDPOINT"
	envStream            = "O2_STREAM"
	envAuthorization     = "O2_AUTHORIZATION_HEADER"
	envSecretARN         = "O2_AUTHORIZATION_HEADER_SECRET_ARN"
	envSecretKey         = "O2_AUTHORIZATION_HEADER_SECRET_KEY"
	envSSMParameter      = "O2_AUTHORIZATION_HEADER_SSM_PARAMETER"
	envMaxBatchBytes     = "O2_MAX_BATCH_BYTES"
	envMaxRecordBytes    = "O2_MAX_RECORD_BYTES"
	envMaxBufferSize     = "O2_MAX_BUFFER_SIZE_MB"
	envInitialRetryDelay = "O2_INITIAL_RETRY_DELAY_MS"
	envMaxRetryDelay     = "O2_MAX_RETRY_DELAY_MS"
	envListenerPort      = "O2_LISTENER_PORT"
	envOTLPPort          = "O2_OTLP_PORT"
	envFlushBudget       = "O2_FLUSH_BUDGET_MS"
	envFields            = "O2_FIELDS"
	envTenantStream      = "O2_TENANT_STREAM"
	envExcludeTypes      = "O2_EXCLUDE_TYPES"
	envMinLevel          = "O2_MIN_LEVEL"
)

// setting describes one variable: how to read it into a Config, how to judge
// the typed value, how to repair it, and how to print it. One table drives
// Load, validate, Redacted and Variables, so the four cannot drift apart.
type setting struct {
	name string
	desc string
	// fatal marks a setting without which nothing can be sent (endpoint,
	// organization, authorization): a bad value fails open. Any other bad
	// value is repaired or replaced by its default, with a warning, so that
	// a typo in a tunable never stops the logs.
	fatal bool
	// parse converts v (trimmed, non-empty) into c. It fails only when v is
	// not of the setting's kind (not a number, not key=value, ...), never
	// for its range: that is check's to judge. A number too large for its
	// type is stored saturated with a rangeError, so fix
	// can still bring it in range.
	parse func(c *Config, v string) error
	// check reports what is wrong with the typed value in c, nil if nothing.
	check func(c Config) error
	// fix, if set, moves a value check refused to the nearest allowed one
	// and reports whether it could.
	fix func(c *Config) bool
	// show prints the typed value the way the variable is written.
	show func(c Config) string
}

// rangeError is a parse error for a number too large for its type: the
// value is still a number, so it is clamped like any out-of-range one.
type rangeError struct{ msg string }

func (e rangeError) Error() string { return e.msg }

// isOutOfRange reports whether parse stored a saturated number.
func isOutOfRange(err error) bool {
	_, ok := errors.AsType[rangeError](err)
	return ok
}

// settings lists every variable in the order of the Config fields; that
// order is the stable order of Redacted and Variables.
var settings = []setting{
	{
		name:  envEndpoint,
		desc:  "OpenObserve base URL, http:// or https://, without /api (a trailing /api is dropped, with a warning); a trailing '/' is dropped",
		fatal: true,
		parse: func(c *Config, v string) error { c.Endpoint = strings.TrimRight(v, "/"); return nil },
		check: func(c Config) error { return checkEndpoint(c.Endpoint) },
		// An endpoint ending in /api is the commonest mistake (the ingest
		// path starts with /api): drop it rather than fail as "unknown
		// organization" at the first request.
		fix: func(c *Config) bool {
			e, ok := strings.CutSuffix(c.Endpoint, "/api")
			if ok {
				c.Endpoint = strings.TrimRight(e, "/")
			}
			return ok
		},
		show: func(c Config) string { return hideUserinfo(c.Endpoint) },
	},
	requiredString("O2_ORGANIZATION_ID", "required: OpenObserve organization id, used verbatim in the ingest path",
		func(c *Config) *string { return &c.Organization }),
	nonEmptyString(envStream, "OpenObserve stream the logs go to",
		func(c *Config) *string { return &c.Stream }),
	{
		name:  envAuthorization,
		desc:  "secret: the Authorization header sent as is, e.g. 'Basic <base64 of email:password or ingestion token>'. For local runs; on Lambda prefer " + envSecretARN + " or " + envSSMParameter + " (exactly one of the three is required)",
		fatal: true,
		// Only trimmed here: the value is a secret, so all judging (and its
		// messages, which must not echo it) happens in checkAuth.
		parse: func(c *Config, v string) error { c.Authorization = v; return nil },
		check: func(c Config) error {
			if c.Authorization == "" && (c.AuthSecretARN != "" || c.AuthSSMParameter != "") {
				return nil // fetched at run time and judged then
			}
			return checkAuth(c.Authorization)
		},
		show: func(c Config) string { return redactAuth(c.Authorization) },
	},
	{
		name:  envSecretARN,
		desc:  "ARN of a Secrets Manager secret holding the Authorization value, either as the whole string or as a JSON object (see " + envSecretKey + "); fetched at start, and again after a 401. The function's role needs secretsmanager:GetSecretValue on it (and kms:Decrypt for a customer managed key)",
		parse: func(c *Config, v string) error { c.AuthSecretARN = v; return nil },
		check: func(c Config) error { return checkSecretARN(c.AuthSecretARN) },
		fatal: true,
		show:  func(c Config) string { return c.AuthSecretARN },
	},
	nonEmptyString(envSecretKey, "the key holding the Authorization value when the secret of "+envSecretARN+" is a JSON object",
		func(c *Config) *string { return &c.AuthSecretKey }),
	{
		name:  envSSMParameter,
		desc:  "name or ARN of an SSM parameter (a SecureString, read with decryption) holding the Authorization value. The function's role needs ssm:GetParameter on it and kms:Decrypt on its key",
		parse: func(c *Config, v string) error { c.AuthSSMParameter = v; return nil },
		check: func(c Config) error { return checkSSMParameter(c.AuthSSMParameter) },
		fatal: true,
		show:  func(c Config) string { return c.AuthSSMParameter },
	},
	intSetting("O2_BATCH_SIZE", "most records in one request", "", func(c *Config) *int { return &c.BatchSize }, 1, 10000),
	intSetting(envMaxBatchBytes, "most uncompressed bytes in one request body", "bytes",
		func(c *Config) *int { return &c.MaxBatchBytes }, 64*kib, 64*mib),
	intSetting(envMaxRecordBytes, "longest record; a longer one is split or truncated. At most O2_MAX_BATCH_BYTES, and the default follows a smaller O2_MAX_BATCH_BYTES", "bytes",
		func(c *Config) *int { return &c.MaxRecordBytes }, 1*kib, 64*mib),
	msSetting("O2_FLUSH_INTERVAL_MS", "the most a record waits in the buffer while the function runs before it is sent, in every mode (a full batch goes at once)",
		func(c *Config) *time.Duration { return &c.FlushInterval }, 100, 600000),
	intSetting("O2_MAX_IN_FLIGHT", "most requests in flight at once; a failed one waits out its backoff while the others keep sending", "",
		func(c *Config) *int { return &c.MaxInFlight }, 1, 16),
	{
		name: envMaxBufferSize,
		desc: "bound of the whole in-memory buffer in MiB (1..1024); beyond it the oldest records are dropped and counted",
		parse: func(c *Config, v string) error {
			n, err := parseWhole(envMaxBufferSize, v, "", "1..1024")
			if err != nil && !isOutOfRange(err) {
				return err
			}
			// Saturated far beyond the range, so the multiplication
			// cannot overflow; check judges the range.
			c.MaxBufferBytes = int(max(min(n, 1<<30), -1)) * mib
			return err
		},
		check: func(c Config) error {
			if c.MaxBufferBytes < 1*mib || c.MaxBufferBytes > 1024*mib {
				return fmt.Errorf("%s: %s is out of range (allowed 1..1024)", envMaxBufferSize, formatMiB(c.MaxBufferBytes))
			}
			return nil
		},
		fix: func(c *Config) bool {
			c.MaxBufferBytes = min(max(c.MaxBufferBytes, 1*mib), 1024*mib)
			return true
		},
		show: func(c Config) string { return formatMiB(c.MaxBufferBytes) },
	},
	msSetting("O2_REQUEST_TIMEOUT_MS", "timeout of one HTTP attempt",
		func(c *Config) *time.Duration { return &c.RequestTimeout }, 100, 300000),
	intSetting("O2_MAX_RETRIES", "retries of a failed request after the first attempt; its records then go back to the buffer and are sent again later (nothing is dropped for it)", "",
		func(c *Config) *int { return &c.MaxRetries }, 0, 10),
	msSetting(envInitialRetryDelay, "cap of the first jittered backoff (the first failure is retried at once), doubled on each further failure in a row; at most O2_MAX_RETRY_DELAY_MS",
		func(c *Config) *time.Duration { return &c.InitialRetryDelay }, 10, 60000),
	msSetting(envMaxRetryDelay, "longest backoff between retries, and longest pause a Retry-After can ask for: a failed OpenObserve is probed at least this often",
		func(c *Config) *time.Duration { return &c.MaxRetryDelay }, 10, 300000),
	{
		name: "O2_LOG_LEVEL",
		desc: "the extension's own log level: trace, debug, info, warn (or warning) or error",
		parse: func(c *Config, v string) error {
			l := strings.ToLower(v)
			if l == "warning" {
				l = "warn"
			}
			c.LogLevel = l
			return nil
		},
		check: func(c Config) error {
			// Stored lower-case, as Load leaves it; callers rely on that.
			if !slices.Contains(logLevels, c.LogLevel) {
				return fmt.Errorf("O2_LOG_LEVEL: %s is not a log level (allowed %s)", quote(c.LogLevel), strings.Join(logLevels, ", "))
			}
			return nil
		},
		show: func(c Config) string { return c.LogLevel },
	},
	{
		name: envListenerPort,
		desc: "port of the telemetry listener; 0 lets the OS choose a free one (8080 often clashes with other layers)",
		parse: func(c *Config, v string) error {
			n, err := parseWhole(envListenerPort, v, "", portRange)
			if err != nil {
				return err // a port too large for int64 gets the default too
			}
			c.ListenerPort = int(max(min(n, math.MaxInt32), math.MinInt32))
			return nil
		},
		check: func(c Config) error { return checkPort(envListenerPort, c.ListenerPort) },
		show:  func(c Config) string { return strconv.Itoa(c.ListenerPort) },
	},
	{
		name: envOTLPPort,
		desc: "port of the OTLP/HTTP receiver on 127.0.0.1 for the function's own OpenTelemetry SDK (traces, metrics and logs, sent to {endpoint}/api/{org}/v1/traces, /v1/metrics and /v1/logs whatever O2_METRICS and O2_TRACES say); 0 turns it off",
		parse: func(c *Config, v string) error {
			n, err := parseWhole(envOTLPPort, v, "", portRange)
			if err != nil {
				return err // a port too large for int64 gets the default too
			}
			c.OTLPPort = int(max(min(n, math.MaxInt32), math.MinInt32))
			return nil
		},
		check: func(c Config) error { return checkPort(envOTLPPort, c.OTLPPort) },
		show:  func(c Config) string { return strconv.Itoa(c.OTLPPort) },
	},
	{
		name: "O2_FLUSH_STRATEGY",
		desc: "auto (chosen from the invocation rate), end (flush after each invocation), continuous (flush in the background) or periodic",
		parse: func(c *Config, v string) error {
			c.FlushStrategy = Strategy(strings.ToLower(v))
			return nil
		},
		check: func(c Config) error {
			if !slices.Contains(strategies, c.FlushStrategy) {
				return fmt.Errorf("O2_FLUSH_STRATEGY: %s is not a flush strategy (allowed %s)", quote(string(c.FlushStrategy)), strategyList())
			}
			return nil
		},
		show: func(c Config) string { return string(c.FlushStrategy) },
	},
	{
		name: "O2_HIGH_FREQUENCY_THRESHOLD",
		desc: "invocations per minute from which auto switches to continuous flushing (>0..100000)",
		parse: func(c *Config, v string) error {
			f, err := strconv.ParseFloat(v, 64)
			switch {
			case errors.Is(err, strconv.ErrRange): // ±Inf: saturated, for fix
				c.HighFrequencyThreshold = f
				return rangeError{fmt.Sprintf("O2_HIGH_FREQUENCY_THRESHOLD: %s is out of range (allowed >0..100000)", quote(v))}
			case err != nil, math.IsNaN(f), math.IsInf(f, 0): // ParseFloat accepts "NaN" and "Inf"
				return fmt.Errorf("O2_HIGH_FREQUENCY_THRESHOLD: %s is not a number (allowed >0..100000)", quote(v))
			}
			c.HighFrequencyThreshold = f
			return nil
		},
		// Only a threshold above the range has a nearest allowed value; one
		// of 0 or below (the range is open at 0) gets the default.
		fix: func(c *Config) bool {
			if c.HighFrequencyThreshold > 100000 {
				c.HighFrequencyThreshold = 100000
				return true
			}
			return false
		},
		check: func(c Config) error {
			if f := c.HighFrequencyThreshold; !(f > 0 && f <= 100000) { // also catches NaN
				return fmt.Errorf("O2_HIGH_FREQUENCY_THRESHOLD: %s is out of range (allowed >0..100000)", formatFloat(f))
			}
			return nil
		},
		show: func(c Config) string { return formatFloat(c.HighFrequencyThreshold) },
	},
	msSetting("O2_RATE_WINDOW_MS", "how far back invocations count towards the rate",
		func(c *Config) *time.Duration { return &c.RateWindow }, 10000, 3600000),
	msSetting("O2_LONG_RUNNING_MS", "an invocation running longer than this is flushed periodically",
		func(c *Config) *time.Duration { return &c.LongRunning }, 1000, 900000),
	msSetting(envFlushBudget, "most an end-of-invocation flush may add after the runtime is done; what is left is kept for later",
		func(c *Config) *time.Duration { return &c.FlushBudget }, 50, 60000),
	{
		name:  envFields,
		desc:  "extra fields on every record, 'k1=v1,k2=v2'; keys of letters, digits and '_', not a field the extension sets itself",
		parse: parseFields,
		check: func(c Config) error { return checkFields(c.Fields) },
		show:  func(c Config) string { return formatFields(c.Fields) },
	},
	{
		name:  envExcludeTypes,
		desc:  "event types not sent to OpenObserve, comma-separated, e.g. 'platform.start,platform.runtimeDone' or 'platform.*'; the extension still sees them",
		parse: parseExcludeTypes,
		check: func(c Config) error { return checkExcludeTypes(c.ExcludeTypes) },
		show:  func(c Config) string { return strings.Join(c.ExcludeTypes, ",") },
	},
	{
		name: envMinLevel,
		desc: "function and extension log records below this level are not sent: " + strings.Join(minLevels, ", ") + " (WARNING and CRITICAL accepted); records without a level always are",
		parse: func(c *Config, v string) error {
			c.MinLevel = strings.ToUpper(v)
			if a, ok := levelAliases[c.MinLevel]; ok {
				c.MinLevel = a
			}
			return nil
		},
		check: func(c Config) error {
			if c.MinLevel != "" && !slices.Contains(minLevels, c.MinLevel) {
				return fmt.Errorf("%s: %s is not a level (allowed %s)", envMinLevel, quote(c.MinLevel), strings.Join(minLevels, ", "))
			}
			return nil
		},
		show: func(c Config) string { return c.MinLevel },
	},
	boolSetting("O2_METRICS", "send each invocation's numbers (duration, memory, errors, cold starts...) as OTLP metrics to {endpoint}/api/{org}/v1/metrics (the function's own metrics, from O2_OTLP_PORT, go there either way)",
		func(c *Config) *bool { return &c.Metrics }),
	boolSetting("O2_TRACES", "send a trace per invocation (init, runtime, response, post-runtime spans) to {endpoint}/api/{org}/v1/traces, and put its trace_id and span_id on the invocation's log records (the function's own spans, from O2_OTLP_PORT, go there either way)",
		func(c *Config) *bool { return &c.Traces }),
	boolSetting("O2_TENANT_REPORT", "send per-customer memory reports to OpenObserve",
		func(c *Config) *bool { return &c.TenantReport }),
	nonEmptyString("O2_TENANT_MESSAGE", "message of the per-customer memory report",
		func(c *Config) *string { return &c.TenantMessage }),
	nonEmptyString("O2_TENANT_FIELD", "log field that names the customer",
		func(c *Config) *string { return &c.TenantField }),
	{
		name:  envTenantStream,
		desc:  "stream of the per-customer memory reports; empty means the logs stream",
		parse: func(c *Config, v string) error { c.TenantStream = v; return nil },
		check: func(Config) error { return nil }, // empty is meaningful, anything else is a stream name
		show:  func(c Config) string { return c.TenantStream },
	},
	boolSetting("O2_TENANT_EMF", "also print each memory report as a CloudWatch EMF line on stdout",
		func(c *Config) *bool { return &c.TenantEMF }),
	nonEmptyString("O2_TENANT_EMF_NAMESPACE", "CloudWatch namespace of the EMF metric",
		func(c *Config) *string { return &c.TenantEMFNamespace }),
	nonEmptyString("O2_TENANT_EMF_METRIC", "CloudWatch name of the EMF metric",
		func(c *Config) *string { return &c.TenantEMFMetric }),
	nonEmptyString("O2_TENANT_EMF_DIMENSION", "CloudWatch dimension that holds the customer",
		func(c *Config) *string { return &c.TenantEMFDimension }),
}

// logLevels are the accepted O2_LOG_LEVEL values, in their stored form.
var logLevels = []string{"trace", "debug", "info", "warn", "error"}

// minLevels are the accepted O2_MIN_LEVEL values, in their stored form.
var minLevels = []string{"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"}

// levelAliases are the other words runtimes print for a level (Python's),
// stored as the level they rank as.
//
// minLevels and levelAliases copy telemetry.Levels and
// telemetry.LevelAliases, which the filter applies (config imports only the
// standard library); TestConfigLevelsAreTelemetrys in cmd/o2-extension
// fails when they drift apart.
var levelAliases = map[string]string{"WARNING": "WARN", "CRITICAL": "FATAL"}

// knownTypes are the event types Lambda sends (lambda-platform.md); an
// O2_EXCLUDE_TYPES entry that matches none of them is most likely a typo.
var knownTypes = []string{
	"function", "extension",
	"platform.initStart", "platform.initRuntimeDone", "platform.initReport",
	"platform.start", "platform.runtimeDone", "platform.report",
	"platform.extension", "platform.telemetrySubscription", "platform.logsDropped",
	"platform.restoreStart", "platform.restoreRuntimeDone", "platform.restoreReport",
}

// parseExcludeTypes reads a comma-separated list; empty entries are ignored.
func parseExcludeTypes(c *Config, v string) error {
	var types []string
	for t := range strings.SplitSeq(v, ",") {
		if t = strings.TrimSpace(t); t != "" && !slices.Contains(types, t) {
			types = append(types, t)
		}
	}
	c.ExcludeTypes = types
	return nil
}

// checkExcludeTypes wants each entry to be a type name (letters and '.'),
// optionally ending in '*' for a prefix.
func checkExcludeTypes(types []string) error {
	var errs []error
	for _, t := range types {
		name, _ := strings.CutSuffix(t, "*")
		ok := name != "" || t == "*"
		for _, r := range name {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '.') {
				ok = false
			}
		}
		if !ok {
			errs = append(errs, fmt.Errorf("%s: %s is not an event type (letters and '.', or a prefix ending in '*', e.g. platform.start or platform.*)", envExcludeTypes, quote(t)))
		}
	}
	return errors.Join(errs...)
}

// strategies are the accepted O2_FLUSH_STRATEGY values.
var strategies = []Strategy{StrategyAuto, StrategyEnd, StrategyContinuous, StrategyPeriodic}

func strategyList() string {
	s := make([]string, len(strategies))
	for i, v := range strategies {
		s[i] = string(v)
	}
	return strings.Join(s, ", ")
}

// reservedFields are the record fields the extension sets itself; O2_FIELDS
// may not override them. OpenObserve lower-cases field names, so they are
// compared case-insensitively. The first seven are the keys the encoder
// writes (openobserve's reservedKeys), the rest the ones main adds from the
// environment (recordFields): config imports only the standard library, so
// TestConfigReservedFieldsAreTheEncoders in cmd/o2-extension fails when
// this list and those two drift apart.
var reservedFields = []string{
	"_timestamp", "type", "record", "requestId", "level", "trace_id", "span_id", "part", "truncated", "record_as_text",
	"function_name", "function_version", "region", "memory_size_mb",
}

// runtimeAPIPort is where the Lambda Runtime and Extensions APIs listen.
const runtimeAPIPort = 9001

const portRange = "0 or 1024..65535, except 9001"

// intSetting is a whole number within lo..hi; unit, if any, follows the range.
func intSetting(name, desc, unit string, p func(*Config) *int, lo, hi int) setting {
	allowed := fmt.Sprintf("%d..%d", lo, hi)
	if unit != "" {
		allowed += " " + unit
	}
	return setting{
		name: name,
		desc: fmt.Sprintf("%s (%s)", desc, allowed),
		parse: func(c *Config, v string) error {
			n, err := parseWhole(name, v, "", allowed)
			if err == nil || isOutOfRange(err) {
				*p(c) = int(n)
			}
			return err
		},
		check: func(c Config) error {
			if n := *p(&c); n < lo || n > hi {
				return fmt.Errorf("%s: %d is out of range (allowed %s)", name, n, allowed)
			}
			return nil
		},
		fix:  func(c *Config) bool { *p(c) = min(max(*p(c), lo), hi); return true },
		show: func(c Config) string { return strconv.Itoa(*p(&c)) },
	}
}

// msSetting is a duration written as whole milliseconds within lo..hi.
func msSetting(name, desc string, p func(*Config) *time.Duration, lo, hi int64) setting {
	allowed := fmt.Sprintf("%d..%d", lo, hi)
	return setting{
		name: name,
		desc: fmt.Sprintf("%s (milliseconds, %s)", desc, allowed),
		parse: func(c *Config, v string) error {
			n, err := parseWhole(name, v, " of milliseconds", allowed)
			const most = math.MaxInt64 / int64(time.Millisecond)
			if err == nil && (n > most || n < -most) {
				err = rangeError{fmt.Sprintf("%s: %s is out of range (allowed %s)", name, quote(v), allowed)}
			}
			if err == nil || isOutOfRange(err) {
				// Saturated so that the conversion cannot overflow.
				*p(c) = time.Duration(max(min(n, most), -most)) * time.Millisecond
			}
			return err
		},
		check: func(c Config) error {
			if d := *p(&c); d < time.Duration(lo)*time.Millisecond || d > time.Duration(hi)*time.Millisecond {
				return fmt.Errorf("%s: %s is out of range (allowed %s)", name, formatMs(d), allowed)
			}
			return nil
		},
		fix: func(c *Config) bool {
			*p(c) = min(max(*p(c), time.Duration(lo)*time.Millisecond), time.Duration(hi)*time.Millisecond)
			return true
		},
		show: func(c Config) string { return formatMs(*p(&c)) },
	}
}

// boolSetting accepts the usual spellings of yes and no.
func boolSetting(name, desc string, p func(*Config) *bool) setting {
	return setting{
		name: name,
		desc: desc + " (true/false, 1/0, yes/no, on/off)",
		parse: func(c *Config, v string) error {
			switch strings.ToLower(v) {
			case "true", "1", "yes", "on":
				*p(c) = true
			case "false", "0", "no", "off":
				*p(c) = false
			default:
				return fmt.Errorf("%s: %s is not a boolean (allowed true/false, 1/0, yes/no, on/off)", name, quote(v))
			}
			return nil
		},
		check: func(Config) error { return nil },
		show:  func(c Config) string { return strconv.FormatBool(*p(&c)) },
	}
}

// nonEmptyString is a string with a default that must not be blanked.
func nonEmptyString(name, desc string, p func(*Config) *string) setting {
	return setting{
		name:  name,
		desc:  desc,
		parse: func(c *Config, v string) error { *p(c) = v; return nil },
		check: func(c Config) error {
			if strings.TrimSpace(*p(&c)) == "" {
				return fmt.Errorf("%s must not be empty", name)
			}
			return nil
		},
		show: func(c Config) string { return *p(&c) },
	}
}

// requiredString is a string without a default.
func requiredString(name, desc string, p func(*Config) *string) setting {
	s := nonEmptyString(name, desc, p)
	s.fatal = true
	s.check = func(c Config) error {
		if strings.TrimSpace(*p(&c)) == "" {
			return fmt.Errorf("%s is required", name)
		}
		return nil
	}
	return s
}

// parseWhole parses a base-10 integer; what ("" or " of milliseconds") and
// allowed only shape the message. A number too large for int64 is returned
// saturated, with a rangeError.
func parseWhole(name, v, what, allowed string) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if errors.Is(err, strconv.ErrRange) {
		return n, rangeError{fmt.Sprintf("%s: %s is out of range (allowed %s)", name, quote(v), allowed)}
	}
	if err != nil {
		return 0, fmt.Errorf("%s: %s is not a whole number%s (allowed %s)", name, quote(v), what, allowed)
	}
	return n, nil
}

// checkPort judges the port setting name.
func checkPort(name string, p int) error {
	switch {
	case p == runtimeAPIPort:
		return fmt.Errorf("%s: %d is reserved by the Lambda Runtime API (allowed %s)", name, p, portRange)
	case p == 0, p >= 1024 && p <= 65535:
		return nil
	default:
		return fmt.Errorf("%s: %d is out of range (allowed %s)", name, p, portRange)
	}
}

// checkEndpoint wants an absolute http(s) URL with a host and no query,
// fragment or credentials. A path is allowed: OpenObserve may be served
// under a base URI (ZO_BASE_URI) or behind a proxy.
func checkEndpoint(v string) error {
	if v == "" {
		return fmt.Errorf("%s must not be empty (e.g. %s)", envEndpoint, defaultEndpoint)
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return fmt.Errorf("%s: %s is not an absolute http:// or https:// URL with a host (e.g. %s)",
			envEndpoint, quote(hideUserinfo(v)), defaultEndpoint)
	}
	if u.User != nil {
		// Go's client would ignore them next to our Authorization header.
		return fmt.Errorf("%s: %s must not contain credentials; put them in %s",
			envEndpoint, quote(hideUserinfo(v)), envAuthorization)
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(v, "#") {
		return fmt.Errorf("%s: %s must not have a query or fragment", envEndpoint, quote(hideUserinfo(v)))
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%s: %s has port %s, out of range (allowed 1..65535)", envEndpoint, quote(hideUserinfo(v)), p)
		}
	}
	if strings.HasSuffix(strings.TrimRight(u.Path, "/"), "/api") {
		return fmt.Errorf("%s: %s ends in /api, which the extension appends itself (it wants the server's base URL)", envEndpoint, quote(v))
	}
	return nil
}

// hideUserinfo masks whatever precedes '@' in the authority of a URL-like
// string, user name included (it may be a token), and the values of its
// query and its fragment (`?token=…`). It works on strings that do not
// parse, which is when they are most likely to be echoed.
func hideUserinfo(v string) string {
	if i := strings.IndexAny(v, "?#"); i >= 0 {
		v = v[:i] + hideQuery(v[i:])
	}
	return hideAuthority(v)
}

// hideQuery masks the values of "?k=v&k2=v2#frag", keeping the keys.
func hideQuery(q string) string {
	var b strings.Builder
	for i := 0; i < len(q); {
		j := i + 1
		for j < len(q) && q[j] != '&' && q[j] != '#' {
			j++
		}
		part := q[i:j] // "?k=v", "&k=v" or "#frag"
		if part[0] == '#' {
			b.WriteString("#[redacted]")
		} else if k, _, ok := strings.Cut(part, "="); ok {
			b.WriteString(k + "=[redacted]")
		} else {
			b.WriteString(part)
		}
		i = j
	}
	return b.String()
}

func hideAuthority(v string) string {
	i := strings.Index(v, "://")
	if i < 0 {
		return v
	}
	rest := v[i+3:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	at := strings.LastIndex(rest[:end], "@")
	if at < 0 {
		return v
	}
	return v[:i+3] + "xxxxx" + rest[at:]
}

// parseFields reads "k1=v1,k2=v2". Empty entries (a trailing comma) are
// ignored; anything else malformed is reported, each entry on its own.
func parseFields(c *Config, v string) error {
	fields := make(map[string]string)
	var errs []error
	for entry := range strings.SplitSeq(v, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		k, val, ok := strings.Cut(entry, "=")
		if !ok {
			errs = append(errs, fmt.Errorf("%s: entry %s is not key=value", envFields, quote(entry)))
			continue
		}
		k = strings.TrimSpace(k)
		if _, dup := fields[k]; dup {
			errs = append(errs, fmt.Errorf("%s: key %s is given twice", envFields, quote(k)))
			continue
		}
		fields[k] = strings.TrimSpace(val)
	}
	if len(fields) == 0 {
		fields = nil // only commas: same as unset
	}
	// Stored even with errors: Load then judges the keys that did parse
	// too, so every problem is reported at once.
	c.Fields = fields
	return errors.Join(errs...)
}

// checkFields reports every bad key, in sorted order.
func checkFields(fields map[string]string) error {
	var errs []error
	seen := make(map[string]string) // lower-cased key -> key
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		switch {
		case k == "":
			errs = append(errs, fmt.Errorf("%s: a key is empty (entries are key=value, comma-separated)", envFields))
			continue
		case !isFieldName(k):
			errs = append(errs, fmt.Errorf("%s: key %s may contain only letters, digits and '_'", envFields, quote(k)))
			continue
		case slices.ContainsFunc(reservedFields, func(r string) bool { return strings.EqualFold(r, k) }):
			errs = append(errs, fmt.Errorf("%s: key %s is reserved (reserved: %s)", envFields, quote(k), strings.Join(reservedFields, ", ")))
			continue
		}
		// OpenObserve lower-cases field names, so "Env" and "env" would collide.
		l := strings.ToLower(k)
		if prev, ok := seen[l]; ok {
			errs = append(errs, fmt.Errorf("%s: keys %s and %s name the same field (OpenObserve lower-cases field names)", envFields, quote(prev), quote(k)))
			continue
		}
		seen[l] = k
	}
	return errors.Join(errs...)
}

func isFieldName(k string) bool {
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return k != ""
}

func formatFields(fields map[string]string) string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(fields)) {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k + "=" + fields[k])
	}
	return b.String()
}

// quote quotes a non-secret value for a message, cut to 64 characters so a
// pasted blob does not flood the log.
func quote(v string) string {
	const max = 64
	if utf8.RuneCountInString(v) > max {
		v = string([]rune(v)[:max]) + "…"
	}
	return strconv.Quote(v)
}

// formatMs writes d in milliseconds, with a fraction only if it has one.
func formatMs(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', -1, 64)
}

// formatMiB writes n bytes in MiB, with a fraction only if it has one.
func formatMiB(n int) string {
	return strconv.FormatFloat(float64(n)/mib, 'f', -1, 64)
}

func formatFloat(f float64) string {
	return strconv.FormatFloat(f, 'g', -1, 64)
}
