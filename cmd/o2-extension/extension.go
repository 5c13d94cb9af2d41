package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/o2-extension/o2-extension/internal/config"
	"github.com/o2-extension/o2-extension/internal/credential"
	"github.com/o2-extension/o2-extension/internal/extension"
	"github.com/o2-extension/o2-extension/internal/openobserve"
	"github.com/o2-extension/o2-extension/internal/otlp"
	"github.com/o2-extension/o2-extension/internal/otlpreceiver"
	"github.com/o2-extension/o2-extension/internal/strategy"
	"github.com/o2-extension/o2-extension/internal/telemetry"
	"github.com/o2-extension/o2-extension/internal/tenant"
	"github.com/sirupsen/logrus"
)

// runExtension runs the Lambda extension. Bad configuration never stops it:
// it registers, answers every event at once and forwards nothing ("fail
// open"), so a typo in a variable cannot break the function.
func runExtension(ctx context.Context, getenv func(string) string, environ []string, stdout io.Writer) error {
	cfg, warnings, cfgErr := config.Load(getenv, environ)
	log := newLogger(cfg.LogLevel, stdout)

	runtimeAPI := getenv("AWS_LAMBDA_RUNTIME_API")
	if runtimeAPI == "" {
		return errors.New("AWS_LAMBDA_RUNTIME_API is not set: run this inside AWS Lambda (or use --health-check to check the configuration locally)")
	}
	// One line that says what runs and where it sends, before anything can
	// go wrong: the first thing to look for in CloudWatch.
	log.WithFields(startFields(cfg)).Info("o2-extension starting")
	opts := extension.Options{
		RuntimeAPI:       runtimeAPI,
		Name:             extensionName(),
		Version:          version,
		ManagedInstances: getenv("AWS_LAMBDA_INITIALIZATION_TYPE") == "lambda-managed-instances",
		Logger:           log,
		HTTPClient:       &http.Client{}, // no timeout: /event/next blocks
	}
	for _, w := range warnings {
		log.Warn(w)
	}
	if cfgErr != nil {
		log.Error("configuration is invalid, forwarding nothing (the function is not affected): " + oneLine(cfgErr))
	} else {
		addr, host := listenAddress(cfg.ListenerPort)
		forced, auto, _ := strategy.ParseMode(string(cfg.FlushStrategy)) // validated by config
		// The fetch runs in the background from here on, alongside
		// registration and subscription: it never delays the first /next.
		// Requests wait for it within their own deadline; records buffer.
		cred := newCredential(cfg, getenv, log)
		if cred != nil {
			cred.Start(ctx)
			defer cred.Close()
		}
		client := openobserve.NewClient(clientOptions(cfg, getenv, log, cred))
		shipOpts := openobserve.ShipperOptions{
			InFlight:   cfg.MaxInFlight,
			BatchCount: cfg.BatchSize,
			Linger:     cfg.FlushInterval,
			Logger:     log,
		}
		opts.Delivery = func(buf *telemetry.Buffer) extension.Delivery {
			return shipper{openobserve.NewShipper(client, buf, shipOpts)}
		}
		signals := newBuilder(cfg, getenv)
		opts.Derive = derive(tenantReport(cfg, stdout), signals)
		opts.Filter = telemetry.Filter{ExcludeTypes: cfg.ExcludeTypes, MinLevel: cfg.MinLevel}
		if signals != nil && cfg.Traces {
			// Before buffering: the trace context goes out with each record.
			opts.Filter.Annotate = signals.Annotate
		}
		opts.ListenAddr = addr
		opts.DestinationHost = host
		opts.BufferBytes = cfg.MaxBufferBytes
		opts.Buffer = telemetry.NewBuffer(cfg.MaxBufferBytes)
		if rcv := startReceiver(cfg, opts.Buffer, log); rcv != nil {
			// Run closes it at SHUTDOWN; this is for the paths that
			// return before (registration failed).
			defer func() {
				cctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				_ = rcv.Close(cctx)
				cancel()
			}()
			opts.Receiver = receiver{rcv}
		}
		opts.FlushBudget = cfg.FlushBudget
		opts.Strategy = strategy.Options{
			Auto:        auto,
			Forced:      forced,
			Threshold:   cfg.HighFrequencyThreshold,
			Window:      cfg.RateWindow,
			LongRunning: cfg.LongRunning,
		}
	}
	return extension.Run(ctx, opts)
}

// startReceiver starts the OTLP receiver for the function's own SDK on
// 127.0.0.1:O2_OTLP_PORT, filling buf; nil when O2_OTLP_PORT is 0, or when
// the port cannot be bound: that is logged, and the rest runs as usual
// (fail open). Binding is synchronous and cheap (no I/O beyond the
// socket), so it can run before registration.
func startReceiver(cfg config.Config, buf *telemetry.Buffer, log *logrus.Entry) *otlpreceiver.Receiver {
	if cfg.OTLPPort == 0 {
		return nil
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.OTLPPort))
	rcv, err := otlpreceiver.Listen(otlpreceiver.Options{Addr: addr, Buffer: buf, MaxBatchBytes: cfg.MaxBatchBytes})
	if err != nil {
		log.WithError(err).Errorf("OTLP receiver: cannot listen on %s (O2_OTLP_PORT=%d): the function's own OpenTelemetry data is not received; everything else is forwarded as usual (set O2_OTLP_PORT to a free port, or 0 to turn the receiver off)",
			addr, cfg.OTLPPort)
		return nil
	}
	return rcv
}

// receiver is the OTLP receiver as the extension sees it.
type receiver struct{ *otlpreceiver.Receiver }

// Stats implements extension.Receiver: the summary's otlp* fields.
func (r receiver) Stats() any { return r.Receiver.Stats().Fields() }

// newCredential returns the source of the Authorization value when it is
// kept in Secrets Manager or SSM, nil when it is O2_AUTHORIZATION_HEADER.
// The AWS settings are those Lambda sets for the function's role.
func newCredential(cfg config.Config, getenv func(string) string, log *logrus.Entry) *credential.Source {
	if cfg.AuthSecretARN == "" && cfg.AuthSSMParameter == "" {
		return nil
	}
	region := getenv("AWS_REGION")
	if region == "" {
		region = getenv("AWS_DEFAULT_REGION")
	}
	return credential.New(credential.Options{
		SecretARN:       cfg.AuthSecretARN,
		SecretKey:       cfg.AuthSecretKey,
		KeyVar:          "O2_AUTHORIZATION_HEADER_SECRET_KEY",
		SSMParameter:    cfg.AuthSSMParameter,
		Region:          region,
		AccessKeyID:     getenv("AWS_ACCESS_KEY_ID"),
		SecretAccessKey: getenv("AWS_SECRET_ACCESS_KEY"),
		SessionToken:    getenv("AWS_SESSION_TOKEN"),
		// SnapStart offers the role's credentials this way instead.
		ContainerCredentialsURI: getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
		ContainerAuthToken:      getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
		ContainerAuthTokenFile:  getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"),
		Getenv:                  getenv,
		AttemptTimeout:          cfg.RequestTimeout,
		Logger:                  log,
	})
}

// clientOptions maps the configuration onto the OpenObserve client; cred,
// if not nil, supplies the Authorization value.
func clientOptions(cfg config.Config, getenv func(string) string, log *logrus.Entry, cred *credential.Source) openobserve.Options {
	var routes map[string]string
	if cfg.TenantStream != "" && cfg.TenantStream != cfg.Stream {
		tcfg := cfg
		tcfg.Stream = cfg.TenantStream
		routes = map[string]string{tenant.RecordType: tcfg.IngestURL()}
	}
	o := openobserve.Options{
		IngestURL:   cfg.IngestURL(),
		Routes:      routes,
		HealthURL:   cfg.HealthURL(),
		OrgCheckURL: cfg.OrgCheckURL(),
		// The function's own traces and metrics (the OTLP receiver) go
		// where the platform's do, whatever O2_METRICS and O2_TRACES say:
		// those control only what the extension derives itself.
		MetricsURL:     ifOn(cfg.Metrics || cfg.OTLPPort != 0, cfg.MetricsURL()),
		TracesURL:      ifOn(cfg.Traces || cfg.OTLPPort != 0, cfg.TracesURL()),
		LogsURL:        ifOn(cfg.OTLPPort != 0, cfg.LogsURL()),
		LogsStream:     cfg.Stream,
		Authorization:  cfg.Authorization,
		MaxBatchBytes:  cfg.MaxBatchBytes,
		MaxRecordBytes: cfg.MaxRecordBytes,
		AttemptTimeout: cfg.RequestTimeout,
		MaxRetries:     cfg.MaxRetries,
		RetryWaitMin:   cfg.InitialRetryDelay,
		RetryWaitMax:   cfg.MaxRetryDelay,
		Fields:         recordFields(cfg, getenv),
		Logger:         log,
	}
	if cred != nil {
		o.Credential = cred
	}
	return o
}

// recordFields are the static fields of every record: where it comes from
// (Lambda hides the log group and stream from extensions) and the user's own.
func recordFields(cfg config.Config, getenv func(string) string) map[string]any {
	f := map[string]any{}
	for k, v := range cfg.Fields {
		f[k] = v
	}
	set := func(k, env string) {
		if v := getenv(env); v != "" {
			f[k] = v
		}
	}
	set("function_name", "AWS_LAMBDA_FUNCTION_NAME")
	set("function_version", "AWS_LAMBDA_FUNCTION_VERSION")
	set("region", "AWS_REGION")
	if mb, err := strconv.Atoi(getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")); err == nil {
		f["memory_size_mb"] = mb
	}
	return f
}

// tenantReport returns the per-tenant memory report's hook, or nil when
// O2_TENANT_REPORT is off.
// EMF lines go to stdout, which Lambda sends to CloudWatch.
func tenantReport(cfg config.Config, stdout io.Writer) func(*telemetry.Event, time.Time) []telemetry.Event {
	if !cfg.TenantReport {
		return nil
	}
	t := tenant.New(tenant.Options{
		Message:      cfg.TenantMessage,
		Field:        cfg.TenantField,
		EMF:          cfg.TenantEMF,
		EMFNamespace: cfg.TenantEMFNamespace,
		EMFMetric:    cfg.TenantEMFMetric,
		EMFDimension: cfg.TenantEMFDimension,
		EMFOut:       stdout,
	})
	return t.Observe
}

// ifOn is s when on, else "".
func ifOn(on bool, s string) string {
	if on {
		return s
	}
	return ""
}

// newBuilder returns the builder of OTLP metrics and traces, or nil when
// O2_METRICS and O2_TRACES are both off. The resource comes from Lambda's
// variables; service.name is OTEL_SERVICE_NAME, as the function's own
// OpenTelemetry SDK would name it, else the function name.
func newBuilder(cfg config.Config, getenv func(string) string) *otlp.Builder {
	if !cfg.Metrics && !cfg.Traces {
		return nil
	}
	mb, _ := strconv.Atoi(getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"))
	service := getenv("OTEL_SERVICE_NAME")
	if service == "" {
		service = getenv("AWS_LAMBDA_FUNCTION_NAME")
	}
	return otlp.New(otlp.Options{
		Metrics: cfg.Metrics,
		Traces:  cfg.Traces,
		Version: version,
		Resource: otlp.Resource{
			ServiceName:     service,
			FunctionName:    getenv("AWS_LAMBDA_FUNCTION_NAME"),
			FunctionVersion: getenv("AWS_LAMBDA_FUNCTION_VERSION"),
			Region:          getenv("AWS_REGION"),
			MemoryMB:        mb,
		},
	})
}

// derive runs the tenant report's hook and the OTLP builder's (either may
// be nil) on every event, in that order; nil when both are.
func derive(tenantHook func(*telemetry.Event, time.Time) []telemetry.Event, b *otlp.Builder) func(*telemetry.Event, time.Time) []telemetry.Event {
	switch {
	case b == nil:
		return tenantHook
	case tenantHook == nil:
		return b.Observe
	}
	return func(ev *telemetry.Event, now time.Time) []telemetry.Event {
		return append(tenantHook(ev, now), b.Observe(ev, now)...)
	}
}

// shipper is the delivery as the extension sees it.
type shipper struct{ *openobserve.Shipper }

// Stats implements extension.Delivery.
func (s shipper) Stats() any { return s.Shipper.Stats() }

// extensionName is the executable's base name: Lambda requires it as the
// registration name of an external extension.
func extensionName() string {
	exe, err := os.Executable()
	if err != nil {
		return "o2-extension"
	}
	return filepath.Base(exe)
}

// listenAddress picks the telemetry listener's address: the one
// sandbox.localdomain has in /etc/hosts (what Lambda dials), else 127.0.0.1
// as on a laptop or in CI; never all interfaces. Only the hosts file is
// read: a DNS query would cost cold-start time and, inside a VPC, could
// even answer for another host.
func listenAddress(port int) (addr, host string) {
	const sandbox = "sandbox.localdomain"
	ip := hostsLookup("/etc/hosts", sandbox)
	if ip == "" {
		ip = "127.0.0.1"
	}
	return net.JoinHostPort(ip, strconv.Itoa(port)), sandbox
}

// hostsLookup returns the first IPv4 address the hosts file at path gives
// name, or "".
func hostsLookup(path, name string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(b)) {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		ip := net.ParseIP(f[0])
		if ip == nil || ip.To4() == nil {
			continue
		}
		for _, h := range f[1:] {
			if strings.EqualFold(h, name) {
				return ip.To4().String()
			}
		}
	}
	return ""
}

// newLogger writes logfmt lines without colours or timestamps (CloudWatch
// and OpenObserve add their own).
func newLogger(level string, w io.Writer) *logrus.Entry {
	l := logrus.New()
	l.SetOutput(w)
	l.SetFormatter(&logrus.TextFormatter{DisableColors: true, DisableTimestamp: true})
	lvl, err := logrus.ParseLevel(level)
	if err != nil {
		lvl = logrus.InfoLevel
	}
	l.SetLevel(lvl)
	return logrus.NewEntry(l).WithField("ext", "o2-extension")
}

// startFields are the fields of the start line: the version and commit, where the logs
// go (the endpoint's host only: no credentials, path or query), and how they
// are flushed.
func startFields(cfg config.Config) logrus.Fields {
	host := "(invalid)"
	if u, err := url.Parse(cfg.Endpoint); err == nil && u.Host != "" {
		host = u.Host
	}
	f := logrus.Fields{
		"version":   version,
		"endpoint":  host,
		"org":       cfg.Organization,
		"stream":    cfg.Stream,
		"strategy":  string(cfg.FlushStrategy),
		"otlp_port": cfg.OTLPPort, // 0: the receiver is off
	}
	if c := buildCommit(); c != "" {
		f["commit"] = c
	}
	return f
}

// oneLine joins every problem of a joined error on one line.
func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}
