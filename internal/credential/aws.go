package credential

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// Both services speak the same protocol (AWS JSON 1.1): a signed POST to
// "/" naming the operation in X-Amz-Target, a JSON body, and errors as a
// JSON object whose __type is the error code. So one small client does
// both, signed with the SDK's SigV4 signer; the full SDK clients would add
// several MB to the binary for two calls (see the package's tests and the
// README's "What it costs").

// service describes one AWS service this package calls.
type service struct {
	signingName string // SigV4 service name
	host        string // endpoint host prefix: <host>.<region>.amazonaws.com
	target      string // X-Amz-Target prefix of its operations
	endpointEnv string // the per-service endpoint variable, as the SDKs name it
}

var (
	secretsManager = service{"secretsmanager", "secretsmanager", "secretsmanager.", "AWS_ENDPOINT_URL_SECRETS_MANAGER"}
	ssm            = service{"ssm", "ssm", "AmazonSSM.", "AWS_ENDPOINT_URL_SSM"}
)

// maxReply bounds what is read of a reply: a secret is at most 64 KiB
// (Secrets Manager) or 8 KiB (SSM advanced), plus the JSON around it.
const maxReply = 256 << 10

// awsClient calls one operation of a service with the role's credentials.
type awsClient struct {
	hc       *http.Client
	creds    *roleCredentials
	region   string
	endpoint string // base URL, no trailing "/"
	svc      service
	signer   *v4.Signer
}

// awsError is an error reply: the code (without its namespace) and
// message, and the HTTP status.
type awsError struct {
	Status  int
	Code    string
	Message string
}

func (e *awsError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("%s (HTTP %d)", e.Code, e.Status)
	}
	return fmt.Sprintf("%s: %s (HTTP %d)", e.Code, e.Message, e.Status)
}

// call posts in as the JSON body of operation op and decodes the reply
// into out. A non-2xx reply is an *awsError; anything else that fails is a
// network or protocol error.
func (c *awsClient) call(ctx context.Context, op string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint+"/", bytes.NewReader(body))
	if err != nil {
		return err
	}
	// The target names the operation; the content type is what AWS JSON
	// 1.1 services require (they refuse plain application/json).
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", c.svc.target+op)
	req.Header.Set("User-Agent", "o2-extension")
	// SigV4 signs the body's hash; with a session token (always, for a
	// Lambda role) the signer also sets X-Amz-Security-Token.
	creds, err := c.creds.get(ctx)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(body)
	if err := c.signer.SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), c.svc.signingName, c.region, time.Now()); err != nil {
		return fmt.Errorf("sign request: %w", err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxReply))
	if err != nil {
		return fmt.Errorf("read reply: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return parseAWSError(resp, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		// The reply holds the secret: never quote it, nor json's message
		// (which quotes characters of it).
		return errors.New("the reply is not the JSON AWS sends")
	}
	return nil
}

// parseAWSError reads an AWS JSON 1.1 error reply (which never holds the
// secret's value). The code is in X-Amzn-ErrorType or __type, possibly as
// "namespace#Code" or "Code:http://...".
func parseAWSError(resp *http.Response, b []byte) *awsError {
	var j struct {
		Type     string `json:"__type"`
		Message  string `json:"message"`
		Message2 string `json:"Message"`
	}
	if json.Unmarshal(b, &j) != nil {
		// Some front ends (and moto's IAM enforcement) answer in the
		// query protocol's XML instead.
		var x struct {
			Code    string `xml:"Errors>Error>Code"`
			Message string `xml:"Errors>Error>Message"`
		}
		if xml.Unmarshal(b, &x) == nil {
			j.Type, j.Message = x.Code, x.Message
		}
	}
	code := resp.Header.Get("X-Amzn-ErrorType")
	if code == "" {
		code = j.Type
	}
	if i := strings.LastIndexByte(code, '#'); i >= 0 {
		code = code[i+1:]
	}
	if i := strings.IndexByte(code, ':'); i >= 0 {
		code = code[:i]
	}
	if code == "" {
		code = http.StatusText(resp.StatusCode)
	}
	msg := j.Message
	if msg == "" {
		msg = j.Message2
	}
	msg = strings.Join(strings.Fields(msg), " ")
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	return &awsError{Status: resp.StatusCode, Code: code, Message: strings.ToValidUTF8(msg, "\uFFFD")}
}

// endpointFor returns the base URL of svc in region: the per-service
// variable, else AWS_ENDPOINT_URL, else the public regional endpoint, as
// the AWS SDKs resolve it.
func endpointFor(svc service, region string, getenv func(string) string) string {
	for _, k := range []string{svc.endpointEnv, "AWS_ENDPOINT_URL"} {
		if v := strings.TrimSpace(getenv(k)); v != "" {
			return strings.TrimRight(v, "/")
		}
	}
	suffix := "amazonaws.com"
	if strings.HasPrefix(region, "cn-") {
		suffix = "amazonaws.com.cn"
	}
	return "https://" + svc.host + "." + region + "." + suffix
}

// classify turns a failed call into an *Error for source, with what to do.
// action is the IAM action the role needs; region the one called; home the
// function's own region (AWS_REGION), for the wrong-region hint.
func classify(err error, source, action, resource, region, home string) *Error {
	ae, ok := errors.AsType[*awsError](err)
	if !ok {
		// No reply: a network error or timeout, retried, unless the host
		// does not exist, which no retry fixes (a region that is not one,
		// or a mistyped endpoint).
		if dns, ok := errors.AsType[*net.DNSError](err); ok && dns.IsNotFound {
			return &Error{Kind: Misconfigured, Source: source, Err: err,
				Msg: fmt.Sprintf("the endpoint for region %s does not resolve: check the region (and AWS_ENDPOINT_URL if set)", region)}
		}
		return &Error{Kind: Transient, Source: source, Msg: "the call failed; retrying", Err: err}
	}
	notFound := func(what string) *Error {
		msg := fmt.Sprintf("%s not found in region %s", what, region)
		if home != "" && home != region {
			msg += fmt.Sprintf(" (the function runs in %s): check the region in the ARN", home)
		} else {
			msg += ": check the name, and that it exists in this region and account"
		}
		return &Error{Kind: NotFound, Source: source, Msg: msg, Err: ae}
	}
	// Codes first: they are what both services document. Only what no
	// change on the user's side can fix is transient; an unknown 4xx is
	// taken as permanent, so that it is reported once instead of retried
	// for the sandbox's whole life.
	switch ae.Code {
	case "AccessDeniedException", "AccessDenied":
		msg := fmt.Sprintf("access denied: grant %s on %s to the function's role", action, resource)
		if strings.HasPrefix(action, "ssm:") {
			msg += " (and kms:Decrypt on the parameter's KMS key, for a SecureString)"
		}
		// SSM reports a key the role may not use as AccessDenied too, with
		// KMS in the message.
		if strings.Contains(strings.ToLower(ae.Message), "kms") {
			msg = fmt.Sprintf("access denied by KMS: grant kms:Decrypt on the key that encrypts %s to the function's role", resource)
		}
		return &Error{Kind: Denied, Source: source, Msg: msg, Err: ae}
	case "DecryptionFailure", "KMSAccessDeniedException", "KMSDisabledException", "KMSInvalidStateException", "KMSNotFoundException", "InvalidKeyId":
		return &Error{Kind: Denied, Source: source, Err: ae,
			Msg: "cannot decrypt it: grant kms:Decrypt on its KMS key to the function's role, and check that the key is enabled"}
	case "ResourceNotFoundException":
		return notFound("secret")
	case "ParameterNotFound", "ParameterVersionNotFound":
		return notFound("parameter")
	case "UnrecognizedClientException", "InvalidClientTokenId", "InvalidSignatureException", "IncompleteSignature",
		"ExpiredTokenException", "MissingAuthenticationToken", "SignatureDoesNotMatch":
		return &Error{Kind: Misconfigured, Source: source, Err: ae,
			Msg: "AWS refused the role's credentials: check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN (Lambda sets them)"}
	case "ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded",
		"InternalServiceError", "InternalServerError", "InternalFailure", "ServiceUnavailable":
		return &Error{Kind: Transient, Source: source, Msg: "AWS is busy; retrying", Err: ae}
	}
	if ae.Status >= 500 || ae.Status == http.StatusTooManyRequests {
		return &Error{Kind: Transient, Source: source, Msg: "AWS failed; retrying", Err: ae}
	}
	return &Error{Kind: Misconfigured, Source: source, Msg: "AWS refused the request", Err: ae}
}
