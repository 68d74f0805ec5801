package apply

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocifetch/ocifetch/errdefs"
)

// v1Tree extracts testdata/state-v1.tar.gz, a tree and its state
// directory as the apply of state format 1 left them (written by that
// version), with the layers it applied, and returns its directory.
func v1Tree(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile("testdata/state-v1.tar.gz")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "v1")
	if _, err := ApplyLayer(context.Background(), dir, bytes.NewReader(ungz(t, raw))); err != nil {
		t.Fatal(err)
	}
	return dir
}

// v1Unpacked is a v1Tree as the tests use it: its target, its state
// directory and the two layers it was unpacked from.
func v1Unpacked(t *testing.T) (target, state string, tars [][]byte) {
	t.Helper()
	dir := v1Tree(t)
	for _, n := range []string{"1.tar", "2.tar"} {
		b, err := os.ReadFile(filepath.Join(dir, "layers", n))
		if err != nil {
			t.Fatal(err)
		}
		tars = append(tars, b)
	}
	return filepath.Join(dir, "rootfs"), filepath.Join(dir, ".rootfs.ocifetch"), tars
}

func ungz(t *testing.T, b []byte) []byte {
	t.Helper()
	f := filepath.Join(t.TempDir(), "x.tar.gz")
	os.WriteFile(f, b, 0644)
	out, _, err := decodeTar(f)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A tree unpacked by the previous state format: verify and rebuild say
// what to do; Upgrade (verify --upgrade) re-derives its state from the
// layers the tree rebuilds, after which it verifies clean and rebuilds
// bit for bit; an upgraded state is left alone.
func TestUpgradeFromFormat1(t *testing.T) {
	t.Parallel()
	requireRoot(t) // the fixture's owners are root's
	target, state, tars := v1Unpacked(t)
	_, err := Verify(context.Background(), state, target)
	if !errors.Is(err, ErrStateVersion) || !strings.Contains(err.Error(), "--upgrade") {
		t.Fatalf("verify of a format 1 tree: %v", err)
	}
	if err := Rebuild(context.Background(), state, target, sha(tars[0]), &bytes.Buffer{}); !errors.Is(err, ErrStateVersion) {
		t.Errorf("rebuild of a format 1 tree: %v", err)
	}
	_, err = Apply(context.Background(), target, nil, WithStateDir(state))
	if !errors.Is(err, ErrStateVersion) || !strings.Contains(err.Error(), "older version") {
		t.Errorf("apply over a format 1 tree: %v", err)
	}
	upgraded, err := Upgrade(context.Background(), state, target)
	if err != nil || !upgraded {
		t.Fatalf("upgrade: %v, %v", upgraded, err)
	}
	a := applied{target: target, state: state, tars: tars}
	a.noDrift(t)
	a.checkRebuilds(t)
	st, err := Status(state)
	if err != nil || st.Reference != "example.com/v1:tree" || st.Target == nil || st.Status != StatusComplete {
		t.Errorf("state after the upgrade: %+v %v", st, err)
	}
	if ents, _ := os.ReadDir(state); len(ents) != 5 {
		t.Errorf("state directory after the upgrade holds %d entries, want state.json, lock, tarsplit, shadow, tree.json.zst", len(ents))
	}
	// A forged rewrite is caught from now on.
	os.WriteFile(filepath.Join(target, "usr/bin/tool"), []byte("tool v2\n"), 0755)
	if d, _ := Verify(context.Background(), state, target); len(d) != 2 {
		t.Errorf("drift after an edit: %s", fmtDrifts(d))
	}
	if again, err := Upgrade(context.Background(), state, target); again || err != nil {
		t.Errorf("upgrade of a current state: %v, %v", again, err)
	}
	// What an upgrade killed after writing state.json leaves: its
	// scratch copy goes on the next run.
	if err := os.MkdirAll(filepath.Join(state, upgradeDir, "rootfs"), 0o700); err != nil {
		t.Fatal(err)
	}
	if again, err := Upgrade(context.Background(), state, target); again || err != nil {
		t.Errorf("upgrade of a current state: %v, %v", again, err)
	}
	if _, err := os.Stat(filepath.Join(state, upgradeDir)); !os.IsNotExist(err) {
		t.Errorf("scratch directory left behind: %v", err)
	}
}

// A format 1 tree that changed since its unpack is not upgraded: the
// state stays as it was, and nothing of the attempt remains.
func TestUpgradeRefusesAChangedTree(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	for name, change := range map[string]func(target string){
		"content": func(target string) { os.WriteFile(filepath.Join(target, "usr/bin/app"), []byte("other"), 0755) },
		"appeared": func(target string) {
			os.WriteFile(filepath.Join(target, "etc/extra"), nil, 0644)
		},
		"disappeared": func(target string) { os.Remove(filepath.Join(target, "var/log/a.log")) },
	} {
		t.Run(name, func(t *testing.T) {
			dir := v1Tree(t)
			target, state := filepath.Join(dir, "rootfs"), filepath.Join(dir, ".rootfs.ocifetch")
			change(target)
			before, _ := os.ReadFile(filepath.Join(state, stateFile))
			upgraded, err := Upgrade(context.Background(), state, target)
			if upgraded || err == nil || !strings.Contains(err.Error(), "unpack again") {
				t.Fatalf("upgrade of a changed tree: %v, %v", upgraded, err)
			}
			if k := errdefs.KindOf(err); k != errdefs.ErrNotReproducible && k != errdefs.ErrDigestMismatch && k != errdefs.ErrNotFound {
				t.Errorf("kind %s", k)
			}
			after, _ := os.ReadFile(filepath.Join(state, stateFile))
			if !bytes.Equal(before, after) {
				t.Error("state.json changed")
			}
			if _, err := os.Stat(filepath.Join(state, upgradeDir)); !os.IsNotExist(err) {
				t.Errorf("scratch directory left behind: %v", err)
			}
		})
	}
}

// An Upgrade killed while it swapped the metadata (the old tarsplit/ and
// shadow/ moved aside, new ones in their place, state.json still of
// format 1) is finished by running it again: the old metadata was lost
// with the scratch directory, and the tree could no longer be upgraded.
func TestUpgradeAfterACrashInTheSwap(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	target, state, tars := v1Unpacked(t)
	scratch := filepath.Join(state, upgradeDir)
	if err := os.Mkdir(scratch, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{tarsplitDir, shadowDir} {
		if err := os.MkdirAll(filepath.Join(state, d), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(state, d), filepath.Join(scratch, "old-"+d)); err != nil {
			t.Fatal(err)
		}
		// What the fresh apply recorded, in the new format.
		if err := os.Mkdir(filepath.Join(state, d), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(state, d, "fresh"), []byte("new format"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	upgraded, err := Upgrade(context.Background(), state, target)
	if err != nil || !upgraded {
		t.Fatalf("upgrade after a crash in the swap: %v, %v", upgraded, err)
	}
	a := applied{target: target, state: state, tars: tars}
	a.noDrift(t)
	a.checkRebuilds(t)
	if _, err := os.Stat(scratch); !os.IsNotExist(err) {
		t.Errorf("scratch directory left behind: %v", err)
	}
}
