package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/atomicfile"
)

// layerOutput is where rebuild --layer -o FILE writes: Commit once the layer
// rebuilt to its diffID, Abort otherwise (both close it).
type layerOutput struct {
	io.Writer
	Commit func() error
	Abort  func()
}

// openLayerOutput opens -o FILE as users of tar -f and curl -o expect, without
// ever replacing what is not a file:
//
//   - the user's symbolic links are followed to the path they lead to (a
//     dangling one included: the file is made where it points);
//   - an existing FIFO, character device or socket there is written
//     through, as a pipe is: rebuild hands a writer only bytes it has
//     verified, and the last 1024 only once the layer's digest matched;
//   - a name that leads through /proc/PID/fd (/dev/stdout, /dev/fd/N) is
//     the descriptor it names, written through as a shell's redirection
//     is (truncated when it is a regular file);
//   - a directory, or a block device, is a usage error;
//   - a regular file, or a missing one, is published atomically
//     (internal/atomicfile) at the path the links lead to, keeping an
//     existing file's permissions: a failed rebuild leaves it as it was.
//
// Before, -o renamed a regular file over whatever FILE was: a character
// device or FIFO given as -o became a regular file, and as root -o
// /dev/null or -o /dev/stdout would have replaced system files.
func openLayerOutput(ctx context.Context, name string) (*layerOutput, error) {
	p, viaProc, err := followOutput(name)
	if err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "-o %s", name)
	}
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !viaProc:
		return atomicLayerOutput(name, p, 0o644)
	case err != nil:
		return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "-o %s", name)
	}
	m := fi.Mode()
	switch {
	case m.IsDir():
		return nil, usagef("-o %s is a directory: name a file (or use --all -o DIR)", name)
	case m&fs.ModeDevice != 0 && m&fs.ModeCharDevice == 0:
		return nil, usagef("-o %s is a block device: rebuild writes a tar to a file, a pipe or a character device, never over a disk", name)
	case m.IsRegular() && !viaProc:
		return atomicLayerOutput(name, p, m.Perm())
	case m&fs.ModeSocket != 0:
		c, err := (&net.Dialer{}).DialContext(ctx, "unix", p)
		if err != nil {
			return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "-o %s: connecting to the socket", name)
		}
		return throughLayerOutput(c), nil
	case m&fs.ModeNamedPipe != 0:
		f, err := openFIFO(ctx, p)
		if err != nil {
			if hasKind(err) {
				return nil, err
			}
			return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "-o %s", name)
		}
		return throughLayerOutput(f), nil
	default: // a character device, or a regular file through /proc/PID/fd
		flags := os.O_WRONLY | unix.O_NOCTTY
		if m.IsRegular() {
			flags |= os.O_TRUNC
		}
		f, err := os.OpenFile(p, flags, 0)
		if err != nil {
			return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "-o %s", name)
		}
		return throughLayerOutput(f), nil
	}
}

func hasKind(err error) bool {
	var e *errdefs.Error
	return errors.As(err, &e)
}

// procFDDir matches the directories of /proc whose entries are magic
// links to open descriptors.
var procFDDir = regexp.MustCompile(`^/proc/[^/]+(/task/[^/]+)?/fd$`)

// followOutput follows the symbolic links of the final component of
// name, as open(2) would, and returns the path they lead to; viaProc
// tells that the last one is a /proc/PID/fd magic link, whose target is
// not a path to follow but the descriptor itself. The directories are
// resolved by the kernel.
func followOutput(name string) (p string, viaProc bool, err error) {
	p = name
	for range 40 {
		dir, err := filepath.EvalSymlinks(filepath.Dir(p))
		if err != nil {
			return "", false, err
		}
		p = filepath.Join(dir, filepath.Base(p))
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) || err == nil && fi.Mode()&fs.ModeSymlink == 0 {
			return p, false, nil
		}
		if err != nil {
			return "", false, err
		}
		if abs, err := filepath.Abs(dir); err == nil && procFDDir.MatchString(abs) {
			return p, true, nil
		}
		t, err := os.Readlink(p)
		if err != nil {
			return "", false, err
		}
		if !filepath.IsAbs(t) {
			t = filepath.Join(dir, t)
		}
		p = t
	}
	return "", false, fmt.Errorf("too many levels of symbolic links")
}

// atomicLayerOutput publishes the file at p (name is what the user wrote).
func atomicLayerOutput(name, p string, perm fs.FileMode) (*layerOutput, error) {
	f, err := atomicfile.Create(p, perm)
	if err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "-o %s", name)
	}
	return &layerOutput{Writer: f, Commit: f.Commit, Abort: f.Abort}, nil
}

func throughLayerOutput(c io.WriteCloser) *layerOutput {
	return &layerOutput{Writer: c, Commit: c.Close, Abort: func() { c.Close() }}
}

// openFIFO opens the FIFO p for writing, waiting for a reader as open(2)
// would, but without blocking in the kernel: a signal still ends the
// wait (ENXIO means no reader yet).
func openFIFO(ctx context.Context, p string) (*os.File, error) {
	for {
		fd, err := unix.Open(p, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err == nil {
			// Writes block again, as on any pipe.
			if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, unix.O_WRONLY); err != nil {
				unix.Close(fd)
				return nil, err
			}
			var st unix.Stat_t
			if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
				unix.Close(fd)
				return nil, fmt.Errorf("%s is no longer a FIFO", p)
			}
			return os.NewFile(uintptr(fd), p), nil
		}
		if err != unix.ENXIO {
			return nil, &fs.PathError{Op: "open", Path: p, Err: err}
		}
		select {
		case <-ctx.Done():
			return nil, errdefs.Wrap(ctx.Err(), errdefs.ErrCanceled, "waiting for a reader of %s", p)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
