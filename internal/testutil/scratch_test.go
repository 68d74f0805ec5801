package testutil

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// scratchProbeEnv makes TestScratchProbe, run as a child, print where
// its t.TempDir went; "panic" makes it panic then, as a failing test may,
// and "hold" makes it wait for its standard input to close.
const scratchProbeEnv = "OCIFETCH_TEST_SCRATCH_PROBE"

func TestScratchProbe(t *testing.T) {
	if os.Getenv(scratchProbeEnv) == "" {
		t.Skip("run by TestShortScratch as a child")
	}
	os.Stdout.WriteString("tempdir=" + filepath.Dir(t.TempDir()) + "\tTMPDIR=" + os.Getenv("TMPDIR") + "\n")
	switch os.Getenv(scratchProbeEnv) {
	case "panic":
		panic("the probe panics, as instructed")
	case "hold":
		io.Copy(io.Discard, os.Stdin)
	}
}

// probeScratch runs TestScratchProbe in a child with TMPDIR and GOTMPDIR
// unset but for set ("KEY=VALUE", or ""), in the short tier or not, with
// probe as the value of scratchProbeEnv, and returns the directory that
// held its t.TempDir (t.TempDir's parent is a directory of its own under
// TMPDIR, or GOTMPDIR if set) and the TMPDIR its tests saw.
func probeScratch(t *testing.T, set string, short bool, probe string) (scratch, tmpdir string) {
	t.Helper()
	var env []string
	for _, kv := range ChildEnv(scratchProbeEnv + "=" + probe) {
		if !strings.HasPrefix(kv, "TMPDIR=") && !strings.HasPrefix(kv, "GOTMPDIR=") {
			env = append(env, kv)
		}
	}
	if set != "" {
		env = append(env, set)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestScratchProbe$", "-test.short="+strconv.FormatBool(short))
	cmd.Env = env
	if probe == "hold" {
		// Until the test ends, while the next probes run.
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stdin.Close(); cmd.Wait() })
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil {
			t.Fatalf("no tempdir line: %q %v", line, err)
		}
		go io.Copy(io.Discard, stdout)
		return parseProbe(t, line)
	}
	out, err := cmd.CombinedOutput()
	if (err != nil) != (probe == "panic") {
		t.Fatalf("probe %s: %v\n%s", probe, err, out)
	}
	i := strings.Index(string(out), "tempdir=")
	if i < 0 {
		t.Fatalf("no tempdir line:\n%s", out)
	}
	line, _, _ := strings.Cut(string(out[i:]), "\n")
	return parseProbe(t, line)
}

// parseProbe reads TestScratchProbe's line.
func parseProbe(t *testing.T, line string) (scratch, tmpdir string) {
	t.Helper()
	dir, env, ok := strings.Cut(strings.TrimSuffix(line, "\n"), "\tTMPDIR=")
	dir, ok2 := strings.CutPrefix(dir, "tempdir=")
	if !ok || !ok2 {
		t.Fatalf("not the probe's line: %q", line)
	}
	return filepath.Dir(dir), env
}

// shmTakesScratch makes ShortScratch's choice of /dev/shm again: it
// fits, and a directory there takes user.* extended attributes.
func shmTakesScratch(t *testing.T) bool {
	t.Helper()
	if !scratchFits("/dev/shm") {
		return false
	}
	dir, err := os.MkdirTemp("/dev/shm", "ocifetch-probe-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(dir)
	return takesUserXattrs(dir)
}

// The short tier's scratch goes to a fresh directory on /dev/shm when it
// is a tmpfs with room and TMPDIR is unset, and is removed at exit; a
// TMPDIR or GOTMPDIR (where t.TempDir goes if set) the developer set,
// and the full run, are left as they are. The
// scratch of a binary that died (here: a test panicked) is removed by the
// next short-tier binary.
func TestShortScratch(t *testing.T) {
	t.Parallel()
	shmRoom := shmTakesScratch(t)
	chosen := t.TempDir()
	onShm := func(t *testing.T, scratch string) {
		t.Helper()
		if filepath.Dir(scratch) != "/dev/shm" || !strings.HasPrefix(filepath.Base(scratch), scratchPrefix) {
			t.Fatalf("scratch in %s, want a directory of its own on /dev/shm", scratch)
		}
	}
	for _, tc := range []struct {
		name  string
		set   string // TMPDIR or GOTMPDIR, else neither
		short bool
		under string // the probe's t.TempDir lies directly under it
	}{
		{"short, TMPDIR unset", "", true, map[bool]string{true: "/dev/shm", false: "/tmp"}[shmRoom]},
		{"short, TMPDIR chosen", "TMPDIR=" + chosen, true, chosen},
		{"short, GOTMPDIR chosen", "GOTMPDIR=" + chosen, true, chosen},
		{"full, TMPDIR unset", "", false, "/tmp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scratch, tmpdir := probeScratch(t, tc.set, tc.short, "1")
			want := ""
			if v, ok := strings.CutPrefix(tc.set, "TMPDIR="); ok {
				want = v
			}
			if tc.under != "/dev/shm" && tmpdir != want {
				t.Errorf("the tests saw TMPDIR=%q, want %q", tmpdir, want)
			}
			if tc.under == "/dev/shm" {
				onShm(t, scratch)
				if _, err := os.Lstat(scratch); !os.IsNotExist(err) {
					t.Errorf("%s is left after the binary exited: %v", scratch, err)
				}
				return
			}
			if scratch != tc.under {
				t.Errorf("scratch in %s, want %s", scratch, tc.under)
			}
		})
	}
	t.Run("left by a binary that panicked", func(t *testing.T) {
		if !shmRoom {
			t.Skip("/dev/shm does not fit (scratchFits): no scratch there to leave")
		}
		live, _ := probeScratch(t, "", true, "hold")
		onShm(t, live)
		left, _ := probeScratch(t, "", true, "panic")
		onShm(t, left)
		// Left there; not checked, as another package's test binary
		// starting now may already sweep it.
		t.Cleanup(func() { os.RemoveAll(left) })
		next, _ := probeScratch(t, "", true, "1")
		onShm(t, next)
		if _, err := os.Lstat(left); !os.IsNotExist(err) {
			t.Errorf("%s, left by a binary that panicked, is still there after the next short binary ran: %v", left, err)
		}
		if _, err := os.Lstat(live); err != nil {
			t.Errorf("the scratch of a binary still running was removed: %v", err)
		}
	})
}

// The scratch goes only to a tmpfs with room where commands may run and
// devices may be opened: a hardened host's /dev/shm, mounted noexec or
// nodev, would fail tests that pass on disk (the commands in BinaryDir,
// the CLI writing to a character device).
func TestScratchFits(t *testing.T) {
	if !InMountNS(t) {
		return
	}
	for _, tc := range []struct {
		name  string
		flags uintptr
		size  string
		fits  bool
	}{
		{"tmpfs", 0, "8g", true},
		{"tmpfs noexec", unix.MS_NOEXEC, "8g", false},
		{"tmpfs nodev", unix.MS_NODEV, "8g", false},
		{"tmpfs nosuid", unix.MS_NOSUID, "8g", true},
		{"tmpfs of 64 MiB", 0, "64m", false},
	} {
		if got := scratchFits(mounted(t, "tmpfs", tc.flags, "size="+tc.size)); got != tc.fits {
			t.Errorf("%s: fits %v, want %v", tc.name, got, tc.fits)
		}
	}
}

// user.* extended attributes: ramfs takes none, tmpfs takes them from
// Linux 6.6 on; a scratch that refused them would fail the apply tests
// that pass on disk.
func TestScratchTakesUserXattrs(t *testing.T) {
	if !InMountNS(t) {
		return
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		t.Fatal(err)
	}
	var major, minor int
	fmt.Sscanf(unix.ByteSliceToString(uts.Release[:]), "%d.%d", &major, &minor)
	for _, tc := range []struct {
		fstype string
		takes  bool
	}{
		{"ramfs", false},
		{"tmpfs", major > 6 || major == 6 && minor >= 6},
	} {
		if got := takesUserXattrs(mounted(t, tc.fstype, 0, "")); got != tc.takes {
			t.Errorf("%s: takes user xattrs %v, want %v", tc.fstype, got, tc.takes)
		}
	}
}

// mounted mounts a file system of fstype on a new directory, in the
// test's mount namespace (InMountNS), until the test ends.
func mounted(t *testing.T, fstype string, flags uintptr, data string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "m")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("ocifetch-scratch-test", dir, fstype, flags, data); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Error(err)
		}
	})
	return dir
}
