package recipe_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"

	"github.com/ocifetch/ocifetch/internal/recipe"
)

// An applier tees the blob and the decompressed layer into a Prober, and
// keeps the candidate it finds with the layer's metadata. Before the blob
// is dropped, Confirm recompresses the whole layer against the blob's
// digest; later, Recompress makes the blob again from the layer.
func Example() {
	// A layer as go-containerregistry pushes it: Go's gzip at level 1.
	layer := bytes.Repeat([]byte("usr/bin/tool\x00 a layer's tar, more or less\n"), 40000)
	var blob bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&blob, gzip.BestSpeed)
	zw.Write(layer)
	zw.Close()
	blobDigest := digest.FromBytes(blob.Bytes())

	// Apply: the blob goes through a tee into the decompressor, whose
	// output goes to the tar reader and to the prober.
	ctx := context.Background()
	p, err := recipe.NewProber()
	if err != nil {
		panic(err)
	}
	zr, _ := gzip.NewReader(io.TeeReader(bytes.NewReader(blob.Bytes()), p.Compressed()))
	io.Copy(io.Discard, io.TeeReader(zr, p.Uncompressed())) // the applier reads the tar here
	p.Close()                                               // both streams ended
	res, err := p.Result(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println("candidate:", res.Candidates[0])

	// Before dropping the blob: confirm on the whole layer.
	open := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layer)), nil }
	r, err := recipe.Confirm(ctx, res.Candidates, open, blobDigest, int64(blob.Len()))
	if err != nil {
		panic(err)
	}

	// Later: the exact blob again, from the layer alone.
	h := sha256.New()
	if err := recipe.Recompress(ctx, r, bytes.NewReader(layer), h); err != nil {
		panic(err)
	}
	fmt.Println("same digest:", digest.NewDigest(digest.SHA256, h) == blobDigest)
	// Output:
	// candidate: gzip go-flate go1.26.8 level 1 (mtime 0, os 255)
	// same digest: true
}

func ExampleImplementations() {
	for _, i := range recipe.Implementations() {
		fmt.Println(i)
	}
	// Output:
	// gzip go-flate go1.26.8
	// gzip go-flate go1.27.3
	// gzip klauspost-flate v1.15.12
	// gzip klauspost-flate v1.20.4
	// zstd klauspost-zstd v1.15.12
	// zstd klauspost-zstd v1.20.4
}
