package apply

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ocifetch/ocifetch/apply/internal/treecmp"
	"github.com/ocifetch/ocifetch/errdefs"
)

// The failed-unpack rule and the lock, at the library: what Apply leaves
// and what it refuses to touch.

// blockingLayer is a layer whose Open waits for release, and says when it
// was opened.
func blockingLayer(l Layer) (Layer, chan struct{}, chan struct{}) {
	opened, release := make(chan struct{}), make(chan struct{})
	open := l.Open
	l.Open = func(ctx context.Context) (io.ReadCloser, error) {
		close(opened)
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return open(ctx)
	}
	return l, opened, release
}

// Two applies into one target at once: the second fails at once with
// busy and touches nothing; the first completes and the tree verifies
// clean. Before, the second took the first's "applying" state for a crash
// and wiped the tree under it, which the first then recorded complete.
func TestApplyBusy(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	h := startHeldApply(t, filepath.Join(dir, "rootfs"), 1) // layer 1 applied, layer 2 held mid-apply
	target, state := h.a.target, h.a.state
	before := treecmpWalk(t, dir)
	start := time.Now()
	_, err := Apply(context.Background(), target, []Layer{blob(t, mtTar, h.a.tars[0])}, WithStateDir(state))
	wantKind(t, err, errdefs.ErrBusy)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("busy after %v, not at once", d)
	}
	if err := CheckTarget(target, state); !errdefs.Is(err, errdefs.ErrBusy) {
		t.Errorf("CheckTarget: %v, want busy", err)
	}
	_, err = Verify(context.Background(), state, target)
	wantKind(t, err, errdefs.ErrBusy)
	if diffs := treecmp.Diff(treecmpWalk(t, dir), before, treecmp.Options{}); len(diffs) > 0 {
		t.Errorf("the busy apply touched the tree or the state: %v", diffs)
	}
	h.finish(t)
}

// heldApply is an Apply of two layers (etc/a and etc/b, then etc/c)
// running in a goroutine of its own, held at the start of one layer
// until finish.
type heldApply struct {
	a       applied
	release chan struct{}
	done    chan error
}

// startHeldApply starts the Apply into target (with its default state
// directory) and returns once it holds layer held (0 or 1) open.
func startHeldApply(t *testing.T, target string, held int) *heldApply {
	t.Helper()
	h := &heldApply{a: applied{target: target, state: DefaultStateDir(target), tars: [][]byte{
		tarOf(t, D("etc", 0755), F("etc/a", "a", 0644), F("etc/b", "b", 0644)),
		tarOf(t, F("etc/c", "c", 0644)),
	}}, done: make(chan error, 1)}
	ls := []Layer{blob(t, mtTar, h.a.tars[0]), blob(t, mtTar, h.a.tars[1])}
	var opened chan struct{}
	ls[held], opened, h.release = blockingLayer(ls[held])
	go func() {
		_, err := Apply(context.Background(), target, ls, WithStateDir(h.a.state))
		h.done <- err
	}()
	<-opened
	return h
}

// finish lets the held Apply go on and checks that it completed as if
// nothing had happened meanwhile: the tree of both layers, clean, each
// layer rebuilding bit for bit.
func (h *heldApply) finish(t *testing.T) {
	t.Helper()
	close(h.release)
	if err := <-h.done; err != nil {
		t.Fatal(err)
	}
	h.a.noDrift(t)
	h.a.checkRebuilds(t)
	checkTree(t, h.a.target, `
		dir etc 0755
		file etc/a content=a
		file etc/b content=b
		file etc/c content=c
	`)
}

// A state.json planted (or left stale) beside a directory that is not
// the one it describes never leads to deleting anything: the user's
// files stay, and the error names the state directory to remove.
func TestPlantedStateDeletesNothing(t *testing.T) {
	t.Parallel()
	l := blob(t, mtTar, tarOf(t, F("x", "x", 0644)))
	for _, c := range []struct {
		name  string
		state string // state.json's content
	}{
		{"no identity", `{"version":2,"status":"applying","layers":[]}`},
		{"another directory", `{"version":2,"status":"applying","layers":[],"target":{"dev":1,"ino":2}}`},
		{"previous version", `{"version":1,"status":"applying","layers":[]}`},
		{"complete, another directory", `{"version":2,"status":"complete","layers":[],"target":{"dev":1,"ino":2}}`},
		{"corrupt", `{"version":`},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			project := filepath.Join(dir, "project")
			os.Mkdir(project, 0755)
			os.WriteFile(filepath.Join(project, "notes.txt"), []byte("precious"), 0644)
			state := DefaultStateDir(project)
			os.Mkdir(state, 0755)
			os.WriteFile(filepath.Join(state, stateFile), []byte(c.state), 0644)
			before := treecmpWalk(t, dir)
			_, err := Apply(context.Background(), project, []Layer{l}, WithStateDir(state))
			wantKind(t, err, errdefs.ErrInvalidArgument)
			if !strings.Contains(err.Error(), state) {
				t.Errorf("error %q does not name %s", err, state)
			}
			if err := CheckTarget(project, state); !errdefs.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("CheckTarget: %v", err)
			}
			after := treecmpWalk(t, dir)
			// The lock file is the only thing an Apply may add.
			var kept []treecmp.Entry
			for _, e := range after {
				if e.Path != filepath.Join(filepath.Base(state), lockFile) {
					kept = append(kept, e)
				}
			}
			if diffs := treecmp.Diff(kept, before, treecmp.Options{IgnoreDirMtime: true}); len(diffs) > 0 {
				t.Errorf("files changed: %v", diffs)
			}
		})
	}
}

// A crash leaves "applying": the next Apply empties the target (never
// replacing the directory, nor a symbolic link given as the target) and
// starts over.
func TestApplyAfterCrash(t *testing.T) {
	t.Parallel()
	l0 := tarOf(t, D("d", 0755), F("d/f", "f", 0644), F("g", "g", 0644))
	l1 := tarOf(t, F("h", "h", 0644))
	for _, viaLink := range []bool{false, true} {
		dir := t.TempDir()
		real := filepath.Join(dir, "real")
		target := real
		if viaLink {
			os.Mkdir(real, 0755)
			target = filepath.Join(dir, "link")
			os.Symlink("real", target)
		}
		state := filepath.Join(dir, "state")
		a := applied{target: target, state: state, tars: [][]byte{l0, l1}}
		if _, err := Apply(context.Background(), target, []Layer{blob(t, mtTar, l0)}, WithStateDir(state)); err != nil {
			t.Fatal(err)
		}
		// What a SIGKILL before the end leaves: the state says applying.
		st, _ := Status(state)
		st.Status, st.Completed = StatusApplying, nil
		if err := writeState(state, st); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(real, "left-over"), nil, 0644)
		var before [2]uint64
		if id, err := targetIDOf(target); err == nil {
			before = [2]uint64{id.Dev, id.Ino}
		}
		if _, err := Apply(context.Background(), target, []Layer{blob(t, mtTar, l0), blob(t, mtTar, l1)}, WithStateDir(state)); err != nil {
			t.Fatal(err)
		}
		if id, _ := targetIDOf(target); [2]uint64{id.Dev, id.Ino} != before {
			t.Error("the target directory was replaced")
		}
		if fi, err := os.Lstat(target); err != nil || viaLink != (fi.Mode()&os.ModeSymlink != 0) {
			t.Errorf("the target given as a symbolic link is no longer one: %v %v", fi, err)
		}
		checkTree(t, real, `
			dir d 0755
			file d/f content=f
			file g content=g
			file h content=h
		`)
		a.noDrift(t)
		a.checkRebuilds(t)
	}
}

// A failure before the first byte leaves the target exactly as it was:
// not made when it did not exist, and a caught failure after it removes
// what the apply made, a target given as a symbolic link staying one.
func TestApplyFailureLeavesTargetAsItWas(t *testing.T) {
	t.Parallel()
	good := blob(t, mtTar, tarOf(t, F("a", "a", 0644)))
	bad := blob(t, mtTar, tarOf(t, F("b", "b", 0644)))
	bad.DiffID = sha([]byte("wrong"))
	failOpen := good
	failOpen.Open = func(context.Context) (io.ReadCloser, error) {
		return nil, errdefs.New(errdefs.ErrNetwork, "the registry went away")
	}
	for _, c := range []struct {
		name   string
		layers []Layer
		kind   errdefs.Kind
	}{
		{"before the first byte", []Layer{failOpen}, errdefs.ErrNetwork},
		{"after the first layer", []Layer{good, bad}, errdefs.ErrDigestMismatch},
		{"cancelled", []Layer{good, failOpen}, errdefs.ErrNetwork},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			target := filepath.Join(dir, "new", "rootfs")
			_, err := Apply(context.Background(), target, c.layers, WithStateDir(filepath.Join(dir, "new", ".rootfs.ocifetch")))
			wantKind(t, err, c.kind)
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("left behind in an empty directory: %v", ents)
			}
			// A target that exists, as a symbolic link to an empty dir.
			os.Mkdir(filepath.Join(dir, "real"), 0755)
			os.Symlink("real", filepath.Join(dir, "link"))
			_, err = Apply(context.Background(), filepath.Join(dir, "link"), c.layers, WithStateDir(filepath.Join(dir, "state")))
			wantKind(t, err, c.kind)
			var names []string
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				names = append(names, e.Name())
			}
			if strings.Join(names, ",") != "link,real" {
				t.Errorf("left behind: %v", names)
			}
			if ents, _ := os.ReadDir(filepath.Join(dir, "real")); len(ents) != 0 {
				t.Errorf("target not emptied: %v", ents)
			}
		})
	}
}

// Apply into a target holding a complete unpack is refused, naming both
// directories; a state without a lock file (format 1 trees) or a
// complete state over an emptied target is applied again.
func TestApplyOverCompleteTree(t *testing.T) {
	t.Parallel()
	l := blob(t, mtTar, tarOf(t, F("a", "a", 0644)))
	dir := t.TempDir()
	target := filepath.Join(dir, "rootfs")
	state := DefaultStateDir(target)
	if _, err := Apply(context.Background(), target, []Layer{l}, WithStateDir(state)); err != nil {
		t.Fatal(err)
	}
	_, err := Apply(context.Background(), target, []Layer{l}, WithStateDir(state))
	wantKind(t, err, errdefs.ErrInvalidArgument)
	if !strings.Contains(err.Error(), "already holds a complete unpack") || !strings.Contains(err.Error(), state) {
		t.Errorf("error %q", err)
	}
	os.Remove(filepath.Join(target, "a"))
	if _, err := Apply(context.Background(), target, []Layer{l}, WithStateDir(state)); err != nil {
		t.Errorf("over an emptied complete tree: %v", err)
	}
}

// Status of a state written by another version says so, and what to do.
func TestStatusOtherVersion(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b, _ := json.Marshal(State{Version: 1, Status: StatusComplete})
	os.WriteFile(filepath.Join(dir, stateFile), b, 0644)
	_, err := Status(dir)
	wantKind(t, err, errdefs.ErrInvalidArgument)
	if !errors.Is(err, ErrStateVersion) || !strings.Contains(err.Error(), "older version") || !strings.Contains(err.Error(), "--upgrade") {
		t.Errorf("error %q", err)
	}
	b, _ = json.Marshal(State{Version: 9})
	os.WriteFile(filepath.Join(dir, stateFile), b, 0644)
	if _, err := Status(dir); !errors.Is(err, ErrStateVersion) || !strings.Contains(err.Error(), "newer version") {
		t.Errorf("error %q", err)
	}
}

// "." and relative names get their state beside the directory, never in
// it.
func TestDefaultStateDirOfDot(t *testing.T) {
	dir := t.TempDir()
	wd, _ := os.Getwd()
	defer os.Chdir(wd)
	os.Chdir(dir)
	for _, name := range []string{".", "./", dir, dir + "/"} {
		if got, want := DefaultStateDir(name), filepath.Join(filepath.Dir(dir), "."+filepath.Base(dir)+".ocifetch"); got != want {
			t.Errorf("DefaultStateDir(%q) = %s, want %s", name, got, want)
		}
	}
	if _, err := Apply(context.Background(), ".", []Layer{blob(t, mtTar, tarOf(t, F("a", "a", 0644)))}, WithStateDir(DefaultStateDir("."))); err != nil {
		t.Fatal(err)
	}
	if d, err := Verify(context.Background(), DefaultStateDir("."), "."); err != nil || len(d) != 0 {
		t.Errorf("verify: %v %v", d, err)
	}
	var out bytes.Buffer
	if err := Rebuild(context.Background(), DefaultStateDir(dir), dir, sha(tarOf(t, F("a", "a", 0644))), &out); err != nil {
		t.Error(err)
	}
}
