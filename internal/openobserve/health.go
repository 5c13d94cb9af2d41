package openobserve

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/o2-extension/o2-extension/internal/telemetry"
)

// HealthCheckType is the event type of the record SendTestRecord writes.
const HealthCheckType = "o2-extension.healthcheck"

// The health-check calls make a single attempt each, without retries: they
// answer a person at a terminal (--health-check), who wants the first
// failure explained at once rather than after a minute of backoff.

// CheckHealthz calls GET HealthURL and expects 200. It shows that
// OpenObserve is up at the endpoint; it needs no credentials and checks none.
// It returns how long the call took.
func (c *Client) CheckHealthz(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	_, err := c.doOnce(ctx, http.MethodGet, c.o.HealthURL, nil)
	if se, ok := errors.AsType[*StatusError](err); ok {
		se.healthz = true
	}
	if err != nil {
		return time.Since(start), fmt.Errorf("openobserve: GET /healthz: %w", err)
	}
	return time.Since(start), nil
}

// ErrOrgUnknown reports that OpenObserve does not know the organization
// (404 "Organization not found" to the read-only check).
var ErrOrgUnknown = errors.New("openobserve: organization not found")

// ErrOrgCheckUnavailable reports that the server has no read-only route to
// check the organization with (an older OpenObserve, or not OpenObserve):
// whether the organization exists could not be told without a write.
var ErrOrgCheckUnavailable = errors.New("openobserve: no read-only check of the organization at this server")

// CheckOrganization asks OrgCheckURL (GET /api/{org}/_license, one of
// OpenObserve's Elasticsearch handshake routes): it writes nothing, takes
// the same credentials as ingestion (ingestion tokens included), and is
// not an ingestion write, so a missing organization is reported, 404
// "Organization not found", instead of being created for the root user as
// a POST would (src/api/common/src/auth/validator.rs lines 795-811 and
// src/common/src/meta/ingestion_routes.rs at fbab9b80). For a user other
// than root an unknown organization is 401, as for wrong credentials: the
// user is looked up in it.
func (c *Client) CheckOrganization(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	reply, err := c.doOnce(ctx, http.MethodGet, c.o.OrgCheckURL, nil)
	d := time.Since(start)
	if se, ok := errors.AsType[*StatusError](err); ok {
		switch {
		case se.Code == http.StatusNotFound && strings.Contains(se.Message, "Organization not found"):
			return d, fmt.Errorf("%w: %w", ErrOrgUnknown, se)
		case se.Code == http.StatusNotFound, se.Code == http.StatusMethodNotAllowed:
			return d, fmt.Errorf("%w: %w", ErrOrgCheckUnavailable, se)
		}
	}
	if err != nil {
		return d, fmt.Errorf("openobserve: GET /api/{org}/_license: %w", err)
	}
	var r struct {
		Status string `json:"status"`
	}
	if json.Unmarshal(reply, &r) != nil || r.Status == "" {
		return d, fmt.Errorf("%w to GET /api/{org}/_license: %s", ErrUnexpectedReply, c.redact(snippet(reply)))
	}
	return d, nil
}

// CheckIngest posts an empty array to IngestURL. That needs valid
// credentials and writes no record; OpenObserve answers 200
// {"code":200,...}. For the root user it creates a missing organization:
// call it only once CheckOrganization found the organization. It returns how long the call took.
func (c *Client) CheckIngest(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	reply, err := c.doOnce(ctx, http.MethodPost, c.o.IngestURL, []byte("[]"))
	d := time.Since(start)
	if err != nil {
		return d, fmt.Errorf("openobserve: post empty batch: %w", err)
	}
	var r ingestReply
	if err := json.Unmarshal(reply, &r); err != nil || r.Code != http.StatusOK {
		return d, fmt.Errorf("%w to an empty batch: %s", ErrUnexpectedReply, c.redact(snippet(reply)))
	}
	return d, nil
}

// SendTestRecord writes one real record, of type "o2-extension.healthcheck"
// and time now, with the static fields, and checks that OpenObserve stored
// it. A record refused for its time (a skewed clock) or silently dropped
// (the column limit) is an error wrapping ErrRejected. It returns how long
// the call took.
func (c *Client) SendTestRecord(ctx context.Context, now time.Time) (time.Duration, error) {
	ev := telemetry.Event{
		Time:   now,
		Type:   HealthCheckType,
		Record: json.RawMessage(`"o2-extension health check"`),
	}
	buf, ends := c.enc.encodeAll([]telemetry.Event{ev}, nil)
	body := make([]byte, 0, len(buf)+2)
	body = append(append(append(body, '['), buf[:ends[0]]...), ']')

	start := time.Now()
	reply, err := c.doOnce(ctx, http.MethodPost, c.o.IngestURL, body)
	d := time.Since(start)
	if err != nil {
		return d, fmt.Errorf("openobserve: post test record: %w", err)
	}
	var r ingestReply
	if err := json.Unmarshal(reply, &r); err != nil || r.Status == nil {
		return d, fmt.Errorf("%w to the test record: %s", ErrUnexpectedReply, c.redact(snippet(reply)))
	}
	var res Result
	if err := c.readReply(reply, 1, &res); err != nil {
		if errors.Is(err, errStoredNothing) {
			return d, fmt.Errorf("%w: OpenObserve dropped it silently (column limit of the stream?)", ErrRejected)
		}
		return d, err
	}
	switch {
	case res.Failed > 0:
		return d, fmt.Errorf("%w: OpenObserve refused it: %s", ErrRejected, res.Error)
	case res.Missing > 0:
		return d, fmt.Errorf("%w: OpenObserve dropped it silently (column limit of the stream?)", ErrRejected)
	}
	return d, nil
}

// doOnce makes a single attempt and returns the 2xx reply's body, or a
// *StatusError.
func (c *Client) doOnce(ctx context.Context, method, url string, body []byte) ([]byte, error) {
	if url == "" {
		return nil, errors.New("no URL configured")
	}
	var rd io.Reader // an untyped nil for no body: a nil *bytes.Reader is not
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	auth, err := c.authorization(ctx)
	if err != nil {
		return nil, err
	}
	c.setHeaders(req.Header, auth, body != nil, false)
	resp, err := c.hc.Do(req)
	return c.finish(resp, err)
}
