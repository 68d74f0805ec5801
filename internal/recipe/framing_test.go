package recipe

import (
	"bytes"
	stdgzip "compress/gzip"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	kpgzip "github.com/klauspost/compress/gzip"
	kpzstd "github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"

	kpzstd11512 "github.com/ocifetch/ocifetch/internal/recipe/third_party/klauspost1.15.12/zstd"
	"github.com/ocifetch/ocifetch/internal/testutil"
)

// Our gzip framing around each pinned compressor is byte for byte the
// writer it stands for, fed in any pieces.

// toolchainFlate is the vendored compress/flate that is the same code as
// the toolchain's.
func toolchainFlate(t *testing.T) string {
	switch v := runtime.Version(); {
	case strings.HasPrefix(v, "go1.26."):
		return "go1.26.8"
	case strings.HasPrefix(v, "go1.27."):
		return "go1.27.3"
	default:
		t.Fatalf("no vendored compress/flate is %s's: vendor it (third_party/README.md) before moving the toolchain", v)
		return ""
	}
}

// writeInPieces writes b to w in pieces of varying sizes, as a tar
// writer and a tee would.
func writeInPieces(t *testing.T, w io.WriteCloser, b []byte) {
	t.Helper()
	sizes := []int{1, 511, 512, 4096, 32 << 10, 100 << 10, 7}
	for i := 0; len(b) > 0; i++ {
		n := min(sizes[i%len(sizes)], len(b))
		if _, err := w.Write(b[:n]); err != nil {
			t.Fatal(err)
		}
		b = b[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestGzipIsTheToolchainsCompressGzip(t *testing.T) {
	t.Parallel()
	version := toolchainFlate(t)
	layer := corpus(testutil.Scale(300<<10, 100<<10))
	for _, level := range testutil.First([]int{stdgzip.DefaultCompression, 1, 9, 0, 2, 3, 4, 5, 6, 7, 8, stdgzip.HuffmanOnly}, 4) {
		for _, named := range []bool{false, true} {
			var want bytes.Buffer
			zw, err := stdgzip.NewWriterLevel(&want, level)
			if err != nil {
				t.Fatal(err)
			}
			if named {
				zw.Name, zw.Comment, zw.Extra, zw.ModTime = "l.tar", "ç", []byte{}, time.Unix(1700000000, 0)
			}
			writeInPieces(t, zw, layer)
			h, _, err := parseGzipHeader(want.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			l := level
			if l == stdgzip.DefaultCompression {
				l = 6
			}
			r := Recipe{Format: FormatGzip, Encoder: EncoderGoFlate, Version: version, Level: l, Gzip: h}
			if got := recompressed(t, r, layer); !bytes.Equal(got, want.Bytes()) {
				t.Errorf("level %d named %t: %s differs from compress/gzip", level, named, r)
			}
		}
	}
}

func TestGzipIsKlauspostGzip(t *testing.T) {
	t.Parallel()
	layer := corpus(testutil.Scale(300<<10, 100<<10))
	for _, level := range testutil.First([]int{kpgzip.DefaultCompression, 1, 9, 0, 2, 3, 4, 5, 6, 7, 8, kpgzip.HuffmanOnly}, 4) {
		var want bytes.Buffer
		zw, err := kpgzip.NewWriterLevel(&want, level)
		if err != nil {
			t.Fatal(err)
		}
		writeInPieces(t, zw, layer)
		h, _, _ := parseGzipHeader(want.Bytes())
		l := level
		if l == kpgzip.DefaultCompression {
			l = 5
		}
		r := Recipe{Format: FormatGzip, Encoder: EncoderKlauspostFlate, Version: klauspostModuleVersion, Level: l, Gzip: h}
		if got := recompressed(t, r, layer); !bytes.Equal(got, want.Bytes()) {
			t.Errorf("level %d: %s differs from klauspost/compress/gzip", level, r)
		}
	}
}

// pgzip's output depends on its block size, not on its block count; our
// framing is pgzip's at the sizes around a block's edges.
func TestGzipIsPgzip(t *testing.T) {
	t.Parallel()
	const bs = 64 << 10
	layer := corpus(4 * bs)
	for _, n := range []int{0, 100, pgzipTailSize, pgzipTailSize + 1, bs - 1, bs, bs + 1, 2 * bs, 3*bs + bs/2} {
		for _, level := range testutil.First([]int{pgzip.DefaultCompression, 1, 6, 9}, 2) {
			var first []byte
			for _, blocks := range []int{1, 3, 16} {
				var want bytes.Buffer
				zw, err := pgzip.NewWriterLevel(&want, level)
				if err != nil {
					t.Fatal(err)
				}
				if err := zw.SetConcurrency(bs, blocks); err != nil {
					t.Fatal(err)
				}
				writeInPieces(t, zw, layer[:n])
				if first == nil {
					first = want.Bytes()
				} else if !bytes.Equal(first, want.Bytes()) {
					t.Errorf("size %d level %d: pgzip's output changed with %d blocks", n, level, blocks)
				}
			}
			h, _, _ := parseGzipHeader(first)
			l := level
			if l == pgzip.DefaultCompression {
				l = 5
			}
			r := Recipe{Format: FormatGzip, Encoder: EncoderKlauspostFlate, Version: klauspostModuleVersion, Level: l, BlockSize: bs, Gzip: h}
			if got := recompressed(t, r, layer[:n]); !bytes.Equal(got, first) {
				t.Errorf("size %d level %d: %s differs from pgzip", n, level, r)
			}
		}
	}
}

// The probe feeds 64 KiB pieces, producers feed what they like: every
// pinned compressor's output is independent of how its input is cut.
func TestWriteSizesDoNotMatter(t *testing.T) {
	t.Parallel()
	layer := corpus(testutil.Scale(300<<10, 100<<10))
	var recipes []Recipe
	for _, impl := range Implementations() {
		for _, l := range testutil.First(impl.Levels, 2) {
			r := Recipe{Format: impl.Format, Encoder: impl.Encoder, Version: impl.Version, Level: l}
			if impl.Format == FormatZstd {
				r.Zstd = &ZstdParams{Checksum: true}
				recipes = append(recipes, r)
				continue
			}
			r.Gzip = &GzipHeader{OS: 255}
			recipes = append(recipes, r)
			if impl.Encoder == EncoderKlauspostFlate && (l == 5 || l == 9) {
				r.BlockSize = 96 << 10
				recipes = append(recipes, r)
			}
		}
	}
	for _, r := range recipes {
		whole := recompressed(t, r, layer)
		var pieces bytes.Buffer
		enc, err := newEncoder(&pieces, &r)
		if err != nil {
			t.Fatal(err)
		}
		writeInPieces(t, enc, layer)
		if !bytes.Equal(whole, pieces.Bytes()) {
			t.Errorf("%s: the output depends on the write sizes", r)
		}
	}
}

// klauspost's zstd writes the same bytes at any concurrency, so recipes
// leave it out (and run at 1).
func TestZstdConcurrency(t *testing.T) {
	t.Parallel()
	layer := corpus(450 << 10) // blocks of 128 KiB (64 KiB at level 1)
	for _, level := range testutil.First([]int{2, 1, 3, 4}, 2) {
		var outs []string
		for _, c := range []int{1, 2, 8} {
			var a, b bytes.Buffer
			za, err := kpzstd.NewWriter(&a, kpzstd.WithEncoderLevel(kpzstd.EncoderLevel(level)), kpzstd.WithEncoderConcurrency(c))
			if err != nil {
				t.Fatal(err)
			}
			writeInPieces(t, za, layer)
			zb, err := kpzstd11512.NewWriter(&b, kpzstd11512.WithEncoderLevel(kpzstd11512.EncoderLevel(level)), kpzstd11512.WithEncoderConcurrency(c))
			if err != nil {
				t.Fatal(err)
			}
			writeInPieces(t, zb, layer)
			outs = append(outs, sha(a.Bytes())+" "+sha(b.Bytes()))
		}
		if outs[0] != outs[1] || outs[0] != outs[2] {
			t.Errorf("level %d: the output depends on the concurrency: %q", level, outs)
		}
	}
}

// The window each encoder writes for a level, which the probe uses to
// rule candidates out before compressing anything.
func TestZstdDefaultWindows(t *testing.T) {
	t.Parallel()
	layer := corpus(600 << 10)
	for _, z := range zstdEncoders {
		for _, level := range testutil.First(z.levels, 2) {
			var out bytes.Buffer
			w, err := z.newWriter(&out, level, ZstdParams{Checksum: true})
			if err != nil {
				t.Fatal(err)
			}
			writeInPieces(t, w, layer)
			h, err := parseZstdFrameHeader(out.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			if want := zstdDefaultWindow(z.version, level); h.window != want || h.singleSegment || h.hasSize || !h.checksum {
				t.Errorf("%s level %d: header %+v, want a %d-byte window, no size, a checksum", z.version, level, h, want)
			}
		}
	}
}

// Go 1.27 rewrote compress/flate (a port of klauspost's levels): images
// made by either exist, so both are pinned. On a real tar they differ at
// every level, stored blocks (level 0) included, and Go 1.27 is none of
// the pinned klauspost releases (it agrees with v1.15.12 on some inputs,
// the synthetic corpus among them, but not on this one).
func TestGoFlateReleasesDiffer(t *testing.T) {
	t.Parallel()
	layer := goSrcTar(t, "compress/flate") // its testdata tells them apart
	for _, l := range testutil.First([]int{6, 1, 0, 9, 2, 3, 4, 5, 7, 8, -2}, 3) {
		outs := map[string]string{}
		for _, d := range deflaters {
			r := Recipe{Format: FormatGzip, Encoder: d.encoder, Version: d.version, Level: l, Gzip: &GzipHeader{OS: 255}}
			outs[d.version] = sha(recompressed(t, r, layer))
		}
		if outs["go1.26.8"] == outs["go1.27.3"] {
			t.Errorf("level %d: Go 1.26 and 1.27 write the same bytes", l)
		}
		if l != 0 && l != -2 && (outs["go1.27.3"] == outs["v1.15.12"] || outs["go1.27.3"] == outs[klauspostModuleVersion]) {
			t.Errorf("level %d: Go 1.27 writes a klauspost release's bytes: %v", l, outs)
		}
	}
}
