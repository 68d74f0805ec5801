package apply

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/fsroot"
)

// Whose state directory to trust.
//
// Verify and Rebuild believe what the state directory says: its manifest
// and tar-split metadata are the reference a tree is checked against. So
// a state directory someone else can write is refused, as ssh refuses an
// authorized_keys others can write: the directory must be owned by the
// caller or by root and not be writable by group or others, and so must
// everything read from it (the directories tarsplit/ and shadow/<layer>/,
// state.json, tree.json.zst, the tar-split files, the lock file), each
// checked on the descriptor that is then read, opened without following a
// symbolic link. A state directory reached through a symbolic link is
// accepted only when the link, too, is the caller's or root's: a link
// another user owns in a shared directory (/tmp is sticky, so only its
// owner can replace it) could be pointed elsewhere at any time.
//
// The attack this stops: in a shared parent such as /tmp, another local
// user makes the empty directory .rootfs.ocifetch, mode 0777, before root
// unpacks into /tmp/rootfs; root's unpack used it as it was, and that
// user later rewrote tree.json.zst so that verify said clean about a
// tampered tree. Apply makes the state directory itself, mode 0700.
//
// Shadow copies (shadow/<layer>/<position>) are payloads moved out of the
// tree: they keep the owner and mode the image gave them, so only their
// directory is checked; rebuild checks their content against its digest.

// trustedOwner tells whether uid may own what the state directory holds.
func trustedOwner(uid uint32) bool {
	return uid == 0 || int(uid) == os.Geteuid()
}

// checkTrusted refuses what path's status st says another user can
// change: an owner other than the caller or root, or group or others'
// write permission.
func checkTrusted(path string, st *unix.Stat_t) error {
	if !trustedOwner(st.Uid) {
		return errdefs.New(errdefs.ErrInvalidArgument,
			"%s belongs to uid %d, neither you (uid %d) nor root: another user could rewrite what verify and rebuild trust; remove it or choose another state directory",
			path, st.Uid, os.Geteuid())
	}
	if st.Mode&0o022 != 0 && st.Mode&unix.S_IFMT != unix.S_IFLNK {
		return errdefs.New(errdefs.ErrInvalidArgument,
			"%s is writable by group or others (mode %04o): another user could rewrite what verify and rebuild trust; make it private (chmod go-w %s) or remove it",
			path, st.Mode&0o7777, path)
	}
	return nil
}

// checkStateDir refuses the state directory s unless the caller can
// trust it (see above). A missing s is fs.ErrNotExist, unwrapped, for the
// caller to decide.
func checkStateDir(s string) error {
	var lst unix.Stat_t
	if err := unix.Lstat(s, &lst); err != nil {
		if err == unix.ENOENT {
			return fs.ErrNotExist
		}
		return errdefs.Wrap(&fs.PathError{Op: "lstat", Path: s, Err: err}, errdefs.ErrInvalidArgument, "state directory")
	}
	if lst.Mode&unix.S_IFMT == unix.S_IFLNK {
		if err := checkTrusted(s+" (a symbolic link)", &lst); err != nil {
			return err
		}
	}
	fd, err := openStateRoot(s)
	if err != nil {
		return err
	}
	unix.Close(fd)
	return nil
}

// openStateRoot opens the state directory s (the caller's symbolic links
// followed) as an O_PATH descriptor, checked.
func openStateRoot(s string) (int, error) {
	fd, err := unix.Open(s, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if err == unix.ENOENT {
			return -1, errdefs.Wrap(&fs.PathError{Op: "open", Path: s, Err: err}, errdefs.ErrNotFound, "no apply state in %s", s)
		}
		return -1, errdefs.Wrap(&fs.PathError{Op: "open", Path: s, Err: err}, errdefs.ErrInvalidArgument, "state directory")
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, errdefs.Wrap(err, errdefs.ErrInternal, "state directory %s", s)
	}
	if err := checkTrusted(s, &st); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// openStateDirAt opens the directory rel (slash-separated, "" for s
// itself) of the state directory s for reading, each directory on the way
// checked and none followed if it is a symbolic link. A missing one is
// fs.ErrNotExist (wrapped).
func openStateDirAt(s, rel string) (int, error) {
	fd, err := openStateRoot(s)
	if err != nil {
		return -1, err
	}
	p := s
	for _, c := range strings.Split(rel, "/") {
		if c == "" {
			continue
		}
		p = filepath.Join(p, c)
		next, err := unix.Openat(fd, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			return -1, stateOpenErr(p, err)
		}
		fd = next
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return -1, errdefs.Wrap(err, errdefs.ErrInternal, "%s", p)
		}
		if err := checkTrusted(p, &st); err != nil {
			unix.Close(fd)
			return -1, err
		}
	}
	// A descriptor that can list the directory: "." of the checked one.
	dfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	unix.Close(fd)
	if err != nil {
		return -1, stateOpenErr(p, err)
	}
	return dfd, nil
}

// openStateFile opens the regular file rel of the state directory s for
// reading: the directories on the way and the file itself checked, none
// followed if it is a symbolic link, nothing but a regular file opened.
// A missing one is fs.ErrNotExist (wrapped).
func openStateFile(s, rel string) (*os.File, error) {
	dir, base := filepath.Split(rel)
	dfd, err := openStateDirAt(s, dir)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dfd)
	p := filepath.Join(s, rel)
	f, st, err := fsroot.OpenRegularAt(dfd, base)
	if err != nil {
		return nil, stateOpenErr(p, err)
	}
	if err := checkTrusted(p, &st); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// stateOpenErr classifies a failure to open p in the state directory.
func stateOpenErr(p string, err error) error {
	if errors.Is(err, unix.ENOENT) || errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w", p, fs.ErrNotExist)
	}
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, fsroot.ErrNotRegular) {
		return errdefs.New(errdefs.ErrInvalidArgument, "%s is not what this program keeps there (a symbolic link or another type): the state directory was tampered with; remove it and unpack again", p)
	}
	return errdefs.Wrap(err, errdefs.ErrInternal, "%s", p)
}
