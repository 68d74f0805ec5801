package apply

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/apply/internal/treecmp"
	"github.com/ocifetch/ocifetch/errdefs"
)

// The lock belongs to the target directory, not to the name or the state
// directory that reaches it: while an apply holds a target, a second one
// through a symbolic link to it, or through the same name with another
// state directory, fails at once with busy and creates nothing (not even
// its state directory). The first completes and verifies clean. Before,
// each locked only its own state directory: both ran, the one that
// failed emptied the shared tree, and the other recorded it complete with
// files missing, which verify called clean.
func TestApplyBusyWhateverName(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "rootfs")
	os.Mkdir(target, 0755)
	alias := filepath.Join(dir, "alias")
	os.Symlink("rootfs", alias)
	// Held before its first byte, as the attack found it: the tree is
	// still empty, so nothing but a lock can stop a second apply.
	h := startHeldApply(t, target, 0)
	state := h.a.state
	before := treecmpWalk(t, dir)
	// A layer that would fail: were the second apply to run, its failure
	// would empty the tree.
	tooBig := []Layer{blob(t, mtTar, tarOf(t, F("big", strings.Repeat("x", 4096), 0644)))}
	for _, c := range []struct{ name, target, state string }{
		{"through a symbolic link", alias, DefaultStateDir(alias)},
		{"with another state directory", target, filepath.Join(dir, "other-state")},
		{"through a link and a state inside nothing", alias, filepath.Join(dir, "deep", "state")},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			_, err := Apply(context.Background(), c.target, tooBig, WithStateDir(c.state), WithMaxLayerBytes(100))
			wantKind(t, err, errdefs.ErrBusy)
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("busy after %v, not at once", d)
			}
			if err := CheckTarget(c.target, c.state); !errdefs.Is(err, errdefs.ErrBusy) {
				t.Errorf("CheckTarget: %v, want busy", err)
			}
			if diffs := treecmp.Diff(treecmpWalk(t, dir), before, treecmp.Options{}); len(diffs) > 0 {
				t.Errorf("the busy apply touched something: %v", diffs)
			}
		})
	}
	// Verify and Rebuild take the target's lock shared: busy too, by
	// whichever name.
	_, err := Verify(context.Background(), state, alias)
	wantKind(t, err, errdefs.ErrBusy)
	h.finish(t)
}

// blockingWriter blocks its first Write until released, and says when
// it got there.
type blockingWriter struct {
	reached, release chan struct{}
	once             bool
	buf              bytes.Buffer
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	if !w.once {
		w.once = true
		close(w.reached)
		<-w.release
	}
	return w.buf.Write(p)
}

// While a rebuild reads a tree, an apply into that directory through
// another name and state directory is busy: rebuild holds the target's
// lock shared. Before, only the state directory was locked.
func TestRebuildHoldsTheTarget(t *testing.T) {
	a := mustApplyRecorded(t, [][]byte{tarOf(t, F("f", strings.Repeat("f", 5000), 0644))})
	w := &blockingWriter{reached: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- Rebuild(context.Background(), a.state, a.target, sha(a.tars[0]), w) }()
	<-w.reached
	alias := filepath.Join(filepath.Dir(a.target), "alias")
	os.Symlink(a.target, alias)
	_, err := Apply(context.Background(), alias, layers(t, []e{F("g", "g", 0644)}), WithStateDir(DefaultStateDir(alias)))
	wantKind(t, err, errdefs.ErrBusy)
	if _, err := os.Lstat(DefaultStateDir(alias)); !os.IsNotExist(err) {
		t.Errorf("the busy apply made its state directory: %v", err)
	}
	close(w.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(w.buf.Bytes(), a.tars[0]) {
		t.Error("rebuilt layer differs")
	}
}

// A lock is released when its holder is done, even while a copy of its
// descriptor lives on: the copy a child process holds between fork and
// exec (any goroutine of the program may be starting one). Before,
// release only closed the descriptor, which leaves a flock held by any
// copy: a Rebuild or Verify right after an Apply failed now and then with
// "in use by another process", naming this process.
func TestReleaseDespiteDescriptorCopies(t *testing.T) {
	t.Parallel()
	a := mustApplyRecorded(t, [][]byte{tarOf(t, F("a", "a", 0644))})
	target, err := lockTarget(a.target, true)
	if err != nil {
		t.Fatal(err)
	}
	state, _, err := lockState(a.state, true, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range []uintptr{target.f.Fd(), state.f.Fd()} {
		dup, err := unix.Dup(int(fd)) // what a forked child holds
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(dup)
	}
	target.release()
	state.release()
	if _, err := Verify(context.Background(), a.state, a.target); err != nil {
		t.Fatalf("Verify after the locks were released: %v", err)
	}
	if err := CheckTarget(a.target, a.state); err != nil && errdefs.Is(err, errdefs.ErrBusy) {
		t.Fatalf("CheckTarget: %v", err)
	}
}
