package testutil

import (
	"bufio"
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
	os.Stdout.WriteString("tempdir=" + filepath.Dir(t.TempDir()) + "\n")
	switch os.Getenv(scratchProbeEnv) {
	case "panic":
		panic("the probe panics, as instructed")
	case "hold":
		io.Copy(io.Discard, os.Stdin)
	}
}

// probeScratch runs TestScratchProbe in a child with TMPDIR set to tmpdir
// ("" unsets it), in the short tier or not, with probe as the value of
// scratchProbeEnv, and returns the directory that held its t.TempDir
// (t.TempDir's parent is a directory of its own under TMPDIR).
func probeScratch(t *testing.T, tmpdir string, short bool, probe string) string {
	t.Helper()
	var env []string
	for _, kv := range ChildEnv(scratchProbeEnv + "=" + probe) {
		if !strings.HasPrefix(kv, "TMPDIR=") {
			env = append(env, kv)
		}
	}
	if tmpdir != "" {
		env = append(env, "TMPDIR="+tmpdir)
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
		dir, ok := strings.CutPrefix(strings.TrimSpace(line), "tempdir=")
		if err != nil || !ok {
			t.Fatalf("no tempdir line: %q %v", line, err)
		}
		go io.Copy(io.Discard, stdout)
		return filepath.Dir(dir)
	}
	out, err := cmd.CombinedOutput()
	if (err != nil) != (probe == "panic") {
		t.Fatalf("probe %s: %v\n%s", probe, err, out)
	}
	_, line, ok := strings.Cut(string(out), "tempdir=")
	if !ok {
		t.Fatalf("no tempdir line:\n%s", out)
	}
	return filepath.Dir(strings.TrimSpace(strings.SplitN(line, "\n", 2)[0]))
}

// The short tier's scratch goes to a fresh directory on /dev/shm when it
// is a tmpfs with room and TMPDIR is unset, and is removed at exit; a
// TMPDIR the developer set, and the full run, are left as they are. The
// scratch of a binary that died (here: a test panicked) is removed by the
// next short-tier binary.
func TestShortScratch(t *testing.T) {
	t.Parallel()
	shmRoom := scratchFits("/dev/shm")
	chosen := t.TempDir()
	onShm := func(t *testing.T, scratch string) {
		t.Helper()
		if filepath.Dir(scratch) != "/dev/shm" || !strings.HasPrefix(filepath.Base(scratch), scratchPrefix) {
			t.Fatalf("scratch in %s, want a directory of its own on /dev/shm", scratch)
		}
	}
	for _, tc := range []struct {
		name   string
		tmpdir string // "" unsets TMPDIR
		short  bool
		under  string // the probe's t.TempDir lies directly under it
	}{
		{"short, TMPDIR unset", "", true, map[bool]string{true: "/dev/shm", false: "/tmp"}[shmRoom]},
		{"short, TMPDIR chosen", chosen, true, chosen},
		{"full, TMPDIR unset", "", false, "/tmp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scratch := probeScratch(t, tc.tmpdir, tc.short, "1")
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
		live := probeScratch(t, "", true, "hold")
		onShm(t, live)
		left := probeScratch(t, "", true, "panic")
		onShm(t, left)
		if _, err := os.Lstat(left); err != nil {
			t.Fatalf("the panicked binary's scratch: %v; want it left, for the next binary to remove", err)
		}
		t.Cleanup(func() { os.RemoveAll(left) })
		onShm(t, probeScratch(t, "", true, "1"))
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
		dir := filepath.Join(t.TempDir(), "m")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("ocifetch-scratch-test", dir, "tmpfs", tc.flags, "size="+tc.size); err != nil {
			t.Fatal(err)
		}
		if got := scratchFits(dir); got != tc.fits {
			t.Errorf("%s: fits %v, want %v", tc.name, got, tc.fits)
		}
		if err := unix.Unmount(dir, 0); err != nil {
			t.Fatal(err)
		}
	}
}
