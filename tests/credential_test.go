package tests

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/o2-extension/o2-extension/internal/lambdatest"
	"github.com/o2-extension/o2-extension/internal/mototest"
	"github.com/o2-extension/o2-extension/internal/openobserve/o2test"
)

// The credential of these tests, distinctive so that any trace of it is
// unambiguous, and the one it is rotated to.
const (
	credEmail   = "secret-source.ops@cred.example"
	credSecret  = "Hk3SecretsMgrV4lue9Tq"
	credRotated = "Rw8RotatedS3cretZk2Mn"
	awsRegion   = "us-east-1"
)

// credEnv is what Lambda sets for the function's role, pointed at moto, and
// the stand-in's endpoint, org and stream; the source variable is the
// test's.
func credEnv(o2 *o2test.Server, moto *mototest.Server, source ...string) []string {
	return append([]string{
		"O2_ENDPOINT=" + o2.URL(),
		"O2_ORGANIZATION_ID=" + org,
		"O2_STREAM=" + stream,
		"AWS_ACCESS_KEY_ID=" + mototest.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY=" + mototest.SecretAccessKey,
		"AWS_SESSION_TOKEN=session-token-of-the-role",
		"AWS_ENDPOINT_URL=" + moto.URL,
	}, source...)
}

// credStart runs the binary against a fresh stand-in taking credEmail:pw,
// its credential from moto.
func credStart(t *testing.T, moto *mototest.Server, pw string, lo lambdatest.Options, env ...string) *harness {
	t.Helper()
	h := &harness{t: t, o2: o2test.Run(t, o2test.Options{Credentials: map[string]string{credEmail: pw}})}
	lo.Region = awsRegion
	lo.Env = append(credEnv(h.o2, moto), lo.Env...)
	return h.launch(lo, env...)
}

// invokeN runs n invocations of lines lines each, marked marker, and
// returns the lines.
func invokeN(t *testing.T, h *harness, marker string, from, n, lines int) []string {
	t.Helper()
	var all []string
	for i := from; i < from+n; i++ {
		ls := make([]string, lines)
		for j := range ls {
			ls[j] = lambdatest.ScenarioLine(marker, i, j, 100)
		}
		all = append(all, ls...)
		res, err := h.p.Invoke(t.Context(), lambdatest.Invocation{Lines: ls, Duration: 10 * time.Millisecond})
		if err != nil || res.TimedOut {
			t.Fatalf("invoke %d: %+v %v\n%s", i, res, err, tail(h.p.Output()))
		}
	}
	return all
}

// untilRotated invokes, one line each, until OpenObserve (which takes only
// the rotated value since the test switched it) answers a request 200: the
// sandbox is frozen between invocations, so the fetch after the 401 and
// the resend progress only while one runs. It returns the lines.
func untilRotated(t *testing.T, h *harness, marker string, from int) []string {
	t.Helper()
	accepted := func() int {
		n := 0
		for _, r := range h.o2.Requests() {
			if r.Status == http.StatusOK {
				n++
			}
		}
		return n
	}
	before := accepted()
	var lines []string
	for i := from; accepted() == before; i++ {
		if i-from >= 500 {
			t.Fatalf("nothing accepted after the rotation in 500 invocations:\n%s", tail(h.p.Output()))
		}
		lines = append(lines, invokeN(t, h, marker, i, 1, 1)...)
	}
	return lines
}

// The real binary in the emulator, its credential from a real moto_server:
// a sporadic function (plain secret), a busy one (JSON secret with a key),
// a SecureString parameter, a rotation mid-run, and a missing secret (fail
// open). Every line arrives exactly once.
func TestCredentialFromAWS(t *testing.T) {
	t.Parallel()
	moto := mototest.Start(t, t.TempDir(), mototest.Options{})
	header := o2test.BasicAuth(credEmail, credSecret)
	plain := moto.CreateSecret(t, awsRegion, "o2/plain", header)
	jsonARN := moto.CreateSecret(t, awsRegion, "o2/json", `{"user":"ops","basic":"`+header+`"}`)
	moto.PutParameter(t, awsRegion, "/o2/ingest", "SecureString", header)

	t.Run("sporadic, plain secret", func(t *testing.T) {
		t.Parallel()
		h := credStart(t, moto, credSecret, lambdatest.Options{}, "O2_AUTHORIZATION_HEADER_SECRET_ARN="+plain)
		want := invokeN(t, h, "cred-sporadic", 0, 6, 20)
		h.shutdown()
		if lost, dup := exactlyOnce(t, want, h.marked("cred-sporadic")); lost+dup > 0 {
			t.Fatalf("lost %d, duplicated %d\n%s", lost, dup, tail(h.p.Output()))
		}
	})

	t.Run("busy, JSON secret with a key", func(t *testing.T) {
		t.Parallel()
		h := credStart(t, moto, credSecret, lambdatest.Options{},
			"O2_AUTHORIZATION_HEADER_SECRET_ARN="+jsonARN, "O2_AUTHORIZATION_HEADER_SECRET_KEY=basic")
		rep, err := h.p.Run(t.Context(), lambdatest.Scenario{Invocations: 150, Rate: 20, Lines: 20, LineSize: 100, Marker: "cred-busy", Duration: 5 * time.Millisecond})
		if err != nil {
			t.Fatalf("run: %v\n%s", err, tail(h.p.Output()))
		}
		h.shutdown()
		if lost, dup := exactlyOnce(t, rep.Lines, h.marked("cred-busy")); lost+dup > 0 {
			t.Fatalf("lost %d, duplicated %d\n%s", lost, dup, tail(h.p.Output()))
		}
		if !strings.Contains(h.p.Output(), "flush mode: continuous") {
			t.Errorf("never switched to continuous: not a busy run\n%s", tail(h.p.Output()))
		}
	})

	t.Run("SecureString parameter", func(t *testing.T) {
		t.Parallel()
		h := credStart(t, moto, credSecret, lambdatest.Options{}, "O2_AUTHORIZATION_HEADER_SSM_PARAMETER=/o2/ingest")
		want := invokeN(t, h, "cred-ssm", 0, 3, 10)
		h.shutdown()
		if lost, dup := exactlyOnce(t, want, h.marked("cred-ssm")); lost+dup > 0 {
			t.Fatalf("lost %d, duplicated %d\n%s", lost, dup, tail(h.p.Output()))
		}
	})

	// Rotation: the secret is updated, then OpenObserve takes only the
	// new value. The 401 makes the extension fetch the secret again, and
	// the data it kept goes out with the new value: nothing is lost.
	t.Run("rotation mid-run", func(t *testing.T) {
		t.Parallel()
		arn := moto.CreateSecret(t, awsRegion, "o2/rotated", header)
		h := credStart(t, moto, credSecret, lambdatest.Options{},
			"O2_AUTHORIZATION_HEADER_SECRET_ARN="+arn, "O2_FLUSH_INTERVAL_MS=200", "O2_FLUSH_STRATEGY=end")
		want := invokeN(t, h, "cred-rotation", 0, 3, 10)
		h.waitFor("the lines before the rotation", time.Minute, func(*o2test.Server) bool {
			return len(h.marked("cred-rotation")) == len(want)
		})
		moto.PutSecretValue(t, awsRegion, arn, o2test.BasicAuth(credEmail, credRotated))
		h.o2.SetCredentials(map[string]string{credEmail: credRotated})
		want = append(want, invokeN(t, h, "cred-rotation", 3, 3, 10)...)
		want = append(want, untilRotated(t, h, "cred-rotation", 6)...)
		// What was kept goes out with the new value.
		want = append(want, invokeN(t, h, "cred-rotation", 1000, 3, 10)...)
		h.shutdown()
		if lost, dup := exactlyOnce(t, want, h.marked("cred-rotation")); lost+dup > 0 {
			t.Fatalf("lost %d, duplicated %d\n%s", lost, dup, tail(h.p.Output()))
		}
		refused := slices.ContainsFunc(h.o2.Requests(), func(r o2test.Request) bool { return r.Status == http.StatusUnauthorized })
		if out := h.p.Output(); !refused || !strings.Contains(out, "the new value from Secrets Manager "+arn+" is used") {
			t.Errorf("the rotation path did not run (a 401: %v):\n%s", refused, tail(out))
		}
	})

	// SnapStart: no key variables, the role's credentials from the
	// container credentials endpoint instead.
	t.Run("container credentials", func(t *testing.T) {
		t.Parallel()
		creds := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "container-token" {
				w.WriteHeader(http.StatusForbidden)
				return
			}
			exp := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
			fmt.Fprintf(w, `{"AccessKeyId":%q,"SecretAccessKey":%q,"Token":"t","Expiration":%q}`, mototest.AccessKeyID, mototest.SecretAccessKey, exp)
		}))
		t.Cleanup(creds.Close)
		h := &harness{t: t, o2: o2test.Run(t, o2test.Options{Credentials: map[string]string{credEmail: credSecret}})}
		var env []string
		for _, kv := range credEnv(h.o2, moto) {
			if !strings.HasPrefix(kv, "AWS_ACCESS_KEY_ID=") && !strings.HasPrefix(kv, "AWS_SECRET_ACCESS_KEY=") && !strings.HasPrefix(kv, "AWS_SESSION_TOKEN=") {
				env = append(env, kv)
			}
		}
		env = append(env, "AWS_CONTAINER_CREDENTIALS_FULL_URI="+creds.URL+"/2021-04-23/credentials",
			"AWS_CONTAINER_AUTHORIZATION_TOKEN=container-token", "O2_AUTHORIZATION_HEADER_SECRET_ARN="+plain)
		h.launch(lambdatest.Options{Region: awsRegion, Env: env})
		want := invokeN(t, h, "cred-container", 0, 3, 10)
		h.shutdown()
		if lost, dup := exactlyOnce(t, want, h.marked("cred-container")); lost+dup > 0 {
			t.Fatalf("lost %d, duplicated %d\n%s", lost, dup, tail(h.p.Output()))
		}
	})

	// A secret that does not exist: one clear error naming the ARN, then
	// fail open: no invocation is held, nothing is sent.
	t.Run("missing secret fails open", func(t *testing.T) {
		t.Parallel()
		missing := "arn:aws:secretsmanager:" + awsRegion + ":" + mototest.Account + ":secret:o2/missing-AbCdEf"
		h := credStart(t, moto, credSecret, lambdatest.Options{}, "O2_AUTHORIZATION_HEADER_SECRET_ARN="+missing)
		for i := range 4 {
			res, err := h.p.Invoke(t.Context(), lambdatest.Invocation{Lines: []string{"hello"}})
			if err != nil || res.TimedOut {
				t.Fatalf("invoke %d: %+v %v", i, res, err)
			}
			// The first may wait for the fetch within O2_FLUSH_BUDGET_MS.
			if i > 0 && res.PostRuntimeOverhead > time.Second {
				t.Errorf("invoke %d held for %v without a credential", i, res.PostRuntimeOverhead)
			}
		}
		h.shutdown()
		out := h.p.Output()
		if n := strings.Count(out, "level=error"); n != 1 {
			t.Errorf("%d error lines, want 1:\n%s", n, out)
		}
		for _, w := range []string{"no credential for OpenObserve: forwarding nothing", missing, "secret not found in region " + awsRegion} {
			if !strings.Contains(out, w) {
				t.Errorf("output lacks %q:\n%s", w, out)
			}
		}
		if n := h.o2.Calls(); n != 0 {
			t.Errorf("OpenObserve got %d requests without a credential", n)
		}
	})
}

// The secret's value, its base64 part decoded, and the password alone,
// appear in nothing the extension prints at any log level (trace
// included), through a fetch, a 401, the re-fetch that follows and the
// rotation; nor in what it sends; nor in the health check's output, which
// also never shows the value's length.
func TestCredentialNeverPrinted(t *testing.T) {
	t.Parallel()
	moto := mototest.Start(t, t.TempDir(), mototest.Options{})
	header := o2test.BasicAuth(credEmail, credSecret)
	forms := append(trustSecretForms(credEmail, credSecret), trustSecretForms(credEmail, credRotated)...)
	arn := moto.CreateSecret(t, awsRegion, "o2/leak", `{"authorization":"`+header+`"}`)
	moto.PutParameter(t, awsRegion, "/o2/leak", "SecureString", header)

	for _, level := range []string{"trace", "debug", "info", "warn", "error"} {
		t.Run(level, func(t *testing.T) {
			t.Parallel()
			// A secret per level: each run rotates its own.
			arn := moto.CreateSecret(t, awsRegion, "o2/leak-"+level, header)
			h := credStart(t, moto, credSecret, lambdatest.Options{},
				"O2_AUTHORIZATION_HEADER_SECRET_ARN="+arn, "O2_LOG_LEVEL="+level, "O2_FLUSH_INTERVAL_MS=200", "O2_FLUSH_STRATEGY=end")
			want := invokeN(t, h, "leak-"+level, 0, 2, 3)
			moto.PutSecretValue(t, awsRegion, arn, o2test.BasicAuth(credEmail, credRotated))
			h.o2.SetCredentials(map[string]string{credEmail: credRotated})
			want = append(want, invokeN(t, h, "leak-"+level, 2, 3, 3)...)
			want = append(want, untilRotated(t, h, "leak-"+level, 5)...)
			want = append(want, invokeN(t, h, "leak-"+level, 1000, 2, 3)...)
			h.shutdown()
			if lost, dup := exactlyOnce(t, want, h.marked("leak-"+level)); lost+dup > 0 {
				t.Errorf("lost %d, duplicated %d", lost, dup)
			}
			out := h.p.Output()
			if leaks := trustLeaks(out, forms); len(leaks) > 0 {
				t.Errorf("the extension printed %q:\n%s", leaks, out)
			}
			if level == "trace" && !strings.Contains(out, "level=trace") {
				t.Errorf("no trace line: the level under test did not run\n%s", tail(out))
			}
			for _, r := range h.o2.Records() {
				b, _ := json.Marshal(r.Fields)
				var sb strings.Builder
				sb.Write(b)
				for _, v := range r.Fields {
					fmt.Fprint(&sb, "\n", v)
				}
				if leaks := trustLeaks(sb.String(), forms); len(leaks) > 0 {
					t.Errorf("a stored record holds %q: %s", leaks, b)
				}
			}
		})
	}

	o2 := o2test.Run(t, o2test.Options{Credentials: map[string]string{credEmail: credSecret}})
	notHeader := moto.CreateSecret(t, awsRegion, "o2/leak-not-a-header", credSecret)
	refused := moto.CreateSecret(t, awsRegion, "o2/leak-refused", o2test.BasicAuth(credEmail, credRotated))
	missing := "arn:aws:secretsmanager:" + awsRegion + ":" + mototest.Account + ":secret:o2/leak-missing-AbCdEf"
	for _, tc := range []struct {
		name     string
		source   string
		wantCode int
		want     []string
	}{
		{"JSON secret", "O2_AUTHORIZATION_HEADER_SECRET_ARN=" + arn, 0, []string{"[ok  ] credential     from Secrets Manager " + arn + ": fetched in", "[ok  ] credentials", "verdict: healthy"}},
		{"SSM parameter", "O2_AUTHORIZATION_HEADER_SSM_PARAMETER=/o2/leak", 0, []string{"[ok  ] credential     from SSM parameter /o2/leak: fetched in", "verdict: healthy"}},
		{"refused by OpenObserve", "O2_AUTHORIZATION_HEADER_SECRET_ARN=" + refused, 1, []string{"[ok  ] credential", "[FAIL] credentials",
			"wrong credentials or organization: check the credential in Secrets Manager " + refused, "verdict: FAILED"}},
		{"not a header", "O2_AUTHORIZATION_HEADER_SECRET_ARN=" + notHeader, 1, []string{"[FAIL] credential     from Secrets Manager " + notHeader + ": the secret is not an Authorization header value", "[skip] credentials", "verdict: FAILED"}},
		{"missing", "O2_AUTHORIZATION_HEADER_SECRET_ARN=" + missing, 1, []string{"[FAIL] credential", "secret not found in region " + awsRegion, "verdict: FAILED"}},
	} {
		for _, level := range []string{"trace", "info"} {
			t.Run("health check/"+tc.name+"/"+level, func(t *testing.T) {
				env := append(credEnv(o2, moto, tc.source), "AWS_REGION="+awsRegion, "O2_LOG_LEVEL="+level)
				out, code := runBinary(t, env, "--health-check", "--send-test-record")
				if code != tc.wantCode {
					t.Errorf("exit %d, want %d:\n%s", code, tc.wantCode, out)
				}
				for _, w := range tc.want {
					if !strings.Contains(out, w) {
						t.Errorf("output lacks %q:\n%s", w, out)
					}
				}
				if leaks := trustLeaks(out, forms); len(leaks) > 0 {
					t.Errorf("health check printed %q:\n%s", leaks, out)
				}
				if strings.Contains(out, "chars>") {
					t.Errorf("health check shows a length:\n%s", out)
				}
			})
		}
	}
}

// awsGate stands between the extension and moto: it answers the first
// throttled calls with ThrottlingException, holds the next one until
// release is closed, then passes everything on.
type awsGate struct {
	next      http.Handler
	release   chan struct{}
	mu        sync.Mutex
	throttled int
	held      bool
}

func (g *awsGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	throttle, hold := g.throttled > 0, !g.held
	if throttle {
		g.throttled--
	} else {
		g.held = true
	}
	g.mu.Unlock()
	switch {
	case throttle:
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"__type":"ThrottlingException","message":"Rate exceeded"}`)
		return
	case hold:
		select {
		case <-g.release:
		case <-r.Context().Done():
			return
		}
	}
	g.next.ServeHTTP(w, r)
}

// A slow and throttled Secrets Manager: the throttling is retried (one
// warning), the first end-of-invocation flush waits for the credential
// only within O2_FLUSH_BUDGET_MS, records buffer meanwhile, and once the
// value arrives every line goes out exactly once.
func TestCredentialSlowFetch(t *testing.T) {
	t.Parallel()
	moto := mototest.Start(t, t.TempDir(), mototest.Options{})
	header := o2test.BasicAuth(credEmail, credSecret)
	arn := moto.CreateSecret(t, awsRegion, "o2/slow", header)
	target, err := url.Parse(moto.URL)
	if err != nil {
		t.Fatal(err)
	}
	gate := &awsGate{next: httputil.NewSingleHostReverseProxy(target), release: make(chan struct{}), throttled: 2}
	proxy := httptest.NewServer(gate)
	t.Cleanup(proxy.Close)
	released := false
	release := func() {
		if !released {
			close(gate.release)
			released = true
		}
	}
	t.Cleanup(release)

	const budget = 300 * time.Millisecond
	h := credStart(t, moto, credSecret, lambdatest.Options{},
		"O2_AUTHORIZATION_HEADER_SECRET_ARN="+arn, "AWS_ENDPOINT_URL_SECRETS_MANAGER="+proxy.URL,
		"O2_FLUSH_STRATEGY=end", fmt.Sprintf("O2_FLUSH_BUDGET_MS=%d", budget.Milliseconds()))
	var want []string
	for j := range 10 {
		want = append(want, lambdatest.ScenarioLine("cred-slow", 0, j, 100))
	}
	res, err := h.p.Invoke(t.Context(), lambdatest.Invocation{Lines: want, Duration: 10 * time.Millisecond})
	if err != nil || res.TimedOut {
		t.Fatalf("invoke: %+v %v", res, err)
	}
	if n := h.o2.Calls(); n != 0 {
		t.Fatalf("%d requests to OpenObserve without a credential", n)
	}
	t.Logf("first invocation held %v waiting for the credential (budget %v)", res.PostRuntimeOverhead, budget)
	// Held for the budget at most (plus generous scheduling slack on a
	// loaded machine), never until the credential comes.
	if d := res.PostRuntimeOverhead; d > budget+2*time.Second {
		t.Errorf("first invocation held %v without a credential, budget %v", d, budget)
	}
	release()
	want = append(want, invokeN(t, h, "cred-slow", 1, 3, 10)...)
	h.shutdown()
	if lost, dup := exactlyOnce(t, want, h.marked("cred-slow")); lost+dup > 0 {
		t.Fatalf("lost %d, duplicated %d\n%s", lost, dup, tail(h.p.Output()))
	}
	out := h.p.Output()
	if n := strings.Count(out, "fetching the credential failed; retrying"); n != 1 {
		t.Errorf("%d warnings about the throttling, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, "ThrottlingException") || !strings.Contains(out, "fetching the credential from Secrets Manager "+arn+" succeeded after 3 attempts") {
		t.Errorf("the retry path did not run:\n%s", tail(out))
	}
}
