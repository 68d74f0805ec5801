package asynchash

import (
	"bytes"
	"crypto/sha256"
	"math/rand/v2"
	"testing"

	"github.com/ocifetch/ocifetch/internal/testutil"
)

// Hash gives the hash of what was written, in place for small
// streams and from its goroutine past asyncAfter, whatever the sizes of
// the writes, and Sum can be taken any time.
func TestHash(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	data := testutil.RandomBytes(rng, asyncAfter+3*asyncChunk+12345)
	// Writes of one byte, under the race detector, take seconds: the
	// short tier leaves them to the full run.
	for _, size := range testutil.First([]int{511, asyncChunk + 1, 1 << 20, 4096, asyncChunk, 1}, 3) {
		a := New(sha256.New())
		want := sha256.New()
		for off := 0; off < len(data); {
			n := min(1+rng.IntN(size), len(data)-off)
			a.Write(data[off : off+n])
			want.Write(data[off : off+n])
			off += n
			if rng.IntN(50) == 0 {
				if got := a.Sum(nil); !bytes.Equal(got, want.Sum(nil)) {
					t.Fatalf("writes of up to %d: sum at %d differs", size, off)
				}
			}
		}
		if got := a.Sum(nil); !bytes.Equal(got, want.Sum(nil)) {
			t.Errorf("writes of up to %d: sum differs", size)
		}
		if !a.started {
			t.Errorf("writes of up to %d: %d bytes hashed in place", size, len(data))
		}
		a.Reset()
		a.Write([]byte("x"))
		if got, want := a.Sum(nil), sha256.Sum256([]byte("x")); !bytes.Equal(got, want[:]) {
			t.Errorf("after Reset: %x", got)
		}
		a.Close()
	}
	a := New(sha256.New())
	a.Write([]byte("small"))
	if a.started {
		t.Error("a goroutine for 5 bytes")
	}
	a.Close()
}
