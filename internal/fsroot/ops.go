package fsroot

import (
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/errdefs"
)

// Lstat returns the status of name without following a final symbolic link.
func (r *Root) Lstat(name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	dir, base := split(name)
	if base == "" {
		return st, pathErr("lstat", name, unix.Fstat(r.fd, &st))
	}
	pfd, err := r.parent(dir)
	if err != nil {
		return st, pathErr("lstat", name, err)
	}
	return st, pathErr("lstat", name, unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW))
}

// Readlink returns the target of the symbolic link name.
func (r *Root) Readlink(name string) (string, error) {
	dir, base := split(name)
	if base == "" {
		return "", pathErr("readlink", name, unix.EINVAL)
	}
	pfd, err := r.parent(dir)
	if err != nil {
		return "", pathErr("readlink", name, err)
	}
	buf := make([]byte, 256)
	for {
		n, err := unix.Readlinkat(pfd, base, buf)
		if err != nil {
			return "", pathErr("readlink", name, err)
		}
		if n < len(buf) {
			return string(buf[:n]), nil
		}
		if len(buf) >= unix.PathMax {
			return "", pathErr("readlink", name, unix.ENAMETOOLONG)
		}
		buf = make([]byte, 2*len(buf))
	}
}

// Mkdir creates the directory name with perm (less the umask). It fails
// with EEXIST when anything, a symbolic link included, is already there.
func (r *Root) Mkdir(name string, perm uint32) error {
	dir, base := split(name)
	if base == "" {
		return pathErr("mkdir", name, unix.EEXIST)
	}
	pfd, err := r.parent(dir)
	if err != nil {
		return pathErr("mkdir", name, err)
	}
	return pathErr("mkdir", name, unix.Mkdirat(pfd, base, perm))
}

// MkdirAll makes sure name is a directory, creating it and any missing
// parents with perm. Symbolic links on the way are followed inside the
// root, dangling ones included: their targets are created. It fails with
// ENOTDIR when a component exists and is not a directory.
func (r *Root) MkdirAll(name string, perm uint32) error {
	c := clean(name)
	if c == "" {
		return nil
	}
	if r.openat2 {
		fd, err := openat2InRoot(r.fd, c, unix.O_PATH|unix.O_DIRECTORY)
		if err == nil {
			unix.Close(fd)
			return nil
		}
		if err != unix.ENOENT {
			return pathErr("mkdir", name, r.xdevErr(err, c))
		}
		// Something is missing: the walk creates it, confined the same way.
	}
	fd, err := r.walk(c, true, perm)
	if err != nil {
		return pathErr("mkdir", name, err)
	}
	unix.Close(fd)
	return nil
}

// Create creates the regular file name, which must not exist (O_EXCL: a
// symbolic link there is not followed but makes Create fail with EEXIST),
// with mode perm less the umask, and returns it open for writing.
func (r *Root) Create(name string, perm uint32) (*File, error) {
	pfd, base, err := r.parentOf("create", name)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Openat(pfd, base, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm&07777)
	if err != nil {
		return nil, pathErr("create", name, err)
	}
	return &File{fd: fd, name: name}, nil
}

// parentOf resolves, inside the root, the parent directory of name for an
// op that cannot act on the root itself (ErrRoot: umoci CVE-2021-29136),
// and returns it with name's final component. Errors are ready to return.
func (r *Root) parentOf(op, name string) (pfd int, base string, err error) {
	dir, base := split(name)
	if base == "" {
		return -1, "", rootErr(op, name)
	}
	if pfd, err = r.parent(dir); err != nil {
		return -1, "", pathErr(op, name, err)
	}
	return pfd, base, nil
}

// Symlink creates name as a symbolic link to target. The target is stored
// as given; it is never resolved here.
func (r *Root) Symlink(target, name string) error {
	pfd, base, err := r.parentOf("symlink", name)
	if err != nil {
		return err
	}
	return pathErr("symlink", name, unix.Symlinkat(target, pfd, base))
}

// Link creates newname as a hard link to oldname. Both are resolved inside
// the root; a symbolic link at oldname is linked itself, not its target.
func (r *Root) Link(oldname, newname string) error {
	p, err := r.parents("link", oldname, newname, newname)
	if err != nil {
		return err
	}
	defer p.close()
	// flags 0: linkat does not follow a symbolic link at oldname.
	return pathErr("link", newname, unix.Linkat(p.ofd, p.obase, p.nfd, p.nbase, 0))
}

// parentPair holds the parent directories of the two names of a Link or
// Rename, with the final components to use in them.
type parentPair struct {
	ofd, nfd     int
	obase, nbase string
	owned        bool // ofd is the caller's to close
}

// parents resolves, inside the root, the parent directories of oldname and
// newname for op: newname's through the cache, then oldname's beside it
// without evicting it (parentUncached). Neither name may be the root
// (ErrRoot, reported with rootName). Errors are ready to return.
func (r *Root) parents(op, oldname, newname, rootName string) (parentPair, error) {
	var p parentPair
	odir, obase := split(oldname)
	ndir, nbase := split(newname)
	if obase == "" || nbase == "" {
		return p, rootErr(op, rootName)
	}
	p.obase, p.nbase = obase, nbase
	var err error
	if p.nfd, err = r.parent(ndir); err != nil {
		return p, pathErr(op, newname, err)
	}
	if p.ofd, p.owned, err = r.parentUncached(odir); err != nil {
		return p, pathErr(op, oldname, err)
	}
	return p, nil
}

func (p parentPair) close() {
	if p.owned {
		unix.Close(p.ofd)
	}
}

// Largest device numbers the kernel's dev_t (12-bit major, 20-bit minor)
// holds. Larger ones would be silently truncated by the encoding, and
// could then name a different device than the one asked for.
const (
	MaxDevMajor = 1<<12 - 1
	MaxDevMinor = 1<<20 - 1
)

// Mknod creates a device node or FIFO: mode holds the type (S_IFCHR,
// S_IFBLK, S_IFIFO) and permissions. Device numbers that do not fit the
// kernel's dev_t fail with ERANGE.
func (r *Root) Mknod(name string, mode uint32, major, minor int64) error {
	dir, base := split(name)
	if base == "" {
		return rootErr("mknod", name)
	}
	if major < 0 || major > MaxDevMajor || minor < 0 || minor > MaxDevMinor {
		return pathErr("mknod", name, unix.ERANGE)
	}
	pfd, err := r.parent(dir)
	if err != nil {
		return pathErr("mknod", name, err)
	}
	dev := unix.Mkdev(uint32(major), uint32(minor))
	return pathErr("mknod", name, unix.Mknodat(pfd, base, mode, int(dev)))
}

// Remove removes name, a file, link or empty directory. A symbolic link is
// removed itself.
func (r *Root) Remove(name string) error {
	pfd, base, err := r.parentOf("remove", name)
	if err != nil {
		return err
	}
	err = unix.Unlinkat(pfd, base, 0)
	if err == unix.EISDIR {
		err = unix.Unlinkat(pfd, base, unix.AT_REMOVEDIR)
	}
	err = r.busyErr(err, pfd, base, clean(name))
	r.dropCache()
	return pathErr("remove", name, err)
}

// RemoveAll removes name and, if it is a directory, everything below it,
// never following a symbolic link. A missing name is not an error.
// Directories that deny their owner access are opened up first (the
// unprivileged case of a mode-000 directory): they are being removed anyway.
func (r *Root) RemoveAll(name string) error {
	dir, base := split(name)
	if base == "" {
		return rootErr("remove", name)
	}
	pfd, err := r.parent(dir)
	if err == unix.ENOENT || err == unix.ENOTDIR {
		return nil
	}
	if err != nil {
		return pathErr("remove", name, err)
	}
	err = r.removeAllAt(pfd, base, false, clean(name))
	r.dropCache()
	return pathErr("remove", name, err)
}

// Rename moves oldname to newname, both inside the root, replacing what
// newname names as rename(2) does.
func (r *Root) Rename(oldname, newname string) error {
	p, err := r.parents("rename", oldname, newname, oldname)
	if err != nil {
		return err
	}
	err = unix.Renameat(p.ofd, p.obase, p.nfd, p.nbase)
	if err == unix.EBUSY {
		if err = r.busyErr(err, p.ofd, p.obase, clean(oldname)); err == unix.EBUSY {
			err = r.busyErr(err, p.nfd, p.nbase, clean(newname))
		}
	}
	p.close()
	r.dropCache()
	return pathErr("rename", oldname, err)
}

// Lchown changes the owner of name, or of the link itself when name is a
// symbolic link.
func (r *Root) Lchown(name string, uid, gid int) error {
	dir, base := split(name)
	if base == "" {
		return pathErr("lchown", name, unix.Fchownat(r.fd, "", uid, gid, unix.AT_EMPTY_PATH))
	}
	pfd, err := r.parent(dir)
	if err != nil {
		return pathErr("lchown", name, err)
	}
	return pathErr("lchown", name, unix.Fchownat(pfd, base, uid, gid, unix.AT_SYMLINK_NOFOLLOW))
}

// Lchmod sets the mode (permissions and setuid, setgid, sticky bits) of
// name. On a symbolic link it does nothing: links have no mode of their own
// on Linux, and following one is how containerd's CVE-2021-32760 changed
// the mode of host files.
func (r *Root) Lchmod(name string, mode uint32) error {
	mode &= 07777
	dir, base := split(name)
	if base == "" {
		return r.onRootFile("chmod", name, func(fd int) error { return unix.Fchmod(fd, mode) })
	}
	pfd, err := r.parent(dir)
	if err != nil {
		return pathErr("chmod", name, err)
	}
	if r.fchmodat2 {
		err := fchmodat2(pfd, base, mode, unix.AT_SYMLINK_NOFOLLOW)
		switch err {
		case nil:
			return nil
		case unix.EOPNOTSUPP:
			// fchmodat2 refuses to change a symbolic link (or the file
			// system cannot): the O_PATH path below tells which.
		case unix.ENOSYS, unix.EPERM:
			r.fchmodat2 = false
		default:
			return pathErr("chmod", name, err)
		}
	}
	// Open the object itself, not following a link, check what it is
	// through the descriptor, and change the mode of exactly that inode.
	return pathErr("chmod", name, r.chmodAtNoFollow(pfd, base, mode))
}

// Lutimes sets the access and modification times of name, or of the link
// itself when name is a symbolic link, to the nanosecond.
func (r *Root) Lutimes(name string, atime, mtime time.Time) error {
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	dir, base := split(name)
	if base == "" {
		return r.onRootFile("utimes", name, func(fd int) error { return futimens(fd, ts) })
	}
	pfd, err := r.parent(dir)
	if err != nil {
		return pathErr("utimes", name, err)
	}
	return pathErr("utimes", name, unix.UtimesNanoAt(pfd, base, ts, unix.AT_SYMLINK_NOFOLLOW))
}

// Lsetxattr sets the extended attribute attr of name, of the link itself
// when name is a symbolic link. It uses setxattrat(2) relative to the
// resolved parent (Linux 6.13); before that kernel, a directory or regular
// file is opened (O_NOFOLLOW) and set through its descriptor, and anything
// else is looked up below the parent's /proc/self/fd entry by lsetxattr,
// which does not follow it. Without /proc and setxattrat, xattrs of symbolic links, FIFOs
// and device nodes cannot be set confined: that fails with EOPNOTSUPP.
func (r *Root) Lsetxattr(name, attr string, value []byte) error {
	dir, base := split(name)
	if base == "" {
		return r.onRootFile("setxattr", name, func(fd int) error { return unix.Fsetxattr(fd, attr, value, 0) })
	}
	pfd, err := r.parent(dir)
	if err != nil {
		return pathErr("setxattr", name, err)
	}
	if !r.noSetxattrat {
		err := setxattrat(pfd, base, attr, value)
		if err != unix.ENOSYS {
			return pathErr("setxattr", name, err)
		}
		r.noSetxattrat = true
	}
	// A directory or regular file through its own descriptor: no /proc
	// needed. Nothing else is opened: opening a device can act on it.
	fd, opened, err := openDirOrRegular(pfd, base, &r.noProc)
	if err != nil {
		return pathErr("setxattr", name, err)
	}
	if opened {
		defer unix.Close(fd)
		return pathErr("setxattr", name, unix.Fsetxattr(fd, attr, value, 0))
	}
	if r.noProc {
		return pathErr("setxattr", name, unix.EOPNOTSUPP)
	}
	err = unix.Lsetxattr(procFD(pfd)+"/"+base, attr, value, 0)
	if err == unix.ENOENT && !procMounted() {
		r.noProc = true
		err = unix.EOPNOTSUPP
	}
	return pathErr("setxattr", name, err)
}

// procMounted tells whether /proc/self/fd can be used.
func procMounted() bool {
	var st unix.Stat_t
	return unix.Stat("/proc/self/fd", &st) == nil
}

// ErrNotRegular is the cause when OpenFile meets anything but a regular
// file: reading a FIFO would hang and a device could be a host's disk
// (CVE-2024-9676).
var ErrNotRegular = errdefs.New(errdefs.ErrPathEscape, "not a regular file")

// OpenFile opens the regular file name for reading. A final symbolic link
// is not followed, and anything but a regular file is refused before it is
// opened for reading: the check is made on an O_PATH descriptor and the
// file is then reopened through that very descriptor (see OpenRegularAt
// for how without /proc).
func (r *Root) OpenFile(name string) (*os.File, error) {
	dir, base := split(name)
	if base == "" {
		return nil, pathErr("open", name, ErrNotRegular)
	}
	pfd, err := r.parent(dir)
	if err != nil {
		return nil, pathErr("open", name, err)
	}
	fd, _, err := openRegular(pfd, base, &r.noProc)
	if err != nil {
		return nil, pathErr("open", name, err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// ReadDirNames returns the names in the directory name, every component of
// which, the last one included, is followed inside the root.
func (r *Root) ReadDirNames(name string) ([]string, error) {
	return r.readDirNames(name, -1)
}

// Empty tells whether the directory name (followed as by ReadDirNames)
// holds nothing, reading one name at most.
func (r *Root) Empty(name string) (bool, error) {
	names, err := r.readDirNames(name, 1)
	return len(names) == 0, err
}

// readDirNames returns up to n names (all for n <= 0) of the directory
// name.
func (r *Root) readDirNames(name string, n int) ([]string, error) {
	c := clean(name)
	var fd int
	var err error
	switch {
	case c == "":
		fd, err = unix.Openat(r.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	case r.openat2:
		fd, err = openat2InRoot(r.fd, c, unix.O_RDONLY|unix.O_DIRECTORY)
		err = r.xdevErr(err, c)
	default:
		var pfd int
		if pfd, err = r.walk(c, false, 0); err == nil {
			fd, err = unix.Openat(pfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			unix.Close(pfd)
		}
	}
	if err != nil {
		return nil, pathErr("readdir", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	names, err := f.Readdirnames(n)
	if n > 0 && err == io.EOF {
		err = nil // fewer than n, none at all included
	}
	return names, err
}

// MoveOut renames name, whose final component is never followed, to
// newname in the directory open as dirfd, which may lie outside the root.
// Both must be on the same file system (EXDEV otherwise). The root itself
// cannot be moved.
func (r *Root) MoveOut(name string, dirfd int, newname string) error {
	pfd, base, err := r.parentOf("rename", name)
	if err != nil {
		return err
	}
	err = r.busyErr(unix.Renameat(pfd, base, dirfd, newname), pfd, base, clean(name))
	r.dropCache()
	return pathErr("rename", name, err)
}
