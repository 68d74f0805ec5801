// Package fsroot confines filesystem operations to one directory tree.
//
// A Root holds an O_PATH file descriptor of a directory and performs every
// operation relative to it. Names are slash-separated and relative to the
// root; a leading "/" is ignored and "." and ".." are cleaned lexically
// first, so ".." can never climb above the root. The directories leading to
// a name's final component are then resolved with the root as "/":
// symbolic links among them are followed, but an absolute link target, or a
// ".." reaching the top, lands at the root, never above it (the semantics of
// openat2(2) RESOLVE_IN_ROOT). The final component is never followed: every
// operation uses the *at form of its system call relative to the resolved
// parent directory, with AT_SYMLINK_NOFOLLOW, O_NOFOLLOW or O_EXCL, so a
// symbolic link planted at the final name is acted on itself (removed,
// replaced, relinked) and never written through.
//
// Resolution uses openat2(2) with
// RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS|RESOLVE_NO_XDEV where the kernel
// offers it. Elsewhere (Linux before 5.6, or a seccomp filter that
// answers ENOSYS or EPERM) it falls back to a walk, one component at a time,
// with openat(O_PATH|O_NOFOLLOW|O_DIRECTORY) from the descriptor of the
// previous component; links are read with readlinkat and expanded lexically
// inside the root, at most 255 of them per resolution (ELOOP beyond). A
// checked path is never looked up again by its string: everything that
// follows goes through the descriptor the walk produced. WithFallback
// selects the walk explicitly, which is how the tests exercise both.
//
// The root itself can be inspected and its metadata changed, but it can
// never be removed, renamed or replaced; such requests fail with an error of
// kind errdefs.ErrPathEscape. Nothing crosses a mount point below the root
// (see ErrMountPoint).
//
// A Root is not safe for concurrent use: it caches the descriptor of the
// last parent directory it resolved. Open one Root per goroutine.
package fsroot

import (
	"errors"
	"io/fs"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/errdefs"
)

// maxSymlinks bounds how many symbolic links one resolution by the fallback
// walk may expand before it fails with ELOOP. openat2 has its own (40).
const maxSymlinks = 255

// Option configures Open.
type Option func(*config)

type config struct {
	fallback bool
	noProc   bool
}

// WithFallback makes the Root behave as on a kernel without openat2(2),
// fchmodat2(2) and the *xattrat(2) calls: names are resolved by the
// component-by-component walk, modes of non-directories are changed and
// xattrs set through /proc/self/fd. The result is the same; only the
// system calls differ.
func WithFallback() Option { return func(c *config) { c.fallback = true } }

// WithoutProc makes the Root behave as where /proc is not mounted (a
// container or chroot without it): canonical names come from the walk,
// extended attributes are set without /proc/self/fd. The results are the
// same; the tests use it to check that.
func WithoutProc() Option { return func(c *config) { c.noProc = true } }

// Root is a directory within which all operations are confined.
type Root struct {
	fd   int      // O_PATH|O_DIRECTORY descriptor of the root
	path string   // for messages only
	mnt  mountKey // the root's mount: nothing on another one is touched

	openat2   bool // resolve with openat2(RESOLVE_IN_ROOT)
	fchmodat2 bool // chmod with fchmodat2(AT_SYMLINK_NOFOLLOW)

	// A small cache of the parent directories last resolved, most recent
	// first: applying a layer creates runs of entries in a directory and
	// comes back to a directory after each of its subdirectories. A
	// descriptor stays valid for as long as nothing that could change how
	// its directory resolves has happened: any Remove, RemoveAll, Rename or
	// MoveOut drops them all. Creating an entry never does, because it only
	// succeeds where no entry existed, so no cached path can run through it.
	cache   []cachedDir
	procBuf []byte // for readlink of /proc/self/fd

	// rootAbs is the root's own path as /proc/self/fd shows it, once
	// Canonical needed it (rootAbsSet); "" when that is not available.
	rootAbs    string
	rootAbsSet bool

	// noProc is set when /proc/self/fd cannot be used (WithoutProc, or
	// found missing); noSetxattrat when the kernel lacks setxattrat(2).
	noProc       bool
	noSetxattrat bool
}

// Open opens the directory dir as a Root. dir itself is resolved normally
// (the caller chose it); everything below it is confined.
func Open(dir string, opts ...Option) (*Root, error) {
	var c config
	for _, o := range opts {
		o(&c)
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	r := &Root{fd: fd, path: dir, openat2: !c.fallback, fchmodat2: !c.fallback, noSetxattrat: c.fallback, noProc: c.noProc}
	if r.mnt, err = mountOf(fd, ""); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "statx", Path: dir, Err: err}
	}
	if r.openat2 && !openat2Works(fd) {
		r.openat2 = false
	}
	return r, nil
}

// openat2Works probes whether openat2 with the flags this package needs is
// usable: it is missing before Linux 5.6 (ENOSYS), and seccomp profiles of
// container runtimes have answered EPERM or ENOSYS for it.
func openat2Works(dirfd int) bool {
	fd, err := unix.Openat2(dirfd, ".", &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: resolveFlags,
	})
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

// Close releases the root's descriptors.
func (r *Root) Close() error {
	r.dropCache()
	if r.fd < 0 {
		return nil
	}
	err := unix.Close(r.fd)
	r.fd = -1
	return err
}

// Path returns the path the Root was opened with.
func (r *Root) Path() string { return r.path }

// UsesOpenat2 reports whether names are resolved with openat2(2) rather than
// the fallback walk.
func (r *Root) UsesOpenat2() bool { return r.openat2 }

// ErrRoot is the cause of every refusal to remove, rename or replace the
// root itself (umoci CVE-2021-29136: an entry that turned the root into a
// symlink redirected every later entry).
var ErrRoot = errors.New("operation would remove or replace the root")

func rootErr(op, name string) error {
	return errdefs.Wrap(ErrRoot, errdefs.ErrPathEscape, "%s %q", op, name)
}

// split cleans name and returns the directory holding its final component
// ("" for the root) and that component ("" when name is the root itself).
// The result never contains "." or ".." components.
func split(name string) (dir, base string) {
	c := clean(name)
	if c == "" {
		return "", ""
	}
	i := strings.LastIndexByte(c, '/')
	if i < 0 {
		return "", c
	}
	return c[:i], c[i+1:]
}

// clean returns name without leading, trailing or repeated slashes and
// with "." and ".." resolved lexically, ".." stopping at the root. The root
// is "". It allocates only when name is not already clean.
func clean(name string) string {
	if IsClean(name) {
		return name
	}
	var out []string
	for _, c := range strings.Split(name, "/") {
		switch c {
		case "", ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, c)
		}
	}
	return strings.Join(out, "/")
}

// IsClean reports whether name is already in the form clean returns: no
// leading or trailing slash, no empty, "." or ".." component. The root is
// "".
func IsClean(name string) bool {
	if name == "" {
		return true
	}
	if name[0] == '/' || name[len(name)-1] == '/' {
		return false
	}
	start := 0
	for i := 0; i <= len(name); i++ {
		if i == len(name) || name[i] == '/' {
			switch name[start:i] {
			case "", ".", "..":
				return false
			}
			start = i + 1
		}
	}
	return true
}

// cachedDir is a directory descriptor of the cache, and its canonical
// name (canonOK: known) once Canonical asked for it (canonSet).
type cachedDir struct {
	dir               string
	fd                int
	canon             string
	canonOK, canonSet bool
}

// dirCacheSize bounds the descriptors the cache holds open: enough for a
// tar's walk down and back up a deep tree.
const dirCacheSize = 16

// parent returns a descriptor of the directory dir (a cleaned name),
// resolved inside the root. The descriptor belongs to the Root: the caller
// must not close it and must not use it after the next operation. A
// directory resolved this way is cache[0] afterwards.
func (r *Root) parent(dir string) (int, error) {
	if dir == "" {
		return r.fd, nil
	}
	for i := range r.cache {
		if r.cache[i].dir == dir {
			e := r.cache[i]
			copy(r.cache[1:i+1], r.cache[:i])
			r.cache[0] = e
			return e.fd, nil
		}
	}
	fd, err := r.openDir(dir)
	if err != nil {
		return -1, err
	}
	if len(r.cache) == dirCacheSize {
		unix.Close(r.cache[dirCacheSize-1].fd)
		r.cache = r.cache[:dirCacheSize-1]
	}
	r.cache = append(r.cache, cachedDir{})
	copy(r.cache[1:], r.cache)
	r.cache[0] = cachedDir{dir: dir, fd: fd}
	return fd, nil
}

// parentUncached is parent for a second directory in the same operation
// (Link, Rename): it leaves the cache as it is, so that the descriptor
// parent returned stays open; owned tells whether the caller must close fd.
func (r *Root) parentUncached(dir string) (fd int, owned bool, err error) {
	if dir == "" {
		return r.fd, false, nil
	}
	for i := range r.cache {
		if r.cache[i].dir == dir {
			return r.cache[i].fd, false, nil
		}
	}
	fd, err = r.openDir(dir)
	return fd, err == nil, err
}

func (r *Root) dropCache() {
	for _, e := range r.cache {
		unix.Close(e.fd)
	}
	r.cache = r.cache[:0]
}

// Canonical returns the name, relative to the root and clean, that the
// entry name stands for once the symbolic links among its parent
// directories are resolved (confined, as every operation resolves them);
// the final component is not followed. a/x with a -> b gives b/x. ok is
// false when that cannot be told: a parent is missing or not a directory.
// It costs a readlink of /proc/self/fd per parent directory resolved, which
// the parent cache shares with the operations on the same directory;
// without /proc, a walk of the directory's components that records the
// names it reaches (the same answer: whiteouts and the shadow index must
// not depend on whether /proc is mounted).
func (r *Root) Canonical(name string) (canon string, ok bool) {
	name = clean(name)
	if name == "" {
		return "", true
	}
	dir, base := split(name)
	cdir, ok := r.CanonicalDir(dir)
	if !ok {
		return "", false
	}
	if cdir == "" {
		return base, true
	}
	return cdir + "/" + base, true
}

// CanonicalDir is Canonical for a name used as a directory: every
// component is followed, the last one too.
func (r *Root) CanonicalDir(dir string) (canon string, ok bool) {
	dir = clean(dir)
	if dir == "" {
		return "", true
	}
	fd, err := r.parent(dir)
	if err != nil {
		return "", false
	}
	e := &r.cache[0] // parent put dir there
	if !e.canonSet {
		e.canon, e.canonOK = r.relative(fd)
		if !e.canonOK && r.noProc {
			e.canon, e.canonOK = r.walkCanonical(dir, fd)
		}
		e.canonSet = true
	}
	return e.canon, e.canonOK
}

// walkCanonical resolves dir with the walk, keeping the names of the
// directories it passes, and checks that it reached the directory fd.
func (r *Root) walkCanonical(dir string, fd int) (string, bool) {
	wfd, names, err := r.walkNames(dir)
	if err != nil {
		return "", false
	}
	defer unix.Close(wfd)
	var a, b unix.Stat_t
	if unix.Fstat(wfd, &a) != nil || unix.Fstat(fd, &b) != nil || a.Dev != b.Dev || a.Ino != b.Ino {
		return "", false
	}
	return strings.Join(names, "/"), true
}

// relative tells the path of directory descriptor fd relative to the root.
func (r *Root) relative(fd int) (string, bool) {
	if r.noProc {
		return "", false
	}
	if !r.rootAbsSet {
		r.rootAbs, _ = r.fdPath(r.fd)
		r.rootAbsSet = true
		if r.rootAbs == "" {
			r.noProc = true // no /proc: walk from now on
		}
	}
	if r.rootAbs == "" {
		return "", false
	}
	p, ok := r.fdPath(fd)
	switch {
	case !ok:
		return "", false
	case p == r.rootAbs:
		return "", true
	case r.rootAbs == "/":
		return p[1:], true
	case strings.HasPrefix(p, r.rootAbs+"/"):
		return p[len(r.rootAbs)+1:], true
	}
	return "", false
}

// fdPath reads the path of a descriptor from /proc/self/fd; ok is false
// without /proc, or for a directory removed since it was opened.
func (r *Root) fdPath(fd int) (string, bool) {
	if r.procBuf == nil {
		r.procBuf = make([]byte, unix.PathMax)
	}
	buf := r.procBuf
	n, err := unix.Readlink(procFD(fd), buf)
	if err != nil || n == len(buf) || n == 0 || buf[0] != '/' {
		return "", false
	}
	p := string(buf[:n])
	if strings.HasSuffix(p, " (deleted)") {
		return "", false
	}
	return p, true
}

// openDir resolves the cleaned, non-empty name dir inside the root, every
// component followed, and returns a new O_PATH descriptor of the directory.
func (r *Root) openDir(dir string) (int, error) {
	if r.openat2 {
		fd, err := openat2InRoot(r.fd, dir, unix.O_PATH|unix.O_DIRECTORY)
		if err != unix.ENOSYS && err != unix.EPERM {
			return fd, r.xdevErr(err, dir)
		}
		// A seccomp filter installed after Open; stay on the walk from now on.
		r.openat2 = false
	}
	return r.walk(dir, false, 0)
}

// resolveFlags are how openat2 resolves every name: inside the root, no
// /proc magic link, and no mount point crossed (EXDEV).
const resolveFlags = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

func openat2InRoot(dirfd int, name string, flags uint64) (int, error) {
	how := unix.OpenHow{
		Flags:   flags | unix.O_CLOEXEC,
		Resolve: resolveFlags,
	}
	for i := 0; ; i++ {
		fd, err := unix.Openat2(dirfd, name, &how)
		// EAGAIN: a rename or mount raced with RESOLVE_IN_ROOT's checks.
		if (err == unix.EAGAIN || err == unix.EINTR) && i < 64 {
			continue
		}
		return fd, err
	}
}

// walk is the fallback resolver: it opens dir (a cleaned name) one
// component at a time from the root, never following a link in the kernel.
// A link met on the way is read and its target spliced in front of the
// remaining components; an absolute target restarts from the root, and
// ".." pops the stack of directories walked, never below the root. With
// create set, missing components are created as directories with perm.
// A directory on another mount than the root's is a mount point: the walk
// stops there with the mount point error (RESOLVE_NO_XDEV's rule). It
// returns a new O_PATH descriptor of the directory reached.
func (r *Root) walk(dir string, create bool, perm uint32) (fd int, err error) {
	fd, _, err = r.walkTracked(dir, create, perm, false)
	return fd, err
}

// walkNames is walk without creating, which also returns the names of the
// directories from the root to the one reached: its canonical name.
func (r *Root) walkNames(dir string) (fd int, names []string, err error) {
	return r.walkTracked(dir, false, 0, true)
}

func (r *Root) walkTracked(dir string, create bool, perm uint32, track bool) (fd int, names []string, err error) {
	stack := make([]int, 1, 8)
	stack[0] = r.fd
	defer func() {
		for _, d := range stack[1:] {
			unix.Close(d)
		}
	}()
	var linkbuf []byte
	links, creates := 0, 0
	rest := dir
	for rest != "" {
		var comp string
		comp, rest, _ = strings.Cut(rest, "/")
		switch comp {
		case "", ".":
			continue
		case "..":
			if len(stack) > 1 {
				unix.Close(stack[len(stack)-1])
				stack = stack[:len(stack)-1]
				if track {
					names = names[:len(names)-1]
				}
			}
			continue
		}
		cur := stack[len(stack)-1]
		next, err := unix.Openat(cur, comp, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == nil {
			if other, err := r.crossesMount(next, ""); err != nil || other {
				unix.Close(next)
				if err == nil {
					err = r.mountErr(dir)
				}
				return -1, nil, err
			}
			stack = append(stack, next)
			if track {
				names = append(names, comp)
			}
			continue
		}
		if err == unix.ENOENT && create {
			if err := unix.Mkdirat(cur, comp, perm); err != nil && err != unix.EEXIST {
				return -1, nil, err
			}
			if creates++; creates > unix.PathMax {
				return -1, nil, unix.ELOOP // something keeps removing what we create
			}
			rest = joinRest(comp, rest) // open what now exists
			continue
		}
		if err != unix.ENOTDIR {
			return -1, nil, err
		}
		// Not a directory: a symbolic link to expand, or a real ENOTDIR.
		if linkbuf == nil {
			linkbuf = make([]byte, unix.PathMax)
		}
		n, err := unix.Readlinkat(cur, comp, linkbuf)
		if err == unix.EINVAL {
			return -1, nil, unix.ENOTDIR
		}
		if err != nil {
			return -1, nil, err
		}
		if n == len(linkbuf) {
			return -1, nil, unix.ENAMETOOLONG
		}
		if links++; links > maxSymlinks {
			return -1, nil, unix.ELOOP
		}
		target := string(linkbuf[:n])
		if strings.HasPrefix(target, "/") {
			for _, d := range stack[1:] {
				unix.Close(d)
			}
			stack = stack[:1]
			names = names[:0]
		}
		rest = joinRest(target, rest)
	}
	top := stack[len(stack)-1]
	if len(stack) == 1 {
		// The walk ended at the root; hand out a descriptor of our own.
		fd, err := unix.FcntlInt(uintptr(top), unix.F_DUPFD_CLOEXEC, 0)
		return fd, names, err
	}
	stack = stack[:len(stack)-1] // keep top open past the deferred close
	return top, names, nil
}

func joinRest(first, rest string) string {
	if rest == "" {
		return first
	}
	return first + "/" + rest
}

// pathErr wraps a system call failure the way package os does.
func pathErr(op, name string, err error) error {
	if err == nil {
		return nil
	}
	return &fs.PathError{Op: op, Path: name, Err: err}
}

// procFD names the magic link of descriptor fd.
func procFD(fd int) string {
	return "/proc/self/fd/" + strconv.Itoa(fd)
}

// onRootFile runs do, op on the root itself (name), on a descriptor of the
// root opened for reading: the metadata calls need a real one (fchmod,
// futimens, fsetxattr do not accept O_PATH ones).
func (r *Root) onRootFile(op, name string, do func(fd int) error) error {
	fd, err := unix.Openat(r.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return pathErr("open", "/", err)
	}
	defer unix.Close(fd)
	return pathErr(op, name, do(fd))
}
