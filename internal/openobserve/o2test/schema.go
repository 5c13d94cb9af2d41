package o2test

import (
	"encoding/json"
	"strconv"
	"strings"
)

// Column types, as OpenObserve's schema (arrow) names them.
const (
	typeUtf8    = "Utf8"
	typeInt64   = "Int64"
	typeFloat64 = "Float64"
	typeBoolean = "Boolean"
)

// columnType is the type a stream's column gets from the first value it
// sees (schema inference).
func columnType(v any) string {
	switch x := v.(type) {
	case bool:
		return typeBoolean
	case json.Number:
		if _, err := x.Int64(); err == nil {
			return typeInt64
		}
		return typeFloat64
	case int64:
		return typeInt64
	case float64:
		return typeFloat64
	}
	return typeUtf8
}

// castTo reports whether v can be stored in a column of type t, following
// cast_to_type in src/core/src/logs/mod.rs (lines 82-178 at fbab9b80): a
// string column takes anything (as its text); a number column takes numbers,
// numeric strings and bools; a bool column takes bools, numbers and
// "true"/"false".
func castTo(v any, t string) bool {
	switch t {
	case typeUtf8:
		return true
	case typeInt64:
		switch x := v.(type) {
		case json.Number, int64, float64, bool:
			return true
		case string:
			_, err := strconv.ParseInt(x, 10, 64)
			return err == nil
		}
	case typeFloat64:
		switch x := v.(type) {
		case json.Number, int64, float64, bool:
			return true
		case string:
			_, err := strconv.ParseFloat(x, 64)
			return err == nil
		}
	case typeBoolean:
		switch x := v.(type) {
		case bool, json.Number, int64, float64:
			return true
		case string:
			_, err := strconv.ParseBool(x)
			return err == nil && (x == "true" || x == "false") // Rust's bool parse takes only these
		}
	}
	return false
}

// castErrors returns OpenObserve's error for the fields of rec that its
// stream's columns cannot take ("Failed to cast <field> to type <T> ", one
// per field, set_parsing_error in src/core/src/logs/mod.rs line 182), or ""
// when every field fits. Fields the stream has not seen yet widen it.
func castErrors(cols map[string]string, rec map[string]any) string {
	var b strings.Builder
	for k, v := range rec {
		if k == "_timestamp" {
			continue
		}
		t, ok := cols[k]
		if !ok {
			continue
		}
		if !castTo(v, t) {
			b.WriteString("Failed to cast " + k + " to type " + t + " ")
		}
	}
	return b.String()
}
