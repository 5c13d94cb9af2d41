package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxBody caps one Telemetry API request body. Lambda sends at most
// about 2*maxBytes (2 MiB) per POST; anything past the cap is read but
// discarded, what was decoded before the cut is kept, and the cut is
// counted.
const DefaultMaxBody = 8 << 20

// DefaultBodyTimeout bounds the reading of one body. Lambda posts from
// within the sandbox, so even the largest body takes milliseconds; a body
// still arriving after this long is cut, keeps nothing and is answered 503
// (Lambda sends it again), instead of holding its bytes with no time limit.
const DefaultBodyTimeout = 10 * time.Second

// admitWait is how long a POST waits for room under MaxHeld before it is
// refused. Lambda sends one POST at a time per subscription (lambdatest's
// subscriber and RIE alike, lambda-platform.md §2.2), so a POST only waits
// when earlier bodies are still queued for the decoder: a second is time
// enough for the decoder to catch up by megabytes, and short enough that
// the platform, told 503, retries soon.
const admitWait = time.Second

// ListenerOptions configure a Listener.
type ListenerOptions struct {
	// Addr is the host:port to bind, e.g. "127.0.0.1:0" for an OS-chosen port.
	Addr string
	// MaxBody caps a request body in bytes; 0 means DefaultMaxBody.
	MaxBody int64
	// MaxHeld caps the bytes of request bodies the listener holds at once,
	// across all POSTs: bodies being read, queued for the decoder and being
	// decoded. Before its body is read, a POST takes its declared length
	// from this allowance (at most MaxBody; MaxBody itself when the length
	// is not declared, as with chunked bodies), and the decoder gives it
	// back once the body's events are buffered. A POST that finds no room
	// waits for it (first come, first served) up to a second, then is
	// answered 503 with Retry-After and counted in Refused: Lambda sends it
	// again, and nothing of it was read.
	//
	// 0 means 2*MaxBody: one body of the largest size being decoded while
	// the next is read, so bodies never wait on each other unless the
	// decoder falls behind. Lambda's bodies are far smaller (this
	// extension subscribes with maxBytes 256 KiB, so bodies of about
	// 512 KiB; at most about 2 MiB, lambda-platform.md §2.1-2.2) and
	// come one at a time. A
	// value below MaxBody is raised to MaxBody, so that any body the
	// listener accepts gets in once nothing else is held.
	//
	// The bound: what telemetry holds in memory is at most the Buffer's
	// bound + MaxHeld + the events of the one body being decoded before
	// they are buffered (records no larger than that body, so MaxBody,
	// plus about 100 bytes per event; Lambda puts at most 10,000 events in
	// a batch). With the defaults and O2_MAX_BUFFER_SIZE_MB=10, that is
	// 10 + 16 + 8 MiB plus the per-event overhead.
	MaxHeld int64
	// BodyTimeout bounds the reading of one body, from the end of its
	// header; 0 means DefaultBodyTimeout. A body cut by it keeps nothing,
	// is answered 503 and is counted in TimedOut.
	BodyTimeout time.Duration
	// Buffer receives every decoded event.
	Buffer *Buffer
	// OnEvent, if set, sees every decoded event (in arrival order, on the
	// decoding goroutine) just after its batch was buffered, filtered out
	// or not. It must not block or keep the pointer.
	OnEvent func(*Event)
	// Filter leaves events out of the buffer (the zero Filter keeps all).
	Filter Filter
	// Now, if set, replaces time.Now for events whose time cannot be read.
	Now func() time.Time
}

// ListenerStats counts what the listener has received.
type ListenerStats struct {
	Requests  uint64 // POSTs received
	Events    uint64 // events decoded (and buffered, unless Filtered)
	Malformed uint64 // events (or bodies) skipped because they could not be decoded
	Truncated uint64 // bodies cut at the size cap (the part before the cut kept)
	// Incomplete counts bodies whose reading failed before their end (the
	// connection broke, the body was shorter than declared): nothing of
	// them is kept, and they are answered 503 so that Lambda sends them
	// again.
	Incomplete uint64
	// TimedOut counts bodies cut at BodyTimeout, still arriving: like
	// Incomplete, nothing kept, answered 503.
	TimedOut uint64
	// Refused counts POSTs answered 503 without reading their body,
	// because the listener held MaxHeld bytes for longer than a POST waits
	// (or was closing).
	Refused  uint64
	Filtered uint64 // events decoded but left out by the Filter
	// LambdaDroppedRecords and LambdaDroppedBytes add up the
	// platform.logsDropped events: records Lambda itself dropped before
	// delivering them to us.
	LambdaDroppedRecords uint64
	LambdaDroppedBytes   uint64
}

// Listener is the HTTP endpoint the Telemetry API posts event batches to.
// It answers a POST with 200 as soon as its whole body is read and decodes
// on its own goroutine, so Lambda never waits on the extension; a body that
// could not be read to its end is answered 503 and keeps nothing. It never logs
// per request or per event: its own output would come back to it as
// "extension" events and feed itself forever.
type Listener struct {
	o   ListenerOptions
	ln  net.Listener
	srv *http.Server // nil for a listener made by newListener alone (tests)
	// held counts the bytes of the bodies held, against MaxHeld.
	held *gate
	// bodies queues accepted bodies for the decoder, in order; an entry
	// with a nil body and an ack is a Sync, answered when reached.
	bodies  chan queued
	done    chan struct{} // closed by Close once the server has stopped
	closing chan struct{} // closed as Close starts: POSTs stop waiting for room
	wg      sync.WaitGroup
	stopped chan struct{} // closed when the server and the decoder have returned
	once    sync.Once

	currentRequest string  // decoding goroutine only
	kept           []Event // decoding goroutine only: the events a Filter keeps

	requests, events, malformed, truncated, filtered atomic.Uint64
	incomplete, timedOut, refused                    atomic.Uint64
	lastActivity                                     atomic.Int64 // unix ns of the last POST
	lambdaDropRecords, lambdaDropBytes               atomic.Uint64
}

// Listen binds the address synchronously (so a bind error is reported at
// once, not lost in a goroutine) and starts serving in the background.
// Close stops it.
func Listen(o ListenerOptions) (*Listener, error) {
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("telemetry listener: %w", err)
	}
	l := newListener(o)
	l.serve(ln)
	return l, nil
}

// serve starts the server on ln, and the decoder.
func (l *Listener) serve(ln net.Listener) {
	l.ln = ln
	l.srv = &http.Server{
		Handler:           l,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       5 * time.Minute,
	}
	l.wg.Go(func() {
		// Serve returns http.ErrServerClosed on Close, and otherwise only
		// when the socket breaks: then the Telemetry API's deliveries fail,
		// Lambda reports platform.logsDropped, and there is nothing better
		// to do than stop.
		_ = l.srv.Serve(ln)
	})
	l.start()
}

// newListener applies o's defaults and makes a listener that is not bound
// to any address; serve or start starts it. Tests inside a synctest bubble,
// where a loopback server cannot run, call its ServeHTTP directly or serve
// it on in-memory pipes.
func newListener(o ListenerOptions) *Listener {
	if o.MaxBody <= 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.MaxHeld == 0 {
		o.MaxHeld = 2 * o.MaxBody
	}
	o.MaxHeld = max(o.MaxHeld, o.MaxBody)
	if o.BodyTimeout <= 0 {
		o.BodyTimeout = DefaultBodyTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	l := &Listener{
		o:       o,
		held:    newGate(o.MaxHeld),
		bodies:  make(chan queued, 16),
		done:    make(chan struct{}),
		closing: make(chan struct{}),
		stopped: make(chan struct{}),
	}
	l.lastActivity.Store(time.Now().UnixNano())
	return l
}

// start runs the decoder. stopped says when it and the server (if any)
// have returned, after Close; Close waits on it with its own deadline.
func (l *Listener) start() {
	l.wg.Go(l.decodeLoop)
	go func() {
		l.wg.Wait()
		close(l.stopped)
	}()
}

// Addr is the bound address.
func (l *Listener) Addr() *net.TCPAddr { return l.ln.Addr().(*net.TCPAddr) }

// ServeHTTP reads one batch, queues it for decoding and answers 200.
//
// A body is kept only once it has been read to its end. Lambda resends a
// POST that failed ("a failed request → retry with backoff",
// lambda-platform.md §2.2), so keeping the events of a body cut off
// mid-way, by a broken connection or a sender that gave up, would store
// them twice. Such a body keeps nothing and is answered 503: which statuses
// Lambda retries is not documented (§2.2, §6 (4)), and a 5xx is the one
// class every sender treats as "try again" (RIE counts any status >= 400 as
// a failure, lambdatest any non-2xx). If the connection is gone the status
// is never seen; the retry comes from the failed request itself. A body
// still arriving at BodyTimeout is cut the same way.
//
// Before reading, the POST takes its bytes from the MaxHeld allowance; if
// there is no room within admitWait it is answered 503 with Retry-After,
// its body unread.
func (l *Listener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	l.requests.Add(1)
	l.lastActivity.Store(time.Now().UnixNano())
	// The bytes this body may take: all of them are counted before the
	// first is read, so the bound holds however many POSTs arrive at once.
	n := l.o.MaxBody
	if r.ContentLength >= 0 {
		n = min(r.ContentLength, l.o.MaxBody)
	}
	if !l.held.acquire(r.Context(), n, admitWait, l.closing) {
		l.refused.Add(1)
		w.Header().Set("Retry-After", "1")
		retryLater(w, "telemetry: listener busy; send it again")
		return
	}
	queuedBody := false
	defer func() {
		if !queuedBody {
			l.held.release(n)
		}
	}()

	// The connection's read deadline ends a stalled read at once; the
	// deadlineReader also ends a body that trickles in, and is all there is
	// where the deadline cannot be set (a ResponseWriter that is not a
	// connection's, as in tests).
	rc := http.NewResponseController(w)
	deadline := time.Now().Add(l.o.BodyTimeout)
	_ = rc.SetReadDeadline(deadline)
	body, truncated, err := readBody(&deadlineReader{r: r.Body, deadline: deadline}, r.ContentLength, l.o.MaxBody)
	if err != nil {
		if errors.Is(err, errBodyTimeout) || errors.Is(err, os.ErrDeadlineExceeded) {
			l.timedOut.Add(1)
		} else {
			l.incomplete.Add(1)
		}
		retryLater(w, "telemetry: body not read completely; send it again")
		return
	}
	// Cleared before anything else waits: net/http reads the connection in
	// the background once the body has ended, and a deadline passing then
	// would cancel the request's context.
	_ = rc.SetReadDeadline(time.Time{})
	if truncated {
		l.truncated.Add(1)
	}
	select {
	case l.bodies <- queued{body: body, held: n}:
		queuedBody = true // the decoder gives the bytes back
	case <-l.done:
		retryLater(w, "telemetry: listener closed")
		return
	case <-r.Context().Done():
		return // the sender is gone and will try again: nothing is kept
	}
	w.WriteHeader(http.StatusOK)
}

// retryLater answers 503, so that Lambda sends the POST again, and closes
// the connection without reading any more of the body. Otherwise net/http
// would read up to 256 KiB of what is left to keep the connection, for as
// long as the sender takes: a stalled sender would hold the connection's
// goroutine with no time limit.
func retryLater(w http.ResponseWriter, msg string) {
	_ = http.NewResponseController(w).SetReadDeadline(time.Now())
	w.Header().Set("Connection", "close")
	http.Error(w, msg, http.StatusServiceUnavailable)
}

// errBodyTimeout is deadlineReader's error.
var errBodyTimeout = errors.New("telemetry: body read deadline passed")

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

// readBody reads a whole request body, keeping at most limit bytes of it.
// size is the declared length (-1 if unknown).
//
// A body longer than limit is read to its end, its first limit bytes kept,
// and reported truncated: the decoder keeps the events before the cut, and the
// POST is answered 200. Lambda's bodies are at most about 2 MiB
// (lambda-platform.md §2.2: "bodies can reach 2*maxBytes + metadata",
// maxBytes <= 1 MiB per §2.1), so an oversize body is not Lambda's; refusing
// it would have it sent again, identically, until Lambda gives up, and
// lose all of it. Reading the rest (into nothing) rather than stopping at
// the cap means the sender sees a clean 200 instead of a reset connection,
// which it would retry, storing the prefix twice.
//
// Any read error, even after the cap, is returned: the caller keeps
// nothing.
func readBody(r io.Reader, size, limit int64) (body []byte, truncated bool, err error) {
	if size >= 0 {
		// The length is known: one allocation of exactly what is kept. (The
		// server enforces the declared length: a shorter body is an
		// io.ErrUnexpectedEOF, a longer one is not read.)
		body = make([]byte, min(size, limit))
		if _, err := io.ReadFull(r, body); err != nil {
			return nil, false, err
		}
		if size <= limit {
			return body, false, nil
		}
	} else {
		body, err = readUpTo(r, limit)
		if err != nil {
			return nil, false, err
		}
		if int64(len(body)) < limit {
			return body, false, nil // ended before the cap
		}
	}
	// At the cap: anything more is discarded, but must arrive.
	n, err := io.Copy(io.Discard, r)
	if err != nil {
		return nil, false, err
	}
	return body, n > 0, nil
}

// readUpTo reads r to its end or to limit bytes, whichever comes first,
// growing its buffer by doubling but never past limit.
func readUpTo(r io.Reader, limit int64) ([]byte, error) {
	buf := make([]byte, 0, min(limit, 64<<10))
	for int64(len(buf)) < limit {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(limit, 2*int64(cap(buf))+1))
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

// queued is one entry of the decoder's queue.
type queued struct {
	body []byte
	held int64         // bytes taken from l.held for it, given back once decoded
	ack  chan struct{} // set for a Sync
}

func (l *Listener) decodeLoop() {
	for {
		select {
		case q := <-l.bodies:
			l.take(q)
		case <-l.done:
			// Decode whatever was accepted before Close.
			for {
				select {
				case q := <-l.bodies:
					l.take(q)
				default:
					return
				}
			}
		}
	}
}

func (l *Listener) take(q queued) {
	if q.ack != nil {
		close(q.ack) // everything queued before it is decoded
		return
	}
	l.decode(q.body)
	l.held.release(q.held)
}

// wireEvent is one element of a Telemetry API batch.
type wireEvent struct {
	Time   json.RawMessage `json:"time"`
	Type   string          `json:"type"`
	Record json.RawMessage `json:"record"`
}

// recordFields are the fields of an object record the listener reads.
type recordFields struct {
	RequestID json.RawMessage `json:"requestId"`
	Level     json.RawMessage `json:"level"`
}

// dropFields are the counters of a platform.logsDropped record.
type dropFields struct {
	DroppedRecords json.Number `json:"droppedRecords"`
	DroppedBytes   json.Number `json:"droppedBytes"`
}

// decode turns one body into events. The body is read element by element so
// that one bad event costs only itself: a truncated array keeps everything
// before the cut, an element of the wrong shape is skipped and counted.
func (l *Listener) decode(body []byte) {
	evs := DecodeBatch(body, l.o.Now, &l.currentRequest, func() { l.malformed.Add(1) })
	if len(evs) == 0 {
		return
	}
	l.events.Add(uint64(len(evs)))
	// Buffer first, observe second: whoever wakes on platform.runtimeDone
	// must find every event that came before it already buffered.
	if l.o.Buffer != nil {
		kept := evs
		if l.o.Filter.Active() {
			l.kept = l.kept[:0]
			for i := range evs {
				if l.o.Filter.Keep(&evs[i]) {
					l.kept = append(l.kept, evs[i])
				}
			}
			l.filtered.Add(uint64(len(evs) - len(l.kept)))
			kept = l.kept
		}
		l.o.Buffer.Add(kept...)
	}
	for i := range evs {
		e := &evs[i]
		if e.Type == "platform.logsDropped" {
			l.countLambdaDrop(e.Record)
		}
		if l.o.OnEvent != nil {
			l.o.OnEvent(e)
		}
	}
}

// countLambdaDrop adds up what Lambda reports it dropped before delivery.
func (l *Listener) countLambdaDrop(record []byte) {
	var f dropFields
	if json.Unmarshal(record, &f) != nil {
		return
	}
	if n, err := f.DroppedRecords.Int64(); err == nil && n > 0 {
		l.lambdaDropRecords.Add(uint64(n))
	}
	if n, err := f.DroppedBytes.Int64(); err == nil && n > 0 {
		l.lambdaDropBytes.Add(uint64(n))
	}
}

// DecodeBatch decodes a Telemetry API body into events, skipping (and
// reporting through malformed) what cannot be decoded. current carries the
// request id of the invocation in progress across batches: it is set by
// platform.start and used for records that carry no requestId.
func DecodeBatch(body []byte, now func() time.Time, current *string, malformed func()) []Event {
	if valid(body) {
		out := make([]Event, 0, len(body)/256+1)
		if scanBatch(body, func(w wireEvent, err error) {
			if err != nil {
				malformed()
				return
			}
			e, ok := makeEvent(w, now, current)
			if !ok {
				malformed()
				return
			}
			// The record is kept for as long as it is buffered: it must
			// not pin the whole body.
			e.Record = bytes.Clone(e.Record)
			out = append(out, e)
		}) {
			return out
		}
	}
	return decodeStream(body, now, current, malformed)
}

// decodeStream is DecodeBatch's general path, for bodies that are not
// valid JSON: element by element, so that a truncated array keeps what came
// before the cut. What follows the array's closing bracket (other than
// white space) counts as one malformed value.
func decodeStream(body []byte, now func() time.Time, current *string, malformed func()) []Event {
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		malformed()
		return nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		malformed()
		return nil
	}
	var out []Event
	for dec.More() {
		var w wireEvent
		if err := dec.Decode(&w); err != nil {
			var typeErr *json.UnmarshalTypeError
			if errors.As(err, &typeErr) {
				// The element was well-formed JSON of the wrong shape: the
				// decoder has consumed it, so carry on with the next one.
				malformed()
				continue
			}
			// Syntax error or truncation: nothing after this point can be
			// trusted.
			malformed()
			return out
		}
		e, ok := makeEvent(w, now, current)
		if !ok {
			malformed()
			continue
		}
		out = append(out, e)
	}
	// The array is complete unless the body ends inside it (cut between two
	// elements: nothing decodable was lost, so nothing is counted here).
	if _, err := dec.Token(); err != nil {
		return out
	}
	// Anything after the array, such as a second array ("[…][…]"), is not
	// part of the batch: it is skipped, but counted as one malformed value
	// so that it does not vanish without a trace.
	if len(bytes.TrimLeft(body[dec.InputOffset():], " \t\r\n")) > 0 {
		malformed()
	}
	return out
}

func makeEvent(w wireEvent, now func() time.Time, current *string) (Event, bool) {
	if w.Type == "" || len(w.Record) == 0 {
		return Event{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, StringValue(w.Time))
	if err != nil {
		// Keep the event: its content matters more than its exact time.
		t = now()
	}
	e := Event{Time: t, Type: w.Type, Record: w.Record}
	switch {
	case w.Record[0] == '{':
		var f recordFields
		if json.Unmarshal(w.Record, &f) == nil {
			e.RequestID = StringValue(f.RequestID)
			e.Level = StringValue(f.Level)
		}
	case w.Type == "function":
		var id []byte
		if id, e.Level = textPrefix(w.Record); string(id) == *current {
			e.RequestID = *current // the usual case: no copy
		} else if id != nil {
			e.RequestID = string(id)
		}
	case w.Type == "extension":
		e.Level = logfmtLevel(w.Record)
	}
	switch {
	case w.Type == "platform.start" && e.RequestID != "":
		*current = e.RequestID
	case e.RequestID == "" && (w.Type == "function" || w.Type == "extension"):
		e.RequestID = *current
	}
	return e, true
}

// StringValue returns the value of a raw JSON string, or "" for anything
// else (a number, an object, invalid JSON).
func StringValue(raw json.RawMessage) string {
	if len(raw) < 2 || raw[0] != '"' {
		return ""
	}
	if inner := raw[1 : len(raw)-1]; raw[len(raw)-1] == '"' && plainASCII(inner) {
		// Timestamps and request ids: nothing to unescape. This is the hot
		// path of decoding (two calls per event), and json.Unmarshal would
		// allocate for each.
		return string(inner)
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// plainASCII reports whether b, the inside of a JSON string, is printable
// ASCII without quotes or escapes: its value is b itself.
func plainASCII(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c >= 0x80 || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// Sync returns once every body accepted before the call has been decoded
// and buffered, or when ctx ends (false).
func (l *Listener) Sync(ctx context.Context) bool {
	ack := make(chan struct{})
	select {
	case l.bodies <- queued{ack: ack}:
	case <-l.done:
		return false
	case <-ctx.Done():
		return false
	}
	select {
	case <-ack:
		return true
	case <-l.stopped: // closed meanwhile: the decoder is gone
		select {
		case <-ack:
			return true // it got there first
		default:
			return false
		}
	case <-ctx.Done():
		return false
	}
}

// LastActivity is when the last POST arrived (when the listener started, if
// none has).
func (l *Listener) LastActivity() time.Time {
	return time.Unix(0, l.lastActivity.Load())
}

// Stats reports the listener's counters.
func (l *Listener) Stats() ListenerStats {
	return ListenerStats{
		Requests:             l.requests.Load(),
		Events:               l.events.Load(),
		Malformed:            l.malformed.Load(),
		Truncated:            l.truncated.Load(),
		Incomplete:           l.incomplete.Load(),
		TimedOut:             l.timedOut.Load(),
		Refused:              l.refused.Load(),
		Filtered:             l.filtered.Load(),
		LambdaDroppedRecords: l.lambdaDropRecords.Load(),
		LambdaDroppedBytes:   l.lambdaDropBytes.Load(),
	}
}

// Close stops accepting requests, decodes what was already accepted and
// returns when every goroutine of the listener has finished or ctx ends.
// It is safe to call more than once.
func (l *Listener) Close(ctx context.Context) error {
	var err error
	l.once.Do(func() {
		// A POST waiting for room would hold up the server's Shutdown by
		// up to admitWait, out of a SHUTDOWN budget of under two seconds.
		close(l.closing)
		if l.srv != nil {
			err = l.srv.Shutdown(ctx)
			if err != nil {
				l.srv.Close()
			}
		}
		close(l.done)
	})
	select {
	case <-l.stopped:
		return err
	case <-ctx.Done():
		// A decode backlog must not hold the process past its deadline.
		return ctx.Err()
	}
}
