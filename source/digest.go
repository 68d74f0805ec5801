package source

import (
	"github.com/opencontainers/go-digest"

	"github.com/ocifetch/ocifetch/errdefs"
)

// CheckDigest validates d (its algorithm known and linked in, its hex of
// the right length and alphabet) before it is used in a URL or a file
// name: a digest from a registry, a layout or a caller is untrusted, and
// "sha256:../../x" must never reach either (CVE-2024-3727). It is the one
// digest check of source, resolve and fetch, and a failure is always
// invalid_argument; resolve, which verifies documents, reports a document
// that carries such a digest as manifest_invalid.
func CheckDigest(d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return errdefs.Wrap(err, errdefs.ErrInvalidArgument, "invalid digest %q", printable(string(d), 100))
	}
	return nil
}
