package fsroot

import (
	"io/fs"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// File is a regular file made by Create, open for writing. It is a bare
// descriptor rather than an *os.File: applying a layer creates thousands of
// files, and os.NewFile costs a system call and a finalizer each.
type File struct {
	fd   int
	name string
}

// Name returns the name the file was created with.
func (f *File) Name() string { return f.name }

// Write writes p in full.
func (f *File) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := unix.Write(f.fd, p[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, pathErr("write", f.name, err)
		}
		n += m
	}
	return n, nil
}

// WriteAt writes p in full at offset off, leaving the file offset alone
// (pwrite(2)). Writing past the end extends the file; what lies between
// the old end and off is a hole, which reads as zeros and takes no space
// where the file system supports holes.
func (f *File) WriteAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		m, err := unix.Pwrite(f.fd, p[n:], off+int64(n))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, pathErr("pwrite", f.name, err)
		}
		n += m
	}
	return n, nil
}

// Truncate sets the file's size (ftruncate(2)): growing it adds a hole.
func (f *File) Truncate(size int64) error {
	for {
		err := unix.Ftruncate(f.fd, size)
		if err != unix.EINTR {
			return pathErr("truncate", f.name, err)
		}
	}
}

// Stat returns the file's status.
func (f *File) Stat() (unix.Stat_t, error) {
	var st unix.Stat_t
	return st, pathErr("stat", f.name, unix.Fstat(f.fd, &st))
}

// Chown changes the file's owner.
func (f *File) Chown(uid, gid int) error {
	return pathErr("chown", f.name, unix.Fchown(f.fd, uid, gid))
}

// Chmod sets the file's mode, setuid, setgid and sticky bits included.
func (f *File) Chmod(mode uint32) error {
	return pathErr("chmod", f.name, unix.Fchmod(f.fd, mode&07777))
}

// SetTimes sets the access and modification times to the nanosecond.
func (f *File) SetTimes(atime, mtime time.Time) error {
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	return pathErr("utimes", f.name, futimens(f.fd, ts))
}

// Setxattr sets an extended attribute.
func (f *File) Setxattr(attr string, value []byte) error {
	return pathErr("setxattr", f.name, unix.Fsetxattr(f.fd, attr, value, 0))
}

// Close closes the file.
func (f *File) Close() error {
	if f.fd < 0 {
		return &fs.PathError{Op: "close", Path: f.name, Err: fs.ErrClosed}
	}
	err := unix.Close(f.fd)
	f.fd = -1
	return pathErr("close", f.name, err)
}

// futimens sets the times of an open file (utimensat with a NULL path).
func futimens(fd int, ts []unix.Timespec) error {
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// fchmodat2 calls the system call directly: x/sys's Fchmodat maps its
// ENOSYS to EOPNOTSUPP, which would hide a kernel without it (Linux < 6.6)
// behind the answer it gives for symbolic links.
func fchmodat2(dirfd int, name string, mode uint32, flags int) error {
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return err
	}
	_, _, e := unix.Syscall6(unix.SYS_FCHMODAT2, uintptr(dirfd), uintptr(unsafe.Pointer(p)), uintptr(mode), uintptr(flags), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}
