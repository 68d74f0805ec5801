package apply

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/fsroot"
	"github.com/ocifetch/ocifetch/internal/testutil"
)

func unmount(p string) error { return unix.Unmount(p, 0) }

// A rerun after a crash empties the target but never crosses a mount
// point inside it: it stops there with invalid_argument naming the mount
// point and saying to unmount it, and the mounted directory's files stay.
// Once it is unmounted, the rerun completes. Before, the emptying went
// down the bind mount (same device number), deleted the mounted
// directory's files, and then failed with EBUSY.
func TestRerunStopsAtMountPoint(t *testing.T) {
	if !testutil.InMountNS(t) {
		return
	}
	l0 := tarOf(t, D("data", 0755), F("data/x", "x", 0644), F("z", "z", 0644))
	l1 := tarOf(t, F("y", "y", 0644))
	dir := t.TempDir()
	target := filepath.Join(dir, "rootfs")
	state := DefaultStateDir(target)
	if _, err := Apply(context.Background(), target, []Layer{blob(t, mtTar, l0)}, WithStateDir(state)); err != nil {
		t.Fatal(err)
	}
	st, _ := Status(state)
	st.Status, st.Completed = StatusApplying, nil // what a SIGKILL leaves
	if err := writeState(state, st); err != nil {
		t.Fatal(err)
	}
	precious := filepath.Join(dir, "precious")
	os.Mkdir(precious, 0755)
	os.WriteFile(filepath.Join(precious, "file"), []byte("do not delete"), 0644)
	testutil.BindMount(t, precious, filepath.Join(target, "data"))
	_, err := Apply(context.Background(), target, []Layer{blob(t, mtTar, l0), blob(t, mtTar, l1)}, WithStateDir(state))
	if b, err := os.ReadFile(filepath.Join(precious, "file")); err != nil || string(b) != "do not delete" {
		t.Errorf("the mounted directory lost its file: %q %v", b, err)
	}
	wantKind(t, err, errdefs.ErrInvalidArgument)
	if !strings.Contains(err.Error(), `"data"`) || !strings.Contains(err.Error(), "unmount") {
		t.Errorf("error %q does not name the mount point and say to unmount it", err)
	}
	if st, err := Status(state); err != nil || st.Status != StatusApplying {
		t.Errorf("the state after the stop: %+v %v", st, err)
	}
	if err := unmount(filepath.Join(target, "data")); err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(context.Background(), target, []Layer{blob(t, mtTar, l0), blob(t, mtTar, l1)}, WithStateDir(state)); err != nil {
		t.Fatal(err)
	}
	a := applied{target: target, state: state, tars: [][]byte{l0, l1}}
	a.noDrift(t)
	if names, _ := os.ReadDir(precious); len(names) != 1 {
		t.Errorf("precious holds %v", names)
	}
}

// A whiteout or a replacement never reaches into a mount point inside
// the target either: applying onto a tree with a bind mount fails at
// the mount point and the mounted files stay.
func TestApplierStopsAtMountPoint(t *testing.T) {
	if !testutil.InMountNS(t) {
		return
	}
	for _, c := range []struct {
		name  string
		layer []e
		fails bool // else it does nothing: the directory is not the tree's
	}{
		{"whiteout of the mount point", []e{W("", "m")}, true},
		{"whiteout below it", []e{W("m", "file")}, false},
		{"opaque directory", []e{O("m")}, false},
		{"a file replacing it", []e{F("m", "file now", 0644)}, true},
		{"a file written below it", []e{F("m/new", "new", 0644)}, true},
		{"whiteout of its parent", []e{W("", "d")}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			target := filepath.Join(dir, "rootfs")
			if _, err := ApplyLayer(context.Background(), target, bytes.NewReader(tarOf(t, D("m", 0755), D("d", 0755), D("d/m", 0755)))); err != nil {
				t.Fatal(err)
			}
			precious := filepath.Join(dir, "precious")
			os.Mkdir(precious, 0755)
			os.WriteFile(filepath.Join(precious, "file"), []byte("keep"), 0644)
			testutil.BindMount(t, precious, filepath.Join(target, "m"))
			testutil.BindMount(t, precious, filepath.Join(target, "d/m"))
			_, err := ApplyLayer(context.Background(), target, bytes.NewReader(tarOf(t, c.layer...)))
			if c.fails && (!errors.Is(err, fsroot.ErrMountPoint) || errdefs.KindOf(err) != errdefs.ErrInvalidArgument) {
				t.Errorf("error %v (kind %s), want the mount point error", err, errdefs.KindOf(err))
			}
			if !c.fails && err != nil {
				t.Errorf("error %v", err)
			}
			if names, _ := os.ReadDir(precious); len(names) != 1 {
				t.Errorf("precious holds %v", names)
			}
			if b, err := os.ReadFile(filepath.Join(precious, "file")); err != nil || string(b) != "keep" {
				t.Errorf("the mounted file: %q %v", b, err)
			}
		})
	}
}
