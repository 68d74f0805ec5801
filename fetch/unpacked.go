package fetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/atomicfile"
	"github.com/ocifetch/ocifetch/source"
)

// The rootfs is the store: what the store records of the root
// filesystems its images were unpacked into, and of the layer blobs it
// no longer holds because one of them can make them again.
//
//	.ocifetch/unpacked/<sha256 of the state directory>.json   an Unpacked
//	.ocifetch/dropped/<alg>/<hex>.json                         a Dropped
//
// This package never reads a root filesystem (it does not know how): the
// caller that records an unpack, and the checker GC's WithUnpacked is
// given, do (package ocifetch, with package apply). A dropped record is
// removed as soon as the blob is back in blobs/ (a pull fetched it again,
// or a rebuild put it back with BlobWriter).

// Unpacked is a root filesystem an image of the store was unpacked into.
type Unpacked struct {
	Rootfs    string               `json:"rootfs"` // absolute
	StateDir  string               `json:"state"`  // absolute
	Reference string               `json:"reference,omitempty"`
	Manifest  digest.Digest        `json:"manifest"`
	Layers    []ocispec.Descriptor `json:"layers"`
	Time      time.Time            `json:"time"`
}

// Reliance names a root filesystem a dropped blob relies on.
type Reliance struct {
	Rootfs   string `json:"rootfs"`
	StateDir string `json:"state"`
}

// Dropped is a layer blob the store does not hold because a root
// filesystem can make it again (apply.RebuildBlob): it was not kept by an
// unpack (WithKeepBlobs(false)), or GC dropped it (WithUnpacked).
type Dropped struct {
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
	MediaType string        `json:"mediaType,omitempty"`
	// ReliesOn lists the root filesystems that make it again.
	ReliesOn []Reliance `json:"reliesOn"`
	// Confirmed: its recipe made the whole blob once, its digest checked;
	// otherwise the rebuild is best effort (a candidate recipe, checked
	// against the digest whenever it is used).
	Confirmed bool      `json:"confirmed"`
	Time      time.Time `json:"time"`
}

const maxRecordSize = 1 << 20

func (s *Store) unpackedPath(stateDir string) string {
	h := sha256.Sum256([]byte(stateDir))
	return s.private("unpacked", hex.EncodeToString(h[:])+".json")
}

func (s *Store) droppedPath(d digest.Digest) string {
	return s.private("dropped", d.Algorithm().String(), d.Encoded()+".json")
}

// RecordUnpacked records that the image u.Manifest was unpacked into
// u.Rootfs, its state in u.StateDir (replacing what was recorded for that
// state directory).
func (s *Store) RecordUnpacked(ctx context.Context, u Unpacked) error {
	if !filepath.IsAbs(u.Rootfs) || !filepath.IsAbs(u.StateDir) {
		return errdefs.New(errdefs.ErrInvalidArgument, "unpacked record: rootfs %q and state %q must be absolute", u.Rootfs, u.StateDir)
	}
	if err := source.CheckDigest(u.Manifest); err != nil {
		return err
	}
	for _, l := range u.Layers {
		if err := checkDescriptor(l); err != nil {
			return err
		}
	}
	if u.Time.IsZero() {
		u.Time = time.Now().UTC()
	}
	gc, err := s.lockGC(ctx, false)
	if err != nil {
		return err
	}
	defer gc.unlock()
	return s.writeRecord(s.unpackedPath(u.StateDir), u)
}

func (s *Store) writeRecord(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return errdefs.Wrap(err, errdefs.ErrInternal, "encoding %s", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return errdefs.Wrap(err, errdefs.ErrInternal, "creating store directory")
	}
	return atomicfile.WriteFile(path, append(b, '\n'), 0o644)
}

// Unpacked lists the root filesystems recorded with RecordUnpacked.
// Records that cannot be read are left out.
func (s *Store) Unpacked() ([]Unpacked, error) { return ListUnpacked(s.dir) }

// ListUnpacked is Store.Unpacked for the store in dir, without opening
// it: it takes no lock (so it never waits for a GC) and creates nothing;
// a directory that is not a store has no records.
func ListUnpacked(storeDir string) ([]Unpacked, error) {
	s := &Store{dir: storeDir}
	dir := s.private("unpacked")
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInternal, "listing %s", dir)
	}
	var out []Unpacked
	for _, e := range ents {
		var u Unpacked
		if !e.Type().IsRegular() || filepath.Ext(e.Name()) != ".json" || readRecord(filepath.Join(dir, e.Name()), &u) != nil {
			continue
		}
		if s.unpackedPath(u.StateDir) != filepath.Join(dir, e.Name()) || source.CheckDigest(u.Manifest) != nil {
			continue
		}
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].StateDir < out[j].StateDir })
	return out, nil
}

func readRecord(path string, v any) error {
	f, err := source.OpenRegular(path)
	if err != nil {
		return err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxRecordSize))
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// DroppedBlob returns the record of a blob the store dropped; ok is false
// when there is none.
func (s *Store) DroppedBlob(d digest.Digest) (rec Dropped, ok bool, err error) {
	if err := source.CheckDigest(d); err != nil {
		return Dropped{}, false, err
	}
	err = readRecord(s.droppedPath(d), &rec)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Dropped{}, false, nil
	case err != nil || rec.Digest != d:
		return Dropped{}, false, nil // unreadable: as if none
	}
	return rec, true, nil
}

// RecordDropped records that the blob rec.Digest, missing from blobs/,
// is made again by the root filesystems rec.ReliesOn: they are added to
// those already recorded, and Confirmed is kept once set. A blob present
// in blobs/ is not recorded.
func (s *Store) RecordDropped(ctx context.Context, rec Dropped) error {
	if err := source.CheckDigest(rec.Digest); err != nil {
		return err
	}
	gc, err := s.lockGC(ctx, false)
	if err != nil {
		return err
	}
	defer gc.unlock()
	// Unpacks hold the store lock shared, so two of them can merge into
	// one record at once: each read it, added its tree and wrote it, and
	// the last write lost the other's tree (2 rounds in 8 of three
	// concurrent unpacks --keep-blobs=false of one image). Merges take
	// turns (GC's own merges hold the store lock exclusively).
	lk, err := lockFile(ctx, s.private("locks", "dropped.lock"), true)
	if err != nil {
		return err
	}
	defer lk.unlock()
	if s.has(ocispec.Descriptor{Digest: rec.Digest, Size: rec.Size}) {
		return nil
	}
	return s.mergeDropped(rec)
}

// mergeDropped writes rec, merged with what was recorded of the same
// blob. The caller holds the store lock.
func (s *Store) mergeDropped(rec Dropped) error {
	if old, ok, _ := s.DroppedBlob(rec.Digest); ok {
		for _, r := range old.ReliesOn {
			if !slices.Contains(rec.ReliesOn, r) {
				rec.ReliesOn = append(rec.ReliesOn, r)
			}
		}
		rec.Confirmed = rec.Confirmed || old.Confirmed
	}
	if rec.Time.IsZero() {
		rec.Time = time.Now().UTC()
	}
	return s.writeRecord(s.droppedPath(rec.Digest), rec)
}

// forgetDropped removes the record of a blob that is back in blobs/.
func (s *Store) forgetDropped(d digest.Digest) {
	os.Remove(s.droppedPath(d))
}

// BlobWriter writes one blob into the store, as containerd's content
// writers do: bytes go to an anonymous file beside blobs/, hashed as
// written, and Commit makes them the blob only when their size and digest
// are the descriptor's. Until Commit or Abort it holds the store lock
// shared (GC waits) and the blob's lock (a download of the same digest
// waits, then finds it present).
type BlobWriter struct {
	s    *Store
	desc ocispec.Descriptor
	f    *atomicfile.File
	h    hash.Hash
	n    int64
	gc   *gcHold
	lk   *fileLock
	done bool
}

// NewBlobWriter starts writing the blob desc names.
func (s *Store) NewBlobWriter(ctx context.Context, desc ocispec.Descriptor) (*BlobWriter, error) {
	if err := checkDescriptor(desc); err != nil {
		return nil, err
	}
	gc, err := s.lockGC(ctx, false)
	if err != nil {
		return nil, err
	}
	d := desc.Digest
	for _, dir := range []string{filepath.Dir(s.lockPath(d)), filepath.Dir(s.blobPath(d))} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			gc.unlock()
			return nil, errdefs.Wrap(err, errdefs.ErrInternal, "creating store directory")
		}
	}
	lk, err := lockFile(ctx, s.lockPath(d), true)
	if err != nil {
		gc.unlock()
		return nil, err
	}
	f, err := atomicfile.Create(s.blobPath(d), 0o644)
	if err != nil {
		lk.unlock()
		gc.unlock()
		return nil, errdefs.Wrap(err, errdefs.ErrInternal, "writing blob %s", d)
	}
	return &BlobWriter{s: s, desc: desc, f: f, h: d.Algorithm().Hash(), gc: gc, lk: lk}, nil
}

func (w *BlobWriter) Write(p []byte) (int, error) {
	if w.done {
		return 0, errdefs.New(errdefs.ErrInvalidArgument, "blob %s: write after commit or abort", w.desc.Digest)
	}
	if w.n+int64(len(p)) > w.desc.Size {
		return 0, errdefs.New(errdefs.ErrSizeMismatch, "blob %s is longer than %d bytes", w.desc.Digest, w.desc.Size)
	}
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	if err != nil {
		return n, errdefs.Wrap(err, errdefs.ErrInternal, "writing blob %s", w.desc.Digest)
	}
	return n, nil
}

// Commit checks the bytes written against the descriptor and, when they
// are the blob, publishes it in blobs/ (synced) and stamps it; the
// record of its having been dropped goes. Otherwise nothing is kept.
func (w *BlobWriter) Commit() error {
	if w.done {
		return errdefs.New(errdefs.ErrInvalidArgument, "blob %s: already committed or aborted", w.desc.Digest)
	}
	defer w.Abort()
	if w.n != w.desc.Size {
		return errdefs.New(errdefs.ErrSizeMismatch, "blob %s: %d bytes written, want %d", w.desc.Digest, w.n, w.desc.Size)
	}
	if got := digest.NewDigest(w.desc.Digest.Algorithm(), w.h); got != w.desc.Digest {
		return errdefs.New(errdefs.ErrDigestMismatch, "blob %s: the bytes written hash to %s", w.desc.Digest, got)
	}
	if err := w.f.Commit(); err != nil {
		return errdefs.Wrap(err, errdefs.ErrInternal, "storing blob %s", w.desc.Digest)
	}
	if fi, err := os.Lstat(w.s.blobPath(w.desc.Digest)); err == nil {
		w.lk.writeStamp(fi)
	}
	w.s.forgetDropped(w.desc.Digest)
	return nil
}

// Abort drops what was written; after Commit it only releases the locks.
func (w *BlobWriter) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.f.Abort()
	w.lk.unlock()
	w.gc.unlock()
}

// dropBlob records on what a stored blob that GC may drop relies, then
// removes it with its stamp (a crash in between leaves a record beside a
// blob that is still there, which nothing reads). The caller holds the
// store lock exclusively.
func (s *Store) dropBlob(rec Dropped) error {
	if err := s.mergeDropped(rec); err != nil {
		return err
	}
	if err := os.Remove(s.blobPath(rec.Digest)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return errdefs.Wrap(err, errdefs.ErrInternal, "removing blob %s", rec.Digest)
	}
	os.Remove(s.lockPath(rec.Digest))
	return nil
}
