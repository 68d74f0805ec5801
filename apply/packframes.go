package apply

import (
	"io"

	"github.com/klauspost/compress/zstd"
)

// packFrame is how much of a pack's stream one zstd frame holds. A pack
// is a sequence of independent frames, which a zstd decoder reads as one
// stream (openPack does, unchanged), so that frames are compressed on
// every core at once instead of one stream on one core: packing was the
// single-threaded half second at the end of an unpack that keeps no
// blob. At 2 MiB the frames lose little of what one stream finds across
// files (see docs/performance.md for the figures).
const packFrame = 2 << 20

// frameWriter compresses what is written to it in frames of packFrame
// bytes, up to inFlight of them at once in goroutines of their own, and
// writes them to w in order. Memory is bounded: inFlight frames being
// compressed and one being filled, each with its output.
//
// Close writes the last frame and waits for every goroutine; abort (after
// a failure, or whenever Close was not reached) waits for them without
// writing. Either must be called: no goroutine outlives them.
type frameWriter struct {
	w        io.Writer
	enc      *zstd.Encoder // EncodeAll only, safe from several goroutines
	inFlight int
	size     int // of a frame: packFrame, less in tests of the sequencing

	cur   []byte
	queue []chan frameOut // frames being compressed, oldest first
	free  [][]byte        // input buffers to reuse
	outs  [][]byte        // output buffers to reuse
	err   error
}

type frameOut struct {
	in, out []byte
}

func newFrameWriter(w io.Writer, enc *zstd.Encoder, inFlight int) *frameWriter {
	return &frameWriter{w: w, enc: enc, inFlight: max(inFlight, 1), size: packFrame}
}

func (fw *frameWriter) buffer() []byte {
	if n := len(fw.free); n > 0 {
		b := fw.free[n-1]
		fw.free = fw.free[:n-1]
		return b[:0]
	}
	return make([]byte, 0, fw.size)
}

func (fw *frameWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if fw.err != nil {
			return 0, fw.err
		}
		if fw.cur == nil {
			fw.cur = fw.buffer()
		}
		m := copy(fw.cur[len(fw.cur):cap(fw.cur)], p)
		fw.cur = fw.cur[:len(fw.cur)+m]
		p = p[m:]
		if len(fw.cur) == cap(fw.cur) {
			fw.submit()
		}
	}
	return n, fw.err
}

// ReadFrom reads r into the frame being filled, without a copy between.
func (fw *frameWriter) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for {
		if fw.err != nil {
			return total, fw.err
		}
		if fw.cur == nil {
			fw.cur = fw.buffer()
		}
		n, err := r.Read(fw.cur[len(fw.cur):cap(fw.cur)])
		fw.cur = fw.cur[:len(fw.cur)+n]
		total += int64(n)
		if len(fw.cur) == cap(fw.cur) {
			fw.submit()
		}
		if err == io.EOF {
			return total, fw.err
		}
		if err != nil {
			return total, err
		}
	}
}

// submit hands the frame being filled to a goroutine, after writing the
// oldest one out when inFlight are running.
func (fw *frameWriter) submit() {
	in := fw.cur
	fw.cur = nil
	if len(fw.queue) == fw.inFlight {
		fw.writeOldest()
	}
	var out []byte
	if n := len(fw.outs); n > 0 {
		out = fw.outs[n-1][:0]
		fw.outs = fw.outs[:n-1]
	} else {
		// Room for a frame that compresses to half: EncodeAll grows an
		// empty buffer by appending, and the copies it leaves behind
		// took 8 MiB more peak RSS on image e.
		out = make([]byte, 0, fw.size/2)
	}
	done := make(chan frameOut, 1)
	fw.queue = append(fw.queue, done)
	go func(enc *zstd.Encoder) {
		done <- frameOut{in: in, out: enc.EncodeAll(in, out)}
	}(fw.enc)
}

// writeOldest waits for the oldest frame and writes it, unless a write
// failed before.
func (fw *frameWriter) writeOldest() {
	f := <-fw.queue[0]
	fw.queue = fw.queue[1:]
	if fw.err == nil {
		_, fw.err = fw.w.Write(f.out)
	}
	fw.free = append(fw.free, f.in)
	fw.outs = append(fw.outs, f.out)
}

// Close compresses what is left and writes every frame, in order.
func (fw *frameWriter) Close() error {
	if fw.err == nil && len(fw.cur) > 0 {
		fw.submit()
	}
	for len(fw.queue) > 0 {
		fw.writeOldest()
	}
	return fw.err
}

// abort waits for the frames being compressed and drops them.
func (fw *frameWriter) abort() {
	if fw.err == nil {
		fw.err = io.ErrClosedPipe
	}
	for len(fw.queue) > 0 {
		fw.writeOldest()
	}
}
