package recipe

import (
	"context"
	_ "crypto/sha256" // digests of sha256 blobs
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/ocifetch/ocifetch/errdefs"
)

// newEncoder returns the compressor r describes, writing to w. r must be
// valid.
func newEncoder(w io.Writer, r *Recipe) (io.WriteCloser, error) {
	switch r.Format {
	case FormatGzip:
		return newGzipWriter(w, r), nil
	case FormatZstd:
		return findZstdEncoder(r.Encoder, r.Version).newWriter(w, r.Level, *r.Zstd)
	}
	return nil, fmt.Errorf("recipe: unknown format %q", r.Format)
}

// copyChunk is how much Recompress reads at a time, and how often it
// checks its context.
const copyChunk = 256 << 10

// Recompress writes to dst the compressed stream that r makes of src, the
// layer's uncompressed tar: the exact blob when r is the layer's recipe.
// It does not check the result; Confirm does. Errors from src and dst are
// returned as they are; an invalid r is invalid_argument or
// not_reproducible (a recipe this build has no compressor for).
func Recompress(ctx context.Context, r Recipe, src io.Reader, dst io.Writer) error {
	if err := r.Validate(); err != nil {
		return err
	}
	enc, err := newEncoder(dst, &r)
	if err != nil {
		return errdefs.Wrap(err, errdefs.ErrInternal, "recipe: starting %s", r)
	}
	buf := make([]byte, copyChunk)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, rerr := src.Read(buf)
		if n > 0 {
			if _, err := enc.Write(buf[:n]); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	return enc.Close()
}

// errTooLong stops a recompression once its output passes the blob's size.
var errTooLong = errors.New("output longer than the blob")

// sizedDigester hashes what it is given and fails once it passes max.
type sizedDigester struct {
	h   digest.Digester
	n   int64
	max int64
}

func (d *sizedDigester) Write(p []byte) (int, error) {
	d.n += int64(len(p))
	if d.n > d.max {
		return 0, errTooLong
	}
	return d.h.Hash().Write(p)
}

// Confirm recompresses a layer with each candidate in turn and returns the
// first one whose output is exactly the blob: size bytes whose digest is
// want. open returns the layer's uncompressed tar from its start (it is
// called once per candidate tried). A recompression stops as soon as its
// output passes size. When no candidate matches, the error is of kind
// not_reproducible and names what was tried; errors of open and of the
// streams it returns are returned as they are.
func Confirm(ctx context.Context, candidates []Recipe, open func() (io.ReadCloser, error), want digest.Digest, size int64) (Recipe, error) {
	if err := want.Validate(); err != nil { // also checks the algorithm is linked in
		return Recipe{}, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "recipe: blob digest %q", want)
	}
	var tried []string
	for _, r := range candidates {
		if err := r.Validate(); err != nil {
			tried = append(tried, fmt.Sprintf("%s: %v", r, err))
			continue
		}
		ok, err := confirmOne(ctx, r, open, want, size)
		if err != nil {
			return Recipe{}, err
		}
		if ok {
			return r, nil
		}
		tried = append(tried, r.String())
	}
	if len(tried) == 0 {
		return Recipe{}, errdefs.New(errdefs.ErrNotReproducible, "blob %s: no recipe to confirm", want)
	}
	return Recipe{}, errdefs.New(errdefs.ErrNotReproducible, "blob %s: no recipe reproduces it (tried %s)", want, strings.Join(tried, "; "))
}

func confirmOne(ctx context.Context, r Recipe, open func() (io.ReadCloser, error), want digest.Digest, size int64) (bool, error) {
	src, err := open()
	if err != nil {
		return false, err
	}
	defer src.Close()
	d := &sizedDigester{h: want.Algorithm().Digester(), max: size}
	if err := Recompress(ctx, r, src, d); err != nil {
		if errors.Is(err, errTooLong) {
			return false, nil
		}
		return false, err
	}
	return d.n == size && d.h.Digest() == want, nil
}
