package lambdatest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestRegister(t *testing.T) {
	tests := []struct {
		name     string
		managed  bool
		extName  string
		body     string
		feature  string
		status   int
		errType  string
		wantAcct bool
	}{
		{name: "ok", extName: "ext", body: `{"events":["INVOKE","SHUTDOWN"]}`, status: 200},
		{name: "no body", extName: "ext", body: ``, status: 200},
		{name: "no events", extName: "ext", body: `{"events":[]}`, status: 200},
		{name: "account id", extName: "ext", body: `{"events":["SHUTDOWN"]}`, feature: "accountId", status: 200, wantAcct: true},
		{name: "empty name", extName: "", body: `{"events":["INVOKE"]}`, status: 403, errType: "Extension.InvalidExtensionName"},
		{name: "unknown event", extName: "ext", body: `{"events":["INVOKE","RESTORE"]}`, status: 403, errType: "Extension.InvalidEventType"},
		{name: "lowercase event", extName: "ext", body: `{"events":["invoke"]}`, status: 403, errType: "Extension.InvalidEventType"},
		{name: "INVOKE on managed instances", managed: true, extName: "ext", body: `{"events":["INVOKE","SHUTDOWN"]}`, status: 403, errType: "Extension.InvalidEventType"},
		{name: "SHUTDOWN on managed instances", managed: true, extName: "ext", body: `{"events":["SHUTDOWN"]}`, status: 200},
		{name: "configuration keys", extName: "ext", body: `{"events":[],"configurationKeys":["a"]}`, status: 403, errType: "InvalidRequestFormat"},
		{name: "bad json", extName: "ext", body: `{"events":`, status: 403, errType: "InvalidRequestFormat"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startInProcess(t, Options{ManagedInstances: tt.managed, FunctionName: "fn", AccountID: "111122223333"})
			c := newClient(t, p)
			hdr := map[string]string{hdrName: tt.extName}
			if tt.feature != "" {
				hdr[hdrFeature] = tt.feature
			}
			r := c.mustCall(http.MethodPost, "/2020-01-01/extension/register", hdr, []byte(tt.body))
			if r.status != tt.status || r.errorType() != tt.errType {
				t.Fatalf("register = %d %s, want %d %s", r.status, r.body, tt.status, tt.errType)
			}
			if tt.status != 200 {
				return
			}
			if id := r.header.Get(hdrIdentifier); !isUUID(id) {
				t.Errorf("identifier %q is not a UUID", id)
			}
			var resp map[string]string
			if err := json.Unmarshal(r.body, &resp); err != nil {
				t.Fatal(err)
			}
			if resp["functionName"] != "fn" || resp["functionVersion"] != "$LATEST" || resp["handler"] == "" {
				t.Errorf("register body = %s", r.body)
			}
			if acct, ok := resp["accountId"]; ok != tt.wantAcct || (ok && acct != "111122223333") {
				t.Errorf("accountId = %q (present %v), want present %v", acct, ok, tt.wantAcct)
			}
		})
	}
}

func TestRegisterLimits(t *testing.T) {
	t.Run("duplicate name", func(t *testing.T) {
		p := startInProcess(t, Options{})
		mustRegister(t, p, "ext", "INVOKE")
		if r := newClient(t, p).register("ext", "INVOKE"); r.status != 403 || r.errorType() != "Extension.InvalidExtensionState" {
			t.Fatalf("second register = %d %s", r.status, r.body)
		}
	})
	t.Run("too many", func(t *testing.T) {
		p := startInProcess(t, Options{})
		for i := range maxExtensions {
			mustRegister(t, p, fmt.Sprintf("ext%d", i))
		}
		if r := newClient(t, p).register("one-too-many"); r.status != 403 || r.errorType() != "Extension.TooManyExtensions" {
			t.Fatalf("11th register = %d %s", r.status, r.body)
		}
	})
	t.Run("after init", func(t *testing.T) {
		p := startInProcess(t, Options{})
		if err := p.CompleteInit(t.Context(), 0); err != nil {
			t.Fatal(err)
		}
		if r := newClient(t, p).register("late", "INVOKE"); r.status != 403 || r.errorType() != "Extension.RegistrationClosed" {
			t.Fatalf("late register = %d %s", r.status, r.body)
		}
	})
}

func TestIdentifierErrors(t *testing.T) {
	p := startInProcess(t, Options{})
	mustRegister(t, p, "ext", "INVOKE")
	calls := []struct {
		method, path string
		hdr          map[string]string
	}{
		{http.MethodGet, "/2020-01-01/extension/event/next", nil},
		{http.MethodPost, "/2020-01-01/extension/init/error", map[string]string{hdrErrorType: "Extension.Boom"}},
		{http.MethodPost, "/2020-01-01/extension/exit/error", map[string]string{hdrErrorType: "Extension.Boom"}},
		{http.MethodPut, "/2022-07-01/telemetry", nil},
	}
	ids := []struct {
		name, id, errType string
	}{
		{"missing", "", "Extension.MissingExtensionIdentifier"},
		{"not a uuid", "not-a-uuid", "Extension.InvalidExtensionIdentifier"},
		{"unknown", newUUID(), "Extension.UnknownExtensionIdentifier"},
	}
	for _, call := range calls {
		for _, id := range ids {
			t.Run(call.path+"/"+id.name, func(t *testing.T) {
				hdr := map[string]string{}
				for k, v := range call.hdr {
					hdr[k] = v
				}
				if id.id != "" {
					hdr[hdrIdentifier] = id.id
				}
				r := newClient(t, p).mustCall(call.method, call.path, hdr, []byte(`{}`))
				if r.status != 403 || r.errorType() != id.errType {
					t.Fatalf("%s %s = %d %s, want 403 %s", call.method, call.path, r.status, r.body, id.errType)
				}
			})
		}
	}
}

func TestErrorCalls(t *testing.T) {
	t.Run("missing error type header", func(t *testing.T) {
		p := startInProcess(t, Options{})
		c := mustRegister(t, p, "ext", "INVOKE")
		r := c.mustCall(http.MethodPost, "/2020-01-01/extension/init/error", map[string]string{hdrIdentifier: c.id}, nil)
		if r.status != 403 || r.errorType() != "Extension.MissingHeader" {
			t.Fatalf("init/error = %d %s", r.status, r.body)
		}
	})
	t.Run("init error fails init and later calls", func(t *testing.T) {
		p := startInProcess(t, Options{})
		c := mustRegister(t, p, "ext", "INVOKE")
		r := c.mustCall(http.MethodPost, "/2020-01-01/extension/init/error",
			map[string]string{hdrIdentifier: c.id, hdrErrorType: "Extension.ConfigInvalid"}, []byte(`{"errorMessage":"bad"}`))
		if r.status != 202 || !strings.Contains(string(r.body), `"OK"`) {
			t.Fatalf("init/error = %d %s", r.status, r.body)
		}
		if err := p.CompleteInit(t.Context(), 0); err == nil || !strings.Contains(err.Error(), "Extension.ConfigInvalid") {
			t.Fatalf("CompleteInit = %v, want the init error", err)
		}
		if _, err := p.Invoke(t.Context(), Invocation{}); err == nil {
			t.Fatal("Invoke after a failed init succeeded")
		}
		if _, err := c.next(t.Context()); err == nil || !strings.Contains(err.Error(), "Extension.InvalidExtensionState") {
			t.Fatalf("next after init/error = %v", err)
		}
	})
}

func TestSubscribeHTTP(t *testing.T) {
	buf := func(items, bytes, timeout int) map[string]int {
		return map[string]int{"maxItems": items, "maxBytes": bytes, "timeoutMs": timeout}
	}
	tests := []struct {
		name      string
		o         Options
		afterInit bool
		req       func(l *listener) map[string]any
		status    int
		errType   string
	}{
		{name: "ok", req: func(l *listener) map[string]any { return subRequest("2022-12-13", l, nil) }, status: 200},
		{name: "localhost refused", req: func(l *listener) map[string]any {
			r := subRequest("2022-12-13", l, nil)
			r["destination"] = map[string]string{"protocol": "HTTP", "URI": strings.Replace(l.uri(), "sandbox.localdomain", "localhost", 1)}
			return r
		}, status: 400, errType: "ValidationError"},
		{name: "buffering out of range", req: func(l *listener) map[string]any {
			return subRequest("2022-12-13", l, buf(999, 262144, 25))
		}, status: 400, errType: "ValidationError"},
		{name: "after init", afterInit: true, req: func(l *listener) map[string]any { return subRequest("2022-12-13", l, nil) },
			status: 403, errType: "Telemetry.SubscriptionClosed"},
		{name: "not supported", o: Options{TelemetryNotSupported: true},
			req: func(l *listener) map[string]any { return subRequest("2022-12-13", l, nil) }, status: 202, errType: "Telemetry.NotSupported"},
		{name: "managed wants 2025-01-29", o: Options{ManagedInstances: true},
			req: func(l *listener) map[string]any { return subRequest("2022-12-13", l, nil) }, status: 400, errType: "ValidationError"},
		{name: "managed 2025-01-29", o: Options{ManagedInstances: true},
			req: func(l *listener) map[string]any { return subRequest("2025-01-29", l, nil) }, status: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startInProcess(t, tt.o)
			l := newListener(t, p, nil)
			c := mustRegister(t, p, "ext", "SHUTDOWN")
			if tt.afterInit {
				c.runLoop(t, func(nextEvent) {})
				if err := p.CompleteInit(t.Context(), 1); err != nil {
					t.Fatal(err)
				}
			}
			r := c.subscribe(tt.req(l))
			if r.status != tt.status || (tt.errType != "" && r.errorType() != tt.errType) {
				t.Fatalf("subscribe = %d %s, want %d %s", r.status, r.body, tt.status, tt.errType)
			}
			if tt.status == 200 {
				if string(r.body) != `"OK"` {
					t.Errorf("body = %s, want \"OK\"", r.body)
				}
				if !has(p.Events(), "platform.telemetrySubscription", "") {
					t.Error("no platform.telemetrySubscription event")
				}
			}
		})
	}
}

func TestParseSubscription(t *testing.T) {
	const dest = `"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:4243/path"}`
	tests := []struct {
		name    string
		managed bool
		body    string
		wantErr string
		want    subscription
	}{
		{name: "defaults", body: `{"schemaVersion":"2022-07-01","types":["platform"],` + dest + `}`,
			want: subscription{schema: "2022-07-01", maxItems: 10000, maxBytes: 262144, timeout: time.Second, url: "http://127.0.0.1:4243/path"}},
		{name: "buffering", body: `{"schemaVersion":"2022-12-13","types":["function"],"buffering":{"maxItems":1000,"maxBytes":1048576,"timeoutMs":25},` + dest + `}`,
			want: subscription{schema: "2022-12-13", maxItems: 1000, maxBytes: 1048576, timeout: 25 * time.Millisecond, url: "http://127.0.0.1:4243/path"}},
		{name: "sandbox host", body: `{"schemaVersion":"2025-01-29","types":["extension"],"destination":{"protocol":"HTTP","URI":"http://sandbox:9000"}}`,
			want: subscription{schema: "2025-01-29", maxItems: 10000, maxBytes: 262144, timeout: time.Second, url: "http://127.0.0.1:9000"}},
		{name: "no schema", body: `{"types":["platform"],` + dest + `}`, wantErr: "schemaVersion"},
		{name: "bad schema", body: `{"schemaVersion":"2020-08-15","types":["platform"],` + dest + `}`, wantErr: "schemaVersion"},
		{name: "managed old schema", managed: true, body: `{"schemaVersion":"2022-12-13","types":["platform"],` + dest + `}`, wantErr: "Managed"},
		{name: "no types", body: `{"schemaVersion":"2022-12-13","types":[],` + dest + `}`, wantErr: "types"},
		{name: "bad type", body: `{"schemaVersion":"2022-12-13","types":["platform","logs"],` + dest + `}`, wantErr: "logs"},
		{name: "maxItems low", body: `{"schemaVersion":"2022-12-13","types":["platform"],"buffering":{"maxItems":999},` + dest + `}`, wantErr: "maxItems"},
		{name: "maxItems high", body: `{"schemaVersion":"2022-12-13","types":["platform"],"buffering":{"maxItems":10001},` + dest + `}`, wantErr: "maxItems"},
		{name: "maxBytes low", body: `{"schemaVersion":"2022-12-13","types":["platform"],"buffering":{"maxBytes":262143},` + dest + `}`, wantErr: "maxBytes"},
		{name: "maxBytes high", body: `{"schemaVersion":"2022-12-13","types":["platform"],"buffering":{"maxBytes":1048577},` + dest + `}`, wantErr: "maxBytes"},
		{name: "timeout low", body: `{"schemaVersion":"2022-12-13","types":["platform"],"buffering":{"timeoutMs":24},` + dest + `}`, wantErr: "timeoutMs"},
		{name: "timeout high", body: `{"schemaVersion":"2022-12-13","types":["platform"],"buffering":{"timeoutMs":30001},` + dest + `}`, wantErr: "timeoutMs"},
		{name: "no destination", body: `{"schemaVersion":"2022-12-13","types":["platform"]}`, wantErr: "destination"},
		{name: "tcp", body: `{"schemaVersion":"2022-12-13","types":["platform"],"destination":{"protocol":"TCP","port":4243}}`, wantErr: "TCP"},
		{name: "https", body: `{"schemaVersion":"2022-12-13","types":["platform"],"destination":{"protocol":"HTTP","URI":"https://sandbox.localdomain:4243"}}`, wantErr: "scheme"},
		{name: "localhost", body: `{"schemaVersion":"2022-12-13","types":["platform"],"destination":{"protocol":"HTTP","URI":"http://localhost:4243"}}`, wantErr: "host"},
		{name: "ip", body: `{"schemaVersion":"2022-12-13","types":["platform"],"destination":{"protocol":"HTTP","URI":"http://127.0.0.1:4243"}}`, wantErr: "host"},
		{name: "no port", body: `{"schemaVersion":"2022-12-13","types":["platform"],"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain/x"}}`, wantErr: "port"},
		{name: "not json", body: `[`, wantErr: "invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSubscription([]byte(tt.body), tt.managed)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got.types = nil
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestHandlerWithoutSocket reaches the APIs through an http.RoundTripper
// that calls Handler() directly.
func TestHandlerWithoutSocket(t *testing.T) {
	p := startInProcess(t, Options{})
	rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		rec := httptest.NewRecorder()
		p.Handler().ServeHTTP(rec, r)
		return rec.Result(), nil
	})
	req, _ := http.NewRequest(http.MethodPost, "http://lambda/2020-01-01/extension/register", strings.NewReader(`{"events":["INVOKE"]}`))
	req.Header.Set(hdrName, "in-memory")
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !isUUID(resp.Header.Get(hdrIdentifier)) {
		t.Fatalf("register = %d %v", resp.StatusCode, resp.Header)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
