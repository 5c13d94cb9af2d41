package config_test

import (
	"strings"
	"testing"

	"github.com/o2-extension/o2-extension/internal/config"
)

const (
	testSecretARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:o2/ingest-AbCdEf"
	testParamARN  = "arn:aws:ssm:eu-west-1:123456789012:parameter/o2/ingest"
)

// The credential comes from exactly one of three sources; with a secret
// source the plain header is not required, and two at once are named.
func TestCredentialSources(t *testing.T) {
	org := map[string]string{"O2_ORGANIZATION_ID": "acme"}
	// A refused source keeps its default (unset), so the credential is
	// missing too.
	const required = "O2_AUTHORIZATION_HEADER is required (or the secret holding it: O2_AUTHORIZATION_HEADER_SECRET_ARN or O2_AUTHORIZATION_HEADER_SSM_PARAMETER)"
	with := func(kv ...string) map[string]string {
		m := map[string]string{"O2_ORGANIZATION_ID": "acme"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, tt := range []struct {
		name       string
		env        map[string]string
		want       []string // substrings of the problems, in order; nil: valid
		wantSource string
	}{
		{"none", org, []string{"O2_AUTHORIZATION_HEADER is required"}, ""},
		{"plain", with("O2_AUTHORIZATION_HEADER", validAuth), nil, "O2_AUTHORIZATION_HEADER"},
		{"secret ARN", with("O2_AUTHORIZATION_HEADER_SECRET_ARN", testSecretARN), nil, "Secrets Manager " + testSecretARN},
		{"secret ARN with key", with("O2_AUTHORIZATION_HEADER_SECRET_ARN", testSecretARN, "O2_AUTHORIZATION_HEADER_SECRET_KEY", "basic"), nil, "Secrets Manager " + testSecretARN},
		{"SSM name", with("O2_AUTHORIZATION_HEADER_SSM_PARAMETER", "/o2/ingest"), nil, "SSM parameter /o2/ingest"},
		{"SSM ARN", with("O2_AUTHORIZATION_HEADER_SSM_PARAMETER", testParamARN), nil, "SSM parameter " + testParamARN},
		{"plain and secret", with("O2_AUTHORIZATION_HEADER", validAuth, "O2_AUTHORIZATION_HEADER_SECRET_ARN", testSecretARN),
			[]string{"O2_AUTHORIZATION_HEADER and O2_AUTHORIZATION_HEADER_SECRET_ARN are both set: give exactly one source"}, ""},
		{"secret and SSM", with("O2_AUTHORIZATION_HEADER_SECRET_ARN", testSecretARN, "O2_AUTHORIZATION_HEADER_SSM_PARAMETER", "/o2/ingest"),
			[]string{"O2_AUTHORIZATION_HEADER_SECRET_ARN and O2_AUTHORIZATION_HEADER_SSM_PARAMETER are both set"}, ""},
		{"all three", with("O2_AUTHORIZATION_HEADER", validAuth, "O2_AUTHORIZATION_HEADER_SECRET_ARN", testSecretARN, "O2_AUTHORIZATION_HEADER_SSM_PARAMETER", "/o2/ingest"),
			[]string{"O2_AUTHORIZATION_HEADER, O2_AUTHORIZATION_HEADER_SECRET_ARN and O2_AUTHORIZATION_HEADER_SSM_PARAMETER are all set"}, ""},
		{"not an ARN", with("O2_AUTHORIZATION_HEADER_SECRET_ARN", "o2/ingest"),
			[]string{`O2_AUTHORIZATION_HEADER_SECRET_ARN: "o2/ingest" is not an ARN`, "O2_AUTHORIZATION_HEADER is required"}, ""},
		{"ARN of another service", with("O2_AUTHORIZATION_HEADER_SECRET_ARN", testParamARN),
			[]string{`is an ARN of "ssm", not of secretsmanager`, required}, ""},
		{"bad region in the ARN", with("O2_AUTHORIZATION_HEADER_SECRET_ARN", strings.Replace(testSecretARN, "eu-west-1", "eu-west", 1)),
			[]string{`"eu-west" is not a region in the ARN`, required}, ""},
		{"bad account in the ARN", with("O2_AUTHORIZATION_HEADER_SECRET_ARN", strings.Replace(testSecretARN, "123456789012", "1234", 1)),
			[]string{`"1234" is not a 12-digit account id`, required}, ""},
		{"ARN without a secret", with("O2_AUTHORIZATION_HEADER_SECRET_ARN", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:"),
			[]string{"does not name a secret", required}, ""},
		{"bad parameter name", with("O2_AUTHORIZATION_HEADER_SSM_PARAMETER", "o2 ingest"),
			[]string{`O2_AUTHORIZATION_HEADER_SSM_PARAMETER: "o2 ingest" is not a parameter name`, required}, ""},
		{"bad parameter ARN", with("O2_AUTHORIZATION_HEADER_SSM_PARAMETER", "arn:aws:ssm:eu-west-1:123456789012:document/x"),
			[]string{"does not name a parameter", required}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := config.Load(getenv(tt.env), nil)
			got := problems(err)
			if len(got) != len(tt.want) {
				t.Fatalf("problems %q, want %d like %q", got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got[i], w)
				}
			}
			if tt.wantSource != "" && c.AuthSource() != tt.wantSource {
				t.Errorf("AuthSource() = %q, want %q", c.AuthSource(), tt.wantSource)
			}
		})
	}
}

// A key without the secret it applies to is ignored, and said so.
func TestSecretKeyWithoutSecretWarns(t *testing.T) {
	c, _, err := config.Load(getenv(withRequired(map[string]string{"O2_AUTHORIZATION_HEADER_SECRET_KEY": "basic"})), nil)
	if err != nil {
		t.Fatal(err)
	}
	w := strings.Join(c.Warnings(), "\n")
	if !strings.Contains(w, "O2_AUTHORIZATION_HEADER_SECRET_KEY is set but O2_AUTHORIZATION_HEADER_SECRET_ARN is not") {
		t.Errorf("warnings lack the ignored key:\n%s", w)
	}
}
