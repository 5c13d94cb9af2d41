package lambdatest

import (
	"io"
	"time"
)

// Options configures an emulated execution environment. The zero value of
// every field means its documented default.
type Options struct {
	// Extensions are executable paths started as external extensions (the
	// real binary). Empty means in-process mode: nobody is started, a test
	// registers its own client against URL() and freezing is logical only.
	Extensions []string
	// Env holds extra "K=V" variables for the children (O2_* settings).
	Env []string
	// FunctionName defaults to "test-function".
	FunctionName string
	// FunctionVersion defaults to "$LATEST".
	FunctionVersion string
	// Region defaults to "us-east-1".
	Region string
	// MemoryMB defaults to 128.
	MemoryMB int
	// FunctionTimeout bounds each invocation (INVOKE deadlineMs); default 3s.
	FunctionTimeout time.Duration
	// ShutdownTimeout is the SHUTDOWN budget (deadlineMs); the extensions
	// still running then are SIGKILLed. Default 2s, Lambda's limit with an
	// external extension.
	ShutdownTimeout time.Duration
	// InitTimeout bounds init (Lambda's 10s, the default).
	InitTimeout time.Duration
	// LogFormat is "text" (the default) or "json"; managed instances only
	// know "json", their default.
	LogFormat string
	// ManagedInstances emulates Lambda Managed Instances: no INVOKE for
	// extensions, schema 2025-01-29 only, no platform.runtimeDone, no
	// freeze, concurrent invocations.
	ManagedInstances bool
	// MaxConcurrency is AWS_LAMBDA_MAX_CONCURRENCY in managed-instances
	// mode; default 10.
	MaxConcurrency int
	// TelemetryNotSupported answers subscriptions 202 Telemetry.NotSupported
	// and delivers nothing, like the AWS Runtime Interface Emulator.
	TelemetryNotSupported bool
	// MaxQueuedEvents bounds each subscriber's queue; beyond it events are
	// dropped and reported in platform.logsDropped. Default 10000.
	MaxQueuedEvents int
	// DeliveryRetries is how many times a failed delivery POST is retried
	// before its batch is dropped (and reported in platform.logsDropped).
	// Default 5; negative means no retry.
	DeliveryRetries int
	// RetryBackoff is the first retry delay, doubled per retry up to 1s.
	// Default 100ms.
	RetryBackoff time.Duration
	// AccountID is returned on registration with the accountId feature and
	// used in ARNs; default "123456789012".
	AccountID string
	// Handler is the function handler returned on registration; default
	// "index.handler".
	Handler string
	// Output, when set, also receives the extensions' stdout/stderr lines
	// (e.g. t.Output()).
	Output io.Writer
}

const (
	// maxExtensions is Lambda's limit on registered extensions.
	maxExtensions = 10
	// lambdaPath is the PATH Lambda gives its processes.
	lambdaPath = "/usr/local/bin:/usr/bin/:/bin:/opt/bin"
)

// withDefaults returns o with every zero field set to its default.
func (o Options) withDefaults() Options {
	if o.FunctionName == "" {
		o.FunctionName = "test-function"
	}
	if o.FunctionVersion == "" {
		o.FunctionVersion = "$LATEST"
	}
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	if o.MemoryMB <= 0 {
		o.MemoryMB = 128
	}
	if o.FunctionTimeout <= 0 {
		o.FunctionTimeout = 3 * time.Second
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 2 * time.Second
	}
	if o.InitTimeout <= 0 {
		o.InitTimeout = 10 * time.Second
	}
	if o.LogFormat == "" {
		o.LogFormat = "text"
		if o.ManagedInstances {
			o.LogFormat = "json"
		}
	}
	if o.MaxConcurrency <= 0 {
		o.MaxConcurrency = 10
	}
	if o.MaxQueuedEvents <= 0 {
		o.MaxQueuedEvents = 10000
	}
	switch {
	case o.DeliveryRetries == 0:
		o.DeliveryRetries = 5
	case o.DeliveryRetries < 0:
		o.DeliveryRetries = 0
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = 100 * time.Millisecond
	}
	if o.AccountID == "" {
		o.AccountID = "123456789012"
	}
	if o.Handler == "" {
		o.Handler = "index.handler"
	}
	return o
}

// initializationType is AWS_LAMBDA_INITIALIZATION_TYPE and the records'
// initializationType.
func (o Options) initializationType() string {
	if o.ManagedInstances {
		return "lambda-managed-instances"
	}
	return "on-demand"
}

// functionARN is the unqualified ARN of the emulated function.
func (o Options) functionARN() string {
	return "arn:aws:lambda:" + o.Region + ":" + o.AccountID + ":function:" + o.FunctionName
}
