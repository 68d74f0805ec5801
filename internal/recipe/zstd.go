package recipe

import (
	"encoding/binary"
	"errors"
)

var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// zstdFrameHeader is what a zstd frame header (RFC 8878 section 3.1.1.1)
// tells before any block: the fingerprint of the encoder's settings.
type zstdFrameHeader struct {
	singleSegment bool
	checksum      bool
	dictID        uint32
	window        uint64 // 0 for a single-segment frame (no window descriptor)
	hasSize       bool
	size          uint64
	length        int // bytes, magic included
}

func parseZstdFrameHeader(b []byte) (*zstdFrameHeader, error) {
	if len(b) < 5 {
		return nil, errShortHeader
	}
	if string(b[:4]) != string(zstdMagic) {
		return nil, errors.New("not a zstd frame")
	}
	fhd := b[4]
	if fhd&(1<<3) != 0 {
		return nil, errors.New("zstd frame header sets its reserved bit")
	}
	h := &zstdFrameHeader{singleSegment: fhd&(1<<5) != 0, checksum: fhd&(1<<2) != 0}
	n := 5
	if !h.singleSegment {
		if len(b) < n+1 {
			return nil, errShortHeader
		}
		wd := b[n]
		base := uint64(1) << (10 + wd>>3)
		h.window = base + base/8*uint64(wd&7)
		n++
	}
	didSize := [4]int{0, 1, 2, 4}[fhd&3]
	fcsSize := [4]int{0, 2, 4, 8}[fhd>>6]
	if fcsSize == 0 && h.singleSegment {
		fcsSize = 1
	}
	if len(b) < n+didSize+fcsSize {
		return nil, errShortHeader
	}
	switch didSize {
	case 1:
		h.dictID = uint32(b[n])
	case 2:
		h.dictID = uint32(binary.LittleEndian.Uint16(b[n:]))
	case 4:
		h.dictID = binary.LittleEndian.Uint32(b[n:])
	}
	n += didSize
	h.hasSize = fcsSize != 0
	switch fcsSize {
	case 1:
		h.size = uint64(b[n])
	case 2:
		h.size = uint64(binary.LittleEndian.Uint16(b[n:])) + 256
	case 4:
		h.size = uint64(binary.LittleEndian.Uint32(b[n:]))
	case 8:
		h.size = binary.LittleEndian.Uint64(b[n:])
	}
	h.length = n + fcsSize
	return h, nil
}

// zstdDefaultWindow is the window each pinned encoder writes in a
// streamed frame's header when only the level is set
// (TestZstdDefaultWindows holds the table to the encoders).
func zstdDefaultWindow(version string, level int) uint64 {
	const mib = 1 << 20
	switch {
	case level == 1:
		return 4 * mib
	case level == 2 || version != "v1.15.12":
		return 8 * mib
	case level == 3:
		return 16 * mib
	default:
		return 32 * mib
	}
}
