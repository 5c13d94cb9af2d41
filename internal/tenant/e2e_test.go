package tenant_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/o2-extension/o2-extension/internal/lambdatest"
	"github.com/o2-extension/o2-extension/internal/telemetry"
	"github.com/o2-extension/o2-extension/internal/tenant"
)

// lockedBuffer is an io.Writer safe to read from the test goroutine while
// the listener's goroutine writes EMF lines to it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestEndToEnd runs the real telemetry listener, with a Tracker on its
// OnEvent hook, as an extension inside the emulated platform: each
// invocation logs a tenant mark, the sandbox freezes after every
// invocation (so each platform.report is delivered only at the next thaw),
// and the last report arrives during SHUTDOWN. Every request must end up
// with exactly one record carrying the memory of its own report.
func TestEndToEnd(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) { runEndToEnd(t, format) })
	}
}

func runEndToEnd(t *testing.T, format string) {
	const invocations = 4
	ctx := t.Context()
	p, err := lambdatest.Start(ctx, lambdatest.Options{LogFormat: format, MemoryMB: 256})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })

	var emf lockedBuffer
	tr := tenant.New(tenant.Options{EMF: true, EMFOut: &emf})
	var (
		mu      sync.Mutex
		records []telemetry.Event
	)
	// Request ids of the reports the listener decoded, in order: the
	// extension below waits on it at SHUTDOWN, as the real one does.
	reports := make(chan string, 4*invocations)
	l, err := telemetry.Listen(telemetry.ListenerOptions{
		Addr: "127.0.0.1:0",
		OnEvent: func(e *telemetry.Event) {
			out := tr.Observe(e, time.Now())
			mu.Lock()
			records = append(records, out...)
			mu.Unlock()
			if e.Type == "platform.report" {
				reports <- e.RequestID
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close(context.Background()) })

	api := "http://" + p.URL()
	id := register(t, api)
	subscribe(t, api, id, l.Addr().Port)

	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // runs before the Close calls above
	wg.Go(func() { runExtension(ctx, t, p, api, id, reports) })

	ids := make([]string, invocations)
	for i := range ids {
		ids[i] = fmt.Sprintf("00000000-0000-4000-8000-%012d", i+1)
		mark := fmt.Sprintf(`{"message":"customer-memory-report","customerId":"tenant-%d"}`, i)
		if format == "text" && i%2 == 1 {
			// Node.js's console.log prefix in the text format.
			mark = "2025-06-01T08:00:00.000Z\t" + ids[i] + "\tINFO\t" + mark
		}
		inv := lambdatest.Invocation{
			RequestID: ids[i],
			Lines:     []string{"working on order " + fmt.Sprint(i), mark, "done"},
			Duration:  5 * time.Millisecond,
		}
		if _, err := p.Invoke(ctx, inv); err != nil {
			t.Fatalf("invoke %d: %v", i, err)
		}
		// The report of this invocation was produced as the sandbox
		// froze: it cannot have reached the tracker yet.
		if m := tr.Stats().Matched; m > uint64(i) {
			t.Fatalf("after invoke %d: %d records, want at most %d (report delivered before the thaw?)", i, m, i)
		}
	}
	res, err := p.Shutdown(ctx, "spindown")
	if err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if !res.DeadlineMet {
		t.Errorf("shutdown took %v, past the deadline", res.Duration)
	}
	wg.Wait()
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// What the platform reported per request, to compare with.
	wantMem := map[string]float64{}
	for _, ev := range p.Events() {
		if ev.Type != "platform.report" {
			continue
		}
		var r struct {
			RequestID string `json:"requestId"`
			Metrics   struct {
				MaxMemoryUsedMB float64 `json:"maxMemoryUsedMB"`
			} `json:"metrics"`
		}
		if err := json.Unmarshal(ev.Record, &r); err != nil {
			t.Fatal(err)
		}
		wantMem[r.RequestID] = r.Metrics.MaxMemoryUsedMB
	}

	mu.Lock()
	defer mu.Unlock()
	got := map[string]map[string]any{}
	for _, ev := range records {
		r, m := decodeRecord(t, ev, "customerId")
		if _, dup := got[r.RequestID]; dup {
			t.Errorf("two records for %s", r.RequestID)
		}
		got[r.RequestID] = m
	}
	for i, reqID := range ids {
		m, ok := got[reqID]
		if !ok {
			t.Errorf("invocation %d (%s): no record", i, reqID)
			continue
		}
		want, ok := wantMem[reqID]
		if !ok {
			t.Fatalf("the platform reported nothing for %s", reqID)
		}
		if m["customerId"] != fmt.Sprintf("tenant-%d", i) || m["memoryUsage"] != want || m["memorySizeMB"] != 256.0 {
			t.Errorf("invocation %d: record %v, want tenant-%d, memoryUsage %v, memorySizeMB 256", i, m, i, want)
		}
	}
	if len(records) != invocations {
		t.Errorf("%d records, want %d", len(records), invocations)
	}
	if s := tr.Stats(); s != (tenant.Stats{Marks: invocations, Matched: invocations}) {
		t.Errorf("Stats() = %+v", s)
	}
	lines := strings.Split(strings.TrimSuffix(emf.String(), "\n"), "\n")
	if len(lines) != invocations {
		t.Fatalf("%d EMF lines, want %d:\n%s", len(lines), invocations, emf.String())
	}
	for _, line := range lines {
		checkEMF(t, line, "CustomerMemoryReport", "CustomerMemoryUsage", "CustomerId")
	}
}

// register registers an in-process extension for INVOKE and SHUTDOWN and
// returns its identifier.
func register(t *testing.T, api string) string {
	t.Helper()
	return mustCall(t, http.MethodPost, api+"/2020-01-01/extension/register", `{"events":["INVOKE","SHUTDOWN"]}`,
		"Lambda-Extension-Name", "tenant-e2e").Get("Lambda-Extension-Identifier")
}

// subscribe subscribes the listener on port to platform and function
// events, with the shortest buffering so batches stay small.
func subscribe(t *testing.T, api, id string, port int) {
	t.Helper()
	body := fmt.Sprintf(`{"schemaVersion":"2022-12-13","types":["platform","function"],`+
		`"buffering":{"maxItems":1000,"maxBytes":262144,"timeoutMs":25},`+
		`"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:%d"}}`, port)
	mustCall(t, http.MethodPut, api+"/2022-07-01/telemetry", body,
		"Lambda-Extension-Identifier", id, "Content-Type", "application/json")
}

// mustCall sends body with the given header name/value pairs and fails the
// test unless the answer is 200; it returns the answer's header.
func mustCall(t *testing.T, method, url, body string, header ...string) http.Header {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s: %s %s", method, url, resp.Status, b)
	}
	return resp.Header
}

// runExtension is the lifecycle loop of the extension under test: /next
// at once after each INVOKE; at SHUTDOWN, wait (bounded by deadlineMs) for
// the last invocation's platform.report, then exit.
func runExtension(ctx context.Context, t *testing.T, p *lambdatest.Platform, api, id string, reports <-chan string) {
	defer p.ExtensionExited("tenant-e2e")
	var last string
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, api+"/2020-01-01/extension/event/next", nil)
		req.Header.Set("Lambda-Extension-Identifier", id)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				t.Errorf("next: %v", err)
			}
			return
		}
		var ev struct {
			EventType  string `json:"eventType"`
			RequestID  string `json:"requestId"`
			DeadlineMs int64  `json:"deadlineMs"`
		}
		err = json.NewDecoder(resp.Body).Decode(&ev)
		resp.Body.Close()
		if err != nil {
			if ctx.Err() == nil {
				t.Errorf("next: %s: %v", resp.Status, err)
			}
			return
		}
		switch ev.EventType {
		case "INVOKE":
			last = ev.RequestID
		case "SHUTDOWN":
			deadline := time.NewTimer(time.Until(time.UnixMilli(ev.DeadlineMs).Add(-200 * time.Millisecond)))
			defer deadline.Stop()
			for {
				select {
				case got := <-reports:
					if got == last {
						return
					}
				case <-deadline.C:
					t.Errorf("SHUTDOWN: the report of %s never arrived", last)
					return
				case <-ctx.Done():
					return
				}
			}
		}
	}
}
