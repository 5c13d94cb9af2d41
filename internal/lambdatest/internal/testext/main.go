// Command testext is a tiny Lambda extension for the lambdatest package's
// own tests: it registers, subscribes to the Telemetry API, writes what it
// receives to a file and calls /next. Environment variables (all optional)
// shape its behaviour:
//
//	TESTEXT_NAME              registration name (default: its file name)
//	TESTEXT_EVENTS            events to register for (default INVOKE,SHUTDOWN; "none")
//	TESTEXT_SUBSCRIBE         "0" to skip the subscription
//	TESTEXT_SCHEMA            schemaVersion (default 2022-12-13)
//	TESTEXT_TYPES             types (default platform,function,extension)
//	TESTEXT_MAXITEMS          buffering.maxItems (default 1000)
//	TESTEXT_TIMEOUTMS         buffering.timeoutMs (default 25)
//	TESTEXT_PORT              listener port (default: any free port)
//	TESTEXT_OUT               file that receives one line per fact
//	TESTEXT_WAIT_RUNTIMEDONE  "1": on INVOKE, wait for its platform.runtimeDone before /next
//	TESTEXT_IGNORE_SHUTDOWN   "1": ignore SIGTERM and SHUTDOWN, never exit
//	TESTEXT_INIT_ERROR        "1": call /extension/init/error after registering, then exit
//	TESTEXT_CRASH_INIT        "1": exit with code 3 after registering
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "testext:", err)
		os.Exit(1)
	}
}

// facts is the file the test reads back; one line per fact.
type facts struct {
	mu sync.Mutex
	f  *os.File
}

func (f *facts) log(format string, args ...any) {
	if f.f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	fmt.Fprintf(f.f, format+"\n", args...)
}

// state is what the listener learned, shared with the main loop.
type state struct {
	mu          sync.Mutex
	changed     chan struct{}
	runtimeDone map[string]bool
	reports     map[string]bool
}

func (s *state) note(typ, reqID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch typ {
	case "platform.runtimeDone":
		s.runtimeDone[reqID] = true
	case "platform.report":
		s.reports[reqID] = true
	default:
		return
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

// waitFor waits until has reports true or the deadline passes.
func (s *state) waitFor(has func() bool, deadline time.Time) bool {
	for {
		s.mu.Lock()
		ok, ch := has(), s.changed
		s.mu.Unlock()
		if ok {
			return true
		}
		d := time.Until(deadline)
		if d <= 0 {
			return false
		}
		t := time.NewTimer(d)
		select {
		case <-ch:
		case <-t.C:
		}
		t.Stop()
	}
}

func env(k, def string) string {
	if v, ok := os.LookupEnv(k); ok {
		return v
	}
	return def
}

func run() error {
	api := "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2020-01-01/extension"
	name := env("TESTEXT_NAME", filepath.Base(os.Args[0]))
	out := &facts{}
	if p := os.Getenv("TESTEXT_OUT"); p != "" {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		out.f = f
	}
	if os.Getenv("TESTEXT_IGNORE_SHUTDOWN") == "1" {
		signal.Ignore(syscall.SIGTERM)
	}
	out.log("ENV %s", strings.Join(os.Environ(), "|"))

	var events []string
	if ev := env("TESTEXT_EVENTS", "INVOKE,SHUTDOWN"); ev != "none" {
		events = strings.Split(ev, ",")
	}
	body, _ := json.Marshal(map[string]any{"events": events})
	req, _ := http.NewRequest(http.MethodPost, api+"/register", bytes.NewReader(body))
	req.Header.Set("Lambda-Extension-Name", name)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	reg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("register: %s %s", resp.Status, reg)
	}
	id := resp.Header.Get("Lambda-Extension-Identifier")
	out.log("REGISTER %s", id)
	fmt.Println("testext: registered", name)

	if os.Getenv("TESTEXT_CRASH_INIT") == "1" {
		os.Exit(3)
	}
	if os.Getenv("TESTEXT_INIT_ERROR") == "1" {
		req, _ := http.NewRequest(http.MethodPost, api+"/init/error", nil)
		req.Header.Set("Lambda-Extension-Identifier", id)
		req.Header.Set("Lambda-Extension-Function-Error-Type", "Extension.ConfigInvalid")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
		return fmt.Errorf("init error reported")
	}

	st := &state{changed: make(chan struct{}), runtimeDone: map[string]bool{}, reports: map[string]bool{}}
	if env("TESTEXT_SUBSCRIBE", "1") == "1" {
		if err := subscribe(id, out, st); err != nil {
			return err
		}
	}

	var lastReq string
	for {
		if lastReq != "" {
			out.log("NEXT %s", lastReq)
		}
		req, _ := http.NewRequest(http.MethodGet, api+"/event/next", nil)
		req.Header.Set("Lambda-Extension-Identifier", id)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var ev struct {
			EventType      string `json:"eventType"`
			RequestID      string `json:"requestId"`
			DeadlineMs     int64  `json:"deadlineMs"`
			ShutdownReason string `json:"shutdownReason"`
		}
		if err := json.Unmarshal(b, &ev); err != nil {
			return fmt.Errorf("next: %s: %w", b, err)
		}
		switch ev.EventType {
		case "INVOKE":
			lastReq = ev.RequestID
			out.log("INVOKE %s %d %s", ev.RequestID, ev.DeadlineMs, resp.Header.Get("Lambda-Extension-Event-Identifier"))
			fmt.Println("testext: invoke", ev.RequestID)
			if os.Getenv("TESTEXT_WAIT_RUNTIMEDONE") == "1" {
				rid := ev.RequestID
				st.waitFor(func() bool { return st.runtimeDone[rid] },
					time.UnixMilli(ev.DeadlineMs).Add(-200*time.Millisecond))
			}
		case "SHUTDOWN":
			out.log("SHUTDOWN %s %d", ev.ShutdownReason, ev.DeadlineMs)
			fmt.Println("testext: shutdown", ev.ShutdownReason)
			if os.Getenv("TESTEXT_IGNORE_SHUTDOWN") == "1" {
				select {} // never exits: the platform must SIGKILL it
			}
			// Wait for the last invocation's report, which the platform
			// delivers only after the thaw.
			if lastReq != "" {
				rid := lastReq
				got := st.waitFor(func() bool { return st.reports[rid] },
					time.UnixMilli(ev.DeadlineMs).Add(-500*time.Millisecond))
				out.log("LASTREPORT %v", got)
			}
			out.log("EXIT")
			return nil
		default:
			return fmt.Errorf("unexpected event %s", b)
		}
	}
}

// subscribe starts the telemetry listener and subscribes to it.
func subscribe(id string, out *facts, st *state) error {
	ln, err := net.Listen("tcp", "127.0.0.1:"+env("TESTEXT_PORT", "0"))
	if err != nil {
		return err
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var evs []struct {
			Type   string          `json:"type"`
			Record json.RawMessage `json:"record"`
		}
		if err := json.Unmarshal(b, &evs); err != nil {
			out.log("BADBATCH %v", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		out.log("BATCH %d", len(evs))
		for _, ev := range evs {
			var m struct {
				RequestID string `json:"requestId"`
				Message   string `json:"message"`
			}
			var s string
			isString := json.Unmarshal(ev.Record, &s) == nil
			if !isString {
				_ = json.Unmarshal(ev.Record, &m)
				s = m.Message
			}
			switch ev.Type {
			case "function":
				out.log("FUNC %v %s", isString, s)
			case "extension":
				out.log("EXT %s", s)
			default:
				out.log("EVENT %s %s", ev.Type, m.RequestID)
				st.note(ev.Type, m.RequestID)
			}
		}
		w.WriteHeader(http.StatusOK)
	})}
	go func() { _ = srv.Serve(ln) }() // lives until the process exits
	port := ln.Addr().(*net.TCPAddr).Port

	maxItems, _ := strconv.Atoi(env("TESTEXT_MAXITEMS", "1000"))
	timeoutMs, _ := strconv.Atoi(env("TESTEXT_TIMEOUTMS", "25"))
	body, _ := json.Marshal(map[string]any{
		"schemaVersion": env("TESTEXT_SCHEMA", "2022-12-13"),
		"types":         strings.Split(env("TESTEXT_TYPES", "platform,function,extension"), ","),
		"buffering":     map[string]int{"maxItems": maxItems, "maxBytes": 262144, "timeoutMs": timeoutMs},
		"destination":   map[string]string{"protocol": "HTTP", "URI": fmt.Sprintf("http://sandbox.localdomain:%d/telemetry", port)},
	})
	api := "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2022-07-01/telemetry"
	req, _ := http.NewRequest(http.MethodPut, api, bytes.NewReader(body))
	req.Header.Set("Lambda-Extension-Identifier", id)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	out.log("SUBSCRIBE %d %s", resp.StatusCode, b)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("subscribe: %s %s", resp.Status, b)
	}
	return nil
}
