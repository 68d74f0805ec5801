package recipe

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/ocifetch/ocifetch/internal/testutil"
)

// An encoder from the pool, reset after a stream it left half written,
// writes the same bytes as a new one, for every pinned zstd encoder and
// level, with and without the checksum and with a window of its own.
func TestPooledEncoderWritesTheSameBytes(t *testing.T) {
	t.Parallel()
	first := corpus(testutil.Scale(700<<10, 200<<10))
	second := corpus(testutil.Scale(900<<10, 300<<10))[100:]
	pool := NewEncoderPool()
	for _, impl := range Implementations() {
		if impl.Format != FormatZstd {
			continue
		}
		for _, l := range testutil.First(impl.Levels, 2) {
			for _, p := range []ZstdParams{{Checksum: true}, {Checksum: false, Window: 1 << 20}} {
				r := Recipe{Format: FormatZstd, Encoder: impl.Encoder, Version: impl.Version, Level: l, Zstd: &p}
				t.Run(r.String(), func(t *testing.T) {
					var fresh bytes.Buffer
					enc, err := newEncoder(&fresh, &r)
					if err != nil {
						t.Fatal(err)
					}
					enc.Write(second)
					enc.Close()

					// Half a stream whose writer fails, abandoned as a
					// probe abandons a candidate that differed (its
					// matcher fails the write), then the next stream.
					var pooled bytes.Buffer
					enc, err = pool.get(&failAfter{n: 1000}, &r)
					if err != nil {
						t.Fatal(err)
					}
					for i := 0; i < len(first)/2; i += 64 << 10 {
						if _, err := enc.Write(first[i : i+64<<10]); err != nil {
							break
						}
					}
					pool.put(&r, enc)
					reused, err := pool.get(&pooled, &r)
					if err != nil {
						t.Fatal(err)
					}
					if reused != enc {
						t.Fatal("the pool made a new encoder instead of reusing the idle one")
					}
					reused.Write(second)
					reused.Close()
					if !bytes.Equal(pooled.Bytes(), fresh.Bytes()) {
						t.Errorf("reset encoder: %d bytes, a new one %d; they differ", pooled.Len(), fresh.Len())
					}
				})
			}
		}
	}
}

// Probes sharing a pool, one layer after another as Apply runs them,
// find what probes with encoders of their own find.
func TestProbesShareAPool(t *testing.T) {
	t.Parallel()
	pool := NewEncoderPool()
	for i, level := range []int{2, 2, 1, 2} {
		r := Recipe{Format: FormatZstd, Encoder: EncoderKlauspostZstd, Version: klauspostModuleVersion, Level: level, Zstd: &ZstdParams{Checksum: true}}
		blob := recompressed(t, r, corpus(testutil.Scale(1500<<10, 400<<10))[i*1000:])
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			alone, _ := probeLikeApplier(t, blob)
			shared, _ := probeLikeApplier(t, blob, WithEncoderPool(pool))
			if fmt.Sprint(alone) != fmt.Sprint(shared) || len(shared.Candidates) == 0 || shared.Candidates[0].String() != r.String() {
				t.Errorf("with the pool %+v, alone %+v; want %s", shared, alone, r)
			}
		})
	}
	pool.mu.Lock()
	defer pool.mu.Unlock()
	if n := len(pool.idle); n == 0 {
		t.Error("no encoder went back to the pool")
	}
}

// failAfter fails every write once n bytes were written to it.
type failAfter struct{ n int }

func (f *failAfter) Write(p []byte) (int, error) {
	if f.n -= len(p); f.n < 0 {
		return 0, errDiffers
	}
	return len(p), nil
}
