package openobserve

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
)

// The one writer is shared by the requests in flight: bodies compressed at
// once, of different sizes, each decompress (with the standard library's
// reader) to exactly themselves, and none carries another's bytes.
func TestGzipBytesConcurrent(t *testing.T) {
	bodies := make([][]byte, 8)
	for i := range bodies {
		bodies[i] = []byte(strings.Repeat(fmt.Sprintf(`{"body":%d,"line":"%s"},`, i, strings.Repeat(string(rune('a'+i)), 50+i*31)), 200*(i+1)))
	}
	var wg sync.WaitGroup
	errs := make([]error, len(bodies))
	for i, b := range bodies {
		wg.Go(func() {
			for range 20 {
				zr, err := gzip.NewReader(bytes.NewReader(gzipBytes(b)))
				if err != nil {
					errs[i] = err
					return
				}
				got, err := io.ReadAll(zr)
				if err != nil {
					errs[i] = err
					return
				}
				if !bytes.Equal(got, b) {
					errs[i] = fmt.Errorf("body %d came back as %d bytes, want its %d", i, len(got), len(b))
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}
