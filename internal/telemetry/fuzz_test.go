package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzDecodeBatch feeds arbitrary bodies to DecodeBatch and to the
// listener's handler. The seed corpus is in testdata/fuzz/FuzzDecodeBatch.
//
// Invariants, for every body:
//   - nothing panics;
//   - every event has a type, a record that is valid JSON and was cut from
//     the body, valid UTF-8 strings and a time;
//   - the handler answers a POST with 200.
//
// And when the body is a well-formed JSON array:
//   - every element is either an event or counted as malformed, and the
//     events are exactly the elements that decode on their own, in order
//     (one bad element does not cost its neighbours);
//   - a prefix of the body yields a prefix of its events (a truncated batch
//     keeps what came before the cut);
//   - the same array followed by a second value ("[…][…]") gives the same
//     events and counts exactly one more malformed value.
//
// Not an invariant: a malformed body always counting at least one malformed
// event. A body cut between two elements loses nothing decodable and counts
// nothing.
func FuzzDecodeBatch(f *testing.F) {
	// A small cap so that big inputs exercise the handler's truncation too;
	// room for the whole queue, so that a decoder slowed by a loaded machine
	// never makes the handler refuse a body.
	l, err := Listen(ListenerOptions{Addr: "127.0.0.1:0", MaxBody: 16 << 10, MaxHeld: 64 << 20, Buffer: NewBuffer(64 << 10), Now: nowFunc})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		if err := l.Close(context.Background()); err != nil {
			f.Errorf("Close: %v", err)
		}
	})

	f.Fuzz(func(t *testing.T, body []byte) {
		evs, malformed, _ := decode(body)
		checkEvents(t, body, evs)

		if elems, ok := jsonArray(body); ok {
			if len(evs)+malformed != len(elems) {
				t.Errorf("%d events + %d malformed, want %d elements", len(evs), malformed, len(elems))
			}
			var want []string
			for _, el := range elems {
				var w wireEvent
				if json.Unmarshal(el, &w) == nil && w.Type != "" && len(w.Record) > 0 {
					want = append(want, string(w.Record))
				}
			}
			if len(want) != len(evs) {
				t.Fatalf("%d events, want %d (the elements that decode alone)", len(evs), len(want))
			}
			for i := range want {
				if string(evs[i].Record) != want[i] {
					t.Errorf("event %d record = %q, want %q", i, evs[i].Record, want[i])
				}
			}

			twice := append(append([]byte(nil), body...), body...)
			evs2, malformed2, _ := decode(twice)
			if len(evs2) != len(evs) || malformed2 != malformed+1 {
				t.Errorf("body twice: %d events, %d malformed; want %d, %d", len(evs2), malformed2, len(evs), malformed+1)
			}

			cut := len(body) / 2
			prefix, _, _ := decode(body[:cut])
			if len(prefix) > len(evs) {
				t.Fatalf("prefix of %d bytes gave %d events, the whole body %d", cut, len(prefix), len(evs))
			}
			for i, p := range prefix {
				e := evs[i]
				if p.Type != e.Type || !bytes.Equal(p.Record, e.Record) || p.RequestID != e.RequestID || p.Level != e.Level || !p.Time.Equal(e.Time) {
					t.Errorf("prefix event %d = %+v, want %+v", i, p, e)
				}
			}
		}

		rec := httptest.NewRecorder()
		l.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body)))
		if rec.Code != http.StatusOK {
			t.Errorf("handler answered %d, want 200", rec.Code)
		}
	})
}

// jsonArray reports whether body is a well-formed JSON array, and its
// elements.
func jsonArray(body []byte) ([]json.RawMessage, bool) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '[' {
		return nil, false
	}
	var elems []json.RawMessage
	if json.Unmarshal(body, &elems) != nil {
		return nil, false
	}
	return elems, true
}

// FuzzScanMatchesDecoder holds DecodeBatch's fast path for valid bodies to
// the general path's results, field by field: the scan must decode exactly
// what encoding/json would.
func FuzzScanMatchesDecoder(f *testing.F) {
	f.Add([]byte(`[{"time":"2025-06-01T08:00:00Z","type":"function","record":"a\tb"}]`))
	f.Add([]byte(`[{"TIME":"2025-06-01T08:00:00Z","Type":"function","RECORD":"x"},{"type":"function","type":null,"record":null}, 5, null, {"type":1,"record":2}]`))
	f.Add([]byte(`[{"time":"2025-06-01T08:00:00Z","type":"platform.start","record":{"requestId":"0c1f9a52-7d1e-4b8e-9a64-2f3c5d7e9b10"}},{"type":"function","record":"0c1f9a52-7d1e-4b8e-9a64-2f3c5d7e9b10\tINFO\tx","time":"x"}]`))
	f.Add([]byte(`[{"t\u0069me":"1","ty\"pe":"q","record":"\\\"","type":"f\u0075nction","k":[{"a":"]}"}]}]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if !json.Valid(body) {
			return
		}
		var fastBad, slowBad int
		c1, c2 := "", ""
		fast := DecodeBatch(body, nowFunc, &c1, func() { fastBad++ })
		slow := decodeStream(body, nowFunc, &c2, func() { slowBad++ })
		if len(fast) != len(slow) || fastBad != slowBad {
			t.Fatalf("fast path: %d events, %d malformed; decoder: %d events, %d malformed", len(fast), fastBad, len(slow), slowBad)
		}
		for i := range fast {
			a, b := fast[i], slow[i]
			if !a.Time.Equal(b.Time) || a.Type != b.Type || !bytes.Equal(a.Record, b.Record) || a.RequestID != b.RequestID || a.Level != b.Level {
				t.Fatalf("event %d: fast %+v, decoder %+v", i, a, b)
			}
		}
		if c1 != c2 {
			t.Fatalf("current request: fast %q, decoder %q", c1, c2)
		}
	})
}

// FuzzValid holds the listener's validator to json.Valid.
func FuzzValid(f *testing.F) {
	for _, s := range []string{`[]`, ` {"a":[1,-0.5e+7,true,false,null,"\u00e9\n"]} `, `[1,]`, `{"a" 1}`, `"\x01"`, `01`, `1.`, `-`, `[` + "\xff" + `]`, `"` + "\xff" + `"`, `"\ud800"`, `1e`, `[1 2]`, "\t\n\r 5"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := valid(b), json.Valid(b); got != want {
			t.Fatalf("valid(%q) = %v, json.Valid %v", b, got, want)
		}
	})
}
