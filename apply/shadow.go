package apply

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// displace is called before the applier unlinks or replaces name, whose
// status is st: the recorder may move it aside (a payload it recorded
// goes into the shadow store). moved reports whether name is gone; if
// not, it is left for the caller to remove.
func (a *applier) displace(name string, st *unix.Stat_t) (moved bool, err error) {
	if st.Mode&unix.S_IFMT != unix.S_IFREG || !a.rec.holdsPayloads() {
		return false, nil
	}
	return a.rec.displace(&treeFile{
		canon: a.canon(name),
		st:    st,
		moveOut: func(dirfd int, newname string) error {
			err := a.root.MoveOut(name, dirfd, newname)
			if err != nil && a.openUp(name, err) {
				err = a.root.MoveOut(name, dirfd, newname)
			}
			return err
		},
		open: func() (*os.File, error) { return openTreeFile(a.root, name) },
	})
}

// displaceTree displaces every recorded payload at or below name, which is
// about to be removed with everything below it.
func (a *applier) displaceTree(name string) error {
	if !a.rec.holdsPayloads() {
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
