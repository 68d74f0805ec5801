package apply

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/fsroot"
	"github.com/ocifetch/ocifetch/internal/recipe"
	"github.com/ocifetch/ocifetch/mediatype"
)

// Layer is one layer to apply.
type Layer struct {
	// MediaType decides decompression, by package mediatype's table: the
	// OCI layer types (tar, tar+gzip, tar+zstd, and their deprecated
	// non-distributable variants) and Docker's rootfs.diff.tar.gzip,
	// rootfs.diff.tar and rootfs.foreign.diff.tar.gzip.
	MediaType string
	// Digest of the blob as stored (compressed); verified when set.
	Digest digest.Digest
	// Size of the blob as stored; verified when > 0.
	Size int64
	// DiffID is the digest of the uncompressed tar; required, verified.
	DiffID digest.Digest
	// Verified says that the reader Open returns verifies Digest and Size
	// itself, failing before io.EOF on a mismatch (fetch's streams do):
	// Apply then records them in the state without hashing the blob a
	// second time.
	Verified bool
	// Open returns the blob's content. It is called once, when the layer's
	// turn comes, and the reader is closed before the next layer starts.
	Open func(ctx context.Context) (io.ReadCloser, error)
}

type compression int

const (
	plain compression = iota
	gzipped
	zstded
)

func (c compression) String() string {
	return [...]string{"an uncompressed tar", "gzip", "zstd"}[c]
}

// compressionOf maps a layer media type to its compression, by the one
// table of package mediatype.
func compressionOf(mediaType string) (compression, bool) {
	l, ok := mediatype.LayerOf(mediaType)
	if !ok {
		return 0, false
	}
	switch l.Compression {
	case mediatype.Gzip:
		return gzipped, true
	case mediatype.Zstd:
		return zstded, true
	}
	return plain, true
}

// sniff tells the compression from the first bytes of a stream.
func sniff(b []byte) compression {
	switch {
	case bytes.HasPrefix(b, []byte{0x1f, 0x8b}):
		return gzipped
	case bytes.HasPrefix(b, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return zstded
	}
	return plain
}

// Apply applies layers, lowest first, to the directory target, made
// (with its missing parents) when it does not exist. Each layer is
// opened, verified and applied in one pass. The report covers the layers
// applied and the one that failed.
//
// With WithStateDir, Apply records what Rebuild and Verify need and
// follows one rule for failures (see the package documentation): the
// target must be missing, empty, or left incomplete by an earlier Apply
// that crashed (it is emptied and applied again); a failure leaves the
// target as it was before, emptied of everything the apply wrote, and
// removes the state; a second Apply into the same target at the same time
// fails at once with kind busy. Without a state directory, the target may
// hold a tree already (layers are applied on top, as a snapshotter
// does), and a failed Apply leaves a partly applied tree for the caller
// to discard, removing only a target it created.
func Apply(ctx context.Context, target string, layers []Layer, opts ...Option) (*Report, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	// Check every descriptor before touching the tree.
	for i, l := range layers {
		if _, ok := compressionOf(l.MediaType); !ok {
			return nil, errdefs.New(errdefs.ErrUnsupportedMediaType, "layer %d: media type %q is not a layer type this program applies", i+1, l.MediaType)
		}
		if err := l.DiffID.Validate(); err != nil {
			return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "layer %d: diffID %q", i+1, l.DiffID)
		}
		if l.Digest != "" {
			if err := l.Digest.Validate(); err != nil {
				return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "layer %d: digest %q", i+1, l.Digest)
			}
		}
		if l.Open == nil {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "layer %d: no Open function", i+1)
		}
	}
	if o.stateDir == "" {
		made, err := makeTarget(target)
		if err != nil {
			return nil, err
		}
		rep, err := applyLayers(ctx, target, layers, o, nopRecorder{})
		if err != nil && len(made) > 0 && len(rep.Layers) == 0 {
			removeMade(made) // nothing was applied into it
		}
		return rep, err
	}
	st := stateTemplate(layers, o)
	l, err := acquire(target, o.stateDir, st)
	if err != nil {
		return nil, err
	}
	rec, err := newStateRec(ctx, l.stateDir, st, o.noShadow)
	if rec != nil {
		rec.noRecipes = o.noRecipes
		// One pool of probe encoders for every layer of this apply.
		rec.probeOpts = append([]recipe.Option{recipe.WithEncoderPool(recipe.NewEncoderPool())}, o.probeOpts...)
	}
	if err != nil {
		l.fail()
		return nil, err
	}
	rec.state.Target = &l.id
	rep, err := applyLayers(ctx, target, layers, o, rec)
	if err == nil {
		err = rec.complete(ctx, target, o)
	}
	rec.close()
	if err != nil {
		if cerr := l.fail(); cerr != nil {
			err = fmt.Errorf("%w (and cleaning up failed: %v; the next unpack into %s will clean up)", err, cerr, target)
		}
		return rep, err
	}
	l.done()
	return rep, nil
}

// makeTarget makes the directory target when it does not exist and
// returns what it made.
func makeTarget(target string) ([]string, error) {
	made, err := mkdirAllTracked(target)
	if err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "creating the target %s", target)
	}
	return made, nil
}

// applyLayers applies layers to target, telling rec.
func applyLayers(ctx context.Context, target string, layers []Layer, o *options, rec recorder) (*Report, error) {
	root, err := openRoot(target, o)
	if err != nil {
		return &Report{}, err
	}
	defer root.Close()
	a := newApplier(ctx, root, o, rec)
	defer a.close()
	rep := &Report{}
	for i, l := range layers {
		start := time.Now()
		a.beginProgress(i, len(layers), l.DiffID)
		taps, err := rec.beginLayer(i)
		if err != nil {
			return rep, err
		}
		lr, err := a.applyBlob(l, taps)
		lr.Duration = time.Since(start)
		rep.Layers = append(rep.Layers, lr)
		if err != nil {
			return rep, fmt.Errorf("layer %d (%s): %w", i+1, l.DiffID, err)
		}
		a.endProgress(&lr)
	}
	return rep, nil
}

// ApplyLayer applies one uncompressed tar stream to the directory target,
// made when it does not exist. Nothing is verified: the report carries
// the stream's sha256, its diffID.
func ApplyLayer(ctx context.Context, target string, tarStream io.Reader, opts ...Option) (*LayerReport, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	if o.stateDir != "" {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "ApplyLayer records no state: use Apply")
	}
	return applyLayer(ctx, target, tarStream, o, nopRecorder{})
}

func applyLayer(ctx context.Context, target string, tarStream io.Reader, o *options, rec recorder) (*LayerReport, error) {
	if _, err := makeTarget(target); err != nil {
		return nil, err
	}
	root, err := openRoot(target, o)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	a := newApplier(ctx, root, o, rec)
	defer a.close()
	taps, err := rec.beginLayer(0)
	if err != nil {
		return nil, err
	}
	lr, _, err := a.applyTar(tarStream, "", nil, taps.uncompressed, false)
	if err == nil {
		err = rec.endLayer(lr.DiffID)
	}
	return &lr, err
}

func openRoot(target string, o *options) (*fsroot.Root, error) {
	root, err := fsroot.Open(target, o.rootOpts...)
	if err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "target directory")
	}
	return root, nil
}

// zstdMaxWindow is the largest zstd window a layer may ask for, the
// limit of the zstd command line tool (window log 27): the decoder
// allocates the window, and its library default of 512 MiB would let one
// crafted frame header claim that much memory.
const zstdMaxWindow = 128 << 20

// applyBlob verifies and decompresses one blob and applies the tar inside.
//
// The recorder publishes the layer's metadata only once both digests and
// the size matched; on any failure it drops it.
func (a *applier) applyBlob(l Layer, taps layerTaps) (lr LayerReport, err error) {
	defer func() {
		if err == nil {
			err = a.rec.endLayer(lr.DiffID)
		}
		if err != nil {
			a.rec.abortLayer()
		}
	}()
	want, _ := compressionOf(l.MediaType)
	// Cancelling the blob's context unblocks the read-ahead goroutine when
	// the layer fails while the blob is still arriving.
	bctx, cancel := context.WithCancel(a.ctx)
	defer cancel()
	rc, err := l.Open(bctx)
	if err != nil {
		return LayerReport{}, keepKind(err, "opening the blob")
	}
	defer rc.Close()
	check := l.Digest
	if l.Verified {
		check = "" // the reader verifies it
	}
	src := newBlobReader(rc, check)
	src.tap = taps.compressed
	br := bufio.NewReaderSize(src, 64<<10)
	magic, err := br.Peek(4)
	if err != nil && err != io.EOF {
		return LayerReport{}, src.fail(err, "reading the blob")
	}
	if got := sniff(magic); got != want {
		return LayerReport{}, errdefs.New(errdefs.ErrLayerInvalid, "media type %s says %s, but the content is %s", l.MediaType, want, got)
	}
	var tarStream io.Reader = br
	switch want {
	case gzipped:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return LayerReport{}, src.fail(err, "gzip")
		}
		defer zr.Close()
		tarStream = zr
	case zstded:
		// One decoder serves every zstd layer: its window buffers are the
		// largest allocation of an apply, and a new one per layer left
		// the garbage collector tens of MiB behind.
		if a.zr == nil {
			if a.zr, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(zstdMaxWindow)); err != nil {
				return LayerReport{}, errdefs.Wrap(err, errdefs.ErrInternal, "zstd")
			}
		}
		if err := a.zr.Reset(br); err != nil {
			return LayerReport{}, src.fail(err, "zstd")
		}
		tarStream = a.zr
	}
	// An uncompressed blob whose reader verifies its digest, the diffID
	// itself, need not be hashed twice (a stream without a store: the
	// stream hashes it).
	verified := want == plain && l.Verified && l.Digest == l.DiffID
	lr, readFailed, err := a.applyTar(tarStream, l.DiffID, cancel, taps.uncompressed, verified)
	if err != nil {
		if !readFailed {
			// The layer failed for a reason of its own; the blob's
			// error, if any, came from the cancel above.
			return lr, classify(err, "")
		}
		return lr, src.fail(err, "")
	}
	// The decompressor stopped at the end of its stream; whatever follows
	// in the blob still belongs to the digest and size.
	if _, err := io.CopyBuffer(io.Discard, br, a.buf); err != nil {
		return lr, src.fail(err, "reading the blob")
	}
	if l.Size > 0 && src.n != l.Size {
		return lr, errdefs.New(errdefs.ErrSizeMismatch, "blob is %d bytes, its descriptor says %d", src.n, l.Size)
	}
	if src.h != nil {
		if got := digest.NewDigest(l.Digest.Algorithm(), src.h); got != l.Digest {
			return lr, errdefs.New(errdefs.ErrDigestMismatch, "blob digest is %s, want %s", got, l.Digest)
		}
	}
	return lr, nil
}

// keepKind adds context to err without hiding the kind it already has;
// an error without one becomes internal.
func keepKind(err error, msg string) error {
	if hasKind(err) {
		return fmt.Errorf("%s: %w", msg, err)
	}
	return errdefs.Wrap(err, errdefs.ErrInternal, "%s", msg)
}

// blobReader hashes and counts the compressed blob and remembers an error
// of the source itself, so that a network failure reported through the
// decompressor and the tar reader is not mistaken for a malformed layer.
type blobReader struct {
	r   io.Reader
	h   hash.Hash // nil when there is no digest to check
	tap io.Writer // the recorder's, nil when none
	n   int64
	err error
}

func newBlobReader(r io.Reader, d digest.Digest) *blobReader {
	b := &blobReader{r: r}
	if d != "" && d.Algorithm().Available() {
		b.h = d.Algorithm().Hash()
	}
	return b
}

func (b *blobReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if n > 0 {
		b.n += int64(n)
		if b.h != nil {
			b.h.Write(p[:n])
		}
		if b.tap != nil {
			b.tap.Write(p[:n])
		}
	}
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

// fail classifies err: the source's own error keeps its kind; anything
// else that has no kind yet is a malformed layer (bad compression, bad tar).
func (b *blobReader) fail(err error, msg string) error {
	if b.err != nil {
		return keepKind(b.err, "reading the blob")
	}
	return classify(err, msg)
}

// classify adds msg to err, which keeps its kind; an error without one
// is a malformed layer.
func classify(err error, msg string) error {
	if hasKind(err) {
		if msg == "" {
			return err
		}
		return fmt.Errorf("%s: %w", msg, err)
	}
	return errdefs.Wrap(err, errdefs.ErrLayerInvalid, "%s", msg)
}

// tarReader counts the uncompressed stream and, for a
// recorder, sorts every byte it yields into one of two kinds: payload of a
// regular file the applier writes to the tree (capture off: the recorder
// gets its size and CRC, rebuild reads it back from the tree), or anything
// else (capture on: headers, padding, the payloads of entries that leave no
// regular file, sparse entries' data as archived, the end-of-archive blocks
// and whatever follows them), kept verbatim in pending and handed to the
// recorder as segments. The stream itself is the ground truth: nothing
// depends on what the tar reader chooses to report as raw bytes.
type tarReader struct {
	r        io.Reader
	n        int64
	capture  bool               // bytes read are segment bytes
	pending  []byte             // segment bytes not yet flushed
	sink     func([]byte) error // the recorder's segment, nil when nothing records
	err      error              // the first error of sink, or the limit exceeded
	max      int64              // bytes this layer may have, 0 for no limit, -1 for none at all
	totalMax bool               // max comes from WithMaxTotalBytes
	over     bool               // the stream exceeded max
}

// pendingMax bounds pending: segment bytes are flushed once this many
// accumulate (a large sparse or AUFS payload), keeping memory flat.
const pendingMax = 1 << 20

func (t *tarReader) Read(p []byte) (int, error) {
	if t.max < 0 {
		t.max, t.over = 0, true
	}
	if t.max > 0 || t.over {
		if t.over {
			return 0, t.tooLarge()
		}
		// Read at most one byte past the limit: enough to tell the stream
		// exceeds it, and nothing beyond is ever handed on.
		if left := t.max - t.n + 1; int64(len(p)) > left {
			p = p[:left]
		}
	}
	n, err := t.r.Read(p)
	if n > 0 {
		t.n += int64(n)
		if (t.max > 0 || t.totalMax) && t.n > t.max {
			// The byte past the limit is not recorded.
			t.n, t.over = t.max, true
			return n - 1, t.tooLarge()
		}
		if t.capture && t.sink != nil {
			t.pending = append(t.pending, p[:n]...)
			if len(t.pending) >= pendingMax {
				if ferr := t.flush(); ferr != nil {
					return n, ferr
				}
			}
		}
	}
	return n, err
}

// tooLarge records and returns the error of a stream past its limit: kept
// in err, it is what the layer fails with, however the tar reader reports
// the failed read.
func (t *tarReader) tooLarge() error {
	if t.err == nil {
		if t.totalMax {
			t.err = errdefs.New(errdefs.ErrTooLarge, "the uncompressed layers exceed the limit of their total size (%d bytes left for this layer); if you trust the image, raise the limit (--max-total-bytes, WithMaxTotalBytes)", t.max)
		} else {
			t.err = errdefs.New(errdefs.ErrTooLarge, "uncompressed layer exceeds the limit of %d bytes; if you trust the image, raise the limit (--max-layer-bytes, WithMaxLayerBytes)", t.max)
		}
	}
	return t.err
}

// flush hands the pending segment bytes to the sink.
func (t *tarReader) flush() error {
	if t.err != nil {
		return t.err
	}
	if len(t.pending) == 0 || t.sink == nil {
		return nil
	}
	t.err = t.sink(t.pending)
	t.pending = t.pending[:0]
	return t.err
}
