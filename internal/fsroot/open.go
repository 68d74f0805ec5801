package fsroot

import (
	"os"

	"golang.org/x/sys/unix"
)

// Opening a regular file of an untrusted tree for reading.
//
// open(2) of a device node calls its driver (a tape rewinds, a modem
// hangs up, a watchdog arms) and open(2) of a FIFO can block, before any
// fstat could tell what was opened; a tree a container writes can swap a
// file for a device node between a check by name and an open by name
// (CVE-2024-9676 in containers/storage). So nothing here opens a name for
// reading. The name is opened with O_PATH|O_NOFOLLOW, which opens
// nothing (no driver, no FIFO, no symbolic link followed); that
// descriptor's type is checked; and only a regular file is reopened,
// through that very descriptor, never through the name again:
//
//  1. /proc/self/fd/N, the usual way;
//  2. without /proc, open_by_handle_at(2) of the descriptor's file handle
//     (the same inode; it needs CAP_DAC_READ_SEARCH, which root has, or
//     since Linux 6.10 a handle the caller may reach from the mount);
//  3. without either (an unprivileged caller without /proc), by name with
//     O_NOFOLLOW|O_NONBLOCK|O_NOCTTY, and the inode compared with the one
//     checked (ESTALE when it differs). This last way keeps a residual
//     risk: a swap in the instant between the check and the open makes
//     the open reach a device node or FIFO the caller has permission to
//     open (its driver's open runs; nothing is read or written, the
//     descriptor is closed at once). An unprivileged caller cannot open
//     devices it has no permission for; mounting /proc removes the risk.

// testHookReopen, when set by a test, runs between the type check and
// the reopen: where a swap would have to happen.
var testHookReopen func()

// OpenRegularAt opens base in the directory dirfd for reading when it is
// a regular file, never following a final symbolic link and never opening
// anything else for reading (see above): a FIFO, device, socket, directory
// or symbolic link is ErrNotRegular. It needs no Root: it is for walks
// that hold their own directory descriptors. st is the file's status.
func OpenRegularAt(dirfd int, base string) (f *os.File, st unix.Stat_t, err error) {
	noProc := false
	fd, st, err := openRegular(dirfd, base, &noProc)
	if err != nil {
		return nil, st, pathErr("open", base, err)
	}
	return os.NewFile(uintptr(fd), base), st, nil
}

// openRegular is OpenRegularAt's body; *noProc says that /proc is known
// to be missing, and is set when it is found so.
func openRegular(dirfd int, base string, noProc *bool) (int, unix.Stat_t, error) {
	var st unix.Stat_t
	pathfd, err := unix.Openat(dirfd, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, st, err
	}
	defer unix.Close(pathfd)
	if err := unix.Fstat(pathfd, &st); err != nil {
		return -1, st, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return -1, st, ErrNotRegular
	}
	if testHookReopen != nil {
		testHookReopen()
	}
	fd, err := reopenRegular(pathfd, dirfd, base, &st, noProc)
	return fd, st, err
}

// reopenRegular opens for reading the regular file open as the O_PATH
// descriptor pathfd, whose status is st, which is base in dirfd.
func reopenRegular(pathfd, dirfd int, base string, st *unix.Stat_t, noProc *bool) (int, error) {
	if !*noProc {
		fd, err := unix.Open(procFD(pathfd), unix.O_RDONLY|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		// /proc/self/fd/N of an open descriptor exists, even for a file
		// unlinked since: ENOENT means no /proc.
		if err != unix.ENOENT || procMounted() {
			return fd, err
		}
		*noProc = true
	}
	if fd, ok := openByHandle(pathfd, dirfd, st); ok {
		return fd, nil
	}
	// The residual way: by name, not blocking, then the inode compared.
	fd, err := unix.Openat(dirfd, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	var st2 unix.Stat_t
	if err = unix.Fstat(fd, &st2); err == nil && (st2.Dev != st.Dev || st2.Ino != st.Ino || st2.Mode&unix.S_IFMT != unix.S_IFREG) {
		err = unix.ESTALE
	}
	if err == nil {
		_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFL, unix.O_RDONLY)
	}
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// openByHandle opens the file of pathfd for reading through its file
// handle, which names that inode and no other; ok is false when the
// kernel or the file system cannot (no privilege, no export support).
// The handle is decoded in the super block of dirfd's mount, which must
// be the file's (the same device): an inode number of another file
// system could name anything.
func openByHandle(pathfd, dirfd int, st *unix.Stat_t) (int, bool) {
	h, _, err := unix.NameToHandleAt(pathfd, "", unix.AT_EMPTY_PATH)
	if err != nil {
		return -1, false
	}
	// open_by_handle_at wants a real descriptor on the mount, not an
	// O_PATH one; "." of a directory opens nothing but that directory.
	mfd, err := unix.Openat(dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, false
	}
	defer unix.Close(mfd)
	var mst unix.Stat_t
	if unix.Fstat(mfd, &mst) != nil || mst.Dev != st.Dev {
		return -1, false
	}
	fd, err := unix.OpenByHandleAt(mfd, h, unix.O_RDONLY|unix.O_NOCTTY|unix.O_CLOEXEC)
	if err != nil {
		return -1, false
	}
	var st2 unix.Stat_t
	if unix.Fstat(fd, &st2) != nil || st2.Dev != st.Dev || st2.Ino != st.Ino {
		unix.Close(fd)
		return -1, false
	}
	return fd, true
}

// openDirOrRegular opens base in dirfd for reading (a directory) or for
// its descriptor (a regular file) without following a symbolic link and
// without opening anything else: ok is false, and nothing was opened,
// for a FIFO, device, socket or link. It serves the xattr calls that
// need a real descriptor where neither /proc nor the *xattrat calls are
// there.
func openDirOrRegular(dirfd int, base string, noProc *bool) (fd int, ok bool, err error) {
	pathfd, err := unix.Openat(dirfd, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, false, err
	}
	defer unix.Close(pathfd)
	var st unix.Stat_t
	if err := unix.Fstat(pathfd, &st); err != nil {
		return -1, false, err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		// "." of the directory the descriptor holds: that directory.
		fd, err = unix.Openat(pathfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		return fd, err == nil, err
	case unix.S_IFREG:
		if testHookReopen != nil {
			testHookReopen()
		}
		fd, err = reopenRegular(pathfd, dirfd, base, &st, noProc)
		return fd, err == nil, err
	}
	return -1, false, nil
}
