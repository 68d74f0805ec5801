package recipe

import (
	"io"
	"sync"
)

// EncoderPool keeps the zstd encoders of finished probes for the next
// probe of the same recipe, reset instead of made anew. A klauspost
// encoder allocates its history for the whole window on its first block
// (16 MiB at the default level's 8 MiB window) though a probe feeds it at
// most its prefix: a new encoder per candidate and layer made the Go heap
// reuse, and so zero and touch, 16 MiB per encoder per layer (peak RSS of
// the zstd benchmark image 51 MiB without probing, 78-84 MiB with it). A
// reset encoder keeps its history's memory, of which only what a probe
// wrote was ever touched, and writes the same bytes as a new one
// (TestPooledEncoderWritesTheSameBytes). One pool serves the probes of one
// Apply; it is safe for concurrent use.
type EncoderPool struct {
	mu   sync.Mutex
	idle map[string][]io.WriteCloser
}

// NewEncoderPool returns an empty pool.
func NewEncoderPool() *EncoderPool {
	return &EncoderPool{idle: map[string][]io.WriteCloser{}}
}

// resetter is what a pooled encoder must do: start a new stream to w.
type resetter interface {
	Reset(w io.Writer)
}

// get returns an idle encoder for r reset to write to w, or a new one.
func (p *EncoderPool) get(w io.Writer, r *Recipe) (io.WriteCloser, error) {
	if p == nil || r.Format != FormatZstd {
		return newEncoder(w, r)
	}
	key := r.String()
	p.mu.Lock()
	var enc io.WriteCloser
	if n := len(p.idle[key]); n > 0 {
		enc = p.idle[key][n-1]
		p.idle[key] = p.idle[key][:n-1]
	}
	p.mu.Unlock()
	if enc == nil {
		return newEncoder(w, r)
	}
	enc.(resetter).Reset(w)
	return enc, nil
}

// put gives enc, an encoder of r that its probe no longer uses, back.
func (p *EncoderPool) put(r *Recipe, enc io.WriteCloser) {
	if p == nil || enc == nil || r.Format != FormatZstd {
		return
	}
	if _, ok := enc.(resetter); !ok {
		return
	}
	key := r.String()
	p.mu.Lock()
	p.idle[key] = append(p.idle[key], enc)
	p.mu.Unlock()
}
