package lambdatest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Headers of the Extensions API.
const (
	hdrName       = "Lambda-Extension-Name"
	hdrFeature    = "Lambda-Extension-Accept-Feature"
	hdrIdentifier = "Lambda-Extension-Identifier"
	hdrEventID    = "Lambda-Extension-Event-Identifier"
	hdrErrorType  = "Lambda-Extension-Function-Error-Type"
)

// routes mounts the Extensions API and the Telemetry API.
func (p *Platform) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /2020-01-01/extension/register", p.handleRegister)
	mux.HandleFunc("GET /2020-01-01/extension/event/next", p.handleNext)
	mux.HandleFunc("POST /2020-01-01/extension/init/error", p.handleError(true))
	mux.HandleFunc("POST /2020-01-01/extension/exit/error", p.handleError(false))
	mux.HandleFunc("PUT /2022-07-01/telemetry", p.handleSubscribe)
	return mux
}

// apiError is the JSON error body of every Lambda API.
type apiError struct {
	ErrorMessage string `json:"errorMessage,omitempty"`
	ErrorType    string `json:"errorType"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeError(w http.ResponseWriter, status int, errType, msg string) {
	writeJSON(w, status, apiError{ErrorMessage: msg, ErrorType: errType})
}

// handleRegister serves POST /extension/register (lambda-platform.md §1.1).
func (p *Platform) handleRegister(w http.ResponseWriter, r *http.Request) {
	name := r.Header.Get(hdrName)
	if name == "" {
		writeError(w, http.StatusForbidden, "Extension.InvalidExtensionName", "Empty extension name")
		return
	}
	// The only feature is accountId; unknown features are ignored, as
	// RAPID does.
	var accountID bool
	for f := range strings.SplitSeq(r.Header.Get(hdrFeature), ",") {
		if strings.TrimSpace(f) == "accountId" {
			accountID = true
		}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeError(w, http.StatusForbidden, "InvalidRequestFormat", err.Error())
		return
	}
	var req struct {
		Events            []string `json:"events"`
		ConfigurationKeys []string `json:"configurationKeys"`
	}
	// The body is optional: an extension may register for no events.
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			writeError(w, http.StatusForbidden, "InvalidRequestFormat", err.Error())
			return
		}
	}
	// RAPID rejects the long-deprecated configurationKeys.
	if len(req.ConfigurationKeys) > 0 {
		writeError(w, http.StatusForbidden, "InvalidRequestFormat",
			"configurationKeys are deprecated; use environment variables instead")
		return
	}

	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		writeError(w, http.StatusInternalServerError, "Sandbox.Closed", "environment closed")
		return
	}
	// An extension started from a file registers under the file's name; any
	// other name is an internal extension (started by the runtime). In
	// in-process mode every client stands for an external extension.
	var proc *process
	for _, pr := range p.procs {
		if pr.name == name && pr.ext == nil {
			proc = pr
		}
	}
	external := proc != nil || len(p.o.Extensions) == 0
	e := &extension{name: name, external: external, proc: proc, registeredAt: time.Now()}
	// Events are validated before the registration state, as in RAPID, so
	// a bad request reports its own fault even after init.
	for _, ev := range req.Events {
		var msg string
		switch {
		case ev != "INVOKE" && ev != "SHUTDOWN":
			msg = ev + ": unknown event type"
		case ev == "INVOKE" && p.o.ManagedInstances:
			msg = "INVOKE: not supported on Lambda Managed Instances"
		case ev == "SHUTDOWN" && !external:
			msg = "SHUTDOWN: internal extensions cannot register for SHUTDOWN"
		}
		if msg != "" {
			p.mu.Unlock()
			writeError(w, http.StatusForbidden, "Extension.InvalidEventType", msg)
			return
		}
		e.invoke = e.invoke || ev == "INVOKE"
		e.shutdown = e.shutdown || ev == "SHUTDOWN"
		if !slices.Contains(e.events, ev) {
			e.events = append(e.events, ev)
		}
	}
	var errType, msg string
	switch {
	// Registration closes when the runtime is ready (lambda-platform.md §1.4).
	case p.regClosed:
		errType, msg = "Extension.RegistrationClosed", "Extension registration closed already"
	case slices.ContainsFunc(p.exts, func(x *extension) bool { return x.name == name }):
		errType, msg = "Extension.InvalidExtensionState", "Extension with this name already registered"
	case len(p.exts) >= maxExtensions:
		errType, msg = "Extension.TooManyExtensions", fmt.Sprintf("Extension limit (%d) reached", maxExtensions)
	}
	if errType != "" {
		p.mu.Unlock()
		writeError(w, http.StatusForbidden, errType, msg)
		return
	}
	e.id = newUUID()
	if proc != nil {
		proc.ext = e
	}
	p.exts = append(p.exts, e)
	p.byID[e.id] = e
	p.broadcastLocked()
	p.mu.Unlock()

	resp := map[string]string{
		"functionName":    p.o.FunctionName,
		"functionVersion": p.o.FunctionVersion,
		"handler":         p.o.Handler,
	}
	if accountID {
		resp["accountId"] = p.o.AccountID
	}
	w.Header().Set(hdrIdentifier, e.id)
	writeJSON(w, http.StatusOK, resp)
}

// lookupLocked finds the caller by its identifier header, or writes the
// Extension.* 403 and returns nil. p.mu must be held.
func (p *Platform) lookupLocked(w http.ResponseWriter, r *http.Request) *extension {
	id := r.Header.Get(hdrIdentifier)
	var errType, msg string
	switch {
	case id == "":
		errType, msg = "Extension.MissingExtensionIdentifier", "Missing Lambda-Extension-Identifier header"
	case !isUUID(id):
		errType, msg = "Extension.InvalidExtensionIdentifier", "Invalid Lambda-Extension-Identifier"
	case p.byID[id] == nil:
		errType, msg = "Extension.UnknownExtensionIdentifier", "Unknown extension "+id
	case p.byID[id].failed != "":
		errType, msg = "Extension.InvalidExtensionState", "Extension reported an error and must exit"
	default:
		return p.byID[id]
	}
	writeError(w, http.StatusForbidden, errType, msg)
	return nil
}

// handleNext serves GET /extension/event/next: it marks the caller ready
// and blocks until an event for it is pending (lambda-platform.md §1.2).
func (p *Platform) handleNext(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	e := p.lookupLocked(w, r)
	if e == nil {
		p.mu.Unlock()
		return
	}
	// Calling /next is how Lambda learns an extension is done with its
	// last event: the invoke phase ends, or init does, when everyone has.
	now := time.Now()
	if e.gotShutdown && e.proc == nil && !e.exited {
		// An in-process extension has nothing to exit: asking for more
		// after SHUTDOWN is its way of saying it is done.
		e.exited, e.exitedAt = true, now
	}
	e.nextCalls++
	if e.nextCalls == 1 {
		e.firstNext = now
	}
	e.lastNext = now
	e.waiting = true
	p.broadcastLocked()
	// Block without a timeout, as Lambda does: the extension sets none
	// either (lambda-platform.md §1.2).
	for len(e.queue) == 0 {
		// A dropped connection means the extension is no longer waiting.
		if p.closed || r.Context().Err() != nil {
			e.waiting = false
			p.broadcastLocked()
			p.mu.Unlock()
			writeError(w, http.StatusInternalServerError, "Sandbox.Closed", "environment closed")
			return
		}
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-r.Context().Done():
		case <-p.done:
		}
		p.mu.Lock()
	}
	ev := e.queue[0]
	e.queue = e.queue[1:]
	e.waiting = false
	e.gotShutdown = e.gotShutdown || ev.shutdown
	p.broadcastLocked()
	p.mu.Unlock()

	if ev.eventID != "" {
		w.Header().Set(hdrEventID, ev.eventID)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(ev.body)
}

// handleError serves POST /extension/init/error and /extension/exit/error
// (lambda-platform.md §1.3). Afterwards every call of the extension fails.
func (p *Platform) handleError(initPhase bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		e := p.lookupLocked(w, r)
		if e == nil {
			p.mu.Unlock()
			return
		}
		errType := r.Header.Get(hdrErrorType)
		if errType == "" {
			p.mu.Unlock()
			writeError(w, http.StatusForbidden, "Extension.MissingHeader", "Missing "+hdrErrorType+" header")
			return
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
		// The value is kept as given; RAPID would replace a type not shaped
		// Extension.Xxx by a default, which tests would only find confusing.
		e.failed = errType
		what := "exit/error"
		if initPhase {
			what = "init/error"
		}
		// During init the failure ends init (CompleteInit sees e.failed);
		// later it is reported by the next Invoke.
		if p.initDone {
			p.failures = append(p.failures, fmt.Sprintf("extension %s called %s: %s", e.name, what, errType))
		}
		p.broadcastLocked()
		p.mu.Unlock()
		writeJSON(w, http.StatusAccepted, map[string]string{"status": "OK"})
	}
}

// handleSubscribe serves PUT /2022-07-01/telemetry (lambda-platform.md §2.1).
func (p *Platform) handleSubscribe(w http.ResponseWriter, r *http.Request) {
	if p.o.TelemetryNotSupported {
		// What the AWS Runtime Interface Emulator answers.
		writeJSON(w, http.StatusAccepted, apiError{ErrorMessage: "Telemetry API is not supported", ErrorType: "Telemetry.NotSupported"})
		return
	}
	// Identifier errors come first, then the closed subscription, then the
	// body: a stranger learns nothing about the subscription's state.
	p.mu.Lock()
	e := p.lookupLocked(w, r)
	closed := p.subClosed
	p.mu.Unlock()
	if e == nil {
		return
	}
	if closed {
		writeError(w, http.StatusForbidden, "Telemetry.SubscriptionClosed", "Telemetry API subscription is closed already")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeError(w, http.StatusBadRequest, "ValidationError", err.Error())
		return
	}
	sub, err := parseSubscription(body, p.o.ManagedInstances)
	if err != nil {
		writeError(w, http.StatusBadRequest, "ValidationError", err.Error())
		return
	}

	// Init may have ended while the body was read.
	p.mu.Lock()
	if p.subClosed || p.closed || e.exited {
		p.mu.Unlock()
		writeError(w, http.StatusForbidden, "Telemetry.SubscriptionClosed", "Telemetry API subscription is closed already")
		return
	}
	if e.sub != nil {
		e.sub.close() // a new subscription replaces the old one
	}
	s := newSubscriber(e.name, sub, p.client, p.o.MaxQueuedEvents, p.o.DeliveryRetries, p.o.RetryBackoff, p.recordEvent)
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	// Events generated so far in init are replayed to the new subscriber,
	// which is how platform.initStart reaches extensions that subscribe
	// after it.
	for _, ev := range p.events {
		s.offer(ev)
	}
	e.sub = s
	p.wg.Go(func() { s.run(ctx) })
	types := make([]string, 0, len(sub.types))
	for _, t := range []string{"platform", "function", "extension"} {
		if sub.types[t] {
			types = append(types, t)
		}
	}
	p.emitLocked("platform.telemetrySubscription", map[string]any{
		"name": e.name, "state": "Subscribed", "types": types,
	})
	p.mu.Unlock()
	writeJSON(w, http.StatusOK, "OK")
}

// Schema versions of the Telemetry API.
var schemaVersions = []string{"2022-07-01", "2022-12-13", "2025-01-29"}

// parseSubscription validates a subscription request body as Lambda does;
// its errors become 400 ValidationError.
func parseSubscription(body []byte, managed bool) (subscription, error) {
	var req struct {
		SchemaVersion string   `json:"schemaVersion"`
		Types         []string `json:"types"`
		Buffering     *struct {
			MaxItems  *int `json:"maxItems"`
			MaxBytes  *int `json:"maxBytes"`
			TimeoutMs *int `json:"timeoutMs"`
		} `json:"buffering"`
		Destination *struct {
			Protocol string `json:"protocol"`
			URI      string `json:"URI"`
		} `json:"destination"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return subscription{}, fmt.Errorf("invalid request body: %v", err)
	}
	sub := subscription{
		schema:   req.SchemaVersion,
		types:    map[string]bool{},
		maxItems: 10000,
		maxBytes: 262144,
		timeout:  time.Second,
	}
	switch {
	case req.SchemaVersion == "":
		return subscription{}, errors.New("schemaVersion is required")
	case !slices.Contains(schemaVersions, req.SchemaVersion):
		return subscription{}, fmt.Errorf("schemaVersion %q is not supported", req.SchemaVersion)
	case managed && req.SchemaVersion != "2025-01-29":
		return subscription{}, fmt.Errorf("schemaVersion %q is not supported on Lambda Managed Instances: use 2025-01-29", req.SchemaVersion)
	}
	if len(req.Types) == 0 {
		return subscription{}, errors.New("types must not be empty")
	}
	for _, t := range req.Types {
		if t != "platform" && t != "function" && t != "extension" {
			return subscription{}, fmt.Errorf("type %q is not one of platform, function, extension", t)
		}
		sub.types[t] = true
	}
	if b := req.Buffering; b != nil {
		for _, f := range []struct {
			name     string
			v        *int
			lo, hi   int
			assignTo func(int)
		}{
			{"maxItems", b.MaxItems, 1000, 10000, func(v int) { sub.maxItems = v }},
			{"maxBytes", b.MaxBytes, 262144, 1048576, func(v int) { sub.maxBytes = v }},
			{"timeoutMs", b.TimeoutMs, 25, 30000, func(v int) { sub.timeout = time.Duration(v) * time.Millisecond }},
		} {
			if f.v == nil {
				continue
			}
			if *f.v < f.lo || *f.v > f.hi {
				return subscription{}, fmt.Errorf("buffering.%s %d is out of range [%d, %d]", f.name, *f.v, f.lo, f.hi)
			}
			f.assignTo(*f.v)
		}
	}
	d := req.Destination
	if d == nil {
		return subscription{}, errors.New("destination is required")
	}
	// TCP (unacknowledged NDJSON) exists on Lambda but its destination
	// shape is unverified; refusing it beats emulating it wrongly.
	switch d.Protocol {
	case "HTTP":
	case "TCP":
		return subscription{}, errors.New("destination protocol TCP is not supported by this emulator")
	default:
		return subscription{}, fmt.Errorf("destination protocol %q is not HTTP", d.Protocol)
	}
	u, err := url.Parse(d.URI)
	if err != nil {
		return subscription{}, fmt.Errorf("destination URI: %v", err)
	}
	if u.Scheme != "http" {
		return subscription{}, fmt.Errorf("destination URI %q: scheme must be http", d.URI)
	}
	// Only the sandbox's own name is allowed; the emulator reaches it on
	// loopback.
	if h := u.Hostname(); h != "sandbox.localdomain" && h != "sandbox" {
		return subscription{}, fmt.Errorf("destination URI %q: host must be sandbox.localdomain", d.URI)
	}
	// Without a port the listener could only be on :80, which an extension
	// cannot bind; Lambda's examples always name one.
	port, err := strconv.Atoi(u.Port())
	if err != nil || port < 1 || port > 65535 {
		return subscription{}, fmt.Errorf("destination URI %q: a port is required", d.URI)
	}
	u.Host = "127.0.0.1:" + strconv.Itoa(port)
	sub.url = u.String()
	return sub, nil
}
