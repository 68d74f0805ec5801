package recipe

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/testutil"
)

// Every recipe this package can follow is found again from a blob it
// wrote, within the default limits: the first candidate rebuilds the blob
// (it may be another recipe that writes the same bytes, e.g. Go 1.27 and
// klauspost v1.15.12 agree on the synthetic corpus).
func TestProberFindsEveryRecipe(t *testing.T) {
	t.Parallel()
	layer := corpus(testutil.Scale(600<<10, 200<<10))
	var rs []Recipe
	for _, impl := range Implementations() {
		for _, l := range testutil.First(impl.Levels, 2) {
			r := Recipe{Format: impl.Format, Encoder: impl.Encoder, Version: impl.Version, Level: l}
			if impl.Format == FormatZstd {
				r.Zstd = &ZstdParams{Checksum: true}
			} else {
				r.Gzip = &GzipHeader{OS: 255}
				switch l {
				case 1:
					r.Gzip.XFL = 4
				case 9:
					r.Gzip.XFL = 2
				}
			}
			rs = append(rs, r)
			if impl.Encoder == EncoderKlauspostFlate && l == 5 {
				for _, bs := range testutil.First(pgzipBlockSizes, 1) {
					r.BlockSize = bs
					r.Gzip = &GzipHeader{OS: 255, MTime: pgzipZeroMTime}
					rs = append(rs, r)
				}
			}
		}
	}
	for _, r := range rs {
		t.Run(r.String(), func(t *testing.T) {
			blob := recompressed(t, r, layer)
			res, tar := probeLikeApplier(t, blob)
			if len(res.Candidates) == 0 {
				t.Fatalf("no candidate: %s", res.Reason)
			}
			if got := recompressed(t, res.Candidates[0], tar); !bytes.Equal(got, blob) {
				t.Fatalf("first candidate %s does not rebuild the blob (candidates %v)", res.Candidates[0], res.Candidates)
			}
			if res.Work > defaultWork+int64(len(res.Candidates))*defaultMaxPrefix {
				t.Errorf("work %d past the limit", res.Work)
			}
		})
	}
}

// A layer that fits in the prefix is reproduced whole, which confirms the
// recipe once the blob's digest is verified; without Close the Prober
// cannot know the streams ended.
func TestProberWhole(t *testing.T) {
	t.Parallel()
	layer := corpus(200 << 10)
	for _, r := range []Recipe{goRecipe(6), {Format: FormatZstd, Encoder: EncoderKlauspostZstd, Version: "v1.15.12", Level: 2, Zstd: &ZstdParams{Checksum: true}}} {
		blob := recompressed(t, r, layer)
		res, _ := probeLikeApplier(t, blob)
		if !res.Whole || len(res.Candidates) == 0 || res.Compared != int64(len(blob)) {
			t.Errorf("%s: %+v, want the whole %d bytes reproduced", r, res, len(blob))
		}

		p, _ := NewProber()
		p.Compressed().Write(blob)
		p.Uncompressed().Write(layer)
		res, err := p.Result(context.Background())
		if err != nil || res.Whole {
			t.Errorf("%s without Close: %+v, %v", r, res, err)
		}
	}
	// An empty layer too, and a zstd one shorter than a block, which
	// klauspost encodes in one go, with its size, as a single segment.
	blob := recompressed(t, goRecipe(6), nil)
	if res, _ := probeLikeApplier(t, blob); !res.Whole {
		t.Errorf("empty layer: %+v", res)
	}
	z := Recipe{Format: FormatZstd, Encoder: EncoderKlauspostZstd, Version: klauspostModuleVersion, Level: 2, Zstd: &ZstdParams{Checksum: true}}
	blob = recompressed(t, z, corpus(50<<10))
	if h, err := parseZstdFrameHeader(blob); err != nil || !h.singleSegment || !h.hasSize {
		t.Fatalf("header %+v, %v", h, err)
	}
	if res, _ := probeLikeApplier(t, blob); !res.Whole || res.Candidates[0].String() != z.String() {
		t.Errorf("small zstd layer: %+v", res)
	}
}

// A large layer is identified on its prefix only: not whole, and the
// writes past the kept prefix cost nothing but a count.
func TestProberLargeLayer(t *testing.T) {
	t.Parallel()
	layer := corpus(testutil.Scale(3<<20, 3<<19))
	blob := recompressed(t, goRecipe(6), layer)
	res, _ := probeLikeApplier(t, blob)
	if res.Whole || len(res.Candidates) != 1 || res.Candidates[0].String() != goRecipe(6).String() || res.Tried != 1 ||
		res.Work > 512<<10 || res.Compared < defaultEvidence {
		t.Errorf("%+v", res)
	}
}

func TestProberReasons(t *testing.T) {
	t.Parallel()
	gz := recompressed(t, goRecipe(6), corpus(100<<10))
	for _, tc := range []struct {
		name   string
		blob   []byte
		reason string
	}{
		{"nothing", nil, "no compressed bytes"},
		{"tar", corpus(10 << 10), "neither gzip nor zstd"},
		{"cut gzip header", gz[:7], "inside its gzip header"},
		{"cut zstd header", zstdMagic, "inside its zstd frame header"},
		{"reserved gzip flag", append([]byte{0x1f, 0x8b, 8, 0x80}, gz[4:]...), "reserved"},
		{"zstd dictionary", []byte{0x28, 0xb5, 0x2f, 0xfd, 0x01, 0x68, 9}, "dictionary 9"},
		{"zstd tool frame", []byte{0x28, 0xb5, 0x2f, 0xfd, 0x84, 0x58, 1, 2, 3, 4}, "content size"},
		{"odd zstd window", []byte{0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x59}, "window"},
	} {
		p, _ := NewProber()
		p.Compressed().Write(tc.blob)
		p.Close()
		res, err := p.Result(context.Background())
		if err != nil || len(res.Candidates) != 0 || !strings.Contains(res.Reason, tc.reason) {
			t.Errorf("%s: %+v, %v; want a reason with %q", tc.name, res, err, tc.reason)
		}
	}
}

// Result is computed once; later writes are ignored and cost nothing.
func TestProberResultOnce(t *testing.T) {
	t.Parallel()
	layer := corpus(600 << 10)
	r := goRecipe(1)
	r.Gzip.XFL = 4
	blob := recompressed(t, r, layer)
	p, _ := NewProber()
	p.Compressed().Write(blob)
	p.Uncompressed().Write(layer)
	first, err := p.Result(context.Background())
	if err != nil || len(first.Candidates) != 1 {
		t.Fatalf("%+v, %v", first, err)
	}
	p.Compressed().Write([]byte("garbage"))
	p.Uncompressed().Write([]byte("garbage"))
	p.Close()
	again, err := p.Result(context.Background())
	if err != nil || resultString(again) != resultString(first) || p.comp != nil || p.unc != nil {
		t.Errorf("second Result %+v, %v; buffers kept: %t", again, err, p.comp != nil)
	}
}

func resultString(r Result) string {
	var s []string
	for _, c := range r.Candidates {
		s = append(s, c.String())
	}
	return strings.Join(s, "; ") + " " + r.Reason
}

// The two sides may be written from two goroutines (a decompressor that
// reads ahead); the race detector watches this test.
func TestProberConcurrentSides(t *testing.T) {
	t.Parallel()
	layer := corpus(1 << 20)
	blob := recompressed(t, goRecipe(6), layer)
	p, _ := NewProber()
	var wg sync.WaitGroup
	for _, side := range []struct {
		w    func([]byte)
		data []byte
	}{{func(b []byte) { p.Compressed().Write(b) }, blob}, {func(b []byte) { p.Uncompressed().Write(b) }, layer}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := side.data; len(b) > 0; {
				n := min(len(b), 3000)
				side.w(b[:n])
				b = b[n:]
			}
		}()
	}
	wg.Wait()
	p.Close()
	res, err := p.Result(context.Background())
	if err != nil || len(res.Candidates) == 0 || res.Whole {
		t.Errorf("%+v, %v", res, err)
	}
}

// A canceled context stops the identification; a later Result runs it.
func TestProberCanceled(t *testing.T) {
	t.Parallel()
	layer := corpus(600 << 10)
	blob := recompressed(t, goRecipe(6), layer)
	p, _ := NewProber()
	p.Compressed().Write(blob)
	p.Uncompressed().Write(layer)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Result(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: %v", err)
	}
	if res, err := p.Result(context.Background()); err != nil || len(res.Candidates) != 1 {
		t.Errorf("after cancel: %+v, %v", res, err)
	}
}

// The work limit bounds what a layer no candidate reproduces costs.
func TestProberWorkLimit(t *testing.T) {
	t.Parallel()
	layer := corpus(600 << 10)
	r := goRecipe(8) // tried late
	blob := recompressed(t, r, layer)
	res, _ := probeLikeApplier(t, blob, WithWorkLimit(256<<10))
	if len(res.Candidates) != 0 || res.Work > 256<<10+chunk || !strings.Contains(res.Reason, "work limit") {
		t.Errorf("%+v", res)
	}
	res, _ = probeLikeApplier(t, blob, WithMaxPrefix(256<<10), WithWorkLimit(16<<20))
	if len(res.Candidates) == 0 || res.Candidates[0].String() != r.String() {
		t.Errorf("with room: %+v", res)
	}
}

func TestProberOptions(t *testing.T) {
	t.Parallel()
	for _, opts := range [][]Option{
		{WithEvidence(0)}, {WithEvidence(128 << 20)}, {WithMaxPrefix(-1)}, {WithMaxPrefix(128 << 20)}, {WithWorkLimit(0)},
	} {
		if _, err := NewProber(opts...); errdefs.KindOf(err) != errdefs.ErrInvalidArgument {
			t.Errorf("%v", err)
		}
	}
	p, err := NewProber(WithMaxPrefix(64<<10), WithEvidence(1000))
	if err != nil || p.o.evidence != 1000 || p.o.maxPrefix != 64<<10 || p.o.whole != 64<<10 {
		t.Errorf("%+v, %v", p, err)
	}
}
