package o2test

import (
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// The unit of a numeric timestamp is guessed from its size, with 1971-01-01
// (one year after the epoch) as the cut-off in each unit (time.rs BASE_TIME).
const (
	baseNanos  = 31_536_000_000_000_000
	baseMicros = 31_536_000_000_000
	baseMillis = 31_536_000_000
)

var errTimeFormat = errors.New("invalid time format")

// toMicros is parse_i64_to_timestamp_micros: 0 means now, otherwise the unit
// is guessed from the magnitude. Overflow wraps, as in a Rust release build.
func toMicros(v, nowUS int64) int64 {
	switch {
	case v == 0:
		return nowUS
	case v > baseNanos:
		return v / 1000
	case v > baseMicros:
		return v
	case v > baseMillis:
		return v * 1000
	default:
		return v * 1_000_000
	}
}

// parseTimestamp is parse_timestamp_micro_from_value applied to a flattened
// `_timestamp`: numbers by magnitude (floats truncated), strings by the
// rules of parse_str_to_time, anything else an error.
func parseTimestamp(v any, nowUS int64) (int64, error) {
	switch x := v.(type) {
	case json.Number:
		return parseNumber(string(x), nowUS)
	case string:
		us, err := parseStrMicros(x, nowUS)
		if err != nil {
			return 0, err
		}
		// The real code applies the magnitude rule a second time to the
		// result (parse_timestamp_micro_from_str); it only matters for
		// dates in 1970.
		return toMicros(us, nowUS), nil
	default:
		return 0, errTimeFormat
	}
}

// parseNumber follows serde_json's arbitrary-precision Number: as_i64, then
// as_u64 (cast to i64, so it wraps), then as_f64 only for text with a
// fraction or exponent that gives a finite value.
func parseNumber(s string, nowUS int64) (int64, error) {
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return toMicros(i, nowUS), nil
	}
	if u, err := strconv.ParseUint(s, 10, 64); err == nil {
		return toMicros(int64(u), nowUS), nil
	}
	if strings.ContainsAny(s, ".eE") {
		f, err := strconv.ParseFloat(s, 64)
		if err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
			return toMicros(floatToInt(f), nowUS), nil
		}
	}
	return 0, errTimeFormat
}

// floatToInt is Rust's `f as i64`: truncation, saturating at the bounds,
// NaN as 0.
func floatToInt(f float64) int64 {
	switch {
	case math.IsNaN(f):
		return 0
	case f >= math.MaxInt64:
		return math.MaxInt64
	case f <= math.MinInt64:
		return math.MinInt64
	default:
		return int64(f)
	}
}

// parseStrMicros is parse_str_to_timestamp_micros: an integer string by
// magnitude, else parse_str_to_time.
func parseStrMicros(s string, nowUS int64) (int64, error) {
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return toMicros(i, nowUS), nil
	}
	return parseStrToTime(s, nowUS)
}

// parseStrToTime follows time.rs parse_str_to_time, returning µs:
//   - a decimal string is truncated to an integer and taken by magnitude;
//   - surrounding double quotes are trimmed;
//   - 19 characters with a space: "YYYY-MM-DD HH:MM:SS", UTC;
//   - with a "T" and no space: 19 characters "YYYY-MM-DDTHH:MM:SS" (UTC);
//     exactly 3 or 6 fraction digits and no zone, UTC; anything else
//     RFC 3339 (a zone is required);
//   - everything else RFC 2822.
func parseStrToTime(s string, nowUS int64) (int64, error) {
	if f, ok := rustParseFloat(s); ok {
		v := toMicros(floatToInt(f), nowUS)
		// chrono's timestamp_nanos(v*1000).timestamp_micros(), wrapping
		// like the original for absurd values.
		return floorDiv(v*1000, 1000), nil
	}
	s = strings.Trim(s, `"`)
	var t time.Time
	var err error
	switch {
	case strings.Contains(s, " ") && len(s) == 19:
		t, err = time.ParseInLocation("2006-01-02 15:04:05", s, time.UTC)
	case strings.Contains(s, "T") && !strings.Contains(s, " "):
		switch {
		case len(s) == 19:
			t, err = time.ParseInLocation("2006-01-02T15:04:05", s, time.UTC)
		case strings.Contains(s, "."):
			frac := s[strings.LastIndexByte(s, '.')+1:]
			zoneLess := strings.IndexFunc(frac, func(r rune) bool { return r < '0' || r > '9' }) < 0
			switch {
			case zoneLess && len(frac) == 3:
				t, err = time.ParseInLocation("2006-01-02T15:04:05.000", s, time.UTC)
			case zoneLess && len(frac) == 6:
				t, err = time.ParseInLocation("2006-01-02T15:04:05.000000", s, time.UTC)
			default:
				t, err = parseRFC3339(s)
			}
		default:
			t, err = parseRFC3339(s)
		}
	default:
		t, err = parseRFC2822(s)
	}
	if err != nil {
		return 0, errTimeFormat
	}
	return t.UnixMicro(), nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// rustParseFloat accepts what Rust's f64::from_str accepts: an optional
// sign, then digits with an optional fraction and exponent, or inf,
// infinity, nan. Go's extra forms (hex floats, underscores) are refused,
// and an out-of-range value is ±Inf rather than an error.
func rustParseFloat(s string) (float64, bool) {
	if s == "" || strings.ContainsAny(s, "xXpP_") {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
			return f, true
		}
		return 0, false
	}
	return f, true
}

// parseRFC3339 parses like chrono's parse_from_rfc3339, which also accepts
// a lower-case "z".
func parseRFC3339(s string) (time.Time, error) {
	if strings.HasSuffix(s, "z") {
		s = s[:len(s)-1] + "Z"
	}
	return time.Parse(time.RFC3339Nano, s)
}

// rfc2822Zones are the obsolete zone names of RFC 2822 §4.3. Any other
// alphabetic zone means -0000, as in chrono.
var rfc2822Zones = map[string]int{
	"UT": 0, "GMT": 0,
	"EST": -5, "EDT": -4, "CST": -6, "CDT": -5,
	"MST": -7, "MDT": -6, "PST": -8, "PDT": -7,
}

var shortMonths = []string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}

var shortDays = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// parseRFC2822 parses like chrono's parse_from_rfc2822:
// [day-of-week ","] day month year hour ":" minute [":" second] zone, with
// free white space, case-insensitive names, obsolete 2- and 3-digit years,
// obsolete zone names (so "CST" is -0600, which Go's net/mail gets wrong) and
// a day of week that must match the date. Comments are not accepted.
func parseRFC2822(s string) (time.Time, error) {
	p := &scanner{s: s}
	wday := -1
	p.space()
	if name, ok := p.peekLetters(); ok && len(name) == 3 {
		if i := indexFold(shortDays, name); i >= 0 {
			save := p.i
			p.i += 3
			p.space()
			if p.byte(',') {
				wday = i
			} else {
				p.i = save
			}
		}
	}
	p.space()
	day, ok := p.digits(1, 2)
	if !ok || !p.space() {
		return time.Time{}, errTimeFormat
	}
	name, ok := p.peekLetters()
	mon := indexFold(shortMonths, name)
	if !ok || len(name) != 3 || mon < 0 {
		return time.Time{}, errTimeFormat
	}
	p.i += 3
	if !p.space() {
		return time.Time{}, errTimeFormat
	}
	start := p.i
	year, ok := p.digits(2, 9)
	n := p.i - start
	if !ok || !p.space() {
		return time.Time{}, errTimeFormat
	}
	switch {
	case n == 2 && year < 50:
		year += 2000
	case n == 2 || n == 3:
		year += 1900
	}
	hour, ok1 := p.digits(2, 2)
	p.space()
	ok2 := p.byte(':')
	p.space()
	minute, ok3 := p.digits(2, 2)
	if !ok1 || !ok2 || !ok3 {
		return time.Time{}, errTimeFormat
	}
	sec := 0
	save := p.i
	p.space()
	if p.byte(':') {
		p.space()
		if sec, ok = p.digits(2, 2); !ok {
			return time.Time{}, errTimeFormat
		}
	} else {
		p.i = save
	}
	if !p.space() {
		return time.Time{}, errTimeFormat
	}
	offset, ok := p.zone()
	if !ok {
		return time.Time{}, errTimeFormat
	}
	p.space()
	if p.i != len(p.s) || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, errTimeFormat
	}
	loc := time.FixedZone("", offset)
	t := time.Date(year, time.Month(mon+1), day, hour, minute, sec, 0, loc)
	if t.Day() != day || int(t.Month()) != mon+1 {
		return time.Time{}, errTimeFormat // e.g. 31 Feb
	}
	if wday >= 0 && int(t.Weekday()) != wday {
		return time.Time{}, errTimeFormat
	}
	return t.UTC(), nil
}

// scanner is a cursor over an RFC 2822 date.
type scanner struct {
	s string
	i int
}

// space skips white space and reports whether there was any.
func (p *scanner) space() bool {
	start := p.i
	for p.i < len(p.s) {
		r := rune(p.s[p.i])
		if r >= 0x80 || !unicode.IsSpace(r) {
			break
		}
		p.i++
	}
	return p.i > start
}

func (p *scanner) byte(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

// digits reads between lo and hi ASCII digits.
func (p *scanner) digits(lo, hi int) (int, bool) {
	start := p.i
	n := 0
	for p.i < len(p.s) && p.i-start < hi && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		n = n*10 + int(p.s[p.i]-'0')
		p.i++
	}
	if p.i-start < lo || (p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9') {
		return 0, false
	}
	return n, true
}

func (p *scanner) peekLetters() (string, bool) {
	j := p.i
	for j < len(p.s) && (p.s[j]|0x20) >= 'a' && (p.s[j]|0x20) <= 'z' {
		j++
	}
	return p.s[p.i:j], j > p.i
}

// zone reads "+hhmm", "-hhmm" or a zone name, returning seconds east of UTC.
func (p *scanner) zone() (int, bool) {
	if p.i < len(p.s) && (p.s[p.i] == '+' || p.s[p.i] == '-') {
		sign := 1
		if p.s[p.i] == '-' {
			sign = -1
		}
		p.i++
		v, ok := p.digits(4, 4)
		if !ok || v/100 > 23 || v%100 > 59 {
			return 0, false
		}
		return sign * ((v/100)*3600 + (v%100)*60), true
	}
	name, ok := p.peekLetters()
	if !ok {
		return 0, false
	}
	p.i += len(name)
	return rfc2822Zones[strings.ToUpper(name)] * 3600, true
}

func indexFold(list []string, s string) int {
	for i, v := range list {
		if strings.EqualFold(v, s) {
			return i
		}
	}
	return -1
}
