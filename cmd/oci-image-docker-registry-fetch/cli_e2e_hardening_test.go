package main

// End-to-end tests of the faults an adversarial review found in what
// issue 10 built: the lock of a target reached by two names, a state
// directory another user made, a rerun that crossed a bind mount, the
// target directory left out of verify, rebuild -o over devices and
// FIFOs, and --json names that are not UTF-8.

import (
	"bytes"
	"encoding/base64"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/apply"
	"github.com/ocifetch/ocifetch/internal/testutil"
)

func requireRootCLI(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

// Two unpacks of one directory through two names, the first held
// mid-layer by the registry: the second, through a symbolic link or with
// another --state, gets busy (exit 7) at once and creates nothing;
// verify through the link is busy too; the first completes and verifies
// clean. Before, both ran (each locked its own state directory): the
// second, failing, emptied the tree, and the first recorded it complete
// with files missing.
func TestCLIE2EUnpackThroughAnotherNameIsBusy(t *testing.T) {
	t.Parallel()
	ref, reached, release := heldRegistry(t)
	defer release()
	env := cliEnv(t)
	work := t.TempDir()
	rootfs := filepath.Join(work, "rootfs")
	os.Mkdir(rootfs, 0o755)
	alias := filepath.Join(work, "alias")
	os.Symlink("rootfs", alias)
	first := startHeld(t, env, reached, "unpack", "--quiet", "--store", filepath.Join(work, "store"), ref, rootfs)
	before := snapshot(t, work)
	for _, args := range [][]string{
		{"unpack", "--json", "--max-layer-bytes", "100", "--store", filepath.Join(work, "store"), ref, alias},
		{"unpack", "--json", "--max-layer-bytes", "100", "--store", filepath.Join(work, "store"), "--state", filepath.Join(work, "other"), ref, rootfs},
		{"verify", "--json", "--state", apply.DefaultStateDir(rootfs), alias},
	} {
		start := time.Now()
		r := runBuilt(t, env, args...)
		if k, _ := exactJSONError(t, r.stdout); r.code != 7 || k != "busy" {
			t.Errorf("%v: exit %d kind %q, want 7 busy\n%s%s", args, r.code, k, r.stdout, r.stderr)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("%v: busy after %v", args, d)
		}
		if diffs := treeDiff(before, snapshot(t, work)); len(diffs) > 0 {
			t.Errorf("%v changed something: %v", args, diffs)
		}
	}
	release()
	if err := first.Wait(); err != nil {
		t.Fatalf("first unpack: %v", err)
	}
	mustRun(t, env, "verify", rootfs)
	mustRun(t, env, "rebuild", "--all", "--check", rootfs)
}

// A state directory another user made beside the target (in a shared
// parent, as /tmp) is refused: unpack exits 2 naming it and writes
// nothing; verify of a tree whose state was handed to another user exits
// 2 too. Before, unpack used it as it was, and that user could later
// rewrite tree.json.zst so that verify said clean about a tampered tree.
func TestCLIE2EStateDirOfAnotherUser(t *testing.T) {
	t.Parallel()
	requireRootCLI(t)
	ref, env, work := oneFileLayout(t, "etc/motd", "hello\n")
	os.Chmod(work, 0o1777)
	rootfs := filepath.Join(work, "rootfs")
	state := filepath.Join(work, ".rootfs.ocifetch")
	os.Mkdir(state, 0o777)
	os.Chmod(state, 0o777)
	os.Chown(state, 65534, 65534)
	r := runBuilt(t, env, "unpack", "--json", "--store", filepath.Join(work, "store"), ref, rootfs)
	k, msg := exactJSONError(t, r.stdout)
	if r.code != exitUsage || k != "invalid_argument" || !strings.Contains(msg, state) || !strings.Contains(msg, "uid 65534") {
		t.Errorf("unpack beside another user's state directory: exit %d kind %q %q", r.code, k, msg)
	}
	if names := dirEntries(state); len(names) != 0 {
		t.Errorf("unpack wrote into it: %v", names)
	}
	if _, err := os.Lstat(rootfs); !os.IsNotExist(err) {
		t.Errorf("unpack made the target: %v", err)
	}
	os.Remove(state)
	mustRun(t, env, "unpack", "--quiet", "--store", filepath.Join(work, "store"), ref, rootfs)
	if fi, err := os.Stat(state); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the state directory unpack made: %v %v, want mode 0700", fi.Mode(), err)
	}
	os.Chown(state, 65534, 65534)
	r = runBuilt(t, env, "verify", "--json", rootfs)
	if k, msg := exactJSONError(t, r.stdout); r.code != exitUsage || k != "invalid_argument" || !strings.Contains(msg, state) {
		t.Errorf("verify with another user's state: exit %d kind %q %q", r.code, k, msg)
	}
}

// A rerun after a killed unpack, with a bind mount inside the target:
// it exits 2 (invalid_argument) naming the mount point and saying to
// unmount it, and the mounted directory keeps its files. Before, the
// rerun deleted them, then failed with EBUSY. The rerun runs in a mount
// namespace of its own (unshare -m), where the bind mount is.
func TestCLIE2ERerunStopsAtMountPoint(t *testing.T) {
	t.Parallel()
	requireRootCLI(t)
	if _, err := exec.LookPath("unshare"); err != nil {
		testutil.Missing(t, "unshare (util-linux)")
	}
	ref, reached, release := heldRegistry(t)
	env := cliEnv(t)
	work := t.TempDir()
	rootfs := filepath.Join(work, "rootfs")
	cmd := startHeld(t, env, reached, "unpack", "--quiet", "--store", filepath.Join(work, "store"), ref, rootfs)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	release()
	if st, err := apply.Status(apply.DefaultStateDir(rootfs)); err != nil || st.Status != apply.StatusApplying {
		t.Fatalf("after SIGKILL: %+v %v", st, err)
	}
	precious := filepath.Join(work, "precious")
	os.Mkdir(precious, 0o755)
	os.WriteFile(filepath.Join(precious, "file"), []byte("do not delete"), 0o644)
	os.Mkdir(filepath.Join(rootfs, "mnt"), 0o755)
	script := `mount --bind "$1" "$2" && exec "$3" unpack --json --store "$4" "$5" "$6"`
	sh := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
		precious, filepath.Join(rootfs, "mnt"), builtCLI(t), filepath.Join(work, "store"), ref, rootfs)
	sh.Env = env
	var stdout bytes.Buffer
	sh.Stdout = &stdout
	sh.Run()
	k, msg := exactJSONError(t, stdout.String())
	if code := sh.ProcessState.ExitCode(); code != exitUsage || k != "invalid_argument" || !strings.Contains(msg, `"mnt"`) || !strings.Contains(msg, "unmount") {
		t.Errorf("rerun over a bind mount: exit %d kind %q %q", code, k, msg)
	}
	if b, err := os.ReadFile(filepath.Join(precious, "file")); err != nil || string(b) != "do not delete" {
		t.Fatalf("the mounted directory lost its file: %q %v", b, err)
	}
	// Unmounted (the namespace is gone), the rerun completes.
	mustRun(t, env, "unpack", "--quiet", "--store", filepath.Join(work, "store"), ref, rootfs)
	mustRun(t, env, "verify", rootfs)
}

// verify compares the target directory itself, printed as ".": its
// mode, owner and xattrs, and with --dir-mtimes its mtime. Before, a
// chmod 0777 of the root verified clean.
func TestCLIE2EVerifyRootDir(t *testing.T) {
	t.Parallel()
	u := unpackLayers(t, layerOf(t, efile("etc/motd", "hello\n", 0o644)))
	os.Chmod(u.rootfs, 0o777)
	r := runBuilt(t, u.env, "verify", u.rootfs)
	if r.code != exitVerification || r.stdout != "changed . (mode)\n" {
		t.Errorf("verify after chmod 0777 of the root: exit %d, stdout %q", r.code, r.stdout)
	}
	os.Chmod(u.rootfs, 0o755)
	mustRun(t, u.env, "verify", u.rootfs)
	os.Chtimes(u.rootfs, time.Unix(978307200, 0), time.Unix(978307200, 0))
	mustRun(t, u.env, "verify", u.rootfs)
	r = runBuilt(t, u.env, "verify", "--dir-mtimes", u.rootfs)
	if r.code != exitVerification || r.stdout != "changed . (mtime)\n" {
		t.Errorf("verify --dir-mtimes after touching the root: exit %d, stdout %q", r.code, r.stdout)
	}
}

// rebuild -o FILE as tar -f and curl -o treat it: a character device, a
// FIFO or a socket is written through (and stays what it is), a
// directory is a usage error, a symbolic link is followed, dangling or
// not, and a regular file is replaced whole. Before, -o renamed a
// regular file over whatever FILE was: a device or FIFO became a file.
func TestCLIE2ERebuildOutputKinds(t *testing.T) {
	t.Parallel()
	layer := layerOf(t, efile("etc/motd", "hello\n", 0o644), efile("bin/app", strings.Repeat("app ", 3000), 0o755))
	u := unpackLayers(t, layer)
	dir := t.TempDir()
	rebuildTo := func(out string) cliRun {
		t.Helper()
		return runBuilt(t, u.env, "rebuild", "--layer", "1", "-o", out, u.rootfs)
	}
	checkOutputKinds(t, dir, layer, rebuildTo)
	t.Run("directory", func(t *testing.T) {
		d := filepath.Join(dir, "d")
		os.Mkdir(d, 0o755)
		r := runBuilt(t, u.env, "rebuild", "--json", "--layer", "1", "-o", d, u.rootfs)
		if k, _ := exactJSONError(t, r.stdout); r.code != exitUsage || k != "invalid_argument" {
			t.Errorf("-o DIR: exit %d kind %q", r.code, k)
		}
		if names := dirEntries(d); len(names) != 0 {
			t.Errorf("wrote into the directory: %v", names)
		}
	})
	t.Run("standard output through /proc", func(t *testing.T) {
		// A private link to /proc/self/fd/1, which is what /dev/stdout is.
		link := filepath.Join(dir, "stdout")
		os.Symlink("/proc/self/fd/1", link)
		cmd := exec.Command(builtCLI(t), "rebuild", "--layer", "1", "-o", link, u.rootfs)
		cmd.Env = u.env
		var out bytes.Buffer
		cmd.Stdout = &out
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), layer) || fileType(t, link) != unix.S_IFLNK {
			t.Errorf("standard output got %d bytes; the link is type %o", out.Len(), fileType(t, link))
		}
	})
}

// checkOutputKinds holds rebuild -o FILE, run by rebuildTo, to what
// TestCLIE2ERebuildOutputKinds says of it, for the FILEs made in dir: a
// character device (as root), a FIFO and a socket are written through
// and stay what they are; a symbolic link is followed, dangling or not,
// and the regular file it reaches is replaced whole, keeping its mode.
// want is what the command must write.
func checkOutputKinds(t *testing.T, dir string, want []byte, rebuildTo func(out string) cliRun) {
	t.Helper()
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
		// Through the user's symbolic link too.
		os.Symlink(dev, filepath.Join(dir, "to-null"))
		if r := rebuildTo(filepath.Join(dir, "to-null")); r.code != 0 || fileType(t, dev) != unix.S_IFCHR || fileType(t, filepath.Join(dir, "to-null")) != unix.S_IFLNK {
			t.Errorf("through a link: exit %d %s", r.code, r.stderr)
		}
	})
	// A FIFO and a socket are written through: the reader at the other
	// end gets want, and the file stays what it was.
	for _, tc := range []struct {
		name string
		mode uint32
		// listen makes the file at p and returns how to take its reader.
		listen func(t *testing.T, p string) func() (io.ReadCloser, error)
	}{
		{"FIFO", unix.S_IFIFO, func(t *testing.T, p string) func() (io.ReadCloser, error) {
			if err := unix.Mkfifo(p, 0o600); err != nil {
				t.Fatal(err)
			}
			return func() (io.ReadCloser, error) { return os.Open(p) }
		}},
		{"socket", unix.S_IFSOCK, func(t *testing.T, p string) func() (io.ReadCloser, error) {
			l, err := net.Listen("unix", p)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			return func() (io.ReadCloser, error) { return l.Accept() }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name)
			accept := tc.listen(t, p)
			got := make(chan []byte, 1)
			go func() {
				rc, err := accept()
				if err != nil {
					got <- nil
					return
				}
				b, _ := io.ReadAll(rc)
				rc.Close()
				got <- b
			}()
			if r := rebuildTo(p); r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			if b := receive(t, got); !bytes.Equal(b, want) {
				t.Errorf("the reader got %d bytes, not the %d written", len(b), len(want))
			}
			if fileType(t, p) != tc.mode {
				t.Errorf("the %s is no longer one", tc.name)
			}
		})
	}
	t.Run("symbolic links", func(t *testing.T) {
		file := filepath.Join(dir, "out.tar")
		os.WriteFile(file, []byte("old"), 0o600)
		os.Symlink("out.tar", filepath.Join(dir, "link"))
		if r := rebuildTo(filepath.Join(dir, "link")); r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		if b, _ := os.ReadFile(file); !bytes.Equal(b, want) || fileType(t, filepath.Join(dir, "link")) != unix.S_IFLNK {
			t.Errorf("through a link to a file: %d bytes", len(b))
		}
		if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
			t.Errorf("the replaced file's mode: %v", fi.Mode())
		}
		os.Symlink("new.tar", filepath.Join(dir, "dangling"))
		if r := rebuildTo(filepath.Join(dir, "dangling")); r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "new.tar")); !bytes.Equal(b, want) || fileType(t, filepath.Join(dir, "dangling")) != unix.S_IFLNK {
			t.Errorf("through a dangling link: %d bytes", len(b))
		}
	})
}

// fileType is the S_IFMT bits of p, not following a symbolic link.
func fileType(t *testing.T, p string) uint32 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Mode & unix.S_IFMT
}

// receive waits for what a reader got; a reader nobody writes to (the
// FIFO or socket was replaced by a file) gets nothing.
func receive(t *testing.T, got <-chan []byte) []byte {
	t.Helper()
	select {
	case b := <-got:
		return b
	case <-time.After(20 * time.Second):
		t.Error("nothing was written to the reader")
		return nil
	}
}

// --json stays exact for names that are not UTF-8: each such path comes
// with pathRaw (the bytes, base64), and a rootfs argument likewise with
// rootfsRaw, in verify and rebuild. Before, \xff\xfe and \xfe\xff both
// came out as "\ufffd\ufffd".
func TestCLIE2EJSONRawNames(t *testing.T) {
	t.Parallel()
	layer := layerOf(t, efile("etc/motd", "hello\n", 0o644))
	ref, _ := ociLayout(t, ocispec.ImageConfig{}, layer)
	env := cliEnv(t)
	work := t.TempDir()
	rootfs := filepath.Join(work, "root\xff")
	mustRun(t, env, "unpack", "--quiet", "--store", filepath.Join(work, "store"), ref, rootfs)
	os.WriteFile(filepath.Join(rootfs, "\xff\xfe"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(rootfs, "\xfe\xff"), []byte("y"), 0o644)
	var v struct {
		Rootfs    string `json:"rootfs"`
		RootfsRaw []byte `json:"rootfsRaw"`
		Drift     []struct {
			Path    string `json:"path"`
			PathRaw []byte `json:"pathRaw"`
			Kind    string `json:"kind"`
		} `json:"drift"`
	}
	r := runBuilt(t, env, "verify", "--json", rootfs)
	if err := jsonUnmarshal(r.stdout, &v); err != nil || r.code != exitVerification {
		t.Fatalf("verify --json: exit %d %v\n%s", r.code, err, r.stdout)
	}
	if string(v.RootfsRaw) != rootfs {
		t.Errorf("rootfsRaw %q, want %q", v.RootfsRaw, rootfs)
	}
	if len(v.Drift) != 2 || string(v.Drift[0].PathRaw) != "\xfe\xff" || string(v.Drift[1].PathRaw) != "\xff\xfe" {
		t.Errorf("drift %+v", v.Drift)
	}
	if !strings.Contains(r.stdout, `"pathRaw": "`+base64.StdEncoding.EncodeToString([]byte("\xfe\xff"))+`"`) {
		t.Errorf("pathRaw is not the bytes in base64: %s", r.stdout)
	}
	os.Remove(filepath.Join(rootfs, "\xff\xfe"))
	os.Remove(filepath.Join(rootfs, "\xfe\xff"))
	r = runBuilt(t, env, "rebuild", "--all", "--check", "--json", rootfs)
	if err := jsonUnmarshal(r.stdout, &v); err != nil || r.code != 0 || string(v.RootfsRaw) != rootfs {
		t.Errorf("rebuild --json: exit %d %v rootfsRaw %q\n%s", r.code, err, v.RootfsRaw, r.stdout)
	}
	// A UTF-8 name has no raw form.
	u := unpackLayers(t, layer)
	r = runBuilt(t, u.env, "verify", "--json", u.rootfs)
	if strings.Contains(r.stdout, `Raw"`) {
		t.Errorf("raw form for UTF-8 names: %s", r.stdout)
	}
}
