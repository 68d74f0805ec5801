package apply

import (
	"encoding/binary"
	"encoding/hex"
	"hash"
	"sync"

	"github.com/zeebo/blake3"
)

// The content digest of a regular file, recorded for every file the
// applier writes (in the tree manifest, for Verify) and for every payload
// (in the tar-split metadata, for Rebuild). CRC-64 stays in the tar-split
// entries, where stock tar-split checks it, but a CRC is linear: eight
// chosen bytes give any content any CRC, so it proves nothing against a
// container that rewrites its own rootfs.
//
// The digest is a hash of hashes so that a hole costs nothing to account
// for. The content is cut into blocks of digestBlock bytes. A file of one
// block or less (most files) is H(0x00 || content). A larger one is
// H(0x01 || h0 || h1 || ... || len), where h0 = H(0x00 || block 0), hi =
// H(block i) for the others, and len is the length in 8 bytes, little
// endian. The leading byte keeps the two forms apart: no content of one
// form hashes like a list of the other. A block known to be zeros (a hole
// of a sparse file, skipped by SEEK_HOLE and by the sparse writer)
// contributes a constant without being read or hashed, so a 60 GB sparse
// file of a few data blocks is hashed in milliseconds, like its CRC. The
// result depends on the content only, never on where the holes are: a
// block of zeros written as data hashes to the same constant. Collision
// resistance is that of the hash (fixed-shape lists of fixed-size
// blocks, the length included). digestName names the construction in
// state.json.
const (
	digestBlock = 64 << 10
	digestSize  = 32
	// digestName is the construction and hash, as state.json records it.
	digestName = "blake3-64k"
)

// newBlockHash returns the hash of the construction. BLAKE3 was chosen
// over SHA-256 by measurement: docs/performance.md has the figures.
func newBlockHash() hash.Hash { return blake3.New() }

// sum is a content digest.
type sum [digestSize]byte

func (s sum) String() string { return hex.EncodeToString(s[:]) }

// parseSum reads a digest as String writes it.
func parseSum(s string) (sum, bool) {
	var d sum
	if len(s) != 2*digestSize {
		return d, false
	}
	if _, err := hex.Decode(d[:], []byte(s)); err != nil {
		return d, false
	}
	return d, true
}

var (
	zeroBlockOnce sync.Once
	// zeroFirst is h0 of a block of zeros; zeroBlocks the digest of a
	// later block of zeros, repeated, so that a run of them is one Write.
	zeroFirst  [digestSize]byte
	zeroBlocks []byte
)

const zeroRun = 128 // block digests per Write of a hole

func zeroBlockSums() ([]byte, *[digestSize]byte) {
	zeroBlockOnce.Do(func() {
		h := newBlockHash()
		h.Write(make([]byte, digestBlock))
		one := h.Sum(nil)
		for range zeroRun {
			zeroBlocks = append(zeroBlocks, one...)
		}
		h.Reset()
		h.Write([]byte{0})
		h.Write(make([]byte, digestBlock))
		h.Sum(zeroFirst[:0])
	})
	return zeroBlocks, &zeroFirst
}

// fileHash computes the digest of one file's content, written to it in
// order; zeros accounts for a hole. Reset makes it ready for the next.
type fileHash struct {
	inner, outer hash.Hash
	n            int64 // bytes of the current block hashed so far
	size         int64
	blocks       int64 // blocks ended
	buf          [digestSize]byte
}

func newFileHash() *fileHash { return newFileHashOf(newBlockHash) }

// newFileHashOf is the construction over another hash, for the benchmark
// that chose BLAKE3. Holes (zeros) need the chosen hash.
func newFileHashOf(h func() hash.Hash) *fileHash {
	f := &fileHash{inner: h(), outer: h()}
	f.Reset()
	return f
}

func (f *fileHash) Reset() {
	f.inner.Reset()
	f.inner.Write([]byte{0})
	f.n, f.size, f.blocks = 0, 0, 0
}

func (f *fileHash) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		if f.n == digestBlock {
			f.endBlock()
		}
		m := min(int64(len(p)), digestBlock-f.n)
		f.inner.Write(p[:m])
		f.n += m
		f.size += m
		p = p[m:]
	}
	return total, nil
}

// endBlock ends a full block, which is not the last: the last is summed
// by Sum (a file of one block is its first block's digest).
func (f *fileHash) endBlock() {
	if f.blocks == 0 {
		f.outer.Reset()
		f.outer.Write([]byte{1})
	}
	f.outer.Write(f.inner.Sum(f.buf[:0]))
	f.inner.Reset()
	f.n = 0
	f.blocks++
}

var zeroBuf [digestBlock]byte

// zeros adds n zero bytes: whole blocks as the constant, the rest hashed.
func (f *fileHash) zeros(n int64) {
	for n > 0 {
		if f.n == digestBlock && n > 0 {
			f.endBlock()
		}
		if f.n == 0 && n > digestBlock {
			// Whole blocks that are not the last: their digests only.
			run, first := zeroBlockSums()
			if f.blocks == 0 {
				f.outer.Reset()
				f.outer.Write([]byte{1})
				f.outer.Write(first[:])
				f.blocks, f.size, n = 1, f.size+digestBlock, n-digestBlock
				f.inner.Reset()
				continue
			}
			k := min((n-1)/digestBlock, zeroRun)
			f.outer.Write(run[:k*digestSize])
			f.blocks += k
			f.size += k * digestBlock
			n -= k * digestBlock
			continue
		}
		m := min(n, digestBlock-f.n)
		f.Write(zeroBuf[:m])
		n -= m
	}
}

// Sum returns the digest of what was written.
func (f *fileHash) Sum() sum {
	var s sum
	if f.blocks == 0 {
		f.inner.Sum(s[:0])
		return s
	}
	f.outer.Write(f.inner.Sum(f.buf[:0]))
	var l [8]byte
	binary.LittleEndian.PutUint64(l[:], uint64(f.size))
	f.outer.Write(l[:])
	f.outer.Sum(s[:0])
	return s
}

// digestOf returns the digest of b.
func digestOf(b []byte) sum {
	h := newFileHash()
	h.Write(b)
	return h.Sum()
}
