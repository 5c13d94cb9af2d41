package credential

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// roleCredentials are the function role's AWS credentials that sign the
// calls: the variables Lambda sets (AWS_ACCESS_KEY_ID, ...), or, where it
// offers container credentials instead (SnapStart does: a snapshot must not
// carry keys that expire), those fetched from AWS_CONTAINER_CREDENTIALS_FULL_URI
// and kept until shortly before they expire. Like the AWS SDKs, the
// variables come first.
type roleCredentials struct {
	static aws.Credentials
	// uri, token and tokenFile are the container credentials endpoint and
	// the Authorization value it wants (or the file holding it); uri is ""
	// when the variables are used.
	uri, token, tokenFile string
	hc                    *http.Client
	source                string // for messages

	mu     sync.Mutex
	cached aws.Credentials
}

// refreshBefore is how long before their expiry container credentials are
// fetched again, so that a call never goes out with keys about to lapse.
const refreshBefore = 5 * time.Minute

// get returns credentials to sign a call with, fetching container
// credentials when there are none or they are about to expire. A failure
// is an *Error.
func (r *roleCredentials) get(ctx context.Context) (aws.Credentials, error) {
	if r.uri == "" {
		return r.static, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.cached; c.AccessKeyID != "" && (!c.CanExpire || time.Until(c.Expires) > refreshBefore) {
		return c, nil
	}
	fail := func(kind Kind, msg string, err error) (aws.Credentials, error) {
		return aws.Credentials{}, &Error{Kind: kind, Source: r.source, Msg: msg, Err: err}
	}
	token := r.token
	if r.tokenFile != "" {
		b, err := os.ReadFile(r.tokenFile)
		if err != nil {
			return fail(Misconfigured, "cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", err)
		}
		token = strings.TrimSpace(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.uri, nil)
	if err != nil {
		return fail(Misconfigured, "AWS_CONTAINER_CREDENTIALS_FULL_URI is not a URL", nil)
	}
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return fail(Transient, "getting the role's credentials from AWS_CONTAINER_CREDENTIALS_FULL_URI failed; retrying", err)
	}
	defer resp.Body.Close()
	// The body holds keys: it is never quoted, not even when it is an error.
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch {
	case err != nil || resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return fail(Transient, fmt.Sprintf("the container credentials endpoint failed (HTTP %d); retrying", resp.StatusCode), err)
	case resp.StatusCode != http.StatusOK:
		return fail(Misconfigured, fmt.Sprintf("the container credentials endpoint refused (HTTP %d): check AWS_CONTAINER_AUTHORIZATION_TOKEN", resp.StatusCode), nil)
	}
	var j struct {
		AccessKeyID     string `json:"AccessKeyId"`
		SecretAccessKey string
		Token           string
		Expiration      time.Time
	}
	if json.Unmarshal(b, &j) != nil || j.AccessKeyID == "" || j.SecretAccessKey == "" {
		return fail(Misconfigured, "the container credentials endpoint answered without credentials", nil)
	}
	r.cached = aws.Credentials{AccessKeyID: j.AccessKeyID, SecretAccessKey: j.SecretAccessKey, SessionToken: j.Token,
		CanExpire: !j.Expiration.IsZero(), Expires: j.Expiration}
	return r.cached, nil
}
