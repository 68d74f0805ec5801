package fsroot

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/errdefs"
)

const mountNSEnv = "OCIFETCH_FSROOT_MOUNTNS_CHILD"

// inMountNS runs the calling top-level test again in a child process with
// a mount namespace of its own, where it may mount what it likes without
// leaving anything behind on the host. It returns true in the child
// (the test goes on there) and false in the parent once the child passed.
func inMountNS(t *testing.T) bool {
	t.Helper()
	if os.Getenv(mountNSEnv) == t.Name() {
		if err := unix.Mount("", "/", "", unix.MS_PRIVATE|unix.MS_REC, ""); err != nil {
			t.Fatal(err)
		}
		return true
	}
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), mountNSEnv+"="+t.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("in a mount namespace: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("the child did not run the test:\n%s", out)
	}
	return false
}

func bindMount(t *testing.T, src, dst string) {
	t.Helper()
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(dst, unix.MNT_DETACH) })
}

func wantMountPoint(t *testing.T, err error, path string) {
	t.Helper()
	if !errors.Is(err, ErrMountPoint) || errdefs.KindOf(err) != errdefs.ErrInvalidArgument {
		t.Fatalf("error %v (kind %q), want the mount point error", err, errdefs.KindOf(err))
	}
	if !strings.Contains(err.Error(), `"`+path+`"`) || !strings.Contains(err.Error(), "unmount") {
		t.Errorf("error %q does not name %q and say to unmount it", err, path)
	}
}

// A bind mount inside the root (of a directory of the same file system,
// so that the device numbers agree) is never crossed: RemoveAll of a
// directory holding it stops at it, a file mounted over is not removed
// or renamed, and nothing is created, read or removed below it. Before,
// RemoveAll went down the mount, deleted the mounted directory's files,
// and then failed with EBUSY.
func TestNothingCrossesAMountPoint(t *testing.T) {
	if !inMountNS(t) {
		return
	}
	modes(t, func(t *testing.T, opts []Option) {
		root, outside := fixture(t)
		os.MkdirAll(filepath.Join(root, "d/m"), 0755)
		os.WriteFile(filepath.Join(root, "d/a"), []byte("a"), 0644)
		os.WriteFile(filepath.Join(root, "f"), []byte("f"), 0644)
		bindMount(t, outside, filepath.Join(root, "d/m"))
		bindMount(t, filepath.Join(outside, "sentinel"), filepath.Join(root, "f"))
		r := open(t, root, opts)

		wantMountPoint(t, r.RemoveAll("d"), "d/m")
		wantMountPoint(t, r.RemoveAll("d/m"), "d/m")
		wantMountPoint(t, r.RemoveAll("f"), "f")
		wantMountPoint(t, r.Remove("f"), "f")
		wantMountPoint(t, r.Rename("f", "g"), "f")
		if _, err := r.Create("d/m/new", 0644); !errors.Is(err, ErrMountPoint) {
			t.Errorf("Create below the mount point: %v", err)
		}
		if err := r.MkdirAll("d/m/x/y", 0755); !errors.Is(err, ErrMountPoint) {
			t.Errorf("MkdirAll below the mount point: %v", err)
		}
		if _, err := r.OpenFile("d/m/sentinel"); !errors.Is(err, ErrMountPoint) {
			t.Errorf("OpenFile below the mount point: %v", err)
		}
		if _, err := r.ReadDirNames("d/m"); !errors.Is(err, ErrMountPoint) {
			t.Errorf("ReadDirNames of the mount point: %v", err)
		}
		// Through a symbolic link too.
		os.Symlink("d/m", filepath.Join(root, "l"))
		if err := r.RemoveAll("l/sentinel"); !errors.Is(err, ErrMountPoint) {
			t.Errorf("RemoveAll through a link to the mount point: %v", err)
		}
		unix.Unmount(filepath.Join(root, "d/m"), unix.MNT_DETACH)
		unix.Unmount(filepath.Join(root, "f"), unix.MNT_DETACH)
		checkOutside(t, outside)
	})
}
