// Package asynchash hashes a stream in a goroutine of its own once the
// stream has proved large, so that hashing overlaps with whatever the
// writer does with the same bytes.
package asynchash

import "hash"

// Hash is a hash.Hash that, once a stream has proved large, hashes in
// a goroutine of its own: hashing the layer (sha256, the most expensive
// thing done per byte) then overlaps with what the caller does with the
// same bytes (decompressing, CRCs, writing files). Write copies into one
// of a few chunk buffers and hands full ones over; Sum and Reset wait for
// everything written so far. The first asyncAfter bytes are hashed in
// place: a small layer costs no goroutine and no buffers. Close must be
// called once the hash is no longer written to.
type Hash struct {
	h       hash.Hash
	written int64

	started bool
	cur     []byte        // chunk being filled
	work    chan []byte   // chunks to hash; nil asks for a signal on synced
	free    chan []byte   // chunks hashed
	synced  chan struct{} // everything sent before the nil was hashed
}

const (
	asyncAfter  = 4 << 20   // bytes hashed in place before going async
	asyncChunk  = 256 << 10 // bytes handed over at a time
	asyncChunks = 3         // chunk buffers: one filling, two in flight
)

// New returns a Hash around h, which it writes to and sums.
func New(h hash.Hash) *Hash { return &Hash{h: h} }

func (a *Hash) start() {
	a.started = true
	a.work = make(chan []byte, asyncChunks)
	a.free = make(chan []byte, asyncChunks)
	a.synced = make(chan struct{})
	for range asyncChunks - 1 {
		a.free <- make([]byte, 0, asyncChunk)
	}
	a.cur = make([]byte, 0, asyncChunk)
	go func(h hash.Hash, work <-chan []byte, free chan<- []byte, synced chan<- struct{}) {
		for b := range work {
			if b == nil {
				synced <- struct{}{}
				continue
			}
			h.Write(b)
			free <- b[:0]
		}
	}(a.h, a.work, a.free, a.synced)
}

func (a *Hash) Write(p []byte) (int, error) {
	n := len(p)
	if !a.started {
		if a.written+int64(n) <= asyncAfter {
			a.written += int64(n)
			return a.h.Write(p)
		}
		a.start()
	}
	for len(p) > 0 {
		m := copy(a.cur[len(a.cur):cap(a.cur)], p)
		a.cur = a.cur[:len(a.cur)+m]
		p = p[m:]
		if len(a.cur) == cap(a.cur) {
			a.work <- a.cur
			a.cur = <-a.free
		}
	}
	return n, nil
}

// sync waits until everything written was hashed.
func (a *Hash) sync() {
	if !a.started {
		return
	}
	if len(a.cur) > 0 {
		a.work <- a.cur
		a.cur = <-a.free
	}
	a.work <- nil
	<-a.synced
}

func (a *Hash) Sum(b []byte) []byte { a.sync(); return a.h.Sum(b) }
func (a *Hash) Reset()              { a.sync(); a.h.Reset(); a.written = 0 }
func (a *Hash) Size() int           { return a.h.Size() }
func (a *Hash) BlockSize() int      { return a.h.BlockSize() }

// Close ends the goroutine, if any; the hash must not be used afterwards.
func (a *Hash) Close() {
	if a.started {
		close(a.work)
		a.started = false
	}
}
