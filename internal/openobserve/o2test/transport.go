package o2test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"syscall"
)

// Transport returns an http.RoundTripper that serves requests in process,
// with no network: for clients under test inside a synctest bubble, where a
// loopback server may not run. Faults behave as over the network: Reset
// gives an error wrapping syscall.ECONNRESET, Hang holds until the
// request's context ends (then the error is the context's) or Close, and a
// request abandoned on Close gives an error too.
//
// The handler runs on the caller's goroutine, so a Delay is time the
// caller spends in RoundTrip (fake time inside a bubble).
func (s *Server) Transport() http.RoundTripper { return inprocTransport{s: s} }

type inprocTransport struct{ s *Server }

func (t inprocTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	// The server side gets its own copy, as a real server would parse one.
	sr := req.Clone(req.Context())
	if sr.Body == nil {
		sr.Body = http.NoBody
	}
	sr.RequestURI = req.URL.RequestURI()
	sr.Proto, sr.ProtoMajor, sr.ProtoMinor = "HTTP/1.1", 1, 1
	w := &inprocWriter{header: make(http.Header)}
	t.s.handler.ServeHTTP(w, sr)
	if req.Body != nil {
		// A RoundTripper must close the request body, even on errors.
		_ = req.Body.Close()
	}
	if w.aborted {
		if err := req.Context().Err(); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("o2test: in-process connection dropped: %w", syscall.ECONNRESET)
	}
	status := w.status
	if status == 0 {
		status = http.StatusOK
	}
	body := w.body.Bytes()
	if req.Method == http.MethodHead {
		body = nil
	}
	h := w.header.Clone()
	h.Set("Content-Length", strconv.Itoa(len(body)))
	return &http.Response{
		Status:        strconv.Itoa(status) + " " + http.StatusText(status),
		StatusCode:    status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}, nil
}

// inprocWriter collects an in-process answer. aborted marks a request that
// got no answer (Reset, Hang released, abandoned).
type inprocWriter struct {
	header  http.Header
	status  int
	body    bytes.Buffer
	aborted bool
}

func (w *inprocWriter) Header() http.Header { return w.header }

func (w *inprocWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *inprocWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.body.Write(p)
}
