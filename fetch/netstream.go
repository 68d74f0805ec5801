package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/asynchash"
	"github.com/ocifetch/ocifetch/resolve"
	"github.com/ocifetch/ocifetch/source"
)

// netStream reads a blob straight from its endpoints, without a store:
// the reader of a layer that is not kept (WithKeepBlobs(false)). It is
// verified as it is read, like every reader this package returns: the
// digest and size are checked at the blob's end, and a mismatch is an
// error from Read instead of io.EOF, so the consumer (a decompressor in
// front of apply) never sees a clean end of bad content.
//
// A broken connection does not end the stream: the next Read asks the
// same endpoint for the rest with a ranged request (the hash state
// continues), under the retry policy, whose attempts count only while no
// bytes arrive, as for downloads into the store; with mirrors, a failing
// host hands over to the next one at the same offset. The consumer sees
// one continuous stream, so a decompressor carries on where it was. A
// host that ignores the range and answers from byte 0 has the bytes the
// consumer already has read and dropped (they cannot be taken back; the
// digest covers what the consumer got).
type netStream struct {
	ctx      context.Context
	desc     ocispec.Descriptor
	eps      []resolve.Source
	o        *options
	rep      *blobReport
	received *atomic.Int64 // the session's count of bytes from the network
	// h hashes what the consumer gets, in a goroutine of its own once the
	// blob proved large, so that hashing overlaps with decompressing.
	h         *asynchash.Hash
	ep        int // the endpoint in use
	r         *source.Retrier
	rc        io.ReadCloser // the current response body, nil between attempts
	skip      int64         // bytes of the current body the consumer already has
	resent    int64         // bytes skipped in all: hosts that ignored the range
	off       int64         // bytes returned
	furthest  int64         // the furthest offset reached: beyond it is progress
	err       error
	verified  bool
	blocked   []string
	closed    bool
	onEnd     func(verified bool, err error)
	endCalled bool
}

func newNetStream(ctx context.Context, desc ocispec.Descriptor, src resolve.Source, o *options, rep *blobReport, received *atomic.Int64, onEnd func(bool, error)) *netStream {
	eps, blocked := endpointsFor(src, desc, o)
	retry, _ := o.network(eps[len(eps)-1])
	return &netStream{ctx: ctx, desc: desc, eps: eps, o: o, rep: rep, received: received, h: asynchash.New(desc.Digest.Algorithm().Hash()),
		r: source.NewRetrier(retry), blocked: blocked, onEnd: onEnd}
}

func (s *netStream) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if s.off == s.desc.Size {
			return 0, s.atEnd()
		}
		if err := s.ctx.Err(); err != nil {
			return 0, s.fail(source.ContextError(s.ctx, "fetching blob "+s.desc.Digest.String(), nil))
		}
		if s.rc == nil {
			if err := s.connect(); err != nil {
				if s.err != nil {
					return 0, s.err
				}
				if err := s.next(err); err != nil {
					return 0, err
				}
				continue
			}
		}
		n, err := s.readBody(p)
		if n > 0 {
			if s.off == s.desc.Size {
				// The last bytes wait for the digest: a consumer that
				// checks its own end (gzip's trailer) would otherwise
				// see bad bytes whole and call them a bad layer.
				if err := s.atEnd(); err != io.EOF {
					return 0, err
				}
			}
			return n, nil
		}
		if err == nil {
			continue
		}
		if s.err != nil {
			return 0, s.err
		}
		s.rc.Close()
		s.rc = nil
		if err := s.next(err); err != nil {
			return 0, err
		}
	}
}

// connect asks the current endpoint for the blob from s.off.
func (s *netStream) connect() error {
	src := s.eps[s.ep]
	name := source.Name(src)
	rc, start, err := src.FetchAt(s.ctx, s.desc, s.off)
	if err != nil {
		return err
	}
	switch {
	case start == s.off:
		s.skip = 0
	case start == 0:
		// The host ignored the range: its first s.off bytes are what the
		// consumer already read.
		s.skip = s.off
	default:
		rc.Close()
		return errdefs.New(errdefs.ErrNetwork, "%s answered a request for offset %d at offset %d", name, s.off, start)
	}
	_, deadlines := s.o.network(src)
	s.rc = source.WatchRate(rc, deadlines, fmt.Sprintf("blob %s from %s", s.desc.Digest, name))
	s.rep.set(StateDownloading, s.off, nil)
	return nil
}

// readBody reads from the current body into p, past what is skipped.
func (s *netStream) readBody(p []byte) (int, error) {
	for s.skip > 0 {
		n, err := s.rc.Read(p[:min(int64(len(p)), s.skip)])
		s.received.Add(int64(n))
		s.skip -= int64(n)
		s.resent += int64(n)
		// A host that ignores the range and cuts each answer a byte past
		// the furthest offset makes progress on every attempt, so the
		// retry budget never ends it: a 64 KiB blob took 64,536 requests
		// and 2 GB, a larger one would never end (quadratic). What was
		// sent again is bounded by the blob's size: the total stays
		// under twice the blob plus what its last answer sends again.
		if s.resent > s.desc.Size {
			return 0, s.fail(errdefs.New(errdefs.ErrNetwork, "blob %s from %s: the host ignores ranged requests and has sent %d bytes again, more than the blob's %d: giving up", s.desc.Digest, source.Name(s.eps[s.ep]), s.resent, s.desc.Size))
		}
		if err != nil {
			return 0, s.bodyErr(err)
		}
	}
	// One byte more than is missing, to notice excess.
	want := len(p)
	if rest := s.desc.Size - s.off; int64(want) > rest+1 {
		want = int(rest + 1)
	}
	n, err := s.rc.Read(p[:want])
	if n > 0 {
		s.received.Add(int64(n))
		if int64(n) > s.desc.Size-s.off {
			return 0, s.fail(errdefs.New(errdefs.ErrSizeMismatch, "blob %s from %s is longer than %d bytes", s.desc.Digest, source.Name(s.eps[s.ep]), s.desc.Size))
		}
		s.h.Write(p[:n])
		s.off += int64(n)
		if s.off > s.furthest {
			s.furthest = s.off
			s.r.Progress()
		}
		s.rep.progress(s.off)
		return n, nil
	}
	if err != nil {
		return 0, s.bodyErr(err)
	}
	return 0, nil
}

// bodyErr classifies the end of a body: a clean end before the size is a
// short body (retried from where it stopped), anything else as the
// download into the store classifies it.
func (s *netStream) bodyErr(err error) error {
	name := source.Name(s.eps[s.ep])
	if errors.Is(err, io.EOF) {
		return errdefs.Wrap(source.ErrShortBody, errdefs.ErrSizeMismatch, "blob %s from %s: response ended at byte %d of %d", s.desc.Digest, name, s.off, s.desc.Size)
	}
	var k *errdefs.Error
	if errors.As(err, &k) {
		return err
	}
	return errdefs.Wrap(err, errdefs.ErrNetwork, "reading blob %s from %s at byte %d", s.desc.Digest, name, s.off)
}

// next decides what follows a failed attempt: the next endpoint when
// there is one, else a retry under the policy, else the error.
func (s *netStream) next(err error) error {
	if s.ctx.Err() != nil {
		return s.fail(source.ContextError(s.ctx, "fetching blob "+s.desc.Digest.String(), err))
	}
	if s.ep+1 < len(s.eps) {
		s.ep++
		return nil
	}
	if _, ok := source.Retryable(err); ok {
		s.rep.set(StateRetrying, s.off, err)
	}
	if _, rerr := s.r.Next(s.ctx, err); rerr != nil {
		return s.fail(foreignHint(rerr, s.desc, s.blocked))
	}
	return nil
}

// atEnd checks the digest at the blob's size.
func (s *netStream) atEnd() error {
	if got := digest.NewDigest(s.desc.Digest.Algorithm(), s.h); got != s.desc.Digest {
		return s.fail(errdefs.New(errdefs.ErrDigestMismatch, "blob %s: streamed content hashes to %s", s.desc.Digest, got))
	}
	s.err, s.verified = io.EOF, true
	s.rep.set(StateDone, s.off, nil)
	s.end()
	return io.EOF
}

func (s *netStream) fail(err error) error {
	s.err = err
	s.rep.set(StateFailed, s.off, err)
	s.end()
	return err
}

func (s *netStream) end() {
	s.h.Close()
	if s.rc != nil {
		s.rc.Close()
		s.rc = nil
	}
	if !s.endCalled && s.onEnd != nil {
		s.endCalled = true
		err := s.err
		if s.verified {
			err = nil
		}
		s.onEnd(s.verified, err)
	}
}

// Close ends the stream; one closed before its verified end tells the
// session the layer was not read.
func (s *netStream) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	if s.err == nil {
		s.err = errdefs.New(errdefs.ErrCanceled, "the stream of blob %s was closed at byte %d of %d", s.desc.Digest, s.off, s.desc.Size)
	}
	s.end()
	return nil
}
