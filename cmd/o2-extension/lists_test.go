package main

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/o2-extension/o2-extension/internal/config"
	"github.com/o2-extension/o2-extension/internal/openobserve"
	"github.com/o2-extension/o2-extension/internal/telemetry"
)

// Lists kept in two places because of the import rules must not drift:
// config (standard library only) copies what telemetry and openobserve own.

// loadWith loads the two required variables plus name=value.
func loadWith(t *testing.T, name, value string) (config.Config, []string) {
	t.Helper()
	env := map[string]string{"O2_ORGANIZATION_ID": "acme", "O2_AUTHORIZATION_HEADER": "Basic dTpw", name: value}
	getenv, environ := envMap(env)
	c, warns, err := config.Load(getenv, environ)
	if err != nil {
		t.Fatalf("Load(%s=%s): %v", name, value, err)
	}
	return c, warns
}

// TestConfigLevelsAreTelemetrys: O2_MIN_LEVEL accepts exactly the levels
// and aliases the filter ranks, and stores each as the level it ranks as.
func TestConfigLevelsAreTelemetrys(t *testing.T) {
	for _, l := range telemetry.Levels {
		if c, warns := loadWith(t, "O2_MIN_LEVEL", strings.ToLower(l)); c.MinLevel != l || len(warns) != 0 {
			t.Errorf("O2_MIN_LEVEL=%s: MinLevel %q, warnings %q; want %q", l, c.MinLevel, warns, l)
		}
	}
	for alias, l := range telemetry.LevelAliases {
		if c, _ := loadWith(t, "O2_MIN_LEVEL", alias); c.MinLevel != l {
			t.Errorf("O2_MIN_LEVEL=%s: MinLevel %q, want %q", alias, c.MinLevel, l)
		}
	}
	// What config lists as allowed is telemetry's list, no more.
	_, warns := loadWith(t, "O2_MIN_LEVEL", "NOTALEVEL")
	if want := "(allowed " + strings.Join(telemetry.Levels, ", ") + ")"; len(warns) != 1 || !strings.Contains(warns[0], want) {
		t.Errorf("warnings = %q, want one with %q", warns, want)
	}
	for _, v := range config.Variables() {
		if v.Name != "O2_MIN_LEVEL" {
			continue
		}
		for alias := range telemetry.LevelAliases {
			if !strings.Contains(v.Description, alias) {
				t.Errorf("O2_MIN_LEVEL's description does not mention %s", alias)
			}
		}
	}
}

// TestConfigReservedFieldsAreTheEncoders: O2_FIELDS refuses exactly the
// keys the encoder writes plus those main adds from the environment. A key
// config accepts but the encoder drops would vanish silently (part and
// truncated once did).
func TestConfigReservedFieldsAreTheEncoders(t *testing.T) {
	_, warns := loadWith(t, "O2_FIELDS", "type=x")
	if len(warns) != 1 {
		t.Fatalf("warnings = %q, want one", warns)
	}
	_, list, ok := strings.Cut(warns[0], "(reserved: ")
	list, _, ok2 := strings.Cut(list, ")")
	if !ok || !ok2 {
		t.Fatalf("warning %q does not list the reserved keys", warns[0])
	}
	var got []string
	for k := range strings.SplitSeq(list, ", ") {
		got = append(got, strings.ToLower(k))
	}

	getenv := func(k string) string {
		return map[string]string{"AWS_LAMBDA_FUNCTION_NAME": "f", "AWS_LAMBDA_FUNCTION_VERSION": "1",
			"AWS_REGION": "r", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128"}[k]
	}
	want := append(openobserve.ReservedKeys(), slices.Collect(maps.Keys(recordFields(config.Default(), getenv)))...)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("config reserves %q,\nthe encoder and main write %q", got, want)
	}
}
