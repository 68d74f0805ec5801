package fsroot

import (
	"sort"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Extended attributes of an entry named relative to a directory
// descriptor, never following a final symbolic link and without /proc
// where the kernel allows: the *xattrat(2) system calls (Linux 6.13) act
// on dirfd and base directly; before them, /proc/self/fd/N/base with the
// l* calls, and without /proc a directory or regular file is opened
// (checked through an O_PATH descriptor first, see OpenRegularAt) and read
// through its descriptor.

// xattrArgs is struct xattr_args of the *xattrat system calls.
type xattrArgs struct {
	value uint64
	size  uint32
	flags uint32
}

func setxattrat(dirfd int, base, attr string, value []byte) error {
	p, err := unix.BytePtrFromString(base)
	if err != nil {
		return err
	}
	a, err := unix.BytePtrFromString(attr)
	if err != nil {
		return err
	}
	args := xattrArgs{size: uint32(len(value))}
	if len(value) > 0 {
		args.value = uint64(uintptr(unsafe.Pointer(&value[0])))
	}
	_, _, e := unix.Syscall6(unix.SYS_SETXATTRAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)), unix.AT_SYMLINK_NOFOLLOW,
		uintptr(unsafe.Pointer(a)), uintptr(unsafe.Pointer(&args)), unsafe.Sizeof(args))
	if e != 0 {
		return e
	}
	return nil
}

func listxattrat(dirfd int, base string, buf []byte) (int, error) {
	p, err := unix.BytePtrFromString(base)
	if err != nil {
		return 0, err
	}
	var bp unsafe.Pointer
	if len(buf) > 0 {
		bp = unsafe.Pointer(&buf[0])
	}
	n, _, e := unix.Syscall6(unix.SYS_LISTXATTRAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)), unix.AT_SYMLINK_NOFOLLOW,
		uintptr(bp), uintptr(len(buf)), 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func getxattrat(dirfd int, base, attr string, buf []byte) (int, error) {
	p, err := unix.BytePtrFromString(base)
	if err != nil {
		return 0, err
	}
	a, err := unix.BytePtrFromString(attr)
	if err != nil {
		return 0, err
	}
	args := xattrArgs{size: uint32(len(buf))}
	if len(buf) > 0 {
		args.value = uint64(uintptr(unsafe.Pointer(&buf[0])))
	}
	n, _, e := unix.Syscall6(unix.SYS_GETXATTRAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)), unix.AT_SYMLINK_NOFOLLOW,
		uintptr(unsafe.Pointer(a)), uintptr(unsafe.Pointer(&args)), unsafe.Sizeof(args))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// Xattr is one extended attribute.
type Xattr struct {
	Name  string
	Value []byte
}

// xattrIO is how the attributes of one entry are read.
type xattrIO struct {
	list func(buf []byte) (int, error)
	get  func(name string, buf []byte) (int, error)
}

// XattrReader reads the extended attributes of entries. It remembers what
// the kernel lacks, so it is for one goroutine.
type XattrReader struct {
	noAt     bool // no listxattrat(2)
	noProc   bool // no /proc/self/fd
	procSeen bool // noProc was found out
	buf      []byte
}

// NewXattrReader returns a reader; WithFallback makes it behave as on a
// kernel without the *xattrat calls, WithoutProc as without /proc.
func NewXattrReader(opts ...Option) *XattrReader {
	var c config
	for _, o := range opts {
		o(&c)
	}
	return &XattrReader{noAt: c.fallback, noProc: c.noProc, procSeen: c.noProc}
}

func (x *XattrReader) proc() bool {
	if !x.procSeen {
		x.noProc, x.procSeen = !procMounted(), true
	}
	return !x.noProc
}

// ListAt returns the extended attributes of base in the directory dirfd,
// sorted by name, never following base when it is a symbolic link; st is
// base's status. An entry whose attributes cannot be read this way (a
// symbolic link or device without /proc nor listxattrat) reports ok false.
func (x *XattrReader) ListAt(dirfd int, base string, st *unix.Stat_t) (attrs []Xattr, ok bool, err error) {
	var ops xattrIO
	closeFD := -1
	defer func() {
		if closeFD >= 0 {
			unix.Close(closeFD)
		}
	}()
	switch {
	case !x.noAt:
		ops = xattrIO{
			list: func(b []byte) (int, error) { return listxattrat(dirfd, base, b) },
			get:  func(n string, b []byte) (int, error) { return getxattrat(dirfd, base, n, b) },
		}
	case x.proc():
		p := procFD(dirfd) + "/" + base
		ops = xattrIO{
			list: func(b []byte) (int, error) { return unix.Llistxattr(p, b) },
			get:  func(n string, b []byte) (int, error) { return unix.Lgetxattr(p, n, b) },
		}
	default:
		t := st.Mode & unix.S_IFMT
		if t != unix.S_IFDIR && t != unix.S_IFREG {
			return nil, false, nil
		}
		fd, opened, err := openDirOrRegular(dirfd, base, &x.noProc)
		if err != nil || !opened {
			return nil, false, err
		}
		closeFD = fd
		ops = xattrIO{
			list: func(b []byte) (int, error) { return unix.Flistxattr(fd, b) },
			get:  func(n string, b []byte) (int, error) { return unix.Fgetxattr(fd, n, b) },
		}
	}
	attrs, err = x.collect(ops)
	if err == unix.ENOSYS && !x.noAt {
		x.noAt = true
		return x.ListAt(dirfd, base, st)
	}
	if err != nil {
		if err == unix.ENOTSUP {
			return nil, true, nil // the file system keeps none
		}
		return nil, false, err
	}
	return attrs, true, nil
}

// ListFD returns the extended attributes of the file or directory open
// as fd (a descriptor open for reading, not an O_PATH one), sorted by
// name.
func (x *XattrReader) ListFD(fd int) ([]Xattr, error) {
	attrs, err := x.collect(xattrIO{
		list: func(b []byte) (int, error) { return unix.Flistxattr(fd, b) },
		get:  func(n string, b []byte) (int, error) { return unix.Fgetxattr(fd, n, b) },
	})
	if err == unix.ENOTSUP {
		return nil, nil // the file system keeps none
	}
	return attrs, err
}

// collect lists and reads every attribute through ops.
func (x *XattrReader) collect(ops xattrIO) (attrs []Xattr, err error) {
	names, err := x.read(ops.list)
	if err != nil {
		return nil, err
	}
	// names is in x.buf, which reading each value reuses: keep a copy.
	names = append([]byte(nil), names...)
	for len(names) > 0 {
		i := 0
		for i < len(names) && names[i] != 0 {
			i++
		}
		name := string(names[:i])
		if i < len(names) {
			i++
		}
		names = names[i:]
		if name == "" {
			continue
		}
		v, err := x.read(func(b []byte) (int, error) { return ops.get(name, b) })
		if err == unix.ENODATA {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, Xattr{Name: name, Value: append([]byte{}, v...)})
	}
	sort.Slice(attrs, func(i, j int) bool { return attrs[i].Name < attrs[j].Name })
	return attrs, nil
}

// read calls f with a buffer large enough for its answer; the result is
// valid until the next call.
func (x *XattrReader) read(f func([]byte) (int, error)) ([]byte, error) {
	if x.buf == nil {
		x.buf = make([]byte, 4096)
	}
	for {
		n, err := f(x.buf)
		if err == unix.ERANGE {
			size, err := f(nil)
			if err != nil {
				return nil, err
			}
			x.buf = make([]byte, max(size, 2*len(x.buf)))
			continue
		}
		if err != nil {
			return nil, err
		}
		return x.buf[:n], nil
	}
}
