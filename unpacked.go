package ocifetch

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"

	"github.com/ocifetch/ocifetch/apply"
	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/fetch"
	"github.com/ocifetch/ocifetch/mediatype"
	"github.com/ocifetch/ocifetch/resolve"
)

// The rootfs is the store: a root filesystem and its state directory make
// every layer's tar again (apply.Rebuild) and, with the recipe recorded
// while applying, every compressed blob (apply.RebuildBlob). This file
// ties the store to the trees its images were unpacked into:
// Unpack records each unpack in the store, WithKeepBlobs(false) keeps no
// layer blob at all, gc --unpacked drops the blobs a tree vouches for
// (ConfirmUnpacked), and ImagesKept says, per image, what the store still
// relies on and whether those trees are still as they were unpacked.

// WithKeepBlobs(false) makes Unpack and Bundle keep no layer blob in the
// store: each layer the store does not already hold streams from the
// registry straight into the apply (verified as it streams; a connection
// that breaks continues with a ranged request into the same
// decompressor), and the image is recorded with its layers missing, each
// relying on the root filesystem to make it again (apply.RebuildBlob; the
// rebuild of a compressed layer is best effort until gc --unpacked
// confirms its recipe, and is always checked against the manifest's
// digest). The shadow store is compressed at the end of the apply
// (apply.WithCompactShadow). The default is true: blobs are kept. Pull
// ignores it: its purpose is the store.
func WithKeepBlobs(keep bool) Option {
	return func(o *options) error {
		o.noKeep = !keep
		return nil
	}
}

// recordUnpacked tells the store that res was unpacked into dir (state in
// stateDir) and, when blobs were not kept, which layer blobs now rely on
// it. It is best effort: an unpack that completed is not undone because a
// record could not be written; the store then lacks the record, and
// treats the image as missing those blobs (a pull fetches them again).
func recordUnpacked(ctx context.Context, store *fetch.Store, res *resolve.Resolved, dir, stateDir string, keep bool) {
	rootfs, err1 := filepath.Abs(dir)
	state, err2 := filepath.Abs(stateDir)
	if err1 != nil || err2 != nil {
		return
	}
	u := fetch.Unpacked{Rootfs: rootfs, StateDir: state, Reference: res.Reference, Manifest: res.Manifest.Descriptor.Digest}
	for _, l := range res.Layers {
		u.Layers = append(u.Layers, l.Descriptor)
	}
	if store.RecordUnpacked(ctx, u) != nil || keep {
		return
	}
	st, err := apply.Status(stateDir)
	if err != nil || len(st.Layers) != len(res.Layers) {
		return
	}
	for i, l := range res.Layers {
		how := st.Layers[i].Reproducible()
		if how == "" || st.Layers[i].Digest != l.Digest {
			continue // not made again: simply not kept
		}
		if ok, _ := store.Has(l.Descriptor); ok {
			continue
		}
		store.RecordDropped(ctx, fetch.Dropped{
			Digest: l.Digest, Size: l.Size, MediaType: l.MediaType,
			ReliesOn:  []fetch.Reliance{{Rootfs: rootfs, StateDir: state}},
			Confirmed: how != "candidate",
		})
	}
}

// ConfirmUnpacked is the check gc --unpacked gives fetch.WithUnpacked: a
// layer blob may go only when the root filesystem u verifies clean (it is
// untrusted: whatever ran in it may have changed it) and makes the blob
// again exactly (apply.Confirm: the recipe confirmed by recompressing the
// layer against the manifest's digest; uncompressed layers need none).
// It also compresses the tree's shadow store. opts are Verify's
// (WithIgnoredXattrs).
func ConfirmUnpacked(opts ...apply.Option) fetch.UnpackedChecker {
	return func(ctx context.Context, u fetch.Unpacked) ([]fetch.LayerVerdict, error) {
		st, err := apply.Status(u.StateDir)
		if err != nil {
			return nil, err
		}
		if st.Manifest != u.Manifest {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "%s now holds another image (%s), not %s", u.Rootfs, st.Manifest, u.Manifest)
		}
		c, err := apply.Confirm(ctx, u.StateDir, u.Rootfs, append([]apply.Option{apply.WithCompactShadow()}, opts...)...)
		if err != nil {
			return nil, err
		}
		var out []fetch.LayerVerdict
		if len(c.Drift) > 0 {
			reason := fmt.Sprintf("%s changed since it was unpacked (%d paths differ; see verify)", u.Rootfs, len(c.Drift))
			for _, l := range st.Layers {
				out = append(out, fetch.LayerVerdict{Digest: l.Digest, Reason: reason})
			}
			return out, nil
		}
		for _, l := range c.Layers {
			v := fetch.LayerVerdict{Digest: l.Digest, Reproducible: l.Reproducible != ""}
			if l.Err != nil {
				v.Reason = l.Err.Error()
			}
			out = append(out, v)
		}
		return out, nil
	}
}

// What a store keeps of an image (ImageKept.Kept).
const (
	// KeptBlobs: every blob is in the store.
	KeptBlobs = "blobs"
	// KeptRecipe: some layer blobs are not in the store, and each is
	// made again by a root filesystem that still verifies clean.
	KeptRecipe = "recipe"
	// KeptBusy: a layer blob is not in the store, and the root
	// filesystems it relies on were held by an unpack (or gc --unpacked,
	// or an upgrade of their state), so none was verified: ask again when
	// they are done. A verify or rebuild does not hold a tree from this.
	KeptBusy = "busy"
	// KeptDrifted: a layer blob is not in the store, and the root
	// filesystems it relies on changed since they were unpacked: it
	// cannot be made again until they are as they were.
	KeptDrifted = "drifted"
	// KeptIncomplete: a blob is missing and nothing makes it again
	// (never kept, its root filesystem removed or unpacked anew).
	KeptIncomplete = "incomplete"
)

// The states of a root filesystem a dropped blob relies on.
const (
	RootfsClean   = "clean"   // verifies as unpacked
	RootfsDrifted = "drifted" // something in it changed
	RootfsMissing = "missing" // gone, or no longer the tree the state describes
	RootfsBusy    = "busy"    // an unpack or gc --unpacked holds it; not checked
)

// RootfsCheck is a root filesystem a dropped blob relies on, and what
// apply.Verify said of it.
type RootfsCheck struct {
	Rootfs   string `json:"rootfs"`
	StateDir string `json:"state"`
	Status   string `json:"status"`
	// Detail says what made it drifted or missing.
	Detail string `json:"detail,omitempty"`
}

// ImageKept is an image of the store with what the store keeps of it.
type ImageKept struct {
	fetch.Image
	Kept string
	// Rootfs lists the root filesystems its dropped blobs rely on.
	Rootfs []RootfsCheck
}

// ImagesKept lists the images of store (fetch.Store.Images) and says what
// the store keeps of each: KeptBlobs, KeptRecipe, KeptBusy, KeptDrifted or
// KeptIncomplete. The root filesystems dropped blobs rely on are verified
// (apply.Verify, each once), which reads every file of those trees.
func ImagesKept(ctx context.Context, store *fetch.Store) ([]ImageKept, error) {
	images, err := store.Images(ctx)
	if err != nil {
		return nil, err
	}
	checked := map[string]RootfsCheck{}
	check := func(r fetch.Reliance) RootfsCheck {
		if c, ok := checked[r.StateDir]; ok {
			return c
		}
		c := checkRootfs(ctx, r)
		checked[r.StateDir] = c
		return c
	}
	out := make([]ImageKept, 0, len(images))
	for _, im := range images {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		k := ImageKept{Image: im, Kept: KeptBlobs}
		if !im.Complete {
			k.Kept = KeptRecipe
			if im.Missing > len(im.Dropped) {
				k.Kept = KeptIncomplete
			}
			seen := map[string]bool{}
			for _, d := range im.Dropped {
				best := KeptIncomplete
				for _, r := range d.ReliesOn {
					c := check(r)
					if !seen[r.StateDir] {
						seen[r.StateDir] = true
						k.Rootfs = append(k.Rootfs, c)
					}
					// The best tree wins: clean, then busy (not verified
					// now: a busy tree once counted as clean, vouching
					// for a tree nobody read), then drifted.
					switch {
					case !holdsLayer(r.StateDir, d.Digest):
					case c.Status == RootfsClean:
						best = KeptRecipe
					case c.Status == RootfsBusy && best != KeptRecipe:
						best = KeptBusy
					case c.Status == RootfsDrifted && best == KeptIncomplete:
						best = KeptDrifted
					}
				}
				if keptRank(best) > keptRank(k.Kept) {
					k.Kept = best
				}
			}
		}
		out = append(out, k)
	}
	return out, nil
}

func keptRank(k string) int {
	switch k {
	case KeptIncomplete:
		return 4
	case KeptDrifted:
		return 3
	case KeptBusy:
		return 2
	case KeptRecipe:
		return 1
	}
	return 0
}

// holdsLayer tells whether the state directory records a layer with the
// blob digest d that it can make again: a state whose candidates all
// failed on the whole layer (apply.Confirm records why) makes nothing,
// and a blob relying on it alone is missing, not kept by a recipe.
func holdsLayer(stateDir string, d digest.Digest) bool {
	st, err := apply.Status(stateDir)
	if err != nil {
		return false
	}
	for _, l := range st.Layers {
		if l.Digest == d && l.Reproducible() != "" {
			return true
		}
	}
	return false
}

// checkRootfs verifies a root filesystem a dropped blob relies on.
func checkRootfs(ctx context.Context, r fetch.Reliance) RootfsCheck {
	c := RootfsCheck{Rootfs: r.Rootfs, StateDir: r.StateDir}
	if _, err := os.Lstat(r.Rootfs); err != nil {
		c.Status, c.Detail = RootfsMissing, "the root filesystem is gone"
		return c
	}
	drift, err := apply.Verify(ctx, r.StateDir, r.Rootfs)
	switch {
	case err == nil && len(drift) == 0:
		c.Status = RootfsClean
	case err == nil:
		c.Status, c.Detail = RootfsDrifted, fmt.Sprintf("%d paths differ from what was unpacked, e.g. %s %q", len(drift), drift[0].Kind, drift[0].Path)
	case errdefs.KindOf(err) == errdefs.ErrBusy:
		c.Status, c.Detail = RootfsBusy, err.Error()
	default:
		// Gone, not complete, another tree's state, another version: not
		// a tree that can stand in for a blob.
		c.Status, c.Detail = RootfsMissing, err.Error()
	}
	return c
}

// LayerReproducible says whether a root filesystem the store knows of
// makes a layer's blob again (inspect's reproducible lines).
type LayerReproducible struct {
	Layer  int           `json:"layer"` // from 1, the lowest
	Digest digest.Digest `json:"digest"`
	// How is "tar" (an uncompressed layer: any unpack of it makes its
	// blob), "confirmed" (a recorded unpack's recipe made the whole blob),
	// "candidate" (a recorded unpack's recipe reproduced its start),
	// "no" (the recorded unpacks found no recipe) or "unknown" (the store
	// records no unpack of it).
	How    string `json:"how"`
	Recipe string `json:"recipe,omitempty"`
	// Rootfs is the root filesystem whose state says so.
	Rootfs string `json:"rootfs,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// LayersReproducible says, for each layer of res, whether the trees the
// store in storeDir records (fetch.ListUnpacked) make its blob again,
// from their state directories (their trees are not read: verify or gc
// --unpacked check those). It neither locks nor creates the store.
func LayersReproducible(storeDir string, res *resolve.Resolved) []LayerReproducible {
	us, _ := fetch.ListUnpacked(storeDir)
	states := map[string]*apply.State{}
	rank := map[string]int{"unknown": 0, "no": 1, "candidate": 2, "confirmed": 3, "tar": 4}
	out := make([]LayerReproducible, 0, len(res.Layers))
	for i, l := range res.Layers {
		r := LayerReproducible{Layer: i + 1, Digest: l.Digest, How: "unknown"}
		if ml, ok := mediatype.LayerOf(l.MediaType); ok && ml.Compression == mediatype.Uncompressed {
			r.How = "tar"
		}
		for _, u := range us {
			if r.How == "tar" {
				break
			}
			st, ok := states[u.StateDir]
			if !ok {
				st, _ = apply.Status(u.StateDir)
				states[u.StateDir] = st
			}
			if st == nil {
				continue
			}
			for _, sl := range st.Layers {
				if sl.Digest != l.Digest {
					continue
				}
				c := LayerReproducible{Layer: i + 1, Digest: l.Digest, How: sl.Reproducible(), Rootfs: u.Rootfs}
				if c.How == "" {
					c.How = "no"
				}
				if sl.Recipe != nil {
					if len(sl.Recipe.Candidates) > 0 {
						c.Recipe = sl.Recipe.Candidates[0].String()
					}
					c.Reason = sl.Recipe.Reason
				}
				if rank[c.How] > rank[r.How] {
					r = c
				}
			}
		}
		out = append(out, r)
	}
	return out
}
