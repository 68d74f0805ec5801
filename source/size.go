package source

import (
	"github.com/ocifetch/ocifetch/errdefs"
)

// MaxBlobSize is the largest size a descriptor may give any blob: 1 TiB,
// far beyond any real layer. A size near 2^63 would overflow the sums of
// sizes and offsets that downloads and readers compute (a layer claiming
// 2^63-1 bytes once panicked inside a download goroutine), so larger
// claims are refused before anything is fetched.
const MaxBlobSize int64 = 1 << 40

// CheckSize validates a descriptor's size claim: not negative
// (manifest_invalid) and at most limit (too_large). what names the
// content for the message.
func CheckSize(size, limit int64, what string) error {
	switch {
	case size < 0:
		return errdefs.New(errdefs.ErrManifestInvalid, "%s has a negative size, %d", what, size)
	case size > limit:
		return errdefs.New(errdefs.ErrTooLarge, "%s claims %d bytes, over the %d byte limit", what, size, limit)
	}
	return nil
}
