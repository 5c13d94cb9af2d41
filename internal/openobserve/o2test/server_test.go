package o2test

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// do sends one request to h in process and returns the recorded answer.
func do(t *testing.T, h http.Handler, method, path string, body []byte, hdr http.Header) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	for k, v := range hdr {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func authHeader() http.Header {
	return http.Header{"Authorization": {BasicAuth(DefaultEmail, DefaultSecret)}}
}

// withHeader returns the default auth header plus k: v.
func withHeader(k, v string) http.Header {
	h := authHeader()
	h.Set(k, v)
	return h
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zlibbed(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zlib.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestAuth(t *testing.T) {
	s := New(Options{Credentials: map[string]string{
		"a@example.com": "pass:with:colons",
		"b@example.com": "tok",
	}})
	const jsonDenied = `{"code":401,"message":"Unauthorized Access"}`
	tests := []struct {
		name     string
		auth     []string // nil: no header
		status   int
		body     string
		wwwAuth  bool
		jsonBody bool
	}{
		{"no header", nil, 401, jsonDenied, false, true},
		{"secret containing colons", []string{BasicAuth("a@example.com", "pass:with:colons")}, 200, "", false, true},
		{"ingestion token", []string{BasicAuth("b@example.com", "tok")}, 200, "", false, true},
		{"secret trimmed", []string{BasicAuth("b@example.com", "  tok\t")}, 200, "", false, true},
		{"base64 part trimmed", []string{"Basic   " + strings.TrimPrefix(BasicAuth("b@example.com", "tok"), "Basic ") + "  "}, 200, "", false, true},
		{"wrong password", []string{BasicAuth("b@example.com", "nope")}, 401, "Unauthorized Access", true, false},
		{"unknown user", []string{BasicAuth("c@example.com", "tok")}, 401, "Unauthorized Access", true, false},
		{"user not trimmed", []string{BasicAuth(" b@example.com", "tok")}, 401, "Unauthorized Access", true, false},
		{"empty secret", []string{BasicAuth("b@example.com", " ")}, 401, "Unauthorized Access", true, false},
		{"bad base64", []string{"Basic %%%notbase64"}, 401, "Unauthorized Access", true, false},
		{"missing padding", []string{"Basic " + strings.TrimRight(strings.TrimPrefix(BasicAuth("b@example.com", "tok"), "Basic "), "=")}, 401, "Unauthorized Access", true, false},
		{"no colon", []string{"Basic YkBleGFtcGxlLmNvbQ=="}, 401, "Unauthorized Access", true, false},
		{"lower-case scheme", []string{"basic " + strings.TrimPrefix(BasicAuth("b@example.com", "tok"), "Basic ")}, 401, "Unauthorized Access", true, false},
		{"empty header", []string{""}, 401, "Unauthorized Access", true, false},
		{"bearer", []string{"Bearer abc"}, 401, "Not Supported", true, false},
		{"first header counts", []string{"Basic x", BasicAuth("b@example.com", "tok")}, 401, "Unauthorized Access", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.auth != nil {
				h["Authorization"] = tt.auth
			}
			rec := do(t, s.Handler(), http.MethodPost, "/api/default/app/_json", []byte(`[]`), h)
			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d (body %q)", rec.Code, tt.status, rec.Body)
			}
			if tt.status == 200 {
				return
			}
			if got := rec.Body.String(); got != tt.body {
				t.Errorf("body = %q, want %q", got, tt.body)
			}
			wa := rec.Header().Get("WWW-Authenticate")
			if tt.wwwAuth && wa != `Bearer realm="openobserve"` {
				t.Errorf("WWW-Authenticate = %q", wa)
			}
			if !tt.wwwAuth && wa != "" {
				t.Errorf("unexpected WWW-Authenticate %q", wa)
			}
			ct := rec.Header().Get("Content-Type")
			if tt.jsonBody != (ct == "application/json") {
				t.Errorf("Content-Type = %q", ct)
			}
		})
	}
}

func TestRoutes(t *testing.T) {
	s := New(Options{Orgs: []string{"default", "my/org"}})
	tests := []struct {
		name, method, path string
		hdr                http.Header
		status             int
		body               string
	}{
		{"ingest", "POST", "/api/default/app/_json", authHeader(), 200, `{"code":200,"status":[{"name":"app","successful":0,"failed":0}]}`},
		{"query string ignored", "POST", "/api/default/app/_json?x=1", authHeader(), 200, ""},
		{"escaped org", "POST", "/api/my%2Forg/app/_json", authHeader(), 200, ""},
		{"unknown org: root's ingestion write creates it", "POST", "/api/other/app/_json", authHeader(), 200, ""},
		{"unknown org: root's read is 404", "GET", "/api/another/_license", authHeader(), 404, "Organization not found"},
		{"known org: the handshake read", "GET", "/api/default/_license", authHeader(), 200, `{"status":"active"}`},
		{"auth before org", "POST", "/api/other/app/_json", nil, 401, `{"code":401,"message":"Unauthorized Access"}`},
		{"empty stream", "POST", "/api/default//_json", authHeader(), 400, `{"code":400,"message":"Error# Stream name is empty"}`},
		{"GET _json", "GET", "/api/default/app/_json", authHeader(), 405, ""},
		{"PUT _json", "PUT", "/api/default/app/_json", authHeader(), 405, ""},
		{"healthz GET without auth", "GET", "/healthz", nil, 200, `{"status":"ok"}`},
		{"healthz HEAD", "HEAD", "/healthz", nil, 200, ""},
		{"healthz POST", "POST", "/healthz", nil, 405, ""},
		{"root", "GET", "/", authHeader(), 404, ""},
		{"multi not modelled", "POST", "/api/default/app/_multi", authHeader(), 404, ""},
		{"trailing slash", "POST", "/api/default/app/_json/", authHeader(), 404, ""},
		{"missing stream segment", "POST", "/api/default/_json", authHeader(), 404, ""},
		{"api healthz: authentication before routing", "GET", "/api/healthz", nil, 401, `{"code":401,"message":"Unauthorized Access"}`},
		{"wrong path, wrong password: 401", "POST", "/api/default/app/_jsonx", http.Header{"Authorization": {BasicAuth(DefaultEmail, "nope")}}, 401, "Unauthorized Access"},
		{"wrong path, right password: 404", "POST", "/api/default/app/_jsonx", authHeader(), 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := do(t, s.Handler(), tt.method, tt.path, []byte(`[]`), tt.hdr)
			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d (body %q)", rec.Code, tt.status, rec.Body)
			}
			if tt.body != "" && rec.Body.String() != tt.body {
				t.Errorf("body = %q, want %q", rec.Body, tt.body)
			}
			if tt.body == "" && tt.status != 200 && rec.Body.Len() != 0 {
				t.Errorf("body = %q, want empty", rec.Body)
			}
		})
	}
}

func TestStreamAndOrgStored(t *testing.T) {
	s := New(Options{})
	rec := do(t, s.Handler(), "POST", "/api/my%20org/My%20App/_json", []byte(`{"A":1}`), authHeader())
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"name":"my_app"`) {
		t.Fatalf("got %d %s", rec.Code, rec.Body)
	}
	recs := s.Records()
	if len(recs) != 1 || recs[0].Org != "my org" || recs[0].Stream != "my_app" || recs[0].Fields["a"] != json.Number("1") {
		t.Fatalf("Records() = %#v", recs)
	}
	if _, ok := recs[0].Fields["_timestamp"].(int64); !ok {
		t.Errorf("_timestamp is %T, want int64", recs[0].Fields["_timestamp"])
	}
	for _, name := range []string{"My App", "my_app"} {
		if got := s.StreamRecords("my org", name); len(got) != 1 {
			t.Errorf("StreamRecords(%q) = %v", name, got)
		}
	}
	if got := s.StreamRecords("other", "my_app"); len(got) != 0 {
		t.Errorf("StreamRecords(other org) = %v", got)
	}
}

func TestBodies(t *testing.T) {
	const limit = 1024
	s := New(Options{MaxBodyBytes: limit})
	one := []byte(`[{"msg":"hello"}]`)
	// Small compressed, but over the limit once inflated.
	big := []byte(`[{"msg":"` + strings.Repeat("x", 4*limit) + `"}]`)
	exact := []byte(`[{"m":"` + strings.Repeat("y", limit-len(`[{"m":""}]`)) + `"}]`)
	gzBig := gzipped(t, big)
	if len(gzBig) >= limit {
		t.Fatalf("compressed body is %d bytes; the test needs it under the limit", len(gzBig))
	}
	corrupt := gzipped(t, one)
	corrupt[len(corrupt)-5] ^= 0xff // break the CRC
	tests := []struct {
		name     string
		encoding string
		body     []byte
		status   int
		prefix   string
	}{
		{"plain", "", one, 200, `{"code":200`},
		{"identity", "identity", one, 200, `{"code":200`},
		{"gzip", "gzip", gzipped(t, one), 200, `{"code":200`},
		{"deflate", "deflate", zlibbed(t, one), 200, `{"code":200`},
		{"exactly the limit", "", exact, 200, `{"code":200`},
		{"over the limit", "", big, 413, "Failed to buffer the request body: length limit exceeded"},
		{"over the limit after gunzip", "gzip", gzBig, 413, "Failed to buffer the request body"},
		{"corrupt gzip", "gzip", corrupt, 400, "Failed to buffer the request body: "},
		{"not gzip at all", "gzip", one, 400, "Failed to buffer the request body: "},
		{"br", "br", one, 415, ""},
		{"zstd", "zstd", one, 415, ""},
		{"foo", "foo", one, 415, ""},
		{"case matters", "GZIP", gzipped(t, one), 415, ""},
		{"stacked", "gzip, identity", gzipped(t, one), 415, ""},
		{"empty body", "", nil, 400, `{"code":400,"message":"SerdeJsonError# EOF while parsing a value at line 1 column 0"}`},
		{"bad JSON", "", []byte(`[{"a":1},`), 400, `{"code":400,"message":"SerdeJsonError# `},
		{"trailing characters", "", []byte(`{} {}`), 400, `{"code":400,"message":"SerdeJsonError# trailing characters`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := authHeader()
			if tt.encoding != "" {
				h.Set("Content-Encoding", tt.encoding)
			}
			rec := do(t, s.Handler(), "POST", "/api/default/app/_json", tt.body, h)
			if rec.Code != tt.status || !strings.HasPrefix(rec.Body.String(), tt.prefix) {
				t.Fatalf("got %d %q, want %d %q...", rec.Code, rec.Body, tt.status, tt.prefix)
			}
			if tt.status == 415 && rec.Header().Get("Accept-Encoding") == "" {
				t.Errorf("415 without Accept-Encoding")
			}
		})
	}
	t.Run("415 comes before auth", func(t *testing.T) {
		rec := do(t, s.Handler(), "POST", "/api/default/app/_json", one, http.Header{"Content-Encoding": {"br"}})
		if rec.Code != 415 {
			t.Errorf("status = %d, want 415", rec.Code)
		}
	})
	t.Run("413 comes after auth", func(t *testing.T) {
		rec := do(t, s.Handler(), "POST", "/api/default/app/_json", big, nil)
		if rec.Code != 401 {
			t.Errorf("status = %d, want 401", rec.Code)
		}
	})
	t.Run("log holds decoded bodies", func(t *testing.T) {
		var found bool
		for _, r := range s.Requests() {
			if r.Header.Get("Content-Encoding") == "deflate" {
				found = true
				if !bytes.Equal(r.Body, one) || r.Records != 1 || r.Successful != 1 || r.Status != 200 || !r.Done {
					t.Errorf("logged %+v", r)
				}
			}
		}
		if !found {
			t.Error("deflate request not logged")
		}
	})
}

func TestColumnLimitOverHTTP(t *testing.T) {
	s := New(Options{ColumnLimit: 2})
	rec := do(t, s.Handler(), "POST", "/api/default/app/_json", []byte(`[{"a":1},{"b":2}]`), authHeader())
	want := `{"code":200,"status":[{"name":"app","successful":0,"failed":0}]}`
	if rec.Code != 200 || rec.Body.String() != want {
		t.Fatalf("got %d %s, want 200 %s", rec.Code, rec.Body, want)
	}
	if n := len(s.Records()); n != 0 {
		t.Errorf("%d records stored, want 0", n)
	}
	reqs := s.Requests()
	if len(reqs) != 1 || reqs[0].Records != 2 || reqs[0].Successful+reqs[0].Failed != 0 {
		t.Errorf("Requests() = %+v", reqs)
	}
}

func TestRealClientGzip(t *testing.T) {
	s := Run(t, Options{})
	req, err := http.NewRequestWithContext(t.Context(), "POST", s.URL()+"/api/default/app/_json",
		bytes.NewReader(gzipped(t, []byte(`[{"a":1},{"b":2}]`))))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", BasicAuth(DefaultEmail, DefaultSecret))
	req.Header.Set("Content-Encoding", "gzip")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"successful":2`) {
		t.Fatalf("got %d %s", resp.StatusCode, body)
	}
	if n := len(s.StreamRecords("default", "app")); n != 2 {
		t.Errorf("stored %d records, want 2", n)
	}
}

func TestConcurrentRequests(t *testing.T) {
	s := Run(t, Options{})
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			resp, err := post(t, s.URL(), []byte(`[{"a":1},{"b":2}]`))
			if err != nil {
				errs <- err
				return
			}
			resp.Body.Close()
		})
		wg.Go(func() { _ = s.Requests(); _ = s.Records() })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := len(s.Records()); got != 2*n {
		t.Errorf("%d records, want %d", got, 2*n)
	}
	if got := s.Calls(); got != n {
		t.Errorf("Calls() = %d, want %d", got, n)
	}
}

// post sends body to the `_json` route of the server at base with the
// default credentials.
func post(t *testing.T, base string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(t.Context(), "POST", base+"/api/default/app/_json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", BasicAuth(DefaultEmail, DefaultSecret))
	return http.DefaultClient.Do(req)
}

func TestStartClose(t *testing.T) {
	s := New(Options{})
	if s.URL() != "" {
		t.Errorf("URL before Start = %q", s.URL())
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err == nil {
		t.Error("second Start succeeded")
	}
	if !strings.HasPrefix(s.URL(), "http://127.0.0.1:") {
		t.Errorf("URL = %q", s.URL())
	}
	resp, err := http.Get(s.URL() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	s.Close()
	s.Close() // safe twice
	if _, err := http.Get(s.URL() + "/healthz"); err == nil {
		t.Error("server still answers after Close")
	}
	if err := s.Start(); err == nil {
		t.Error("Start after Close succeeded")
	}
}
