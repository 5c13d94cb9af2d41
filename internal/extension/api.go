// Package extension runs the Lambda extension's lifecycle: it registers with
// the Extensions API, subscribes to the Telemetry API, cycles through
// INVOKE and SHUTDOWN events and decides when buffered telemetry is flushed.
package extension

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Event types of the Extensions API.
const (
	EventInvoke   = "INVOKE"
	EventShutdown = "SHUTDOWN"
)

// Event is what /extension/event/next returns.
type Event struct {
	EventType          string `json:"eventType"`
	DeadlineMs         int64  `json:"deadlineMs"`
	RequestID          string `json:"requestId"`
	InvokedFunctionArn string `json:"invokedFunctionArn"`
	ShutdownReason     string `json:"shutdownReason"`
}

// Registration is the reply to /extension/register.
type Registration struct {
	ID              string `json:"-"`
	FunctionName    string `json:"functionName"`
	FunctionVersion string `json:"functionVersion"`
	Handler         string `json:"handler"`
	AccountID       string `json:"accountId"`
}

// APIError is a non-2xx answer of the Extensions API.
type APIError struct {
	Op      string
	Status  int
	Type    string
	Message string
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("extensions api %s: %d", e.Op, e.Status)
	if e.Type != "" {
		s += " " + e.Type
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Client talks to the Extensions API. Its HTTP client has no timeout:
// /event/next blocks until Lambda has an event, which can be minutes.
type Client struct {
	base string
	hc   *http.Client
	id   string
}

// NewClient returns a client for the Extensions API at runtimeAPI (host:port,
// the value of AWS_LAMBDA_RUNTIME_API).
func NewClient(runtimeAPI string, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{}
	}
	return &Client{base: "http://" + runtimeAPI + "/2020-01-01/extension", hc: hc}
}

// ID is the extension identifier received at registration.
func (c *Client) ID() string { return c.id }

// Register registers the extension under name for the given events, asking
// for the account id.
func (c *Client) Register(ctx context.Context, name string, events []string) (Registration, error) {
	body, _ := json.Marshal(struct {
		Events []string `json:"events"`
	}{events})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/register", bytes.NewReader(body))
	if err != nil {
		return Registration{}, fmt.Errorf("register: %w", err)
	}
	req.Header.Set("Lambda-Extension-Name", name)
	req.Header.Set("Lambda-Extension-Accept-Feature", "accountId")
	req.Header.Set("Content-Type", "application/json")
	var reg Registration
	resp, err := c.do(req, "register", &reg)
	if err != nil {
		return Registration{}, err
	}
	reg.ID = resp.Header.Get("Lambda-Extension-Identifier")
	if reg.ID == "" {
		return Registration{}, &APIError{Op: "register", Status: resp.StatusCode, Message: "no Lambda-Extension-Identifier in the reply"}
	}
	c.id = reg.ID
	return reg, nil
}

// Next blocks until Lambda sends the next event.
func (c *Client) Next(ctx context.Context) (Event, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/event/next", nil)
	if err != nil {
		return Event{}, fmt.Errorf("next: %w", err)
	}
	req.Header.Set("Lambda-Extension-Identifier", c.id)
	var ev Event
	if _, err := c.do(req, "next", &ev); err != nil {
		return Event{}, err
	}
	return ev, nil
}

func (c *Client) do(req *http.Request, op string, into any) (*http.Response, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("extensions api %s: %w", op, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("extensions api %s: read reply: %w", op, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			ErrorType    string `json:"errorType"`
			ErrorMessage string `json:"errorMessage"`
		}
		_ = json.Unmarshal(body, &e)
		if e.ErrorType == "" && e.ErrorMessage == "" {
			e.ErrorMessage = strings.TrimSpace(string(body))
		}
		return nil, &APIError{Op: op, Status: resp.StatusCode, Type: e.ErrorType, Message: e.ErrorMessage}
	}
	if into != nil && len(body) > 0 {
		if err := json.Unmarshal(body, into); err != nil {
			return nil, fmt.Errorf("extensions api %s: decode reply: %w", op, err)
		}
	}
	return resp, nil
}
