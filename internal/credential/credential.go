// Package credential fetches the OpenObserve Authorization value from AWS Secrets Manager or SSM Parameter Store in the background, retries what is transient, and fetches it again when OpenObserve refuses it.
package credential

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/sirupsen/logrus"
)

// Defaults for zero Options fields.
const (
	DefaultSecretKey      = "authorization"
	DefaultMinBackoff     = 100 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
	DefaultRefetchEvery   = time.Minute
	DefaultAttemptTimeout = 10 * time.Second
)

// Options configure a Source. Exactly one of SecretARN and SSMParameter is
// set. The AWS settings are copied from the environment Lambda sets, by
// the caller: this package reads no environment of its own.
type Options struct {
	// SecretARN is a Secrets Manager secret's ARN. Its region is the one
	// called.
	SecretARN string
	// SecretKey is the key of the value when the secret is a JSON object
	// (default "authorization"). KeyVar names the variable that sets it,
	// for messages.
	SecretKey, KeyVar string
	// SSMParameter is a parameter name (called in Region) or ARN (called
	// in its own region), read with decryption.
	SSMParameter string

	// Region is AWS_REGION (else AWS_DEFAULT_REGION): where a parameter
	// given by name is read, and the function's region for the
	// wrong-region hint.
	Region string
	// AccessKeyID, SecretAccessKey and SessionToken are the role's
	// credentials (AWS_ACCESS_KEY_ID, ...).
	AccessKeyID, SecretAccessKey, SessionToken string
	// ContainerCredentialsURI, ContainerAuthToken and
	// ContainerAuthTokenFile are AWS_CONTAINER_CREDENTIALS_FULL_URI,
	// AWS_CONTAINER_AUTHORIZATION_TOKEN and
	// AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: where the role's credentials
	// come from when AccessKeyID is not set (SnapStart).
	ContainerCredentialsURI, ContainerAuthToken, ContainerAuthTokenFile string
	// Getenv resolves endpoint overrides the way the AWS SDKs do
	// (AWS_ENDPOINT_URL_SECRETS_MANAGER or AWS_ENDPOINT_URL_SSM, then
	// AWS_ENDPOINT_URL); nil means none.
	Getenv func(string) string

	// AttemptTimeout bounds one call (default 10 s).
	AttemptTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between retries of a
	// transient failure: it starts at MinBackoff (100 ms) and doubles up
	// to MaxBackoff (30 s).
	MinBackoff, MaxBackoff time.Duration
	// RefetchEvery is the least time between two fetches caused by
	// Refused (default 1 min); the first one goes at once.
	RefetchEvery time.Duration
	// Transport carries the calls; nil means a pooled transport with TLS
	// verified.
	Transport http.RoundTripper
	// Logger receives the source's few lines (nil: none). The value never
	// appears in them.
	Logger *logrus.Entry
}

// Source holds the current Authorization value and keeps it fetched. It is
// safe for concurrent use. Start it once, Close it when done.
type Source struct {
	o      Options
	desc   string // "Secrets Manager <ARN>" or "SSM parameter <name>"
	client *awsClient
	// setupErr is a problem found before any call (no region, no
	// credentials): every fetch fails with it.
	setupErr *Error
	log      *logrus.Entry

	refetch chan struct{} // asks the goroutine for another fetch
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	// ready is closed (under mu) when the first fetch ends: with a value,
	// or with a permanent failure.
	ready chan struct{}

	mu          sync.Mutex
	value       string
	err         error // the permanent failure, when there is no value
	lastErr     error // the latest transient failure while there is no value
	lastRefetch time.Time
	fetching    bool
}

// New returns a Source for o. It makes no call: Start does.
func New(o Options) *Source {
	if o.SecretKey == "" {
		o.SecretKey = DefaultSecretKey
	}
	if o.KeyVar == "" {
		o.KeyVar = "the secret key setting"
	}
	if o.AttemptTimeout <= 0 {
		o.AttemptTimeout = DefaultAttemptTimeout
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	o.MaxBackoff = max(o.MaxBackoff, o.MinBackoff)
	if o.RefetchEvery <= 0 {
		o.RefetchEvery = DefaultRefetchEvery
	}
	getenv := o.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	log := o.Logger
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = logrus.NewEntry(l)
	}
	s := &Source{o: o, log: log, refetch: make(chan struct{}, 1), ready: make(chan struct{})}

	svc, region := secretsManager, ""
	if o.SecretARN != "" {
		s.desc = "Secrets Manager " + o.SecretARN
		region = arnRegion(o.SecretARN)
	} else {
		s.desc = "SSM parameter " + o.SSMParameter
		svc = ssm
		region = arnRegion(o.SSMParameter) // "" for a name
	}
	if region == "" {
		region = o.Region
	}
	switch {
	case region == "":
		s.setupErr = &Error{Kind: Misconfigured, Source: s.desc, Msg: "no region: AWS_REGION is not set (Lambda sets it; set it for local runs)"}
	case (o.AccessKeyID == "" || o.SecretAccessKey == "") && o.ContainerCredentialsURI == "":
		s.setupErr = &Error{Kind: Misconfigured, Source: s.desc, Msg: "no AWS credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set, nor AWS_CONTAINER_CREDENTIALS_FULL_URI (Lambda sets them from the function's role; set them for local runs)"}
	}
	// Its own small transport, not the OpenObserve client's: another host,
	// one call per cold start (and per rotation), no connection to keep.
	tr := o.Transport
	if tr == nil {
		tr = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:          1,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   5 * time.Second,
			ExpectContinueTimeout: time.Second,
		}
	}
	hc := &http.Client{Transport: tr, Timeout: o.AttemptTimeout}
	creds := &roleCredentials{
		static: aws.Credentials{AccessKeyID: o.AccessKeyID, SecretAccessKey: o.SecretAccessKey, SessionToken: o.SessionToken},
		hc:     hc,
		source: s.desc,
	}
	if o.AccessKeyID == "" || o.SecretAccessKey == "" {
		creds.uri, creds.token, creds.tokenFile = o.ContainerCredentialsURI, o.ContainerAuthToken, o.ContainerAuthTokenFile
	}
	s.client = &awsClient{
		hc:       hc,
		creds:    creds,
		region:   region,
		endpoint: endpointFor(svc, region, getenv),
		svc:      svc,
		signer:   v4.NewSigner(),
	}
	return s
}

// arnRegion returns the region field of an ARN, "" if v is not an ARN.
func arnRegion(v string) string {
	parts := strings.SplitN(v, ":", 6)
	if len(parts) < 6 || parts[0] != "arn" {
		return ""
	}
	return parts[3]
}

// String says where the value comes from: "Secrets Manager <ARN>" or "SSM
// parameter <name>".
func (s *Source) String() string { return s.desc }

// Start begins fetching in the background, at once; the goroutine runs
// until Close. It does not wait for the fetch.
func (s *Source) Start(ctx context.Context) {
	ctx, s.cancel = context.WithCancel(ctx)
	s.wg.Go(func() { s.run(ctx) })
}

// Close stops the background fetching and waits for it. A call in flight
// is cancelled.
func (s *Source) Close() {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
}

// Authorization returns the current value. Before the first fetch has
// ended it waits until ctx ends, then returns an error naming the source
// (and the latest transient failure, if any). After a permanent failure it
// returns that failure (an *Error) at once.
func (s *Source) Authorization(ctx context.Context) (string, error) {
	select {
	case <-s.ready: // a value (or a permanent failure) wins over a done ctx
	default:
		select {
		case <-s.ready:
		case <-ctx.Done():
			return "", s.notYet(ctx)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.value == "" {
		return "", s.err
	}
	return s.value, nil
}

// notYet is Authorization's error when ctx ends before the first value.
func (s *Source) notYet(ctx context.Context) error {
	s.mu.Lock()
	last := s.lastErr
	s.mu.Unlock()
	msg := "not fetched yet"
	if last != nil {
		msg += " (last attempt: " + last.Error() + ")"
	}
	return fmt.Errorf("credential from %s %s: %w", s.desc, msg, context.Cause(ctx))
}

// Refused tells the source that OpenObserve answered 401 to value. If that
// is still the current value, it is fetched again in the background (at
// most once per RefetchEvery; the first time at once): a rotated secret is
// then picked up. It never blocks.
func (s *Source) Refused(value string) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	// Several requests in flight with the old value all get 401: only
	// the first counts, and a refusal of a value already replaced means
	// nothing.
	if value == "" || value != s.value || s.fetching {
		return // a stale value, or a fetch is under way
	}
	if !s.lastRefetch.IsZero() && now.Sub(s.lastRefetch) < s.o.RefetchEvery {
		return
	}
	s.lastRefetch = now
	select {
	case s.refetch <- struct{}{}:
	default:
	}
}

// run fetches at once (retrying what is transient), then again on each
// Refused request, until ctx ends.
func (s *Source) run(ctx context.Context) {
	start := time.Now()
	v, err := s.fetchRetrying(ctx)
	s.mu.Lock()
	switch {
	case err == nil:
		s.value = v
	case ctx.Err() != nil:
		s.mu.Unlock()
		return // stopped before it got anything; ready stays open
	default:
		s.err = err
	}
	s.lastErr = nil
	close(s.ready)
	s.mu.Unlock()
	if err != nil {
		// Once: every later Authorization returns it without logging.
		s.log.WithError(err).Error("no credential for OpenObserve: forwarding nothing (the function is not affected)")
		return
	}
	// One line per cold start: where the credential came from, and how
	// long the records waited for it at most.
	s.log.Infof("credential fetched from %s in %s", s.desc, time.Since(start).Round(time.Millisecond))

	for {
		select {
		case <-ctx.Done():
			return
		case <-s.refetch:
		}
		s.mu.Lock()
		s.fetching = true
		s.mu.Unlock()
		// The old value stays in use meanwhile: it may still be accepted
		// (a 401 for another reason), and nothing waits on a refetch.
		v, err := s.fetchRetrying(ctx)
		s.mu.Lock()
		s.fetching = false
		old := s.value
		if err == nil {
			s.value = v
		}
		s.mu.Unlock()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			s.log.WithError(err).Error("OpenObserve refused the credential and fetching it again failed; the old value is kept")
		case v != old:
			s.log.Infof("OpenObserve refused the credential; the new value from %s is used from now on", s.desc)
		default:
			s.log.Errorf("OpenObserve refused the credential, and %s still holds the same value: update it with a credential OpenObserve accepts", s.desc)
		}
	}
}

// fetchRetrying fetches until it gets a value, a permanent failure, or ctx
// ends, waiting MinBackoff, doubling to MaxBackoff, between transient
// failures. The first transient failure is logged at warn, the rest at
// debug.
func (s *Source) fetchRetrying(ctx context.Context) (string, error) {
	wait := s.o.MinBackoff
	for attempt := 1; ; attempt++ {
		v, err := s.Fetch(ctx)
		if err == nil {
			if attempt > 1 {
				s.log.Infof("fetching the credential from %s succeeded after %d attempts", s.desc, attempt)
			}
			return v, nil
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		if IsPermanent(err) {
			return "", err
		}
		s.mu.Lock()
		s.lastErr = err
		s.mu.Unlock()
		l := s.log.WithError(err).WithField("retry_in", wait.String())
		if attempt == 1 {
			l.Warn("fetching the credential failed; retrying with backoff, records are buffered meanwhile")
		} else {
			l.Debug("fetching the credential failed again")
		}
		// A real timer, not a sleep: Close ends the wait at once. A wait
		// that spans a freeze ends at the thaw, so a frozen sandbox does
		// not fetch in a burst.
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, s.o.MaxBackoff)
	}
}

// Fetch makes one fetch, without retries, and returns the value or an
// *Error (or ctx's error). The health check calls it; Start's goroutine
// retries it.
func (s *Source) Fetch(ctx context.Context) (string, error) {
	if s.setupErr != nil {
		return "", s.setupErr
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	var raw, action, resource, what string
	if s.o.SecretARN != "" {
		var out struct {
			SecretString *string
			SecretBinary []byte
		}
		action, resource, what = "secretsmanager:GetSecretValue", s.o.SecretARN, "secret"
		err := s.client.call(ctx, "GetSecretValue", map[string]string{"SecretId": s.o.SecretARN}, &out)
		if err != nil {
			return "", s.failed(ctx, err, action, resource)
		}
		if out.SecretString == nil {
			return "", &Error{Kind: BadValue, Source: s.desc, Msg: "the secret is binary: store the value as a secret string"}
		}
		raw = *out.SecretString
	} else {
		var out struct {
			Parameter struct{ Value string }
		}
		action, resource, what = "ssm:GetParameter", s.o.SSMParameter, "parameter"
		in := map[string]any{"Name": s.o.SSMParameter, "WithDecryption": true}
		if err := s.client.call(ctx, "GetParameter", in, &out); err != nil {
			return "", s.failed(ctx, err, action, resource)
		}
		raw = out.Parameter.Value
	}
	// Only a secret may be a JSON object (Secrets Manager's key/value
	// form); a parameter holds the value alone.
	v, problem := raw, ""
	if s.o.SecretARN != "" {
		v, problem = fromSecret(raw, s.o.SecretKey, s.o.KeyVar)
	} else {
		v = strings.TrimSpace(v)
	}
	if problem == "" {
		problem = checkHeader(v)
	}
	if problem != "" {
		return "", &Error{Kind: BadValue, Source: s.desc, Msg: "the " + what + " " + problem}
	}
	return v, nil
}

// failed classifies a failed call; a cancelled ctx is returned as is, and
// so is an *Error already made (getting the role's credentials).
func (s *Source) failed(ctx context.Context, err error, action, resource string) error {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return ctx.Err()
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return e
	}
	return classify(err, s.desc, action, resource, s.client.region, s.o.Region)
}
