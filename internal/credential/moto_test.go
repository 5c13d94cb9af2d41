package credential_test

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/o2-extension/o2-extension/internal/credential"
	"github.com/o2-extension/o2-extension/internal/mototest"
	"github.com/sirupsen/logrus"
)

const (
	region     = "us-east-1"
	headerA    = "Basic b3BzQGV4YW1wbGUuY29tOnJvdGF0aW9uLW9uZQ==" // ops@example.com:rotation-one
	headerB    = "Basic b3BzQGV4YW1wbGUuY29tOnJvdGF0aW9uLXR3bw==" // ops@example.com:rotation-two
	keyVar     = "O2_AUTHORIZATION_HEADER_SECRET_KEY"
	callBudget = 60 * time.Second // generous: a loaded 2-core machine, moto in Python
)

// logs collects a Source's log entries, and lets a test wait for one.
type logs struct {
	mu      sync.Mutex
	entries []entry
	changed chan struct{}
}

// entry is a copy of a log entry: logrus reuses its *Entry after the hooks.
type entry struct {
	Level   logrus.Level
	Message string
	Text    string
}

func newLogs() (*logs, *logrus.Entry) {
	l := &logs{changed: make(chan struct{})}
	lg := logrus.New()
	lg.SetLevel(logrus.TraceLevel)
	lg.SetOutput(discardWriter{})
	lg.AddHook(l)
	return l, logrus.NewEntry(lg)
}

type discardWriter struct{}

func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }

func (l *logs) Levels() []logrus.Level { return logrus.AllLevels }

func (l *logs) Fire(e *logrus.Entry) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	text, _ := e.String()
	l.entries = append(l.entries, entry{Level: e.Level, Message: e.Message, Text: text})
	close(l.changed)
	l.changed = make(chan struct{})
	return nil
}

// text is every entry formatted, one per line.
func (l *logs) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, e := range l.entries {
		b.WriteString(e.Text)
	}
	return b.String()
}

// waitFor waits until an entry's message contains s.
func (l *logs) waitFor(t *testing.T, s string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), callBudget)
	defer cancel()
	for {
		l.mu.Lock()
		ch := l.changed
		for _, e := range l.entries {
			if strings.Contains(e.Message, s) {
				l.mu.Unlock()
				return
			}
		}
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("no log entry with %q; logs:\n%s", s, l.text())
		}
	}
}

// opts are Options for a source read from moto with the test keys.
func opts(moto *mototest.Server, o credential.Options) credential.Options {
	o.Region = region
	if o.AccessKeyID == "" {
		o.AccessKeyID, o.SecretAccessKey, o.SessionToken = mototest.AccessKeyID, mototest.SecretAccessKey, "session-token"
	}
	o.KeyVar = keyVar
	if o.Getenv == nil {
		o.Getenv = func(k string) string {
			if k == "AWS_ENDPOINT_URL" {
				return moto.URL
			}
			return ""
		}
	}
	return o
}

// fetch makes one fetch with a bounded context.
func fetch(t *testing.T, o credential.Options) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), callBudget)
	defer cancel()
	return credential.New(o).Fetch(ctx)
}

// secretsOf are the strings that must never appear in a message about a
// value: the value, what follows its scheme, and that decoded.
func secretsOf(v string) []string {
	out := []string{v}
	if _, cred, ok := strings.Cut(v, " "); ok {
		out = append(out, cred)
		if dec, err := base64.StdEncoding.DecodeString(cred); err == nil {
			out = append(out, string(dec))
			if _, pw, ok := strings.Cut(string(dec), ":"); ok {
				out = append(out, pw)
			}
		}
	}
	return out
}

func mustNotLeak(t *testing.T, what, text string, values ...string) {
	t.Helper()
	for _, v := range values {
		for _, s := range secretsOf(v) {
			if len(s) >= 4 && strings.Contains(text, s) {
				t.Errorf("%s contains a secret %q:\n%s", what, s, text)
			}
		}
	}
}

// Reading from a real moto_server: plain and JSON secrets, SecureString
// parameters by name and ARN, and each permanent failure with a message
// naming the source and what to do, never the value.
func TestFetchFromMoto(t *testing.T) {
	t.Parallel()
	moto := mototest.Start(t, t.TempDir(), mototest.Options{})
	plain := moto.CreateSecret(t, region, "o2/plain", headerA)
	jsonDefault := moto.CreateSecret(t, region, "o2/json", `{"authorization":"`+headerA+`","user":"ops"}`)
	jsonKey := moto.CreateSecret(t, region, "o2/json-key", `{"basic":"`+headerB+`"}`)
	notHeader := moto.CreateSecret(t, region, "o2/not-a-header", "rotation-one")
	blank := moto.CreateSecret(t, region, "o2/blank", "   ")
	badJSON := moto.CreateSecret(t, region, "o2/bad-json", `{"authorization":"`+headerA)
	twoLines := moto.CreateSecret(t, region, "o2/two-lines", headerA+"\r\nX-Injected: 1")
	moto.PutParameter(t, region, "/o2/secure", "SecureString", headerB)
	moto.PutParameter(t, region, "/o2/string", "String", headerA)
	missing := "arn:aws:secretsmanager:" + region + ":" + mototest.Account + ":secret:o2/missing-AbCdEf"
	otherRegion := strings.Replace(plain, ":"+region+":", ":eu-west-1:", 1)
	paramARN := "arn:aws:ssm:" + region + ":" + mototest.Account + ":parameter/o2/secure"
	closed := "http://127.0.0.1:" + mototest.FreePort(t)

	for _, tt := range []struct {
		name     string
		o        credential.Options
		want     string
		wantKind credential.Kind
		wantMsg  []string
	}{
		{name: "plain secret", o: credential.Options{SecretARN: plain}, want: headerA},
		{name: "JSON secret, default key", o: credential.Options{SecretARN: jsonDefault}, want: headerA},
		{name: "JSON secret, named key", o: credential.Options{SecretARN: jsonKey, SecretKey: "basic"}, want: headerB},
		{name: "SecureString parameter by name", o: credential.Options{SSMParameter: "/o2/secure"}, want: headerB},
		{name: "SecureString parameter by ARN", o: credential.Options{SSMParameter: paramARN}, want: headerB},
		{name: "String parameter", o: credential.Options{SSMParameter: "/o2/string"}, want: headerA},
		{name: "per-service endpoint wins", want: headerA, o: credential.Options{SecretARN: plain, Getenv: func(k string) string {
			return map[string]string{"AWS_ENDPOINT_URL": closed, "AWS_ENDPOINT_URL_SECRETS_MANAGER": moto.URL}[k]
		}}},
		{name: "JSON secret without the key", o: credential.Options{SecretARN: jsonKey}, wantKind: credential.BadValue,
			wantMsg: []string{jsonKey, `without the key "authorization"`, "set " + keyVar}},
		{name: "not a header value", o: credential.Options{SecretARN: notHeader}, wantKind: credential.BadValue,
			wantMsg: []string{notHeader, "is not an Authorization header value", "'<scheme> <credentials>'"}},
		{name: "blank secret", o: credential.Options{SecretARN: blank}, wantKind: credential.BadValue, wantMsg: []string{blank, "is empty"}},
		{name: "broken JSON", o: credential.Options{SecretARN: badJSON}, wantKind: credential.BadValue, wantMsg: []string{badJSON, "not valid JSON"}},
		{name: "line break", o: credential.Options{SecretARN: twoLines}, wantKind: credential.BadValue, wantMsg: []string{twoLines, "line breaks"}},
		{name: "missing secret", o: credential.Options{SecretARN: missing}, wantKind: credential.NotFound,
			wantMsg: []string{missing, "secret not found in region " + region, "ResourceNotFoundException"}},
		{name: "wrong region in the ARN", o: credential.Options{SecretARN: otherRegion}, wantKind: credential.NotFound,
			wantMsg: []string{otherRegion, "not found in region eu-west-1 (the function runs in " + region + "): check the region in the ARN"}},
		{name: "missing parameter", o: credential.Options{SSMParameter: "/o2/missing"}, wantKind: credential.NotFound,
			wantMsg: []string{"SSM parameter /o2/missing", "parameter not found in region " + region}},
		{name: "no region", o: credential.Options{SSMParameter: "/o2/secure", Getenv: func(string) string { return moto.URL }},
			wantKind: credential.Misconfigured, wantMsg: []string{"AWS_REGION is not set"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := opts(moto, tt.o)
			if tt.name == "no region" {
				o.Region = ""
			}
			got, err := fetch(t, o)
			if tt.want != "" {
				if err != nil || got != tt.want {
					t.Fatalf("Fetch = %q, %v; want the stored value", got, err)
				}
				return
			}
			e, ok := errors.AsType[*credential.Error](err)
			if !ok {
				t.Fatalf("Fetch = %q, %v; want a *credential.Error", got, err)
			}
			if got != "" || e.Kind != tt.wantKind || !e.Permanent() || !credential.IsPermanent(err) {
				t.Errorf("Fetch = %q, kind %d permanent %v; want \"\", kind %d, permanent", got, e.Kind, e.Permanent(), tt.wantKind)
			}
			for _, w := range tt.wantMsg {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			mustNotLeak(t, "the error", err.Error(), headerA, headerB, "rotation-one")
		})
	}
}

// AccessDenied from IAM (moto enforcing policies): the message says which
// permission to grant on which resource; a role with that permission reads
// the same secret.
func TestAccessDenied(t *testing.T) {
	t.Parallel()
	// The first 7 calls set up: 2 stores, 2 users with keys, 1 policy.
	moto := mototest.Start(t, t.TempDir(), mototest.Options{NoAuthActions: 7})
	arn := moto.CreateSecret(t, region, "o2/ingest", headerA)
	moto.PutParameter(t, region, "/o2/ingest", "SecureString", headerA)
	denied := moto.CreateUser(t, "denied", "")
	// moto matches only "*" resources outside S3.
	allowed := moto.CreateUser(t, "allowed", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"*"}]}`)

	as := func(k mototest.Keys, o credential.Options) credential.Options {
		o.AccessKeyID, o.SecretAccessKey = k.AccessKeyID, k.SecretAccessKey
		return opts(moto, o)
	}
	if v, err := fetch(t, as(allowed, credential.Options{SecretARN: arn})); err != nil || v != headerA {
		t.Fatalf("allowed role: Fetch = %q, %v; want the value", v, err)
	}
	for _, tt := range []struct {
		name string
		o    credential.Options
		want []string
	}{
		{"secret", credential.Options{SecretARN: arn}, []string{"credential from Secrets Manager " + arn, "access denied: grant secretsmanager:GetSecretValue on " + arn + " to the function's role"}},
		{"parameter", credential.Options{SSMParameter: "/o2/ingest"}, []string{"credential from SSM parameter /o2/ingest", "access denied: grant ssm:GetParameter on /o2/ingest to the function's role", "kms:Decrypt"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := fetch(t, as(denied, tt.o))
			e, ok := errors.AsType[*credential.Error](err)
			if !ok || e.Kind != credential.Denied {
				t.Fatalf("Fetch error %v, want access denied", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// Rotation against moto: the secret is updated, OpenObserve refuses the old
// value, and the source, told so, fetches the new one in the background.
func TestRotationFromMoto(t *testing.T) {
	t.Parallel()
	moto := mototest.Start(t, t.TempDir(), mototest.Options{})
	arn := moto.CreateSecret(t, region, "o2/rotating", `{"authorization":"`+headerA+`"}`)
	l, log := newLogs()
	o := opts(moto, credential.Options{SecretARN: arn})
	o.Logger = log
	s := credential.New(o)
	s.Start(t.Context())
	defer s.Close()
	ctx, cancel := context.WithTimeout(t.Context(), callBudget)
	defer cancel()
	if v, err := s.Authorization(ctx); err != nil || v != headerA {
		t.Fatalf("first value: %q, %v", v, err)
	}
	moto.PutSecretValue(t, region, arn, `{"authorization":"`+headerB+`"}`)
	s.Refused(headerA)
	l.waitFor(t, "the new value from Secrets Manager "+arn+" is used")
	if v, err := s.Authorization(ctx); err != nil || v != headerB {
		t.Fatalf("after the rotation: %q, %v", v, err)
	}
	mustNotLeak(t, "the log", l.text(), headerA, headerB)
}
