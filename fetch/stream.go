package fetch

import (
	"context"
	"io"
	"os"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/safego"
	"github.com/ocifetch/ocifetch/resolve"
	"github.com/ocifetch/ocifetch/source"
)

// streamReader reads a blob while it downloads, by following the
// transfer's partial file: it reads what the download has written and
// waits for more. The network is read once, by the download; the reader
// gets the bytes from the page cache, so a slow consumer never stalls the
// download and a download that resumes or switches mirror needs nothing
// from the reader.
//
// The download hashes every byte it writes, so a reader following it does
// not hash them again: at the blob's size it waits for the download's
// verdict and returns io.EOF only once the blob is verified and in blobs/,
// the download's error (digest_mismatch, ...) otherwise. That verdict is
// about the bytes of the download's last attempt; a restart from zero
// (bad content from a mirror, a host that ignores ranges) discards bytes a
// reader may already have returned. So truncate gives every reader that
// returned bytes the hash of those bytes, read from the file before it is
// truncated, and the reader hashes from then on and checks its own digest
// at the end, as if it had hashed all along: it waits until the rewrite
// passes its offset again, and a rewrite with other bytes is a mismatch
// before io.EOF. A reader of a blob the transfer found already in blobs/
// (put there by another process, whose download this one never follows)
// hashes too, as Store.Open does.
type streamReader struct {
	ctx   context.Context
	store *Store
	t     *transfer
	desc  ocispec.Descriptor
	dg    digest.Digester

	// off, hashing and hashErr change under t.rw: the reader's own
	// changes hold it shared, the transfer's (truncate) exclusively.
	hashing bool  // dg covers what was returned; false while following a download's verdict
	hashErr error // catching up with the hash after a restart failed

	f        *os.File      // the transfer's file, once acquired
	fallback io.ReadCloser // a store reader, when the transfer ended before we joined it
	off      int64
	err      error
	verified bool

	closeOnce sync.Once
	onClose   func(verified bool) error
}

func newStreamReader(ctx context.Context, s *Store, t *transfer, desc ocispec.Descriptor, onClose func(bool) error) *streamReader {
	return &streamReader{ctx: ctx, store: s, t: t, desc: desc, dg: desc.Digest.Algorithm().Digester(), hashing: true, onClose: onClose}
}

func (r *streamReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.fallback != nil {
		n, err := r.fallback.Read(p)
		if err != nil {
			r.err = err
			r.verified = err == io.EOF
		}
		return n, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if r.off == r.desc.Size {
			return 0, r.atEnd()
		}
		if r.f == nil {
			f, ok, finished, wait := r.t.acquire(r)
			switch {
			case ok:
				r.f = f
			case finished:
				return r.finishedWithoutFile(p)
			default:
				if err := r.wait(wait); err != nil {
					return 0, err
				}
				continue
			}
		}
		n, v, err := r.readAvailable(p)
		if n > 0 && err == nil && r.off == r.desc.Size {
			// The last bytes wait for the verdict: a consumer that
			// checks its own end (gzip's trailer) would otherwise see
			// bad bytes whole and call them a bad layer.
			if err := r.atEnd(); err != io.EOF {
				return 0, err
			}
			return n, nil
		}
		if n > 0 || err != nil {
			return n, err
		}
		if v.done && v.err != nil {
			r.err = v.err
			return 0, r.err
		}
		if err := r.wait(v.changed); err != nil {
			return 0, err
		}
	}
}

// atEnd decides what the reader returns at the blob's size: io.EOF when
// the content is verified, an error otherwise. A reader that hashes
// compares its digest; a follower waits for the download's verdict.
func (r *streamReader) atEnd() error {
	for {
		r.t.rw.RLock()
		hashing, herr := r.hashing, r.hashErr
		var got digest.Digest
		if hashing && herr == nil {
			got = r.dg.Digest()
		}
		r.t.rw.RUnlock()
		switch {
		case herr != nil:
			r.err = herr
			return r.err
		case hashing && got != r.desc.Digest:
			r.err = errdefs.New(errdefs.ErrDigestMismatch, "blob %s: streamed content hashes to %s", r.desc.Digest, got)
			return r.err
		case hashing:
			r.err, r.verified = io.EOF, true
			return r.err
		}
		v := r.t.view()
		if v.done {
			if v.err != nil {
				r.err = v.err
				return r.err
			}
			// Verified and stored. A restart may have made this reader
			// hash before the download finished: check again (nothing
			// changes it any more).
			r.t.rw.RLock()
			hashing = r.hashing
			r.t.rw.RUnlock()
			if hashing {
				continue
			}
			r.err, r.verified = io.EOF, true
			return r.err
		}
		if err := r.wait(v.changed); err != nil {
			return err
		}
	}
}

// readAvailable reads what the download has written past the reader's
// offset, holding the transfer's read lock so that a truncation cannot slip
// between learning how much is written and reading it.
func (r *streamReader) readAvailable(p []byte) (int, transferView, error) {
	r.t.rw.RLock()
	defer r.t.rw.RUnlock()
	v := r.t.view()
	if r.off >= v.written {
		return 0, v, nil
	}
	n := int(min(int64(len(p)), v.written-r.off))
	n, err := r.f.ReadAt(p[:n], r.off)
	if r.hashErr != nil {
		r.err = r.hashErr
		return 0, v, r.err
	}
	if r.hashing {
		r.dg.Hash().Write(p[:n])
	}
	r.off += int64(n)
	if err != nil && err != io.EOF {
		r.err = errdefs.Wrap(err, errdefs.ErrInternal, "reading blob %s", r.desc.Digest)
		return n, v, r.err
	}
	return n, v, nil
}

// finishedWithoutFile handles a transfer that ended before this reader
// joined it: on success the blob is in the store and is read from there.
// A blob this transfer downloaded (not one it found present) was hashed by
// it on the way into blobs/, moments ago, so it is read as it is, like the
// partial file a follower reads; a blob that was already there is read
// through Store.Open, which hashes it again.
func (r *streamReader) finishedWithoutFile(p []byte) (int, error) {
	v := r.t.view()
	if v.err != nil {
		r.err = v.err
		return 0, r.err
	}
	r.t.mu.Lock()
	downloaded := !r.t.cached && r.t.desc.Size == r.desc.Size
	r.t.mu.Unlock()
	if downloaded {
		if f, err := source.OpenRegular(r.store.blobPath(r.desc.Digest)); err == nil {
			if fi, err := f.Stat(); err == nil && fi.Size() == r.desc.Size {
				r.fallback = f
				return r.Read(p)
			}
			f.Close()
		}
	}
	rc, err := r.store.Open(r.desc)
	if err != nil {
		r.err = err
		return 0, err
	}
	r.fallback = rc
	return r.Read(p)
}

func (r *streamReader) wait(ch <-chan struct{}) error {
	select {
	case <-ch:
		return nil
	case <-r.ctx.Done():
		r.err = r.ctx.Err()
		return r.err
	}
}

// Close releases the reader's hold on the download. What else happens
// depends on how the reader was opened (see OpenLayer and Session.Layer).
func (r *streamReader) Close() error {
	var err error
	r.closeOnce.Do(func() {
		if r.f != nil {
			r.t.release(r)
		}
		if r.fallback != nil {
			r.fallback.Close()
		}
		if r.onClose != nil {
			err = r.onClose(r.verified)
		}
	})
	return err
}

// OpenLayer returns a reader of the blob desc names, verified as it is
// read: a size or digest mismatch is returned by Read before io.EOF would
// be. A blob already in the store is read from it (and hashed again while
// read; see Store.Open). A download is hashed once, by the download; the
// reader returns io.EOF after its verdict (see the package documentation,
// Streaming). Otherwise the blob is downloaded into the store
// while the reader follows the download, so the bytes cross the network
// once, land in the store, and reach the caller as they arrive; Read
// blocks while it waits for more. Retries, resumes and mirror fallback
// happen underneath as in Pull.
//
// Close reports whether the blob made it into the store when the reader
// was read to the end; closing early cancels the download unless another
// caller shares it (its partial file stays for a later resume). To stream layers of a whole image while
// later layers download concurrently, use Start and Session.Layer instead.
func OpenLayer(ctx context.Context, src resolve.Source, store *Store, desc ocispec.Descriptor, opts ...Option) (io.ReadCloser, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	if err := checkDescriptor(desc); err != nil {
		return nil, err
	}
	if src == nil {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "no source")
	}
	// The store lock first: checking a changed blob takes its lock file,
	// which GC may remove while it holds the store lock.
	gc, err := store.lockGC(ctx, false)
	if err != nil {
		return nil, err
	}
	if st, err := store.present(ctx, desc); err != nil || st == blobPresent {
		gc.unlock()
		if err != nil {
			return nil, err
		}
		return store.Open(desc)
	}
	eps, blocked := endpointsFor(src, desc, o)
	tctx, cancel := context.WithCancel(ctx)
	started := make(chan *transfer, 1)
	var once sync.Once
	done := make(chan struct{})
	var result error
	go func() {
		defer close(done)
		defer gc.unlock()
		defer safego.Recover(&result, "fetching blob "+desc.Digest.String())
		_, _, err := store.ensure(tctx, desc, eps, o, o.reporter().blob(desc, src.Reference(), 0), func(t *transfer) {
			once.Do(func() { started <- t })
		})
		result = foreignHint(err, desc, blocked)
	}()
	var t *transfer
	select {
	case t = <-started:
	case <-done:
		if result != nil {
			cancel()
			return nil, result
		}
		t = <-started
	}
	if t == nil { // present after all
		cancel()
		<-done
		return store.Open(desc)
	}
	return newStreamReader(ctx, store, t, desc, func(verified bool) error {
		if !verified {
			cancel()
		}
		<-done
		cancel()
		if verified {
			return result
		}
		return nil
	}), nil
}
