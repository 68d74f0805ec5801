package source_test

import (
	"io"
	"testing"

	"github.com/ocifetch/ocifetch/source"
)

// nothingReader returns its buffer's length without touching it: what is
// left to measure is the cost of the call itself.
type nothingReader struct{}

func (nothingReader) Read(p []byte) (int, error) { return len(p), nil }
func (nothingReader) Close() error               { return nil }

// BenchmarkWatchRate measures what the stall watch adds to one Read of a
// blob body (a download reads 256 KiB at a time): an atomic add and an
// atomic load. The timer costs once per attempt, not per Read.
func BenchmarkWatchRate(b *testing.B) {
	buf := make([]byte, 256<<10)
	for _, watched := range []bool{false, true} {
		name := "plain"
		if watched {
			name = "watched"
		}
		b.Run(name, func(b *testing.B) {
			var r io.ReadCloser = nothingReader{}
			if watched {
				r = source.WatchRate(r, source.DefaultDeadlines(), "blob")
			}
			defer r.Close()
			for i := 0; i < b.N; i++ {
				r.Read(buf)
			}
		})
	}
}
