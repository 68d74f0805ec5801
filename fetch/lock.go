package fetch

import (
	"context"
	"errors"
	"os"
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

// unlock releases the lock. It is safe on a nil lock.
func (l *fileLock) unlock() {
	if l != nil && l.f != nil {
		l.f.Close()
		l.f = nil
	}
}
