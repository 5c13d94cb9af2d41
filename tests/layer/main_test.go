package layer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// testVersion is stamped into the shared build, so the tests know what
// the binary, the zip comment and the layer description must say.
const testVersion = "v0.0.0-layertest"

var (
	// root is the repository root, where build.sh and deploy.sh live.
	root string
	// scratch holds what outlives one test (the shared build); TestMain
	// removes it.
	scratch string
	// bash runs the scripts, found once so a test can empty PATH.
	bash string

	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

func TestMain(m *testing.M) {
	code, err := testMain(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "layer tests:", err)
		code = 1
	}
	os.Exit(code)
}

func testMain(m *testing.M) (int, error) {
	var err error
	if root, err = filepath.Abs(filepath.Join("..", "..")); err != nil {
		return 0, err
	}
	if _, err := os.Stat(filepath.Join(root, "build.sh")); err != nil {
		return 0, fmt.Errorf("repository root not found: %w", err)
	}
	if bash, err = exec.LookPath("bash"); err != nil {
		return 0, err
	}
	if scratch, err = os.MkdirTemp("", "o2-layer-test-"); err != nil {
		return 0, err
	}
	defer os.RemoveAll(scratch)
	return m.Run(), nil
}

// builtDist builds both zips once per test binary, stamped testVersion,
// and returns their directory. Building two architectures is the slow
// part of this package, so every test shares this one build.
func builtDist(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir := filepath.Join(scratch, "dist")
		res := runScript(context.Background(), buildEnv(dir), nil, "build.sh")
		if res.code != 0 {
			buildErr = fmt.Errorf("./build.sh exited %d:\n%s%s", res.code, res.stdout, res.stderr)
			return
		}
		buildDir = dir
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildDir
}

// result is what a script run left.
type result struct {
	stdout, stderr string
	code           int
}

// runScript runs root/script with args under bash, with exactly env and
// with stdin from in (nil: /dev/null, which is not a terminal).
func runScript(ctx context.Context, env []string, in io.Reader, script string, args ...string) result {
	cmd := exec.CommandContext(ctx, bash, append([]string{filepath.Join(root, script)}, args...)...)
	cmd.Env = env
	cmd.Stdin = in
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := result{stdout: stdout.String(), stderr: stderr.String()}
	if exitErr, ok := errors.AsType[*exec.ExitError](err); ok {
		res.code = exitErr.ExitCode()
	} else if err != nil {
		res.code = -1
		res.stderr += "\n(runScript: " + err.Error() + ")"
	}
	return res
}

// environ returns this process's environment without the variables the
// scripts read (so a developer's settings change nothing), plus set.
func environ(set ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "AWS_"), strings.HasPrefix(k, "BUILD_"), strings.HasPrefix(k, "DEPLOY_"),
			k == "DIST_DIR", k == "LAYER_NAME", k == "COMPATIBLE_RUNTIMES":
			continue
		}
		env = append(env, kv)
	}
	return append(env, set...)
}

// buildEnv is the environment of a build into dist stamped testVersion.
// HOME stays the developer's: the Go build cache lives under it.
func buildEnv(dist string, set ...string) []string {
	return environ(append([]string{"DIST_DIR=" + dist, "BUILD_VERSION=" + testVersion}, set...)...)
}

// awsEnv is an environment for the aws CLI that cannot read or touch the
// user's configuration (HOME and both files in home) or leave the
// machine for credentials (no instance metadata), plus set.
func awsEnv(home string, set ...string) []string {
	return environ(append([]string{
		"HOME=" + home,
		"AWS_CONFIG_FILE=" + filepath.Join(home, "aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "aws-credentials"),
		"AWS_EC2_METADATA_DISABLED=true",
	}, set...)...)
}

// mustContain fails t unless s holds every one of want.
func mustContain(t *testing.T, what, s string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(s, w) {
			t.Errorf("%s does not contain %q:\n%s", what, w, s)
		}
	}
}
