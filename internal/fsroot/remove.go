package fsroot

import (
	"os"

	"golang.org/x/sys/unix"
)

// removeAllAt removes name in the directory dirfd and everything below it.
// Every step is relative to a descriptor and never follows a link: unlinkat
// removes a link itself, and a directory is opened with O_NOFOLLOW before
// its entries are removed relative to that descriptor.
// inside tells that dirfd is itself being removed, so its mode may be
// changed to get its entries out. path is name's path from the root, for
// messages. A mount point is never descended into nor removed: the
// mount point error stops the removal (see ErrMountPoint).
func (r *Root) removeAllAt(dirfd int, name string, inside bool, path string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err == unix.EBUSY {
		return r.busyErr(err, dirfd, name, path)
	}
	if inside && (err == unix.EACCES || err == unix.EPERM) {
		// dirfd denies its owner write access (a 0555 directory when
		// unprivileged): open it up, it is going away.
		if ferr := r.chmodOwnerRWX(dirfd); ferr != nil {
			return err
		}
		err = unix.Unlinkat(dirfd, name, 0)
		if err == nil || err == unix.ENOENT {
			return nil
		}
	}
	if err != unix.EISDIR {
		return err
	}
	// A directory mounted over is not ours to empty, nor to chmod: stop
	// before anything under it is touched.
	if other, err := r.crossesMount(dirfd, name); err != nil || other {
		if err == unix.ENOENT {
			return nil
		}
		if err == nil {
			err = r.mountErr(path)
		}
		return err
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == unix.EACCES {
		// A directory that denies its owner reading (mode 000 when
		// unprivileged). Change the mode of that very directory, found
		// without following links, and try again.
		if cerr := r.chmodAtNoFollow(dirfd, name, 0700); cerr == nil {
			fd, err = unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		}
	}
	if err == unix.ENOENT {
		return nil
	}
	if err != nil {
		return err
	}
	d := os.NewFile(uintptr(fd), name)
	defer d.Close()
	// Mounted meanwhile? Opening a mount point opens the root of what is
	// mounted there.
	if other, err := r.crossesMount(fd, ""); err != nil || other {
		if err == nil {
			err = r.mountErr(path)
		}
		return err
	}
	for {
		names, rerr := d.Readdirnames(1024)
		for _, n := range names {
			if err := r.removeAllAt(fd, n, true, path+"/"+n); err != nil {
				return err
			}
		}
		if len(names) == 0 || rerr != nil {
			break
		}
		// Removing entries while reading may make getdents skip some:
		// read again from the start until the directory is empty.
		if _, err := d.Seek(0, 0); err != nil {
			return err
		}
	}
	err = unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
	if err == unix.ENOENT {
		return nil
	}
	return r.busyErr(err, dirfd, name, path)
}

// busyErr turns the EBUSY of removing or renaming name in dirfd into the
// mount point error when name is a mount point (a file or directory
// mounted over); other errors pass.
func (r *Root) busyErr(err error, dirfd int, name, path string) error {
	if err != unix.EBUSY {
		return err
	}
	if other, merr := r.crossesMount(dirfd, name); merr == nil && other {
		return r.mountErr(path)
	}
	return err
}

// chmodOwnerRWX adds rwx for the owner to the directory open as dirfd.
func (r *Root) chmodOwnerRWX(dirfd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(dirfd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return unix.ENOTDIR
	}
	return unix.Chmod(procFD(dirfd), (st.Mode&07777)|0700)
}

// chmodAtNoFollow sets the mode of name in dirfd unless it is a symbolic
// link; the inode is pinned by an O_PATH descriptor between check and use.
func (r *Root) chmodAtNoFollow(dirfd int, name string, mode uint32) error {
	fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return nil
	}
	return unix.Chmod(procFD(fd), mode)
}
