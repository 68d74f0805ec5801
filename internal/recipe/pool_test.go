package recipe

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
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

// A pool keeps the encoders of the candidates that reproduced the last
// layer, not those of every candidate ruled out: each holds its history
// and tables (213 MiB of heap for the 8 left by two layers no candidate
// reproduced, kept for the rest of the Apply, and the collector's goal
// grew with them).
func TestPoolHoldsOnlyTheLastMatch(t *testing.T) {
	t.Parallel()
	pool := NewEncoderPool()
	idle := func() []string {
		pool.mu.Lock()
		defer pool.mu.Unlock()
		var keys []string
		for _, e := range pool.idle {
			keys = append(keys, e.key)
		}
		return keys
	}
	tar := corpus(testutil.Scale(1<<20, 400<<10))
	// Layers no candidate reproduces: a level 2 stream changed past its
	// first bytes, with and without the checksum.
	for _, ck := range []bool{true, false} {
		r := Recipe{Format: FormatZstd, Encoder: EncoderKlauspostZstd, Version: klauspostModuleVersion, Level: 2, Zstd: &ZstdParams{Checksum: ck}}
		blob := bytes.Clone(recompressed(t, r, tar))
		for i := 3000; i < len(blob); i += 7 {
			blob[i] ^= 0x55
		}
		res := probeBytes(t, blob, tar, WithEncoderPool(pool))
		if len(res.Candidates) != 0 || res.Tried < 2 {
			t.Fatalf("checksum %t: %+v, want candidates tried and none left", ck, res)
		}
	}
	if keys := idle(); len(keys) != 0 {
		t.Errorf("after layers no candidate reproduced, the pool holds %d encoders: %q", len(keys), keys)
	}
	// Layers of three recipes, one after another: the pool holds at most
	// maxIdle encoders, of the last layer's level (both releases at the
	// default level reproduce its first bytes, as on image d).
	var last Recipe
	for i, level := range []int{3, 1, 2} {
		last = Recipe{Format: FormatZstd, Encoder: EncoderKlauspostZstd, Version: klauspostModuleVersion, Level: level, Zstd: &ZstdParams{Checksum: true}}
		res, _ := probeLikeApplier(t, recompressed(t, last, tar[i*1000:]), WithEncoderPool(pool))
		if len(res.Candidates) == 0 || res.Candidates[0].String() != last.String() {
			t.Fatalf("level %d: %+v, want %s first", level, res, last)
		}
	}
	keys := idle()
	if len(keys) == 0 || len(keys) > maxIdle {
		t.Fatalf("the pool holds %d encoders (%q), want 1 to %d", len(keys), keys, maxIdle)
	}
	if !slices.Contains(keys, last.String()) {
		t.Errorf("the pool holds %q, not the last layer's encoder %s", keys, last)
	}
	for _, k := range keys {
		if !strings.Contains(k, fmt.Sprintf(" level %d ", last.Level)) {
			t.Errorf("the pool holds %q, of a level the last layer ruled out", k)
		}
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
