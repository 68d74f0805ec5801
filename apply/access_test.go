package apply

import (
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// openAtOwner, what the walk calls for a name it saw as a regular file,
// never opens anything else for reading: a container that swapped the
// file for a device node (or FIFO) after the walk's lstat gets no open(2)
// of it from the host. Before, the name was opened O_RDONLY|O_NONBLOCK
// and its type checked only afterwards.
func TestOpenAtOwnerNeverOpensANode(t *testing.T) {
	dir := t.TempDir()
	node := filepath.Join(dir, "app")
	if err := unix.Mknod(node, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		if err := unix.Mkfifo(node, 0o666); err != nil {
			t.Fatal(err)
		}
	}
	ino, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ino)
	if _, err := unix.InotifyAddWatch(ino, node, unix.IN_OPEN); err != nil {
		t.Fatal(err)
	}
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)
	f, err := openAtOwner(dfd, "app")
	if err == nil {
		f.Close()
		t.Error("a device node or FIFO was opened as a file")
	}
	if n, _ := unix.Read(ino, make([]byte, 4096)); n > 0 {
		t.Error("open(2) reached the device node")
	}
	// The walk's own reading of a swapped file fails the same way.
	sc := newEntryScanner()
	if _, err := sc.fileSum(dfd, "app", "app"); err == nil {
		t.Error("fileSum read a device node")
	}
	if n, _ := unix.Read(ino, make([]byte, 4096)); n > 0 {
		t.Error("fileSum's open(2) reached the device node")
	}
}
