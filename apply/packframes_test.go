package apply

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// A stream written in pieces of any size, through Write and ReadFrom,
// comes out as consecutive frames that one zstd decoder reads back
// exactly, as openPack reads a pack.
func TestFrameWriter(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 8))
	// Small frames: what is tested is their order and bounds, not their
	// size, and 30 MiB of zstd under the race detector took 20 s.
	const frame = 64 << 10
	data := []byte(prose(21, 5*frame+4321))
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(packLevel), zstd.WithEncoderConcurrency(3))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	for _, inFlight := range []int{1, 2, 3} {
		var out bytes.Buffer
		fw := newFrameWriter(&out, enc, inFlight)
		fw.size = frame
		for off := 0; off < len(data); {
			n := min(1+rng.IntN(frame+frame/2), len(data)-off)
			if rng.IntN(2) == 0 {
				if _, err := fw.Write(data[off : off+n]); err != nil {
					t.Fatal(err)
				}
			} else if m, err := fw.ReadFrom(bytes.NewReader(data[off : off+n])); err != nil || m != int64(n) {
				t.Fatalf("ReadFrom: %d, %v", m, err)
			}
			off += n
		}
		if err := fw.Close(); err != nil {
			t.Fatal(err)
		}
		fw.abort()
		if frames := bytes.Count(out.Bytes(), []byte{0x28, 0xb5, 0x2f, 0xfd}); frames < 6 {
			t.Errorf("in flight %d: %d frame magics, want one per %d bytes", inFlight, frames, frame)
		}
		dec, err := zstd.NewReader(bytes.NewReader(out.Bytes()), zstd.WithDecoderConcurrency(1))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(dec)
		dec.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("in flight %d: read back %d bytes (%v), want %d", inFlight, len(got), err, len(data))
		}
	}
}

type failingWriter struct{ after int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.after <= 0 {
		return 0, errors.New("disk full")
	}
	w.after--
	return len(p), nil
}

// compressing counts the goroutines compressing a frame.
func compressing() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "apply.(*frameWriter).submit.func1")
}

// A failed write ends the writer with its error, and abort returns only
// once no goroutine of it is compressing any more: none outlives
// writePack (nor the encoder it closes). Not parallel, so that no other
// test's packing shows in the count.
func TestFrameWriterAbortWaits(t *testing.T) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(packLevel), zstd.WithEncoderConcurrency(2))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	// Frames large enough that one is still being compressed when abort
	// is called (milliseconds under the race detector), small enough to
	// keep the test short.
	const frame = 256 << 10
	data := []byte(prose(22, 8*frame))
	for _, after := range []int{0, 1} {
		fw := newFrameWriter(&failingWriter{after: after}, enc, 2)
		fw.size = frame
		_, err := fw.Write(data)
		if err == nil || err.Error() != "disk full" {
			t.Fatalf("write failing after %d frames: %v", after, err)
		}
		// Frames were handed over after the failure's frame was.
		fw.cur = append(fw.buffer(), data[:frame]...)
		fw.submit()
		fw.abort()
		if n := compressing(); n != 0 {
			t.Fatalf("%d goroutines still compressing after abort", n)
		}
		if len(fw.queue) != 0 {
			t.Fatalf("%d frames left in flight", len(fw.queue))
		}
		if err := fw.Close(); err == nil {
			t.Fatal("Close after a failure: no error")
		}
	}
}
