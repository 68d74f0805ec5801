package apply

import (
	gotar "archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/testutil"
)

const (
	childEnv = "OCIFETCH_APPLY_UNPRIVILEGED_CHILD"
	nobody   = 65534
)

// TestUnprivilegedChild is the body of TestUnprivileged, run in a child
// process as uid/gid 65534. It applies the layers named in the environment
// and prints the report, or the error's kind and message, as JSON.
func TestUnprivilegedChild(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("runs as a child of TestUnprivileged")
	}
	var opts []Option
	if os.Getenv("FALLBACK") == "1" {
		opts = append(opts, withFallback())
	}
	if os.Getenv("OWNERSHIP") == "fail" {
		opts = append(opts, WithOwnership(OwnershipFail))
	}
	var ls []Layer
	for _, p := range strings.Fields(os.Getenv("LAYERS")) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, rawBlob(mtTar, b, sha(b)))
	}
	rep, err := Apply(context.Background(), os.Getenv("TARGET"), ls, opts...)
	out := map[string]any{"report": rep}
	if err != nil {
		out["kind"], out["error"] = errdefs.KindOf(err), err.Error()
	}
	json.NewEncoder(os.Stdout).Encode(out)
}

// unprivilegedExe makes a directory everyone may read (t.TempDir's
// parents may not be) holding a copy of the test binary, for a child
// process run as nobody.
func unprivilegedExe(t *testing.T) (dir, exe string) {
	t.Helper()
	requireRoot(t) // to run the child as another user
	dir, err := os.MkdirTemp("", "apply-unpriv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0755)
	exe = filepath.Join(dir, "apply.test")
	copyFile(t, os.Args[0], exe, 0755)
	return dir, exe
}

// layerFiles writes each tar into dir, for a child process to read.
func layerFiles(t *testing.T, dir string, tars ...[]byte) []string {
	t.Helper()
	var paths []string
	for i, b := range tars {
		p := filepath.Join(dir, fmt.Sprintf("layer%d.tar", i))
		if err := os.WriteFile(p, b, 0644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths
}

// nobodysDirs makes each directory, in order, owned by 65534.
func nobodysDirs(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.Mkdir(d, 0755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
}

// runAsNobody runs the test named test of exe, a copy of the test binary,
// as uid/gid 65534 with env, and returns the JSON object the child
// printed on its first line.
func runAsNobody(t *testing.T, exe, test string, env ...string) map[string]any {
	t.Helper()
	cmd := exec.Command(exe, "-test.run=^"+test+"$")
	cmd.Env = testutil.ChildEnv(env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := runCopied(cmd); err != nil {
		t.Fatalf("child: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	var out map[string]any
	line, _, _ := strings.Cut(stdout.String(), "\n")
	if err := json.Unmarshal([]byte(line), &out); err != nil {
		t.Fatalf("child output %q: %v", stdout.String(), err)
	}
	return out
}

// An unprivileged apply of layers with root-owned entries, mode-000 files
// and directories, and a device: it succeeds, everything belongs to the
// caller, the device is left out with a warning, and directories of a lower
// layer that deny their owner access are opened up and restored. With
// OwnershipFail the same layer fails.
func TestUnprivileged(t *testing.T) {
	t.Parallel()
	// A world-readable copy of the test binary and the layers.
	dir, exe := unprivilegedExe(t)
	l1 := tarOf(t,
		D("etc", 0755), F("etc/shadow", "secret", 0).owner(0, 42), F("etc/suid", "", 04755),
		D("locked", 0), F("locked/f", "x", 0644), D("locked/sub", 0555), F("locked/sub/g", "", 0644),
		D("gone", 0), D("gone/deeper", 0), F("gone/deeper/c", "", 0),
		Dev(gotar.TypeChar, "dev/null", 0666, 1, 3), H("dev/null2", "dev/null"), Fifo("p", 0600),
		F("attrs", "", 0644).xattr("user.a", "1").xattr("trusted.t", "2"),
	)
	l2 := tarOf(t, F("locked/new", "n", 0644), H("hl", "locked/f"), W("locked/sub", "g"), F("gone", "file", 0644), D("etc", 0555))
	paths := layerFiles(t, dir, l1, l2)
	run := func(t *testing.T, env ...string) (map[string]any, string) {
		target := filepath.Join(dir, "rootfs-"+strings.ReplaceAll(t.Name(), "/", "-"))
		nobodysDirs(t, target)
		return runAsNobody(t, exe, "TestUnprivilegedChild", append(env, childEnv+"=1", "TARGET="+target)...), target
	}
	for _, fallback := range []string{"0", "1"} {
		t.Run("fallback="+fallback, func(t *testing.T) {
			t.Run("caller owns everything", func(t *testing.T) {
				out, target := run(t, "FALLBACK="+fallback, "LAYERS="+strings.Join(paths, " "))
				if out["error"] != nil {
					t.Fatalf("apply failed: %v", out["error"])
				}
				rep, _ := json.Marshal(out["report"])
				for _, w := range []string{`"kind":"device_skipped"`, `"path":"dev/null"`, `"kind":"xattr_skipped"`} {
					if !bytes.Contains(rep, []byte(w)) {
						t.Errorf("report lacks %s: %s", w, rep)
					}
				}
				got := treecmpWalk(t, target)
				want := `
					dir etc 0555 owner=65534:65534
					file etc/shadow 0000 content=secret
					file etc/suid 04755
					dir locked 0000
					file hl 0644 content=x
					file locked/f 0644 content=x link=hl
					file locked/new 0644 content=n
					dir locked/sub 0555
					file gone 0644 content=file
					fifo p 0600
					file attrs xattr.user.a=1
					dir dev 0755
				`
				diffTree(t, got, want, [2]uint32{nobody, nobody})
			})
			t.Run("OwnershipFail refuses root-owned entries", func(t *testing.T) {
				out, _ := run(t, "FALLBACK="+fallback, "OWNERSHIP=fail", "LAYERS="+paths[0])
				if out["kind"] != string(errdefs.ErrPermissionDenied) || !strings.Contains(fmt.Sprint(out["error"]), "owner 0:0") {
					t.Errorf("got %v", out)
				}
			})
		})
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

const rebuildChildEnv = "OCIFETCH_APPLY_UNPRIVILEGED_REBUILD_CHILD"

// TestUnprivilegedRebuildChild is the body of TestUnprivilegedRebuild, run
// as uid/gid 65534: apply with a state directory, rebuild every layer,
// verify, and print the outcome as JSON.
func TestUnprivilegedRebuildChild(t *testing.T) {
	if os.Getenv(rebuildChildEnv) == "" {
		t.Skip("runs as a child of TestUnprivilegedRebuild")
	}
	var ls []Layer
	var tars [][]byte
	for _, p := range strings.Fields(os.Getenv("LAYERS")) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		tars = append(tars, b)
		ls = append(ls, rawBlob(mtTar, b, sha(b)))
	}
	target, state := os.Getenv("TARGET"), os.Getenv("STATE")
	out := map[string]any{}
	defer func() { json.NewEncoder(os.Stdout).Encode(out) }()
	if _, err := Apply(context.Background(), target, ls, WithStateDir(state)); err != nil {
		out["apply"] = err.Error()
		return
	}
	var rebuilt []string
	for i, want := range tars {
		var b bytes.Buffer
		err := Rebuild(context.Background(), state, target, sha(want), &b)
		switch {
		case err != nil:
			rebuilt = append(rebuilt, fmt.Sprintf("layer %d: %v", i, err))
		case !bytes.Equal(b.Bytes(), want):
			rebuilt = append(rebuilt, fmt.Sprintf("layer %d: different bytes", i))
		default:
			rebuilt = append(rebuilt, "ok")
		}
	}
	out["rebuilt"] = rebuilt
	drift, err := Verify(context.Background(), state, target)
	out["drift"], out["verify"] = drift, fmt.Sprint(err)
	// A change to a mode-000 file is found.
	if err := os.Chmod(filepath.Join(target, "locked"), 0700); err == nil {
		f := filepath.Join(target, "locked/f")
		os.Chmod(f, 0600)
		os.WriteFile(f, []byte("X"), 0)
		os.Chmod(f, 0)
		os.Chmod(filepath.Join(target, "locked"), 0)
	}
	drift, _ = Verify(context.Background(), state, target)
	out["drift after change"] = drift
	out["rebuild after change"] = fmt.Sprint(Rebuild(context.Background(), state, target, sha(tars[0]), io.Discard))
}

// Unprivileged, a tree with mode-000 files and directories applies,
// rebuilds bit for bit and verifies, and reading it leaves every mode as
// it was.
func TestUnprivilegedRebuild(t *testing.T) {
	t.Parallel()
	dir, exe := unprivilegedExe(t)
	l0 := tarOf(t,
		D("etc", 0755), F("etc/shadow", "secret", 0).owner(0, 42), F("etc/passwd", "root", 0644),
		D("locked", 0), F("locked/f", "x", 0), F("locked/g", "g", 0644), D("locked/sub", 0), F("locked/sub/h", "h", 0),
		F("over", "lower", 0),
	)
	l1 := tarOf(t, F("locked/g", "g2", 0644), W("locked/sub", "h"), F("over", "upper", 0), F("etc/passwd", "root2", 0600))
	paths := layerFiles(t, dir, l0, l1)
	work := filepath.Join(dir, "work")
	target := filepath.Join(work, "rootfs")
	nobodysDirs(t, work, target)
	out := runAsNobody(t, exe, "TestUnprivilegedRebuildChild",
		rebuildChildEnv+"=1", "TARGET="+target, "STATE="+DefaultStateDir(target), "LAYERS="+strings.Join(paths, " "))
	if out["apply"] != nil {
		t.Fatalf("apply: %v", out["apply"])
	}
	if got := fmt.Sprint(out["rebuilt"]); got != "[ok ok]" {
		t.Errorf("rebuilt: %s", got)
	}
	if out["drift"] != nil || out["verify"] != "<nil>" {
		t.Errorf("verify: %v %v", out["drift"], out["verify"])
	}
	if got := fmt.Sprint(out["drift after change"]); got != "[map[changes:[content mtime] kind:changed path:locked/f]]" {
		t.Errorf("drift after change: %s", got)
	}
	if got := fmt.Sprint(out["rebuild after change"]); !strings.Contains(got, `file "locked/f" changed`) {
		t.Errorf("rebuild after change: %s", got)
	}
	// The modes are as the layers left them.
	diffTree(t, treecmpWalk(t, target), `
		dir etc 0755
		file etc/shadow 0000 content=secret
		file etc/passwd 0600 content=root2
		dir locked 0000
		file locked/f 0000 content=X
		file locked/g 0644 content=g2
		dir locked/sub 0000
		file over 0000 content=upper
	`, [2]uint32{nobody, nobody})
}

// runCopied runs cmd, whose binary the test has just copied. A test in
// parallel that forks meanwhile may hold the copy open for writing for a
// moment (ETXTBSY, golang.org/issue/22315): the run is tried again.
func runCopied(cmd *exec.Cmd) error {
	for try := 0; ; try++ {
		c := exec.Command(cmd.Path, cmd.Args[1:]...)
		c.Env, c.Dir, c.SysProcAttr = cmd.Env, cmd.Dir, cmd.SysProcAttr
		c.Stdin, c.Stdout, c.Stderr = cmd.Stdin, cmd.Stdout, cmd.Stderr
		err := c.Run()
		if !errors.Is(err, syscall.ETXTBSY) || try == 100 {
			cmd.ProcessState = c.ProcessState
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}
