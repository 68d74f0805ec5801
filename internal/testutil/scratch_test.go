package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// scratchProbeEnv makes TestScratchProbe, run as a child, print where
// its t.TempDir went.
const scratchProbeEnv = "OCIFETCH_TEST_SCRATCH_PROBE"

func TestScratchProbe(t *testing.T) {
	if os.Getenv(scratchProbeEnv) == "" {
		t.Skip("run by TestShortScratch as a child")
	}
	os.Stdout.WriteString("tempdir=" + filepath.Dir(t.TempDir()) + "\n")
}

// The short tier's scratch goes to a fresh directory on /dev/shm when it
// is a tmpfs with room and TMPDIR is unset, and is removed at exit; a
// TMPDIR the developer set, and the full run, are left as they are.
func TestShortScratch(t *testing.T) {
	t.Parallel()
	shmRoom := scratchFits("/dev/shm")
	chosen := t.TempDir()
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
			var env []string
			for _, kv := range ChildEnv(scratchProbeEnv + "=1") {
				if !strings.HasPrefix(kv, "TMPDIR=") {
					env = append(env, kv)
				}
			}
			if tc.tmpdir != "" {
				env = append(env, "TMPDIR="+tc.tmpdir)
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestScratchProbe$", "-test.short="+strconv.FormatBool(tc.short))
			cmd.Env = env
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			_, line, ok := strings.Cut(string(out), "tempdir=")
			if !ok {
				t.Fatalf("no tempdir line:\n%s", out)
			}
			// t.TempDir's parent is a directory of its own under TMPDIR.
			scratch := filepath.Dir(strings.TrimSpace(strings.SplitN(line, "\n", 2)[0]))
			if tc.under == "/dev/shm" {
				if filepath.Dir(scratch) != "/dev/shm" || !strings.HasPrefix(filepath.Base(scratch), "ocifetch-test-") {
					t.Fatalf("scratch in %s, want a directory of its own on /dev/shm", scratch)
				}
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
