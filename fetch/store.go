package fetch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/asynchash"
	"github.com/ocifetch/ocifetch/internal/atomicfile"
	"github.com/ocifetch/ocifetch/resolve"
	"github.com/ocifetch/ocifetch/source"
)

// privateDir holds what the store needs besides the OCI layout: partial
// downloads, lock files and temporary files. It sits beside blobs/, never
// inside it, so tools that read the layout (skopeo, umoci) and listings of
// blobs/ only ever see complete, verified blobs; and it is on the same
// filesystem, so a finished download is renamed into blobs/ atomically.
const privateDir = ".ocifetch"

// Annotations this package adds to the entries it writes in index.json.
const (
	// AnnotationIndexes lists, comma separated, the digests of the image
	// indexes that led to the manifest. GC keeps those blobs, so the store
	// still holds the documents the reference resolved through.
	AnnotationIndexes = "com.github.ocifetch.indexes"
	// AnnotationReference is the normalized reference the image was
	// pulled from.
	AnnotationReference = "com.github.ocifetch.reference"
	// AnnotationSubject marks an entry recorded with PutReferrer: the
	// digest of the manifest it refers to (a signature, an attestation,
	// an SBOM). GC keeps such an entry, and what it reaches, exactly as
	// long as it keeps that manifest.
	AnnotationSubject = "com.github.ocifetch.subject"
)

// Store is a content store in the OCI image layout format (image-spec
// image-layout.md): an oci-layout file, index.json and blobs/<alg>/<hex>,
// readable as-is by skopeo ("oci:DIR:NAME"), umoci and crane. A blob
// appears in blobs/ only once it is complete and verified.
//
// A Store may be shared by goroutines (they share one download per digest)
// and by processes (they serialize on per-digest lock files); its methods
// are safe for concurrent use.
type Store struct {
	dir string

	mu       sync.Mutex
	inflight map[digest.Digest]*transfer

	// The store-wide lock as this Store holds it shared (see lockGC).
	gcMu     sync.Mutex
	gcShared int
	gcLock   *fileLock
}

// DefaultStoreDir returns $XDG_CACHE_HOME/ocifetch, or ~/.cache/ocifetch
// when XDG_CACHE_HOME is unset or not absolute (the XDG base directory
// rule). It does not create the directory.
func DefaultStoreDir() (string, error) {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "ocifetch"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", errdefs.Wrap(err, errdefs.ErrInvalidArgument, "no cache directory: set XDG_CACHE_HOME or HOME")
	}
	return filepath.Join(home, ".cache", "ocifetch"), nil
}

// OpenStore opens the store at dir, creating it (and an empty layout) if
// needed. An existing directory must be an OCI image layout of version
// 1.0.0 or empty.
func OpenStore(dir string) (*Store, error) { return openStore(dir, nil) }

// openStore is OpenStore; indexMissing, a test's hook, runs when
// initLayout has found no index.json, before it looks at the blobs.
func openStore(dir string, indexMissing func()) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "store directory %q", dir)
	}
	s := &Store{dir: abs, inflight: map[digest.Digest]*transfer{}}
	for _, d := range []string{
		filepath.Join(abs, ocispec.ImageBlobsDir, string(digest.SHA256)),
		s.private("partial", string(digest.SHA256)), s.private("locks", string(digest.SHA256)),
		s.private("tmp"),
	} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "creating store %s", abs)
		}
	}
	if err := s.initLayout(indexMissing); err != nil {
		return nil, err
	}
	return s, nil
}

// initLayout writes oci-layout and an empty index.json if they are
// missing, or checks the layout version if present. It holds the store
// lock shared, as every writer does: GC removes leftover temporary files
// while it holds the lock exclusively.
func (s *Store) initLayout(indexMissing func()) error {
	gc, err := s.lockGC(context.Background(), false)
	if err != nil {
		return err
	}
	defer gc.unlock()
	layoutPath := filepath.Join(s.dir, ocispec.ImageLayoutFile)
	data, err := os.ReadFile(layoutPath)
	switch {
	case err == nil:
		var l ocispec.ImageLayout
		if err := json.Unmarshal(data, &l); err != nil || l.Version != ocispec.ImageLayoutVersion {
			return errdefs.New(errdefs.ErrInvalidArgument, "%s: not an OCI image layout of version %s", s.dir, ocispec.ImageLayoutVersion)
		}
	case errors.Is(err, fs.ErrNotExist):
		b, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
		if err := atomicfile.WriteFile(layoutPath, b, 0o644); err != nil {
			return err
		}
	default:
		return errdefs.Wrap(err, errdefs.ErrInvalidArgument, "reading %s", layoutPath)
	}
	if _, err := os.Lstat(s.indexPath()); err == nil {
		return nil
	}
	// A store this program made has index.json before its first blob
	// (oci-layout, then index.json, then pulls). Blobs without one mean
	// index.json was lost: an empty one written here would make every
	// blob garbage, and the next gc would remove them all.
	if indexMissing != nil {
		indexMissing()
	}
	blobs, err := s.countBlobs()
	if err != nil {
		return errdefs.Wrap(err, errdefs.ErrInvalidArgument, "reading the blobs of %s", s.dir)
	}
	// Another process opening the same new store may have written
	// index.json and its first blob since the Lstat above: index.json is
	// never removed, so one present now was there before those blobs.
	if _, err := os.Lstat(s.indexPath()); err == nil {
		return nil
	}
	if blobs > 0 {
		return errdefs.New(errdefs.ErrInvalidArgument, "%s holds %d blobs but no index.json; restore its index.json, or remove the store, so that nothing treats every blob as garbage", s.dir, blobs)
	}
	return s.updateIndexLocked(context.Background(), func(*ocispec.Index) error { return nil })
}

// countBlobs counts the entries under blobs/, in every algorithm's
// directory: an image of sha512 digests keeps its blobs in blobs/sha512,
// which gc sweeps as it sweeps blobs/sha256.
func (s *Store) countBlobs() (int, error) {
	dir := filepath.Join(s.dir, ocispec.ImageBlobsDir)
	algs, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, a := range algs {
		if !a.IsDir() {
			n++
			continue
		}
		ents, err := os.ReadDir(filepath.Join(dir, a.Name()))
		if err != nil {
			return 0, err
		}
		n += len(ents)
	}
	return n, nil
}

// Hold keeps GC from running on the store (in any process) until release
// is called, and waits for a GC that is running to finish. Blobs written
// while holding (WriteBlob, FetchBlob) cannot be removed before they are
// recorded (Tag, PutReferrer): hold across both when writing blobs that
// index.json does not reach yet. Pulls hold the store for as long as they
// run, by themselves.
func (s *Store) Hold(ctx context.Context) (release func(), err error) {
	l, err := s.lockGC(ctx, false)
	if err != nil {
		return nil, err
	}
	return l.unlock, nil
}

// Dir is the store's absolute directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) private(elem ...string) string {
	return filepath.Join(append([]string{s.dir, privateDir}, elem...)...)
}

func (s *Store) indexPath() string { return filepath.Join(s.dir, ocispec.ImageIndexFile) }

// checkDescriptor validates what a download relies on: the digest and a
// non-negative size.
func checkDescriptor(desc ocispec.Descriptor) error {
	if err := source.CheckDigest(desc.Digest); err != nil {
		return err
	}
	if desc.Size < 0 {
		return errdefs.New(errdefs.ErrInvalidArgument, "descriptor %s has negative size %d", desc.Digest, desc.Size)
	}
	return nil
}

// blobPath, partialPath and lockPath are only called with digests that
// source.CheckDigest accepted: their Encoded() is plain hex of the right
// length for their algorithm, never a path (CVE-2024-3727).
func (s *Store) blobPath(d digest.Digest) string {
	return filepath.Join(s.dir, ocispec.ImageBlobsDir, d.Algorithm().String(), d.Encoded())
}

func (s *Store) partialPath(d digest.Digest) string {
	return s.private("partial", d.Algorithm().String(), d.Encoded())
}

func (s *Store) lockPath(d digest.Digest) string {
	return s.private("locks", d.Algorithm().String(), d.Encoded()+".lock")
}

// BlobPath returns where the blob named by d lives (or would live) in the
// store. The digest is validated first.
func (s *Store) BlobPath(d digest.Digest) (string, error) {
	if err := source.CheckDigest(d); err != nil {
		return "", err
	}
	return s.blobPath(d), nil
}

// Has reports whether the blob desc names is in the store with the size
// desc gives. A file of another size is treated as absent (and replaced by
// the next download). Has does not read the blob; a pull also checks that
// the file did not change since it was stored, and hashes it again if it
// did (see the package documentation, The store).
func (s *Store) Has(desc ocispec.Descriptor) (bool, error) {
	if err := checkDescriptor(desc); err != nil {
		return false, err
	}
	return s.has(desc), nil
}

func (s *Store) has(desc ocispec.Descriptor) bool {
	fi, err := os.Lstat(s.blobPath(desc.Digest))
	return err == nil && fi.Mode().IsRegular() && fi.Size() == desc.Size
}

// Open returns a reader of a blob in the store. The content is verified
// again as it is read (size and digest, an error before io.EOF on a
// mismatch): blobs were verified when they entered the store, but a disk or
// a person can change them later, and hashing costs less than the
// decompression every reader of a layer does anyway. A blob found corrupt
// this way is removed from the store, so that the next pull fetches it
// again, and the error names its file.
func (s *Store) Open(desc ocispec.Descriptor) (io.ReadCloser, error) {
	if err := checkDescriptor(desc); err != nil {
		return nil, err
	}
	f, err := source.OpenRegular(s.blobPath(desc.Digest))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errdefs.New(errdefs.ErrNotFound, "blob %s is not in the store", desc.Digest)
		}
		return nil, errdefs.Wrap(err, errdefs.ErrInternal, "opening blob %s", desc.Digest)
	}
	v := &verifyingReader{r: f, c: f, desc: desc, h: asynchash.New(desc.Digest.Algorithm().Hash())}
	if fi, err := f.Stat(); err == nil {
		v.corrupt = func(err error) error {
			if s.removeIfSame(desc.Digest, fi) {
				return errdefs.Wrap(err, errdefs.KindOf(err), "blob %s in the store (%s) is corrupt and was removed; run again to fetch it anew", desc.Digest, s.blobPath(desc.Digest))
			}
			return errdefs.Wrap(err, errdefs.KindOf(err), "blob %s in the store (%s) is corrupt", desc.Digest, s.blobPath(desc.Digest))
		}
	}
	return v, nil
}

// WriteBlob stores data as the blob desc names, after checking that data
// has desc's size and digest. It is for the small documents resolving
// already read and verified (indexes, manifests, configs): they are written
// from memory, never fetched again. A blob already present is left alone,
// unless its file changed since it was stored and no longer holds data.
// Until something recorded in index.json reaches it, GC may remove the
// blob: see Hold.
func (s *Store) WriteBlob(ctx context.Context, desc ocispec.Descriptor, data []byte) error {
	if err := checkDescriptor(desc); err != nil {
		return err
	}
	if int64(len(data)) != desc.Size {
		return errdefs.New(errdefs.ErrSizeMismatch, "blob %s: have %d bytes, descriptor says %d", desc.Digest, len(data), desc.Size)
	}
	if got := desc.Digest.Algorithm().FromBytes(data); got != desc.Digest {
		return errdefs.New(errdefs.ErrDigestMismatch, "blob %s: content hashes to %s", desc.Digest, got)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	gc, err := s.lockGC(ctx, false)
	if err != nil {
		return err
	}
	defer gc.unlock()
	if s.holds(desc.Digest, data) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(s.blobPath(desc.Digest)), 0o755); err != nil {
		return errdefs.Wrap(err, errdefs.ErrInternal, "creating blob directory")
	}
	return atomicfile.WriteFile(s.blobPath(desc.Digest), data, 0o644)
}

// holds reports whether the blob file of d holds data. Documents are
// small: comparing their bytes costs what reading a stamp would, so they
// are not stamped.
func (s *Store) holds(d digest.Digest, data []byte) bool {
	f, err := source.OpenRegular(s.blobPath(d))
	if err != nil {
		return false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() != int64(len(data)) {
		return false
	}
	have := make([]byte, len(data)+1)
	n, _ := io.ReadFull(f, have)
	return n == len(data) && bytes.Equal(have[:n], data)
}

// Index returns the store's index.json.
func (s *Store) Index() (ocispec.Index, error) {
	var idx ocispec.Index
	f, err := source.OpenRegular(s.indexPath())
	if err != nil {
		return idx, errdefs.Wrap(err, errdefs.ErrInternal, "opening index.json")
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, resolve.DefaultMaxDocumentSize+1))
	if err != nil {
		return idx, errdefs.Wrap(err, errdefs.ErrInternal, "reading index.json")
	}
	if len(data) > resolve.DefaultMaxDocumentSize {
		return idx, errdefs.New(errdefs.ErrTooLarge, "index.json is over %d bytes", resolve.DefaultMaxDocumentSize)
	}
	if err := json.Unmarshal(data, &idx); err != nil {
		return idx, errdefs.Wrap(err, errdefs.ErrManifestInvalid, "parsing index.json")
	}
	return idx, nil
}

// updateIndex applies edit to index.json under the store's index lock and
// replaces the file atomically, so concurrent pulls (in any process) never
// lose each other's entries and readers never see a half-written file. It
// holds the store lock shared, as every writer does.
func (s *Store) updateIndex(ctx context.Context, edit func(*ocispec.Index) error) error {
	gc, err := s.lockGC(ctx, false)
	if err != nil {
		return err
	}
	defer gc.unlock()
	return s.updateIndexLocked(ctx, edit)
}

// updateIndexLocked is updateIndex for a caller that holds the store lock
// (shared or, for GC, exclusive).
func (s *Store) updateIndexLocked(ctx context.Context, edit func(*ocispec.Index) error) error {
	l, err := lockFile(ctx, s.private("locks", "index.lock"), true)
	if err != nil {
		return err
	}
	defer l.unlock()
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	if _, err := os.Lstat(s.indexPath()); err == nil {
		if idx, err = s.Index(); err != nil {
			return err
		}
	}
	if err := edit(&idx); err != nil {
		return err
	}
	if idx.Manifests == nil {
		idx.Manifests = []ocispec.Descriptor{}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(idx); err != nil {
		return errdefs.Wrap(err, errdefs.ErrInternal, "encoding index.json")
	}
	return atomicfile.WriteFile(s.indexPath(), buf.Bytes(), 0o644)
}

// verifyingReader checks size and digest of what it reads and reports a
// mismatch as an error from Read before it would return io.EOF, so a
// consumer never sees a clean end of bad content; the bytes that complete
// the size are held back until they are found to match.
type verifyingReader struct {
	r    io.Reader
	c    io.Closer
	desc ocispec.Descriptor
	// h hashes a large blob in a goroutine of its own: the reader is
	// typically a decompressor's source, and its hashing would otherwise
	// hold up the decompression on a warm unpack.
	h   *asynchash.Hash
	n   int64
	err error
	// corrupt, if set, is told of a mismatch and returns the error to
	// report (Store.Open removes the blob there).
	corrupt func(error) error
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if rest := v.desc.Size - v.n; int64(len(p))-1 > rest {
		p = p[:rest+1] // read at most one byte past the size, to notice excess (without overflow)
	}
	n, err := v.r.Read(p)
	if v.n+int64(n) > v.desc.Size {
		n = int(v.desc.Size - v.n)
		err = errdefs.New(errdefs.ErrSizeMismatch, "blob %s is longer than %d bytes", v.desc.Digest, v.desc.Size)
	}
	v.h.Write(p[:n])
	v.n += int64(n)
	if err == nil && n > 0 && v.n == v.desc.Size {
		// The last bytes wait for the digest: a consumer that checks
		// its own end (gzip's trailer) would otherwise see bad bytes
		// whole, call them a bad layer, and leave them in the store.
		if got := digest.NewDigest(v.desc.Digest.Algorithm(), v.h); got != v.desc.Digest {
			n, err = 0, io.EOF
		}
	}
	if errors.Is(err, io.EOF) {
		got := digest.NewDigest(v.desc.Digest.Algorithm(), v.h)
		v.h.Close() // the verdict is in: no goroutine waits for Close
		switch {
		case v.n != v.desc.Size:
			err = errdefs.New(errdefs.ErrSizeMismatch, "blob %s has %d bytes, want %d", v.desc.Digest, v.n, v.desc.Size)
		case got != v.desc.Digest:
			err = errdefs.New(errdefs.ErrDigestMismatch, "blob %s: content hashes to %s", v.desc.Digest, got)
		}
		if err != io.EOF && v.corrupt != nil && (errdefs.Is(err, errdefs.ErrDigestMismatch) || errdefs.Is(err, errdefs.ErrSizeMismatch)) {
			err = v.corrupt(err)
		}
	} else if err != nil && v.corrupt != nil && errdefs.Is(err, errdefs.ErrSizeMismatch) {
		err = v.corrupt(err)
	}
	if err != nil {
		v.err = err
	}
	return n, err
}

func (v *verifyingReader) Close() error {
	v.h.Close()
	return v.c.Close()
}
