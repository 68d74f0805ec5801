package atomicfile

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/internal/testutil"
)

// both runs f with O_TMPFILE and with named temporaries.
func both(t *testing.T, f func(t *testing.T)) {
	for _, named := range []bool{false, true} {
		name := "tmpfile"
		if named {
			name = "named"
		}
		t.Run(name, func(t *testing.T) {
			noTmpfile = named
			defer func() { noTmpfile = false }()
			f(t)
		})
	}
}

// TestReplacesPlantedSymlink: a symlink at the final name is replaced,
// never followed (a rebuild run as root overwrote a file through one).
func TestReplacesPlantedSymlink(t *testing.T) {
	both(t, func(t *testing.T) {
		dir, outside := t.TempDir(), t.TempDir()
		victim := filepath.Join(outside, "victim")
		if err := os.WriteFile(victim, []byte("keep"), 0o600); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "layer.tar")
		if err := os.Symlink(victim, out); err != nil {
			t.Fatal(err)
		}
		if err := WriteFile(out, []byte("new"), 0o644); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(victim); string(b) != "keep" {
			t.Fatalf("the symlink's target was written: %q", b)
		}
		fi, err := os.Lstat(out)
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 {
			t.Fatalf("out is %v (%v), want a regular file 0644", fi.Mode(), err)
		}
		if b, _ := os.ReadFile(out); string(b) != "new" {
			t.Fatalf("out = %q", b)
		}
		if names := testutil.DirNames(t, dir); len(names) != 1 {
			t.Fatalf("dir holds %v, want only layer.tar", names)
		}
	})
}

// TestAbortPublishesNothing: an aborted file leaves the directory as it
// was, old content included.
func TestAbortPublishesNothing(t *testing.T) {
	both(t, func(t *testing.T) {
		dir := t.TempDir()
		out := filepath.Join(dir, "f")
		os.WriteFile(out, []byte("old"), 0o644)
		f, err := Create(out, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		f.Write([]byte("partial"))
		f.Abort()
		f.Abort()
		if b, _ := os.ReadFile(out); string(b) != "old" {
			t.Fatalf("out = %q after Abort", b)
		}
		if names := testutil.DirNames(t, dir); len(names) != 1 {
			t.Fatalf("dir holds %v", names)
		}
		if err := f.Commit(); err == nil {
			t.Fatal("Commit after Abort succeeded")
		}
	})
}

// TestKillLeavesNoPartialFile: a writer killed mid-write leaves nothing
// under the final name; with named temporaries, Clean removes what it left.
func TestKillLeavesNoPartialFile(t *testing.T) {
	if os.Getenv("ATOMICFILE_CHILD") != "" {
		noTmpfile = os.Getenv("ATOMICFILE_NAMED") != ""
		f, err := Create(os.Getenv("ATOMICFILE_CHILD"), 0o644)
		if err != nil {
			os.Exit(3)
		}
		os.Stdout.WriteString("writing\n")
		for {
			f.Write(bytes.Repeat([]byte("x"), 4096))
			time.Sleep(time.Millisecond)
		}
	}
	both(t, func(t *testing.T) {
		dir := t.TempDir()
		out := filepath.Join(dir, "layer.tar")
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillLeavesNoPartialFile$")
		cmd.Env = testutil.ChildEnv("ATOMICFILE_CHILD=" + out)
		if noTmpfile {
			cmd.Env = append(cmd.Env, "ATOMICFILE_NAMED=1")
		}
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 8)
		if _, err := stdout.Read(buf); err != nil || !strings.HasPrefix(string(buf), "writing") {
			t.Fatalf("child did not start writing: %q %v", buf, err)
		}
		time.Sleep(50 * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if _, err := os.Lstat(out); !os.IsNotExist(err) {
			t.Fatalf("a killed writer left %s (%v)", out, err)
		}
		if err := Clean(dir); err != nil {
			t.Fatal(err)
		}
		if names := testutil.DirNames(t, dir); len(names) != 0 {
			t.Fatalf("after Clean dir holds %v", names)
		}
	})
}

func TestCreateRefusesDirectoryNames(t *testing.T) {
	for _, p := range []string{"", "/tmp/", "."} {
		if _, err := Create(p, 0o644); err == nil {
			t.Errorf("Create(%q) succeeded", p)
		}
	}
}

// TestCreateAt publishes through an O_PATH directory descriptor (the
// state directory's shadow store holds only such descriptors) with the
// same sequence as Create: the final name appears only at Commit.
func TestCreateAt(t *testing.T) {
	both(t, func(t *testing.T) {
		dir := t.TempDir()
		dirfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(dirfd)
		for _, bad := range []string{"", ".", "..", "a/b"} {
			if _, err := CreateAt(dirfd, dir, bad, 0o600); err == nil {
				t.Errorf("CreateAt(%q) succeeded", bad)
			}
		}
		f, err := CreateAt(dirfd, dir, "7", 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString("payload"); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(filepath.Join(dir, "7")); err == nil {
			t.Fatal("the final name exists before Commit")
		}
		if err := f.Commit(); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, "7"))
		if err != nil || string(b) != "payload" {
			t.Fatalf("read %q, %v", b, err)
		}
		if names := testutil.DirNames(t, dir); len(names) != 1 {
			t.Fatalf("dir holds %v", names)
		}
	})
}
