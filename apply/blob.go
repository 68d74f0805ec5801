package apply

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/recipe"
	"github.com/ocifetch/ocifetch/mediatype"
)

// BlobResult says how RebuildBlob made a layer's blob.
type BlobResult struct {
	Index     int // in the image, lowest first
	DiffID    digest.Digest
	Digest    digest.Digest // the blob's, as the manifest names it
	MediaType string
	Size      int64 // bytes written
	// Recipe is the one that made the blob; nil for an uncompressed
	// layer, whose blob is its tar.
	Recipe *recipe.Recipe
}

// RebuildBlob writes to w the blob of a layer of the tree at rootfs,
// named by its blob digest (or by its diffID: the first layer with it),
// exactly as the manifest names it (its digest and size), made
// from the tree alone: the layer's tar is rebuilt as Rebuild does (every
// payload checked against its recorded digest), and compressed again by
// the layer's recipe (see docs/reproducibility.md); an uncompressed layer
// is its tar. The blob's digest is known only at its end, so the blob is
// made into a private anonymous file in the state directory first, and w
// receives nothing unless it hashed to the manifest's digest: w gets the
// exact blob or nothing. Each candidate recipe the apply recorded is
// tried, best first, until one matches.
//
// A layer without a recipe (a compressor this program does not carry,
// such as GNU gzip; a layer recorded before recipes existed) or whose
// candidates all fail is not_reproducible: its blob must be kept, or
// fetched again. A tree that changed since the apply fails as Rebuild
// does (digest_mismatch, not_found, naming the file).
func RebuildBlob(ctx context.Context, stateDir, rootfs string, layer digest.Digest, w io.Writer) (*BlobResult, error) {
	if err := layer.Validate(); err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "layer %q", layer)
	}
	st, unlock, err := openComplete(stateDir, rootfs)
	if err != nil {
		return nil, err
	}
	defer unlock()
	i := -1
	for j, l := range st.Layers {
		if l.Digest == layer {
			i = j
			break
		}
	}
	for j := 0; i < 0 && j < len(st.Layers); j++ {
		if st.Layers[j].DiffID == layer {
			i = j
		}
	}
	if i < 0 {
		return nil, errdefs.New(errdefs.ErrNotFound, "layer %s is not a layer of the tree in %s", layer, rootfs)
	}
	rb, err := newRebuilder(stateDir, rootfs, st, true)
	if err != nil {
		return nil, err
	}
	defer rb.close()
	return rb.blob(ctx, i, w)
}

// errPastSize stops a recompression whose output passed the blob's size.
var errPastSize = errors.New("longer than the blob")

// blobCheck hashes a candidate blob and fails once it passes the size.
type blobCheck struct {
	w   io.Writer // the spool
	d   digest.Digester
	n   int64
	max int64 // 0: unknown
}

func (c *blobCheck) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	if c.max > 0 && c.n > c.max {
		return 0, errPastSize
	}
	c.d.Hash().Write(p)
	return c.w.Write(p)
}

// tarReader returns the rebuilt tar of layer diffID as a stream: rb.layer
// runs in a goroutine, and an error it meets (a file that changed) ends
// the stream with that error. Close waits for the goroutine, after which
// rb may be used again.
func (rb *rebuilder) tarReader(ctx context.Context, diffID digest.Digest) io.ReadCloser {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, err := rb.layer(ctx, diffID, pw)
		pw.CloseWithError(err)
	}()
	return &pipeTar{pr: pr, done: done}
}

type pipeTar struct {
	pr   *io.PipeReader
	done chan struct{}
}

func (p *pipeTar) Read(b []byte) (int, error) { return p.pr.Read(b) }

func (p *pipeTar) Close() error {
	p.pr.CloseWithError(errPastSize)
	<-p.done
	return nil
}

// blob makes layer i's blob into a private spool, checks it, and copies
// it to w.
func (rb *rebuilder) blob(ctx context.Context, i int, w io.Writer) (*BlobResult, error) {
	l := rb.st.Layers[i]
	res := &BlobResult{Index: i, DiffID: l.DiffID, Digest: l.Digest, MediaType: l.MediaType}
	if l.Digest == "" {
		return res, errdefs.New(errdefs.ErrNotReproducible, "layer %d: the state records no blob digest to check a rebuild against (unpacked by an older version): keep its blob", i+1)
	}
	if err := l.Digest.Validate(); err != nil {
		return res, errdefs.Wrap(err, errdefs.ErrInternal, "layer %d: digest %q in the state", i+1, l.Digest)
	}
	ml, ok := mediatype.LayerOf(l.MediaType)
	if !ok {
		return res, errdefs.New(errdefs.ErrUnsupportedMediaType, "layer %d: media type %q", i+1, l.MediaType)
	}
	spool, err := privateTemp(rb.stateDir)
	if err != nil {
		return res, errdefs.Wrap(err, errdefs.ErrInternal, "a private file for the rebuilt blob")
	}
	defer spool.Close()
	// try makes one candidate blob into the spool and reports whether it
	// is the blob.
	try := func(make func(io.Writer) error) (bool, error) {
		if err := spool.Truncate(0); err != nil {
			return false, err
		}
		if _, err := spool.Seek(0, io.SeekStart); err != nil {
			return false, err
		}
		c := &blobCheck{w: spool, d: l.Digest.Algorithm().Digester(), max: l.Size}
		if err := make(c); err != nil {
			if errors.Is(err, errPastSize) {
				return false, nil
			}
			return false, err
		}
		return (l.Size == 0 || c.n == l.Size) && c.d.Digest() == l.Digest, nil
	}
	var match bool
	if ml.Compression == mediatype.Uncompressed {
		match, err = try(func(w io.Writer) error {
			_, err := rb.layer(ctx, l.DiffID, w)
			return err
		})
		if err != nil {
			return res, keepKind(err, fmt.Sprintf("layer %d", i+1))
		}
		if !match {
			return res, errdefs.New(errdefs.ErrDigestMismatch, "layer %d: its tar rebuilt to the diffID %s, but the manifest names the blob %s", i+1, l.DiffID, l.Digest)
		}
	} else {
		if l.Recipe == nil || len(l.Recipe.Candidates) == 0 {
			why := "no recipe was recorded (unpacked by an older version)"
			if l.Recipe != nil && l.Recipe.Reason != "" {
				why = "no pinned compressor reproduces it: " + l.Recipe.Reason
			}
			return res, errdefs.New(errdefs.ErrNotReproducible, "layer %d (%s): %s; keep its blob", i+1, l.Digest, why)
		}
		var tried []string
		for _, c := range l.Recipe.Candidates {
			if err := ctx.Err(); err != nil {
				return res, errdefs.Wrap(err, errdefs.ErrCanceled, "rebuilding the blob of layer %d", i+1)
			}
			match, err = try(func(w io.Writer) error {
				src := rb.tarReader(ctx, l.DiffID)
				err := recipe.Recompress(ctx, c, src, w)
				src.Close()
				return err
			})
			if err != nil {
				if errdefs.KindOf(err) == errdefs.ErrNotReproducible {
					tried = append(tried, fmt.Sprintf("%s: %v", c, err))
					continue
				}
				return res, keepKind(err, fmt.Sprintf("layer %d", i+1))
			}
			if match {
				res.Recipe = &c
				break
			}
			tried = append(tried, c.String())
		}
		if !match {
			return res, errdefs.New(errdefs.ErrNotReproducible, "layer %d (%s): no recorded recipe makes its blob (tried %s); keep its blob", i+1, l.Digest, strings.Join(tried, "; "))
		}
	}
	n, err := spool.Seek(0, io.SeekCurrent)
	if err != nil {
		return res, errdefs.Wrap(err, errdefs.ErrInternal, "the rebuilt blob")
	}
	if _, err := io.CopyBuffer(w, io.NewSectionReader(spool, 0, n), rb.buf); err != nil {
		return res, errdefs.Wrap(err, errdefs.ErrInternal, "writing the rebuilt blob of layer %d", i+1)
	}
	res.Size = n
	return res, nil
}

// LayerConfirmation is what Confirm found for one layer.
type LayerConfirmation struct {
	Index     int
	DiffID    digest.Digest
	Digest    digest.Digest
	MediaType string
	Size      int64
	// Reproducible is "tar" (an uncompressed layer: its blob is its tar)
	// or "confirmed" (Recipe makes the blob, its digest checked on the
	// whole blob, now or earlier); "" when the blob cannot be made again
	// (Err says why).
	Reproducible string
	Recipe       *recipe.Recipe
	Err          error
}

// Confirmation is what Confirm found.
type Confirmation struct {
	// Drift lists what changed in the tree since the apply; when it is
	// not empty nothing was confirmed, and no blob may rely on the tree.
	Drift  []Drift
	Layers []LayerConfirmation
	// Compacted is what WithCompactShadow compressed.
	Compacted *CompactReport
}

// Confirm establishes which blobs of the image the tree at rootfs can
// make again, exactly, so that a store may drop them (gc --unpacked): it
// verifies the tree against what the apply left (as Verify does, with
// its options; the tree is untrusted: whatever ran in it may have changed
// it) and, only when the tree is clean, confirms the recipe of every
// compressed layer not confirmed yet by recompressing the layer's tar,
// rebuilt from the tree, with each candidate recipe until one makes a
// blob of the manifest's digest and size (recipe.Confirm). Confirmed
// recipes are recorded in the state, so a later Confirm does not
// recompress again. Uncompressed layers need no recipe.
//
// With WithCompactShadow it also compresses the shadow store
// (CompactShadow). It holds the state's lock exclusively: busy while an
// unpack, verify or rebuild holds it.
func Confirm(ctx context.Context, stateDir, rootfs string, opts ...Option) (*Confirmation, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	l, st, err := lockCompleteState(stateDir)
	if err != nil {
		return nil, err
	}
	defer l.release()
	if err := checkIdentity(st, stateDir, rootfs); err != nil {
		return nil, err
	}
	drift, err := verifyState(ctx, stateDir, rootfs, st, o)
	if err != nil {
		return nil, err
	}
	out := &Confirmation{Drift: drift}
	if len(drift) > 0 {
		return out, nil
	}
	rb, err := newRebuilder(stateDir, rootfs, st, true)
	if err != nil {
		return nil, err
	}
	defer rb.close()
	changed := false
	for i, sl := range st.Layers {
		lc := LayerConfirmation{Index: i, DiffID: sl.DiffID, Digest: sl.Digest, MediaType: sl.MediaType, Size: sl.Size}
		switch r := sl.Reproducible(); {
		case r == "tar" || r == "confirmed":
			// Verify read the tree as it is, not the shadow store nor
			// the tar-split a rebuild needs too: with a shadowed
			// payload damaged, a blob was dropped that nothing could
			// make again. Rebuild the tar (checked against the diffID)
			// before vouching for it; candidates are checked below by
			// recompressing it.
			if _, err := rb.layer(ctx, sl.DiffID, io.Discard); err != nil {
				if ctx.Err() != nil {
					return nil, errdefs.Wrap(ctx.Err(), errdefs.ErrCanceled, "confirming recipes")
				}
				lc.Err = err
				break
			}
			lc.Reproducible = r
			if r == "confirmed" {
				lc.Recipe = &sl.Recipe.Candidates[0]
			}
		case r == "candidate":
			rc, err := recipe.Confirm(ctx, sl.Recipe.Candidates, func() (io.ReadCloser, error) {
				return rb.tarReader(ctx, sl.DiffID), nil
			}, sl.Digest, sl.Size)
			switch {
			case err == nil:
				lc.Reproducible, lc.Recipe = "confirmed", &rc
				st.Layers[i].Recipe = &LayerRecipe{Candidates: []recipe.Recipe{rc}, Confirmed: true}
				changed = true
			case ctx.Err() != nil:
				return nil, errdefs.Wrap(ctx.Err(), errdefs.ErrCanceled, "confirming recipes")
			case errdefs.KindOf(err) == errdefs.ErrNotReproducible:
				lc.Err = err
				// Candidates that failed on the whole layer are no
				// candidates: later rebuilds need not try them.
				st.Layers[i].Recipe = &LayerRecipe{Reason: "no candidate made the whole blob: " + err.Error()}
				changed = true
			default:
				lc.Err = err
			}
		default:
			why := "no recipe was recorded (unpacked by an older version)"
			if sl.Recipe != nil && sl.Recipe.Reason != "" {
				why = sl.Recipe.Reason
			}
			if sl.Digest == "" {
				why = "the state records no blob digest (unpacked by an older version)"
			}
			lc.Err = errdefs.New(errdefs.ErrNotReproducible, "layer %d: %s", i+1, why)
		}
		out.Layers = append(out.Layers, lc)
	}
	if changed {
		if err := writeState(stateDir, st); err != nil {
			return nil, err
		}
	}
	if o.compactShadow {
		rep, err := compactShadow(ctx, stateDir)
		if err != nil {
			return nil, err
		}
		out.Compacted = rep
	}
	return out, nil
}

// verifyState is Verify for a caller that holds the lock and read st.
func verifyState(ctx context.Context, stateDir, rootfs string, st *State, o *options) ([]Drift, error) {
	mf, err := openStateFile(stateDir, manifestFile)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errdefs.Wrap(err, errdefs.ErrNotFound, "tree manifest")
		}
		if hasKind(err) {
			return nil, err
		}
		return nil, errdefs.Wrap(err, errdefs.ErrInternal, "tree manifest")
	}
	defer mf.Close()
	zr, err := newManifestDecoder(mf)
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	return verifyTree(ctx, zr, rootfs, st.MaxDepth, o, true, nil)
}
