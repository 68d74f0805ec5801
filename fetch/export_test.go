package fetch

import (
	"context"
	"io"
	"os"

	"github.com/opencontainers/go-digest"
)

// StreamHashes reports whether rc, a reader from Session.Layer or
// OpenLayer, hashes what it returns itself (true) or relies on the verdict
// of the download it follows or followed (false). Readers of other kinds
// hash.
func StreamHashes(rc io.ReadCloser) bool {
	r, ok := rc.(*streamReader)
	if !ok {
		return true
	}
	if _, raw := r.fallback.(*os.File); raw {
		return false
	}
	r.t.rw.RLock()
	defer r.t.rw.RUnlock()
	return r.hashing
}

// Restamp records a stored blob's file as it is now, as if the store had
// written it: a test's stand-in for a change that leaves a file's size,
// times and inode alone (bit rot).
func Restamp(s *Store, d digest.Digest) { s.stampBlob(context.Background(), d) }

// OpenStoreRacing is OpenStore with indexMissing run when it has found
// no index.json, before it looks at the blobs: a test's stand-in for
// another process opening the same new store in that moment.
func OpenStoreRacing(dir string, indexMissing func()) (*Store, error) {
	return openStore(dir, indexMissing)
}
