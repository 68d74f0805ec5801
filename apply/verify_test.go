package apply

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/errdefs"
)

// Verify reports exactly the paths that changed, disappeared or appeared.
func TestVerify(t *testing.T) {
	t.Parallel()
	l0 := tarOf(t,
		D("etc", 0755), F("etc/passwd", "root:x:0:0", 0644), F("etc/group", "root:x:0:", 0644),
		F("etc/shadow", "s", 0), S("link", "etc/passwd"), D("d", 0755), D("d/sub", 0755),
		F("d/sub/f", "f", 0644), F("d/g", "g", 0644), F("a.b", "dot", 0644), Fifo("fifo", 0600),
		H("hard", "etc/group"),
	)
	l1 := tarOf(t, F("etc/passwd", "root:x:0:0:v2", 0644), W("", "a.b"))
	cases := []struct {
		name   string
		mutate func(root string) error
		want   []Drift
	}{
		{"untouched", func(string) error { return nil }, nil},
		{"same size, one byte", func(r string) error {
			return rewrite(filepath.Join(r, "etc/passwd"), "root:x:0:0:V2")
		}, []Drift{{Path: "etc/passwd", Kind: DriftChanged, Changes: []string{"content", "mtime"}}}},
		{"content with the old mtime", func(r string) error {
			p := filepath.Join(r, "etc/group")
			st, _ := os.Stat(p)
			if err := rewrite(p, "ROOT:x:0:"); err != nil {
				return err
			}
			return os.Chtimes(p, st.ModTime(), st.ModTime())
		}, []Drift{
			{Path: "etc/group", Kind: DriftChanged, Changes: []string{"content"}},
			{Path: "hard", Kind: DriftChanged, Changes: []string{"content"}},
		}},
		{"size", func(r string) error {
			return os.WriteFile(filepath.Join(r, "d/g"), []byte("longer"), 0644)
		}, []Drift{{Path: "d/g", Kind: DriftChanged, Changes: []string{"size", "mtime"}}}},
		{"mode", func(r string) error {
			return os.Chmod(filepath.Join(r, "etc/shadow"), 0644)
		}, []Drift{{Path: "etc/shadow", Kind: DriftChanged, Changes: []string{"mode"}}}},
		{"directory mode", func(r string) error {
			return os.Chmod(filepath.Join(r, "d"), 0700)
		}, []Drift{{Path: "d", Kind: DriftChanged, Changes: []string{"mode"}}}},
		{"mtime", func(r string) error {
			return os.Chtimes(filepath.Join(r, "d/g"), time.Unix(1, 0), time.Unix(1, 0))
		}, []Drift{{Path: "d/g", Kind: DriftChanged, Changes: []string{"mtime"}}}},
		{"symlink target", func(r string) error {
			os.Remove(filepath.Join(r, "link"))
			return os.Symlink("etc/group", filepath.Join(r, "link"))
		}, []Drift{{Path: "link", Kind: DriftChanged, Changes: []string{"target"}}}},
		{"type", func(r string) error {
			os.Remove(filepath.Join(r, "fifo"))
			return os.WriteFile(filepath.Join(r, "fifo"), nil, 0600)
		}, []Drift{{Path: "fifo", Kind: DriftChanged, Changes: []string{"type"}}}},
		{"file disappeared", func(r string) error {
			return os.Remove(filepath.Join(r, "etc/group"))
		}, []Drift{
			{Path: "etc/group", Kind: DriftDisappeared},
			// Its hard link is no longer in a group with it.
			{Path: "hard", Kind: DriftChanged, Changes: []string{"links"}},
		}},
		{"directory disappeared", func(r string) error {
			return os.RemoveAll(filepath.Join(r, "d"))
		}, []Drift{
			{Path: "d", Kind: DriftDisappeared}, {Path: "d/g", Kind: DriftDisappeared},
			{Path: "d/sub", Kind: DriftDisappeared}, {Path: "d/sub/f", Kind: DriftDisappeared},
		}},
		{"appeared", func(r string) error {
			os.MkdirAll(filepath.Join(r, "new/deeper"), 0755)
			os.WriteFile(filepath.Join(r, "new/deeper/x"), nil, 0644)
			os.WriteFile(filepath.Join(r, "a.b"), nil, 0644) // whited out by l1
			return os.WriteFile(filepath.Join(r, "d/sub/f2"), nil, 0644)
		}, []Drift{
			{Path: "a.b", Kind: DriftAppeared}, {Path: "d/sub/f2", Kind: DriftAppeared},
			{Path: "new", Kind: DriftAppeared}, {Path: "new/deeper", Kind: DriftAppeared},
			{Path: "new/deeper/x", Kind: DriftAppeared},
		}},
		{"owner", func(r string) error {
			if os.Geteuid() != 0 {
				return errSkip
			}
			return os.Lchown(filepath.Join(r, "link"), 7, 8)
		}, []Drift{{Path: "link", Kind: DriftChanged, Changes: []string{"owner"}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := mustApplyRecorded(t, [][]byte{l0, l1})
			if err := c.mutate(a.target); errors.Is(err, errSkip) {
				t.Skip("needs root")
			} else if err != nil {
				t.Fatal(err)
			}
			got, err := Verify(context.Background(), a.state, a.target)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("drift\n got %s\nwant %s", fmtDrifts(got), fmtDrifts(c.want))
			}
		})
	}
}

var errSkip = errors.New("skip")

func rewrite(p, content string) error {
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(f, content); err != nil {
		return err
	}
	return f.Close()
}

func fmtDrifts(ds []Drift) string {
	var s []string
	for _, d := range ds {
		s = append(s, fmt.Sprintf("%s %s %v", d.Kind, d.Path, d.Changes))
	}
	return "[" + strings.Join(s, "; ") + "]"
}

func TestPathLess(t *testing.T) {
	t.Parallel()
	order := []string{"a", "a/b", "a/b/c", "a/c", "a.b", "a0", "b"}
	for i := range order {
		for j := range order {
			if got, want := pathLess(order[i], order[j]), i < j; got != want {
				t.Errorf("pathLess(%q, %q) = %v", order[i], order[j], got)
			}
		}
	}
}

// A failed apply leaves the state "applying", which Status, Rebuild and
// Verify report; a successful one "complete". A failed layer's tar-split
// is not kept.
func TestState(t *testing.T) {
	t.Parallel()
	l0 := tarOf(t, F("a", "a", 0644))
	l1 := tarOf(t, F("b", "b", 0644))
	base := t.TempDir()
	target := filepath.Join(base, "rootfs")
	os.Mkdir(target, 0755)
	state := DefaultStateDir(target)
	if state != filepath.Join(base, ".rootfs.ocifetch") {
		t.Errorf("DefaultStateDir = %s", state)
	}
	if _, err := Status(state); !errdefs.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Status before apply: %v", err)
	}
	// A failure after the first layer: the target is emptied (it existed:
	// it stays), the state is removed.
	bad := rawBlob(mtTar, l1, sha([]byte("not l1")))
	_, err := Apply(context.Background(), target, []Layer{blob(t, mtTar, l0), bad}, WithStateDir(state), WithImage("example.com/app:1", sha([]byte("m"))))
	wantKind(t, err, errdefs.ErrDigestMismatch)
	if _, err := Status(state); !errdefs.Is(err, errdefs.ErrNotFound) {
		t.Errorf("state after a failure: %v", err)
	}
	if ents, err := os.ReadDir(target); err != nil || len(ents) != 0 {
		t.Errorf("target after a failure: %v %v", ents, err)
	}
	if _, err := os.Lstat(state); !os.IsNotExist(err) {
		t.Errorf("state directory after a failure: %v", err)
	}
	// The diffID matched but the blob's digest does not: the same.
	badBlob := blob(t, mtGzip, l1)
	badBlob.Digest = sha([]byte("x"))
	_, err = Apply(context.Background(), target, []Layer{blob(t, mtTar, l0), badBlob}, WithStateDir(state))
	wantKind(t, err, errdefs.ErrDigestMismatch)
	if ents, _ := os.ReadDir(target); len(ents) != 0 {
		t.Errorf("target after a failure: %v", ents)
	}
	wantKind(t, Rebuild(context.Background(), state, target, sha(l0), io.Discard), errdefs.ErrNotFound)
	_, err = Verify(context.Background(), state, target)
	wantKind(t, err, errdefs.ErrNotFound)

	if _, err := Apply(context.Background(), target, []Layer{blob(t, mtTar, l0), blob(t, mtTar, l1)}, WithStateDir(state)); err != nil {
		t.Fatal(err)
	}
	st, err := Status(state)
	if err != nil {
		t.Fatal(err)
	}
	wantOwn := OwnershipCaller.String()
	if os.Geteuid() == 0 {
		wantOwn = OwnershipPreserve.String()
	}
	if st.Status != StatusComplete || st.Completed == nil || st.Reference != "" || st.Ownership != wantOwn || st.UID != os.Geteuid() ||
		st.Version != stateVersion || st.Target == nil || st.FileDigest != digestName || st.MaxDepth != DefaultMaxDepth {
		t.Errorf("state after success: %+v", st)
	}
	if id, err := targetIDOf(target); err != nil || *st.Target != id {
		t.Errorf("recorded target %+v, the target is %+v (%v)", st.Target, id, err)
	}

	// A state directory inside the target, or one holding other things, is
	// refused before anything is applied.
	_, err = Apply(context.Background(), target, []Layer{blob(t, mtTar, l0)}, WithStateDir(filepath.Join(target, "state")))
	wantKind(t, err, errdefs.ErrInvalidArgument)
	_, err = Apply(context.Background(), target, []Layer{blob(t, mtTar, l0)}, WithStateDir(base))
	wantKind(t, err, errdefs.ErrInvalidArgument)
	other := filepath.Join(base, "other")
	os.Mkdir(other, 0755)
	os.WriteFile(filepath.Join(other, "precious"), nil, 0644)
	_, err = Apply(context.Background(), target, []Layer{blob(t, mtTar, l0)}, WithStateDir(other))
	wantKind(t, err, errdefs.ErrInvalidArgument)
	if _, err := os.Stat(filepath.Join(other, "precious")); err != nil {
		t.Error("a foreign directory was cleared")
	}
	_, err = ApplyLayer(context.Background(), target, strings.NewReader(string(l0)), WithStateDir(state))
	wantKind(t, err, errdefs.ErrInvalidArgument)
}

// Verify compares the target directory itself, the image's "/", as "."
// (mode, owner, xattrs; mtime with WithDirMtimes, as for every
// directory). Before, the manifest left the root out: chmod 0777, chown
// and an added xattr of the root all verified clean.
func TestVerifyRootDir(t *testing.T) {
	tars := [][]byte{tarOf(t, D("etc", 0755), F("etc/motd", "hello\n", 0644))}
	for _, c := range []struct {
		name   string
		mutate func(root string) error
		want   []Drift
		dirMt  []Drift // with WithDirMtimes
	}{
		{"untouched", func(string) error { return nil }, nil, nil},
		{"mode 0777", func(r string) error { return os.Chmod(r, 0o777) },
			[]Drift{{Path: ".", Kind: DriftChanged, Changes: []string{"mode"}}}, nil},
		{"owner", func(r string) error { return os.Chown(r, 123, 456) },
			[]Drift{{Path: ".", Kind: DriftChanged, Changes: []string{"owner"}}}, nil},
		{"xattr", func(r string) error { return unix.Setxattr(r, "user.planted", []byte("1"), 0) },
			[]Drift{{Path: ".", Kind: DriftChanged, Changes: []string{"xattrs"}}}, nil},
		{"mtime", func(r string) error { return os.Chtimes(r, time.Unix(978307200, 0), time.Unix(978307200, 0)) },
			nil, []Drift{{Path: ".", Kind: DriftChanged, Changes: []string{"mtime"}}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "owner" {
				requireRoot(t)
			}
			a := mustApplyRecorded(t, tars)
			if err := c.mutate(a.target); err != nil {
				t.Fatal(err)
			}
			got, err := Verify(context.Background(), a.state, a.target)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("Verify: %s, want %s", fmtDrifts(got), fmtDrifts(c.want))
			}
			want := append(append([]Drift{}, c.want...), c.dirMt...)
			if len(want) == 0 {
				want = nil
			}
			got, err = Verify(context.Background(), a.state, a.target, WithDirMtimes())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Verify WithDirMtimes: %s, want %s", fmtDrifts(got), fmtDrifts(want))
			}
		})
	}
}
