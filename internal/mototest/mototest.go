// Package mototest starts a moto_server (a local emulator of the AWS APIs) on a free loopback port for tests, and makes signed calls to it to set up what a test needs.
package mototest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// AccessKeyID and SecretAccessKey are the credentials tests use: moto
// accepts any unless IAM is enforced (Options.NoAuthActions).
const (
	AccessKeyID     = "testing"
	SecretAccessKey = "testing"
	// Account is moto's default account id.
	Account = "123456789012"
)

// Options configure Start.
type Options struct {
	// NoAuthActions, when > 0, turns on moto's IAM enforcement after that
	// many calls (INITIAL_NO_AUTH_ACTION_COUNT): the first ones set up
	// users and policies, later calls are allowed or denied by them.
	NoAuthActions int
}

// Server is a running moto_server.
type Server struct {
	// URL is its base URL, http://127.0.0.1:PORT.
	URL string
}

// Start starts moto_server on a free loopback port in its own process
// group, with dir as its home and working directory, waits until it
// answers, and returns it. Cleanup kills the group (the pyenv shims exec
// python, which may fork) and waits for it. It fails t if moto_server is
// not installed: every machine of ours and CI has it.
func Start(t testing.TB, dir string, o Options) *Server {
	t.Helper()
	path, err := exec.LookPath("moto_server")
	if err != nil {
		t.Fatal("moto_server is not in PATH: this test needs it (pip install 'moto[server]'); it is on every machine of ours and in CI")
	}
	port := FreePort(t)
	logPath := filepath.Join(dir, "moto.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, "-H", "127.0.0.1", "-p", port)
	cmd.Dir = dir
	cmd.Env = Env(dir)
	if o.NoAuthActions > 0 {
		cmd.Env = append(cmd.Env, "INITIAL_NO_AUTH_ACTION_COUNT="+strconv.Itoa(o.NoAuthActions))
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start moto_server: %v", err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // ESRCH if gone already
		<-exited
		logf.Close()
	})
	motoLog := func() string {
		b, _ := os.ReadFile(logPath)
		return string(b)
	}

	// Readiness probe: any HTTP answer means moto is serving. The deadline
	// bounds a broken install; a healthy one answers in about a second,
	// a few on a loaded machine.
	base := "http://127.0.0.1:" + port
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if resp, err := client.Get(base + "/moto-api/"); err == nil {
			resp.Body.Close()
			return &Server{URL: base}
		}
		select {
		case <-exited:
			t.Fatalf("moto_server exited before answering (%v):\n%s", waitErr, motoLog())
		case <-deadline.C:
			t.Fatalf("moto_server did not answer on %s within 60s:\n%s", base, motoLog())
		case <-tick.C:
		}
	}
}

// Env is this process's environment without any AWS_ variable (so a
// developer's settings change nothing), with HOME and the AWS
// configuration files in dir and instance metadata off, plus set.
func Env(dir string, set ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	return append(append(env,
		"HOME="+dir,
		"AWS_CONFIG_FILE="+filepath.Join(dir, "aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(dir, "aws-credentials"),
		"AWS_EC2_METADATA_DISABLED=true",
	), set...)
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// Keys are credentials to sign calls with.
type Keys struct{ AccessKeyID, SecretAccessKey string }

// DefaultKeys are the test credentials, allowed everything while IAM is
// not enforced.
var DefaultKeys = Keys{AccessKeyID, SecretAccessKey}

// JSON calls an AWS JSON 1.1 operation (Secrets Manager, SSM), target being
// its X-Amz-Target (e.g. "secretsmanager.CreateSecret"), and decodes the
// reply into out (nil: ignore it). It fails t on an error reply.
func (s *Server) JSON(t testing.TB, keys Keys, region, service, target string, in, out any) {
	t.Helper()
	body, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	b := s.do(t, keys, region, service, body, http.Header{
		"Content-Type": {"application/x-amz-json-1.1"},
		"X-Amz-Target": {target},
	})
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s: decode reply: %v", target, err)
		}
	}
}

// Query calls an AWS query-protocol operation (IAM: Action=CreateUser...)
// in us-east-1 and decodes the XML reply into out (nil: ignore it).
func (s *Server) Query(t testing.TB, keys Keys, service string, params url.Values, out any) {
	t.Helper()
	b := s.do(t, keys, "us-east-1", service, []byte(params.Encode()), http.Header{
		"Content-Type": {"application/x-www-form-urlencoded; charset=utf-8"},
	})
	if out != nil {
		if err := xml.Unmarshal(b, out); err != nil {
			t.Fatalf("%s: decode reply: %v", params.Get("Action"), err)
		}
	}
}

func (s *Server) do(t testing.TB, keys Keys, region, service string, body []byte, h http.Header) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: keys.AccessKeyID, SecretAccessKey: keys.SecretAccessKey}
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), service, region, time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("moto %s: %v", service, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("moto %s %s: HTTP %d: %s", service, h.Get("X-Amz-Target")+string(body[:min(len(body), 80)]), resp.StatusCode, b)
	}
	return b
}

// CreateSecret stores a secret string and returns its ARN.
func (s *Server) CreateSecret(t testing.TB, region, name, value string) string {
	t.Helper()
	var out struct{ ARN string }
	s.JSON(t, DefaultKeys, region, "secretsmanager", "secretsmanager.CreateSecret",
		map[string]string{"Name": name, "SecretString": value}, &out)
	if out.ARN == "" {
		t.Fatalf("CreateSecret %s: no ARN in the reply", name)
	}
	return out.ARN
}

// PutSecretValue makes value the secret's current version (a rotation).
func (s *Server) PutSecretValue(t testing.TB, region, arn, value string) {
	t.Helper()
	s.JSON(t, DefaultKeys, region, "secretsmanager", "secretsmanager.PutSecretValue",
		map[string]string{"SecretId": arn, "SecretString": value}, nil)
}

// PutParameter stores an SSM parameter of type typ (String or
// SecureString), overwriting any.
func (s *Server) PutParameter(t testing.TB, region, name, typ, value string) {
	t.Helper()
	s.JSON(t, DefaultKeys, region, "ssm", "AmazonSSM.PutParameter",
		map[string]any{"Name": name, "Type": typ, "Value": value, "Overwrite": true}, nil)
}

// CreateUser creates an IAM user with an access key and, if policy is not
// empty, that inline policy document, and returns its keys.
func (s *Server) CreateUser(t testing.TB, name, policy string) Keys {
	t.Helper()
	s.Query(t, DefaultKeys, "iam", url.Values{"Action": {"CreateUser"}, "UserName": {name}, "Version": {"2010-05-08"}}, nil)
	var out struct {
		Key struct {
			AccessKeyID     string `xml:"AccessKeyId"`
			SecretAccessKey string `xml:"SecretAccessKey"`
		} `xml:"CreateAccessKeyResult>AccessKey"`
	}
	s.Query(t, DefaultKeys, "iam", url.Values{"Action": {"CreateAccessKey"}, "UserName": {name}, "Version": {"2010-05-08"}}, &out)
	if policy != "" {
		s.Query(t, DefaultKeys, "iam", url.Values{"Action": {"PutUserPolicy"}, "UserName": {name}, "PolicyName": {"p"},
			"PolicyDocument": {policy}, "Version": {"2010-05-08"}}, nil)
	}
	if out.Key.AccessKeyID == "" {
		t.Fatal(fmt.Sprintf("CreateAccessKey %s: no key in the reply", name))
	}
	return Keys{out.Key.AccessKeyID, out.Key.SecretAccessKey}
}
