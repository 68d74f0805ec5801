package fetch

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/atomicfile"
	"github.com/ocifetch/ocifetch/resolve"
)

// A transfer is one download of one digest into one store. Every goroutine
// of this process that wants the digest shares it (Store.inflight works as
// a singleflight group that also exposes the download in progress, which
// stream readers follow); other processes wait on the digest's lock file.
//
// The bytes go to the digest's partial file, and the hash state follows the
// bytes written: a resume continues the same hash from the offset the file
// has reached, a restart (a host that ignores the range, bad content)
// truncates the file and resets the hash. When the offset reaches the size
// and the hash matches, the file is fsynced and renamed into blobs/.
//
// The download runs in a goroutine of its own, under a context that ends
// only when every caller that wants the blob is gone (interest counts
// them): cancelling one of several pulls that share a download leaves it
// running for the others and their readers.
type transfer struct {
	s    *Store
	desc ocispec.Descriptor

	ctx      context.Context
	cancel   context.CancelFunc
	interest int // callers waiting for the download, under mu; 0 once cancelled

	received atomic.Int64 // bytes read from sources, discarded ones included

	// rw orders readers against truncation: a reader holds it shared while
	// it checks how far the file is written and reads below that; the
	// writer holds it exclusively to truncate. Appends need no lock, since
	// readers never read past written.
	rw sync.RWMutex

	mu        sync.Mutex
	file      *os.File // the partial file, or the blob when cached; nil until known
	refs      int      // holders of file: the owner until it finishes, plus readers
	written   int64    // bytes of the file that belong to the current attempt
	done      bool
	err       error
	cached    bool
	changed   chan struct{} // closed and replaced when written or done changes
	chanTaken bool
	finished  chan struct{}

	// followers are the stream readers that rely on this download's
	// verdict instead of hashing what they read (see streamReader).
	followers map[*streamReader]struct{}
}

// join returns the download of desc in progress, with the caller counted
// as interested in it, or a new one that the caller owns and must start.
// A download everyone lost interest in is stopping: it is not joined, and
// the new one waits for its lock file.
func (s *Store) join(ctx context.Context, desc ocispec.Descriptor) (t *transfer, owner bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.inflight[desc.Digest]; t != nil {
		t.mu.Lock()
		ok := t.interest > 0
		if ok {
			t.interest++
		}
		t.mu.Unlock()
		if ok {
			return t, false
		}
	}
	t = &transfer{s: s, desc: desc, changed: make(chan struct{}), finished: make(chan struct{}), interest: 1}
	// The download outlives the caller that started it when others want
	// it too; it keeps the caller's values, not its cancellation.
	t.ctx, t.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.inflight[desc.Digest] = t
	return t, true
}

// drop takes a caller's interest away; the last one cancels the download.
// It reports whether it did.
func (t *transfer) drop() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.interest--
	if t.interest == 0 {
		t.cancel()
		return true
	}
	return false
}

// ensure makes the blob desc names present in the store, downloading it
// from the first endpoint that serves it correctly unless it is already
// there or another goroutine is already downloading it. onStart, if not
// nil, learns the transfer to follow (nil when the blob is already
// present); it may be called again if ensure has to take over from a
// download another goroutine abandoned. It returns the transfer it
// followed last and whether this call ran it (downloaded, unless the
// transfer found the blob present under the lock).
func (s *Store) ensure(ctx context.Context, desc ocispec.Descriptor, eps []resolve.Source, o *options, rep *blobReport, onStart func(*transfer)) (*transfer, bool, error) {
	if err := checkDescriptor(desc); err != nil {
		return nil, false, err
	}
	corrupt := false
	for {
		// Blobs enter blobs/ only verified, so one that is there with the
		// right size, unchanged since it was stored, needs neither a lock
		// nor a download; a changed one is hashed again, and removed if
		// it is corrupt.
		switch st, err := s.present(ctx, desc); {
		case err != nil:
			return nil, false, err
		case st == blobPresent:
			if onStart != nil {
				onStart(nil)
			}
			rep.set(StateCached, desc.Size, nil)
			return nil, false, nil
		case st == blobCorrupt:
			corrupt = true
		}
		t, owner := s.join(ctx, desc)
		if onStart != nil {
			onStart(t)
		}
		if owner {
			go t.run(eps, o, rep)
		} else {
			rep.set(StateWaiting, 0, nil)
		}
		select {
		case <-t.finished:
		case <-ctx.Done():
			if t.drop() {
				// Nobody else wants it: the download stops, and is
				// stopped when this returns, its partial file kept.
				<-t.finished
			}
			return t, owner, contextError(ctx, desc.Digest, ctx.Err())
		}
		t.mu.Lock()
		err := t.err
		t.mu.Unlock()
		switch {
		case err == nil && owner:
			return t, true, nil
		case err == nil:
			if !s.has(desc) { // the other download's descriptor had another size
				return t, false, errdefs.New(errdefs.ErrSizeMismatch, "blob %s is not %d bytes long", desc.Digest, desc.Size)
			}
			rep.set(StateCached, desc.Size, nil)
			return t, false, nil
		case !owner && isContextErr(err) && ctx.Err() == nil:
			// The goroutine that owned the download was cancelled, but
			// this one still wants the blob: take over (resuming from the
			// partial file it left).
			continue
		default:
			if !owner {
				rep.set(StateFailed, 0, err)
			}
			if corrupt {
				err = s.corruptError(desc.Digest, err)
			}
			return t, owner, err
		}
	}
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// run downloads the blob and publishes the outcome to everyone following
// the transfer. It holds the store lock shared, as every writer does: the
// caller that started it may be gone before it ends.
func (t *transfer) run(eps []resolve.Source, o *options, rep *blobReport) {
	defer t.cancel()
	ctx := t.ctx
	err := func() error {
		gc, err := t.s.lockGC(ctx, false)
		if err != nil {
			return err
		}
		defer gc.unlock()
		return t.download(ctx, eps, o, rep)
	}()
	if err != nil {
		t.mu.Lock()
		written := t.written
		t.mu.Unlock()
		rep.set(StateFailed, written, err)
	}
	t.s.mu.Lock()
	if t.s.inflight[t.desc.Digest] == t {
		delete(t.s.inflight, t.desc.Digest)
	}
	t.s.mu.Unlock()
	t.mu.Lock()
	t.done, t.err = true, err
	t.notifyLocked()
	close(t.finished)
	t.mu.Unlock()
	t.release(nil)
}

func (t *transfer) download(ctx context.Context, eps []resolve.Source, o *options, rep *blobReport) error {
	d, size := t.desc.Digest, t.desc.Size
	if len(eps) == 0 {
		return errdefs.New(errdefs.ErrInvalidArgument, "no source to fetch blob %s from", d)
	}
	for _, dir := range []string{filepath.Dir(t.s.lockPath(d)), filepath.Dir(t.s.partialPath(d)), filepath.Dir(t.s.blobPath(d))} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return errdefs.Wrap(err, errdefs.ErrInternal, "creating store directory")
		}
	}
	rep.set(StateWaiting, 0, nil)
	// The lock makes a second process wait for this download and then
	// find the blob present, instead of fetching it again or writing the
	// same partial file.
	lk, err := lockFile(ctx, t.s.lockPath(d), true)
	if err != nil {
		return err
	}
	defer lk.unlock()

	if t.s.has(t.desc) {
		if f, err := openRegular(t.s.blobPath(d)); err == nil {
			t.setFile(f, size, true)
			rep.set(StateCached, size, nil)
			return nil
		}
	}
	partial := t.s.partialPath(d)
	f, err := os.OpenFile(partial, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return errdefs.Wrap(err, errdefs.ErrInternal, "opening partial file for %s", d)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return errdefs.New(errdefs.ErrInternal, "partial file for %s is not a regular file", d)
	}
	t.setFile(f, 0, false)

	dg := d.Algorithm().Digester()
	off, err := t.rehash(ctx, dg.Hash(), rep)
	if err != nil {
		return err
	}
	// mixed: the file holds bytes from an earlier run or another endpoint,
	// so a digest mismatch cannot be blamed on the endpoint that finished
	// it; that endpoint gets one more try from zero.
	mixed := off > 0
	var lastErr error
	for i := 0; i < len(eps); {
		err := t.fromEndpoint(ctx, eps[i], dg, &off, o, rep, i+1 < len(eps))
		if err == nil {
			return t.commit(rep, lk)
		}
		if ctx.Err() != nil {
			return contextError(ctx, d, err)
		}
		lastErr = err
		if errors.Is(err, errdefs.ErrDigestMismatch) || (errors.Is(err, errdefs.ErrSizeMismatch) && !endedEarly(err)) {
			// Bad bytes: throw them away, so nothing that claims to be
			// part of the blob survives.
			if terr := t.truncate(); terr != nil {
				return terr
			}
			dg.Hash().Reset()
			off = 0
			if mixed {
				mixed = false
				continue
			}
		} else if off > 0 {
			mixed = true
		}
		i++
	}
	if off == 0 {
		os.Remove(partial)
	}
	return lastErr
}

// endedEarly reports a size mismatch that only says the content ended
// before the descriptor's size: a short body, or a source that has nothing
// past the offset it was asked for (the registry source's 416, whose cause
// is io.ErrUnexpectedEOF). The bytes so far may be good, so they stay for
// the next endpoint to continue from; the final digest check decides.
func endedEarly(err error) bool {
	return errors.Is(err, errShortBody) || errors.Is(err, io.ErrUnexpectedEOF)
}

// contextError reports a cancelled or expired download. The cause stays
// reachable (errors.Is(err, context.DeadlineExceeded)); the partial file is
// kept for the next run to resume.
func contextError(ctx context.Context, d digest.Digest, err error) error {
	cause := ctx.Err()
	if c := context.Cause(ctx); c != nil {
		cause = c
	}
	if errors.Is(err, cause) {
		return errdefs.Wrap(err, errdefs.ErrNetwork, "fetching blob %s", d)
	}
	return errdefs.Wrap(cause, errdefs.ErrNetwork, "fetching blob %s (%v)", d, err)
}

// fromEndpoint fetches the rest of the blob from src, resuming on broken
// connections, until the file holds size bytes that hash to the digest. It
// returns nil on success, or the error that made it give up on src. When
// another endpoint follows (more), a refused connection gives up at once:
// the host is down (a mirror, typically), retrying it would only delay
// the fallback, and the resolve stage skips such hosts the same way.
func (t *transfer) fromEndpoint(ctx context.Context, src resolve.Source, dg digest.Digester, off *int64, o *options, rep *blobReport, more bool) error {
	r := newRetrier(o.retry)
	size := t.desc.Size
	for {
		if *off == size {
			if got := dg.Digest(); got != t.desc.Digest {
				return errdefs.New(errdefs.ErrDigestMismatch, "blob %s from %s hashes to %s", t.desc.Digest, sourceName(src), got)
			}
			return nil
		}
		rc, start, err := src.FetchAt(ctx, t.desc, *off)
		if err == nil && start != *off {
			if start != 0 {
				rc.Close()
				err = errdefs.New(errdefs.ErrNetwork, "%s answered a request for offset %d at offset %d", sourceName(src), *off, start)
			} else {
				// The host ignored the range: start over with it.
				if err := t.truncate(); err != nil {
					rc.Close()
					return err
				}
				dg.Hash().Reset()
				*off = 0
			}
		}
		if err == nil {
			rep.set(StateDownloading, *off, nil)
			n, cerr := t.copyFrom(ctx, src, rc, dg.Hash(), off, rep)
			rc.Close()
			if n > 0 {
				r.progressed()
			}
			if cerr == nil {
				continue
			}
			err = cerr
		}
		if ctx.Err() != nil || (more && errors.Is(err, syscall.ECONNREFUSED)) {
			return err
		}
		if _, ok := Retryable(err); ok {
			rep.set(StateRetrying, *off, err)
		}
		if _, err := r.next(ctx, err); err != nil {
			return err
		}
	}
}

// sourceName names an endpoint in messages.
func sourceName(src resolve.Source) string {
	if s, ok := src.(fmt.Stringer); ok {
		return s.String()
	}
	return src.Reference()
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}

// minFill is how much copyFrom gathers before writing, unless the stream
// ends: fewer, larger writes, without holding bytes back from stream
// readers for long on a slow link.
const minFill = 32 << 10

// copyFrom appends rc to the file and the hash. It stops at the blob's
// size (more bytes are a size mismatch), and reports a clean end before
// the size as a short body. It returns the bytes it added.
func (t *transfer) copyFrom(ctx context.Context, src resolve.Source, rc io.Reader, h hash.Hash, off *int64, rep *blobReport) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	size := t.desc.Size
	var added int64
	for {
		if err := ctx.Err(); err != nil {
			return added, err
		}
		// Ask for one byte more than is missing, to notice excess.
		want := int(min(int64(len(buf)), size-*off+1))
		n, rerr := fill(rc, buf[:want], min(want, minFill))
		if n > 0 {
			t.received.Add(int64(n))
			if *off+int64(n) > size {
				return added, errdefs.New(errdefs.ErrSizeMismatch, "blob %s from %s is longer than %d bytes", t.desc.Digest, sourceName(src), size)
			}
			if _, err := t.file.WriteAt(buf[:n], *off); err != nil {
				return added, errdefs.Wrap(err, errdefs.ErrInternal, "writing partial file for %s", t.desc.Digest)
			}
			h.Write(buf[:n])
			*off += int64(n)
			added += int64(n)
			t.advance(*off)
			rep.progress(*off)
		}
		switch {
		case rerr == nil:
		case errors.Is(rerr, io.EOF):
			if *off < size {
				return added, errdefs.Wrap(errShortBody, errdefs.ErrSizeMismatch, "blob %s from %s: response ended at byte %d of %d", t.desc.Digest, sourceName(src), *off, size)
			}
			return added, nil
		case ctx.Err() != nil:
			return added, ctx.Err()
		default:
			return added, errdefs.Wrap(rerr, errdefs.ErrNetwork, "reading blob %s from %s at byte %d", t.desc.Digest, sourceName(src), *off)
		}
	}
}

// fill reads into buf until it holds at least atLeast bytes, the reader
// ends, or it fails.
func fill(r io.Reader, buf []byte, atLeast int) (int, error) {
	n := 0
	for n < atLeast {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// rehash feeds the bytes an earlier run left in the partial file to the
// hash and returns how many there are, so the download resumes instead of
// starting over. A file longer than the blob is discarded.
func (t *transfer) rehash(ctx context.Context, h hash.Hash, rep *blobReport) (int64, error) {
	fi, err := t.file.Stat()
	if err != nil {
		return 0, errdefs.Wrap(err, errdefs.ErrInternal, "partial file for %s", t.desc.Digest)
	}
	n := fi.Size()
	if n == 0 {
		return 0, nil
	}
	if n > t.desc.Size {
		return 0, t.truncate()
	}
	rep.set(StateVerifying, 0, nil)
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	if _, err := io.CopyBuffer(h, io.NewSectionReader(ctxReaderAt{ctx, t.file}, 0, n), *bp); err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, errdefs.Wrap(err, errdefs.ErrInternal, "reading partial file for %s", t.desc.Digest)
	}
	t.advance(n)
	return n, nil
}

type ctxReaderAt struct {
	ctx context.Context
	r   io.ReaderAt
}

func (c ctxReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.ReadAt(p, off)
}

// commit makes the complete, verified partial file a blob: fsync, rename
// into blobs/, fsync the directory. Until the rename nothing in blobs/
// refers to it.
func (t *transfer) commit(rep *blobReport, lk *fileLock) error {
	d := t.desc.Digest
	rep.set(StateVerifying, t.desc.Size, nil)
	if err := t.file.Sync(); err != nil {
		return errdefs.Wrap(err, errdefs.ErrInternal, "syncing blob %s", d)
	}
	if err := os.Rename(t.s.partialPath(d), t.s.blobPath(d)); err != nil {
		return errdefs.Wrap(err, errdefs.ErrInternal, "storing blob %s", d)
	}
	if err := atomicfile.SyncDir(filepath.Dir(t.s.blobPath(d))); err != nil {
		return err
	}
	if fi, err := t.file.Stat(); err == nil {
		lk.writeStamp(fi)
	}
	rep.set(StateDone, t.desc.Size, nil)
	return nil
}

// setFile publishes the file readers follow and takes the owner's
// reference to it.
func (t *transfer) setFile(f *os.File, written int64, cached bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.file, t.written, t.cached = f, written, cached
	t.refs++
	t.notifyLocked()
}

// acquire takes r's reference to the file. It reports ok when the file
// can be read, or finished when the transfer ended without one being
// available (never opened, or closed after everyone let go); otherwise the
// caller waits on the returned channel. A reader that acquires the partial
// file of a download becomes a follower: it stops hashing and relies on
// the download's verdict, unless a restart makes truncate hand it the hash
// of what it already read. A reader of a blob the transfer found in the
// store keeps hashing, as Store.Open does.
func (t *transfer) acquire(r *streamReader) (f *os.File, ok, finished bool, wait <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.file != nil && t.refs > 0 {
		t.refs++
		// Only a reader of exactly this download's blob may rely on its
		// verdict: a descriptor with the same digest and another size
		// must still fail its own check.
		if !t.cached && r.off == 0 && r.desc.Size == t.desc.Size {
			if t.followers == nil {
				t.followers = map[*streamReader]struct{}{}
			}
			r.hashing = false
			t.followers[r] = struct{}{}
		}
		return t.file, true, false, nil
	}
	if t.done {
		return nil, false, true, nil
	}
	t.chanTaken = true
	return nil, false, false, t.changed
}

// release drops a reference; the last one closes the file. r is the
// reader letting go, or nil for the owner.
func (t *transfer) release(r *streamReader) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r != nil {
		delete(t.followers, r)
	}
	if t.refs == 0 {
		return
	}
	t.refs--
	if t.refs == 0 && t.file != nil {
		t.file.Close()
	}
}

type transferView struct {
	written int64
	done    bool
	err     error
	changed <-chan struct{}
}

func (t *transfer) view() transferView {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.chanTaken = true
	return transferView{written: t.written, done: t.done, err: t.err, changed: t.changed}
}

func (t *transfer) advance(off int64) {
	t.mu.Lock()
	t.written = off
	t.notifyLocked()
	t.mu.Unlock()
}

// truncate throws away the bytes of the current attempt. Followers that
// already returned some of them can no longer rely on the verdict, which
// will be about other bytes: each gets the hash of what it read, taken
// from the file before it is truncated, and hashes from then on, so that
// its own digest check covers exactly the bytes it handed out (as if it
// had hashed all along). Restarts are rare; this costs one read of the
// bytes a follower has returned.
func (t *transfer) truncate() error {
	t.rw.Lock()
	defer t.rw.Unlock()
	t.mu.Lock()
	var catchUp []*streamReader
	for r := range t.followers {
		catchUp = append(catchUp, r)
		delete(t.followers, r)
	}
	t.mu.Unlock()
	for _, r := range catchUp {
		// Readers change off and hashing only under rw shared; the
		// exclusive lock makes both safe to use here.
		r.hashing = true
		if r.off == 0 {
			continue
		}
		bp := bufPool.Get().(*[]byte)
		_, err := io.CopyBuffer(r.dg.Hash(), io.NewSectionReader(t.file, 0, r.off), *bp)
		bufPool.Put(bp)
		if err != nil {
			r.hashErr = errdefs.Wrap(err, errdefs.ErrInternal, "re-reading partial file for %s after a restart", t.desc.Digest)
		}
	}
	if err := t.file.Truncate(0); err != nil {
		return errdefs.Wrap(err, errdefs.ErrInternal, "truncating partial file for %s", t.desc.Digest)
	}
	t.advance(0)
	return nil
}

// notifyLocked wakes everyone waiting for a change. A channel is only
// replaced when someone took it, so a download nobody follows allocates
// nothing per write.
func (t *transfer) notifyLocked() {
	if t.chanTaken {
		close(t.changed)
		t.changed = make(chan struct{})
		t.chanTaken = false
	}
}
