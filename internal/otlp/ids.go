package otlp

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// TraceID is a W3C (and OpenTelemetry) trace id.
type TraceID [16]byte

// SpanID is a W3C (and OpenTelemetry) span id.
type SpanID [8]byte

// String is the id as 32 lower-case hex digits, as OpenObserve stores it.
func (t TraceID) String() string { return hex.EncodeToString(t[:]) }

// String is the id as 16 lower-case hex digits.
func (s SpanID) String() string { return hex.EncodeToString(s[:]) }

// IsZero reports whether the id is all zeros (invalid in W3C and OTLP).
func (t TraceID) IsZero() bool { return t == TraceID{} }

// IsZero reports whether the id is all zeros.
func (s SpanID) IsZero() bool { return s == SpanID{} }

// XRay is what an X-Amzn-Trace-Id header value says about the trace.
type XRay struct {
	// Trace is the W3C form of Root.
	Trace TraceID
	// Parent is the caller's segment (span) id; zero when absent.
	Parent SpanID
	// Sampled is Sampled=1.
	Sampled bool
}

// ParseXRay reads an X-Amzn-Trace-Id value such as
// "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1".
//
// The W3C trace id is the one OpenTelemetry's X-Ray propagator
// (go.opentelemetry.io/contrib/propagators/aws/xray) makes: the 8 hex
// digits of the root's epoch followed by its 24 hex digits of unique id, so
// spans the function's own OpenTelemetry SDK makes from the same header land
// in the same trace. ok is false when there is no well-formed Root of
// version 1.
func ParseXRay(v string) (x XRay, ok bool) {
	for part := range strings.SplitSeq(v, ";") {
		k, val, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "Root":
			// 1-<8 hex epoch>-<24 hex unique id>
			if len(val) != 35 || val[:2] != "1-" || val[10] != '-' {
				return XRay{}, false
			}
			if !decodeHex(x.Trace[:4], val[2:10]) || !decodeHex(x.Trace[4:], val[11:]) {
				return XRay{}, false
			}
			ok = true
		case "Parent":
			if len(val) != 16 || !decodeHex(x.Parent[:], val) {
				x.Parent = SpanID{}
			}
		case "Sampled":
			x.Sampled = val == "1"
		}
	}
	if x.Trace.IsZero() {
		return XRay{}, false
	}
	return x, ok
}

// decodeHex decodes s (upper or lower case) into exactly len(dst) bytes.
func decodeHex(dst []byte, s string) bool {
	if hex.DecodedLen(len(s)) != len(dst) {
		return false
	}
	_, err := hex.Decode(dst, []byte(s))
	return err == nil
}

// RequestTraceID is the trace id of an invocation without X-Ray tracing:
// the request id itself when it is a UUID (Lambda's are version 4: 122
// random bits, as random as any id we could draw), else a hash of it. It
// is a function of the request id alone, so it is the same whichever event
// of the invocation is seen first, and after the extension restarts: a log
// line that names its request id is joined to its trace even if the
// invocation's platform.start was never seen.
func RequestTraceID(requestID string) TraceID {
	var t TraceID
	if len(requestID) == 36 && decodeHex(t[:], strings.ReplaceAll(requestID, "-", "")) && !t.IsZero() {
		return t
	}
	h := sha256.Sum256([]byte("o2-extension/trace/" + requestID))
	copy(t[:], h[:])
	return t
}

// DeriveSpanID is the id of the span called name in the invocation
// requestID: deterministic for the same reason as RequestTraceID, and never
// zero.
func DeriveSpanID(requestID, name string) SpanID {
	h := sha256.Sum256([]byte("o2-extension/span/" + requestID + "/" + name))
	var s SpanID
	copy(s[:], h[:])
	if s.IsZero() {
		s[7] = 1
	}
	return s
}
