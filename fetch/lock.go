package fetch

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/errdefs"
)

// fileLock is an flock(2) lock on a file. flock locks belong to an open
// file description, so two opens of the same lock file conflict even inside
// one process: the same code serializes goroutines that opened the store
// twice and separate processes sharing it. Closing the file (or the
// process dying) releases the lock, so a killed pull never leaves the store
// locked.
type fileLock struct{ f *os.File }

// lockFile takes an exclusive or shared lock on path, creating the file.
// It polls with a non-blocking flock so that waiting honours ctx: a
// blocking flock cannot be interrupted.
func lockFile(ctx context.Context, path string, exclusive bool) (*fileLock, error) {
	return lockFileNotify(ctx, path, exclusive, nil)
}

// lockFileNotify is lockFile that calls notice, if not nil, once when the
// lock is not free at once.
func lockFileNotify(ctx context.Context, path string, exclusive bool, notice func()) (*fileLock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInternal, "opening lock file")
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	delay := time.Millisecond
	for {
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil {
			return &fileLock{f: f}, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, errdefs.Wrap(err, errdefs.ErrInternal, "locking %s", path)
		}
		if notice != nil {
			notice()
			notice = nil
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, ctx.Err()
		case <-t.C:
		}
		delay = min(delay*2, 50*time.Millisecond)
	}
}

// writeHolder records this process as the lock's holder, "pid N", in the
// lock file of a blob being downloaded, for lockHolder; the stamp written
// when the blob is stored replaces it. A failure only loses the hint.
func (l *fileLock) writeHolder() {
	b := []byte("pid " + strconv.Itoa(os.Getpid()) + "\n")
	if _, err := l.f.WriteAt(b, 0); err == nil {
		l.f.Truncate(int64(len(b)))
	}
}

// lockHolder reads the pid a download's holder recorded in the lock file
// at path (see writeHolder), or 0 when it holds none (a stamp, a brief
// check of a stored blob).
func lockHolder(path string) int {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return 0
	}
	defer unix.Close(fd)
	var buf [32]byte
	n, err := unix.Read(fd, buf[:])
	if err != nil || n <= 0 {
		return 0
	}
	rest, ok := strings.CutPrefix(string(buf[:n]), "pid ")
	if !ok {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSuffix(rest, "\n"))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// unlock releases the lock. It is safe on a nil lock.
func (l *fileLock) unlock() {
	if l != nil && l.f != nil {
		// Unlock before closing: a child process forked by another
		// goroutine holds a copy of the descriptor until it execs, and a
		// close alone releases nothing while a copy lives.
		unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
		l.f.Close()
		l.f = nil
	}
}

// The store-wide lock keeps GC from removing what a writer has written but
// not yet recorded, and from removing a writer's temporary files. Every
// writer of the store holds it shared (pulls, FetchBlob and OpenLayer for
// as long as they may write blobs that index.json does not refer to yet,
// the download goroutines they start, WriteBlob, Tag, PutReferrer, every
// update of index.json, Hold); GC holds it exclusively.
//
// Two files make it fair. flock grants a shared lock whenever only shared
// locks are held, so a stream of overlapping pulls would keep GC waiting
// for ever: GC first takes gc-intent.lock exclusively, and a writer takes
// gc-intent.lock shared, briefly, before it takes gc.lock shared, so that
// writers that come after a waiting GC wait for it. Within one Store, a
// writer that comes while the Store already holds gc.lock shares that
// hold without looking at the intent: it may be nested in a writer that
// holds it (Tag inside Hold, the record at the end of a pull), and
// waiting for a GC that waits for that writer would never end.

// gcHold is a hold on the store-wide lock; unlock releases it once.
type gcHold struct {
	s         *Store
	exclusive *fileLock // GC's own lock; nil for a shared hold
	once      sync.Once
}

func (h *gcHold) unlock() {
	if h == nil {
		return
	}
	h.once.Do(func() {
		if h.exclusive != nil {
			h.exclusive.unlock()
			return
		}
		h.s.gcMu.Lock()
		defer h.s.gcMu.Unlock()
		if h.s.gcShared--; h.s.gcShared == 0 {
			h.s.gcLock.unlock()
			h.s.gcLock = nil
		}
	})
}

// lockGC takes the store-wide lock, shared for writers or exclusive for
// GC. notice, if not nil, is called once if the lock is not free at once.
func (s *Store) lockGC(ctx context.Context, exclusive bool) (*gcHold, error) {
	return s.lockGCNotify(ctx, exclusive, nil)
}

func (s *Store) lockGCNotify(ctx context.Context, exclusive bool, notice func()) (*gcHold, error) {
	if notice != nil {
		notice = sync.OnceFunc(notice)
	}
	intent, gc := s.private("locks", "gc-intent.lock"), s.private("locks", "gc.lock")
	if exclusive {
		il, err := lockFileNotify(ctx, intent, true, notice)
		if err != nil {
			return nil, err
		}
		defer il.unlock()
		l, err := lockFileNotify(ctx, gc, true, notice)
		if err != nil {
			return nil, err
		}
		return &gcHold{s: s, exclusive: l}, nil
	}
	s.gcMu.Lock()
	if s.gcShared > 0 {
		s.gcShared++
		s.gcMu.Unlock()
		return &gcHold{s: s}, nil
	}
	s.gcMu.Unlock()
	il, err := lockFileNotify(ctx, intent, false, notice)
	if err != nil {
		return nil, err
	}
	l, err := lockFileNotify(ctx, gc, false, notice)
	il.unlock()
	if err != nil {
		return nil, err
	}
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	if s.gcShared > 0 { // another goroutine took it meanwhile
		l.unlock()
	} else {
		s.gcLock = l
	}
	s.gcShared++
	return &gcHold{s: s}, nil
}
