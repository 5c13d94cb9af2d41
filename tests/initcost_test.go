package tests

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/o2-extension/o2-extension/internal/lambdatest"
	"github.com/o2-extension/o2-extension/internal/mototest"
	"github.com/o2-extension/o2-extension/internal/openobserve/o2test"
)

// Init cost (process start to first /next, as the README's "What it costs"
// measures it) with the plain header and with the credential from Secrets
// Manager, whose fetch runs in the background and must not lengthen init.
// Each iteration starts one sandbox per case, in turn, so that a machine
// whose speed drifts (a shared one) affects every case alike; the median
// of each case is reported:
//
//	go test -run '^$' -bench BenchmarkInit -benchtime 40x ./tests/
//
// "plain" runs without the OTLP receiver (O2_OTLP_PORT=0), "plain-otlp" with
// it. O2_BENCH_BASELINE names another build of the extension (an older commit,
// another variant) to measure with the plain header in the same loop.
func BenchmarkInit(b *testing.B) {
	o2 := o2test.Run(b, o2test.Options{Credentials: map[string]string{credEmail: credSecret}})
	moto := mototest.Start(b, b.TempDir(), mototest.Options{})
	header := o2test.BasicAuth(credEmail, credSecret)
	arn := moto.CreateSecret(b, awsRegion, "o2/bench", header)
	// An AWS endpoint that takes the call and never answers: the fetch
	// then costs the machine nothing while init is measured (moto, in
	// Python on the same cores, answers with several ms of CPU that
	// Secrets Manager spends elsewhere).
	silent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // then a closed connection ends the context
		<-r.Context().Done()
	}))
	b.Cleanup(silent.Close)
	// One that answers at once, from Go in this process: the fetch
	// completes during init at a cost close to Secrets Manager's on the
	// extension's side (no TLS here), without moto's Python CPU.
	quick := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		_, _ = io.WriteString(w, `{"ARN":"`+arn+`","Name":"o2/bench","SecretString":"`+header+`"}`)
	}))
	b.Cleanup(quick.Close)

	type bcase struct {
		name, bin string
		env       []string
		inits     []time.Duration
	}
	cases := []*bcase{
		{name: "plain", bin: binary, env: []string{"O2_AUTHORIZATION_HEADER=" + header, noOTLP}},
		// The OTLP receiver's cost: one more loopback listener at init.
		{name: "plain-otlp", bin: binary, env: []string{"O2_AUTHORIZATION_HEADER=" + header, "O2_OTLP_PORT=" + otlpPort(b)}},
		{name: "secretsmanager", bin: binary, env: []string{"O2_AUTHORIZATION_HEADER_SECRET_ARN=" + arn, noOTLP}},
		{name: "secretsmanager-quick", bin: binary, env: []string{"O2_AUTHORIZATION_HEADER_SECRET_ARN=" + arn, noOTLP,
			"AWS_ENDPOINT_URL_SECRETS_MANAGER=" + quick.URL}},
		{name: "secretsmanager-unanswered", bin: binary, env: []string{"O2_AUTHORIZATION_HEADER_SECRET_ARN=" + arn, noOTLP,
			"AWS_ENDPOINT_URL_SECRETS_MANAGER=" + silent.URL, "O2_FLUSH_BUDGET_MS=50", "O2_REQUEST_TIMEOUT_MS=200"}},
	}
	if base := os.Getenv("O2_BENCH_BASELINE"); base != "" {
		cases = append(cases, &bcase{name: "baseline-plain", bin: base, env: []string{"O2_AUTHORIZATION_HEADER=" + header, noOTLP}})
	}
	for b.Loop() {
		for _, c := range cases {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			p, err := lambdatest.Start(ctx, lambdatest.Options{Region: awsRegion, Extensions: []string{c.bin},
				Env: append(credEnv(o2, moto), c.env...)})
			if err != nil {
				cancel()
				b.Fatal(err)
			}
			if _, err := p.Invoke(ctx, lambdatest.Invocation{Lines: []string{"bench"}}); err != nil {
				b.Fatal(err)
			}
			if _, err := p.Shutdown(ctx, "spindown"); err != nil {
				b.Fatal(err)
			}
			c.inits = append(c.inits, p.Stats().InitDuration)
			p.Close()
			cancel()
		}
	}
	for _, c := range cases {
		slices.Sort(c.inits)
		b.ReportMetric(float64(c.inits[len(c.inits)/2])/float64(time.Millisecond), c.name+"-init-median-ms")
	}
}
