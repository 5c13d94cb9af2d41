package telemetry

import "strings"

// Filter decides which events are forwarded to OpenObserve, to leave out
// what a user does not want to pay to store. It never hides an event from
// the extension itself: the flush modes still see platform.runtimeDone and
// the tenant report still sees platform.report. The zero Filter keeps
// everything.
type Filter struct {
	// ExcludeTypes are event types not forwarded: exact ("platform.start")
	// or, ending in '*', a prefix ("platform.*").
	ExcludeTypes []string
	// MinLevel, when set (one of Levels), leaves out function and extension
	// records whose level is known and below it. Records without a level
	// are always forwarded.
	MinLevel string
	// Annotate, if set, is called on every event before the filter decides
	// and before the event is buffered, on the listener's decoding
	// goroutine, in arrival order. What it sets on the event is what is
	// buffered and sent (the trace context of log records). It exists
	// because the listener buffers an event before its OnEvent hook (and so
	// the extension's Derive) sees it: a Derive hook can add records but
	// cannot change the buffered copy.
	Annotate func(*Event)
}

// Levels are the log levels a Filter knows, lowest first: the one list of
// them (config copies it, and a test in cmd/o2-extension holds the copy to
// it).
var Levels = []string{"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"}

// LevelAliases are the other words runtimes print for a level (Python's
// logging), and the level of Levels each ranks as.
var LevelAliases = map[string]string{"WARNING": "WARN", "CRITICAL": "FATAL"}

// LevelRank is the position of level in Levels (case-insensitive, an alias
// ranking as its level), or -1 when it is not a level.
func LevelRank(level string) int {
	for alias, l := range LevelAliases {
		if strings.EqualFold(level, alias) {
			level = l
			break
		}
	}
	for i, l := range Levels {
		if strings.EqualFold(level, l) {
			return i
		}
	}
	return -1
}

// Active reports whether the filter leaves anything out or annotates: the
// listener calls Keep only when it is.
func (f Filter) Active() bool {
	return len(f.ExcludeTypes) > 0 || LevelRank(f.MinLevel) > 0 || f.Annotate != nil
}

// Keep annotates e (see Annotate) and reports whether it is forwarded.
func (f Filter) Keep(e *Event) bool {
	if f.Annotate != nil {
		f.Annotate(e)
	}
	for _, t := range f.ExcludeTypes {
		if p, ok := strings.CutSuffix(t, "*"); ok {
			if strings.HasPrefix(e.Type, p) {
				return false
			}
		} else if e.Type == t {
			return false
		}
	}
	if e.Level == "" || (e.Type != "function" && e.Type != "extension") {
		return true
	}
	r := LevelRank(e.Level)
	return r < 0 || r >= LevelRank(f.MinLevel)
}
