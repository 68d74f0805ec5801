package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// rebuild --compressed --layer N -o FILE takes FILE as plain rebuild does
// (TestCLIE2ERebuildOutputKinds): a FIFO or a character device is written
// through, a symbolic link followed, "-" is standard output. Before, the
// blob was renamed over whatever FILE was: a FIFO became a regular file
// (its reader hung for ever), as root -o /dev/null replaced the device
// with a regular file, and -o - made a file named "-".
func TestCLIE2ERebuildCompressedOutputKinds(t *testing.T) {
	u := unpackLayers(t, layerOf(t, efile("etc/motd", "hello\n", 0o644), efile("bin/app", "app app app\n", 0o755)))
	blob, err := os.ReadFile(blobFile(u.store, layerDigests(t, u.rootfs)[0].Digest))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rebuildTo := func(out string) cliRun {
		t.Helper()
		return runBuilt(t, u.env, "rebuild", "--compressed", "--layer", "1", "-o", out, u.rootfs)
	}
	typeOf := func(p string) uint32 {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		return st.Mode & unix.S_IFMT
	}
	t.Run("FIFO", func(t *testing.T) {
		fifo := filepath.Join(dir, "fifo")
		if err := unix.Mkfifo(fifo, 0o600); err != nil {
			t.Fatal(err)
		}
		got := make(chan []byte, 1)
		go func() {
			f, err := os.Open(fifo)
			if err != nil {
				got <- nil
				return
			}
			b, _ := io.ReadAll(f)
			f.Close()
			got <- b
		}()
		if r := rebuildTo(fifo); r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		if typeOf(fifo) != unix.S_IFIFO {
			// (The reader waits for ever on the FIFO that was replaced.)
			t.Fatal("the FIFO was replaced by a regular file")
		}
		if b := receive(t, got); !bytes.Equal(b, blob) {
			t.Errorf("the reader got %d bytes, not the blob's %d", len(b), len(blob))
		}
	})
	t.Run("character device", func(t *testing.T) {
		requireRootCLI(t)
		dev := filepath.Join(dir, "null")
		if err := unix.Mknod(dev, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatal(err)
		}
		if r := rebuildTo(dev); r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		var st unix.Stat_t
		unix.Lstat(dev, &st)
		if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) {
			t.Errorf("the device is now mode %o rdev %x", st.Mode, st.Rdev)
		}
	})
	t.Run("symbolic link", func(t *testing.T) {
		file := filepath.Join(dir, "out.tar.gz")
		os.WriteFile(file, []byte("old"), 0o600)
		os.Symlink("out.tar.gz", filepath.Join(dir, "link"))
		if r := rebuildTo(filepath.Join(dir, "link")); r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		if b, _ := os.ReadFile(file); !bytes.Equal(b, blob) || typeOf(filepath.Join(dir, "link")) != unix.S_IFLNK {
			t.Errorf("through a link to a file: %d bytes", len(b))
		}
	})
	t.Run("standard output", func(t *testing.T) {
		cwd := t.TempDir()
		cmd := exec.Command(builtCLI(t), "rebuild", "--compressed", "--layer", "1", "-o", "-", u.rootfs)
		cmd.Env, cmd.Dir = u.env, cwd
		out, err := cmd.Output()
		if err != nil || !bytes.Equal(out, blob) {
			t.Errorf("-o -: %v, %d bytes on standard output, want the blob's %d", err, len(out), len(blob))
		}
		if names := dirEntries(cwd); len(names) != 0 {
			t.Errorf("-o - wrote files %q", names)
		}
	})
}
