package openobserve

import (
	"context"
	"errors"
)

// Credential supplies the Authorization header value when it does not come
// from the configuration in plain text (a Secrets Manager secret, an SSM
// parameter). The client asks for it before every request, so a rotated
// value is used at once; the value is a secret and never appears in errors
// or logs.
type Credential interface {
	// Authorization returns the current header value. Until a first value
	// has been fetched it waits, until ctx ends; then it returns ctx's
	// error or the fetch's (which names the source, never the value).
	// With a ctx that has already ended it returns the current value at
	// once, if there is one.
	Authorization(ctx context.Context) (string, error)
	// Refused reports that OpenObserve answered 401 to value. The source
	// may fetch the value again (rate-limited by the source); it must not
	// block.
	Refused(value string)
}

// ErrNoCredential reports that the Credential can give no value at all
// (its error has a Permanent method that says so: access denied, no such
// secret): nothing can be sent, so the data is not kept for it.
var ErrNoCredential = errors.New("openobserve: no credential can be had")

// staticCredential is Options.Authorization as a Credential.
type staticCredential string

func (s staticCredential) Authorization(context.Context) (string, error) { return string(s), nil }
func (staticCredential) Refused(string)                                  {}
