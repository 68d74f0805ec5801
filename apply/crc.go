package apply

import (
	"encoding/binary"
	"hash"
	"hash/crc64"
)

// crcTable is the CRC-64/ISO table tar-split checks payloads with.
var crcTable = crc64.MakeTable(crc64.ISO)

// crcUpdate is crc64.Update(crc, crcTable, p), about three times as fast.
// The CRC of every payload byte is computed while applying and while
// rebuilding, and the table-driven one was the applier's costliest work
// per byte after writing.
//
// The ISO polynomial is sparse, G = x^64 + Q with Q = x^4 + x^3 + x + 1,
// so eight bytes can be folded in with shifts alone: the register t (the
// CRC xor the next 64 bits) is to be multiplied by x^64 modulo G, and
// x^64 = Q mod G. t*Q spills at most 4 bits past x^63; those bits times Q
// again fit in 8 bits and need no further reduction. In the reflected bit
// order CRC-64/ISO uses, a shift left by k becomes a shift right by k.
//
// Sixteen bytes at a time shorten the chain of dependent operations: the
// first word is multiplied by x^128 (Q^2 = x^8 + x^6 + x^2 + 1, spilling
// at most 8 bits) while the second, which does not depend on the
// register, is multiplied by x^64.
func crcUpdate(crc uint64, p []byte) uint64 {
	crc = ^crc
	for len(p) >= 16 {
		t := crc ^ binary.LittleEndian.Uint64(p)
		u := binary.LittleEndian.Uint64(p[8:])
		ht := t<<62 ^ t<<58 ^ t<<56 // the bits of t*Q^2 past x^63
		hu := u<<63 ^ u<<61 ^ u<<60
		crc = t ^ t>>2 ^ t>>6 ^ t>>8 ^ ht ^ ht>>1 ^ ht>>3 ^ ht>>4 ^
			u ^ u>>1 ^ u>>3 ^ u>>4 ^ hu ^ hu>>1 ^ hu>>3 ^ hu>>4
		p = p[16:]
	}
	for len(p) >= 8 {
		t := crc ^ binary.LittleEndian.Uint64(p)
		h := t<<63 ^ t<<61 ^ t<<60 // the bits of t*Q past x^63
		crc = t ^ t>>1 ^ t>>3 ^ t>>4 ^ h ^ h>>1 ^ h>>3 ^ h>>4
		p = p[8:]
	}
	crc = ^crc
	if len(p) > 0 {
		crc = crc64.Update(crc, crcTable, p)
	}
	return crc
}

// crcHash is crc64.New(crcTable) with crcUpdate.
type crcHash struct{ crc uint64 }

var _ hash.Hash64 = (*crcHash)(nil)

func newCRC() *crcHash { return &crcHash{} }

func (c *crcHash) Write(p []byte) (int, error) {
	c.crc = crcUpdate(c.crc, p)
	return len(p), nil
}

func (c *crcHash) Sum64() uint64 { return c.crc }
func (c *crcHash) Sum(b []byte) []byte {
	return binary.BigEndian.AppendUint64(b, c.crc)
}
func (c *crcHash) Reset()         { c.crc = 0 }
func (c *crcHash) Size() int      { return crc64.Size }
func (c *crcHash) BlockSize() int { return 1 }
