package apply

import (
	"context"
	"os"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/errdefs"
)

// DefaultMaxDepth is how many directory levels below the target Apply,
// Verify and Rebuild accept by default (WithMaxDepth): deeper trees are
// refused with too_large. It is far beyond any real image (whose paths fit
// PATH_MAX, 4096 bytes) and keeps a walk's work per entry bounded.
const DefaultMaxDepth = 4096

// maxOpenDirs is how many directory descriptors a tree walk holds open at
// most, however deep the tree: a walk that held one per level ran out of
// descriptors (EMFILE) on a tree 30,000 levels deep.
const maxOpenDirs = 32

// walkFunc is called for each entry of a tree walk: path is relative to
// the root, st its status (not following a symbolic link), and base the
// entry's name in the directory dirfd, valid during the call.
type walkFunc func(path string, st *unix.Stat_t, dirfd int, base string) error

// rootFunc is called once, before any entry, with the target directory
// itself: a descriptor open for reading and its status.
type rootFunc func(fd int, st *unix.Stat_t) error

// walkTree visits the directory target (root, when not nil) and then
// everything below it, depth first, each directory's entries sorted by
// name, a directory before its entries: the order pathLess defines. It
// never follows a symbolic link: every step is relative to the descriptor
// of the directory walked. A directory deeper than maxDepth levels is
// too_large.
func walkTree(ctx context.Context, target string, maxDepth int, root rootFunc, fn walkFunc) error {
	fd, err := unix.Open(target, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return errdefs.Wrap(&os.PathError{Op: "open", Path: target, Err: err}, errdefs.ErrInvalidArgument, "target directory")
	}
	defer unix.Close(fd)
	w := &walker{ctx: ctx, maxDepth: maxDepth, root: root, fn: fn}
	return w.run(fd)
}

// walker is the state of walkTree. Each level of the directories being
// walked keeps its sorted names and, while fewer than maxOpenDirs are
// open, its descriptor; a level whose descriptor was closed is opened
// again from the nearest open ancestor, one name at a time without
// following links, and must be the same directory (device and inode)
// as before: a tree that changes under the walk fails it rather than
// leading it elsewhere. Memory is the names of the directories on the
// current path, linear in the entries.
type walker struct {
	ctx      context.Context
	maxDepth int
	root     rootFunc
	fn       walkFunc
	levels   []walkLevel
	open     int // descriptors open, the root's excluded
	peakOpen int // for the tests
}

type walkLevel struct {
	name     string // in the parent ("" for the root)
	dev, ino uint64
	fd       int // -1 while closed
	names    []string
	next     int
	restore  bool   // the owner's r-x was added: put mode back
	mode     uint32 // the mode to put back
}

func (w *walker) run(rootFD int) error {
	var st unix.Stat_t
	if err := unix.Fstat(rootFD, &st); err != nil {
		return walkErr(err, "")
	}
	if w.root != nil {
		if err := w.root(rootFD, &st); err != nil {
			return err
		}
	}
	names, err := readNames(rootFD)
	if err != nil {
		return walkErr(err, "")
	}
	w.levels = append(w.levels, walkLevel{dev: st.Dev, ino: st.Ino, fd: rootFD, names: names})
	defer func() {
		for len(w.levels) > 1 {
			w.pop()
		}
	}()
	for n := 0; ; n++ {
		if n%ctxCheckEvery == 0 {
			if err := w.ctx.Err(); err != nil {
				return errdefs.Wrap(err, errdefs.ErrCanceled, "walking the tree")
			}
		}
		top := &w.levels[len(w.levels)-1]
		if top.next == len(top.names) {
			if len(w.levels) == 1 {
				return nil
			}
			w.pop()
			continue
		}
		name := top.names[top.next]
		top.next++
		dfd, err := w.fd(len(w.levels) - 1)
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if err == unix.ENOENT {
				continue
			}
			return walkErr(err, w.path(name))
		}
		p := w.path(name)
		if len(w.levels) > w.maxDepth {
			return errdefs.New(errdefs.ErrTooLarge, "%q is deeper than the limit of %d levels", p, w.maxDepth)
		}
		if err := w.fn(p, &st, dfd, name); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		// fn may have used other descriptors; dfd is still this level's.
		cfd, mode, opened, err := openDirOwner(dfd, name, &st)
		if err != nil {
			return walkErr(err, p)
		}
		names, err := readNames(cfd)
		if err != nil {
			if opened {
				unix.Fchmod(cfd, mode)
			}
			unix.Close(cfd)
			return walkErr(err, p)
		}
		w.levels = append(w.levels, walkLevel{name: name, dev: st.Dev, ino: st.Ino, fd: cfd, names: names, restore: opened, mode: mode})
		w.opened()
	}
}

// readNames lists the directory open as fd, sorted.
func readNames(fd int) ([]string, error) {
	dup, err := unix.Dup(fd)
	if err != nil {
		return nil, err
	}
	d := os.NewFile(uintptr(dup), "")
	defer d.Close()
	if _, err := d.Seek(0, 0); err != nil {
		return nil, err
	}
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	return names, nil
}

// path is the path of name in the deepest level.
func (w *walker) path(name string) string {
	n := len(name)
	for _, l := range w.levels[1:] {
		n += len(l.name) + 1
	}
	var b strings.Builder
	b.Grow(n)
	for _, l := range w.levels[1:] {
		b.WriteString(l.name)
		b.WriteByte('/')
	}
	b.WriteString(name)
	return b.String()
}

// opened counts a descriptor just opened and closes the shallowest one
// beyond the limit.
func (w *walker) opened() {
	w.open++
	if w.open > maxOpenDirs {
		for i := 1; i < len(w.levels)-1; i++ {
			if w.levels[i].fd >= 0 {
				unix.Close(w.levels[i].fd)
				w.levels[i].fd = -1
				w.open--
				break
			}
		}
	}
	w.peakOpen = max(w.peakOpen, w.open)
}

// fd returns the descriptor of level i, opening it again when it was
// closed.
func (w *walker) fd(i int) (int, error) {
	if w.levels[i].fd >= 0 {
		return w.levels[i].fd, nil
	}
	j := i - 1
	for w.levels[j].fd < 0 {
		j--
	}
	cur, owned := w.levels[j].fd, false
	for k := j + 1; k <= i; k++ {
		l := &w.levels[k]
		fd, err := unix.Openat(cur, l.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if owned {
			unix.Close(cur)
		}
		if err != nil {
			return -1, walkErr(err, w.pathOf(k))
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil || st.Dev != l.dev || st.Ino != l.ino {
			unix.Close(fd)
			return -1, errdefs.New(errdefs.ErrInternal, "the tree changed while it was read: %q is another directory now", w.pathOf(k))
		}
		cur, owned = fd, true
	}
	w.levels[i].fd = cur
	w.opened()
	return cur, nil
}

// pathOf is the path of level k.
func (w *walker) pathOf(k int) string {
	var parts []string
	for _, l := range w.levels[1 : k+1] {
		parts = append(parts, l.name)
	}
	return strings.Join(parts, "/")
}

// pop leaves the deepest level, putting back a mode that was opened up.
func (w *walker) pop() {
	i := len(w.levels) - 1
	l := &w.levels[i]
	if l.restore {
		if fd, err := w.fd(i); err == nil {
			unix.Fchmod(fd, l.mode)
		}
	}
	if l.fd >= 0 {
		unix.Close(l.fd)
		w.open--
	}
	w.levels = w.levels[:i]
}
