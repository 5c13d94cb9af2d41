package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// Schema versions of the Telemetry API.
const (
	// SchemaDefault keeps JSON-format logs as objects and is accepted by
	// every on-demand Lambda.
	SchemaDefault = "2022-12-13"
	// SchemaManagedInstances is the only version Lambda Managed Instances
	// accept.
	SchemaManagedInstances = "2025-01-29"
)

// ErrNotSupported is returned by Subscribe when the platform answers 202, as
// the AWS Runtime Interface Emulator does: the subscription is accepted but no
// event will ever be delivered.
var ErrNotSupported = errors.New("telemetry: subscription not supported by this platform (202)")

// Buffering is the Telemetry API's batching of deliveries to us.
type Buffering struct {
	MaxItems  int `json:"maxItems"`
	MaxBytes  int `json:"maxBytes"`
	TimeoutMs int `json:"timeoutMs"`
}

// LowLatency delivers events within 25 ms, the shortest Lambda allows, so an
// end-of-invocation flush sees platform.runtimeDone as soon as possible.
var LowLatency = Buffering{MaxItems: 1000, MaxBytes: 262144, TimeoutMs: 25}

// Subscription is the body of PUT /2022-07-01/telemetry.
type Subscription struct {
	SchemaVersion string      `json:"schemaVersion"`
	Types         []string    `json:"types"`
	Buffering     Buffering   `json:"buffering"`
	Destination   Destination `json:"destination"`
}

// Destination is where Lambda posts events.
type Destination struct {
	Protocol string `json:"protocol"`
	URI      string `json:"URI"`
}

// SubscribeError is a refusal from the Telemetry API.
type SubscribeError struct {
	Status  int
	Type    string // errorType, e.g. "ValidationError"
	Message string
}

func (e *SubscribeError) Error() string {
	s := "telemetry: subscribe answered " + strconv.Itoa(e.Status)
	if e.Type != "" {
		s += " " + e.Type
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Subscribe asks the Telemetry API at runtimeAPI (host:port) to deliver the
// given subscription to us, identified by extensionID.
func Subscribe(ctx context.Context, c *http.Client, runtimeAPI, extensionID string, s Subscription) error {
	body, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("telemetry: encode subscription: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+runtimeAPI+"/2022-07-01/telemetry", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("telemetry: subscribe: %w", err)
	}
	req.Header.Set("Lambda-Extension-Identifier", extensionID)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("telemetry: subscribe: %w", err)
	}
	defer resp.Body.Close()
	reply, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch {
	case resp.StatusCode == http.StatusOK:
		return nil
	case resp.StatusCode == http.StatusAccepted:
		return ErrNotSupported
	}
	var e struct {
		ErrorType    string `json:"errorType"`
		ErrorMessage string `json:"errorMessage"`
	}
	_ = json.Unmarshal(reply, &e)
	if e.ErrorType == "" && e.ErrorMessage == "" {
		e.ErrorMessage = string(bytes.TrimSpace(reply))
	}
	return &SubscribeError{Status: resp.StatusCode, Type: e.ErrorType, Message: e.ErrorMessage}
}
