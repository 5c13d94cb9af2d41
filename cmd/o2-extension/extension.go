package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/o2-extension/o2-extension/internal/config"
	"github.com/o2-extension/o2-extension/internal/credential"
	"github.com/o2-extension/o2-extension/internal/extension"
	"github.com/o2-extension/o2-extension/internal/openobserve"
	"github.com/o2-extension/o2-extension/internal/strategy"
	"github.com/o2-extension/o2-extension/internal/telemetry"
	"github.com/o2-extension/o2-extension/internal/tenant"
	"github.com/sirupsen/logrus"
)

// runExtension runs the Lambda extension. Bad configuration never stops it:
// it registers, answers every event at once and forwards nothing ("fail
// open"), so a typo in a variable cannot break the function.
func runExtension(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	cfg, cfgErr := config.Load(getenv)
	log := newLogger(cfg.LogLevel, stdout)

	runtimeAPI := getenv("AWS_LAMBDA_RUNTIME_API")
	if runtimeAPI == "" {
		return errors.New("AWS_LAMBDA_RUNTIME_API is not set: run this inside AWS Lambda (or use --health-check to check the configuration locally)")
	}
	opts := extension.Options{
		RuntimeAPI:       runtimeAPI,
		Name:             extensionName(),
		Version:          version,
		ManagedInstances: getenv("AWS_LAMBDA_INITIALIZATION_TYPE") == "lambda-managed-instances",
		Logger:           log,
		HTTPClient:       &http.Client{}, // no timeout: /event/next blocks
	}
	if cfgErr != nil {
		log.Error("configuration is invalid, forwarding nothing (the function is not affected): " + oneLine(cfgErr))
	} else {
		for _, w := range cfg.Warnings() {
			log.Warn(w)
		}
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
		opts.Sender = newSender(cfg, getenv, log, cred)
		opts.Derive = tenantReport(cfg)
		opts.Filter = telemetry.Filter{ExcludeTypes: cfg.ExcludeTypes, MinLevel: cfg.MinLevel}
		opts.ListenAddr = addr
		opts.DestinationHost = host
		opts.BufferBytes = cfg.MaxBufferBytes
		opts.BatchCount = cfg.BatchSize
		opts.BatchBytes = cfg.MaxBatchBytes
		opts.FlushInterval = cfg.FlushInterval
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
	retries := cfg.MaxRetries
	if retries == 0 {
		retries = -1 // the client reads 0 as "use the default"
	}
	o := openobserve.Options{
		IngestURL:      cfg.IngestURL(),
		HealthURL:      cfg.HealthURL(),
		Authorization:  cfg.Authorization,
		MaxBatchBytes:  cfg.MaxBatchBytes,
		MaxRecordBytes: cfg.MaxRecordBytes,
		AttemptTimeout: cfg.RequestTimeout,
		MaxRetries:     retries,
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
func tenantReport(cfg config.Config) func(*telemetry.Event, time.Time) []telemetry.Event {
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
		EMFOut:       os.Stdout,
	})
	return t.Observe
}

// newSender builds the OpenObserve client, and a second one when the tenant
// memory reports go to a stream of their own.
func newSender(cfg config.Config, getenv func(string) string, log *logrus.Entry, cred *credential.Source) extension.Sender {
	source := ""
	if cred != nil {
		source = cred.String()
	}
	logs := sender{openobserve.NewClient(clientOptions(cfg, getenv, log, cred)), source}
	if cfg.TenantStream == "" || cfg.TenantStream == cfg.Stream {
		return logs
	}
	tcfg := cfg
	tcfg.Stream = cfg.TenantStream
	return routingSender{logs: logs, tenant: sender{openobserve.NewClient(clientOptions(tcfg, getenv, log, cred)), source}}
}

// routingSender sends tenant memory records to their own stream and
// everything else to the logs stream.
type routingSender struct{ logs, tenant sender }

func (r routingSender) Send(ctx context.Context, evs []telemetry.Event) (extension.SendResult, []telemetry.Event, error) {
	var logs, reports []telemetry.Event
	for _, e := range evs {
		if e.Type == tenant.RecordType {
			reports = append(reports, e)
		} else {
			logs = append(logs, e)
		}
	}
	if len(reports) == 0 {
		return r.logs.Send(ctx, evs)
	}
	res, undelivered, err := r.logs.Send(ctx, logs)
	if err != nil {
		// Keep the reports with the undelivered logs; they go next time.
		return res, append(undelivered, reports...), err
	}
	tres, tundelivered, err := r.tenant.Send(ctx, reports)
	res.Sent += tres.Sent
	res.Successful += tres.Successful
	res.Failed += tres.Failed
	res.Missing += tres.Missing
	res.Requests += tres.Requests
	res.Bytes += tres.Bytes
	if tres.Error != "" {
		res.Error = tres.Error
	}
	return res, tundelivered, err
}

// sender adapts the OpenObserve client to the extension's Sender, turning
// its error classes into the extension's. source is where the credential
// comes from ("" for O2_AUTHORIZATION_HEADER), for the messages.
type sender struct {
	c      *openobserve.Client
	source string
}

func (s sender) Send(ctx context.Context, evs []telemetry.Event) (extension.SendResult, []telemetry.Event, error) {
	r, undelivered, err := s.c.Send(ctx, evs)
	res := extension.SendResult{
		Sent:       r.Sent,
		Successful: r.Successful,
		Failed:     r.Failed + r.Dropped,
		Missing:    r.Missing,
		Error:      r.Error,
		Requests:   r.Requests,
		Bytes:      r.Bytes,
	}
	switch {
	case err == nil:
	case credential.IsPermanent(err):
		// No credential can be had (logged once by the source): fail open,
		// forwarding nothing, rather than fill the buffer with data that
		// can never be sent and warn about it on every flush.
		return res, nil, nil
	case openobserve.IsPermanent(err):
		err = fmt.Errorf("%w: %s", extension.ErrRejected, explain(err, s.source))
	case openobserve.IsAuth(err):
		err = fmt.Errorf("%w: %s", extension.ErrUnauthorized, explain(err, s.source))
	}
	return res, undelivered, err
}

// explain is openobserve.Explain, naming the secret or parameter instead of
// O2_AUTHORIZATION_HEADER when the credential comes from one (source).
func explain(err error, source string) string {
	e := openobserve.Explain(err)
	if source != "" {
		e = strings.ReplaceAll(e, "O2_AUTHORIZATION_HEADER", "the credential in "+source)
	}
	return e
}

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

// oneLine joins every problem of a joined error on one line.
func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}
