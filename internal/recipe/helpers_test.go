package recipe

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os/exec"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
)

// runCmd runs a command, failing the test with its output when it fails.
func runCmd(t *testing.T, dir string, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", name, args, err, out)
	}
	return out
}

// corpus returns n bytes that look like a layer: tar-ish headers, text,
// copies of earlier stretches, padding, tables of numbers and noise, the same on every machine and Go
// release (its own generator, not math/rand).
func corpus(n int) []byte {
	var x uint64 = 0x9e3779b97f4a7c15
	next := func() uint64 { // xorshift64*
		x ^= x >> 12
		x ^= x << 25
		x ^= x >> 27
		return x * 0x2545f4914f6cdd1d
	}
	words := []string{"func", "return", "err", "nil", "if", "package", "import", "struct", "the", "layer",
		"digest", "sha256", "blob", "context", "type", "var", "for", "range", "go", "byte"}
	b := make([]byte, 0, n+1024)
	for len(b) < n {
		switch r := next() % 16; {
		case r == 0: // a header-like record, mostly zeros
			h := make([]byte, 512)
			copy(h, fmt.Sprintf("usr/share/file%06d.txt", next()%1000000))
			copy(h[100:], "0000644\x000000000\x000000000\x00")
			b = append(b, h...)
		case r == 1: // noise
			for i := next() % 2048; i > 0; i-- {
				b = append(b, byte(next()))
			}
		case r == 2 && len(b) > 0: // a copy of something earlier: a file in two layers
			from := int(next() % uint64(len(b)))
			b = append(b, b[from:from+min(len(b)-from, int(next()%16384))]...)
		case r == 3: // padding
			b = append(b, make([]byte, next()%4096)...)
		case r == 4: // a table of little-endian numbers
			v := uint32(next())
			for i := next() % 512; i > 0; i-- {
				v += uint32(next() % 64)
				b = append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
			}
		default: // a line of text
			for i := next()%12 + 1; i > 0; i-- {
				b = append(b, words[next()%uint64(len(words))]...)
				b = append(b, ' ')
			}
			b = append(b, '\n')
		}
	}
	return b[:n]
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// recompressed is r applied to tar.
func recompressed(t *testing.T, r Recipe, tar []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := Recompress(context.Background(), r, bytes.NewReader(tar), &out); err != nil {
		t.Fatalf("Recompress(%s): %v", r, err)
	}
	return out.Bytes()
}

// probeBytes gives a Prober both streams whole, as they are (blob need
// not decompress to tar), and returns its Result.
func probeBytes(t testing.TB, blob, tar []byte, opts ...Option) Result {
	t.Helper()
	p, err := NewProber(opts...)
	if err != nil {
		t.Fatal(err)
	}
	p.Compressed().Write(blob)
	p.Uncompressed().Write(tar)
	p.Close()
	res, err := p.Result(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// probeLikeApplier feeds a Prober as an applier does: the blob through a
// tee into the decompressor, the decompressor's output read in 32 KiB
// pieces. It returns the Result and the uncompressed layer.
func probeLikeApplier(t *testing.T, blob []byte, opts ...Option) (Result, []byte) {
	t.Helper()
	p, err := NewProber(opts...)
	if err != nil {
		t.Fatal(err)
	}
	src := io.TeeReader(bytes.NewReader(blob), p.Compressed())
	var dec io.Reader
	switch {
	case bytes.HasPrefix(blob, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(src)
		if err != nil {
			t.Fatal(err)
		}
		zr.Multistream(false)
		dec = zr
	case bytes.HasPrefix(blob, zstdMagic):
		zr, err := zstd.NewReader(src, zstd.WithDecoderConcurrency(1))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		dec = zr
	default:
		t.Fatalf("blob is neither gzip nor zstd: % x", blob[:min(8, len(blob))])
	}
	var tar bytes.Buffer
	buf := make([]byte, 32<<10)
	if _, err := io.CopyBuffer(io.MultiWriter(&tar, p.Uncompressed()), dec, buf); err != nil {
		t.Fatalf("decompressing: %v", err)
	}
	// The applier reads the blob to its end to verify its digest.
	if _, err := io.Copy(io.Discard, src); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	res, err := p.Result(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return res, tar.Bytes()
}

// assertReproduces checks that the probe found a recipe for blob and that
// the recipe rebuilds blob byte for byte from the uncompressed layer, and
// that Confirm agrees. It returns the recipe.
func assertReproduces(t *testing.T, blob []byte) Recipe {
	t.Helper()
	res, tar := probeLikeApplier(t, blob)
	if len(res.Candidates) == 0 {
		t.Fatalf("no candidate for a %d-byte blob: %s", len(blob), res.Reason)
	}
	r := res.Candidates[0]
	if got := recompressed(t, r, tar); !bytes.Equal(got, blob) {
		t.Fatalf("%s rebuilt %d bytes sha256:%s, the blob is %d bytes sha256:%s (candidates %v)", r, len(got), sha(got), len(blob), sha(blob), res.Candidates)
	}
	open := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(tar)), nil }
	c, err := Confirm(context.Background(), res.Candidates, open, digest.FromBytes(blob), int64(len(blob)))
	if err != nil || c.String() != r.String() {
		t.Fatalf("Confirm = %v, %v; want %s", c, err, r)
	}
	t.Logf("%d-byte blob: %s (tried %d, work %d, whole %t)", len(blob), r, res.Tried, res.Work, res.Whole)
	return r
}

// assertNotReproducible checks that the probe finds no candidate for blob.
func assertNotReproducible(t *testing.T, blob []byte) Result {
	t.Helper()
	res, _ := probeLikeApplier(t, blob)
	if len(res.Candidates) != 0 || res.Reason == "" {
		t.Fatalf("want no candidate and a reason, got %+v", res)
	}
	t.Logf("not reproducible: %s (tried %d, work %d)", res.Reason, res.Tried, res.Work)
	return res
}
