package apply

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/testutil"
)

// mkdeep makes n nested directories "d" below dir, relative to
// descriptors (the path soon exceeds PATH_MAX).
func mkdeep(t *testing.T, dir string, n int) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := unix.Mkdirat(fd, "d", 0755); err != nil {
			t.Fatal(err)
		}
		next, err := unix.Openat(fd, "d", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = next
	}
	unix.Close(fd)
}

// One depth limit for apply, verify and rebuild: an entry deeper than it,
// by name or through a symbolic link among its parents, is refused; a
// tree made deeper after the apply fails verify with a clear error.
func TestDepthLimit(t *testing.T) {
	t.Parallel()
	deep := strings.Repeat("d/", DefaultMaxDepth) + "f"
	_, err := ApplyLayer(context.Background(), t.TempDir(), bytes.NewReader(tarOf(t, F(deep, "x", 0644))))
	wantKind(t, err, errdefs.ErrTooLarge)
	if !strings.Contains(err.Error(), "deeper than the limit of 4096") || len(err.Error()) > 400 {
		t.Errorf("error %q", err)
	}
	_, err = ApplyLayer(context.Background(), t.TempDir(), bytes.NewReader(tarOf(t, F("a/b/c/d/e/f", "x", 0644))), WithMaxDepth(5))
	wantKind(t, err, errdefs.ErrTooLarge)
	l := tarOf(t, D("a", 0755), D("a/b", 0755), D("a/b/c", 0755), S("l", "a/b/c"), F("l/x/y/z", "z", 0644))
	_, err = ApplyLayer(context.Background(), t.TempDir(), bytes.NewReader(l), WithMaxDepth(5))
	if !errdefs.Is(err, errdefs.ErrTooLarge) || !strings.Contains(err.Error(), "lands deeper") {
		t.Errorf("through a link: %v", err)
	}
	if _, err := ApplyLayer(context.Background(), t.TempDir(), bytes.NewReader(l), WithMaxDepth(6)); err != nil {
		t.Errorf("within the limit: %v", err)
	}

	// Verify: the recorded limit (here the default, or 300 in the short
	// tier, where 4096 levels take seconds) holds for the tree.
	var opts []Option
	if testing.Short() {
		opts = append(opts, WithMaxDepth(300))
	}
	a := mustApplyRecorded(t, [][]byte{tarOf(t, F("f", "f", 0644))}, opts...)
	limit := testutil.Scale(DefaultMaxDepth, 300)
	mkdeep(t, a.target, limit+1)
	_, err = Verify(context.Background(), a.state, a.target)
	wantKind(t, err, errdefs.ErrTooLarge)
	if !strings.Contains(err.Error(), fmt.Sprintf("deeper than the limit of %d", limit)) {
		t.Errorf("verify: %v", err)
	}
	a = mustApplyRecorded(t, [][]byte{tarOf(t, F("f", "f", 0644))}, WithMaxDepth(10))
	mkdeep(t, a.target, 10)
	if d, err := Verify(context.Background(), a.state, a.target); err != nil || len(d) != 10 {
		t.Errorf("within the recorded limit: %d drifts, %v", len(d), err)
	}
	os.Remove(filepath.Join(a.target, strings.Repeat("d/", 10)[:19]))
	mkdeep(t, filepath.Join(a.target, strings.Repeat("d/", 9)), 2)
	if _, err := Verify(context.Background(), a.state, a.target); !errdefs.Is(err, errdefs.ErrTooLarge) {
		t.Errorf("past the recorded limit: %v", err)
	}
}

const deepChildEnv = "OCIFETCH_APPLY_DEEP_VERIFY_CHILD"

// TestDeepVerifyChild is the body of TestDeepVerifyFewDescriptors: it
// verifies the tree in the environment with at most 64 descriptors.
func TestDeepVerifyChild(t *testing.T) {
	if os.Getenv(deepChildEnv) == "" {
		t.Skip("runs as a child of TestDeepVerifyFewDescriptors")
	}
	lim := unix.Rlimit{Cur: 64, Max: 64}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	d, err := Verify(context.Background(), os.Getenv("STATE"), os.Getenv("TARGET"))
	out := map[string]any{"drifts": len(d)}
	if err != nil {
		out["error"] = err.Error()
	}
	json.NewEncoder(os.Stdout).Encode(out)
}

// A tree 4000 levels deep, within the limit, verifies with 64
// descriptors, in memory linear in its entries. Before, verify held a
// descriptor per level and failed with EMFILE.
func TestDeepVerifyFewDescriptors(t *testing.T) {
	t.Parallel()
	a := mustApplyRecorded(t, [][]byte{tarOf(t, F("f", "f", 0644))})
	// The short tier's 200 levels are still three times the descriptors
	// the child may hold.
	n := testutil.Scale(4000, 200)
	mkdeep(t, a.target, n)
	cmd := exec.Command(os.Args[0], "-test.run=^TestDeepVerifyChild$")
	cmd.Env = testutil.ChildEnv(deepChildEnv+"=1", "STATE="+a.state, "TARGET="+a.target)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("child: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	var out struct {
		Drifts int
		Error  string
	}
	line, _, _ := strings.Cut(stdout.String(), "\n")
	if err := json.Unmarshal([]byte(line), &out); err != nil {
		t.Fatalf("child output %q: %v", stdout.String(), err)
	}
	if out.Error != "" || out.Drifts != n {
		t.Errorf("verify of %d levels with 64 descriptors: %d drifts, error %q", n, out.Drifts, out.Error)
	}
	// The walk itself never holds more than maxOpenDirs.
	w := &walker{ctx: context.Background(), maxDepth: DefaultMaxDepth, fn: func(string, *unix.Stat_t, int, string) error { return nil }}
	fd, _ := unix.Open(a.target, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	defer unix.Close(fd)
	if err := w.run(fd); err != nil || w.peakOpen > maxOpenDirs {
		t.Errorf("walk: %v, %d descriptors at most", err, w.peakOpen)
	}
	// A directory replaced while the walk is below it is noticed, never
	// followed elsewhere: d/d has an entry after d/d/d, which the walk
	// reaches by opening d/d again.
	os.WriteFile(filepath.Join(a.target, "d", "d", "zz"), nil, 0644)
	count := 0
	w = &walker{ctx: context.Background(), maxDepth: DefaultMaxDepth, fn: func(p string, _ *unix.Stat_t, _ int, _ string) error {
		if count++; count == 100 {
			old := filepath.Join(a.target, "d", "d")
			if err := os.Rename(old, filepath.Join(a.target, "moved")); err != nil {
				t.Fatal(err)
			}
			os.MkdirAll(filepath.Join(old, strings.Repeat("d/", 50)), 0755)
		}
		return nil
	}}
	if err := w.run(fd); err == nil || !strings.Contains(err.Error(), "changed while it was read") {
		t.Errorf("walk of a tree replaced under it: %v", err)
	}
}
