package openobserve

// The record encoder is reached through the client in production; the tests
// and benchmarks call it directly through these.

import "github.com/o2-extension/o2-extension/internal/telemetry"

// AppendRecords encodes evs as records (see encodeAll) and appends them to
// dst. o supplies MaxRecordBytes and Fields (nil means the defaults and no
// fields). All records share one backing array: the slices appended to dst
// must be treated as read-only.
func AppendRecords(dst [][]byte, evs []telemetry.Event, o *Options) [][]byte {
	var oo Options
	if o != nil {
		oo = *o
	}
	oo.setDefaults()
	e := newEncoder(oo.Fields, oo.MaxRecordBytes)
	buf, ends := e.encodeAll(evs, nil)
	start := 0
	for _, end := range ends {
		dst = append(dst, buf[start:end:end])
		start = end
	}
	return dst
}

// AppendRecords is the package-level AppendRecords with the client's
// options. It reuses the client's pre-encoded static fields, so it costs two
// allocations per call (the records' shared buffer and their offsets) plus
// dst's growth.
func (c *Client) AppendRecords(dst [][]byte, evs []telemetry.Event) [][]byte {
	buf, ends := c.enc.encodeAll(evs, nil)
	start := 0
	for _, end := range ends {
		dst = append(dst, buf[start:end:end])
		start = end
	}
	return dst
}
