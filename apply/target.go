package apply

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/atomicfile"
	"github.com/ocifetch/ocifetch/internal/fsroot"
)

// What an Apply with a state directory does to its target, and what a
// failed or interrupted one leaves (the failed-unpack rule):
//
//   - Nothing is created before Apply is called (ocifetch.Unpack calls it
//     once the image resolved), and an Apply that fails before it applied
//     a byte leaves the target as it was: not created if it did not exist.
//   - One Apply per target: an exclusive flock(2) on the target directory
//     itself, whatever name reaches it (a symbolic link, another state
//     directory), taken before anything else, and one on the state
//     directory's lock file; a second Apply fails at once with kind busy
//     and touches nothing. Verify and Rebuild take both locks shared.
//   - A failure the process catches after the first byte (a bad digest, a
//     limit, a cancellation by a signal) empties the target's contents and
//     removes the state before Apply returns: the target is as it was.
//   - A crash (SIGKILL, power) leaves state.json saying "applying"; the next
//     Apply empties the target's contents, removes the state, and starts
//     over. It never removes or replaces the target directory itself, nor a
//     symbolic link given as the target (it is followed).
//   - The state records the target's identity (TargetID); a state whose
//     identity does not match the directory never leads to deleting
//     anything: the error names the state directory to remove.

// lease is an Apply's hold on its target and state directory.
type lease struct {
	target, stateDir string // absolute
	lock             *stateLock
	targetLock       *targetLock
	createdState     bool     // stateDir did not exist
	createdTarget    []string // directories made for the target, outermost first
	createdLock      bool
	id               TargetID
}

// stateLock is a flock(2) on the lock file of a state directory.
type stateLock struct {
	f    *os.File
	path string
}

func (l *stateLock) release() {
	if l != nil && l.f != nil {
		unlockClose(l.f)
		l.f = nil
	}
}

// targetLock is a flock(2) on the target directory itself: the lock of
// the state directory alone let two unpacks of one directory run at once
// when they reached it by two names (DIR and a symbolic link to it, or
// DIR with two state directories); the one that failed emptied the tree
// under the other, which then recorded it complete with files missing.
// The kernel keeps flock locks per inode, so every name of the directory
// meets the same lock. Nothing is written inside the target for it.
type targetLock struct{ f *os.File }

func (l *targetLock) release() {
	if l != nil && l.f != nil {
		unlockClose(l.f)
		l.f = nil
	}
}

// unlockClose drops the flock of f, then closes it. Closing alone
// releases nothing while a copy of the descriptor lives: the one a child
// process holds between fork and exec, which any goroutine of the
// program may be starting (O_CLOEXEC closes it only at exec). The next
// lock, even a shared one by this process, found the target busy.
func unlockClose(f *os.File) {
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	f.Close()
}

// id returns the identity of the locked directory.
func (l *targetLock) id() (TargetID, error) { return targetID(int(l.f.Fd())) }

// lockTarget takes the lock of the directory t (the caller's symbolic
// links followed), exclusive or shared, without waiting: held by another
// process, it is busy.
func lockTarget(t string, exclusive bool) (*targetLock, error) {
	fd, err := unix.Open(t, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: t, Err: err}
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	if err := unix.Flock(fd, how|unix.LOCK_NB); err != nil {
		unix.Close(fd)
		if err == unix.EWOULDBLOCK {
			return nil, errdefs.New(errdefs.ErrBusy, "%s is in use by another process (an unpack, verify or rebuild, maybe under another name or state directory): wait for it to finish", t)
		}
		return nil, errdefs.Wrap(&fs.PathError{Op: "flock", Path: t, Err: err}, errdefs.ErrInternal, "locking the target")
	}
	return &targetLock{f: os.NewFile(uintptr(fd), t)}, nil
}

// lockState takes the lock of the state directory dir, exclusive or
// shared, without waiting: held by another process, it is busy. create
// makes the lock file when missing (the exclusive case); created reports
// that it did. A lock file removed by its holder between open and flock
// is noticed (its inode is no longer at the path) and the lock is taken
// again on the new one. dir and the lock file must be trusted
// (checkTrusted): an error with a kind says they are not.
func lockState(dir string, exclusive, create bool) (l *stateLock, created bool, err error) {
	p := filepath.Join(dir, lockFile)
	dfd, err := openStateRoot(dir)
	if err != nil {
		return nil, false, err
	}
	defer unix.Close(dfd)
	for attempt := 0; ; attempt++ {
		flags := unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC
		if exclusive {
			flags = unix.O_RDWR | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC
		}
		fd, err := unix.Openat(dfd, lockFile, flags, 0)
		made := false
		if err == unix.ENOENT && create {
			fd, err = unix.Openat(dfd, lockFile, flags|unix.O_CREAT|unix.O_EXCL, 0o644)
			made = err == nil
			if err == unix.EEXIST && attempt < 10 {
				continue
			}
		}
		if err != nil {
			if err == unix.ELOOP {
				return nil, false, stateOpenErr(p, err)
			}
			return nil, false, err
		}
		var fst unix.Stat_t
		if err := unix.Fstat(fd, &fst); err != nil || fst.Mode&unix.S_IFMT != unix.S_IFREG {
			unix.Close(fd)
			return nil, false, stateOpenErr(p, fsroot.ErrNotRegular)
		}
		if err := checkTrusted(p, &fst); err != nil {
			unix.Close(fd)
			return nil, false, err
		}
		how := unix.LOCK_SH
		if exclusive {
			how = unix.LOCK_EX
		}
		if err := unix.Flock(fd, how|unix.LOCK_NB); err != nil {
			holder := lockHolder(fd)
			unix.Close(fd)
			if err == unix.EWOULDBLOCK {
				return nil, false, errdefs.New(errdefs.ErrBusy, "%s is in use by another process%s: wait for it to finish", dir, holder)
			}
			return nil, false, err
		}
		var a, b unix.Stat_t
		if unix.Fstat(fd, &a) == nil && unix.Fstatat(dfd, lockFile, &b, unix.AT_SYMLINK_NOFOLLOW) == nil && a.Dev == b.Dev && a.Ino == b.Ino {
			f := os.NewFile(uintptr(fd), p)
			if exclusive {
				// Who holds it, for the message of the next one.
				f.Truncate(0)
				f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
			}
			return &stateLock{f: f, path: p}, made || created, nil
		}
		unix.Flock(fd, unix.LOCK_UN) // see unlockClose
		unix.Close(fd)
		created = created || made
		if attempt == 10 {
			return nil, false, errdefs.New(errdefs.ErrBusy, "%s keeps changing: another process is using it", dir)
		}
	}
}

// lockHolder reads the pid the holder of the lock file wrote.
func lockHolder(fd int) string {
	b := make([]byte, 16)
	n, _ := unix.Pread(fd, b, 0)
	if pid, err := strconv.Atoi(strings.TrimSpace(string(b[:n]))); err == nil && pid > 0 {
		return fmt.Sprintf(" (pid %d)", pid)
	}
	return ""
}

// openComplete takes the shared locks of stateDir and of the directory
// rootfs, for reading a complete state that describes rootfs: what Verify
// and Rebuild need. The state directory may be out of the caller's write
// reach: without a lock file (which every Apply of this version makes)
// the state directory is not locked, the target still is.
func openComplete(stateDir, rootfs string) (*State, func(), error) {
	l, _, err := lockState(stateDir, false, false)
	if err != nil && hasKind(err) {
		return nil, nil, err
	}
	tl, err := lockTarget(rootfs, false)
	if err != nil {
		l.release()
		if hasKind(err) {
			return nil, nil, err
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, errdefs.Wrap(err, errdefs.ErrNotFound, "%s", rootfs)
		}
		return nil, nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "%s", rootfs)
	}
	unlock := func() { tl.release(); l.release() }
	st, err := Status(stateDir)
	if err != nil {
		unlock()
		return nil, nil, err
	}
	if st.Status != StatusComplete {
		unlock()
		return nil, nil, errdefs.New(errdefs.ErrInvalidArgument, "the apply into %s did not complete (status %q): unpack it again", rootfs, st.Status)
	}
	id, err := tl.id()
	if err != nil {
		unlock()
		return nil, nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "%s", rootfs)
	}
	if st.Target == nil || !sameTarget(*st.Target, id) {
		unlock()
		return nil, nil, mismatchError(stateDir, rootfs)
	}
	return st, unlock, nil
}

// checkIdentity fails unless st describes the directory rootfs.
func checkIdentity(st *State, stateDir, rootfs string) error {
	id, err := targetIDOf(rootfs)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errdefs.Wrap(err, errdefs.ErrNotFound, "%s", rootfs)
		}
		return errdefs.Wrap(err, errdefs.ErrInvalidArgument, "%s", rootfs)
	}
	if st.Target == nil || !sameTarget(*st.Target, id) {
		return mismatchError(stateDir, rootfs)
	}
	return nil
}

func sameTarget(a, b TargetID) bool {
	return a.Dev == b.Dev && a.Ino == b.Ino && (a.Btime == 0 || b.Btime == 0 || a.Btime == b.Btime)
}

func mismatchError(stateDir, target string) error {
	return errdefs.New(errdefs.ErrInvalidArgument,
		"the state directory %s describes another directory than %s (it was removed and made again, copied, or the state does not belong to it); nothing was changed: remove %s yourself if it is stale",
		stateDir, target, stateDir)
}

// CheckTarget tells, without creating, changing or locking anything,
// whether an Apply into target with the state directory stateDir would
// start: what ocifetch.Unpack asks before it resolves, so that a busy or
// refused target fails at once. It returns the error Apply would return
// (busy, invalid_argument); nil means Apply may go ahead, as far as can be
// told before it takes the lock.
func CheckTarget(target, stateDir string) error {
	t, s, err := absPaths(target, stateDir)
	if err != nil {
		return err
	}
	if err := checkOutside(t, s); err != nil {
		return err
	}
	if tl, err := lockTarget(t, true); err == nil {
		tl.release() // a lock just taken
	} else if errdefs.Is(err, errdefs.ErrBusy) {
		return err
	}
	info, err := os.Lstat(s)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return checkEmptyTarget(t)
	case err != nil:
		return errdefs.Wrap(err, errdefs.ErrInvalidArgument, "state directory %s", s)
	case info.Mode()&fs.ModeSymlink == 0 && !info.IsDir():
		return errdefs.New(errdefs.ErrInvalidArgument, "state directory %s is not a directory", s)
	}
	if err := checkStateDir(s); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errdefs.New(errdefs.ErrInvalidArgument, "state directory %s is a dangling symbolic link", s)
		}
		return err
	}
	if fd, err := unix.Open(filepath.Join(s, lockFile), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0); err == nil {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		holder := lockHolder(fd)
		unix.Flock(fd, unix.LOCK_UN) // a lock just taken (see unlockClose)
		unix.Close(fd)
		if err == unix.EWOULDBLOCK {
			return errdefs.New(errdefs.ErrBusy, "%s is in use by another process%s: wait for it to finish", s, holder)
		}
	}
	_, err = decide(t, s)
	return err
}

// action is what an Apply does with what it finds.
type action int

const (
	actFresh action = iota // nothing of ours: the target must be missing or empty
	actRedo                // ours, incomplete (or complete over an emptied target): empty it and start over
)

// decide reads the state directory s (which exists) and the target t and
// says what Apply does, or why it refuses. Nothing is changed. A state
// directory the caller cannot trust (checkStateDir) is refused.
func decide(t, s string) (action, error) {
	if err := checkStateDir(s); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, errdefs.New(errdefs.ErrInvalidArgument, "state directory %s is a dangling symbolic link", s)
		}
		return 0, err
	}
	ents, err := os.ReadDir(s)
	if err != nil {
		return 0, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "state directory %s", s)
	}
	hasState := false
	for _, e := range ents {
		if e.Name() == stateFile {
			hasState = true
		}
	}
	if !hasState {
		for _, e := range ents {
			if e.Name() != lockFile && !strings.HasPrefix(e.Name(), atomicfile.TempPrefix) {
				return 0, errdefs.New(errdefs.ErrInvalidArgument, "state directory %s is not empty and holds no apply state; choose another one", s)
			}
		}
		return actFresh, checkEmptyTarget(t)
	}
	st, err := readState(s)
	if err != nil {
		return 0, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "%s cannot be read; nothing was changed: remove it (and %s) yourself to start over", s, t)
	}
	if st.Version != stateVersion {
		if st.Version < stateVersion && st.Status == StatusComplete {
			return 0, errdefs.Wrap(ErrStateVersion, errdefs.ErrInvalidArgument,
				"%s holds a complete unpack recorded by an older version of ocifetch (state format %d); to unpack again, remove %s and %s first", t, st.Version, t, s)
		}
		return 0, errdefs.Wrap(ErrStateVersion, errdefs.ErrInvalidArgument,
			"%s was recorded by another version of ocifetch (state format %d); nothing was changed: remove %s and %s yourself to start over", s, st.Version, s, t)
	}
	id, err := targetIDOf(t)
	if err != nil || st.Target == nil || !sameTarget(*st.Target, id) {
		return 0, mismatchError(s, t)
	}
	if st.Status == StatusComplete {
		empty, err := isEmptyDir(t)
		if err != nil {
			return 0, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "target %s", t)
		}
		if !empty {
			what := "an image"
			if st.Reference != "" {
				what = st.Reference
			}
			return 0, errdefs.New(errdefs.ErrInvalidArgument, "%s already holds a complete unpack of %s; remove it and %s first", t, what, s)
		}
	}
	return actRedo, nil
}

func absPaths(target, stateDir string) (string, string, error) {
	t, err := filepath.Abs(target)
	if err != nil {
		return "", "", errdefs.Wrap(err, errdefs.ErrInvalidArgument, "target")
	}
	s, err := filepath.Abs(stateDir)
	if err != nil {
		return "", "", errdefs.Wrap(err, errdefs.ErrInvalidArgument, "state directory")
	}
	return t, s, nil
}

// checkOutside refuses a state directory inside the target or containing
// it: the tree must never show the state, and emptying one must never
// touch the other. Symbolic links in both paths are resolved first.
func checkOutside(target, stateDir string) error {
	t := resolveExisting(target)
	s := resolveExisting(stateDir)
	within := func(a, b string) bool {
		return a == b || strings.HasPrefix(a, b+string(filepath.Separator)) || b == "/"
	}
	if within(s, t) || within(t, s) {
		return errdefs.New(errdefs.ErrInvalidArgument, "state directory %s must lie outside the target %s", stateDir, target)
	}
	return nil
}

// resolveExisting resolves the symbolic links of the longest part of the
// absolute path p that exists.
func resolveExisting(p string) string {
	rest := ""
	for {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(r, rest)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return filepath.Join(p, rest)
		}
		rest = filepath.Join(filepath.Base(p), rest)
		p = parent
	}
}

// checkEmptyTarget refuses a target that exists and is not an empty
// directory: layers on top of an unknown tree would not make the image.
func checkEmptyTarget(t string) error {
	info, err := os.Stat(t)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return errdefs.Wrap(err, errdefs.ErrInvalidArgument, "target %s", t)
	}
	if !info.IsDir() {
		return errdefs.New(errdefs.ErrInvalidArgument, "target %s is not a directory", t)
	}
	empty, err := isEmptyDir(t)
	if err != nil {
		return errdefs.Wrap(err, errdefs.ErrInvalidArgument, "target %s", t)
	}
	if !empty {
		return errdefs.New(errdefs.ErrInvalidArgument, "target %s is not empty", t)
	}
	return nil
}

// isEmptyDir tells whether dir is missing or holds nothing, as the
// applier asks it of its root (fsroot.Root.Empty).
func isEmptyDir(dir string) (bool, error) {
	root, err := fsroot.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	defer root.Close()
	return root.Empty("")
}

// mkdirAllTracked makes dir and its missing parents and returns those it
// made, outermost first.
func mkdirAllTracked(dir string) ([]string, error) {
	var missing []string
	for p := dir; ; p = filepath.Dir(p) {
		if _, err := os.Stat(p); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		missing = append(missing, p)
		if filepath.Dir(p) == p {
			break
		}
	}
	var made []string
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			removeMade(made)
			return nil, err
		}
		made = append(made, missing[i])
	}
	return made, nil
}

// removeMade removes, innermost first, the empty directories made.
func removeMade(made []string) {
	for i := len(made) - 1; i >= 0; i-- {
		os.Remove(made[i])
	}
}

// acquire prepares target and stateDir for an Apply under the rules above
// and returns its lease, with state.json written (status applying, the
// target's identity) and the lock held.
func acquire(target, stateDir string, st State) (_ *lease, err error) {
	t, s, err := absPaths(target, stateDir)
	if err != nil {
		return nil, err
	}
	if err := checkOutside(t, s); err != nil {
		return nil, err
	}
	l := &lease{target: t, stateDir: s}
	defer func() {
		if err != nil {
			l.undo()
		}
	}()
	// The target's own lock first: an unpack in progress, whatever name
	// or state directory it uses, makes this one busy before anything is
	// looked at or made.
	if l.targetLock, err = lockTarget(t, true); err != nil {
		if hasKind(err) {
			return nil, err
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "target %s", t)
		}
		l.targetLock = nil // made and locked below
	}
	// Refuse what can be refused before creating anything.
	_, serr := os.Lstat(s)
	if serr != nil && !errors.Is(serr, fs.ErrNotExist) {
		return nil, errdefs.Wrap(serr, errdefs.ErrInvalidArgument, "state directory %s", s)
	}
	stateMissing := serr != nil
	if stateMissing {
		if err := checkEmptyTarget(t); err != nil {
			return nil, err
		}
	} else if _, err := decide(t, s); err != nil {
		return nil, err
	}
	if l.targetLock == nil {
		made, err := mkdirAllTracked(t)
		if err != nil {
			return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "creating the target")
		}
		l.createdTarget = made
		if l.targetLock, err = lockTarget(t, true); err != nil {
			if hasKind(err) {
				return nil, err
			}
			return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "target %s", t)
		}
	}
	if stateMissing {
		made, err := mkdirAllTracked(filepath.Dir(s))
		if err != nil {
			return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "creating the state directory")
		}
		l.createdTarget = append(l.createdTarget, made...) // removed likewise
		// 0700: the state is the reference verify and rebuild trust.
		if err := os.Mkdir(s, 0o700); err != nil {
			return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "creating the state directory")
		}
		l.createdState = true
	}
	l.lock, l.createdLock, err = lockState(s, true, true)
	if err != nil {
		if hasKind(err) {
			return nil, err
		}
		return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "locking the state directory %s", s)
	}
	// Under the locks, look again: another process may have been at work.
	act, err := decide(t, s)
	if err != nil {
		return nil, err
	}
	if act == actRedo {
		if err := emptyDir(t); err != nil {
			return nil, err
		}
		if err := clearState(s); err != nil {
			return nil, err
		}
	}
	if l.id, err = l.targetLock.id(); err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "target %s", t)
	}
	// state.json first: from here on, a crash leaves "applying" for the
	// next Apply to clean up.
	st.Target = &l.id
	if err := writeState(s, &st); err != nil {
		return nil, err
	}
	for _, d := range []string{tarsplitDir, shadowDir} {
		if err := os.Mkdir(filepath.Join(s, d), 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, errdefs.Wrap(err, errdefs.ErrInternal, "state directory")
		}
	}
	return l, nil
}

// emptyDir removes everything in the directory t, never following a
// symbolic link inside it; t itself stays.
func emptyDir(t string) error {
	root, err := fsroot.Open(t)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return errdefs.Wrap(err, errdefs.ErrInternal, "emptying %s", t)
	}
	defer root.Close()
	names, err := root.ReadDirNames("")
	if err != nil {
		return errdefs.Wrap(err, errdefs.ErrInternal, "emptying %s", t)
	}
	for _, n := range names {
		// RemoveAll stops at a mount point (fsroot.ErrMountPoint, kind
		// invalid_argument): what is mounted there is not the target's.
		if err := root.RemoveAll(n); err != nil {
			kind := errdefs.ErrInternal
			if hasKind(err) {
				kind = errdefs.KindOf(err)
			}
			return errdefs.Wrap(err, kind, "emptying %s", t)
		}
	}
	return nil
}

// clearState removes the state of s, state.json last, keeping the lock
// file: a crash midway leaves a state that still says what it was.
func clearState(s string) error {
	ents, err := os.ReadDir(s)
	if err != nil {
		return errdefs.Wrap(err, errdefs.ErrInternal, "clearing the state %s", s)
	}
	for _, e := range ents {
		if e.Name() == lockFile || e.Name() == stateFile {
			continue
		}
		if err := os.RemoveAll(filepath.Join(s, e.Name())); err != nil {
			return errdefs.Wrap(err, errdefs.ErrInternal, "clearing the state %s", s)
		}
	}
	if err := os.Remove(filepath.Join(s, stateFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return errdefs.Wrap(err, errdefs.ErrInternal, "clearing the state %s", s)
	}
	return nil
}

// undo takes back what acquire did before it failed; no byte was applied.
func (l *lease) undo() {
	defer l.targetLock.release()
	if l.lock != nil {
		if l.createdLock {
			os.Remove(l.lock.path)
		}
		l.lock.release()
	}
	if l.createdState {
		os.Remove(l.stateDir)
	}
	removeMade(l.createdTarget)
}

// fail applies the failed-unpack rule after a failure the process caught:
// the target's contents go, the state goes, and what Apply created goes.
// It returns the first error of the cleanup (which then left the state
// saying "applying", for the next Apply to clean up).
func (l *lease) fail() error {
	defer l.targetLock.release()
	defer l.lock.release()
	if err := emptyDir(l.target); err != nil {
		return err
	}
	if err := clearState(l.stateDir); err != nil {
		return err
	}
	os.Remove(l.lock.path)
	if l.createdState {
		os.Remove(l.stateDir)
	}
	removeMade(l.createdTarget)
	return nil
}

// done ends a successful Apply: the locks are released, the state stays.
func (l *lease) done() {
	l.lock.release()
	l.targetLock.release()
}

// stateTemplate is the State an Apply of layers with o starts with.
func stateTemplate(layers []Layer, o *options) State {
	st := State{
		Version: stateVersion, Status: StatusApplying, Reference: o.imageRef, Manifest: o.manifest,
		Ownership: o.ownership.String(), Devices: o.devices.String(), UID: os.Geteuid(), GID: os.Getegid(),
		Shadow: !o.noShadow, FileDigest: digestName, MaxDepth: o.maxDepth, Started: time.Now().UTC(),
	}
	for _, l := range layers {
		st.Layers = append(st.Layers, StateLayer{DiffID: l.DiffID, Digest: l.Digest, MediaType: l.MediaType, TarSplit: tarsplitName(l.DiffID), Size: l.Size})
	}
	return st
}

// CheckComplete returns the state recorded in stateDir when it is this
// version's, complete, and describes the directory rootfs: the tree is
// what an Apply left. Otherwise it says why not (not_found without a
// state, busy while an Apply holds it, invalid_argument otherwise).
func CheckComplete(stateDir, rootfs string) (*State, error) {
	st, unlock, err := openComplete(stateDir, rootfs)
	if err != nil {
		return nil, err
	}
	unlock()
	return st, nil
}
