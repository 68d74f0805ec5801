package recipe

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
)

// pgzipTailSize is how much of the previous block pgzip (v1.2.5 to v1.3.0)
// gives each block as its deflate dictionary.
const pgzipTailSize = 16384

var errShortHeader = errors.New("header incomplete")

// appendGzipHeader appends the header h describes.
func appendGzipHeader(dst []byte, h *GzipHeader) []byte {
	start := len(dst)
	dst = append(dst, 0x1f, 0x8b, 8, h.Flags)
	dst = binary.LittleEndian.AppendUint32(dst, h.MTime)
	dst = append(dst, h.XFL, h.OS)
	if h.Flags&gzipFExtra != 0 {
		dst = binary.LittleEndian.AppendUint16(dst, uint16(len(h.Extra)))
		dst = append(dst, h.Extra...)
	}
	if h.Flags&gzipFName != 0 {
		dst = appendLatin1(dst, h.Name)
	}
	if h.Flags&gzipFComment != 0 {
		dst = appendLatin1(dst, h.Comment)
	}
	if h.Flags&gzipFHCRC != 0 {
		dst = binary.LittleEndian.AppendUint16(dst, uint16(crc32.ChecksumIEEE(dst[start:])))
	}
	return dst
}

// appendLatin1 appends s, validated as Latin-1 without NUL, and the NUL
// that ends it.
func appendLatin1(dst []byte, s string) []byte {
	for _, c := range s {
		dst = append(dst, byte(c))
	}
	return append(dst, 0)
}

// parseGzipHeader reads the gzip header at the start of b and returns it
// with its length, errShortHeader when b ends inside it, or another error
// when b is not a gzip header this package can write.
func parseGzipHeader(b []byte) (*GzipHeader, int, error) {
	if len(b) < 10 {
		return nil, 0, errShortHeader
	}
	if b[0] != 0x1f || b[1] != 0x8b || b[2] != 8 {
		return nil, 0, errors.New("not a gzip deflate member")
	}
	h := &GzipHeader{Flags: b[3], MTime: binary.LittleEndian.Uint32(b[4:8]), XFL: b[8], OS: b[9]}
	if h.Flags&^(gzipFText|gzipFHCRC|gzipFExtra|gzipFName|gzipFComment) != 0 {
		return nil, 0, errors.New("gzip header sets reserved flags")
	}
	n := 10
	if h.Flags&gzipFExtra != 0 {
		if len(b) < n+2 {
			return nil, 0, errShortHeader
		}
		xlen := int(binary.LittleEndian.Uint16(b[n:]))
		n += 2
		if len(b) < n+xlen {
			return nil, 0, errShortHeader
		}
		h.Extra = append([]byte{}, b[n:n+xlen]...)
		n += xlen
	}
	for _, f := range []struct {
		flag uint8
		dst  *string
	}{{gzipFName, &h.Name}, {gzipFComment, &h.Comment}} {
		if h.Flags&f.flag == 0 {
			continue
		}
		end := n
		for end < len(b) && b[end] != 0 {
			end++
		}
		if end == len(b) {
			return nil, 0, errShortHeader
		}
		r := make([]rune, 0, end-n)
		for _, c := range b[n:end] {
			r = append(r, rune(c))
		}
		*f.dst = string(r)
		n = end + 1
	}
	if h.Flags&gzipFHCRC != 0 {
		if len(b) < n+2 {
			return nil, 0, errShortHeader
		}
		n += 2
	}
	return h, n, nil
}

// gzipWriter writes one gzip member as a recipe says: its header, the
// deflate stream (one, or pgzip's blocks) and the trailer.
type gzipWriter struct {
	w         io.Writer
	d         *deflater
	level     int
	blockSize int
	header    *GzipHeader

	fw      flateWriter
	inBlock int    // bytes given to the current pgzip block
	tail    []byte // the current block's last bytes, for the next one's dictionary
	crc     uint32
	size    uint32
	started bool
	closed  bool
	err     error
}

func newGzipWriter(w io.Writer, r *Recipe) *gzipWriter {
	return &gzipWriter{w: w, d: findDeflater(r.Encoder, r.Version), level: r.Level, blockSize: r.BlockSize, header: r.Gzip}
}

func (z *gzipWriter) start() error {
	z.started = true
	if _, err := z.w.Write(appendGzipHeader(nil, z.header)); err != nil {
		return err
	}
	var err error
	z.fw, err = z.d.newWriter(z.w, z.level, nil)
	return err
}

func (z *gzipWriter) Write(p []byte) (int, error) {
	if z.err != nil {
		return 0, z.err
	}
	if z.closed {
		return 0, errors.New("recipe: write after close")
	}
	if !z.started {
		if z.err = z.start(); z.err != nil {
			return 0, z.err
		}
	}
	z.crc = crc32.Update(z.crc, crc32.IEEETable, p)
	z.size += uint32(len(p))
	if z.blockSize == 0 {
		n, err := z.fw.Write(p)
		z.err = err
		return n, err
	}
	done := 0
	for len(p) > 0 {
		n := min(len(p), z.blockSize-z.inBlock)
		if _, z.err = z.fw.Write(p[:n]); z.err != nil {
			return done, z.err
		}
		z.keepTail(p[:n])
		z.inBlock += n
		done += n
		p = p[n:]
		if z.inBlock == z.blockSize {
			if z.err = z.nextBlock(); z.err != nil {
				return done, z.err
			}
		}
	}
	return done, nil
}

// keepTail remembers the last pgzipTailSize bytes of the current block.
func (z *gzipWriter) keepTail(p []byte) {
	if len(p) >= pgzipTailSize {
		z.tail = append(z.tail[:0], p[len(p)-pgzipTailSize:]...)
		return
	}
	z.tail = append(z.tail, p...)
	if len(z.tail) > 2*pgzipTailSize {
		z.tail = append(z.tail[:0], z.tail[len(z.tail)-pgzipTailSize:]...)
	}
}

// nextBlock ends a full pgzip block with a sync flush and starts the next
// one with the block's tail as dictionary, as pgzip's compressCurrent does.
func (z *gzipWriter) nextBlock() error {
	if err := z.fw.Flush(); err != nil {
		return err
	}
	var dict []byte
	if z.inBlock > pgzipTailSize {
		dict = z.tail[len(z.tail)-pgzipTailSize:]
	}
	fw, err := z.d.newWriter(z.w, z.level, dict)
	if err != nil {
		return err
	}
	z.fw, z.inBlock, z.tail = fw, 0, z.tail[:0]
	return nil
}

// Close ends the deflate stream (pgzip: flushes the last block, even an
// empty one, before ending it) and writes the trailer.
func (z *gzipWriter) Close() error {
	if z.closed || z.err != nil {
		return z.err
	}
	if !z.started {
		if z.err = z.start(); z.err != nil {
			return z.err
		}
	}
	z.closed = true
	if z.blockSize != 0 {
		if z.err = z.fw.Flush(); z.err != nil {
			return z.err
		}
	}
	if z.err = z.fw.Close(); z.err != nil {
		return z.err
	}
	var t [8]byte
	binary.LittleEndian.PutUint32(t[:4], z.crc)
	binary.LittleEndian.PutUint32(t[4:], z.size)
	_, z.err = z.w.Write(t[:])
	return z.err
}
