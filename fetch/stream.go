package fetch

import (
	"context"
	"io"
	"os"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/resolve"
)

// streamReader reads a blob while it downloads, by following the
// transfer's partial file: it reads what the download has written and
// waits for more. The network is read once, by the download; the reader
// gets the bytes from the page cache, so a slow consumer never stalls the
// download and a download that resumes or switches mirror needs nothing
// from the reader.
//
// The reader hashes what it returns and, at the blob's size, compares with
// the digest before it returns io.EOF; a mismatch is returned instead of
// io.EOF. That check covers the bytes this reader actually handed out, even
// if the download restarted underneath it: a restart from zero rewrites
// the same bytes when the host is honest, and the reader simply waits until
// the rewrite passes its offset again.
type streamReader struct {
	ctx   context.Context
	store *Store
	t     *transfer
	desc  ocispec.Descriptor
	dg    digest.Digester

	f        *os.File      // the transfer's file, once acquired
	fallback io.ReadCloser // a store reader, when the transfer ended before we joined it
	off      int64
	err      error
	verified bool

	closeOnce sync.Once
	onClose   func(verified bool) error
}

func newStreamReader(ctx context.Context, s *Store, t *transfer, desc ocispec.Descriptor, onClose func(bool) error) *streamReader {
	return &streamReader{ctx: ctx, store: s, t: t, desc: desc, dg: desc.Digest.Algorithm().Digester(), onClose: onClose}
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
			if got := r.dg.Digest(); got != r.desc.Digest {
				r.err = errdefs.New(errdefs.ErrDigestMismatch, "blob %s: streamed content hashes to %s", r.desc.Digest, got)
			} else {
				r.err, r.verified = io.EOF, true
			}
			return 0, r.err
		}
		if r.f == nil {
			f, ok, finished, wait := r.t.acquire()
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
	r.dg.Hash().Write(p[:n])
	r.off += int64(n)
	if err != nil && err != io.EOF {
		r.err = errdefs.Wrap(err, errdefs.ErrInternal, "reading blob %s", r.desc.Digest)
		return n, v, r.err
	}
	return n, v, nil
}

// finishedWithoutFile handles a transfer that ended before this reader
// joined it: on success the blob is in the store and is read from there.
func (r *streamReader) finishedWithoutFile(p []byte) (int, error) {
	v := r.t.view()
	if v.err != nil {
		r.err = v.err
		return 0, r.err
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
			r.t.release()
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
// read; see Store.Open). Otherwise the blob is downloaded into the store
// while the reader follows the download, so the bytes cross the network
// once, land in the store, and reach the caller as they arrive; Read
// blocks while it waits for more. Retries, resumes and mirror fallback
// happen underneath as in Pull.
//
// Close reports whether the blob made it into the store when the reader
// was read to the end; closing early cancels the download (its partial
// file stays for a later resume). To stream layers of a whole image while
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
	if store.has(desc) {
		return store.Open(desc)
	}
	gc, err := store.lockGC(ctx, false)
	if err != nil {
		return nil, err
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
		_, _, err := store.ensure(tctx, desc, eps, o, o.reporter().blob(desc), func(t *transfer) {
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
