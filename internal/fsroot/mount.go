package fsroot

import (
	"errors"

	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/errdefs"
)

// Mount points inside the root.
//
// A Root never crosses a mount point below its root directory: names are
// resolved with RESOLVE_NO_XDEV (the fallback walk compares each
// directory's mount with the root's), and RemoveAll stops at a mount
// point it meets instead of descending into it. A bind mount inside a
// tree (the user's own, or one a runtime left) is not part of the tree:
// emptying a target for a rerun once went down a bind mount, deleted the
// files of the mounted directory, and then failed with EBUSY on the mount
// point itself. Now the operation fails with ErrMountPoint, naming the
// mount point, before anything under it is touched.

// ErrMountPoint is the cause when an operation meets a mount point inside
// the root: what lies below it belongs to another tree, so nothing there
// is read, written or removed. The error (kind invalid_argument) names the
// mount point and tells the user to unmount it.
var ErrMountPoint = errors.New("a mount point inside the root")

// mountKey identifies the mount a descriptor is on: its mount ID
// (statx STATX_MNT_ID, Linux 5.8), else, on older kernels, its device
// number, which tells mounts of other file systems but not bind mounts of
// the same one.
type mountKey struct {
	byID bool
	id   uint64
}

// mountOf returns the mount of the entry name in dirfd ("" for dirfd
// itself), following a mount point but not a symbolic link.
func mountOf(dirfd int, name string) (mountKey, error) {
	flags := unix.AT_SYMLINK_NOFOLLOW
	if name == "" {
		flags |= unix.AT_EMPTY_PATH
	}
	var sx unix.Statx_t
	if err := unix.Statx(dirfd, name, flags, unix.STATX_MNT_ID, &sx); err != nil {
		return mountKey{}, err
	}
	if sx.Mask&unix.STATX_MNT_ID != 0 {
		return mountKey{byID: true, id: sx.Mnt_id}, nil
	}
	return mountKey{id: unix.Mkdev(sx.Dev_major, sx.Dev_minor)}, nil
}

// crossesMount tells whether the entry name in dirfd ("" for dirfd
// itself) lies on another mount than the root.
func (r *Root) crossesMount(dirfd int, name string) (bool, error) {
	k, err := mountOf(dirfd, name)
	if err != nil {
		return false, err
	}
	return k != r.mnt, nil
}

// mountErr is the error for the mount point at path (relative to the
// root).
func (r *Root) mountErr(path string) error {
	if path == "" {
		path = "."
	}
	return errdefs.Wrap(ErrMountPoint, errdefs.ErrInvalidArgument,
		"%q in %s is a mount point (or lies below one): unmount it and try again; nothing under it was touched", path, r.path)
}

// xdevErr turns the EXDEV of a resolution that met a mount point into
// the mount point error for name; other errors pass.
func (r *Root) xdevErr(err error, name string) error {
	if err == unix.EXDEV {
		return r.mountErr(name)
	}
	return err
}
