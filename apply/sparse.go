package apply

import (
	"errors"
	"io"
	"os"
	"reflect"
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
// the offset (leaving a hole), and the content digest, holes included
// (without hashing them), is kept all along.
type sparseWriter struct {
	a    *applier
	f    *fsroot.File
	off  int64     // logical offset
	fh   *fileHash // the content digest, nil when not kept
	err  error     // the first write error, as opposed to read errors
	read int
}

func (w *sparseWriter) Write(b []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.f.WriteAt(b, w.off)
	if w.fh != nil {
		w.fh.Write(b[:n])
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
	if w.fh != nil {
		w.fh.zeros(off)
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
// n is the logical size written; the content's digest, when the recorder
// wants digests, is in p.fh. When the tar reader cannot be reached, it
// copies the payload densely.
func (a *applier) writeSparse(f *fsroot.File, p *payload) (n int64, readErr, writeErr error) {
	wt := sparseSource(p.t)
	if wt == nil {
		return p.copyTo(a, f)
	}
	w := &sparseWriter{a: a, f: f, fh: p.fh}
	_, err := wt.WriteTo(w)
	switch {
	case w.err != nil:
		return w.off, nil, w.err
	case err != nil:
		return w.off, err, nil
	}
	// A trailing hole is only a seek: the size comes from ftruncate.
	if err := f.Truncate(w.off); err != nil {
		return w.off, nil, err
	}
	return w.off, nil, nil
}

// sparseRead reads the regular file f of size bytes, which has holes: the
// data regions (SEEK_DATA, SEEK_HOLE) are read and handed to write, the
// holes to zeros without being read.
func sparseRead(f *os.File, size int64, buf []byte, write func([]byte) (int, error), zeros func(int64)) error {
	fd := int(f.Fd())
	off := int64(0)
	for off < size {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		switch {
		case errors.Is(err, unix.ENXIO):
			data = size // only a hole up to the end
		case err != nil:
			return err
		}
		data = min(data, size)
		zeros(data - off)
		off = data
		if off == size {
			break
		}
		hole, err := unix.Seek(fd, off, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		hole = min(hole, size)
		for off < hole {
			m, err := f.ReadAt(buf[:min(int64(len(buf)), hole-off)], off)
			write(buf[:m])
			off += int64(m)
			if err == io.EOF {
				return nil // shrunk while read, as a dense read sees it
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}
