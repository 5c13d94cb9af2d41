package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/o2-extension/o2-extension/internal/config"
	"github.com/o2-extension/o2-extension/internal/credential"
)

// newCredential maps the configuration and the AWS variables Lambda sets
// onto the source: none for the plain header; the region from AWS_REGION,
// else AWS_DEFAULT_REGION; endpoints through getenv.
func TestNewCredential(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close() // nothing listens there now: a transient failure, no network
	env := func(kv ...string) func(string) string {
		m := map[string]string{"O2_ORGANIZATION_ID": "acme", "AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "SECRET", "AWS_ENDPOINT_URL": closed}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	load := func(getenv func(string) string) config.Config {
		cfg, _, err := config.Load(getenv, nil)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}

	plain := env("O2_AUTHORIZATION_HEADER", "Basic dTpw")
	if src := newCredential(load(plain), plain, nil); src != nil {
		t.Errorf("a source for the plain header: %v", src)
	}
	if o := clientOptions(load(plain), plain, nil, nil); o.Credential != nil || o.Authorization != "Basic dTpw" {
		t.Errorf("plain header: Credential %v (want nil, not a typed nil), Authorization set %v", o.Credential, o.Authorization != "")
	}

	for _, tt := range []struct {
		name     string
		getenv   func(string) string
		wantDesc string
		wantErr  string
	}{
		{"parameter, no region", env("O2_AUTHORIZATION_HEADER_SSM_PARAMETER", "/o2/ingest"), "SSM parameter /o2/ingest", "AWS_REGION is not set"},
		{"parameter, AWS_DEFAULT_REGION", env("O2_AUTHORIZATION_HEADER_SSM_PARAMETER", "/o2/ingest", "AWS_DEFAULT_REGION", "eu-west-1"), "SSM parameter /o2/ingest", "the call failed; retrying"},
		{"secret, region from the ARN", env("O2_AUTHORIZATION_HEADER_SECRET_ARN", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:o2-AbCdEf"),
			"Secrets Manager arn:aws:secretsmanager:eu-west-1:123456789012:secret:o2-AbCdEf", "the call failed; retrying"},
		{"secret, no credentials", env("O2_AUTHORIZATION_HEADER_SECRET_ARN", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:o2-AbCdEf", "AWS_ACCESS_KEY_ID", ""),
			"Secrets Manager", "no AWS credentials"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := load(tt.getenv)
			src := newCredential(cfg, tt.getenv, nil)
			if src == nil || !strings.HasPrefix(src.String(), tt.wantDesc) {
				t.Fatalf("source %v, want %q", src, tt.wantDesc)
			}
			if o := clientOptions(cfg, tt.getenv, nil, src); o.Credential == nil {
				t.Error("the client does not get the source")
			}
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			_, err := src.Fetch(ctx)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Fetch error %v, want %q", err, tt.wantErr)
			}
			if strings.Contains(tt.wantErr, "retrying") == credential.IsPermanent(err) {
				t.Errorf("Fetch error %v: permanent %v", err, credential.IsPermanent(err))
			}
		})
	}
}
