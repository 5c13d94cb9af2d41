// Package o2test is a local stand-in for OpenObserve's `_json` log ingestion
// endpoint, faithful to its public contract (including its failures), with
// scripted faults and a store that tests can query.
//
// The behaviour follows docs/openobserve-api.md §2-§7 and §10: routes,
// middleware order (decompression, then authentication, then the org
// check), Basic auth parsing, stream-name and key normalisation, flattening,
// `_timestamp` parsing and the accepted time window, the silent column-limit
// drop and the exact reply shapes.
package o2test

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// Defaults used for zero Options fields. They are OpenObserve's own defaults
// (ZO_PAYLOAD_LIMIT, ZO_INGEST_ALLOWED_UPTO, ZO_INGEST_ALLOWED_IN_FUTURE,
// ZO_COLS_PER_RECORD_LIMIT, ZO_INGEST_FLATTEN_LEVEL).
const (
	// DefaultEmail and DefaultSecret are the credentials accepted when
	// Options.Credentials is empty.
	DefaultEmail  = "root@example.com"
	DefaultSecret = "Complexpass#123"
	// DefaultMaxBodyBytes is the decompressed body limit (200 MiB).
	DefaultMaxBodyBytes = 200 << 20
	// DefaultAllowedUpto and DefaultAllowedInFuture bound record times
	// around now.
	DefaultAllowedUpto     = 5 * time.Hour
	DefaultAllowedInFuture = 24 * time.Hour
	// DefaultColumnLimit caps the field names of one request.
	DefaultColumnLimit = 1000
	// DefaultFlattenLevel is the depth at which objects stay JSON strings.
	DefaultFlattenLevel = 3
)

// Options configure the stand-in. Zero values mean the defaults given.
type Options struct {
	// Credentials maps an email to its secret (password or ingestion token);
	// empty means {DefaultEmail: DefaultSecret}.
	Credentials map[string]string
	// Orgs lists the known orgs; empty accepts every org. For an unknown
	// org, OpenObserve's rules apply (orgs.go): a user other than root gets
	// 401; root creates it on an ingestion write, and gets 404 plain text
	// "Organization not found" elsewhere.
	Orgs []string
	// RootEmail is the root user's email; empty means DefaultEmail.
	RootEmail string
	// NoAutoCreateOrg is ZO_CREATE_ORG_THROUGH_INGESTION=false: an unknown
	// org is 404 for root on ingestion writes too.
	NoAutoCreateOrg bool
	// IngestionTokens maps an email to its ingestion token, accepted on
	// ingestion routes only; OrgTokens maps an org-level "o2oi_" token to
	// its org.
	IngestionTokens, OrgTokens map[string]string
	// MaxBodyBytes limits the body after decompression; 0 means 200 MiB.
	// A bigger body gets 413 plain text.
	MaxBodyBytes int64
	// AllowedUpto is how old a record may be; 0 means 5h. Older records are
	// counted failed ("Too old data ...").
	AllowedUpto time.Duration
	// AllowedInFuture is how far ahead a record may be; 0 means 24h
	// ("Too far data ...").
	AllowedInFuture time.Duration
	// ColumnLimit caps the union of flattened field names across one
	// request; 0 means 1000. Above it the request's records are silently
	// dropped: 200, counted neither successful nor failed.
	ColumnLimit int
	// FlattenLevel is the nesting depth at which objects are kept as JSON
	// strings; 0 means 3, a negative value means no limit (OpenObserve's 0).
	FlattenLevel int
	// Now is the clock used for the time window and missing timestamps; nil
	// means time.Now.
	Now func() time.Time
}

// Fault is one scripted misbehaviour for one `_json` request.
//
// A Fault with Status, Reset or Hang set replaces the normal answer: the body
// is still read and logged, but nothing is authenticated or stored. When
// several are set, Hang wins over Reset and Reset over Status. A Fault with
// only Delay (and maybe RetryAfter) delays a normal answer.
type Fault struct {
	// Status, when not 0, is answered with JSON {"code":Status,"message":...}
	// (429, 500, 502, 503, ...).
	Status int
	// RetryAfter is the value of a Retry-After header, if not empty.
	RetryAfter string
	// Delay is latency added before answering (or before the fault). The
	// request is processed only after the delay, so a client that gives up
	// during it leaves nothing stored.
	Delay time.Duration
	// Reset aborts the connection without a reply: the client sees a
	// connection reset (or EOF).
	Reset bool
	// Hang never answers; the handler holds until the client gives up (its
	// context or timeout) or Close.
	Hang bool
	// Message, with Status, is the "message" of the JSON error body
	// (default: the status text), e.g. OpenObserve's
	// "Error# Quota exceeded for this organization [default]".
	Message string
	// Body, when set, is answered as is with Status (default 200) and
	// nothing is stored: a proxy's page, or another service at the path.
	Body string
}

// Request is one request the stand-in received (any path), with its decoded
// body.
type Request struct {
	Time   time.Time
	Method string
	// Path is the escaped path as received.
	Path string
	// Header is as received (tests check Authorization, Content-Encoding).
	Header http.Header
	// Body is the body after decompression; nil for routes that ignore it.
	Body []byte
	// Status is what was answered: 0 while in flight, and for reset, hung or
	// abandoned requests.
	Status int
	// Records is the number of records sent in the body: the array length, 1
	// for a lone value, 0 if the body is not JSON. It is counted when the
	// body is ingested, or else when Requests first returns the request:
	// a faulted request is answered without parsing its body, as fast as
	// OpenObserve's middleware refuses it.
	Records            int
	Successful, Failed int
	// End is when the request finished (its answer decided): End - Time is
	// the stand-in's own handling time, which a benchmark of the client
	// can take out of what it measures.
	End time.Time
	// Done reports that the request is finished (answered, reset, released
	// or abandoned). A request is logged as soon as its body is read, so
	// Requests can show a request still in flight (Done false).
	Done bool

	counted bool // Records is set
}

// Record is one accepted, stored record.
type Record struct {
	// Org is the org as given; Stream is the normalised stream name.
	Org, Stream string
	// Fields holds the flattened record under normalised keys, null values
	// dropped. "_timestamp" is an int64 in µs; other numbers are
	// json.Number, nested objects beyond the flatten level and arrays are
	// JSON strings.
	Fields map[string]any
}

// Server is the stand-in. Create it with New or Run; all methods are safe for
// concurrent use.
type Server struct {
	creds map[string]string
	// The organization rules (orgs.go).
	rootEmail         string
	noAutoCreate      bool
	tokens, orgTokens map[string]string
	createdOrgs       []string
	orgs              map[string]bool
	maxBody           int64
	upto              time.Duration
	future            time.Duration
	colLimit          int
	flatLevel         int
	now               func() time.Time

	handler http.Handler
	// done is closed by Close; it releases hung and delayed handlers.
	done      chan struct{}
	closeOnce sync.Once
	serveWG   sync.WaitGroup

	mu        sync.Mutex
	srv       *http.Server
	ln        net.Listener
	closed    bool
	reqs      []*Request
	recs      []Record
	faults    []Fault
	faultFunc func(n int, r *http.Request) *Fault
	bodyFault func(body []byte) *Fault
	latency   time.Duration
	calls     int // `_json` requests seen since New or Reset
	// schemas are the column types of each org/stream, from the first
	// value each field was stored with.
	schemas map[string]map[string]string
	// changed is closed and replaced whenever the log changes, to wake Wait.
	changed chan struct{}
	// otlp is what the OTLP routes received (otlp.go).
	otlp otlpStore
	// inflight counts running handlers; idle is closed when it drops to 0
	// while Close waits.
	inflight int
	idle     chan struct{}
}

// New returns a stand-in configured by o. It does not listen: use Start, or
// Handler (or Transport) in process.
func New(o Options) *Server {
	s := &Server{
		creds:     maps.Clone(o.Credentials),
		orgs:      make(map[string]bool, len(o.Orgs)),
		maxBody:   o.MaxBodyBytes,
		upto:      o.AllowedUpto,
		future:    o.AllowedInFuture,
		colLimit:  o.ColumnLimit,
		flatLevel: o.FlattenLevel,
		now:       o.Now,
		done:      make(chan struct{}),
		changed:   make(chan struct{}),
	}
	if len(s.creds) == 0 {
		s.creds = map[string]string{DefaultEmail: DefaultSecret}
	}
	s.rootEmail = cmp.Or(o.RootEmail, DefaultEmail)
	s.noAutoCreate = o.NoAutoCreateOrg
	s.tokens, s.orgTokens = maps.Clone(o.IngestionTokens), maps.Clone(o.OrgTokens)
	for _, org := range o.Orgs {
		s.orgs[org] = true
	}
	if s.maxBody <= 0 {
		s.maxBody = DefaultMaxBodyBytes
	}
	if s.upto == 0 {
		s.upto = DefaultAllowedUpto
	}
	if s.future == 0 {
		s.future = DefaultAllowedInFuture
	}
	if s.colLimit <= 0 {
		s.colLimit = DefaultColumnLimit
	}
	switch {
	case s.flatLevel == 0:
		s.flatLevel = DefaultFlattenLevel
	case s.flatLevel < 0:
		s.flatLevel = 0 // OpenObserve's "no limit"
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.handler = http.HandlerFunc(s.serveHTTP)
	return s
}

// Run is New plus Start on 127.0.0.1:0, with Close registered on t.Cleanup.
// It calls t.Fatal if the server cannot start.
func Run(t testing.TB, o Options) *Server {
	t.Helper()
	s := New(o)
	if err := s.Start(); err != nil {
		t.Fatalf("o2test: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// Handler returns the whole stand-in as an http.Handler, for in-process use
// (for example inside a synctest bubble, where no loopback server may run).
func (s *Server) Handler() http.Handler { return s.handler }

// Start listens on 127.0.0.1:0 and serves in the background until Close.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("o2test: server closed")
	}
	if s.srv != nil {
		return errors.New("o2test: already started")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("o2test: listen: %w", err)
	}
	// ReadHeaderTimeout bounds a client that never finishes its headers; the
	// body itself is unbounded in time so slow-upload tests stay possible.
	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second}
	s.srv, s.ln = srv, ln
	s.serveWG.Go(func() {
		// Serve returns http.ErrServerClosed after Close: a clean stop.
		_ = srv.Serve(ln)
	})
	return nil
}

// URL returns "http://127.0.0.1:PORT" (no trailing slash), or "" before
// Start.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return "http://" + s.ln.Addr().String()
}

// Close stops serving, releases hung and delayed requests and waits for the
// running handlers. It is safe to call twice.
//
// A handler blocked reading an in-process request body that never ends is
// the one thing Close cannot release; loopback connections are closed here.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		srv := s.srv
		s.mu.Unlock()
		if srv != nil {
			// Close the connections before releasing hung handlers, so that
			// a released handler finds its connection gone rather than
			// answering a late 200.
			_ = srv.Close()
		}
		close(s.done)
		s.serveWG.Wait()
		s.mu.Lock()
		var idle chan struct{}
		if s.inflight > 0 {
			s.idle = make(chan struct{})
			idle = s.idle
		}
		s.mu.Unlock()
		if idle != nil {
			<-idle
		}
	})
}

// Inject queues faults; each applies to the next `_json` request, in order.
func (s *Server) Inject(f ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, f...)
}

// SetFaultFunc sets the policy for the n-th (1-based, counted since New or
// Reset) `_json` request when the queue is empty; nil clears it, and a nil
// return means no fault. f is called without any lock held.
func (s *Server) SetFaultFunc(f func(n int, r *http.Request) *Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faultFunc = f
}

// SetBodyFaultFunc sets a fault chosen from a `_json` request's decoded
// body, for requests that no other fault took (nil: none): e.g. the 400
// OpenObserve answers to a body holding one record its parser refuses. Its
// Delay applies like any fault's.
func (s *Server) SetBodyFaultFunc(f func(body []byte) *Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bodyFault = f
}

// SetLatency sets a delay added to every `_json` request (on top of any
// Fault.Delay).
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// Calls returns how many `_json` POST requests arrived since New or Reset.
func (s *Server) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// Requests returns copies of the logged requests, in arrival order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	var todo []*Request
	for _, r := range s.reqs {
		if !r.counted {
			todo = append(todo, r)
		}
	}
	s.mu.Unlock()
	// Bodies not parsed on the way in are counted here, outside the lock,
	// so that handlers are not held up. Body is not written after logging.
	counts := make([]int, len(todo))
	for i, r := range todo {
		counts[i] = countRecords(&bodyResult{data: r.Body})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, r := range todo {
		if !r.counted {
			r.Records, r.counted = counts[i], true
		}
	}
	out := make([]Request, len(s.reqs))
	for i, r := range s.reqs {
		c := *r
		c.Header = r.Header.Clone()
		c.Body = cloneBytes(r.Body)
		out[i] = c
	}
	return out
}

// Records returns copies of the stored records, in arrival order.
func (s *Server) Records() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Record, len(s.recs))
	for i, r := range s.recs {
		out[i] = Record{Org: r.Org, Stream: r.Stream, Fields: maps.Clone(r.Fields)}
	}
	return out
}

// StreamRecords returns copies of the fields of the records stored in
// org/stream, in arrival order; stream may be given raw or normalised.
func (s *Server) StreamRecords(org, stream string) []map[string]any {
	stream = NormalizeStream(stream)
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, r := range s.recs {
		if r.Org == org && r.Stream == stream {
			out = append(out, maps.Clone(r.Fields))
		}
	}
	return out
}

// Reset forgets requests, records, queued faults, the fault func, the
// latency and the `_json` call counter. Requests in flight still finish,
// but are no longer listed.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs, s.recs, s.faults = nil, nil, nil
	s.otlp = otlpStore{}
	s.faultFunc, s.latency, s.calls = nil, 0, 0
	s.schemas, s.bodyFault = nil, nil
	s.notifyLocked()
}

// Wait blocks until cond returns true or ctx ends (then it returns
// ctx.Err()). cond is called once at the start and again after the log
// changes (a request arrives or completes, or Reset); never with a lock
// held, so cond may call any method.
func (s *Server) Wait(ctx context.Context, cond func(*Server) bool) error {
	for {
		// Take the channel before testing cond, so a change between the two
		// still wakes us.
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if cond(s) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// notifyLocked wakes every Wait; s.mu must be held.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// logRequest appends e to the log and wakes waiters.
func (s *Server) logRequest(e *Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, e)
	s.notifyLocked()
}

// finish records the outcome of e (already logged) and wakes waiters.
func (s *Server) finish(e *Request, status, ok, failed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e.Status, e.Successful, e.Failed, e.Done, e.End = status, ok, failed, true, time.Now()
	s.notifyLocked()
}

// enter and leave count running handlers so Close can wait for them.
func (s *Server) enter() {
	s.mu.Lock()
	s.inflight++
	s.mu.Unlock()
}

func (s *Server) leave() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inflight--
	if s.inflight == 0 && s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
}

// serveHTTP routes like OpenObserve's axum router: /healthz outside auth,
// POST /api/{org}/{stream}/_json, 405 for other methods on known routes and
// an empty 404 for everything else.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.enter()
	defer s.leave()
	path := r.URL.EscapedPath()
	e := &Request{Time: s.now(), Method: r.Method, Path: path, Header: r.Header.Clone()}
	if path == "/healthz" {
		s.logRequest(e)
		status := s.healthz(w, r)
		s.finish(e, status, 0, 0)
		return
	}
	if org, signal, ok := matchOTLPRoute(path); ok {
		s.serveOTLP(w, r, org, signal) // otlp.go
		return
	}
	if org, ok := matchHandshakeRoute(path); ok && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		s.logRequest(e)
		rep, ok := s.authorize(r.Header, org, handshakeRead)
		if ok {
			rep = reply{status: http.StatusOK, header: http.Header{"Content-Type": {"application/json"}}, body: []byte(`{"status":"active"}`)}
		}
		s.finish(e, rep.status, 0, 0)
		writeReply(w, rep)
		return
	}
	org, stream, ok := matchJSONRoute(path)
	if !ok {
		s.logRequest(e)
		status := http.StatusNotFound
		if strings.HasPrefix(path, "/api/") {
			// Authentication wraps every service route, so a bad password
			// on a wrong path is 401 before it is 404 (openobserve-api.md §2).
			if rep, ok := s.authenticate(r.Header); !ok {
				s.finish(e, rep.status, 0, 0)
				writeReply(w, rep)
				return
			}
		}
		w.WriteHeader(status)
		s.finish(e, status, 0, 0)
		return
	}
	if r.Method != http.MethodPost {
		s.logRequest(e)
		w.Header().Set("Allow", "POST")
		w.WriteHeader(http.StatusMethodNotAllowed)
		s.finish(e, http.StatusMethodNotAllowed, 0, 0)
		return
	}
	s.serveJSON(w, r, e, org, stream)
}

// healthz answers GET and HEAD with 200 {"status":"ok"} and needs no auth.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) int {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		body := []byte(`{"status":"ok"}`)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(body)
		}
		return http.StatusOK
	default:
		w.Header().Set("Allow", "GET,HEAD")
		w.WriteHeader(http.StatusMethodNotAllowed)
		return http.StatusMethodNotAllowed
	}
}

// matchJSONRoute splits an escaped path of the form /api/{org}/{stream}/_json
// into its still-escaped org and stream. Segments may be empty, as in axum
// (`…//_json` reaches the handler and fails there with "Stream name is
// empty").
func matchJSONRoute(path string) (org, stream string, ok bool) {
	rest, ok := strings.CutPrefix(path, "/api/")
	if !ok {
		return "", "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || parts[2] != "_json" {
		return "", "", false
	}
	return parts[0], parts[1], true
}

// serveJSON handles one POST to the `_json` route: fault selection, body
// decoding, the scripted delay, then the fault or the normal answer.
func (s *Server) serveJSON(w http.ResponseWriter, r *http.Request, e *Request, rawOrg, rawStream string) {
	f := s.takeFault(r)
	s.mu.Lock()
	delay := s.latency
	s.mu.Unlock()
	if f != nil {
		delay += f.Delay
	}

	// The body is read up front so that faulted and delayed requests are
	// logged with their content; the answer still follows OpenObserve's
	// order (415, auth, org, then body errors).
	b := s.readBody(r)
	e.Body = b.data
	e.counted = b.err != nil // no records to count
	s.logRequest(e)
	if f == nil && b.err == nil {
		s.mu.Lock()
		bf := s.bodyFault
		s.mu.Unlock()
		if bf != nil {
			if f = bf(b.data); f != nil {
				delay += f.Delay
			}
		}
	}

	if !s.pause(r.Context(), delay) {
		s.abandon(w, r)
		s.finish(e, 0, 0, 0)
		return
	}
	if f != nil {
		switch {
		case f.Hang:
			select {
			case <-r.Context().Done():
			case <-s.done:
			}
			s.abandon(w, r)
			s.finish(e, 0, 0, 0)
			return
		case f.Reset:
			s.finish(e, 0, 0, 0)
			abort(w, true)
			return
		case f.Body != "":
			status := cmp.Or(f.Status, http.StatusOK)
			s.finish(e, status, 0, 0)
			w.WriteHeader(status)
			_, _ = w.Write([]byte(f.Body))
			return
		case f.Status != 0:
			if f.RetryAfter != "" {
				w.Header().Set("Retry-After", f.RetryAfter)
			}
			msg := cmp.Or(f.Message, http.StatusText(f.Status), "injected fault")
			s.finish(e, f.Status, 0, 0)
			writeJSON(w, f.Status, errorBody{Code: f.Status, Message: msg})
			return
		}
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
	}

	rep := s.process(r, rawOrg, rawStream, b)
	s.mu.Lock()
	s.recs = append(s.recs, rep.stored...)
	if b.isParsed && !e.counted {
		e.Records, e.counted = countRecords(&b), true // parsed for ingestion anyway
	}
	s.mu.Unlock()
	// Stored and logged before the reply is written, so a client that has
	// its answer sees the effects in Records and Requests.
	s.finish(e, rep.status, rep.successful, rep.failed)
	for k, v := range rep.header {
		w.Header()[k] = v
	}
	w.WriteHeader(rep.status)
	if len(rep.body) > 0 {
		_, _ = w.Write(rep.body)
	}
}

// takeFault counts a `_json` request and picks its fault: the queue first,
// then the fault func.
func (s *Server) takeFault(r *http.Request) *Fault {
	s.mu.Lock()
	s.calls++
	n := s.calls
	if len(s.faults) > 0 {
		f := s.faults[0]
		s.faults = s.faults[1:]
		s.mu.Unlock()
		return &f
	}
	ff := s.faultFunc
	s.mu.Unlock()
	if ff == nil {
		return nil
	}
	return ff(n, r)
}

// pause waits d; it reports false if the client went away or the server
// closed first.
func (s *Server) pause(ctx context.Context, d time.Duration) bool {
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return false
		case <-s.done:
			return false
		}
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// abandon ends a request that will get no answer: the client is gone or the
// server is closing. On Close the connection is dropped, so the client sees
// an error rather than an empty 200.
func (s *Server) abandon(w http.ResponseWriter, r *http.Request) {
	if r.Context().Err() != nil {
		if iw, ok := w.(*inprocWriter); ok {
			iw.aborted = true
		}
		return
	}
	abort(w, false)
}

// abort drops the connection without a reply. With rst the socket is closed
// with SO_LINGER 0, which sends a TCP RST: the client sees "connection reset
// by peer" rather than a clean EOF. Writers that cannot be hijacked (such as
// httptest.ResponseRecorder) are left unwritten.
func abort(w http.ResponseWriter, rst bool) {
	if iw, ok := w.(*inprocWriter); ok {
		iw.aborted = true
		return
	}
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok && rst {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// reply is the computed answer to a `_json` request.
type reply struct {
	status             int
	header             http.Header
	body               []byte
	successful, failed int
	stored             []Record
}

// errorBody is OpenObserve's JSON error shape.
type errorBody struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// process answers a `_json` POST the way OpenObserve does, in its middleware
// order: unsupported encoding (415), authentication (401), path extraction,
// org check (404), body errors (413/400), stream name (400), JSON (400), then
// ingestion (200).
func (s *Server) process(r *http.Request, rawOrg, rawStream string, b bodyResult) reply {
	if b.status == http.StatusUnsupportedMediaType {
		// tower-http lists the encodings it accepts.
		return reply{status: b.status, header: http.Header{"Accept-Encoding": {"gzip,deflate"}}}
	}
	org, err1 := unescapeSegment(rawOrg)
	stream, err2 := unescapeSegment(rawStream)
	if rep, ok := s.authorize(r.Header, org, ingestionWrite); !ok {
		return rep
	}
	if err := errors.Join(err1, err2); err != nil {
		return textReply(http.StatusBadRequest, "Invalid URL: "+err.Error())
	}
	if b.status != 0 {
		return textReply(b.status, b.msg)
	}
	name := NormalizeStream(stream)
	if name == "" {
		// src/core/src/logs/ingest.rs: the "Error# " prefix of every
		// ingest error (openobserve-api.md §5.1).
		return jsonReply(http.StatusBadRequest, errorBody{Code: 400, Message: "Error# Stream name is empty"})
	}
	v, err := b.json()
	if err != nil {
		return jsonReply(http.StatusBadRequest, errorBody{Code: 400, Message: "SerdeJsonError# " + err.Error()})
	}
	res := s.ingest(v, s.now())
	s.checkTypes(org+"/"+name, &res)
	st := streamStatus{Name: name, Successful: res.successful, Failed: res.failed, Error: res.lastErr}
	rep := jsonReply(http.StatusOK, ingestReply{Code: 200, Status: []streamStatus{st}})
	rep.successful, rep.failed = res.successful, res.failed
	for _, f := range res.records {
		rep.stored = append(rep.stored, Record{Org: org, Stream: name, Fields: f})
	}
	return rep
}

// checkTypes fails the records of res whose values the stream's columns
// cannot take, as write_logs does (src/core/src/logs/mod.rs lines 386-420 at
// fbab9b80: each counts as failed, and the error is the last one's), and
// records the types of new fields. OpenObserve infers the types of a
// batch's new fields before writing; here the first record to carry a
// field decides, which is the same for batches whose records agree.
func (s *Server) checkTypes(stream string, res *ingestResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.schemas == nil {
		s.schemas = map[string]map[string]string{}
	}
	cols := s.schemas[stream]
	if cols == nil {
		cols = map[string]string{}
		s.schemas[stream] = cols
	}
	kept := res.records[:0]
	for _, rec := range res.records {
		if msg := castErrors(cols, rec); msg != "" {
			res.successful--
			res.failed++
			res.lastErr = msg
			continue
		}
		for k, v := range rec {
			if _, ok := cols[k]; !ok && k != "_timestamp" {
				cols[k] = columnType(v)
			}
		}
		kept = append(kept, rec)
	}
	res.records = kept
}

// unescapeSegment decodes one path segment; axum's Path extractor refuses
// segments that do not decode to UTF-8.
func unescapeSegment(seg string) (string, error) {
	v, err := url.PathUnescape(seg)
	if err != nil {
		return "", fmt.Errorf("cannot decode %q: %w", seg, err)
	}
	if !utf8.ValidString(v) {
		return "", fmt.Errorf("cannot parse %q to a UTF-8 string", seg)
	}
	return v, nil
}

// streamStatus and ingestReply are the 200 reply of a processed request.
type streamStatus struct {
	Name       string `json:"name"`
	Successful int    `json:"successful"`
	Failed     int    `json:"failed"`
	Error      string `json:"error,omitempty"`
}

type ingestReply struct {
	Code   int            `json:"code"`
	Status []streamStatus `json:"status"`
}

// jsonReply encodes v compactly without HTML escaping, as serde_json does
// (the "Too old data" message contains "<max_hours>").
func jsonReply(status int, v any) reply {
	return reply{
		status: status,
		header: http.Header{"Content-Type": {"application/json"}},
		body:   marshalNoEscape(v),
	}
}

// textReply is a plain-text answer, as axum and the auth middleware send.
func textReply(status int, msg string) reply {
	return reply{
		status: status,
		header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}},
		body:   []byte(msg),
	}
}

// writeJSON writes v as a JSON answer with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(marshalNoEscape(v))
}

func marshalNoEscape(v any) []byte {
	var sb strings.Builder
	enc := json.NewEncoder(&sb)
	enc.SetEscapeHTML(false)
	// Only our own reply structs (strings and ints) are encoded here, and
	// they cannot fail to encode.
	_ = enc.Encode(v)
	return []byte(strings.TrimSuffix(sb.String(), "\n"))
}

func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}
