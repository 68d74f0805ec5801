package apply

import (
	"errors"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/fsroot"
)

// Reading a tree that has mode-000 files and directories.
//
// As root nothing is needed: the capability to override file permissions
// reads everything. A caller that is not root reads what it owns (an
// unprivileged apply leaves everything owned by the caller) by giving the
// owner read (files) or read and search (directories) permission for as
// long as it takes to open the file or to walk the directory, and restoring
// the mode right after, in a defer. Opening a file needs the permission
// only for the instant of open(2): the descriptor stays readable. The
// mode is back when the call returns; only the inode's ctime shows it was
// touched. An O_PATH descriptor and a reopen through /proc do not help:
// the reopen checks permissions like any open. Files and directories the
// caller does not own and cannot read stay unreadable, and the operation
// fails with a permission error naming them.

// openTreeFile opens the regular file name of the tree for reading,
// confined by root: a final symbolic link is refused, never followed.
func openTreeFile(root *fsroot.Root, name string) (*os.File, error) {
	f, err := root.OpenFile(name)
	euid := os.Geteuid()
	if err == nil || !errors.Is(err, unix.EACCES) || euid == 0 {
		return f, err
	}
	var restore []func()
	defer func() {
		for i := len(restore) - 1; i >= 0; i-- {
			restore[i]()
		}
	}()
	unlock := func(name string, need uint32, dirOnly bool) bool {
		st, err := root.Lstat(name)
		if err != nil || int(st.Uid) != euid || st.Mode&need == need {
			return false
		}
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		if dirOnly != isDir || (!isDir && st.Mode&unix.S_IFMT != unix.S_IFREG) {
			return false
		}
		mode := st.Mode & 07777
		if root.Lchmod(name, mode|need) != nil {
			return false
		}
		restore = append(restore, func() { root.Lchmod(name, mode) })
		return true
	}
	dir, _ := splitName(name)
	prefix := ""
	for _, c := range strings.Split(dir, "/") {
		if c == "" {
			continue
		}
		prefix = joinName(prefix, c)
		unlock(prefix, 0100, true)
	}
	f, err = root.OpenFile(name)
	if err == nil || !errors.Is(err, unix.EACCES) {
		return f, err
	}
	if unlock(name, 0400, false) {
		f, err = root.OpenFile(name)
	}
	return f, err
}

// openAtOwner opens the regular file base in the directory dirfd for
// reading, never following a final symbolic link, with the owner's
// temporary read permission when needed. Nothing but a regular file is
// ever opened for reading: the walk's lstat is no guarantee, since a
// container can swap the file for a device node before the open, and
// open(2) of a device runs its driver (fsroot.OpenRegularAt checks an
// O_PATH descriptor and reopens that very inode).
func openAtOwner(dirfd int, base string) (*os.File, error) {
	f, _, err := fsroot.OpenRegularAt(dirfd, base)
	if err == nil || !errors.Is(err, unix.EACCES) || os.Geteuid() == 0 {
		return f, err
	}
	pfd, perr := unix.Openat(dirfd, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if perr != nil {
		return nil, err
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if unix.Fstat(pfd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || int(st.Uid) != os.Geteuid() {
		return nil, err
	}
	// The mode of that very inode, through /proc (a mode-000 file of the
	// caller's cannot be read otherwise), put back at once.
	mode := st.Mode & 07777
	if unix.Chmod(procPath(pfd), mode|0400) != nil {
		return nil, err
	}
	fd, oerr := unix.Open(procPath(pfd), unix.O_RDONLY|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	unix.Chmod(procPath(pfd), mode)
	if oerr != nil {
		return nil, &fs.PathError{Op: "open", Path: base, Err: oerr}
	}
	return os.NewFile(uintptr(fd), base), nil
}

// openDirOwner opens the directory base in dirfd, whose status is st, for
// listing and lookups, never following a symbolic link. When the caller
// owns it but it denies the owner read or search (not root), the owner's
// r-x is added first; restore is then the mode to put back once done
// (through the returned descriptor).
func openDirOwner(dirfd int, base string, st *unix.Stat_t) (fd int, restore uint32, opened bool, err error) {
	euid := os.Geteuid()
	if euid != 0 && int(st.Uid) == euid && st.Mode&0500 != 0500 {
		mode := st.Mode & 07777
		if err := chmodNoFollow(dirfd, base, mode|0500); err != nil {
			return -1, 0, false, err
		}
		fd, err = unix.Openat(dirfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			chmodNoFollow(dirfd, base, mode)
			return -1, 0, false, err
		}
		return fd, mode, true, nil
	}
	fd, err = unix.Openat(dirfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	return fd, 0, false, err
}

// chmodNoFollow sets the mode of the directory base in dirfd, never
// following a symbolic link: fchmodat2 with AT_SYMLINK_NOFOLLOW, else an
// O_PATH descriptor changed through /proc.
func chmodNoFollow(dirfd int, base string, mode uint32) error {
	err := unix.Fchmodat(dirfd, base, mode, unix.AT_SYMLINK_NOFOLLOW)
	if err == nil {
		return nil
	}
	pfd, perr := unix.Openat(dirfd, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if perr != nil {
		return perr
	}
	defer unix.Close(pfd)
	return unix.Chmod(procPath(pfd), mode)
}

func procPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

func walkErr(err error, path string) error {
	if path == "" {
		path = "."
	}
	return errdefs.Wrap(err, errdefs.ErrInternal, "reading %q", path)
}

// pathLess orders paths as walkTree visits them: component by component,
// so that a directory's entries come right after it ("a", "a/b", "a.b").
func pathLess(a, b string) bool {
	for {
		ac, arest, amore := strings.Cut(a, "/")
		bc, brest, bmore := strings.Cut(b, "/")
		if ac != bc {
			return ac < bc
		}
		if !amore || !bmore {
			return !amore && bmore
		}
		a, b = arest, brest
	}
}
