package credential_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/o2-extension/o2-extension/internal/credential"
	"github.com/sirupsen/logrus"
)

// fakeAWS answers GetSecretValue in process (no loopback server may run in
// a synctest bubble): first the scripted failures, then the current value.
type fakeAWS struct {
	mu       sync.Mutex
	value    string
	failures []int // statuses to answer first, in order
	calls    int
	times    []time.Time
}

func (f *fakeAWS) set(v string) {
	f.mu.Lock()
	f.value = v
	f.mu.Unlock()
}

func (f *fakeAWS) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *fakeAWS) RoundTrip(r *http.Request) (*http.Response, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.times = append(f.times, time.Now())
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential=AKID/") || r.Header.Get("X-Amz-Security-Token") != "TOKEN" {
		return reply(403, `{"__type":"UnrecognizedClientException"}`), nil
	}
	if len(f.failures) > 0 {
		st := f.failures[0]
		f.failures = f.failures[1:]
		code := "InternalServiceError"
		if st == 400 {
			code = "ThrottlingException"
		}
		return reply(st, `{"__type":"`+code+`","message":"try later"}`), nil
	}
	return reply(200, `{"ARN":"x","SecretString":"`+f.value+`"}`), nil
}

func reply(status int, body string) *http.Response {
	return &http.Response{StatusCode: status, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(body))}
}

func fakeOptions(f *fakeAWS, log *logrus.Entry) credential.Options {
	return credential.Options{
		SecretARN:   "arn:aws:secretsmanager:eu-west-1:123456789012:secret:o2/ingest-AbCdEf",
		Region:      "eu-west-1",
		AccessKeyID: "AKID", SecretAccessKey: "SECRET", SessionToken: "TOKEN",
		Transport: f, Logger: log,
	}
}

func levels(l *logs, lvl logrus.Level) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.entries {
		if e.Level == lvl {
			n++
		}
	}
	return n
}

// The fetch starts at once in the background; Authorization waits for it.
// Throttling and 5xx are retried after 100 ms, doubling, and logged once.
func TestSourceRetriesTransientFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeAWS{value: headerA, failures: []int{500, 400, 503, 500}}
		l, log := newLogs()
		s := credential.New(fakeOptions(f, log))
		start := time.Now()
		s.Start(t.Context())
		defer s.Close()
		v, err := s.Authorization(t.Context())
		if err != nil || v != headerA {
			t.Fatalf("Authorization = %q, %v", v, err)
		}
		if f.count() != 5 {
			t.Errorf("calls = %d, want 5 (4 failures, then the value)", f.count())
		}
		// Backoff: 100, 200, 400, 800 ms.
		if got, want := time.Since(start), 1500*time.Millisecond; got != want {
			t.Errorf("value after %v, want %v of backoff", got, want)
		}
		if n := levels(l, logrus.WarnLevel); n != 1 {
			t.Errorf("%d warnings, want 1:\n%s", n, l.text())
		}
		if !strings.Contains(l.text(), "succeeded after 5 attempts") {
			t.Errorf("no success line after the retries:\n%s", l.text())
		}
	})
}

// Backoff is capped, and a long outage never gives up: a value that comes
// an hour later is still picked up.
func TestSourceBackoffCappedNeverGivesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		failures := make([]int, 200)
		for i := range failures {
			failures[i] = 503
		}
		f := &fakeAWS{value: headerA, failures: failures}
		_, log := newLogs()
		o := fakeOptions(f, log)
		s := credential.New(o)
		s.Start(t.Context())
		defer s.Close()
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		_, err := s.Authorization(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "not fetched yet") || !strings.Contains(err.Error(), o.SecretARN) ||
			!strings.Contains(err.Error(), "InternalServiceError") || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Authorization before the value: %v; want the source, the last failure and the deadline", err)
		}
		v, err := s.Authorization(t.Context())
		if err != nil || v != headerA {
			t.Fatalf("Authorization = %q, %v", v, err)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		for i := 1; i < len(f.times); i++ {
			if gap := f.times[i].Sub(f.times[i-1]); gap > credential.DefaultMaxBackoff {
				t.Fatalf("gap %d = %v, above the %v cap", i, gap, credential.DefaultMaxBackoff)
			}
		}
	})
}

// A permanent failure is logged once and returned at once by every
// Authorization, without the value.
func TestSourcePermanentFailureLoggedOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeAWS{value: "not-a-header"}
		l, log := newLogs()
		s := credential.New(fakeOptions(f, log))
		s.Start(t.Context())
		defer s.Close()
		for range 3 {
			_, err := s.Authorization(t.Context())
			if !credential.IsPermanent(err) || !strings.Contains(err.Error(), "is not an Authorization header value") {
				t.Fatalf("Authorization error %v, want the permanent bad value", err)
			}
		}
		synctest.Wait()
		if n := levels(l, logrus.ErrorLevel); n != 1 || f.count() != 1 {
			t.Errorf("%d errors logged, %d calls; want 1 and 1:\n%s", n, f.count(), l.text())
		}
		mustNotLeak(t, "the log", l.text(), "not-a-header")
	})
}

// After a 401 the value is fetched again, at once the first time, then at
// most once per minute; a refusal of a stale value fetches nothing.
func TestSourceRefetchAfterRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeAWS{value: headerA}
		l, log := newLogs()
		s := credential.New(fakeOptions(f, log))
		s.Start(t.Context())
		defer s.Close()
		if v, _ := s.Authorization(t.Context()); v != headerA {
			t.Fatalf("first value %q", v)
		}
		f.set(headerB) // rotated
		s.Refused("Basic c3RhbGU6c3RhbGU=")
		synctest.Wait()
		if f.count() != 1 {
			t.Fatalf("a stale value's refusal fetched (%d calls)", f.count())
		}
		s.Refused(headerA)
		synctest.Wait()
		if v, _ := s.Authorization(t.Context()); v != headerB || f.count() != 2 {
			t.Fatalf("after Refused: value %q, %d calls; want the rotated value, 2 calls", v, f.count())
		}
		if !strings.Contains(l.text(), "the new value from Secrets Manager") {
			t.Errorf("rotation not logged:\n%s", l.text())
		}
		// Refused again at once: not before a minute has passed.
		s.Refused(headerB)
		synctest.Wait()
		if f.count() != 2 {
			t.Fatalf("refetched %d times within a minute", f.count()-1)
		}
		time.Sleep(time.Minute)
		s.Refused(headerB)
		synctest.Wait()
		if f.count() != 3 {
			t.Fatalf("calls = %d after a minute, want 3", f.count())
		}
		if !strings.Contains(l.text(), "still holds the same value") {
			t.Errorf("an unchanged value after a 401 is not reported:\n%s", l.text())
		}
		mustNotLeak(t, "the log", l.text(), headerA, headerB)
	})
}

// Close stops a fetch that is still retrying, and Authorization then
// waits only for its own context.
func TestSourceCloseStopsRetrying(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeAWS{value: headerA, failures: make([]int, 1000)}
		for i := range f.failures {
			f.failures[i] = 500
		}
		_, log := newLogs()
		s := credential.New(fakeOptions(f, log))
		s.Start(t.Context())
		time.Sleep(time.Second)
		s.Close()
		n := f.count()
		time.Sleep(time.Hour)
		if f.count() != n {
			t.Errorf("fetching went on after Close")
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if _, err := s.Authorization(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Authorization after Close: %v", err)
		}
	})
}

// containerCreds serves the role's credentials as Lambda's container
// credentials endpoint does (SnapStart), to the right token only, valid
// for 15 minutes from each call.
type containerCreds struct {
	aws   *fakeAWS
	mu    sync.Mutex
	calls int
}

func (c *containerCreds) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host != "creds.test" {
		return c.aws.RoundTrip(r)
	}
	c.mu.Lock()
	c.calls++
	c.mu.Unlock()
	if r.Header.Get("Authorization") != "container-token" {
		return reply(403, `{"Code":"AccessDenied","Secret":"SECRET-must-not-show"}`), nil
	}
	exp := time.Now().Add(15 * time.Minute).UTC().Format(time.RFC3339)
	return reply(200, `{"AccessKeyId":"AKID","SecretAccessKey":"SECRET","Token":"TOKEN","Expiration":"`+exp+`"}`), nil
}

func (c *containerCreds) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

// Without AWS_ACCESS_KEY_ID, the role's credentials come from
// AWS_CONTAINER_CREDENTIALS_FULL_URI with the token (here from its file),
// and are fetched again only shortly before they expire.
func TestSourceContainerCredentials(t *testing.T) {
	tokenFile := t.TempDir() + "/token"
	if err := os.WriteFile(tokenFile, []byte("container-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	synctest.Test(t, func(t *testing.T) {
		cc := &containerCreds{aws: &fakeAWS{value: headerA}}
		_, log := newLogs()
		o := fakeOptions(cc.aws, log)
		o.Transport = cc
		o.AccessKeyID, o.SecretAccessKey, o.SessionToken = "", "", ""
		o.ContainerCredentialsURI, o.ContainerAuthTokenFile = "http://creds.test/2021-04-23/credentials", tokenFile
		s := credential.New(o)
		for i, wantCalls := range []int{1, 1} {
			if v, err := s.Fetch(t.Context()); err != nil || v != headerA || cc.count() != wantCalls {
				t.Fatalf("fetch %d: %q, %v, %d credential calls; want the value, %d", i, v, err, cc.count(), wantCalls)
			}
		}
		time.Sleep(11 * time.Minute) // within 5 minutes of their expiry
		if v, err := s.Fetch(t.Context()); err != nil || v != headerA || cc.count() != 2 {
			t.Fatalf("after 11 min: %q, %v, %d credential calls; want them fetched again", v, err, cc.count())
		}

		o.ContainerAuthTokenFile, o.ContainerAuthToken = "", "wrong-token"
		_, err := credential.New(o).Fetch(t.Context())
		if !credential.IsPermanent(err) || !strings.Contains(err.Error(), "HTTP 403") || !strings.Contains(err.Error(), "AWS_CONTAINER_AUTHORIZATION_TOKEN") ||
			strings.Contains(err.Error(), "SECRET") {
			t.Errorf("wrong token: %v; want a permanent error naming the token variable, without the body", err)
		}
	})
}
