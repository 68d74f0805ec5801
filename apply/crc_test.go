package apply

import (
	"bytes"
	"hash/crc64"
	"math/rand/v2"
	"testing"

	"github.com/ocifetch/ocifetch/internal/testutil"
)

// crcUpdate must agree with hash/crc64 (what tar-split checks with) on
// every length, alignment and starting value.
func TestCRCUpdateMatchesHashCRC64(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(9, 10))
	data := testutil.RandomBytes(rng, 4096)
	for n := 0; n <= 300; n++ {
		for _, off := range []int{0, 1, 3, 7} {
			p := data[off : off+n]
			for _, start := range []uint64{0, 1, 0xffffffffffffffff, rng.Uint64()} {
				if got, want := crcUpdate(start, p), crc64.Update(start, crcTable, p); got != want {
					t.Fatalf("len %d off %d start %#x: got %#x, want %#x", n, off, start, got, want)
				}
			}
		}
	}
	// Split writes give the same sum as one.
	h, ref := newCRC(), crc64.New(crcTable)
	for p := data; len(p) > 0; {
		k := min(len(p), rng.IntN(50))
		h.Write(p[:k])
		ref.Write(p[:k])
		p = p[k:]
	}
	if h.Sum64() != ref.Sum64() || !bytes.Equal(h.Sum([]byte("x")), ref.Sum([]byte("x"))) {
		t.Fatalf("split writes: %#x, want %#x", h.Sum64(), ref.Sum64())
	}
	// Patterns a table bug could hide from random data.
	for _, p := range [][]byte{bytes.Repeat([]byte{0}, 1000), bytes.Repeat([]byte{0xff}, 1000), []byte("123456789")} {
		if got, want := crcUpdate(0, p), crc64.Checksum(p, crcTable); got != want {
			t.Fatalf("%q...: got %#x, want %#x", p[:min(len(p), 9)], got, want)
		}
	}
}

func BenchmarkCRC(b *testing.B) {
	data := make([]byte, 1<<20)
	b.Run("hash/crc64", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			crc64.Update(0, crcTable, data)
		}
	})
	b.Run("crcUpdate", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			crcUpdate(0, data)
		}
	})
}
