// Package atomicfile publishes files whole or not at all: a file written
// through it appears under its final name only once every byte is on
// disk, replaces whatever was there (a planted symlink included) without
// following it, and survives a crash once Commit returns.
//
// The sequence is the full one: write an anonymous file (O_TMPFILE) in
// the destination directory, fsync it, link it in under a temporary name,
// rename that over the final name, fsync the directory. A kill at any
// point leaves either the old file or the new one under the final name,
// never a partial one. Where the file system has no O_TMPFILE the file is
// written under a name with TempPrefix from the start; Clean removes such
// leftovers, and every writer in this module calls it before writing into
// a directory it owns.
package atomicfile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/errdefs"
)

// TempPrefix starts the name of every temporary file this package makes,
// so that leftovers of a crash can be recognized and removed.
const TempPrefix = ".ocifetch-tmp-"

// noTmpfile makes Create use a named temporary, as on file systems
// without O_TMPFILE; tests run both ways.
var noTmpfile = false

// File is a file on its way to its final name. It is an *os.File for
// writing; Commit publishes it and Abort throws it away. Exactly one of
// them must be called.
type File struct {
	*os.File
	dirfd   int
	dir     string
	name    string
	tmpName string // the named temporary (no O_TMPFILE), else ""
	perm    fs.FileMode
	done    bool
}

// Create starts a file that Commit will publish as path, with mode perm
// (subject to nothing: the umask does not apply). The directory must
// exist; it may be reached through symlinks the caller chose, but the
// final name itself is never followed.
func Create(path string, perm fs.FileMode) (*File, error) {
	dir, name := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if err := checkName(name, path); err != nil {
		return nil, err
	}
	dirfd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, wrap(&fs.PathError{Op: "open", Path: dir, Err: err}, path)
	}
	return create(dirfd, dir, name, perm)
}

// CreateAt is Create for the file name in the directory dirfd (which may
// be an O_PATH descriptor, e.g. one fsroot or the state directory
// confines), for writers that reach their directory only by descriptor.
// dir names it in errors. The caller keeps dirfd.
func CreateAt(dirfd int, dir, name string, perm fs.FileMode) (*File, error) {
	path := filepath.Join(dir, name)
	if err := checkName(name, path); err != nil || strings.Contains(name, "/") {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "%q is not a file name", name)
	}
	// A descriptor of our own that fsync accepts (O_PATH ones it refuses).
	own, err := unix.Openat(dirfd, ".", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, wrap(&fs.PathError{Op: "open", Path: dir, Err: err}, path)
	}
	return create(own, dir, name, perm)
}

func checkName(name, path string) error {
	if name == "" || name == "." || name == ".." {
		return errdefs.New(errdefs.ErrInvalidArgument, "%q is not a file name", path)
	}
	return nil
}

// create starts the file name in dirfd, which it then owns.
func create(dirfd int, dir, name string, perm fs.FileMode) (*File, error) {
	path := filepath.Join(dir, name)
	f := &File{dirfd: dirfd, dir: dir, name: name, perm: perm}
	fd, err := -1, error(unix.EOPNOTSUPP)
	if !noTmpfile {
		fd, err = unix.Openat(dirfd, ".", unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, uint32(perm.Perm()))
	}
	if err != nil {
		// No O_TMPFILE here (EOPNOTSUPP, EISDIR on old kernels, EINVAL):
		// a named temporary that Clean recognizes.
		f.tmpName = TempPrefix + name + "-" + random()
		fd, err = unix.Openat(dirfd, f.tmpName, unix.O_CREAT|unix.O_EXCL|unix.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(perm.Perm()))
		if err != nil {
			unix.Close(dirfd)
			return nil, wrap(&fs.PathError{Op: "create", Path: filepath.Join(dir, f.tmpName), Err: err}, path)
		}
	}
	f.File = os.NewFile(uintptr(fd), path)
	return f, nil
}

// Commit makes the file durable and visible under its final name,
// replacing what was there. After an error nothing new is visible.
func (f *File) Commit() error {
	if f.done {
		return errdefs.New(errdefs.ErrInternal, "%s: already committed or aborted", f.Name())
	}
	f.done = true
	defer unix.Close(f.dirfd)
	path := filepath.Join(f.dir, f.name)
	// The mode again: O_TMPFILE and O_CREAT both apply the umask.
	err := f.Chmod(f.perm.Perm())
	if err == nil {
		err = f.Sync()
	}
	if err == nil && f.tmpName == "" {
		f.tmpName = TempPrefix + f.name + "-" + random()
		err = linkTmpfile(int(f.Fd()), f.dirfd, f.tmpName)
		if err != nil {
			f.tmpName = ""
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat(f.dirfd, f.tmpName, f.dirfd, f.name)
	}
	if err == nil {
		err = unix.Fsync(f.dirfd)
	}
	if err != nil {
		if f.tmpName != "" {
			unix.Unlinkat(f.dirfd, f.tmpName, 0)
		}
		return wrap(err, path)
	}
	return nil
}

// Abort discards the file; nothing is published. It may be called after
// Commit, when it does nothing, so that it can be deferred.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.Close()
	if f.tmpName != "" {
		unix.Unlinkat(f.dirfd, f.tmpName, 0)
	}
	unix.Close(f.dirfd)
}

// linkTmpfile gives the anonymous file fd the name dirfd/name. linkat
// with AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; through /proc/self/fd it
// needs /proc. One of the two is there wherever this program runs as
// root or in a normal mount namespace.
func linkTmpfile(fd, dirfd int, name string) error {
	err := unix.Linkat(fd, "", dirfd, name, unix.AT_EMPTY_PATH)
	if err == nil {
		return nil
	}
	if err2 := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), dirfd, name, unix.AT_SYMLINK_FOLLOW); err2 != nil {
		return errors.Join(err, err2)
	}
	return nil
}

// WriteFile publishes data as path with mode perm, atomically and
// durably.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Abort()
		return wrap(err, path)
	}
	return f.Commit()
}

// Clean removes the temporaries a crashed writer left in dir (names that
// start with TempPrefix). Only a process that owns dir exclusively may
// call it: another writer's temporary would go too.
func Clean(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return wrap(err, dir)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), TempPrefix) && !e.IsDir() {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return wrap(err, dir)
			}
		}
	}
	return nil
}

// SyncDir fsyncs a directory, so that renames and links into it survive
// a crash.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return wrap(err, dir)
	}
	defer d.Close()
	return wrap(d.Sync(), dir)
}

func random() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func wrap(err error, path string) error {
	if err == nil {
		return nil
	}
	return errdefs.Wrap(err, errdefs.ErrInternal, "writing %s", path)
}
