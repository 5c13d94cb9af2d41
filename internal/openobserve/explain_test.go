package openobserve_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/o2-extension/o2-extension/internal/openobserve"
)

// transportErr wraps err the way http.Client does.
func transportErr(err error) error {
	return fmt.Errorf("openobserve: send 3 records: %w", &url.Error{Op: "Post", URL: "https://o2.example.com/api/default/lambda/_json", Err: err})
}

func TestExplain(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string // prefix
	}{
		{"nil", nil, "ok"},
		{"401", &openobserve.StatusError{Code: 401, Message: "Unauthorized Access"}, "wrong credentials or organization: check O2_AUTHORIZATION_HEADER (Basic base64(email:token)) and O2_ORGANIZATION_ID"},
		{"403", &openobserve.StatusError{Code: 403}, "forbidden"},
		{"404", fmt.Errorf("wrapped: %w", &openobserve.StatusError{Code: 404, Message: "Organization not found"}), "unknown organization: check O2_ORGANIZATION_ID"},
		{"400", &openobserve.StatusError{Code: 400, Message: "Stream name is empty"}, "request refused"},
		{"413", &openobserve.StatusError{Code: 413}, "batch too large"},
		{"429", &openobserve.StatusError{Code: 429}, "rate limited"},
		{"503", &openobserve.StatusError{Code: 503, Message: "Error# memtable full"}, "server error (HTTP 503)"},
		{"301", &openobserve.StatusError{Code: 301, Message: "redirect to https://x"}, "redirected"},
		{"DNS", transportErr(&net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Name: "o2.example.com", Err: "no such host", IsNotFound: true}}), "unreachable: cannot resolve host o2.example.com"},
		{"refused", transportErr(&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}), "unreachable: connection refused"},
		{"other network", transportErr(&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ENETUNREACH)}), "unreachable: "},
		{"unknown CA", transportErr(x509.UnknownAuthorityError{}), "TLS certificate not trusted: "},
		{"wrong host", transportErr(x509.HostnameError{Certificate: &x509.Certificate{}, Host: "o2.example.com"}), "TLS certificate not trusted: "},
		{"deadline", transportErr(context.DeadlineExceeded), "timed out"},
		{"i/o timeout", transportErr(&net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}), "timed out"},
		{"cancelled", context.Canceled, "cancelled"},
		{"bad scheme", transportErr(errors.New(`unsupported protocol scheme "ftp"`)), "bad endpoint"},
		{"rejected", fmt.Errorf("%w: Too old data", openobserve.ErrRejected), "record not stored"},
		{"not OpenObserve", fmt.Errorf("%w: <html>", openobserve.ErrUnexpectedReply), "not OpenObserve"},
		{"unknown", errors.New("something odd"), "failed: something odd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := openobserve.Explain(tt.err); !strings.HasPrefix(got, tt.want) {
				t.Errorf("Explain = %q, want prefix %q", got, tt.want)
			}
		})
	}
}

func TestClassification(t *testing.T) {
	tests := []struct {
		err             error
		permanent, auth bool
	}{
		{&openobserve.StatusError{Code: 400}, true, false},
		{&openobserve.StatusError{Code: 401}, false, true},
		{&openobserve.StatusError{Code: 403}, false, true},
		{fmt.Errorf("x: %w", &openobserve.StatusError{Code: 404}), false, true},
		{&openobserve.StatusError{Code: 413}, false, false},
		{&openobserve.StatusError{Code: 429}, false, false},
		{&openobserve.StatusError{Code: 500}, false, false},
		{&openobserve.StatusError{Code: 503}, false, false},
		{transportErr(context.DeadlineExceeded), false, false},
		{errors.New("connection reset"), false, false},
		{nil, false, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.err), func(t *testing.T) {
			if got := openobserve.IsPermanent(tt.err); got != tt.permanent {
				t.Errorf("IsPermanent = %v, want %v", got, tt.permanent)
			}
			if got := openobserve.IsAuth(tt.err); got != tt.auth {
				t.Errorf("IsAuth = %v, want %v", got, tt.auth)
			}
		})
	}
}
