// Package otlpreceiver is a local OTLP/HTTP receiver for the function's own
// OpenTelemetry SDK: it takes traces, metrics and logs on loopback and
// buffers them as telemetry events, delivered to OpenObserve like the rest.
package otlpreceiver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/o2-extension/o2-extension/internal/telemetry"
)

// The event types of what the receiver buffers; each event's Record is one
// protobuf-encoded Export…ServiceRequest. They are openobserve's
// TracesEventType, MetricsEventType and LogsEventType (a test keeps them
// equal), which the client posts to /v1/traces, /v1/metrics and /v1/logs.
const (
	TracesType  = "o2-extension.otlp.traces"
	MetricsType = "o2-extension.otlp.metrics"
	LogsType    = "o2-extension.otlp.logs"
)

// Defaults for zero Options fields.
const (
	// DefaultPort is OTLP/HTTP's standard port, where SDKs export unless
	// told otherwise.
	DefaultPort = 4318
	// DefaultMaxBody caps one request body after decompression. An SDK's
	// export is far smaller (the Go, Java and Python batch processors send
	// at most 512 spans a time, a few hundred KiB); the OpenTelemetry
	// Collector's default cap is 20 MiB, but in a Lambda sandbox every MiB
	// held is the function's memory. A body over the cap is refused whole
	// (400), before anything of it is decoded: decompression stops at the
	// cap, so a gzip bomb costs at most this much.
	DefaultMaxBody = 4 << 20
	// DefaultBodyTimeout bounds the reading of one body. An SDK in the same
	// sandbox sends even the largest body in milliseconds; one still
	// arriving after this long (or cut by a freeze of the sandbox, which
	// stops the clock of neither side) is answered 503, which OTLP clients
	// retry, instead of holding its goroutine.
	DefaultBodyTimeout = 10 * time.Second
	// DefaultMaxBatchBytes is the default bound of one event's Record: the
	// OpenObserve client's default MaxBatchBytes.
	DefaultMaxBatchBytes = 1 << 20
)

// maxConcurrent bounds the bodies read and decoded at once, so that memory
// stays bounded however many exporters post together: each holds at most
// MaxBody bytes plus its decoded form. An SDK exports each signal one
// request at a time, so three signals never wait for each other.
const maxConcurrent = 4

// admitWait is how long a request waits for one of the maxConcurrent
// slots before it is answered 503 (retried by OTLP clients).
const admitWait = 2 * time.Second

// Options configure a Receiver.
type Options struct {
	// Addr is the loopback host:port to bind, e.g. "127.0.0.1:4318"
	// ("127.0.0.1:0" for a free port). Anything but a loopback address is
	// refused: the receiver has no authentication, and only the function in
	// the same sandbox is meant to reach it.
	Addr string
	// Buffer receives the events; its bound (Cap) is the most one request
	// can have buffered.
	Buffer *telemetry.Buffer
	// MaxBatchBytes bounds each event's Record: the OpenObserve client's
	// MaxBatchBytes, so that no request it makes is over its bound. A
	// larger body is split (see split.go). 0 means DefaultMaxBatchBytes.
	MaxBatchBytes int
	// MaxBody caps a body after decompression; 0 means DefaultMaxBody.
	MaxBody int64
	// BodyTimeout bounds the reading of a body; 0 means DefaultBodyTimeout.
	BodyTimeout time.Duration
	// Now gives the events' time; nil means time.Now.
	Now func() time.Time
}

// signal is one OTLP signal: its route, its event type and its messages.
type signal struct {
	path, name string
	eventType  string
	items      string // what it counts, for messages: "spans"
	newRequest func() proto.Message
	count      func(proto.Message) int
	split      func(proto.Message, int) ([]proto.Message, int)
	// response is the Export…ServiceResponse, with partial_success when
	// rejected > 0.
	response func(rejected int64, msg string) proto.Message
}

// The signals, in the order of Stats.
const (
	sigTraces = iota
	sigMetrics
	sigLogs
	numSignals
)

// signalStats counts one signal's requests.
type signalStats struct {
	requests, items, refused, rejected atomic.Uint64
}

// Receiver is an OTLP/HTTP server on loopback. It answers every request as
// soon as its body is read, decoded and buffered: it never waits for
// OpenObserve. It never logs per request: its own output would come back
// as "extension" events.
type Receiver struct {
	o   Options
	ln  net.Listener
	srv *http.Server

	// slots holds a token per body being read and decoded.
	slots chan struct{}
	// closing is closed as Close starts: waiting requests give up.
	closing chan struct{}
	// mu guards closed: once Close has set it, nothing more is buffered,
	// so that what the final drain takes is all there is.
	mu     sync.RWMutex
	closed bool

	wg       sync.WaitGroup
	stopped  chan struct{} // closed when Serve has returned
	serveErr error         // Serve's error, other than ErrServerClosed
	once     sync.Once
	closeErr error

	stats       [numSignals]signalStats
	unavailable atomic.Uint64
}

// Listen binds o.Addr synchronously (a port in use is reported at once),
// then serves in the background until Close.
func Listen(o Options) (*Receiver, error) {
	host, _, err := net.SplitHostPort(o.Addr)
	if err != nil {
		return nil, fmt.Errorf("otlpreceiver: address %q: %w", o.Addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("otlpreceiver: address %q: only a loopback IP address is allowed", o.Addr)
	}
	if o.Buffer == nil {
		return nil, errors.New("otlpreceiver: no buffer")
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("otlpreceiver: %w", err)
	}
	r := newReceiver(o)
	r.ln = ln
	// No idle timeout: the clients are the function's own exporters,
	// which keep a connection or two alive between exports and close
	// them themselves. A server-side idle timeout would expire during a
	// freeze and close those connections at the thaw, just as the SDK
	// reuses one for its next export, failing it.
	r.srv = &http.Server{
		Handler:           r,
		ReadHeaderTimeout: 5 * time.Second,
	}
	r.wg.Go(func() {
		if err := r.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			// Only a broken socket: the SDK's exports then fail, and it
			// reports that itself. Close returns the error.
			r.serveErr = err
		}
	})
	go func() {
		r.wg.Wait()
		close(r.stopped)
	}()
	return r, nil
}

// newReceiver applies o's defaults; it does not listen (tests call
// ServeHTTP directly).
func newReceiver(o Options) *Receiver {
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if o.MaxBody <= 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.BodyTimeout <= 0 {
		o.BodyTimeout = DefaultBodyTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Receiver{
		o:       o,
		slots:   make(chan struct{}, maxConcurrent),
		closing: make(chan struct{}),
		stopped: make(chan struct{}),
	}
}

// Addr is the bound address.
func (r *Receiver) Addr() *net.TCPAddr { return r.ln.Addr().(*net.TCPAddr) }

// Close stops taking requests: from its start nothing more is buffered.
// It waits for the server to stop, or until ctx ends (then it closes every
// connection and returns ctx's error). Safe to call more than once.
func (r *Receiver) Close(ctx context.Context) error {
	r.once.Do(func() {
		r.mu.Lock()
		r.closed = true
		r.mu.Unlock()
		close(r.closing)
		if r.srv == nil {
			close(r.stopped)
			return
		}
		if err := r.srv.Shutdown(ctx); err != nil {
			// Handlers still running when ctx ends buffer nothing more
			// (closed is set); their connections are cut.
			_ = r.srv.Close()
			r.closeErr = err
		}
	})
	select {
	case <-r.stopped:
	case <-ctx.Done():
		return ctx.Err()
	}
	if r.closeErr != nil {
		return r.closeErr
	}
	if r.serveErr != nil {
		return fmt.Errorf("otlpreceiver: serve: %w", r.serveErr)
	}
	return nil
}

// SignalStats are one signal's counters.
type SignalStats struct {
	// Requests is the POSTs to the signal's path, whatever their outcome.
	Requests uint64
	// Items is the spans, data points or log records buffered.
	Items uint64
	// Refused is the bodies answered 400 (malformed, over MaxBody) or 415:
	// nothing of them was buffered.
	Refused uint64
	// Rejected is the items dropped from bodies otherwise taken, reported
	// to the client in partial_success: an item too large for any request,
	// or a body larger than the whole buffer.
	Rejected uint64
}

// Stats are the receiver's counters.
type Stats struct {
	Traces, Metrics, Logs SignalStats
	// Unavailable counts the requests answered 503 (retried by OTLP
	// clients): a body that timed out or broke off, no slot free in time,
	// or the receiver closing.
	Unavailable uint64
}

// Stats returns the counters.
func (r *Receiver) Stats() Stats {
	get := func(i int) SignalStats {
		s := &r.stats[i]
		return SignalStats{Requests: s.requests.Load(), Items: s.items.Load(), Refused: s.refused.Load(), Rejected: s.rejected.Load()}
	}
	return Stats{Traces: get(sigTraces), Metrics: get(sigMetrics), Logs: get(sigLogs), Unavailable: r.unavailable.Load()}
}

// Fields are the counters as the summary record's fields, named for the
// items each signal counts.
func (s Stats) Fields() map[string]uint64 {
	return map[string]uint64{
		"otlpTracesRequests":     s.Traces.Requests,
		"otlpMetricsRequests":    s.Metrics.Requests,
		"otlpLogsRequests":       s.Logs.Requests,
		"otlpReceivedSpans":      s.Traces.Items,
		"otlpReceivedDataPoints": s.Metrics.Items,
		"otlpReceivedLogRecords": s.Logs.Items,
		"otlpTracesRefused":      s.Traces.Refused,
		"otlpMetricsRefused":     s.Metrics.Refused,
		"otlpLogsRefused":        s.Logs.Refused,
		"otlpRejectedSpans":      s.Traces.Rejected,
		"otlpRejectedDataPoints": s.Metrics.Rejected,
		"otlpRejectedLogRecords": s.Logs.Rejected,
		"otlpUnavailable":        s.Unavailable,
	}
}

// ServeHTTP handles one export.
//
// Status codes, as OTLP/HTTP specifies them: 200 with an
// Export…ServiceResponse in the request's encoding (partial_success set
// when part was dropped); 400 for a body that cannot be decoded or is over
// MaxBody; 415 for a Content-Type or Content-Encoding it does not take;
// 404 for another path, 405 for another method; 503 (retryable) when the
// body could not be read in time or the receiver is closing. Every error
// reply carries a google.rpc.Status, JSON for a JSON request, else
// protobuf. A refused body buffers nothing.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	asJSON, typeOK := mediaType(req.Header.Get("Content-Type"))
	i, ok := signalIndex(req.URL.Path)
	if !ok {
		fail(w, http.StatusNotFound, codeNotFound, "no such path: OTLP/HTTP takes POST /v1/traces, /v1/metrics and /v1/logs", asJSON)
		return
	}
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		fail(w, http.StatusMethodNotAllowed, codeUnimplemented, "method "+req.Method+" not allowed: OTLP/HTTP takes POST", asJSON)
		return
	}
	sig, st := &signals[i], &r.stats[i]
	st.requests.Add(1)
	if !typeOK {
		st.refused.Add(1)
		failUnread(w, http.StatusUnsupportedMediaType, codeInvalidArgument,
			fmt.Sprintf("Content-Type %q not supported: use %s or %s", req.Header.Get("Content-Type"), contentTypeProto, contentTypeJSON), false)
		return
	}
	gz, encOK := gzipped(req.Header.Get("Content-Encoding"))
	if !encOK {
		st.refused.Add(1)
		failUnread(w, http.StatusUnsupportedMediaType, codeInvalidArgument,
			fmt.Sprintf("Content-Encoding %q not supported: use gzip or none", req.Header.Get("Content-Encoding")), asJSON)
		return
	}
	if !r.acquire(req.Context()) {
		r.unavailable.Add(1)
		w.Header().Set("Retry-After", "1")
		failUnread(w, http.StatusServiceUnavailable, codeUnavailable, "receiver busy or closing; send it again", asJSON)
		return
	}
	defer func() { <-r.slots }()

	body, err := r.readBody(w, req, gz)
	switch {
	case errors.Is(err, errUnread):
		r.unavailable.Add(1)
		w.Header().Set("Retry-After", "1")
		failUnread(w, http.StatusServiceUnavailable, codeUnavailable, "body not read completely: "+err.Error()+"; send it again", asJSON)
		return
	case err != nil:
		st.refused.Add(1)
		failUnread(w, http.StatusBadRequest, codeInvalidArgument, err.Error(), asJSON)
		return
	}
	m := sig.newRequest()
	if err := unmarshal(body, asJSON, m); err != nil {
		st.refused.Add(1)
		kind := "protobuf"
		if asJSON {
			kind = "JSON"
		}
		fail(w, http.StatusBadRequest, codeInvalidArgument, fmt.Sprintf("malformed %s %s body: %v", kind, sig.name, err), asJSON)
		return
	}
	var raw []byte
	if !asJSON {
		raw = body // forwarded as sent when it fits one request
	}
	rejected, msg, ok := r.take(sig, st, m, raw)
	if !ok {
		r.unavailable.Add(1)
		fail(w, http.StatusServiceUnavailable, codeUnavailable, "receiver closing", asJSON)
		return
	}
	reply(w, sig.response(int64(rejected), msg), asJSON)
}

// take buffers m as events of at most MaxBatchBytes each and counts it. It
// returns how many items were dropped and why, and false (buffering
// nothing) once Close has started. raw, if set, is m's protobuf encoding
// as received.
func (r *Receiver) take(sig *signal, st *signalStats, m proto.Message, raw []byte) (rejected int, msg string, ok bool) {
	total := sig.count(m)
	if total == 0 {
		// Nothing to store (an empty export, resources without items):
		// nothing to send.
		r.mu.RLock()
		defer r.mu.RUnlock()
		return 0, "", !r.closed
	}
	max := r.o.MaxBatchBytes
	var bodies [][]byte
	var counts []int
	tooLarge := 0
	switch {
	case raw != nil && len(raw) <= max:
		bodies, counts = [][]byte{bytes.Clone(raw)}, []int{total}
	case proto.Size(m) <= max:
		b, err := proto.Marshal(m)
		if err != nil {
			return total, "cannot encode: " + err.Error(), true
		}
		bodies, counts = [][]byte{b}, []int{total}
	default:
		pieces, dropped := sig.split(m, max)
		tooLarge = dropped
		for _, p := range pieces {
			n := sig.count(p)
			b, err := proto.Marshal(p)
			if err != nil || len(b) > max {
				tooLarge += n // cannot happen: the split leaves room
				continue
			}
			bodies, counts = append(bodies, b), append(counts, n)
		}
	}

	// What fits in the whole buffer, in order; the rest of a body larger
	// than the buffer is dropped here rather than by the buffer, which
	// would drop this body's own first parts to make room for its last.
	now := r.o.Now()
	evs := make([]telemetry.Event, 0, len(bodies))
	room, overflow := r.o.Buffer.Cap(), 0
	for i, b := range bodies {
		ev := telemetry.Event{Time: now, Type: sig.eventType, Record: b}
		if size := ev.Size(); size <= room && overflow == 0 {
			room -= size
			evs = append(evs, ev)
			continue
		}
		overflow += counts[i]
	}

	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return 0, "", false
	}
	r.o.Buffer.Add(evs...)
	rejected = tooLarge + overflow
	st.items.Add(uint64(total - rejected))
	st.rejected.Add(uint64(rejected))
	switch {
	case tooLarge > 0 && overflow > 0:
		msg = fmt.Sprintf("%d %s each larger than one request to OpenObserve (%d bytes, O2_MAX_BATCH_BYTES) and %d more beyond the extension's buffer (%d bytes, O2_MAX_BUFFER_SIZE_MB) dropped",
			tooLarge, sig.items, max, overflow, r.o.Buffer.Cap())
	case tooLarge > 0:
		msg = fmt.Sprintf("%d %s dropped: each larger than one request to OpenObserve (%d bytes, O2_MAX_BATCH_BYTES)", tooLarge, sig.items, max)
	case overflow > 0:
		msg = fmt.Sprintf("%d %s dropped: the export is larger than the extension's buffer (%d bytes, O2_MAX_BUFFER_SIZE_MB)", overflow, sig.items, r.o.Buffer.Cap())
	}
	return rejected, msg, true
}

// acquire takes a slot, waiting up to admitWait; false if none came free,
// the client went away or Close started.
func (r *Receiver) acquire(ctx context.Context) bool {
	select {
	case <-r.closing:
		return false
	default:
	}
	select {
	case r.slots <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(admitWait)
	defer t.Stop()
	select {
	case r.slots <- struct{}{}:
		return true
	case <-t.C:
	case <-ctx.Done():
	case <-r.closing:
	}
	return false
}

// Body errors: errUnread (the body did not arrive whole: answered 503) and
// the rest (answered 400).
var (
	errUnread      = errors.New("otlpreceiver: body not read")
	errBodyTimeout = errors.New("otlpreceiver: body read deadline passed")
)

// readBody reads the whole body, decompressed, within BodyTimeout and
// MaxBody. A read that fails on the connection's side (cut, too slow)
// wraps errUnread; a body over MaxBody or a corrupt gzip stream is another
// error.
func (r *Receiver) readBody(w http.ResponseWriter, req *http.Request, gz bool) ([]byte, error) {
	limit := r.o.MaxBody
	if !gz && req.ContentLength > limit {
		return nil, fmt.Errorf("body of %d bytes is over the receiver's limit of %d", req.ContentLength, limit)
	}
	// The connection's read deadline ends a stalled read at once; the
	// deadlineReader also ends a body that trickles in, and is all there
	// is where the deadline cannot be set (a test's ResponseRecorder).
	rc := http.NewResponseController(w)
	deadline := time.Now().Add(r.o.BodyTimeout)
	_ = rc.SetReadDeadline(deadline)
	wire := &wireReader{r: &deadlineReader{r: req.Body, deadline: deadline}}
	var src io.Reader = wire
	hint := int64(64 << 10)
	if req.ContentLength >= 0 {
		hint = min(req.ContentLength, limit)
		if gz {
			hint *= 4 // what protobuf usually compresses by
		}
	}
	if gz {
		zr, err := gzip.NewReader(wire)
		if err != nil {
			return nil, wire.classify(err, "gzip")
		}
		defer zr.Close()
		src = zr
	}
	body, err := readAll(src, min(hint, limit), limit)
	if err != nil {
		return nil, wire.classify(err, "gzip")
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("body over the receiver's limit of %d bytes (after decompression)", limit)
	}
	// Cleared before the reply: net/http reads on in the background once
	// the body has ended, and a deadline passing then would cancel the
	// request's context.
	_ = rc.SetReadDeadline(time.Time{})
	return body, nil
}

// readAll reads r to its end, or to one byte over limit, starting with
// room for hint bytes and doubling as needed (never past limit+1).
func readAll(r io.Reader, hint, limit int64) ([]byte, error) {
	buf := make([]byte, 0, hint+1)
	for int64(len(buf)) <= limit {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(limit+1, 2*int64(cap(buf))+512))
			copy(grown, buf)
			buf = grown
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
	return buf, nil
}

// wireReader remembers the error of the request body itself, to tell a
// connection that failed from a gzip stream that is corrupt.
type wireReader struct {
	r   io.Reader
	err error
}

func (w *wireReader) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		w.err = err
	}
	return n, err
}

// classify says what a read error err means: errUnread if the body itself
// failed, else a malformed what.
func (w *wireReader) classify(err error, what string) error {
	switch {
	case w.err == nil:
		return fmt.Errorf("malformed %s body: %w", what, err)
	case errors.Is(w.err, errBodyTimeout), errors.Is(w.err, os.ErrDeadlineExceeded):
		return fmt.Errorf("%w: too slow", errUnread)
	}
	return fmt.Errorf("%w: %v", errUnread, w.err)
}

// deadlineReader fails every read that starts at or after the deadline, so
// a body that keeps trickling in ends within one read of it.
type deadlineReader struct {
	r        io.Reader
	deadline time.Time
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	if !time.Now().Before(d.deadline) {
		return 0, errBodyTimeout
	}
	return d.r.Read(p)
}

// reply writes 200 with resp in the request's encoding.
func reply(w http.ResponseWriter, resp proto.Message, asJSON bool) {
	var b []byte
	ct := contentTypeProto
	if asJSON {
		ct = contentTypeJSON
		b, _ = protojson.Marshal(resp)
	} else {
		b, _ = proto.Marshal(resp)
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// fail writes an error reply with a google.rpc.Status body.
func fail(w http.ResponseWriter, status int, code int32, msg string, asJSON bool) {
	ct := contentTypeProto
	if asJSON {
		ct = contentTypeJSON
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(status)
	_, _ = w.Write(statusBody(code, msg, asJSON))
}

// failUnread is fail for a request whose body may not have been read to its
// end: the connection is closed after the reply, without reading on.
// Otherwise net/http would read up to 256 KiB of what is left, for as long
// as the sender takes, to keep the connection.
func failUnread(w http.ResponseWriter, status int, code int32, msg string, asJSON bool) {
	_ = http.NewResponseController(w).SetReadDeadline(time.Now())
	w.Header().Set("Connection", "close")
	fail(w, status, code, msg, asJSON)
}
