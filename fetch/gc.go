package fetch

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/atomicfile"
	"github.com/ocifetch/ocifetch/source"
)

// GCResult lists what GC removed.
type GCResult struct {
	// Blobs are the blobs no entry of index.json reaches.
	Blobs []digest.Digest
	// Corrupt are the blobs whose content did not hash to their name
	// (WithVerify); they are removed whether reachable or not, and a
	// later pull fetches them again.
	Corrupt []digest.Digest
	// Partials are the partial downloads that were removed.
	Partials []digest.Digest
	// Entries are the referrers (signatures, attestations) dropped from
	// index.json because the image they refer to is no longer kept.
	Entries []ocispec.Descriptor
	// Dropped are the layer blobs WithUnpacked let go: each is made
	// again, exactly, by the root filesystems it relies on.
	Dropped []Dropped
	// KeptUnpacked are the layer blobs of unpacked images that
	// WithUnpacked kept, and why.
	KeptUnpacked []KeptBlob
	// Bytes is the space freed by the blobs and partial downloads.
	Bytes int64
}

// KeptBlob is a layer blob GC with WithUnpacked kept.
type KeptBlob struct {
	Digest digest.Digest
	Rootfs string // the root filesystem that could not stand in for it
	Reason string
}

// LayerVerdict is an UnpackedChecker's answer for one layer blob.
type LayerVerdict struct {
	Digest digest.Digest
	// Reproducible: the root filesystem verified clean and makes this
	// blob again exactly (its recipe was confirmed against the digest on
	// the whole blob, or the layer is an uncompressed tar).
	Reproducible bool
	// Reason says why not.
	Reason string
}

// An UnpackedChecker tells GC which layer blobs of an unpacked image the
// root filesystem u makes again (package ocifetch's ConfirmUnpacked
// verifies the tree and confirms its recipes, with package apply). An
// error keeps every blob of u.
type UnpackedChecker func(ctx context.Context, u Unpacked) ([]LayerVerdict, error)

// GCOption configures GC. Options have the one shape of this module: a
// bad value makes GC fail with invalid_argument before it does anything.
type GCOption func(*gcOptions) error

type gcOptions struct {
	verify   bool
	waiting  func()
	unpacked UnpackedChecker
}

// WithUnpacked makes GC also drop the layer blobs of images unpacked into
// root filesystems (RecordUnpacked) that check says the root filesystem
// makes again: the store then relies on the tree (see Dropped). Blobs
// check does not vouch for stay. check runs while GC holds the store
// lock, once per recorded root filesystem whose image still has a layer
// blob in the store.
func WithUnpacked(check UnpackedChecker) GCOption {
	return func(o *gcOptions) error {
		o.unpacked = check
		return nil
	}
}

// WithVerify makes GC hash every blob in the store first and remove those
// whose content does not match their digest, reachable or not.
func WithVerify() GCOption {
	return func(o *gcOptions) error {
		o.verify = true
		return nil
	}
}

// WithWaiting has GC call fn, once, when it has to wait for the store
// lock because pulls or other writers are using the store (in any
// process), so that a caller can say why nothing happens yet.
func WithWaiting(fn func()) GCOption {
	return func(o *gcOptions) error {
		o.waiting = fn
		return nil
	}
}

// GC removes the blobs that no entry of index.json reaches, every partial
// download, and leftover temporary files.
//
// What is kept: every entry of index.json and everything it reaches, read
// from the documents themselves whatever media type a descriptor gives
// (indexes, manifests, configs, layers, subjects), and the indexes an
// entry was resolved through (AnnotationIndexes); then the referrers of
// kept manifests: entries recorded with PutReferrer or named with
// cosign's "sha256-<hex>.sig" tags, and stored OCI 1.1 manifests whose
// subject is kept, with what they reach. Referrer entries whose subject
// is gone are dropped from index.json.
//
// GC waits until nothing writes to the store in any process (pulls,
// Tag, WriteBlob, Hold), and they wait for it, so a pull's blobs are never
// removed between being written and being recorded; that also makes every
// partial file and temporary file it sees stale (a later pull of that blob
// starts from zero).
func (s *Store) GC(ctx context.Context, opts ...GCOption) (*GCResult, error) {
	o := &gcOptions{}
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	lk, err := s.lockGCNotify(ctx, true, o.waiting)
	if err != nil {
		return nil, err
	}
	defer lk.unlock()

	res := &GCResult{}
	blobsDir := filepath.Join(s.dir, ocispec.ImageBlobsDir)
	type blobFile struct {
		path string
		size int64
	}
	blobs := map[digest.Digest]blobFile{}
	err = eachDigestFile(blobsDir, "", func(d digest.Digest, path string, size int64) error {
		blobs[d] = blobFile{path, size}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if o.verify {
		for _, d := range sortedDigests(blobs) {
			ok, err := s.verifyBlob(ctx, d)
			if err != nil {
				return nil, err
			}
			if !ok {
				res.Corrupt = append(res.Corrupt, d)
				res.Bytes += blobs[d].size
				delete(blobs, d)
			}
		}
	}

	idx, err := s.Index()
	if err != nil {
		return nil, err
	}
	keep := map[digest.Digest]bool{}
	var referrers []ocispec.Descriptor // index.json entries kept only with their subject
	for _, m := range idx.Manifests {
		if _, ok := referrerOf(m); ok {
			referrers = append(referrers, m)
			continue
		}
		if err := s.mark(ctx, m, keep, 0); err != nil {
			return nil, err
		}
		for _, d := range strings.Split(m.Annotations[AnnotationIndexes], ",") {
			if source.CheckDigest(digest.Digest(d)) == nil {
				keep[digest.Digest(d)] = true
			}
		}
	}
	// Stored OCI 1.1 referrers that index.json does not list: documents
	// with a subject, among the blobs not kept so far.
	stored := map[digest.Digest]ocispec.Descriptor{}
	for d := range blobs {
		if keep[d] {
			continue
		}
		if doc, ok, _ := s.readDocument(d); ok && doc.Subject != nil {
			stored[d] = ocispec.Descriptor{MediaType: doc.MediaType, Digest: d, Size: blobs[d].size,
				Annotations: map[string]string{AnnotationSubject: doc.Subject.Digest.String()}}
		}
	}
	// Referrers of referrers (a signature of an SBOM) need more rounds.
	for changed := true; changed; {
		changed = false
		for i, m := range referrers {
			if subject, _ := referrerOf(m); m.Digest != "" && keep[subject] {
				if err := s.mark(ctx, m, keep, 0); err != nil {
					return nil, err
				}
				referrers[i].Digest, changed = "", true
			}
		}
		for d, m := range stored {
			if subject, _ := referrerOf(m); keep[subject] {
				if err := s.mark(ctx, m, keep, 0); err != nil {
					return nil, err
				}
				delete(stored, d)
				changed = true
			}
		}
	}
	drop := map[string]bool{}
	for _, m := range idx.Manifests {
		if subject, ok := referrerOf(m); ok && !keep[subject] {
			drop[entryID(m)] = true
			res.Entries = append(res.Entries, m)
		}
	}
	if len(drop) > 0 {
		err := s.updateIndexLocked(ctx, func(idx *ocispec.Index) error {
			out := idx.Manifests[:0]
			for _, m := range idx.Manifests {
				if !drop[entryID(m)] {
					out = append(out, m)
				}
			}
			idx.Manifests = out
			return nil
		})
		if err != nil {
			return nil, err
		}
	}

	for _, d := range sortedDigests(blobs) {
		if keep[d] {
			continue
		}
		if err := os.Remove(blobs[d].path); err != nil {
			return nil, errdefs.Wrap(err, errdefs.ErrInternal, "removing blob %s", d)
		}
		res.Blobs = append(res.Blobs, d)
		res.Bytes += blobs[d].size
	}
	// Records of dropped blobs whose image is gone go with it.
	eachDigestFile(s.private("dropped"), ".json", func(d digest.Digest, path string, _ int64) error {
		if !keep[d] {
			os.Remove(path)
		}
		return nil
	})
	if o.unpacked != nil {
		if err := s.dropUnpacked(ctx, o.unpacked, keep, res); err != nil {
			return nil, err
		}
	}
	err = eachDigestFile(s.private("partial"), "", func(d digest.Digest, path string, size int64) error {
		if err := os.Remove(path); err != nil {
			return errdefs.Wrap(err, errdefs.ErrInternal, "removing partial download %s", d)
		}
		res.Partials = append(res.Partials, d)
		res.Bytes += size
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Nobody holds a per-digest lock or writes a temporary file while GC
	// holds the store lock, so their files can go too: they are leftovers
	// of killed processes. The lock files of kept blobs stay: they hold
	// their stamps.
	eachDigestFile(s.private("locks"), ".lock", func(d digest.Digest, path string, _ int64) error {
		if _, ok := blobs[d]; !ok || !keep[d] {
			os.Remove(path)
		}
		return nil
	})
	if ents, err := os.ReadDir(s.private("tmp")); err == nil {
		for _, e := range ents {
			os.Remove(filepath.Join(s.private("tmp"), e.Name()))
		}
	}
	atomicfile.Clean(s.dir)
	if algs, err := os.ReadDir(blobsDir); err == nil {
		for _, a := range algs {
			if a.IsDir() {
				atomicfile.Clean(filepath.Join(blobsDir, a.Name()))
			}
		}
	}
	if len(res.Blobs) > 0 || len(res.Corrupt) > 0 || len(res.Dropped) > 0 {
		if err := atomicfile.SyncDir(filepath.Join(blobsDir, string(digest.SHA256))); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// dropUnpacked is GC's WithUnpacked: for every recorded root filesystem
// of a kept image that still has layer blobs in the store, ask check and
// drop the blobs it vouches for. Records of root filesystems whose state
// directory is gone are removed (the dropped blobs that relied on them
// are then missing: Images says so, and a pull fetches them again).
func (s *Store) dropUnpacked(ctx context.Context, check UnpackedChecker, keep map[digest.Digest]bool, res *GCResult) error {
	us, err := s.Unpacked()
	if err != nil {
		return err
	}
	for _, u := range us {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := os.Lstat(u.StateDir); errors.Is(err, fs.ErrNotExist) || !keep[u.Manifest] {
			os.Remove(s.unpackedPath(u.StateDir))
			continue
		}
		rel := Reliance{Rootfs: u.Rootfs, StateDir: u.StateDir}
		stored := map[digest.Digest]ocispec.Descriptor{}
		unconfirmed := false
		for _, l := range u.Layers {
			if keep[l.Digest] && s.has(l) {
				stored[l.Digest] = l
			} else if rec, ok, _ := s.DroppedBlob(l.Digest); ok && !rec.Confirmed && slices.Contains(rec.ReliesOn, rel) {
				unconfirmed = true
			}
		}
		// A blob an unpack did not keep (WithKeepBlobs(false)) relies on
		// a candidate recipe that only reproduced the blob's start: a
		// multi-member gzip layer matched one and Images said "recipe"
		// for a blob no tree could make. The check confirms it (or
		// records in the state that no candidate makes it, which
		// Images then reports).
		if len(stored) == 0 && !unconfirmed {
			continue // nothing to drop or confirm: the tree need not be read
		}
		verdicts, err := check(ctx, u)
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			for _, d := range sortedDigests(stored) {
				res.KeptUnpacked = append(res.KeptUnpacked, KeptBlob{Digest: d, Rootfs: u.Rootfs, Reason: err.Error()})
			}
			continue
		}
		for _, v := range verdicts {
			l, isStored := stored[v.Digest]
			switch {
			case isStored && v.Reproducible:
				rec := Dropped{Digest: l.Digest, Size: l.Size, MediaType: l.MediaType, ReliesOn: []Reliance{rel}, Confirmed: true}
				if err := s.dropBlob(rec); err != nil {
					return err
				}
				delete(stored, v.Digest)
				res.Dropped = append(res.Dropped, rec)
				res.Bytes += l.Size
			case isStored:
				delete(stored, v.Digest)
				res.KeptUnpacked = append(res.KeptUnpacked, KeptBlob{Digest: v.Digest, Rootfs: u.Rootfs, Reason: v.Reason})
			case v.Reproducible:
				// Dropped before (not kept by its unpack, or relying on
				// another tree): this tree vouches for it too, confirmed;
				// listed once, and nothing written when it already is.
				if old, ok, _ := s.DroppedBlob(v.Digest); ok && (!old.Confirmed || !slices.Contains(old.ReliesOn, rel)) {
					if !slices.Contains(old.ReliesOn, rel) {
						old.ReliesOn = append(old.ReliesOn, rel)
					}
					old.Confirmed = true
					if err := s.mergeDropped(old); err != nil {
						return err
					}
				}
			}
		}
		for _, d := range sortedDigests(stored) {
			res.KeptUnpacked = append(res.KeptUnpacked, KeptBlob{Digest: d, Rootfs: u.Rootfs, Reason: "the checker did not vouch for it"})
		}
	}
	return nil
}

// entryID tells index.json entries apart for GC's pruning.
func entryID(m ocispec.Descriptor) string {
	return m.Digest.String() + "\x00" + m.Annotations[ocispec.AnnotationRefName] + "\x00" + m.Annotations[AnnotationSubject]
}

// verifyBlob hashes a stored blob (GC holds the store lock exclusively, so
// nothing else writes it). A good one is stamped anew, a bad one removed.
func (s *Store) verifyBlob(ctx context.Context, d digest.Digest) (bool, error) {
	f, err := source.OpenRegular(s.blobPath(d))
	if err != nil {
		return true, nil // not a regular file: not a blob, left alone
	}
	defer f.Close()
	ok, err := hashFile(ctx, f, d)
	if err != nil {
		return false, err
	}
	if ok {
		s.stampBlob(ctx, d)
		return true, nil
	}
	if err := os.Remove(s.blobPath(d)); err != nil {
		return false, errdefs.Wrap(err, errdefs.ErrInternal, "removing corrupt blob %s", d)
	}
	return false, nil
}

// maxWalkDepth bounds how deep GC follows indexes: real images nest two or
// three levels, and the keep map already stops cycles.
const maxWalkDepth = 8

// mark adds desc and everything it reaches. Any stored blob that parses
// as an index or manifest is followed, whatever media type the descriptor
// that led to it gives (the media type is optional in a descriptor, and a
// wrong one must not make GC delete an image's blobs).
func (s *Store) mark(ctx context.Context, desc ocispec.Descriptor, keep map[digest.Digest]bool, depth int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if source.CheckDigest(desc.Digest) != nil || keep[desc.Digest] {
		return nil
	}
	keep[desc.Digest] = true
	if depth >= maxWalkDepth {
		return nil
	}
	doc, ok, _ := s.readDocument(desc.Digest)
	if !ok {
		return nil // a layer, a config, or missing: nothing to follow
	}
	for _, c := range doc.children() {
		if err := s.mark(ctx, c, keep, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// eachDigestFile calls fn for every file dir/<alg>/<hex><suffix> whose
// name is a valid digest; other files are left alone.
func eachDigestFile(dir, suffix string, fn func(d digest.Digest, path string, size int64) error) error {
	algs, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return errdefs.Wrap(err, errdefs.ErrInternal, "listing %s", dir)
	}
	for _, a := range algs {
		if !a.IsDir() {
			continue
		}
		ents, err := os.ReadDir(filepath.Join(dir, a.Name()))
		if err != nil {
			return errdefs.Wrap(err, errdefs.ErrInternal, "listing %s", dir)
		}
		for _, e := range ents {
			name, ok := strings.CutSuffix(e.Name(), suffix)
			if !ok || !e.Type().IsRegular() {
				continue
			}
			d := digest.NewDigestFromEncoded(digest.Algorithm(a.Name()), name)
			if source.CheckDigest(d) != nil {
				continue
			}
			info, err := e.Info()
			if err != nil {
				continue
			}
			if err := fn(d, filepath.Join(dir, a.Name(), e.Name()), info.Size()); err != nil {
				return err
			}
		}
	}
	return nil
}
