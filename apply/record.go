package apply

import (
	"io"
	"os"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/vbatts/tar-split/archive/tar"
	"golang.org/x/sys/unix"
)

// recorder is what the applier tells about the layers it applies, so that
// recording (tar-split metadata, content digests, the shadow store of
// displaced files) stays out of the applier: the applier writes the tree,
// the recorder keeps what rebuild and verify need. One recorder serves
// one Apply; its methods are called from the applier's goroutine, except
// the taps of beginLayer (see layerTaps).
//
// Every byte of each layer's uncompressed stream reaches the recorder
// exactly once and in order, either as a segment (headers, padding, the
// payloads of entries that leave no regular file in the tree and of
// sparse entries, the end-of-archive blocks and anything after them,
// verbatim) or as the payload of a file entry that the applier wrote as a
// regular file (its size, CRC-64/ISO and content digest, and the path it
// was written to). Every other entry is a file record of size 0, its
// payload bytes having been segments.
type recorder interface {
	// beginLayer is called before layer i (0-based) is opened. The taps
	// it returns, if any, see the layer's bytes.
	beginLayer(i int) (layerTaps, error)
	// segment records bytes that are not file payload. b is only valid
	// during the call.
	segment(b []byte) error
	// file records the payload of the next file entry.
	file(f *fileRecord) error
	// wantDigests reports whether file and written need CRCs and digests,
	// so that the applier computes them only for a recorder that keeps
	// them.
	wantDigests() bool
	// written records the content digest of a regular file the applier
	// wrote (dev and ino name it): the tree manifest takes it from here
	// instead of reading the file again.
	written(dev, ino uint64, d *sum) error
	// displace is called before the applier removes or replaces a
	// regular file of the tree. When the file holds a recorded payload,
	// the recorder moves it aside (into the shadow store) and reports
	// moved; otherwise the applier removes it as it would have.
	displace(f *treeFile) (moved bool, err error)
	// holdsPayloads reports whether any file of the tree holds a recorded
	// payload, so that removing a directory need not look below it when
	// none does.
	holdsPayloads() bool
	// endLayer is called once the whole stream was read and its digest,
	// diffID, matched, and the blob's digest and size too.
	endLayer(diffID digest.Digest) error
	// abortLayer is called instead of endLayer when the layer failed:
	// nothing of it may be kept.
	abortLayer()
}

// layerTaps are writers a recorder may attach to a layer: compressed gets
// the blob's bytes as read, before decompression (from the decompressor's
// goroutine), uncompressed the tar stream as decompressed (from the
// hasher's goroutine, in the order of the stream). Both see every byte
// once, before the applier takes it; a recorder that identifies how a
// blob was compressed (to recreate it) needs both. Their errors are
// ignored by the applier: a tap reports its failure through endLayer.
type layerTaps struct {
	compressed   io.Writer
	uncompressed io.Writer
}

// fileRecord is a file entry of the tar-split metadata.
type fileRecord struct {
	name string // as the header carried it
	// size is how many payload bytes the tree holds for it: 0 when the
	// payload, if any, went into segments.
	size int64
	crc  []byte // CRC-64/ISO of those bytes, big-endian
	sum  *sum   // their content digest, when size > 0
	at   string // where the applier wrote them: canonical, clean
	// renamed is set when at is not the entry's cleaned name (a symbolic
	// link among its parents): only then does the metadata record it.
	renamed bool
}

// treeFile is a regular file about to be removed or replaced, as the
// recorder sees it: its canonical name, its status, and the operations
// that move it out of the tree or read it, both confined to the root.
type treeFile struct {
	canon string
	st    *unix.Stat_t
	// moveOut renames the file into the directory dirfd as name.
	moveOut func(dirfd int, name string) error
	// open opens it for reading.
	open func() (*os.File, error)
}

// nopRecorder records nothing.
type nopRecorder struct{}

func (nopRecorder) beginLayer(int) (layerTaps, error)  { return layerTaps{}, nil }
func (nopRecorder) segment([]byte) error               { return nil }
func (nopRecorder) file(*fileRecord) error             { return nil }
func (nopRecorder) wantDigests() bool                  { return false }
func (nopRecorder) written(uint64, uint64, *sum) error { return nil }
func (nopRecorder) displace(*treeFile) (bool, error)   { return false, nil }
func (nopRecorder) holdsPayloads() bool                { return false }
func (nopRecorder) endLayer(digest.Digest) error       { return nil }
func (nopRecorder) abortLayer()                        {}

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
