package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/apply"
	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/fetch"
	"github.com/ocifetch/ocifetch/internal/atomicfile"
	"github.com/ocifetch/ocifetch/mediatype"
)

// blobTarget is what "rebuild --compressed" was asked for: one layer
// (--layer) or all, and where the blobs go: -o, nowhere (--check), the
// store (--store), or standard output.
type blobTarget struct {
	state, rootfs, layer, out, store string
	check, all, json                 bool
}

// blobRowJSON is one layer of "rebuild --compressed --all --json".
type blobRowJSON struct {
	Layer     int    `json:"layer"`
	DiffID    string `json:"diffID"`
	Digest    string `json:"digest"`
	MediaType string `json:"mediaType"`
	Bytes     int64  `json:"bytes"`
	OK        bool   `json:"ok"`
	// Recipe is the recipe that made the blob ("" for an uncompressed
	// layer, whose blob is its tar).
	Recipe string `json:"recipe,omitempty"`
	// Stored, with --store: "written" (the blob is back in the store) or
	// "present" (it was there; nothing was rebuilt).
	Stored string `json:"stored,omitempty"`
	Kind   string `json:"kind,omitempty"`
	Error  string `json:"error,omitempty"`
}

// blobFileName is the name of a rebuilt blob in -o DIR.
func blobFileName(l apply.StateLayer) string {
	ext := ".tar"
	if ml, ok := mediatype.LayerOf(l.MediaType); ok {
		switch ml.Compression {
		case mediatype.Gzip:
			ext = ".tar.gz"
		case mediatype.Zstd:
			ext = ".tar.zst"
		}
	}
	return l.Digest.Encoded() + ext
}

// rebuildBlobs is "rebuild --compressed": each blob is made into a
// private spool by apply.RebuildBlob and written only once it hashed to
// the manifest's digest; to a file it is then published whole
// (atomicfile), into the store through a BlobWriter, which checks it once
// more on Commit.
func rebuildBlobs(ctx context.Context, e *env, t blobTarget) error {
	st, err := apply.CheckComplete(t.state, t.rootfs)
	if err != nil {
		return err
	}
	var store *fetch.Store
	if t.store != "" && t.out == "" && !t.check {
		if store, err = openExistingStore(t.store); err != nil {
			return err
		}
	}
	if !t.all {
		i, err := pickLayer(st, t.layer)
		if err != nil {
			return err
		}
		row, err := rebuildBlobTo(ctx, e, t, store, st, i, false)
		if err != nil {
			return err
		}
		if store != nil && !t.json {
			fmt.Fprintf(e.stderr, "layer %d %s %s in %s\n", i+1, st.Layers[i].Digest, row.Stored, store.Dir())
		}
		if t.json && (store != nil || t.out != "") {
			return writeJSON(e, row)
		}
		return nil
	}
	if t.out != "" {
		if err := os.MkdirAll(t.out, 0o755); err != nil {
			return errdefs.Wrap(err, errdefs.ErrInvalidArgument, "-o %s", t.out)
		}
		if err := atomicfile.Clean(t.out); err != nil {
			return err
		}
	}
	failed := 0
	rows := []blobRowJSON{}
	for i := range st.Layers {
		row, err := rebuildBlobTo(ctx, e, t, store, st, i, true)
		if ctx.Err() != nil {
			return errdefs.Wrap(ctx.Err(), errdefs.ErrCanceled, "rebuilding")
		}
		if err != nil {
			failed++
		}
		rows = append(rows, row)
		if t.json {
			continue
		}
		l := st.Layers[i]
		switch {
		case err != nil:
			fmt.Fprintf(e.stdout, "layer %d %s FAILED %s: %s\n", i+1, l.Digest, row.Kind, textQuote(row.Error))
		case row.Stored == "present":
			fmt.Fprintf(e.stdout, "layer %d %s ok present in the store\n", i+1, l.Digest)
		default:
			how := "the tar itself"
			if row.Recipe != "" {
				how = row.Recipe
			}
			fmt.Fprintf(e.stdout, "layer %d %s ok %d bytes (%s)\n", i+1, l.Digest, row.Bytes, how)
		}
	}
	if t.json {
		if err := writeJSON(e, withRaw(map[string]any{"layers": rows, "ok": failed == 0}, "rootfs", absPath(t.rootfs))); err != nil {
			return err
		}
	}
	if failed > 0 {
		return errFailed{fmt.Sprintf("%d of %d layers did not rebuild to their blob; their blobs must be kept (or fetched again)", failed, len(rows))}
	}
	return nil
}

// rebuildBlobTo rebuilds layer i's blob to where t says. With all, a
// layer's failure is in the row, not the error of the command.
func rebuildBlobTo(ctx context.Context, e *env, t blobTarget, store *fetch.Store, st *apply.State, i int, all bool) (blobRowJSON, error) {
	l := st.Layers[i]
	row := blobRowJSON{Layer: i + 1, DiffID: l.DiffID.String(), Digest: l.Digest.String(), MediaType: l.MediaType}
	fail := func(err error) (blobRowJSON, error) {
		row.Kind, row.Error = string(errdefs.KindOf(err)), oneLine(err.Error())
		return row, err
	}
	var w io.Writer
	var commit func() error
	switch {
	case t.check:
		w = io.Discard
	case t.out != "" && all:
		path := filepath.Join(t.out, blobFileName(l))
		f, err := atomicfile.Create(path, 0o644)
		if err != nil {
			return fail(errdefs.Wrap(err, errdefs.ErrInvalidArgument, "-o %s", path))
		}
		defer f.Abort()
		w, commit = f, f.Commit
	case t.out != "" && t.out != "-":
		// -o FILE as plain rebuild takes it (openLayerOutput): renaming
		// a file over whatever FILE was replaced a FIFO (its reader hung)
		// and, as root, a device such as /dev/null with a regular file.
		o, err := openLayerOutput(ctx, t.out)
		if err != nil {
			return fail(err)
		}
		defer o.Abort()
		w, commit = o, o.Commit
	case store != nil:
		desc := ocispec.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size}
		if l.Digest != "" && l.Size > 0 {
			if ok, _ := store.Has(desc); ok {
				row.OK, row.Stored, row.Bytes = true, "present", l.Size
				return row, nil
			}
		}
		if l.Digest == "" || l.Size == 0 {
			return fail(errdefs.New(errdefs.ErrNotReproducible, "layer %d: the state records no blob digest and size (unpacked by an older version)", i+1))
		}
		bw, err := store.NewBlobWriter(ctx, desc)
		if err != nil {
			return fail(err)
		}
		defer bw.Abort()
		w, commit = bw, bw.Commit
		row.Stored = "written"
	default:
		w = e.stdout
	}
	id := l.Digest
	if id == "" {
		id = l.DiffID // an older state: RebuildBlob says why it cannot
	}
	res, err := apply.RebuildBlob(ctx, t.state, t.rootfs, id, w)
	if err == nil && commit != nil {
		err = commit()
	}
	if err != nil {
		row.Stored = ""
		return fail(err)
	}
	row.OK, row.Bytes = true, res.Size
	if res.Recipe != nil {
		row.Recipe = res.Recipe.String()
	}
	return row, nil
}
