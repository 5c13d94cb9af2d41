package o2test

import (
	"encoding/json"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestNormalizeStream(t *testing.T) {
	tests := []struct{ in, want string }{
		{"default", "default"},
		{"MyApp", "myapp"},
		{"stream-name with spaces!", "stream_name_with_spaces_"},
		{"a--b", "a_b"},
		{"ns:app_1", "ns:app_1"},
		{"hello世界", "hello_"},
		{"日本", "_"},
		{"__x", "__x"},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := NormalizeStream(tt.in); got != tt.want {
				t.Errorf("NormalizeStream(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestNormalizeKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"camelCaseTest", "camelcasetest"},
		{"test.key-here", "test_key_here"},
		{"hello世界", "hello__"},
		{"@timestamp", "_timestamp"},
		{"requestId", "requestid"},
		{"a  b", "a__b"}, // one for one, runs are not collapsed
		{"ÄÖü1", "äöü1"},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := NormalizeKey(tt.in); got != tt.want {
				t.Errorf("NormalizeKey(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// decode parses a test body the way the server does.
func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	v, err := parseJSON([]byte(s))
	if err != nil {
		t.Fatalf("parseJSON(%s): %v", s, err)
	}
	return v.(map[string]any)
}

func TestFlatten(t *testing.T) {
	tests := []struct {
		name  string
		level int
		in    string
		want  map[string]any
	}{
		{"nested joined", 3, `{"key":"value","nested_key":{"key":"value","foo":"bar"}}`,
			map[string]any{"key": "value", "nested_key_key": "value", "nested_key_foo": "bar"}},
		{"keys normalised at every level", 3, `{"key+bar":"value","@nested_key":{"#key":"value","&Foo":"Bar"}}`,
			map[string]any{"key_bar": "value", "_nested_key__key": "value", "_nested_key__foo": "Bar"}},
		{"depth 3 object kept as JSON string with original keys", 3, `{"a":{"b":{"C":{"D":1,"e":[1, 2.50]}}}}`,
			map[string]any{"a_b_c": `{"D":1,"e":[1,2.50]}`}},
		{"doc example", 3, `{"a":{"b":{"c":{"d":1}}}}`,
			map[string]any{"a_b_c": `{"d":1}`}},
		{"level 1", 1, `{"x":1,"info":{"b":{"c":1}}}`,
			map[string]any{"x": json.Number("1"), "info": `{"b":{"c":1}}`}},
		{"no limit", 0, `{"a":{"b":{"c":{"d":1}}}}`,
			map[string]any{"a_b_c_d": json.Number("1")}},
		{"arrays are JSON strings", 3, `{"s":{"a":[1,2.0,"b",null,true]}}`,
			map[string]any{"s_a": `[1,2.0,"b",null,true]`}},
		{"array of objects keeps sorted original keys", 3, `{"phoneNumbers":[{"type":"home","number":"1"}]}`,
			map[string]any{"phonenumbers": `[{"number":"1","type":"home"}]`}},
		{"empty object and array dropped", 3, `{"key":{"key2":{},"key3":"a"},"e":[]}`,
			map[string]any{"key_key3": "a"}},
		{"empty key", 3, `{"key":{"":{"":{"":"a"}}}}`,
			map[string]any{"key__": `{"":"a"}`}},
		{"serde escaping in strings", 3, `{"a":["<x>\n\u0001\"é"]}`,
			map[string]any{"a": `["<x>\n\u0001\"é"]`}},
		{"_timestamp wins over @timestamp", 3, `{"_timestamp":2,"@timestamp":1}`,
			map[string]any{"_timestamp": json.Number("2")}},
		{"nulls kept by flatten", 3, `{"n":null}`,
			map[string]any{"n": nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := flatten(decode(t, tt.in), tt.level)
			if !maps.Equal(got, tt.want) {
				t.Errorf("flatten(%s) = %#v, want %#v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseJSONErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "EOF while parsing a value at line 1 column 0"},
		{"  \n ", "EOF while parsing a value at line 2 column 1"},
		{`[{"a":1}`, "EOF while parsing a value"},
		{`{"a":1} x`, "trailing characters at line 1 column 9"},
		{"{\"a\":\"\xff\"}", "invalid unicode code point"},
		{strings.Repeat("[", 128) + strings.Repeat("]", 128), "recursion limit exceeded"},
		{"nope", "invalid character"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			_, err := parseJSON([]byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("parseJSON(%q) error = %v, want it to contain %q", tt.in, err, tt.want)
			}
		})
	}
	// serde's limit is 128 levels; 127 still parse.
	if _, err := parseJSON([]byte(strings.Repeat("[", 127) + strings.Repeat("]", 127))); err != nil {
		t.Errorf("127 levels: %v", err)
	}
}

func TestIngestRecords(t *testing.T) {
	now := time.Date(2026, 11, 3, 12, 0, 0, 0, time.UTC)
	nowUS := now.UnixMicro()
	tests := []struct {
		name      string
		opts      Options
		body      string
		ok, fail  int
		lastErr   string
		wantField map[string]any // checked on the first stored record
	}{
		{"lone object", Options{}, `{"Msg":"hi","n":null,"o":{"m":null}}`, 1, 0, "",
			map[string]any{"msg": "hi", "_timestamp": nowUS}},
		{"empty array", Options{}, `[]`, 0, 0, "", nil},
		{"non-objects fail", Options{}, `[1,"x",null,[],{"a":1}]`, 1, 4, errNotObject,
			map[string]any{"a": json.Number("1"), "_timestamp": nowUS}},
		{"missing timestamp is now", Options{}, `[{}]`, 1, 0, "",
			map[string]any{"_timestamp": nowUS}},
		{"null timestamp is now", Options{}, `[{"_timestamp":null}]`, 1, 0, "",
			map[string]any{"_timestamp": nowUS}},
		{"@timestamp sets the time", Options{}, `[{"@timestamp":"2026-11-03T11:00:00Z"}]`, 1, 0, "",
			map[string]any{"_timestamp": nowUS - time.Hour.Microseconds()}},
		{"ms timestamp stored in µs", Options{}, `[{"_timestamp":` + itoa(now.UnixMilli()) + `}]`, 1, 0, "",
			map[string]any{"_timestamp": nowUS}},
		{"unparseable timestamp", Options{}, `[{"_timestamp":"yesterday"},{"_timestamp":true}]`, 0, 2, errTimestamp, nil},
		{"array timestamp is a string and fails", Options{}, `[{"_timestamp":[1]}]`, 0, 1, errTimestamp, nil},
		{"6 hours old fails", Options{}, `[{"_timestamp":` + itoa(now.Add(-6*time.Hour).UnixMicro()) + `}]`, 0, 1,
			"Too old data, only last 5 hours data can be ingested. Data discarded. You can adjust ingestion max time by setting the environment variable ZO_INGEST_ALLOWED_UPTO=<max_hours>", nil},
		{"25 hours ahead fails", Options{}, `[{"_timestamp":` + itoa(now.Add(25*time.Hour).UnixMicro()) + `}]`, 0, 1,
			"Too far data, only future 24 hours data can be ingested. Data discarded. You can adjust ingestion max time by setting the environment variable ZO_INGEST_ALLOWED_IN_FUTURE=<max_hours>", nil},
		{"window edges accepted", Options{}, `[{"_timestamp":` + itoa(now.Add(-5*time.Hour).UnixMicro()) + `},{"_timestamp":` + itoa(now.Add(24*time.Hour).UnixMicro()) + `}]`, 2, 0, "", nil},
		{"configured window", Options{AllowedUpto: time.Hour}, `[{"_timestamp":` + itoa(now.Add(-2*time.Hour).UnixMicro()) + `}]`, 0, 1,
			"Too old data, only last 1 hours data can be ingested. Data discarded. You can adjust ingestion max time by setting the environment variable ZO_INGEST_ALLOWED_UPTO=<max_hours>", nil},
		{"last error wins", Options{}, `[5,{"_timestamp":"x"}]`, 0, 2, errTimestamp, nil},
		{"column limit reached is fine", Options{ColumnLimit: 3}, `[{"a":1},{"b":1}]`, 2, 0, "", nil},
		{"column limit exceeded drops silently", Options{ColumnLimit: 3}, `[{"a":1},{"b":1},{"c":1},7]`, 0, 1, errNotObject, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Now = func() time.Time { return now }
			s := New(tt.opts)
			v, err := parseJSON([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			res := s.ingest(v, now)
			if res.successful != tt.ok || res.failed != tt.fail || res.lastErr != tt.lastErr {
				t.Errorf("ingest = %d ok, %d failed, %q; want %d, %d, %q",
					res.successful, res.failed, res.lastErr, tt.ok, tt.fail, tt.lastErr)
			}
			if len(res.records) != tt.ok {
				t.Errorf("stored %d records, want %d", len(res.records), tt.ok)
			}
			if tt.wantField != nil && len(res.records) > 0 && !maps.Equal(res.records[0], tt.wantField) {
				t.Errorf("record = %#v, want %#v", res.records[0], tt.wantField)
			}
		})
	}
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// TestReplyShape checks the exact bytes of the 200 reply.
func TestReplyShape(t *testing.T) {
	s := New(Options{})
	tests := []struct{ body, want string }{
		{`[{"a":1},2]`, `{"code":200,"status":[{"name":"myapp","successful":1,"failed":1,"error":"flatten value must be an object"}]}`},
		{`[]`, `{"code":200,"status":[{"name":"myapp","successful":0,"failed":0}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.body, func(t *testing.T) {
			rec := do(t, s.Handler(), http.MethodPost, "/api/default/MyApp/_json", []byte(tt.body), authHeader())
			if rec.Code != 200 || rec.Body.String() != tt.want {
				t.Errorf("got %d %s, want 200 %s", rec.Code, rec.Body, tt.want)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
		})
	}
}

// A value that a stream's column cannot take counts as failed with
// OpenObserve's message, whatever request it comes in; the others are
// stored.
func TestTypeConflicts(t *testing.T) {
	s := New(Options{})
	post := func(body string) reply {
		t.Helper()
		v, err := parseJSON([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		res := s.ingest(v, time.Now())
		s.checkTypes("default/lambda", &res)
		return reply{successful: res.successful, failed: res.failed, body: []byte(res.lastErr)}
	}
	if r := post(`[{"n":1,"b":true,"s":"x"}]`); r.successful != 1 {
		t.Fatalf("first record: %+v", r)
	}
	tests := []struct {
		body      string
		ok, fails int
		err       string
	}{
		{`[{"n":"12"}]`, 1, 0, ""}, // a numeric string casts to Int64
		{`[{"n":"twelve"}]`, 0, 1, "Failed to cast n to type Int64 "},
		{`[{"b":"maybe"},{"b":1}]`, 1, 1, "Failed to cast b to type Boolean "},
		{`[{"s":5}]`, 1, 0, ""},                 // anything goes into Utf8
		{`[{"new":"x"},{"new":"y"}]`, 2, 0, ""}, // a new field widens the schema
	}
	for _, tt := range tests {
		r := post(tt.body)
		if r.successful != tt.ok || r.failed != tt.fails || string(r.body) != tt.err {
			t.Errorf("%s: %d stored, %d failed, error %q; want %d, %d, %q", tt.body, r.successful, r.failed, r.body, tt.ok, tt.fails, tt.err)
		}
	}
}
