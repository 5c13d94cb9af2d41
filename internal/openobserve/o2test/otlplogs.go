package o2test

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"time"

	collogspb "go.opentelemetry.io/proto/slim/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/slim/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/slim/otlp/logs/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// POST /api/{org}/v1/logs, as OpenObserve serves it at HEAD fbab9b80:
// router/mod.rs line 785 -> otlp_logs_write
// (src/api/ingest/src/request/logs/ingest.rs lines 467-545) ->
// handle_request (src/core/src/logs/otlp.rs lines 59-606).
//
// Content-Type (ingest.rs lines 473-476, 489-524): absent means protobuf;
// exactly "application/x-protobuf" is protobuf and exactly
// "application/json" is OTLP JSON (a `match` on the whole string: unlike
// traces and metrics, "application/json; charset=utf-8" is refused);
// anything else is 400 {"code":400,"message":"Bad Request"}. A body that
// does not decode is 400 "Invalid proto: …" or "Invalid json: …". JSON is
// read by serde with opentelemetry-proto's with-serde feature: trace and
// span ids are hex strings.
//
// The stream is the "stream-name" header (ZO_GRPC_STREAM_HEADER_KEY,
// ingest.rs lines 477-479), normalised (format_stream_name), "default"
// without it (otlp.rs lines 69-71).
//
// Records (otlp.rs lines 125-270): resource logs without scope logs are
// skipped; each log record's time is time_unix_nano, else
// observed_time_unix_nano, in µs; one outside the ingestion window is
// rejected ("Too old data …" / "Too far data …", counted in
// rejected_log_records). The stored record is the resource's attributes
// (type retained), instrumentation_library_name and _version (when not
// empty), _timestamp, severity (severity_text, else severity_number),
// body (get_val: scalars as strings), dropped_attributes_count, the
// record's attributes, and trace_id and span_id as lower-case hex when
// they are 16 and 8 bytes and not all zero; then flattened like any
// record.
//
// Reply (otlp.rs lines 527-605): 200 always, Content-Type after the
// request's encoding, but the body is the protobuf ExportLogsServiceResponse
// even for a JSON request (res.encode); partial_success is set when a
// record was rejected.

// LogRecord is one stored OTLP log record.
type LogRecord struct {
	Org, Stream string
	// Time is from time_unix_nano, else observed_time_unix_nano.
	Time time.Time
	// SeverityText and SeverityNumber are as sent.
	SeverityText   string
	SeverityNumber int32
	// Body is the body's string value ("" for another kind; see Fields).
	Body string
	// TraceID and SpanID are lower-case hex, empty when absent.
	TraceID, SpanID  string
	Attributes       map[string]any // the record's, keys as sent
	Resource         map[string]any // the resource's, keys as sent
	ScopeName, Scope string         // instrumentation scope name and version
	// Fields is the record OpenObserve stores: normalised, flattened
	// column names, as a query sees them.
	Fields map[string]any
	// Stored is when the stand-in stored it (before it answered).
	Stored time.Time
}

// Logs returns the stored OTLP log records, in arrival order.
func (s *Server) Logs() []LogRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]LogRecord, len(s.otlp.logs))
	for i, l := range s.otlp.logs {
		l.Attributes, l.Resource, l.Fields = maps.Clone(l.Attributes), maps.Clone(l.Resource), maps.Clone(l.Fields)
		out[i] = l
	}
	return out
}

// processOTLPLogs answers a /v1/logs request whose body was read, after
// authentication and the org check.
func (s *Server) processOTLPLogs(r *http.Request, org string, body []byte) reply {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		ct = contentTypeProto
	}
	var req collogspb.ExportLogsServiceRequest
	switch ct {
	case contentTypeProto:
		if err := proto.Unmarshal(body, &req); err != nil {
			return jsonReply(http.StatusBadRequest, errorBody{Code: 400, Message: "Invalid proto: " + err.Error()})
		}
	case contentTypeJSON:
		if err := unmarshalHexJSON(body, &req); err != nil {
			return jsonReply(http.StatusBadRequest, errorBody{Code: 400, Message: "Invalid json: " + err.Error()})
		}
	default:
		return jsonReply(http.StatusBadRequest, errorBody{Code: 400, Message: "Bad Request"})
	}
	stream := "default"
	if h := r.Header.Get("stream-name"); h != "" {
		stream = NormalizeStream(h)
	}
	recs, rejected, lastErr := s.logRecords(org, stream, &req, s.now())
	now := time.Now()
	for i := range recs {
		recs[i].Stored = now
	}
	s.mu.Lock()
	s.otlp.logs = append(s.otlp.logs, recs...)
	s.mu.Unlock()
	res := &collogspb.ExportLogsServiceResponse{}
	if rejected > 0 {
		res.PartialSuccess = &collogspb.ExportLogsPartialSuccess{RejectedLogRecords: rejected, ErrorMessage: lastErr}
	}
	out, _ := proto.Marshal(res)
	return reply{status: http.StatusOK, header: http.Header{"Content-Type": {ct}}, body: out}
}

// logRecords turns a request into stored records; see the comment above.
func (s *Server) logRecords(org, stream string, req *collogspb.ExportLogsServiceRequest, now time.Time) ([]LogRecord, int64, string) {
	minTS := now.UnixMicro() - s.upto.Microseconds()
	maxTS := now.UnixMicro() + s.future.Microseconds()
	var out []LogRecord
	var rejected int64
	var lastErr string
	for _, rl := range req.GetResourceLogs() {
		if len(rl.GetScopeLogs()) == 0 {
			continue
		}
		resource := attrMap(rl.GetResource().GetAttributes())
		for _, sl := range rl.GetScopeLogs() {
			for _, lr := range sl.GetLogRecords() {
				ns := lr.GetTimeUnixNano()
				if ns == 0 {
					ns = lr.GetObservedTimeUnixNano()
				}
				ts := int64(ns) / 1000
				if ts < minTS || ts > maxTS {
					rejected++
					if ts < minTS {
						lastErr = tooOld(s.upto)
					} else {
						lastErr = tooFar(s.future)
					}
					continue
				}
				rec := LogRecord{
					Org: org, Stream: stream, Time: time.UnixMicro(ts),
					SeverityText: lr.GetSeverityText(), SeverityNumber: int32(lr.GetSeverityNumber()),
					Body:       lr.GetBody().GetStringValue(),
					TraceID:    validID(lr.GetTraceId(), 16),
					SpanID:     validID(lr.GetSpanId(), 8),
					Attributes: attrMap(lr.GetAttributes()),
					Resource:   resource,
					ScopeName:  sl.GetScope().GetName(), Scope: sl.GetScope().GetVersion(),
				}
				rec.Fields = s.logFields(rl.GetResource().GetAttributes(), sl.GetScope(), lr, ts, rec.TraceID, rec.SpanID)
				out = append(out, rec)
			}
		}
	}
	return out, rejected, lastErr
}

// logFields is the record OpenObserve builds for one log record, in its
// order (later keys win), flattened.
func (s *Server) logFields(resource []*commonpb.KeyValue, scope *commonpb.InstrumentationScope, lr *logspb.LogRecord, ts int64, traceID, spanID string) map[string]any {
	rec := map[string]any{}
	for _, kv := range resource {
		rec[kv.GetKey()] = typedValue(kv.GetValue())
	}
	if n := scope.GetName(); n != "" {
		rec["instrumentation_library_name"] = n
	}
	if v := scope.GetVersion(); v != "" {
		rec["instrumentation_library_version"] = v
	}
	rec["_timestamp"] = ts
	if t := lr.GetSeverityText(); t != "" {
		rec["severity"] = t
	} else {
		rec["severity"] = int32(lr.GetSeverityNumber())
	}
	rec["body"] = stringValue(lr.GetBody())
	rec["dropped_attributes_count"] = lr.GetDroppedAttributesCount()
	for _, kv := range lr.GetAttributes() {
		rec[kv.GetKey()] = typedValue(kv.GetValue())
	}
	if traceID != "" {
		rec["trace_id"] = traceID
	}
	if spanID != "" {
		rec["span_id"] = spanID
	}
	// Through JSON, as the real record is: numbers become json.Number as
	// in every other stored record.
	b, err := json.Marshal(rec)
	if err != nil {
		return nil
	}
	v, err := parseJSON(b)
	if err != nil {
		return nil
	}
	return flatten(v.(map[string]any), s.flatLevel)
}

// validID is id as lower-case hex if it has n bytes and is not all zero
// (TraceId::INVALID, SpanId::INVALID), else "".
func validID(id []byte, n int) string {
	if len(id) != n {
		return ""
	}
	for _, b := range id {
		if b != 0 {
			return hex.EncodeToString(id)
		}
	}
	return ""
}

// stringValue is get_val (core/src/ingestion/grpc.rs lines 22-54): scalars
// as strings, arrays and maps of the same, bytes as UTF-8 text.
func stringValue(v *commonpb.AnyValue) any {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BoolValue, *commonpb.AnyValue_IntValue, *commonpb.AnyValue_DoubleValue:
		return scalarString(x)
	case *commonpb.AnyValue_ArrayValue:
		out := []any{}
		for _, e := range x.ArrayValue.GetValues() {
			out = append(out, stringValue(e))
		}
		return out
	case *commonpb.AnyValue_KvlistValue:
		out := map[string]any{}
		for _, kv := range x.KvlistValue.GetValues() {
			out[kv.GetKey()] = stringValue(kv.GetValue())
		}
		return out
	case *commonpb.AnyValue_BytesValue:
		return string(x.BytesValue)
	}
	return nil
}

func scalarString(v any) string {
	switch x := v.(type) {
	case *commonpb.AnyValue_BoolValue:
		if x.BoolValue {
			return "true"
		}
		return "false"
	case *commonpb.AnyValue_IntValue:
		b, _ := json.Marshal(x.IntValue)
		return string(b)
	case *commonpb.AnyValue_DoubleValue:
		b, _ := json.Marshal(x.DoubleValue)
		return string(b)
	}
	return ""
}

// typedValue is get_val_with_type_retained (grpc.rs lines 120-158).
func typedValue(v *commonpb.AnyValue) any {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BoolValue:
		return x.BoolValue
	case *commonpb.AnyValue_IntValue:
		return x.IntValue
	case *commonpb.AnyValue_DoubleValue:
		return x.DoubleValue
	case *commonpb.AnyValue_ArrayValue:
		out := []any{}
		for _, e := range x.ArrayValue.GetValues() {
			out = append(out, typedValue(e))
		}
		return out
	case *commonpb.AnyValue_KvlistValue:
		out := map[string]any{}
		for _, kv := range x.KvlistValue.GetValues() {
			out[kv.GetKey()] = typedValue(kv.GetValue())
		}
		return out
	case *commonpb.AnyValue_BytesValue:
		out := make([]any, len(x.BytesValue)) // serde writes a Vec<u8> as numbers
		for i, b := range x.BytesValue {
			out[i] = int(b)
		}
		return out
	}
	return nil
}

// unmarshalHexJSON reads OTLP JSON as serde does with opentelemetry-proto's
// with-serde feature: the log records' trace and span ids are hex. protojson
// reads them as base64, and 32 (16) hex digits decode as base64 into 24
// (12) bytes that encode back to the same digits; those are read as hex
// here. An id that is not hex of its length fails like serde's.
func unmarshalHexJSON(body []byte, req *collogspb.ExportLogsServiceRequest) error {
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(body, req); err != nil {
		return err
	}
	fromHex := func(b []byte, n int) ([]byte, error) {
		if len(b) == 0 {
			return b, nil
		}
		if len(b) == n*3/2 {
			if id, err := hex.DecodeString(base64.StdEncoding.EncodeToString(b)); err == nil {
				return id, nil
			}
		}
		return nil, errors.New("invalid hex id")
	}
	for _, rl := range req.GetResourceLogs() {
		for _, sl := range rl.GetScopeLogs() {
			for _, lr := range sl.GetLogRecords() {
				var err error
				if lr.TraceId, err = fromHex(lr.TraceId, 16); err != nil {
					return err
				}
				if lr.SpanId, err = fromHex(lr.SpanId, 8); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
