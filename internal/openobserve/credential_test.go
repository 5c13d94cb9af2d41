package openobserve_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/o2-extension/o2-extension/internal/openobserve"
	"github.com/o2-extension/o2-extension/internal/openobserve/o2test"
)

// fakeCredential is a Credential whose value the test sets; until then
// Authorization waits for ctx.
type fakeCredential struct {
	mu      sync.Mutex
	value   string
	set     chan struct{}
	refused []string
}

func newFakeCredential() *fakeCredential { return &fakeCredential{set: make(chan struct{})} }

func (f *fakeCredential) Set(v string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.value == "" {
		close(f.set)
	}
	f.value = v
}

func (f *fakeCredential) Authorization(ctx context.Context) (string, error) {
	select {
	case <-f.set:
	case <-ctx.Done():
		return "", errors.New("fake credential: not fetched yet")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.value, nil
}

func (f *fakeCredential) Refused(v string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refused = append(f.refused, v)
}

func (f *fakeCredential) Refusals() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.refused...)
}

// With a Credential, each request asks it for the value: no request goes
// before it has one (the events come back for the buffer), a 401 is
// reported with the value refused, and a rotated value is used at once.
func TestClientUsesCredential(t *testing.T) {
	s := o2test.Run(t, o2test.Options{})
	cred := newFakeCredential()
	o := options(s.URL())
	o.Authorization = ""
	o.Credential = cred
	c := openobserve.NewClient(o)
	evs := textEvents(3, time.Now())

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	_, rest, err := c.Send(ctx, evs)
	cancel()
	if err == nil || len(rest) != len(evs) || s.Calls() != 0 {
		t.Fatalf("Send before a value: err %v, %d returned, %d requests; want an error, all 3 back, none sent", err, len(rest), s.Calls())
	}

	old := o2test.BasicAuth(o2test.DefaultEmail, o2test.DefaultSecret)
	cred.Set(old)
	if _, _, err := c.Send(t.Context(), evs); err != nil {
		t.Fatalf("Send: %v", err)
	}

	// Rotation: the server now takes only the new secret.
	s.SetCredentials(map[string]string{o2test.DefaultEmail: "rotated-S3cret"})
	_, rest, err = c.Send(t.Context(), evs)
	if !openobserve.IsAuth(err) || len(rest) != len(evs) {
		t.Fatalf("Send with the old value: %v, %d back; want a 401 and the events back", err, len(rest))
	}
	if got := cred.Refusals(); len(got) != 1 || got[0] != old {
		t.Fatalf("Refused calls %d, want 1 with the old value", len(got))
	}
	cred.Set(o2test.BasicAuth(o2test.DefaultEmail, "rotated-S3cret"))
	if _, _, err := c.Send(t.Context(), evs); err != nil {
		t.Fatalf("Send with the rotated value: %v", err)
	}
	if n := len(s.Records()); n != 6 {
		t.Errorf("stored %d records, want 6", n)
	}
}

// The Credential's value is redacted from what the server says, like
// Options.Authorization.
func TestClientRedactsCredential(t *testing.T) {
	const secret = "Basic c2VjcmV0LXVzZXI6c2VjcmV0LXBhc3M="
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"code":400,"message":"bad header %s"}`, r.Header.Get("Authorization"))
	}))
	t.Cleanup(srv.Close)
	cred := newFakeCredential()
	cred.Set(secret)
	o := options(srv.URL)
	o.Authorization = ""
	o.Credential = cred
	c := openobserve.NewClient(o)
	_, _, err := c.Send(t.Context(), textEvents(1, time.Now()))
	if err == nil {
		t.Fatal("want the echoing server's 400")
	}
	for _, s := range []string{secret, strings.TrimPrefix(secret, "Basic ")} {
		if strings.Contains(err.Error(), s) || strings.Contains(openobserve.Explain(err), s) {
			t.Errorf("error holds the credential: %v", err)
		}
	}
	if !strings.Contains(err.Error(), "[redacted]") {
		t.Errorf("error %v: want the echoed value redacted", err)
	}
}
