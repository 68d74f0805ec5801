package apply

import (
	"io"
	"sync"
)

// readAhead reads its source in a goroutine of its own, ahead of the
// applier, and hashes what it reads in another. Decompressing a layer, hashing
// it and parsing it while writing its files then run side by side; on the
// 2-core machines the benchmark runs on, that overlap is most of what
// separates a cold unpack from the sum of its parts.
//
// The three share one ring buffer: the reader fills free space straight
// from the source, the hasher follows it, and the applier takes what was
// hashed. Every read of the source is handed on as soon as it returns, so a
// source that stalls (a network stream) still delivers all it sent; when
// the reader is ahead, the applier gets large contiguous reads. At most
// readAheadSize bytes are ever read ahead, which bounds both the memory and
// how far a decompression bomb gets before a limit stops it.
//
// The source is only read by the reader goroutine, from start until close;
// its error, io.EOF included, is handed on after the bytes read before it.
type readAhead struct {
	buf  []byte
	h    io.Writer // nil: no hasher, the applier follows the reader
	done chan struct{}

	mu sync.Mutex
	// One condition per party, so that each wakes only who can go on.
	space   sync.Cond // the reader: readAheadLow bytes are free
	toHash  sync.Cond // the hasher: bytes were read
	toApply sync.Cond // the applier: bytes are ready
	// Bytes read from the source, hashed and taken by the applier, since
	// the start; positions in buf are these modulo its length.
	in, hashed, out int64
	end             bool  // the source returned err, nothing more comes
	err             error // the source's last error, io.EOF at its end
	hashEnd         bool  // the hasher hashed everything up to end
	stopped         bool  // close was called

	// failed is set once Read returned an error of the source other than
	// io.EOF: whatever failed after that may have been caused by it. It
	// belongs to the applier's goroutine.
	failed bool
}

const (
	readAheadSize = 1 << 20
	// readAheadLow is the least free space the reader reads into; it waits
	// for that much. Without it, each small read of the applier (a 512-byte header)
	// would wake the reader for a read as small: on a layer of small files
	// that ping-pong cost more in futex calls than the reads themselves.
	readAheadLow = 128 << 10
)

// startReadAhead starts reading r into ring, a buffer of readAheadSize
// bytes (a new one when nil; it is the caller's again after close). h,
// when not nil, is written every byte read, in a goroutine of its own so
// that the decompressor, the slowest stage, does nothing else; h is the
// caller's again after close.
func startReadAhead(r io.Reader, h io.Writer, ring []byte) *readAhead {
	if len(ring) != readAheadSize {
		ring = make([]byte, readAheadSize)
	}
	ra := &readAhead{buf: ring, h: h, done: make(chan struct{})}
	ra.space.L, ra.toHash.L, ra.toApply.L = &ra.mu, &ra.mu, &ra.mu
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ra.read(r)
	}()
	if h != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ra.hash()
		}()
	}
	go func() {
		wg.Wait()
		close(ra.done)
	}()
	return ra
}

// read fills the free part of the ring from r until r fails or ends.
func (ra *readAhead) read(r io.Reader) {
	size := int64(len(ra.buf))
	for {
		ra.mu.Lock()
		for !ra.stopped && size-(ra.in-ra.out) < readAheadLow {
			ra.space.Wait()
		}
		if ra.stopped {
			ra.mu.Unlock()
			return
		}
		start := ra.in % size
		space := min(size-(ra.in-ra.out), size-start)
		ra.mu.Unlock()

		n, err := r.Read(ra.buf[start : start+space])

		ra.mu.Lock()
		ra.in += int64(n)
		if err != nil {
			ra.end, ra.err = true, err
		}
		ra.readySignal()
		ra.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// hash follows the reader through the ring.
func (ra *readAhead) hash() {
	size := int64(len(ra.buf))
	for {
		ra.mu.Lock()
		for !ra.stopped && ra.hashed == ra.in && !ra.end {
			ra.toHash.Wait()
		}
		if ra.stopped {
			ra.mu.Unlock()
			return
		}
		if ra.hashed == ra.in { // and the reader ended
			ra.hashEnd = true
			ra.toApply.Signal()
			ra.mu.Unlock()
			return
		}
		start := ra.hashed % size
		n := min(ra.in-ra.hashed, size-start)
		ra.mu.Unlock()

		ra.h.Write(ra.buf[start : start+n])

		ra.mu.Lock()
		ra.hashed += n
		ra.toApply.Signal()
		ra.mu.Unlock()
	}
}

// readySignal wakes whoever follows the reader. mu must be held.
func (ra *readAhead) readySignal() {
	if ra.h != nil {
		ra.toHash.Signal()
	} else {
		ra.toApply.Signal()
	}
}

// ready is how far the applier may read; ended tells whether nothing more
// will come beyond it. mu must be held.
func (ra *readAhead) ready() (limit int64, ended bool) {
	if ra.h == nil {
		return ra.in, ra.end
	}
	return ra.hashed, ra.hashEnd
}

func (ra *readAhead) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	size := int64(len(ra.buf))
	ra.mu.Lock()
	limit, ended := ra.ready()
	for limit == ra.out && !ended {
		ra.toApply.Wait()
		limit, ended = ra.ready()
	}
	if limit == ra.out {
		err := ra.err
		ra.mu.Unlock()
		if err != io.EOF {
			ra.failed = true
		}
		return 0, err
	}
	start := ra.out % size
	n := min(limit-ra.out, size-start, int64(len(p)))
	ra.mu.Unlock()

	copy(p, ra.buf[start:start+n])

	ra.mu.Lock()
	ra.out += n
	if size-(ra.in-ra.out) >= readAheadLow {
		ra.space.Signal()
	}
	ra.mu.Unlock()
	return int(n), nil
}

// close stops the goroutines and waits for them, so that the source (and
// the hash) can be used, or closed, by the caller; a read of the source in
// progress is waited for. It returns the number of bytes read from the
// source.
func (ra *readAhead) close() int64 {
	ra.mu.Lock()
	ra.stopped = true
	ra.space.Broadcast()
	ra.toHash.Broadcast()
	ra.toApply.Broadcast()
	ra.mu.Unlock()
	<-ra.done
	return ra.in
}
