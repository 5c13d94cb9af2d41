package layer

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/o2-extension/o2-extension/internal/mototest"
)

const region = "us-east-1"

// wantRuntimes is deploy.sh's default list: the runtimes that run
// extensions, 15 being all Lambda accepts on one layer version.
var wantRuntimes = []string{
	"provided.al2023", "provided.al2",
	"python3.14", "python3.13", "python3.12", "python3.11", "python3.10",
	"nodejs24.x", "nodejs22.x",
	"java21", "java17", "java11",
	"dotnet8",
	"ruby3.4", "ruby3.3",
}

// fakeDist returns a DIST_DIR holding stand-in zips: the preflight
// checks only that they exist.
func fakeDist(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, a := range arches {
		if err := os.WriteFile(filepath.Join(dir, "o2-extension-"+a.name+".zip"), []byte("PK\x05\x06"+strings.Repeat("\x00", 18)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestDeployFailsEarly covers what deploy.sh must refuse before it
// publishes anything, and its help. None of these reach an AWS endpoint:
// where the CLI could try, AWS_ENDPOINT_URL names a closed loopback port.
func TestDeployFailsEarly(t *testing.T) {
	emptyPath := t.TempDir()
	tests := []struct {
		name     string
		args     []string
		env      []string
		noDist   bool
		wantCode int
		wantOut  []string
		wantErr  []string
		dontWant []string // in stderr
	}{
		{name: "help", args: []string{"help"}, wantOut: []string{"Usage: ./deploy.sh", "list", "delete", "--yes", "AWS_REGION", "AWS_PROFILE", "AWS_ENDPOINT_URL", "DEPLOY_ARCH", "LAYER_NAME",
			"O2_AUTHORIZATION_HEADER_SECRET_ARN", "secretsmanager:GetSecretValue", "O2_AUTHORIZATION_HEADER_SSM_PARAMETER", "kms:Decrypt"}},
		{name: "unknown subcommand", args: []string{"publish-all"}, wantCode: 2, wantErr: []string{`unknown subcommand "publish-all"`, "Usage: ./deploy.sh"}},
		{name: "unknown option", args: []string{"list", "--force"}, wantCode: 2, wantErr: []string{`unknown option "--force"`, "Usage: ./deploy.sh"}},
		{name: "no aws CLI", env: []string{"PATH=" + emptyPath}, wantCode: 1, wantErr: []string{"the aws CLI is not installed or not in PATH"}},
		{name: "zips not built", noDist: true, wantCode: 1, wantErr: []string{"o2-extension-x86_64.zip not found: build it first with ./build.sh"}},
		{name: "arm64 zip not built", args: []string{"deploy"}, env: []string{"DEPLOY_ARCH=arm64"}, noDist: true, wantCode: 1, wantErr: []string{"o2-extension-arm64.zip not found", "BUILD_TARGETS=arm64 ./build.sh"}},
		{name: "unknown architecture", env: []string{"DEPLOY_ARCH=mips"}, wantCode: 1,
			wantErr: []string{`DEPLOY_ARCH="mips": want x86_64 (or amd64) or arm64 (or aarch64)`}},
		{name: "bad layer name", env: []string{"LAYER_NAME=my layer"}, wantCode: 1, wantErr: []string{`LAYER_NAME="my layer"`}},
		{name: "too many runtimes", env: []string{"COMPATIBLE_RUNTIMES=" + strings.Join(append(slices.Clone(wantRuntimes), "nodejs18.x"), " ")}, wantCode: 1, wantErr: []string{"names 16 runtimes; Lambda accepts at most 15"}},
		{name: "no region", env: []string{"AWS_REGION=", "AWS_ACCESS_KEY_ID=testing", "AWS_SECRET_ACCESS_KEY=testing"}, wantCode: 1, wantErr: []string{"no AWS region: set AWS_REGION"}},
		{name: "no credentials", env: []string{"AWS_REGION=" + region}, wantCode: 1, wantErr: []string{"no usable AWS credentials", "Unable to locate credentials"}},
		// A typo in the region is named as such, not blamed on credentials.
		{name: "bad region name", env: []string{"AWS_REGION=us-east", "AWS_ACCESS_KEY_ID=testing", "AWS_SECRET_ACCESS_KEY=testing"}, wantCode: 1,
			wantErr: []string{`AWS_REGION "us-east" is not a region name`}, dontWant: []string{"credentials"}},
		{name: "bad region name from the configuration", env: []string{"AWS_DEFAULT_REGION=Europe", "AWS_ACCESS_KEY_ID=testing", "AWS_SECRET_ACCESS_KEY=testing"}, wantCode: 1,
			wantErr: []string{`AWS_DEFAULT_REGION "Europe" is not a region name`}},
		// Nothing answers at the endpoint: said so, not blamed on credentials.
		{name: "endpoint unreachable", env: []string{"AWS_REGION=" + region, "AWS_ACCESS_KEY_ID=testing", "AWS_SECRET_ACCESS_KEY=testing", "AWS_MAX_ATTEMPTS=1"}, wantCode: 1,
			wantErr: []string{"cannot reach AWS STS in region " + region + " at http://127.0.0.1:1", "Could not connect to the endpoint URL"}, dontWant: []string{"credentials"}},
		{name: "delete with nobody to confirm", args: []string{"delete"}, env: []string{"AWS_REGION=" + region, "AWS_ACCESS_KEY_ID=testing", "AWS_SECRET_ACCESS_KEY=testing"}, wantCode: 1, wantErr: []string{"refusing to delete without --yes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			home := t.TempDir()
			dist := t.TempDir()
			if !tt.noDist {
				dist = fakeDist(t)
			}
			env := awsEnv(home, append([]string{
				"DIST_DIR=" + dist,
				"DEPLOY_INFO_DIR=" + home,
				"AWS_ENDPOINT_URL=http://127.0.0.1:1",
			}, tt.env...)...)
			res := runScript(t.Context(), env, nil, "deploy.sh", tt.args...)
			if res.code != tt.wantCode {
				t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", res.code, tt.wantCode, res.stdout, res.stderr)
			}
			mustContain(t, "stdout", res.stdout, tt.wantOut...)
			mustContain(t, "stderr", res.stderr, tt.wantErr...)
			for _, w := range tt.dontWant {
				if strings.Contains(res.stderr, w) {
					t.Errorf("stderr mentions %q:\n%s", w, res.stderr)
				}
			}
			if infos, _ := filepath.Glob(filepath.Join(home, "deployment-info-*")); tt.wantCode != 0 && len(infos) > 0 {
				t.Errorf("a failed run wrote %q", infos)
			}
		})
	}
}

// TestDeployAWSFailuresExit1: whatever the CLI exits with when a call fails
// (255 for most errors, a bad region among them), deploy.sh exits 1 like
// for every other failure, naming the call. The CLI here is a stub that
// knows the caller and refuses everything else.
func TestDeployAWSFailuresExit1(t *testing.T) {
	stub := t.TempDir()
	script := `#!/usr/bin/env bash
case "$1 $2" in
"sts get-caller-identity") printf '123456789012\tarn:aws:iam::123456789012:user/stub\n' ;;
*) echo "An error occurred (InvalidParameterValueException) when calling the $2 operation: stub refuses" >&2; exit 255 ;;
esac
`
	if err := os.WriteFile(filepath.Join(stub, "aws"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		call string
	}{
		{nil, "aws lambda publish-layer-version failed (exit 255)"},
		{[]string{"list"}, "aws lambda list-layer-versions failed (exit 255)"},
		{[]string{"delete", "--yes"}, "aws lambda list-layer-versions failed (exit 255)"},
	} {
		t.Run(strings.Join(append([]string{"deploy"}, tt.args...), " "), func(t *testing.T) {
			home := t.TempDir()
			env := awsEnv(home, "DIST_DIR="+fakeDist(t), "DEPLOY_INFO_DIR="+home, "AWS_REGION="+region,
				"PATH="+stub+string(os.PathListSeparator)+os.Getenv("PATH"))
			res := runScript(t.Context(), env, nil, "deploy.sh", tt.args...)
			if res.code != 1 {
				t.Errorf("exit code %d, want 1\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
			}
			mustContain(t, "stderr", res.stderr, tt.call, "stub refuses")
		})
	}
}

// TestDeployToMoto deploys the real zips of both architectures to a
// moto_server through the real aws CLI, checks the layer versions with
// the CLI, then lists and deletes them with deploy.sh.
func TestDeployToMoto(t *testing.T) {
	t.Parallel()
	awsPath, err := exec.LookPath("aws")
	if err != nil {
		t.Fatal("the aws CLI is not in PATH: this test needs it (pip install awscli); it is on every machine of ours and in CI")
	}
	dist := builtDist(t)
	home := t.TempDir()
	endpoint := startMoto(t, home)
	env := awsEnv(home,
		"AWS_ACCESS_KEY_ID=testing", "AWS_SECRET_ACCESS_KEY=testing",
		"AWS_REGION="+region, "AWS_ENDPOINT_URL="+endpoint,
		"DIST_DIR="+dist, "DEPLOY_INFO_DIR="+home)
	deploy := func(t *testing.T, wantCode int, extraEnv []string, args ...string) result {
		t.Helper()
		res := runScript(t.Context(), append(slices.Clone(env), extraEnv...), nil, "deploy.sh", args...)
		if res.code != wantCode {
			t.Fatalf("deploy.sh %q %q exited %d, want %d\nstdout:\n%s\nstderr:\n%s", extraEnv, args, res.code, wantCode, res.stdout, res.stderr)
		}
		return res
	}
	// cli runs the aws CLI against moto and decodes its JSON answer.
	cli := func(t *testing.T, v any, args ...string) {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), awsPath, append(args, "--region", region, "--endpoint-url", endpoint, "--output", "json")...)
		cmd.Env = env
		out, err := cmd.Output()
		if err != nil {
			stderr := ""
			if ee, ok := errors.AsType[*exec.ExitError](err); ok {
				stderr = string(ee.Stderr)
			}
			t.Fatalf("aws %q: %v\n%s", args, err, stderr)
		}
		if err := json.Unmarshal(out, v); err != nil {
			t.Fatalf("aws %q: decode %q: %v", args, out, err)
		}
	}
	arnOf := func(layer string, version int) string {
		return fmt.Sprintf("arn:aws:lambda:%s:123456789012:layer:%s:%d", region, layer, version)
	}

	// Both architectures, then arm64 again alone, then one under another name.
	res := deploy(t, 0, nil)
	for _, a := range arches {
		arn := arnOf("o2-extension-"+a.name, 1)
		mustContain(t, "deploy output", res.stdout, arn,
			"aws lambda update-function-configuration --region "+region+" --function-name YOUR_FUNCTION --layers "+arn)
	}
	deploy(t, 0, []string{"DEPLOY_ARCH=arm64"})
	res = deploy(t, 0, []string{"DEPLOY_ARCH=x86_64", "LAYER_NAME=acme-o2"})
	mustContain(t, "deploy output", res.stdout, arnOf("acme-o2-x86_64", 1))
	if strings.Contains(res.stdout, "arm64") {
		t.Errorf("DEPLOY_ARCH=x86_64 published arm64 too:\n%s", res.stdout)
	}

	type layerVersion struct {
		LayerVersionArn         string
		Version                 int
		Description             string
		CompatibleArchitectures []string
		CompatibleRuntimes      []string
		Content                 struct {
			CodeSha256 string
			CodeSize   int64
		}
	}
	for _, w := range []struct {
		layer, arch string
		versions    []int // newest first, as Lambda lists them
	}{
		{"o2-extension-x86_64", "x86_64", []int{1}},
		{"o2-extension-arm64", "arm64", []int{2, 1}},
		{"acme-o2-x86_64", "x86_64", []int{1}},
	} {
		layer, arch, versions := w.layer, w.arch, w.versions
		var list struct{ LayerVersions []layerVersion }
		cli(t, &list, "lambda", "list-layer-versions", "--layer-name", layer)
		var got []int
		for _, lv := range list.LayerVersions {
			got = append(got, lv.Version)
			if !slices.Equal(lv.CompatibleArchitectures, []string{arch}) {
				t.Errorf("%s: architectures %q, want [%s]", lv.LayerVersionArn, lv.CompatibleArchitectures, arch)
			}
			if !slices.Equal(lv.CompatibleRuntimes, wantRuntimes) {
				t.Errorf("%s: runtimes %q, want %q", lv.LayerVersionArn, lv.CompatibleRuntimes, wantRuntimes)
			}
			if want := "o2-extension " + testVersion + " for " + arch; !strings.HasPrefix(lv.Description, want) {
				t.Errorf("%s: description %q, want it to start with %q", lv.LayerVersionArn, lv.Description, want)
			}
		}
		if !slices.Equal(got, versions) {
			t.Errorf("%s: versions %v, want %v", layer, got, versions)
		}
		// The content is the zip of the layer's architecture, byte for byte.
		zip, err := os.ReadFile(filepath.Join(dist, "o2-extension-"+arch+".zip"))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(zip)
		var lv layerVersion
		cli(t, &lv, "lambda", "get-layer-version", "--layer-name", layer, "--version-number", strconv.Itoa(versions[0]))
		if want := base64.StdEncoding.EncodeToString(sum[:]); lv.Content.CodeSha256 != want || lv.Content.CodeSize != int64(len(zip)) {
			t.Errorf("%s: content %s (%d bytes), want the %s zip's %s (%d bytes)", lv.LayerVersionArn, lv.Content.CodeSha256, lv.Content.CodeSize, arch, want, len(zip))
		}
	}

	// deployment-info-<arch>.txt keeps the latest version of each layer.
	for file, want := range map[string][]string{
		"deployment-info-x86_64.txt": {region + " " + arnOf("o2-extension-x86_64", 1) + " " + testVersion, region + " " + arnOf("acme-o2-x86_64", 1) + " " + testVersion},
		"deployment-info-arm64.txt":  {region + " " + arnOf("o2-extension-arm64", 2) + " " + testVersion},
	} {
		data, err := os.ReadFile(filepath.Join(home, file))
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for l := range strings.Lines(string(data)) {
			if !strings.HasPrefix(l, "#") {
				lines = append(lines, strings.TrimSuffix(l, "\n"))
			}
		}
		slices.Sort(lines)
		slices.Sort(want)
		if !slices.Equal(lines, want) {
			t.Errorf("%s lists %q, want %q", file, lines, want)
		}
	}

	// Delete under another LAYER_NAME touches only that layer, and takes
	// its ARN out of deployment-info-x86_64.txt.
	res = deploy(t, 0, []string{"LAYER_NAME=acme-o2"}, "delete", "--yes")
	mustContain(t, "delete output", res.stdout, "deleted "+arnOf("acme-o2-x86_64", 1))
	info, err := os.ReadFile(filepath.Join(home, "deployment-info-x86_64.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(info), "acme-o2") || !strings.Contains(string(info), arnOf("o2-extension-x86_64", 1)) {
		t.Errorf("deployment-info-x86_64.txt after deleting acme-o2:\n%s", info)
	}

	res = deploy(t, 0, nil, "list")
	mustContain(t, "list output", res.stdout, arnOf("o2-extension-x86_64", 1), arnOf("o2-extension-arm64", 2), arnOf("o2-extension-arm64", 1))
	if strings.Contains(res.stdout, "acme-o2") {
		t.Errorf("list shows a layer it does not own:\n%s", res.stdout)
	}

	// Without --yes and with nobody at a terminal, nothing goes.
	deploy(t, 1, nil, "delete")
	res = deploy(t, 0, nil, "delete", "--yes")
	for _, arn := range []string{arnOf("o2-extension-x86_64", 1), arnOf("o2-extension-arm64", 2), arnOf("o2-extension-arm64", 1)} {
		mustContain(t, "delete output", res.stdout, "deleted "+arn)
	}
	// No deployment-info file names a deleted version.
	for _, a := range arches {
		if b, err := os.ReadFile(filepath.Join(home, "deployment-info-"+a.name+".txt")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("deployment-info-%s.txt after delete --yes (%v):\n%s", a.name, err, b)
		}
	}
	var layers struct{ Layers []struct{ LayerName string } }
	cli(t, &layers, "lambda", "list-layers")
	if len(layers.Layers) != 0 {
		t.Errorf("layers left after delete --yes: %+v", layers.Layers)
	}
}

// startMoto starts moto_server (internal/mototest) with home as its home,
// and returns its URL.
func startMoto(t *testing.T, home string) string {
	t.Helper()
	return mototest.Start(t, home, mototest.Options{}).URL
}
