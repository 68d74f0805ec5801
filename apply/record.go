package apply

import (
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/vbatts/tar-split/archive/tar"
)

// entryRecorder sees the layer stream in tar-split's terms while the
// applier reads it, so that recording tar-split metadata needs no second
// parse: every byte of the uncompressed stream reaches it exactly once and
// in order, either as a segment (headers, padding, the payloads of entries
// that leave no regular file in the tree and of sparse entries, the
// end-of-archive blocks and anything after them, verbatim) or as the
// payload of a file entry that the applier wrote as a regular file (its
// name, size and CRC-64/ISO, as tar-split's packer stores them). Every
// other entry is reported with size 0, its payload bytes having been
// segments.
type entryRecorder interface {
	// segment records bytes that are not file payload. b is only valid
	// during the call.
	segment(b []byte) error
	// file records that the payload of the entry whose header carried name
	// came next: size the bytes of it that are not in segments, crc their
	// CRC-64 (ISO table), nil unless wantCRC.
	file(name string, size int64, crc []byte) error
	// wantCRC reports whether file needs crc, so that the applier computes
	// it only for a recorder that keeps it.
	wantCRC() bool
	// end is called once the whole stream was read and its digest,
	// diffID, matched.
	end(diffID digest.Digest) error
	// abort is called instead of end when the layer failed: nothing of it
	// may be kept.
	abort()
}

// nopRecorder records nothing.
type nopRecorder struct{}

func (nopRecorder) segment([]byte) error             { return nil }
func (nopRecorder) file(string, int64, []byte) error { return nil }
func (nopRecorder) wantCRC() bool                    { return false }
func (nopRecorder) end(digest.Digest) error          { return nil }
func (nopRecorder) abort()                           {}

// isSparse tells whether the tar reader expands hdr's payload from a
// sparse map (old GNU 'S' entries, PAX GNU.sparse.* 0.0, 0.1 and 1.0): its
// content then differs from its bytes in the archive.
func isSparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}
