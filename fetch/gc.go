package fetch

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/atomicfile"
	"github.com/ocifetch/ocifetch/resolve"
)

// GCResult lists what GC removed.
type GCResult struct {
	// Blobs are the blobs no entry of index.json reaches.
	Blobs []digest.Digest
	// Partials are the partial downloads that were removed.
	Partials []digest.Digest
	// Bytes is the space freed by both.
	Bytes int64
}

// lockGC takes the store-wide lock: shared by every pull, FetchBlob and
// OpenLayer for as long as they may write blobs that index.json does not
// refer to yet, exclusive for GC.
func (s *Store) lockGC(ctx context.Context, exclusive bool) (*fileLock, error) {
	return lockFile(ctx, s.private("locks", "gc.lock"), exclusive)
}

// GC removes the blobs that no entry of index.json reaches (walking
// indexes and manifests to their configs, layers and subjects, and keeping
// the indexes recorded in AnnotationIndexes), every partial download,
// and leftover temporary files. It waits until no pull is running on the
// store in any process, and pulls wait for it, so a pull's blobs are never
// removed between being written and being recorded; that also makes every
// partial file it sees stale (a later pull of that blob starts from zero).
// Blobs recorded under no name are kept as long as index.json lists them.
func (s *Store) GC(ctx context.Context) (*GCResult, error) {
	lk, err := s.lockGC(ctx, true)
	if err != nil {
		return nil, err
	}
	defer lk.unlock()

	idx, err := s.Index()
	if err != nil {
		return nil, err
	}
	keep := map[digest.Digest]bool{}
	var sigs []ocispec.Descriptor
	for _, m := range idx.Manifests {
		if m.Annotations[AnnotationSignatureOf] != "" {
			sigs = append(sigs, m) // kept below, with the image they sign
			continue
		}
		if err := s.mark(ctx, m, keep, 0); err != nil {
			return nil, err
		}
		for _, d := range strings.Split(m.Annotations[AnnotationIndexes], ",") {
			if checkDigest(digest.Digest(d)) == nil {
				keep[digest.Digest(d)] = true
			}
		}
	}

	if err := s.keepSignatures(ctx, sigs, keep); err != nil {
		return nil, err
	}

	res := &GCResult{}
	blobsDir := filepath.Join(s.dir, ocispec.ImageBlobsDir)
	err = eachDigestFile(blobsDir, "", func(d digest.Digest, path string, size int64) error {
		if keep[d] {
			return nil
		}
		if err := os.Remove(path); err != nil {
			return errdefs.Wrap(err, errdefs.ErrInternal, "removing blob %s", d)
		}
		res.Blobs = append(res.Blobs, d)
		res.Bytes += size
		return nil
	})
	if err != nil {
		return nil, err
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
	// Nobody holds a per-digest lock while GC holds the store lock, so
	// their files can go too; temporary files are leftovers of killed
	// processes.
	eachDigestFile(s.private("locks"), ".lock", func(_ digest.Digest, path string, _ int64) error {
		os.Remove(path)
		return nil
	})
	if ents, err := os.ReadDir(s.private("tmp")); err == nil {
		for _, e := range ents {
			os.Remove(filepath.Join(s.private("tmp"), e.Name()))
		}
	}
	if len(res.Blobs) > 0 {
		if err := atomicfile.SyncDir(filepath.Join(blobsDir, string(digest.SHA256))); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// keepSignatures keeps the signature entries whose image is kept, and
// drops the others from index.json: a signature outlives neither the image
// it signs nor, through its subject, keeps that image alive.
func (s *Store) keepSignatures(ctx context.Context, sigs []ocispec.Descriptor, keep map[digest.Digest]bool) error {
	drop := map[digest.Digest]bool{}
	for _, m := range sigs {
		if keep[digest.Digest(m.Annotations[AnnotationSignatureOf])] {
			if err := s.mark(ctx, m, keep, 0); err != nil {
				return err
			}
		} else {
			drop[m.Digest] = true
		}
	}
	if len(drop) == 0 {
		return nil
	}
	return s.updateIndex(ctx, func(idx *ocispec.Index) error {
		out := idx.Manifests[:0]
		for _, m := range idx.Manifests {
			if m.Annotations[AnnotationSignatureOf] == "" || !drop[m.Digest] || keep[digest.Digest(m.Annotations[AnnotationSignatureOf])] {
				out = append(out, m)
			}
		}
		idx.Manifests = out
		return nil
	})
}

// maxWalkDepth bounds how deep GC follows indexes: real images nest two or
// three levels, and the keep map already stops cycles.
const maxWalkDepth = 8

// mark adds desc and, for indexes and manifests present in the store,
// everything they refer to.
func (s *Store) mark(ctx context.Context, desc ocispec.Descriptor, keep map[digest.Digest]bool, depth int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if checkDigest(desc.Digest) != nil || keep[desc.Digest] {
		return nil
	}
	keep[desc.Digest] = true
	if depth >= maxWalkDepth || !isDocument(desc.MediaType) {
		return nil
	}
	f, err := openRegular(s.blobPath(desc.Digest))
	if err != nil {
		return nil // missing children are not GC's business
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, resolve.DefaultMaxDocumentSize+1))
	if err != nil || len(data) > resolve.DefaultMaxDocumentSize {
		return nil
	}
	var doc struct {
		Manifests []ocispec.Descriptor `json:"manifests"`
		Config    *ocispec.Descriptor  `json:"config"`
		Layers    []ocispec.Descriptor `json:"layers"`
		Subject   *ocispec.Descriptor  `json:"subject"`
	}
	if json.Unmarshal(data, &doc) != nil {
		return nil
	}
	children := append(doc.Manifests, doc.Layers...)
	for _, p := range []*ocispec.Descriptor{doc.Config, doc.Subject} {
		if p != nil {
			children = append(children, *p)
		}
	}
	for _, c := range children {
		if err := s.mark(ctx, c, keep, depth+1); err != nil {
			return err
		}
	}
	return nil
}

func isDocument(mt string) bool {
	switch mt {
	case ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageManifest,
		resolve.MediaTypeDockerManifestList, resolve.MediaTypeDockerManifest:
		return true
	}
	return false
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
			if checkDigest(d) != nil {
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
