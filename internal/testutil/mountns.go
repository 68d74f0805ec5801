package testutil

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// mountNSEnv names, in the child InMountNS starts, the test it runs.
const mountNSEnv = "OCIFETCH_TESTUTIL_MOUNTNS_CHILD"

// InMountNS runs the calling top-level test again in a child process
// with a mount namespace of its own (mount propagation private), where
// it may mount what it likes without leaving anything behind on the
// host. It returns true in the child (the test goes on there) and false
// in the parent once the child passed. Mounting needs root: without it
// the test is skipped; a kernel that refuses the namespace is Missing.
func InMountNS(t *testing.T) bool {
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
	cmd.Env = ChildEnv(mountNSEnv + "=" + t.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "operation not permitted") {
			Missing(t, "no mount namespace: %s", out)
		}
		t.Fatalf("in a mount namespace: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("the child did not run the test:\n%s", out)
	}
	return false
}

// BindMount bind-mounts src on dst until the test ends.
func BindMount(t *testing.T, src, dst string) {
	t.Helper()
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(dst, unix.MNT_DETACH) })
}
