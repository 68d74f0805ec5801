package apply

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/apply/internal/treecmp"
	"github.com/ocifetch/ocifetch/internal/testutil"
)

const noProcChildEnv = "OCIFETCH_APPLY_NOPROC_CHILD"

// noProcLayers are layers whose outcome depended on /proc: an xattr on a
// directory, a whiteout through a symbolic link of a file the same layer
// wrote (it must stay), one of a lower file (it must go), and an opaque
// whiteout through a link to its own directory.
func noProcLayers(t testing.TB) [][]byte {
	return [][]byte{
		tarOf(t, D("d", 0755), F("d/lower", "l", 0644), S("s", "d"), D("o", 0755), F("o/a", "a", 0644), S("o/self", "."), F("o/b", "b", 0644)),
		tarOf(t, D("x", 0755).xattr("user.dir", "v"), F("d/mine", "m", 0644), W("s", "mine"), W("s", "lower"),
			O("o/self"), F("o/self/c", "c", 0644), F("attr", "", 0644).xattr("user.f", "w")),
	}
}

// TestNoProcChild is the body of TestWithoutProc: in a mount namespace of
// its own it hides /proc, applies the layers, verifies and rebuilds them,
// and prints the tree.
func TestNoProcChild(t *testing.T) {
	if os.Getenv(noProcChildEnv) == "" {
		t.Skip("runs as a child of TestWithoutProc")
	}
	if err := unix.Mount("", "/", "", unix.MS_PRIVATE|unix.MS_REC, ""); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("none", "/proc", "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/proc/self/fd"); err == nil {
		t.Fatal("/proc is still there")
	}
	out := map[string]any{}
	a, err := applyRecorded(t, noProcLayers(t))
	if err == nil {
		var d []Drift
		d, err = Verify(context.Background(), a.state, a.target)
		out["drift"] = len(d)
	}
	if err == nil {
		for i, want := range a.tars {
			var b []byte
			if b, err = a.rebuild(t, i); err == nil && !bytes.Equal(b, want) {
				err = fmt.Errorf("layer %d rebuilt differently", i)
			}
			if err != nil {
				break
			}
		}
	}
	if err != nil {
		out["error"] = err.Error()
	} else {
		out["tree"] = treecmpWalk(t, a.target)
	}
	json.NewEncoder(os.Stdout).Encode(out)
}

// Without /proc (a container or chroot without it), xattrs on directories
// and whiteouts through symbolic links do what they do with /proc, and
// verify and rebuild work. Before, the xattr failed with ENOENT and the
// whiteout removed the file its own layer wrote.
func TestWithoutProc(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	withProc := mustApplyRecorded(t, noProcLayers(t))
	withProc.noDrift(t)
	withProc.checkRebuilds(t)
	diffTree(t, treecmpWalk(t, withProc.target), `
		file attr 0644 xattr.user.f=w
		dir d 0755
		file d/mine content=m
		dir o 0755
		dir o/self 0755
		file o/self/c content=c
		symlink s target=d
		dir x 0755 xattr.user.dir=v
	`, [2]uint32{0, 0})
	cmd := exec.Command(os.Args[0], "-test.run=^TestNoProcChild$")
	cmd.Env = testutil.ChildEnv(noProcChildEnv + "=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if strings.Contains(stderr.String(), "operation not permitted") {
			testutil.Missing(t, "no mount namespace: %s", stderr.String())
		}
		t.Fatalf("child: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	var out struct {
		Drift int
		Error string
		Tree  []treecmp.Entry
	}
	line, _, _ := strings.Cut(stdout.String(), "\n")
	if err := json.Unmarshal([]byte(line), &out); err != nil {
		t.Fatalf("child output %q: %v", stdout.String(), err)
	}
	if out.Error != "" || out.Drift != 0 {
		t.Fatalf("without /proc: %d drifts, %s", out.Drift, out.Error)
	}
	// Entries from Walk set every field: want compares them all.
	want := treecmpWalk(t, withProc.target)
	for _, d := range treecmp.Diff(out.Tree, want, treecmp.Options{IgnoreRoot: true, IgnoreDirMtime: true}) {
		t.Errorf("without /proc: %s", d)
	}
}
