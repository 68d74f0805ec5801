package apply

import (
	"errors"

	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/errdefs"
)

// displace is called before the applier unlinks or replaces name, whose
// status is st: when name holds a recorded payload (the index says which),
// that file is moved into the shadow store, shadow/<layer>/<position>, by
// rename, so that the layer that wrote it can still be rebuilt. Other
// hard links to the same inode are not affected, and need not be: a
// rebuild reads each entry's payload through the name that entry wrote.
// Without the shadow store the payload is given up and a marker
// <position>.dropped says so. moved reports whether name is gone; if not,
// it is left for the caller to remove.
func (a *applier) displace(name string, st *unix.Stat_t) (moved bool, err error) {
	if a.st == nil {
		return false, nil
	}
	ikey := a.canon(name)
	ref, ok := a.st.index[ikey]
	if !ok {
		return false, nil
	}
	delete(a.st.index, ikey)
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return false, nil // cannot be: the index holds regular files only
	}
	dirfd, key, err := a.st.shadowDirFD(ref.layer)
	if err != nil {
		return false, err
	}
	pos := posName(ref.pos)
	if !a.st.shadow {
		fd, err := unix.Openat(dirfd, pos+droppedExt, unix.O_CREAT|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0600)
		if err != nil {
			return false, errdefs.Wrap(err, errdefs.ErrInternal, "shadow store: marking %s/%s", key, pos)
		}
		unix.Close(fd)
		return false, nil
	}
	err = a.root.MoveOut(name, dirfd, pos)
	if err != nil && a.openUp(name, err) {
		err = a.root.MoveOut(name, dirfd, pos)
	}
	if errors.Is(err, unix.EXDEV) {
		// The state directory is on another file system: copy, and leave
		// the original for the caller to remove.
		if err := a.copyToShadow(name, dirfd, pos); err != nil {
			return false, fsError(err, "copying %q into the shadow store", name)
		}
		return false, nil
	}
	if err != nil {
		return false, fsError(err, "moving %q into the shadow store", name)
	}
	return true, nil
}

func (a *applier) copyToShadow(name string, dirfd int, pos string) error {
	f, err := openTreeFile(a.root, name)
	if err != nil {
		return err
	}
	defer f.Close()
	return copyInto(dirfd, pos, f)
}

// displaceTree displaces every recorded payload at or below name, which is
// about to be removed with everything below it.
func (a *applier) displaceTree(name string) error {
	if a.st == nil || len(a.st.index) == 0 {
		return nil
	}
	st, err := a.root.Lstat(name)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return nil
		}
		if !a.openUp(name, err) {
			return fsError(err, "%q", name)
		}
		if st, err = a.root.Lstat(name); err != nil {
			return fsError(err, "%q", name)
		}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		_, err := a.displace(name, &st)
		return err
	case unix.S_IFDIR:
	default:
		return nil
	}
	names, err := a.root.ReadDirNames(name)
	if err != nil && a.openUp(joinName(name, "x"), err) {
		names, err = a.root.ReadDirNames(name)
	}
	if err != nil {
		return fsError(err, "%q", name)
	}
	for _, n := range names {
		if err := a.displaceTree(joinName(name, n)); err != nil {
			return err
		}
	}
	return nil
}
