package main

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/o2-extension/o2-extension/internal/openobserve/o2test"
)

// envMap turns a map into run's getenv and environ.
func envMap(m map[string]string) (func(string) string, []string) {
	var environ []string
	for k, v := range m {
		environ = append(environ, k+"="+v)
	}
	return func(k string) string { return m[k] }, environ
}

// closedURL is a loopback URL where nothing listens.
func closedURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + l.Addr().String()
	l.Close()
	return u
}

func TestHealthCheck(t *testing.T) {
	auth := o2test.BasicAuth(o2test.DefaultEmail, o2test.DefaultSecret)
	stand := o2test.Run(t, o2test.Options{Orgs: []string{"acme"}})

	// hung answers nothing until the client gives up.
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	t.Cleanup(hung.Close)
	notImpl := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotImplemented)
	}))
	t.Cleanup(notImpl.Close)

	tests := []struct {
		name     string
		env      map[string]string
		sendTest bool
		budget   time.Duration
		wantOK   bool
		want     []string // lines or parts of lines in the output
		dontWant []string
	}{
		{name: "healthy", env: map[string]string{"O2_ENDPOINT": stand.URL()}, sendTest: true, wantOK: true,
			want:     []string{"O2_AUTHORIZATION_HEADER=Basic <redacted>\n", "[ok  ] reachable", "[ok  ] credentials", "[ok  ] test record", "verdict: healthy"},
			dontWant: []string{"chars", o2test.DefaultSecret}},
		// For the root user a mistyped organization would be created by
		// any POST; the read-only check says it is unknown and posts
		// nothing (CreatedOrgs is checked below).
		{name: "mistyped organization, root", env: map[string]string{"O2_ENDPOINT": stand.URL(), "O2_ORGANIZATION_ID": "acmee"}, sendTest: true,
			want: []string{"[FAIL] credentials", "unknown organization: check O2_ORGANIZATION_ID", "[skip] ingestion", "[skip] test record", "verdict: FAILED"}},
		// The dump shows the values as set, not the defaults that replace them.
		{name: "invalid values shown as set",
			env: map[string]string{"O2_ENDPOINT": "ftp://files.example.com", "O2_BATCH_SIZE": "abc", "O2_FLUSH_INTERVAL_MS": "50"},
			want: []string{"  O2_ENDPOINT=ftp://files.example.com (invalid: forwarding nothing)\n",
				"  O2_BATCH_SIZE=abc (invalid; using the default 1000)\n", "  O2_FLUSH_INTERVAL_MS=50 (invalid; using 100)\n",
				"[FAIL] configuration  1 problem(s):", `[warn] configuration  O2_BATCH_SIZE: "abc" is not a whole number`,
				"[skip] connectivity", "verdict: FAILED"}},
		{name: "misspelt variable", env: map[string]string{"O2_ENDPOINT": stand.URL(), "O2_STREEM": "x"}, wantOK: true,
			want: []string{"[warn] configuration  O2_STREEM is not a variable of the extension and is ignored; did you mean O2_STREAM?"}},
		// An endpoint ending in /api is repaired, not "unknown organization".
		{name: "endpoint ending in /api", env: map[string]string{"O2_ENDPOINT": stand.URL() + "/api"}, wantOK: true,
			want: []string{"  O2_ENDPOINT=" + stand.URL() + "/api (invalid; using " + stand.URL() + ")\n",
				"ends in /api, which the extension appends itself", "[ok  ] credentials", "verdict: healthy"}},
		// Nothing answers: the credentials cannot be checked, so they are not.
		{name: "unreachable skips the rest", env: map[string]string{"O2_ENDPOINT": closedURL(t)}, sendTest: true,
			want:     []string{"[FAIL] reachable", "connection refused", "[skip] credentials", "[skip] test record", "verdict: FAILED"},
			dontWant: []string{"[FAIL] credentials"}},
		// A hung endpoint costs the budget, not two request timeouts.
		{name: "hung endpoint bounded", env: map[string]string{"O2_ENDPOINT": hung.URL, "O2_REQUEST_TIMEOUT_MS": "300000"},
			budget: 300 * time.Millisecond,
			want:   []string{"[FAIL] reachable", "timed out", "the whole check is bounded by 300ms", "[skip] credentials", "verdict: FAILED"}},
		{name: "501 is not transient", env: map[string]string{"O2_ENDPOINT": notImpl.URL},
			want:     []string{"[FAIL] reachable", "not supported (HTTP 501)", "probably not OpenObserve", "[FAIL] credentials"},
			dontWant: []string{"try again later"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"O2_ORGANIZATION_ID": "acme", "O2_AUTHORIZATION_HEADER": auth}
			for k, v := range tt.env {
				env[k] = v
			}
			getenv, environ := envMap(env)
			budget := tt.budget
			if budget == 0 {
				budget = healthCheckBudget
			}
			var out bytes.Buffer
			start := time.Now()
			err := runHealthCheck(t.Context(), getenv, environ, &out, healthCheckOptions{sendTest: tt.sendTest, budget: budget})
			took := time.Since(start)
			if (err == nil) != tt.wantOK {
				t.Errorf("runHealthCheck error = %v, want ok = %v", err, tt.wantOK)
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q", w)
				}
			}
			for _, w := range tt.dontWant {
				if strings.Contains(out.String(), w) {
					t.Errorf("output has %q", w)
				}
			}
			// Generous for a loaded machine, far below one request timeout.
			if tt.budget > 0 && took > tt.budget+5*time.Second {
				t.Errorf("the check took %s with a budget of %s", took, tt.budget)
			}
			if t.Failed() {
				t.Logf("output:\n%s", out.String())
			}
		})
	}
	if got := stand.CreatedOrgs(); len(got) != 0 {
		t.Errorf("the health checks created organizations %v on the stand-in", got)
	}
}
