package fsroot

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openWatch reports whether the file at path (its inode, wherever it is
// renamed) is opened for real: inotify's IN_OPEN, which an O_PATH
// descriptor does not raise.
type openWatch struct{ fd int }

func watchOpens(t *testing.T, path string) *openWatch {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if _, err := unix.InotifyAddWatch(fd, path, unix.IN_OPEN); err != nil {
		t.Fatal(err)
	}
	return &openWatch{fd: fd}
}

func (w *openWatch) opened() bool {
	buf := make([]byte, 4096)
	n, _ := unix.Read(w.fd, buf)
	return n > 0
}

// specialNode makes at path a node whose open(2) would act: a character
// device (root), else a FIFO.
func specialNode(t *testing.T, path string) {
	t.Helper()
	if os.Geteuid() == 0 {
		if err := unix.Mknod(path, unix.S_IFCHR|0666, int(unix.Mkdev(1, 3))); err == nil {
			return
		}
	}
	if err := unix.Mkfifo(path, 0666); err != nil {
		t.Fatal(err)
	}
}

// A regular file swapped for a device node (or FIFO) between the type
// check and the open is never opened: the reopen goes through the
// descriptor that was checked, with /proc or without. Before, the branch
// without /proc opened the name again, reaching the device node (its
// driver's open ran) before it noticed the inode had changed.
func TestOpenFileNeverOpensASwappedNode(t *testing.T) {
	allModes(t, func(t *testing.T, opts []Option) {
		root, outside := fixture(t)
		plant(t, root, "f=regular")
		node := filepath.Join(root, ".node")
		specialNode(t, node)
		w := watchOpens(t, node)
		r := open(t, root, opts)
		testHookReopen = func() {
			if err := os.Rename(node, filepath.Join(root, "f")); err != nil {
				t.Error(err)
			}
		}
		defer func() { testHookReopen = nil }()
		f, err := r.OpenFile("f")
		testHookReopen = nil
		if w.opened() {
			t.Fatal("the swapped-in node was opened")
		}
		if err == nil {
			// The checked inode itself, unlinked by the swap.
			b, _ := io.ReadAll(f)
			f.Close()
			if string(b) != "regular" {
				t.Errorf("read %q from the checked file", b)
			}
		} else if !errors.Is(err, unix.ESTALE) {
			t.Errorf("OpenFile: %v", err)
		}
		checkOutside(t, outside)
	})
}

// swapDir makes a directory holding a regular file f ("regular"), the
// entries planted, and a watched node to swap in for f; it returns the
// directory, a descriptor of it (closed when the test ends), the node's
// path and its watch.
func swapDir(t *testing.T, entries ...string) (dir string, dfd int, node string, w *openWatch) {
	t.Helper()
	dir = t.TempDir()
	plant(t, dir, append([]string{"f=regular"}, entries...)...)
	node = filepath.Join(dir, "node")
	specialNode(t, node)
	w = watchOpens(t, node)
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(dfd) })
	return dir, dfd, node, w
}

// OpenRegularAt, for walks that hold their own descriptors, refuses
// every type but a regular file without opening it, and survives the
// same swap.
func TestOpenRegularAtNeverOpensANode(t *testing.T) {
	dir, dfd, node, w := swapDir(t, "link -> f", "d/")
	for _, name := range []string{"node", "link", "d"} {
		if _, _, err := OpenRegularAt(dfd, name); !errors.Is(err, ErrNotRegular) && !errors.Is(err, unix.ELOOP) {
			t.Errorf("%s: %v, want ErrNotRegular", name, err)
		}
	}
	testHookReopen = func() { os.Rename(node, filepath.Join(dir, "f")) }
	f, st, err := OpenRegularAt(dfd, "f")
	testHookReopen = nil
	time.Sleep(10 * time.Millisecond)
	if w.opened() {
		t.Fatal("a node was opened")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if b, _ := io.ReadAll(f); string(b) != "regular" || st.Size != 7 {
		t.Errorf("read %q, size %d", b, st.Size)
	}
}

// Reading xattrs without /proc nor listxattrat opens directories and
// regular files only, checked first: a node swapped in after the walk's
// lstat is not opened. Before, it was opened by name.
func TestXattrReaderNeverOpensASwappedNode(t *testing.T) {
	dir, dfd, node, w := swapDir(t)
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, "f", &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatal(err)
	}
	// The walk saw a regular file; it is swapped before the xattrs are read.
	os.Rename(node, filepath.Join(dir, "f"))
	x := NewXattrReader(WithFallback(), WithoutProc())
	if _, _, err := x.ListAt(dfd, "f", &st); err != nil {
		t.Fatal(err)
	}
	if w.opened() {
		t.Fatal("the swapped-in node was opened")
	}
}
