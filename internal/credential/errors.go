package credential

import (
	"errors"
	"fmt"
)

// Kind says what went wrong with a fetch, and so whether trying again can
// help.
type Kind int

// The kinds of fetch failure. Only Transient is retried on its own; the
// others need the user to change something.
const (
	// Transient: throttling, a timeout, a network error or a 5xx. Retried
	// with backoff.
	Transient Kind = iota
	// Denied: the function's role may not read the secret (or decrypt it).
	Denied
	// NotFound: no such secret or parameter in that region.
	NotFound
	// BadValue: it was read but holds no usable Authorization value (JSON
	// without the key, empty, not a header value).
	BadValue
	// Misconfigured: no region, no AWS credentials in the environment, an
	// endpoint that does not resolve, or a request AWS refused as invalid.
	Misconfigured
)

// Error is a failed fetch. Its text names the source (ARN or parameter
// name) and what to do; it never holds the value, any part of it, or its
// length.
type Error struct {
	Kind Kind
	// Source is "Secrets Manager <ARN>" or "SSM parameter <name>".
	Source string
	// Msg says what happened and what to do.
	Msg string
	// Err is the underlying error, if any (network, AWS error code); never
	// one that could hold the value.
	Err error
}

func (e *Error) Error() string {
	s := fmt.Sprintf("credential from %s: %s", e.Source, e.Msg)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Permanent reports whether retrying the same fetch cannot help.
func (e *Error) Permanent() bool { return e.Kind != Transient }

// IsPermanent reports whether err is, or wraps, a fetch failure that needs
// the user to act (AccessDenied, not found, a value that is not a header):
// the extension then forwards nothing rather than keep data it can never
// send.
func IsPermanent(err error) bool {
	e, ok := errors.AsType[*Error](err)
	return ok && e.Permanent()
}
