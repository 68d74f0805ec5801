package recipe

import (
	"io"
	"slices"
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
//
// It keeps only the last maxIdle encoders given back, and a probe gives
// back only those of the candidates that reproduced its layer's first
// bytes. An idle encoder holds its history and tables, and the encoders
// of every candidate a layer ruled out, kept for the rest of the Apply,
// raised the heap's live size and so the collector's goal: after two
// layers no candidate reproduced, 8 idle encoders held 213 MiB of heap,
// and the garbage made after them peaked at 351-356 MB RSS against
// 112-118 MB without a pool (TestPoolHoldsOnlyTheLastMatch).
type EncoderPool struct {
	mu   sync.Mutex
	idle []pooled // oldest first
}

type pooled struct {
	key string
	enc io.WriteCloser
}

// maxIdle is how many encoders a pool keeps: those of the candidates that
// reproduce one layer's first bytes, two releases of one encoder at one
// level at most.
const maxIdle = 2

// NewEncoderPool returns an empty pool.
func NewEncoderPool() *EncoderPool {
	return &EncoderPool{}
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
	for i := len(p.idle) - 1; i >= 0; i-- {
		if p.idle[i].key == key {
			enc = p.idle[i].enc
			p.idle = slices.Delete(p.idle, i, i+1)
			break
		}
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
	p.idle = append(p.idle, pooled{key, enc})
	if n := len(p.idle) - maxIdle; n > 0 {
		// The oldest are dropped (slices.Delete clears the slots they
		// leave, so that the collector takes them).
		p.idle = slices.Delete(p.idle, 0, n)
	}
	p.mu.Unlock()
}
