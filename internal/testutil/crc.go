package testutil

import (
	"encoding/binary"
	"hash/crc64"
	"testing"
)

// ForgeCRC returns content of orig's length that starts with want and has
// orig's CRC-64/ISO (what tar-split records): the 8 bytes after want are
// solved for, a CRC being affine in the message bits over GF(2). Tests
// use it for the rewrite a size-and-CRC check cannot see.
func ForgeCRC(t testing.TB, orig []byte, want string) []byte {
	t.Helper()
	if len(want)+8 > len(orig) {
		t.Fatalf("%d bytes do not fit in %d", len(want)+8, len(orig))
	}
	tab := crc64.MakeTable(crc64.ISO)
	target := crc64.Checksum(orig, tab)
	b := append(append([]byte(want), make([]byte, 8)...), orig[len(want)+8:]...)
	at := len(want)
	c0 := crc64.Checksum(b, tab)
	// Column i: how flipping free bit i changes the CRC.
	var cols [64]uint64
	for i := range cols {
		b[at+i/8] ^= 1 << (i % 8)
		cols[i] = crc64.Checksum(b, tab) ^ c0
		b[at+i/8] ^= 1 << (i % 8)
	}
	// Gaussian elimination: combine columns into target^c0, tracking
	// which free bits each combined column stands for.
	var basis [64]struct{ v, x uint64 }
	for i, c := range cols {
		x := uint64(1) << i
		for bit := 63; bit >= 0 && c != 0; bit-- {
			if c>>bit&1 == 0 {
				continue
			}
			if basis[bit].v == 0 {
				basis[bit].v, basis[bit].x = c, x
				break
			}
			c ^= basis[bit].v
			x ^= basis[bit].x
		}
	}
	need, x := target^c0, uint64(0)
	for bit := 63; bit >= 0; bit-- {
		if need>>bit&1 == 1 && basis[bit].v != 0 {
			need ^= basis[bit].v
			x ^= basis[bit].x
		}
	}
	binary.LittleEndian.PutUint64(b[at:], x)
	if need != 0 || crc64.Checksum(b, tab) != target {
		t.Fatal("could not forge the CRC")
	}
	return b
}
