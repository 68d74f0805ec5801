package apply

import (
	"bufio"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/atomicfile"
)

// Upgrade brings the state directory of a complete tree recorded by an
// older version of this package (state format 1) to this version's
// format, so that Verify and Rebuild accept it; a state already in this
// format is left as it is. It needs no blob: the tree must rebuild its
// layers and must be exactly what they make.
//
// Format 1 kept no content digests, xattrs, hard-link groups or target
// identity, so nothing in it can be trusted to record them from the tree
// as it is now. Upgrade re-derives everything instead: it rebuilds every
// layer from the tree and the old metadata, applies the rebuilt layers
// afresh into a scratch directory inside the state directory (each
// checked against its diffID, which a tree that changed fails), and
// compares the tree with that fresh apply, content digests, owners,
// modes, xattrs and hard-link groups included. Only when they agree is
// the state replaced: new tar-split metadata and shadow store from the
// fresh apply, a manifest of the tree, its identity. The scratch copy
// needs as much room as the tree, for the time of the upgrade; it is
// removed afterwards. An interrupted Upgrade is finished by running it
// again.
//
// A tree that differs from its layers (changed since it was unpacked, or
// unpacked by a version with the whiteout or /proc bugs this one fixed)
// cannot be upgraded: the error says to unpack it again.
func Upgrade(ctx context.Context, stateDir, rootfs string) (upgraded bool, err error) {
	t, s, err := absPaths(rootfs, stateDir)
	if err != nil {
		return false, err
	}
	if err := checkOutside(t, s); err != nil {
		return false, err
	}
	l, created, err := lockState(s, true, true)
	if err != nil {
		if hasKind(err) {
			return false, err
		}
		return false, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "locking the state directory %s", s)
	}
	defer l.release()
	// The tree is only read; an unpack into it under any name must wait.
	tl, err := lockTarget(t, false)
	if err != nil {
		if created {
			os.Remove(l.path)
		}
		if hasKind(err) {
			return false, err
		}
		return false, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "%s", t)
	}
	defer tl.release()
	old, err := readState(s)
	if err != nil {
		if created {
			os.Remove(l.path)
		}
		return false, err
	}
	scratch := filepath.Join(s, upgradeDir)
	switch {
	case old.Version == stateVersion:
		// An upgrade killed after it wrote state.json left its scratch
		// copy, as large as the tree.
		if err := os.RemoveAll(scratch); err != nil {
			return false, errdefs.Wrap(err, errdefs.ErrInternal, "removing an earlier upgrade's leftovers")
		}
		return false, checkIdentity(old, s, t)
	case old.Version != 1:
		return false, versionError(s, old.Version)
	case old.Status != StatusComplete:
		return false, errdefs.New(errdefs.ErrInvalidArgument, "the unpack into %s did not complete (status %q): there is nothing to upgrade; remove it and %s and unpack again", t, old.Status, s)
	}
	// A swap (below) that a crash interrupted: state.json still says
	// format 1, so put the old metadata back before the leftovers go.
	for _, d := range []string{tarsplitDir, shadowDir} {
		gone := filepath.Join(scratch, "old-"+d)
		if _, err := os.Lstat(gone); err != nil {
			continue
		}
		if err := os.RemoveAll(filepath.Join(s, d)); err != nil {
			return false, errdefs.Wrap(err, errdefs.ErrInternal, "finishing an interrupted upgrade of %s", s)
		}
		if err := os.Rename(gone, filepath.Join(s, d)); err != nil {
			return false, errdefs.Wrap(err, errdefs.ErrInternal, "finishing an interrupted upgrade of %s", s)
		}
	}
	if err := os.RemoveAll(scratch); err != nil {
		return false, errdefs.Wrap(err, errdefs.ErrInternal, "removing an earlier upgrade's leftovers")
	}
	if err := os.Mkdir(scratch, 0o700); err != nil {
		return false, errdefs.Wrap(err, errdefs.ErrInternal, "upgrading %s", s)
	}
	defer os.RemoveAll(scratch)
	fresh, freshState := filepath.Join(scratch, "rootfs"), filepath.Join(scratch, "state")

	// The old layers, rebuilt from the tree as format 1 reads it.
	rb, err := newRebuilder(s, t, old, false)
	if err != nil {
		return false, err
	}
	defer rb.close()
	var layers []Layer
	for _, ol := range old.Layers {
		d := ol.DiffID
		layers = append(layers, Layer{MediaType: ocispec.MediaTypeImageLayer, DiffID: d, Open: func(ctx context.Context) (io.ReadCloser, error) {
			pr, pw := io.Pipe()
			go func() {
				_, err := rb.layer(ctx, d, pw)
				pw.CloseWithError(err)
			}()
			return pr, nil
		}})
	}
	opts := []Option{WithStateDir(freshState), WithImage(old.Reference, old.Manifest)}
	if own, ok := parseOwnership(old.Ownership); ok {
		opts = append(opts, WithOwnership(own))
	}
	if dev, ok := parseDevices(old.Devices); ok {
		opts = append(opts, WithDevices(dev))
	}
	if _, err := Apply(ctx, fresh, layers, opts...); err != nil {
		return false, errdefs.Wrap(err, errdefs.KindOf(err), "%s does not rebuild its layers, so it cannot be upgraded; remove it and %s and unpack again", t, s)
	}
	st, err := Status(freshState)
	if err != nil {
		return false, err
	}

	// The tree must be what the layers make; its manifest is written from
	// the very walk that compares it.
	id, err := tl.id()
	if err != nil {
		return false, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "%s", t)
	}
	mf, err := openStateFile(freshState, manifestFile)
	if err != nil {
		return false, errdefs.Wrap(err, errdefs.ErrInternal, "the fresh manifest")
	}
	defer mf.Close()
	zr, err := zstd.NewReader(bufio.NewReaderSize(mf, 64<<10), zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
	if err != nil {
		return false, errdefs.Wrap(err, errdefs.ErrInternal, "the fresh manifest")
	}
	defer zr.Close()
	out, err := atomicfile.Create(filepath.Join(scratch, manifestFile), 0o644)
	if err != nil {
		return false, err
	}
	defer out.Abort()
	bw := bufio.NewWriterSize(out, 64<<10)
	zw, err := zstd.NewWriter(bw, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithLowerEncoderMem(true))
	if err != nil {
		return false, errdefs.Wrap(err, errdefs.ErrInternal, "zstd")
	}
	var buf []byte
	o, _ := makeOptions(nil)
	// The root is recorded as the tree has it, not compared: format 1
	// did not record it, and the scratch directory's own mode and owner
	// are not the image's.
	drifts, err := verifyTree(ctx, zr, t, st.MaxDepth, o, false, func(e *treeEntry) error {
		buf = appendTreeEntry(buf[:0], e)
		_, err := zw.Write(buf)
		return err
	})
	if err != nil {
		zw.Close()
		return false, err
	}
	if len(drifts) > 0 {
		zw.Close()
		return false, errdefs.New(errdefs.ErrNotReproducible,
			"%s differs from what its layers make (%d paths, first %q %s), so it cannot be upgraded; remove it and %s and unpack again",
			t, len(drifts), drifts[0].Path, drifts[0].Kind, s)
	}
	if err := zw.Close(); err != nil {
		return false, errdefs.Wrap(err, errdefs.ErrInternal, "writing the manifest")
	}
	if err := bw.Flush(); err != nil {
		return false, errdefs.Wrap(err, errdefs.ErrInternal, "writing the manifest")
	}
	if err := out.Commit(); err != nil {
		return false, err
	}

	// Swap in the new metadata; state.json last. Each old directory is
	// moved aside, made first when missing: a rerun after a crash here
	// restores what it finds aside (above).
	for _, d := range []string{tarsplitDir, shadowDir} {
		gone := filepath.Join(scratch, "old-"+d)
		if err := os.Mkdir(filepath.Join(s, d), 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return false, errdefs.Wrap(err, errdefs.ErrInternal, "upgrading %s", s)
		}
		if err := os.Rename(filepath.Join(s, d), gone); err != nil {
			return false, errdefs.Wrap(err, errdefs.ErrInternal, "upgrading %s", s)
		}
		if err := os.Rename(filepath.Join(freshState, d), filepath.Join(s, d)); err != nil {
			return false, errdefs.Wrap(err, errdefs.ErrInternal, "upgrading %s", s)
		}
	}
	if err := os.Rename(filepath.Join(scratch, manifestFile), filepath.Join(s, manifestFile)); err != nil {
		return false, errdefs.Wrap(err, errdefs.ErrInternal, "upgrading %s", s)
	}
	st.Target = &id
	st.Started, st.Completed = old.Started, old.Completed
	st.UID, st.GID = old.UID, old.GID
	if err := writeState(s, st); err != nil {
		return false, err
	}
	if err := atomicfile.SyncDir(s); err != nil {
		return false, err
	}
	return true, nil
}

func parseOwnership(s string) (Ownership, bool) {
	for _, o := range []Ownership{OwnershipPreserve, OwnershipCaller, OwnershipFail} {
		if o.String() == s {
			return o, true
		}
	}
	return 0, false
}

func parseDevices(s string) (Devices, bool) {
	for _, d := range []Devices{DevicesCreate, DevicesSkip, DevicesFail} {
		if d.String() == s {
			return d, true
		}
	}
	return 0, false
}
