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

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/atomicfile"
	"github.com/ocifetch/ocifetch/internal/safego"
	"github.com/ocifetch/ocifetch/resolve"
	"github.com/ocifetch/ocifetch/source"
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
	cancel   context.CancelCauseFunc
	interest int // callers waiting for the download, under mu; 0 once cancelled

	received atomic.Int64 // bytes read from sources, discarded ones included

	// furthest is the furthest offset this blob has reached, in this
	// process, whatever host sent the bytes; only bytes beyond it are
	// progress (see source.RetryPolicy). Used by the owner only.
	furthest int64
	// resent is what hosts that ignored a range sent again: bytes the
	// blob had reached before each start over. Used by the owner only.
	resent int64

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
	t.ctx, t.cancel = context.WithCancelCause(context.WithoutCancel(ctx))
	s.inflight[desc.Digest] = t
	return t, true
}

// drop takes a caller's interest away; the last one cancels the download
// with cause, why that caller stopped (a cancellation, or the failure of
// another layer of its pull), which the download's error then reports.
// It reports whether it cancelled.
func (t *transfer) drop(cause error) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.interest--
	if t.interest == 0 {
		t.cancel(cause)
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
	// A size past the cap would overflow offset arithmetic below; no
	// real blob comes near it.
	if err := source.CheckSize(desc.Size, source.MaxBlobSize, "blob "+desc.Digest.String()); err != nil {
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
			if t.drop(context.Cause(ctx)) {
				// Nobody else wants it: the download stops, and is
				// stopped when this returns, its partial file kept.
				<-t.finished
			}
			return t, owner, stoppedError{source.ContextError(ctx, "fetching blob "+desc.Digest.String(), nil)}
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
	return errors.Is(err, errStopped) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// errStopped marks the error of a download whose owner's context ended:
// the bytes were fine, the owner went away. Another goroutine that still
// wants the blob takes over; the owner's own session sees the cause of
// its context's end (a cancellation, or the failure of another layer of
// the same pull, with that failure's kind).
var errStopped = errors.New("download stopped")

type stoppedError struct{ error }

func (s stoppedError) Unwrap() []error { return []error{s.error, errStopped} }

// run downloads the blob and publishes the outcome to everyone following
// the transfer. It holds the store lock shared, as every writer does: the
// caller that started it may be gone before it ends.
func (t *transfer) run(eps []resolve.Source, o *options, rep *blobReport) {
	defer t.cancel(nil)
	ctx := t.ctx
	err := func() error {
		gc, err := t.s.lockGC(ctx, false)
		if err != nil {
			return err
		}
		defer gc.unlock()
		return t.safeDownload(ctx, eps, o, rep)
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

// safeDownload is download with a panic turned into an error, so that the
// transfer still ends and everyone following it learns the outcome.
func (t *transfer) safeDownload(ctx context.Context, eps []resolve.Source, o *options, rep *blobReport) (err error) {
	defer safego.Recover(&err, "fetching blob "+t.desc.Digest.String())
	return t.download(ctx, eps, o, rep)
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
	// same partial file. The holder's pid, recorded below, tells the
	// waiting one whom it waits for.
	lk, err := lockFileNotify(ctx, t.s.lockPath(d), true, func() { rep.waitFor(lockHolder(t.s.lockPath(d))) })
	if err != nil {
		return err
	}
	defer lk.unlock()

	if t.s.has(t.desc) {
		if f, err := source.OpenRegular(t.s.blobPath(d)); err == nil {
			t.setFile(f, size, true)
			rep.set(StateCached, size, nil)
			return nil
		}
	}
	// The blob is not stored, so the lock file holds no stamp to keep:
	// it names this process until commit writes the stamp.
	lk.writeHolder()
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
	t.furthest = off
	retry, deadlines := o.network(eps[len(eps)-1])
	// mixed: the file holds bytes from an earlier run or another endpoint,
	// so a digest mismatch cannot be blamed on the endpoint that finished
	// it; that endpoint gets one more try from zero.
	mixed := off > 0
	var lastErr error
	for i := 0; i < len(eps); {
		err := t.fromEndpoint(ctx, eps[i], dg, &off, retry, deadlines, rep, i+1 < len(eps))
		if err == nil {
			return t.commit(rep, lk)
		}
		if ctx.Err() != nil {
			return stoppedError{source.ContextError(ctx, "fetching blob "+d.String(), err)}
		}
		if errors.Is(err, errDescriptorLies) {
			// The content is complete and right; no host can serve a
			// blob of the size the descriptor claims. Nothing is kept
			// under a descriptor that can never be satisfied.
			if terr := t.truncate(); terr != nil {
				return terr
			}
			os.Remove(partial)
			return err
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
// past the offset it was asked for (a 416, whose cause is
// io.ErrUnexpectedEOF). The bytes so far may be good, so they stay for
// the next endpoint to continue from; the final digest check decides.
func endedEarly(err error) bool {
	return errors.Is(err, source.ErrShortBody) || errors.Is(err, io.ErrUnexpectedEOF)
}

// errDescriptorLies marks content that is complete and hashes to its
// digest but is not as long as its descriptor says.
var errDescriptorLies = errors.New("the descriptor's size is wrong")

// fromEndpoint fetches the rest of the blob from src, resuming on broken
// connections, until the file holds size bytes that hash to the digest. It
// returns nil on success, or the error that made it give up on src.
//
// When another endpoint follows (more: src is a mirror, or the registry
// before a foreign layer's URLs), any failure gives up on src at once:
// a short body, a range ignored, a refused connection, an error status.
// The bytes so far stay (unless they were bad) for the next endpoint to
// continue from, and retrying a mirror would only delay the fallback. The
// last endpoint gets the retry policy, whose budget counts attempts that
// add no bytes beyond the furthest offset the blob has reached: a host
// that ignores Range and sends the same short prefix again makes no
// progress, and a connection that breaks every few megabytes never runs
// out. Each attempt is watched for stalls (source.WatchRate).
func (t *transfer) fromEndpoint(ctx context.Context, src resolve.Source, dg digest.Digester, off *int64, retry source.RetryPolicy, deadlines source.Deadlines, rep *blobReport, more bool) error {
	r := source.NewRetrier(retry)
	size := t.desc.Size
	name := source.Name(src)
	for {
		if *off == size {
			if got := dg.Digest(); got != t.desc.Digest {
				return errdefs.New(errdefs.ErrDigestMismatch, "blob %s from %s hashes to %s", t.desc.Digest, name, got)
			}
			return nil
		}
		rc, start, err := src.FetchAt(ctx, t.desc, *off)
		if err == nil && start != *off {
			switch {
			case start != 0:
				rc.Close()
				err = errdefs.New(errdefs.ErrNetwork, "%s answered a request for offset %d at offset %d", name, *off, start)
			case more:
				rc.Close()
				err = errdefs.New(errdefs.ErrNetwork, "%s ignored a request from byte %d and sent the whole blob", name, *off)
			default:
				// The host ignored the range: start over with it. One
				// that cuts each answer a byte past the furthest offset
				// makes progress every time, so the retry budget never
				// ends it (the bytes grow with the square of the size):
				// what is sent again is bounded by the blob's size.
				if t.resent += *off; t.resent > size {
					rc.Close()
					return errdefs.New(errdefs.ErrNetwork, "blob %s from %s: the host ignores ranged requests and has sent %d bytes again, more than the blob's %d: giving up", t.desc.Digest, name, t.resent, size)
				}
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
			w := source.WatchRate(rc, deadlines, fmt.Sprintf("blob %s from %s", t.desc.Digest, name))
			cerr := t.copyFrom(ctx, name, w, dg.Hash(), off, rep)
			w.Close()
			if *off > t.furthest {
				t.furthest = *off
				r.Progress()
			}
			if cerr == nil {
				continue
			}
			err = cerr
		}
		if *off > 0 && *off < size && endedEarly(err) && dg.Digest() == t.desc.Digest {
			// All of the content arrived and hashes right, and it is
			// shorter than the descriptor says: the descriptor lies, at
			// once and for every host.
			return errdefs.Wrap(errDescriptorLies, errdefs.ErrSizeMismatch,
				"blob %s: the %d bytes %s served hash to the digest, but its descriptor says %d bytes", t.desc.Digest, *off, name, size)
		}
		if ctx.Err() != nil || more {
			return err
		}
		if _, ok := source.Retryable(err); ok {
			rep.set(StateRetrying, *off, err)
		}
		if _, err := r.Next(ctx, err); err != nil {
			return err
		}
	}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}

// minFill is how much copyFrom gathers before writing, unless the stream
// ends: fewer, larger writes, without holding bytes back from stream
// readers for long on a slow link.
const minFill = 32 << 10

// copyFrom appends rc to the file and the hash. It stops at the blob's
// size (more bytes are a size mismatch), and reports a clean end before
// the size as a short body.
func (t *transfer) copyFrom(ctx context.Context, name string, rc io.Reader, h hash.Hash, off *int64, rep *blobReport) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	size := t.desc.Size
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		// Ask for one byte more than is missing, to notice excess. size
		// and *off are at most source.MaxBlobSize, so nothing overflows.
		want := len(buf)
		if rest := size - *off; rest < int64(want) {
			want = int(rest) + 1
		}
		n, rerr := fill(rc, buf[:want], min(want, minFill))
		if n > 0 {
			t.received.Add(int64(n))
			if int64(n) > size-*off {
				return errdefs.New(errdefs.ErrSizeMismatch, "blob %s from %s is longer than %d bytes", t.desc.Digest, name, size)
			}
			if _, err := t.file.WriteAt(buf[:n], *off); err != nil {
				return errdefs.Wrap(err, errdefs.ErrInternal, "writing partial file for %s", t.desc.Digest)
			}
			h.Write(buf[:n])
			*off += int64(n)
			t.advance(*off)
			rep.progress(*off)
		}
		switch {
		case rerr == nil:
		case errors.Is(rerr, io.EOF):
			if *off < size {
				return errdefs.Wrap(source.ErrShortBody, errdefs.ErrSizeMismatch, "blob %s from %s: response ended at byte %d of %d", t.desc.Digest, name, *off, size)
			}
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		default:
			var k *errdefs.Error
			if errors.As(rerr, &k) {
				return rerr // a stall, already saying what happened
			}
			return errdefs.Wrap(rerr, errdefs.ErrNetwork, "reading blob %s from %s at byte %d", t.desc.Digest, name, *off)
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
	t.s.forgetDropped(d)
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
