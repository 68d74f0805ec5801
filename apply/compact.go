package apply

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/errdefs"
)

// zstdExt marks a shadowed payload kept compressed: shadow/<key>/<pos>.zst.
const zstdExt = ".zst"

// compactTmp prefixes the files a compaction writes before renaming them.
const compactTmp = ".tmp-"

// CompactReport says what CompactShadow did.
type CompactReport struct {
	Files  int   // payloads compressed
	Before int64 // the disk space they took (st_blocks), in bytes
	After  int64 // and take now
}

// CompactShadow compresses the payloads the shadow store of stateDir
// keeps (zstd at its fastest level, each file on its own), so that the
// state takes less room beside its tree: a shadowed payload is read only
// by Rebuild and Check, which decompress it privately and check its
// digest as for any other payload. A payload is left as it is when
// compressing does not save a block. It takes the state's lock
// exclusively (busy while an unpack, verify or rebuild holds it); Apply
// does the same itself with WithCompactShadow, and gc --unpacked
// (Confirm) for the trees it relies on.
//
// Each compressed copy is written under a temporary name and renamed,
// the file system is synced, and only then are the originals removed: an
// interrupted compaction leaves both, and the original is read.
func CompactShadow(ctx context.Context, stateDir string) (*CompactReport, error) {
	l, _, err := lockState(stateDir, true, false)
	if err != nil {
		if hasKind(err) {
			return nil, err
		}
		return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "locking the state directory %s", stateDir)
	}
	defer l.release()
	st, err := Status(stateDir)
	if err != nil {
		return nil, err
	}
	if st.Status != StatusComplete {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "the apply recorded in %s did not complete (status %q)", stateDir, st.Status)
	}
	return compactShadow(ctx, stateDir)
}

// compactShadow is CompactShadow for a caller that holds the lock.
func compactShadow(ctx context.Context, stateDir string) (*CompactReport, error) {
	root := filepath.Join(stateDir, shadowDir)
	keys, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return &CompactReport{}, nil
	}
	if err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInternal, "shadow store")
	}
	type job struct {
		dirfd int
		name  string
	}
	var jobs []job
	var dirs []int
	defer func() {
		for _, fd := range dirs {
			unix.Close(fd)
		}
	}()
	for _, k := range keys {
		if !k.IsDir() {
			continue
		}
		fd, err := unix.Open(filepath.Join(root, k.Name()), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, errdefs.Wrap(err, errdefs.ErrInternal, "shadow store")
		}
		dirs = append(dirs, fd)
		ents, err := os.ReadDir(filepath.Join(root, k.Name()))
		if err != nil {
			return nil, errdefs.Wrap(err, errdefs.ErrInternal, "shadow store")
		}
		have := map[string]bool{}
		for _, e := range ents {
			have[e.Name()] = true
		}
		for _, e := range ents {
			n := e.Name()
			if strings.HasPrefix(n, compactTmp) {
				unix.Unlinkat(fd, n, 0) // left by an interrupted compaction
				continue
			}
			if _, err := strconv.Atoi(n); err != nil || !e.Type().IsRegular() {
				continue
			}
			if have[n+zstdExt] {
				// Compressed before, the original not yet removed.
				unix.Unlinkat(fd, n, 0)
				continue
			}
			jobs = append(jobs, job{fd, n})
		}
	}
	rep := &CompactReport{}
	if len(jobs) == 0 {
		return rep, nil
	}
	var (
		mu       sync.Mutex
		firstErr error
		next     atomic.Int64
		done     []job
		wg       sync.WaitGroup
	)
	workers := min(runtime.GOMAXPROCS(0), len(jobs))
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := newCompactor()
			if err != nil {
				mu.Lock()
				firstErr = cmp(firstErr, err)
				mu.Unlock()
				return
			}
			defer c.close()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(jobs) || ctx.Err() != nil {
					return
				}
				j := jobs[i]
				before, after, ok, err := c.compact(j.dirfd, j.name)
				mu.Lock()
				if err != nil {
					firstErr = cmp(firstErr, err)
					mu.Unlock()
					return
				}
				if ok {
					rep.Files++
					rep.Before += before
					rep.After += after
					done = append(done, j)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = errdefs.Wrap(ctx.Err(), errdefs.ErrCanceled, "compacting the shadow store")
	}
	if len(done) > 0 {
		// Every compressed copy is durable before an original goes.
		if err := unix.Syncfs(dirs[0]); err != nil {
			return rep, errdefs.Wrap(err, errdefs.ErrInternal, "syncing the shadow store")
		}
		for _, j := range done {
			if err := unix.Unlinkat(j.dirfd, j.name, 0); err != nil && err != unix.ENOENT {
				return rep, errdefs.Wrap(err, errdefs.ErrInternal, "shadow store: removing %s", j.name)
			}
		}
		for _, fd := range dirs {
			if err := unix.Fsync(fd); err != nil {
				return rep, errdefs.Wrap(err, errdefs.ErrInternal, "syncing the shadow store")
			}
		}
	}
	return rep, firstErr
}

func cmp(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// blockSize is the allocation unit compaction reckons with: a file of
// 4096 bytes or less cannot take less room.
const blockSize = 4096

func blocks(n int64) int64 { return (n + blockSize - 1) / blockSize }

// compactor compresses shadowed payloads one at a time.
type compactor struct {
	enc *zstd.Encoder
	buf []byte
	out []byte
}

func newCompactor() (*compactor, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
	if err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInternal, "zstd")
	}
	return &compactor{enc: enc}, nil
}

func (c *compactor) close() { c.enc.Close() }

// smallFile is the size up to which a payload is compressed in memory.
const smallFile = 1 << 20

// compact writes name.zst beside name in dirfd, unless that saves no
// block; ok reports that it did (the original is removed later, once
// the copies are synced).
func (c *compactor) compact(dirfd int, name string) (before, after int64, ok bool, err error) {
	fail := func(err error) (int64, int64, bool, error) {
		unix.Unlinkat(dirfd, compactTmp+name, 0)
		return 0, 0, false, errdefs.Wrap(err, errdefs.ErrInternal, "shadow store: compressing %s", name)
	}
	src, err := openAtOwner(dirfd, name)
	if err != nil {
		return fail(err)
	}
	defer src.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(src.Fd()), &st); err != nil {
		return fail(err)
	}
	if st.Size <= blockSize {
		return 0, 0, false, nil
	}
	fd, err := unix.Openat(dirfd, compactTmp+name, unix.O_CREAT|unix.O_TRUNC|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fail(err)
	}
	dst := os.NewFile(uintptr(fd), compactTmp+name)
	var n int64
	if st.Size <= smallFile {
		if cap(c.buf) < int(st.Size) {
			c.buf = make([]byte, st.Size)
		}
		b := c.buf[:st.Size]
		if _, err := io.ReadFull(src, b); err != nil {
			dst.Close()
			return fail(err)
		}
		c.out = c.enc.EncodeAll(b, c.out[:0])
		if blocks(int64(len(c.out))) >= blocks(st.Size) {
			dst.Close()
			unix.Unlinkat(dirfd, compactTmp+name, 0)
			return 0, 0, false, nil
		}
		w, err := dst.Write(c.out)
		n = int64(w)
		if err != nil {
			dst.Close()
			return fail(err)
		}
	} else {
		cw := &countWriter{w: dst}
		bw := bufio.NewWriterSize(cw, 256<<10)
		c.enc.Reset(bw)
		if _, err := io.Copy(c.enc, src); err != nil {
			dst.Close()
			return fail(err)
		}
		if err := c.enc.Close(); err != nil {
			dst.Close()
			return fail(err)
		}
		if err := bw.Flush(); err != nil {
			dst.Close()
			return fail(err)
		}
		n = cw.n
		if blocks(n) >= blocks(st.Size) {
			dst.Close()
			unix.Unlinkat(dirfd, compactTmp+name, 0)
			return 0, 0, false, nil
		}
	}
	if err := dst.Close(); err != nil {
		return fail(err)
	}
	if err := unix.Renameat(dirfd, compactTmp+name, dirfd, name+zstdExt); err != nil {
		return fail(err)
	}
	return st.Blocks * 512, blocks(n) * blockSize, true, nil
}

// countWriter counts what passes through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// compressedPayload writes the payload of e that the shadow store keeps
// compressed in f, verified as every payload is: decompressed into a
// private copy (for Check, hashed as it streams), its size and content
// digest compared with the recorded ones, and only then written.
func (rb *rebuilder) compressedPayload(ctx context.Context, diffID digest.Digest, f *os.File, e *tsEntry, hw *holdWriter, perr func(errdefs.Kind, string, string) error) error {
	if rb.sz == nil {
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(zstdMaxWindow))
		if err != nil {
			return errdefs.Wrap(err, errdefs.ErrInternal, "zstd")
		}
		rb.sz = d
	}
	changed := func(detail string) error {
		return perr(errdefs.ErrDigestMismatch, ReasonChanged, "shadow copy: "+detail)
	}
	if err := rb.sz.Reset(bufio.NewReaderSize(f, 64<<10)); err != nil {
		return changed(err.Error())
	}
	// ended checks that the stream holds no more than the payload.
	ended := func() error {
		var one [1]byte
		if n, _ := io.ReadFull(rb.sz, one[:]); n > 0 {
			return changed(fmt.Sprintf("longer than the recorded %d bytes", e.Size))
		}
		return nil
	}
	short := func(err error) error {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return changed(fmt.Sprintf("shorter than the recorded %d bytes", e.Size))
		}
		return changed(err.Error())
	}
	rb.fh.Reset()
	switch {
	case !rb.private:
		n, err := io.CopyBuffer(io.MultiWriter(hw, rb.fh), io.LimitReader(rb.sz, e.Size), rb.buf)
		if hw.err != nil {
			return writeErr(hw.err, diffID)
		}
		if err != nil {
			return short(err)
		}
		if n != e.Size {
			return short(io.EOF)
		}
		if err := ended(); err != nil {
			return err
		}
	case e.Size <= memCopyMax:
		if cap(rb.mem) < int(e.Size) {
			rb.mem = make([]byte, e.Size, max(e.Size, min(2*int64(cap(rb.mem)), memCopyMax)))
		}
		b := rb.mem[:e.Size]
		if _, err := io.ReadFull(rb.sz, b); err != nil {
			return short(err)
		}
		if err := ended(); err != nil {
			return err
		}
		rb.fh.Write(b)
		if rb.fh.Sum() != e.sum {
			return changed("its content digest differs from the recorded one")
		}
		if _, err := hw.Write(b); err != nil {
			return writeErr(err, diffID)
		}
		return nil
	default:
		if rb.tmp == nil {
			t, err := privateTemp(rb.stateDir)
			if err != nil {
				return errdefs.Wrap(err, errdefs.ErrInternal, "rebuilding layer %s: a private copy", diffID)
			}
			rb.tmp = t
		}
		if err := rb.tmp.Truncate(0); err != nil {
			return errdefs.Wrap(err, errdefs.ErrInternal, "rebuilding layer %s: a private copy", diffID)
		}
		var off int64
		for off < e.Size {
			if err := ctx.Err(); err != nil {
				return errdefs.Wrap(err, errdefs.ErrCanceled, "rebuilding layer %s", diffID)
			}
			n, err := rb.sz.Read(rb.buf[:min(int64(len(rb.buf)), e.Size-off)])
			if n > 0 {
				rb.fh.Write(rb.buf[:n])
				if _, werr := rb.tmp.WriteAt(rb.buf[:n], off); werr != nil {
					return errdefs.Wrap(werr, errdefs.ErrInternal, "rebuilding layer %s: a private copy", diffID)
				}
				off += int64(n)
			}
			if err != nil && (err != io.EOF || off < e.Size) {
				return short(err)
			}
		}
		if err := ended(); err != nil {
			return err
		}
		if rb.fh.Sum() != e.sum {
			return changed("its content digest differs from the recorded one")
		}
		if _, err := io.CopyBuffer(hw, io.NewSectionReader(rb.tmp, 0, e.Size), rb.buf); err != nil {
			if hw.err != nil {
				return writeErr(hw.err, diffID)
			}
			return errdefs.Wrap(err, errdefs.ErrInternal, "rebuilding layer %s: the private copy", diffID)
		}
		return nil
	}
	if rb.fh.Sum() != e.sum {
		return changed("its content digest differs from the recorded one")
	}
	return nil
}
