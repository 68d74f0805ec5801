package apply

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ocifetch/ocifetch/apply/internal/treecmp"
	"github.com/ocifetch/ocifetch/errdefs"
)

// A state directory another user could write is refused, naming it, and
// nothing is applied; one Apply makes is private (0700). Before, an
// existing (empty) state directory was used whoever owned it and whatever
// its mode: in a shared parent such as /tmp another user could make it
// 0777 first and later rewrite the manifest, so that verify said clean
// about a tampered tree.
func TestUntrustedStateDirRefused(t *testing.T) {
	requireRoot(t) // to give directories to another user
	const nobody = 65534
	l := blob(t, mtTar, tarOf(t, F("etc/motd", "hello\n", 0644)))
	for _, c := range []struct {
		name  string
		prep  func(state string) error
		owner string // in the message
	}{
		{"another user's, 0777", func(s string) error {
			if err := os.Mkdir(s, 0o777); err != nil {
				return err
			}
			os.Chmod(s, 0o777)
			return os.Chown(s, nobody, nobody)
		}, "uid 65534"},
		{"another user's, 0700", func(s string) error {
			if err := os.Mkdir(s, 0o700); err != nil {
				return err
			}
			return os.Chown(s, nobody, nobody)
		}, "uid 65534"},
		{"the caller's, writable by others", func(s string) error {
			if err := os.Mkdir(s, 0o777); err != nil {
				return err
			}
			return os.Chmod(s, 0o777)
		}, "writable by group or others"},
		{"the caller's, writable by the group", func(s string) error {
			if err := os.Mkdir(s, 0o770); err != nil {
				return err
			}
			return os.Chmod(s, 0o770)
		}, "writable by group or others"},
		{"a symbolic link another user owns", func(s string) error {
			real := filepath.Join(filepath.Dir(s), "real-state")
			if err := os.Mkdir(real, 0o700); err != nil {
				return err
			}
			if err := os.Symlink(real, s); err != nil {
				return err
			}
			return os.Lchown(s, nobody, nobody)
		}, "uid 65534"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			os.Chmod(dir, 0o1777) // a shared parent, as /tmp
			target := filepath.Join(dir, "rootfs")
			state := DefaultStateDir(target)
			if err := c.prep(state); err != nil {
				t.Fatal(err)
			}
			before := treecmpWalk(t, dir)
			_, err := Apply(context.Background(), target, []Layer{l}, WithStateDir(state))
			wantKind(t, err, errdefs.ErrInvalidArgument)
			if !strings.Contains(err.Error(), state) || !strings.Contains(err.Error(), c.owner) {
				t.Errorf("error %q does not name %s and say why (%s)", err, state, c.owner)
			}
			if err := CheckTarget(target, state); !errdefs.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("CheckTarget: %v", err)
			}
			if diffs := treecmp.Diff(treecmpWalk(t, dir), before, treecmp.Options{}); len(diffs) > 0 {
				t.Errorf("the refused apply changed something: %v", diffs)
			}
		})
	}
	t.Run("made by Apply", func(t *testing.T) {
		dir := t.TempDir()
		os.Chmod(dir, 0o1777)
		target := filepath.Join(dir, "rootfs")
		state := DefaultStateDir(target)
		old := syscall.Umask(0)
		defer syscall.Umask(old)
		if _, err := Apply(context.Background(), target, []Layer{l}, WithStateDir(state)); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{state, filepath.Join(state, tarsplitDir), filepath.Join(state, shadowDir)} {
			if fi, err := os.Lstat(p); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("%s: %v %v, want mode 0700", p, fi.Mode(), err)
			}
		}
	})
}

// After an apply, anything in the state directory that another user
// could have written, or that is a symbolic link where a directory or
// file is kept, makes Verify, Rebuild, Check and Status refuse, naming
// it. A private copy of everything is accepted (the control).
func TestTamperableStateRefused(t *testing.T) {
	requireRoot(t)
	const nobody = 65534
	tars := [][]byte{
		tarOf(t, F("etc/motd", "hello\n", 0644), F("bin/app", "app", 0755)),
		tarOf(t, F("bin/app", "app v2", 0755)), // shadows layer 1's payload
	}
	key := layerKey(sha(tars[0]))
	for _, c := range []struct {
		name   string
		mutate func(state string) error
		what   string // named in the error
		verify bool   // Verify reads it (Rebuild and Check read all but the manifest)
	}{
		{"the directory given to another user", func(s string) error { return os.Chown(s, nobody, nobody) }, "", true},
		{"the directory made group-writable", func(s string) error { return os.Chmod(s, 0o770) }, "", true},
		{"state.json another user's", func(s string) error { return os.Chown(filepath.Join(s, stateFile), nobody, 0) }, stateFile, true},
		{"tree.json.zst writable by others", func(s string) error { return os.Chmod(filepath.Join(s, manifestFile), 0o666) }, manifestFile, true},
		{"the lock file another user's", func(s string) error { return os.Chown(filepath.Join(s, lockFile), nobody, 0) }, lockFile, true},
		{"tarsplit/ writable by others", func(s string) error { return os.Chmod(filepath.Join(s, tarsplitDir), 0o777) }, tarsplitDir, false},
		{"a tar-split file another user's", func(s string) error {
			return os.Chown(filepath.Join(s, tarsplitName(sha(tars[0]))), nobody, nobody)
		}, tarsplitDir, false},
		{"tarsplit/ a symbolic link to a copy", func(s string) error {
			return relink(filepath.Join(s, tarsplitDir))
		}, tarsplitDir, false},
		{"a tar-split file a symbolic link to a copy", func(s string) error {
			return relink(filepath.Join(s, tarsplitName(sha(tars[0]))))
		}, tarsplitDir, false},
		{"shadow/<layer> a symbolic link to a copy", func(s string) error {
			return relink(filepath.Join(s, shadowDir, key))
		}, shadowDir, false},
		{"shadow/<layer> another user's", func(s string) error {
			return os.Chown(filepath.Join(s, shadowDir, key), nobody, nobody)
		}, shadowDir, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := mustApplyRecorded(t, tars)
			if ents, err := os.ReadDir(filepath.Join(a.state, shadowDir, key)); err != nil || len(ents) != 1 {
				t.Fatalf("the fixture shadows no payload: %v %v", ents, err)
			}
			if err := c.mutate(a.state); err != nil {
				t.Fatal(err)
			}
			named := func(what string, err error) {
				t.Helper()
				wantKind(t, err, errdefs.ErrInvalidArgument)
				if !strings.Contains(err.Error(), filepath.Join(a.state, c.what)) {
					t.Errorf("%s: error %q does not name %s", what, err, filepath.Join(a.state, c.what))
				}
			}
			if c.verify {
				_, err := Verify(context.Background(), a.state, a.target)
				named("Verify", err)
				_, err = Status(a.state)
				if c.what != manifestFile && c.what != lockFile {
					named("Status", err)
				}
			}
			if c.what == manifestFile {
				a.checkRebuilds(t) // rebuild never reads the manifest
				return
			}
			_, err := a.rebuild(t, 0)
			named("Rebuild", err)
			res, err := Check(context.Background(), a.state, a.target)
			if err == nil {
				err = res[0].Err
			}
			named("Check", err)
		})
	}
}

// relink replaces p by a symbolic link to a copy of it beside it.
func relink(p string) error {
	cp := p + ".copy"
	if err := os.Rename(p, cp); err != nil {
		return err
	}
	return os.Symlink(filepath.Base(cp), p)
}
