package apply

import (
	"errors"
	"io"
	"os"
	"reflect"
	"sync"
	"unsafe"

	"github.com/vbatts/tar-split/archive/tar"
	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/internal/fsroot"
)

// Sparse entries (old GNU 'S', PAX GNU.sparse 0.0, 0.1 and 1.0) are
// written sparsely: their data fragments at their offsets, their holes
// skipped, the size set by ftruncate at the end, so a 60 GB file of a few
// data blocks takes a few blocks on disk and a few system calls to write.
//
// The tar reader knows the sparse map but does not export it: its Read
// expands the holes into zeros (60 GB of them for the file above), and its
// WriteTo, which seeks over them, is reached only through an unexported
// field. sparseSource reaches it by reflection and hands it a writer that
// turns seeks into holes; where that is not possible (a tar-split whose
// reader is built differently), the entry is written densely as before.
// The tests assert the sparse path is taken.

// sparseReaderType is the type the tar reader uses for sparse payloads.
const sparseReaderType = "*tar.sparseFileReader"

// sparseSource returns the tar reader's reader for the current, sparse
// entry as an io.WriterTo that seeks over holes, or nil.
func sparseSource(t *tar.Reader) io.WriterTo {
	v := reflect.ValueOf(t).Elem().FieldByName("curr")
	if !v.IsValid() || v.Kind() != reflect.Interface || !v.CanAddr() {
		return nil
	}
	// The field is unexported: reflect hands out a read-only view of it,
	// whose methods cannot be called. Take the field itself instead.
	v = reflect.NewAt(v.Type(), unsafe.Pointer(v.UnsafeAddr())).Elem()
	if v.IsNil() || v.Elem().Type().String() != sparseReaderType {
		return nil
	}
	wt, _ := v.Interface().(io.WriterTo)
	return wt
}

// sparseWriter is the io.WriteSeeker the tar reader's WriteTo writes a
// sparse entry to: writes go to their offset with pwrite, seeks only move
// the offset (leaving a hole), and the CRC-64 of the content, holes
// included, is kept all along.
type sparseWriter struct {
	a    *applier
	f    *fsroot.File
	off  int64  // logical offset
	crc  uint64 // CRC-64/ISO of the content up to off
	sum  bool   // keep crc
	err  error  // the first write error, as opposed to read errors
	read int
}

func (w *sparseWriter) Write(b []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.f.WriteAt(b, w.off)
	if w.sum {
		w.crc = crcUpdate(w.crc, b[:n])
	}
	w.off += int64(n)
	if err != nil {
		w.err = err
	}
	return n, err
}

// Seek only supports moving forward from the current offset, which is
// all the tar reader does.
func (w *sparseWriter) Seek(off int64, whence int) (int64, error) {
	if whence != io.SeekCurrent || off < 0 {
		w.err = errors.New("sparse writer: unsupported seek")
		return w.off, w.err
	}
	if w.sum {
		w.crc = crcZeros(w.crc, off)
	}
	w.off += off
	if w.read++; w.read%ctxCheckEvery == 0 {
		if err := w.a.ctx.Err(); err != nil {
			w.err = err
			return w.off, err
		}
	}
	return w.off, nil
}

// ReadFrom copies a data fragment with the applier's buffer.
func (w *sparseWriter) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for {
		n, err := r.Read(w.a.buf)
		if n > 0 {
			if _, werr := w.Write(w.a.buf[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		if w.read++; w.read%ctxCheckEvery == 0 {
			if err := w.a.ctx.Err(); err != nil {
				w.err = err
				return total, err
			}
		}
	}
}

// writeSparse writes the payload of a sparse entry to f, holes as holes.
// n is the logical size written, crc the content's CRC-64 (when the
// recorder wants CRCs). When the tar reader cannot be reached, it copies
// the payload densely.
func (a *applier) writeSparse(f *fsroot.File, p *payload) (n int64, crc uint64, readErr, writeErr error) {
	wt := sparseSource(p.t)
	if wt == nil {
		n, readErr, writeErr = p.copyTo(a, f)
		if p.crc != nil {
			crc = p.crc.Sum64()
		}
		return n, crc, readErr, writeErr
	}
	w := &sparseWriter{a: a, f: f, sum: p.crc != nil}
	_, err := wt.WriteTo(w)
	switch {
	case w.err != nil:
		return w.off, 0, nil, w.err
	case err != nil:
		return w.off, 0, err, nil
	}
	// A trailing hole is only a seek: the size comes from ftruncate.
	if err := f.Truncate(w.off); err != nil {
		return w.off, 0, nil, err
	}
	return w.off, w.crc, nil, nil
}

// crcZeros returns the CRC-64/ISO of content whose CRC is crc followed by
// n zero bytes, in O(log n): a hole costs nothing to account for.
func crcZeros(crc uint64, n int64) uint64 {
	if n <= 0 {
		return crc
	}
	zeroOpsOnce.Do(initZeroOps)
	// Go's CRC-64 register is the complement of the CRC; feeding it a zero
	// byte is linear in the register.
	s := ^crc
	for k := 0; n != 0; k, n = k+1, n>>1 {
		if n&1 != 0 {
			s = gf2Apply(&zeroOps[k], s)
		}
	}
	return ^s
}

var (
	zeroOpsOnce sync.Once
	// zeroOps[k] is the register transformation of 2^k zero bytes, as the
	// images of the 64 unit vectors.
	zeroOps [63][64]uint64
)

func initZeroOps() {
	for i := range 64 {
		v := uint64(1) << i
		zeroOps[0][i] = crcTable[byte(v)] ^ v>>8
	}
	for k := 1; k < len(zeroOps); k++ {
		for i := range 64 {
			zeroOps[k][i] = gf2Apply(&zeroOps[k-1], zeroOps[k-1][i])
		}
	}
}

func gf2Apply(m *[64]uint64, v uint64) uint64 {
	var r uint64
	for i := 0; v != 0; i, v = i+1, v>>1 {
		if v&1 != 0 {
			r ^= m[i]
		}
	}
	return r
}

// sparseCRC is the CRC-64 of the regular file f of size bytes that has
// holes: the data regions (SEEK_DATA, SEEK_HOLE) are read, the holes
// accounted for without reading them.
func sparseCRC(f *os.File, size int64, buf []byte) (uint64, error) {
	fd := int(f.Fd())
	var crc uint64
	off := int64(0)
	for off < size {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		switch {
		case errors.Is(err, unix.ENXIO):
			data = size // only a hole up to the end
		case err != nil:
			return 0, err
		}
		data = min(data, size)
		crc = crcZeros(crc, data-off)
		off = data
		if off == size {
			break
		}
		hole, err := unix.Seek(fd, off, unix.SEEK_HOLE)
		if err != nil {
			return 0, err
		}
		hole = min(hole, size)
		for off < hole {
			m, err := f.ReadAt(buf[:min(int64(len(buf)), hole-off)], off)
			crc = crcUpdate(crc, buf[:m])
			off += int64(m)
			if err == io.EOF {
				return crc, nil // shrunk while read, as a dense read sees it
			}
			if err != nil {
				return 0, err
			}
		}
	}
	return crc, nil
}
