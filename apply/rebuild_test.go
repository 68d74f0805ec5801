package apply

import (
	gotar "archive/tar"
	"bytes"
	"compress/bzip2"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/testutil"
)

// applied is a tree applied with a state directory.
type applied struct {
	target, state string
	tars          [][]byte
}

// applyRecorded applies the tar streams as layers into a fresh target with
// its default state directory.
func applyRecorded(t testing.TB, tars [][]byte, opts ...Option) (applied, error) {
	t.Helper()
	base := t.TempDir()
	a := applied{target: filepath.Join(base, "rootfs"), tars: tars}
	a.state = DefaultStateDir(a.target)
	if err := os.Mkdir(a.target, 0755); err != nil {
		t.Fatal(err)
	}
	var ls []Layer
	for _, b := range tars {
		ls = append(ls, rawBlob(mtTar, b, sha(b)))
	}
	_, err := Apply(context.Background(), a.target, ls, append([]Option{WithStateDir(a.state)}, opts...)...)
	return a, err
}

func mustApplyRecorded(t testing.TB, tars [][]byte, opts ...Option) applied {
	t.Helper()
	a, err := applyRecorded(t, tars, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func (a applied) rebuild(t testing.TB, i int) ([]byte, error) {
	t.Helper()
	var out bytes.Buffer
	err := Rebuild(context.Background(), a.state, a.target, sha(a.tars[i]), &out)
	return out.Bytes(), err
}

// checkRebuilds rebuilds every layer and compares it with the original.
func (a applied) checkRebuilds(t testing.TB) {
	t.Helper()
	for i, want := range a.tars {
		got, err := a.rebuild(t, i)
		if err != nil {
			t.Errorf("layer %d: %v", i, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("layer %d: rebuilt %d bytes (%s), want %d (%s)", i, len(got), sha(got), len(want), sha(want))
		}
	}
	res, err := Check(context.Background(), a.state, a.target)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(a.tars) {
		t.Fatalf("Check: %d results for %d layers", len(res), len(a.tars))
	}
	for i, r := range res {
		if r.Err != nil || r.Index != i || r.DiffID != sha(a.tars[i]) || r.Bytes != int64(len(a.tars[i])) {
			t.Errorf("Check layer %d: %+v", i, r)
		}
	}
}

func (a applied) noDrift(t testing.TB) {
	t.Helper()
	d, err := Verify(context.Background(), a.state, a.target)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range d {
		t.Errorf("drift right after apply: %+v", x)
	}
}

// Upper layers modify, delete (whiteouts), make opaque and change the type
// of the base layer's files; a layer names the same path twice; hard links
// cross layers. Every layer, the base first, rebuilds bit for bit from the
// tree and the state directory alone.
func TestRebuildLayers(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("0123456789abcdef", 70000)
	base := tarOf(t,
		D("etc", 0755), F("etc/passwd", "root:x:0:0", 0644), F("etc/shadow", "secret", 0),
		F("etc/hostname", "base", 0644), D("usr", 0755), D("usr/bin", 0755),
		F("usr/bin/a", "aaa", 0755), F("usr/bin/b", "bbb", 0755), F("usr/bin/su", "su", 04755),
		D("gone", 0755), D("gone/sub", 0755), F("gone/sub/f", "deep", 0644), F("gone/g", "g", 0644),
		D("opq", 0755), F("opq/lower", "lower", 0644), D("opq/d", 0755), F("opq/d/x", "x", 0644),
		F("f2dir", "file then dir", 0644), D("dir2file", 0755), F("dir2file/inner", "inner", 0644),
		F("f2link", "file then link", 0644), F("big", big, 0644),
		S("lnk", "etc/passwd"), H("etc/passwd-hard", "etc/passwd"), F("empty", "", 0644),
	)
	mid := tarOf(t,
		F("etc/passwd", "root:x:0:0:changed", 0644), W("usr/bin", "a"), W("", "gone"),
		O("opq"), F("opq/upper", "upper", 0644), D("f2dir", 0755), F("f2dir/x", "now a dir", 0644),
		F("dir2file", "now a file", 0644), S("f2link", "etc/hostname"),
		H("usr/bin/b-link", "usr/bin/b"), H("big-link", "big"),
		// The same path twice in one layer, and a type change inside it.
		F("dup", "first", 0644), F("dup", "second, longer", 0600), F("dup2", "file", 0644), D("dup2", 0755), F("dup2/y", "y", 0644),
	)
	top := tarOf(t,
		F("usr/bin/b", "bbb v2", 0755), F("big", "small now", 0644), F("dup", "third", 0644),
		W("etc", "hostname"), F("etc/shadow", "new secret", 0),
	)
	a := mustApplyRecorded(t, [][]byte{base, mid, top})
	st, err := Status(a.state)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != StatusComplete || len(st.Layers) != 3 || st.Layers[0].DiffID != sha(base) || !st.Shadow {
		t.Errorf("state %+v", st)
	}
	a.noDrift(t)
	a.checkRebuilds(t)
	// Nothing of the state shows in the tree, and the tree still reads as
	// the layers made it.
	checkTree(t, a.target, `
		dir etc 0755
		file etc/passwd 0644 content=root:x:0:0:changed
		file etc/passwd-hard 0644 content=root:x:0:0
		file etc/shadow 0000 content="new secret"
		dir usr 0755
		dir usr/bin 0755
		file usr/bin/b 0755 content="bbb v2"
		file usr/bin/b-link 0755 content=bbb
		file usr/bin/su 04755 content=su
		dir opq 0755
		file opq/upper content=upper
		dir f2dir 0755
		file f2dir/x content="now a dir"
		file dir2file content="now a file"
		symlink f2link target=etc/hostname
		file big content="small now"
		file big-link size=1120000
		symlink lnk target=etc/passwd
		file empty
		file dup 0644 content=third
		dir dup2 0755
		file dup2/y content=y
	`)
}

// The shadow store moves files; a state directory on another file system
// (here: the tree on a tmpfs is not available, so the fallback is
// exercised by the helper directly) copies them.
func TestShadowCopyFallback(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fd, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	if err := copyInto(int(fd.Fd()), dir, "7", strings.NewReader("payload")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "7")); string(b) != "payload" {
		t.Errorf("copied %q", b)
	}
}

// A layer that writes the same regular file many times, with hard links to
// each version, rebuilds by position, not by name.
func TestRebuildDuplicateNames(t *testing.T) {
	t.Parallel()
	var es []e
	for i := 0; i < 5; i++ {
		es = append(es, F("x", strings.Repeat(string(rune('a'+i)), 10+i), 0644), H("x"+string(rune('0'+i)), "x"))
	}
	l := tarOf(t, es...)
	a := mustApplyRecorded(t, [][]byte{l})
	a.checkRebuilds(t)
	a.noDrift(t)
}

// Tars cut short, or with something after the end, rebuild to the same
// bytes.
func TestRebuildTarWithoutEnd(t *testing.T) {
	t.Parallel()
	_, cases := tarsWithoutEnd(t)
	cases["only end-of-archive blocks"] = make([]byte, 1024)
	cases["empty stream"] = []byte{}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			mustApplyRecorded(t, [][]byte{b}).checkRebuilds(t)
		})
	}
}

// fullOnlyTestdata names the testdata archives the short tier leaves to
// the full run, and why.
var fullOnlyTestdata = map[string]string{
	"fatlonglink.tar.gz": "26 MB of tar, 4 s under the race detector",
}

// testTars returns the tar streams of a testdata directory: *.tar, and
// *.tar.gz, *.tar.bz2, *.tar.base64 decoded, plus files without extension
// that are gzip. A file whose bytes are in seen (by digest) is left out,
// undecoded, and the others are added to it. Under -short an archive of
// fullOnlyTestdata is returned as nil, unread.
func testTars(t *testing.T, dir string, seen map[digest.Digest]string) map[string][]byte {
	ents, err := os.ReadDir(dir)
	if err != nil {
		testutil.Missing(t, "testdata: %v", err)
	}
	out := map[string][]byte{}
	for _, e := range ents {
		if _, ok := fullOnlyTestdata[e.Name()]; ok && testing.Short() {
			out[e.Name()] = nil // not even read: decoding it is most of its cost
			continue
		}
		p := filepath.Join(dir, e.Name())
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if first, ok := seen[sha(raw)]; ok {
			t.Logf("%s: the same bytes as %s", p, first)
			continue
		}
		seen[sha(raw)] = p
		b, ok, err := decodeTarBytes(p, raw, unappliable[e.Name()].prefix)
		if !ok {
			continue
		}
		if err != nil {
			t.Logf("%s: not decoded: %v", e.Name(), err)
			continue
		}
		out[e.Name()] = b
	}
	return out
}

// decodeTar reads the tar stream of the testdata file p; ok is false for a
// file that is not a tar.
func decodeTar(p string) (b []byte, ok bool, err error) {
	raw, err := os.ReadFile(p)
	if err != nil {
		return nil, true, err
	}
	return decodeTarBytes(p, raw, 0)
}

// decodeTarBytes decodes raw, the content of the testdata file p; with a
// prefix, a bzip2 stream only that far.
func decodeTarBytes(p string, raw []byte, prefix int64) (b []byte, ok bool, err error) {
	switch {
	case strings.HasSuffix(p, ".tar"):
		b = raw
	case strings.HasSuffix(p, ".tar.base64"):
		b, err = base64.StdEncoding.DecodeString(string(raw))
	case strings.HasSuffix(p, ".tar.bz2"):
		var r io.Reader = bzip2.NewReader(bytes.NewReader(raw))
		if prefix > 0 {
			r = io.LimitReader(r, prefix)
		}
		b, err = io.ReadAll(r)
	case strings.HasSuffix(p, ".gz") || bytes.HasPrefix(raw, []byte{0x1f, 0x8b}):
		var zr *gzip.Reader
		if zr, err = gzip.NewReader(bytes.NewReader(raw)); err == nil {
			b, err = io.ReadAll(zr)
		}
	default:
		return nil, false, nil
	}
	return b, true, err
}

// goAccepts reads b with Go's archive/tar, payloads included, and says why
// it is not a candidate when it is not.
func goAccepts(b []byte) (reason string) {
	tr := gotar.NewReader(bytes.NewReader(b))
	var total int64
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return ""
		}
		if err != nil {
			return "Go's reader refuses it: " + err.Error()
		}
		if isSparseGo(h) && h.Size > 64<<20 {
			// The applier writes sparse files as holes: their size costs
			// nothing, and expanding it here could take minutes.
			continue
		}
		if total += h.Size; total > 64<<20 {
			return "expands to more than 64 MiB"
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return "Go's reader refuses its payload: " + err.Error()
		}
	}
}

// testdataDirs are the directories of Go's and tar-split's test archives.
func testdataDirs() []struct{ label, dir string } {
	return []struct{ label, dir string }{
		{"go", filepath.Join(goroot(), "src/archive/tar/testdata")},
		{"tar-split", tarsplitDir0() + "/archive/tar/testdata"},
		{"tar-split-asm", tarsplitDir0() + "/tar/asm/testdata"},
	}
}

// unappliable are the archives of Go's and tar-split's testdata that are
// no layer, with why: TestRebuildTestdata applies each and checks that it
// is refused with exactly that kind and an error that says so. Every
// other archive of those directories must apply and rebuild; a refusal
// of any other archive, or of another kind, fails.
var unappliable = map[string]struct {
	kind      errdefs.Kind
	why, says string
	// prefix, if not 0, is how much of the stream is decoded and applied:
	// enough to be refused (the 40 MB that gnu-sparse-many-zeros
	// decompresses to take 20 s under the race detector, and the reader
	// refuses its sparse map once it passes 1 MiB).
	prefix int64
}{
	"gnu-incremental.tar":           {errdefs.ErrLayerInvalid, "GNU dumpdir entries ('D'), no type a layer may hold", "unsupported type 'D'", 0},
	"gnu-sparse-many-zeros.tar.bz2": {errdefs.ErrLayerInvalid, "a sparse map longer than the reader's limit", "sparse map too long", 2 << 20},
	"issue10968.tar":                {errdefs.ErrLayerInvalid, "a corrupt header (Go issue 10968)", "invalid tar header", 0},
	"issue11169.tar":                {errdefs.ErrLayerInvalid, "a corrupt header (Go issue 11169)", "invalid tar header", 0},
	"issue12435.tar":                {errdefs.ErrLayerInvalid, "a corrupt header (Go issue 12435)", "invalid tar header", 0},
	"neg-size.tar":                  {errdefs.ErrLayerInvalid, "a negative size", "invalid tar header", 0},
	"neg-size.tar.base64":           {errdefs.ErrLayerInvalid, "a negative size", "invalid tar header", 0},
	"pax-bad-hdr-file.tar":          {errdefs.ErrLayerInvalid, "a malformed PAX record", "invalid tar header", 0},
	"pax-bad-hdr-large.tar.bz2":     {errdefs.ErrLayerInvalid, "a PAX header past the reader's limit", "header field too long", 0},
	"pax-bad-mtime-file.tar":        {errdefs.ErrLayerInvalid, "a PAX mtime that is no number", "invalid tar header", 0},
	"pax-nul-path.tar":              {errdefs.ErrLayerInvalid, "a NUL in a PAX path", "invalid tar header", 0},
	"pax-nul-xattrs.tar":            {errdefs.ErrLayerInvalid, "a NUL in a PAX xattr name", "invalid tar header", 0},
	"writer-big.tar":                {errdefs.ErrLayerInvalid, "a 16 GiB file's header without its payload", "payload cut short", 0},
	"writer-big-long.tar":           {errdefs.ErrLayerInvalid, "a 16 GiB file's header without its payload", "payload cut short", 0},
	"writer-big-long.tar.base64":    {errdefs.ErrLayerInvalid, "a 16 GiB file's header without its payload", "payload cut short", 0},
}

// Every tar of Go's and tar-split's testdata is applied as a layer and
// rebuilt bit for bit, by Rebuild and by stock tar-split (checkStock): GNU, PAX, old GNU and PAX 0.0, 0.1 and 1.0 sparse
// files, star, v7, xattrs, long names and links, non-UTF-8 names, missing
// and extra end-of-archive blocks; or, if unappliable names it, refused
// for the reason it states. An archive found in both directories, byte
// for byte, is tried once.
func TestRebuildTestdata(t *testing.T) {
	t.Parallel()
	dirs := testdataDirs()
	var mu sync.Mutex // the counts, kept by parallel subtests
	applied, refused, stock := 0, 0, 0
	var reasons []string
	t.Cleanup(func() { // once every subtest is done
		t.Logf("%d archives applied and rebuilt, %d refused as no layer:\n%s", applied, refused, strings.Join(reasons, "\n"))
		if applied < 35 { // 38 distinct ones in Go 1.26's and tar-split v0.12's testdata
			t.Errorf("only %d archives applied", applied)
		}
		if stock < 30 {
			t.Errorf("only %d archives reassembled by stock tar-split", stock)
		}
	})
	files, seen := map[digest.Digest]string{}, map[digest.Digest]string{}
	tried := map[string]bool{}
	for _, d := range dirs {
		tars := testTars(t, d.dir, files)
		for _, name := range slices.Sorted(maps.Keys(tars)) {
			b := tars[name]
			tried[name] = true
			if b == nil {
				t.Run(d.label+"/"+name, func(t *testing.T) { testutil.Full(t, fullOnlyTestdata[name]) })
				continue
			}
			if first, ok := seen[sha(b)]; ok {
				t.Logf("%s/%s: the same stream as %s", d.label, name, first)
				continue
			}
			seen[sha(b)] = d.label + "/" + name
			u, isListed := unappliable[name]
			t.Run(d.label+"/"+name, func(t *testing.T) {
				t.Parallel()
				if !isListed {
					if why := goAccepts(b); why != "" {
						t.Fatalf("%s, and unappliable does not name it", why)
					}
				}
				a, err := applyRecorded(t, [][]byte{b})
				if isListed {
					if err == nil || errdefs.KindOf(err) != u.kind || !strings.Contains(err.Error(), u.says) {
						t.Fatalf("%s: want %s saying %q, got %v (kind %s)", u.why, u.kind, u.says, err, errdefs.KindOf(err))
					}
					mu.Lock()
					refused++
					reasons = append(reasons, t.Name()+": "+u.why)
					mu.Unlock()
					return // refused as it must be: a pass, not a skip
				}
				if err != nil {
					t.Fatal(err)
				}
				sparseOnDisk(t, a.target)
				a.checkRebuilds(t)
				a.noDrift(t)
				// The same tree serves TestStockTarSplitReassembles' check.
				byStock := checkStock(t, a, b)
				mu.Lock()
				applied++
				if byStock {
					stock++
				}
				mu.Unlock()
			})
		}
	}
	for name := range unappliable {
		if !tried[name] {
			t.Errorf("unappliable names %s, which no testdata directory holds", name)
		}
	}
}

// sparseOnDisk fails when a file of the tree larger than 64 MiB (only a
// sparse entry can make one here) takes more than a thousandth of its size
// on disk.
func sparseOnDisk(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		if st.Size > 64<<20 && st.Blocks*512 > st.Size/1000 {
			t.Errorf("%s: %d bytes on disk for a sparse file of %d", p, st.Blocks*512, st.Size)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func goroot() string {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return "/usr/local/go"
	}
	return strings.TrimSpace(string(out))
}

// tarsplitDir0 finds tar-split's module directory.
func tarsplitDir0() string {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/vbatts/tar-split").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// A file changed in the tree (same size, one byte) makes Rebuild fail with
// an error naming it, before the stream's last bytes: the writer never sees
// a complete stream.
func TestRebuildDetectsChanges(t *testing.T) {
	t.Parallel()
	l0 := tarOf(t, F("etc/passwd", strings.Repeat("root:x:0:0\n", 10), 0644), F("last", "z", 0644))
	l1 := tarOf(t, F("x", "x", 0644))
	cases := []struct {
		name   string
		mutate func(t *testing.T, target string)
		kind   errdefs.Kind
		reason string
	}{
		{"one byte changed", func(t *testing.T, target string) {
			p := filepath.Join(target, "etc/passwd")
			b, _ := os.ReadFile(p)
			b[3] = 'T'
			os.WriteFile(p, b, 0644)
		}, errdefs.ErrDigestMismatch, ReasonChanged},
		{"last file changed", func(t *testing.T, target string) {
			os.WriteFile(filepath.Join(target, "last"), []byte("y"), 0644)
		}, errdefs.ErrDigestMismatch, ReasonChanged},
		{"size changed", func(t *testing.T, target string) {
			os.WriteFile(filepath.Join(target, "etc/passwd"), []byte("short"), 0644)
		}, errdefs.ErrDigestMismatch, ReasonChanged},
		{"removed", func(t *testing.T, target string) {
			os.Remove(filepath.Join(target, "etc/passwd"))
		}, errdefs.ErrNotFound, ReasonMissing},
		{"replaced by a symlink to an identical copy", func(t *testing.T, target string) {
			p := filepath.Join(target, "etc/passwd")
			b, _ := os.ReadFile(p)
			os.WriteFile(filepath.Join(target, "copy"), b, 0644)
			os.Remove(p)
			os.Symlink("../copy", p)
		}, errdefs.ErrNotFound, ReasonMissing},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := mustApplyRecorded(t, [][]byte{l0, l1})
			c.mutate(t, a.target)
			got, err := a.rebuild(t, 0)
			wantKind(t, err, c.kind)
			var pe *PayloadError
			if !errors.As(err, &pe) || pe.Reason != c.reason || pe.Layer != sha(l0) {
				t.Fatalf("error %v (%#v), want a PayloadError %q", err, pe, c.reason)
			}
			if !strings.Contains(err.Error(), `"etc/passwd"`) && !strings.Contains(err.Error(), `"last"`) {
				t.Errorf("error %q names no file", err)
			}
			if len(got) > len(l0)-holdBack {
				t.Errorf("%d of %d bytes written before the error", len(got), len(l0))
			}
			// The other layer still rebuilds.
			if b, err := a.rebuild(t, 1); err != nil || !bytes.Equal(b, l1) {
				t.Errorf("layer 1: %v", err)
			}
			res, err := Check(context.Background(), a.state, a.target)
			if err != nil || len(res) != 2 || res[0].Err == nil || res[1].Err != nil {
				t.Errorf("Check: %+v, %v", res, err)
			}
		})
	}
}

// A change that keeps every payload's size and CRC but not the stream
// (here: the metadata itself altered) fails on the digest, before the end.
func TestRebuildDigestHeldBack(t *testing.T) {
	t.Parallel()
	l := tarOf(t, F("a", "aaa", 0644))
	hw := &holdWriter{w: &bytes.Buffer{}, h: digest.SHA256.Hash()}
	hw.Write(l[:700])
	hw.Write(l[700:701])
	hw.Write(l[701:])
	if got := hw.w.(*bytes.Buffer).Len(); got != len(l)-holdBack {
		t.Fatalf("%d bytes passed on before finish, want %d", got, len(l)-holdBack)
	}
	if err := hw.finish(); err != nil || !bytes.Equal(hw.w.(*bytes.Buffer).Bytes(), l) {
		t.Fatalf("finish: %v", err)
	}
	a := mustApplyRecorded(t, [][]byte{l})
	// Rebuild a diffID whose metadata is another layer's.
	other := tarOf(t, F("a", "aaa", 0600))
	st, _ := Status(a.state)
	os.Rename(filepath.Join(a.state, tarsplitName(sha(l))), filepath.Join(a.state, tarsplitName(sha(other))))
	st.Layers[0].DiffID = sha(other)
	if err := writeState(a.state, st); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := Rebuild(context.Background(), a.state, a.target, sha(other), &out)
	wantKind(t, err, errdefs.ErrDigestMismatch)
	if out.Len() >= len(l) {
		t.Errorf("%d bytes written", out.Len())
	}
}

// Without the shadow store, a base file a later layer replaced cannot be
// rebuilt: the error names it.
func TestRebuildWithoutShadow(t *testing.T) {
	t.Parallel()
	l0 := tarOf(t, F("keep", "k", 0644), F("etc/os-release", "v1", 0644), F("gone", "g", 0644))
	l1 := tarOf(t, F("etc/os-release", "v2", 0644), W("", "gone"))
	a := mustApplyRecorded(t, [][]byte{l0, l1}, WithoutShadow())
	if st, _ := Status(a.state); st.Shadow {
		t.Error("state says shadow")
	}
	_, err := a.rebuild(t, 0)
	wantKind(t, err, errdefs.ErrNotFound)
	var pe *PayloadError
	if !errors.As(err, &pe) || pe.Reason != ReasonNotKept || pe.Path != "etc/os-release" {
		t.Fatalf("error %v, want not kept etc/os-release", err)
	}
	if b, err := a.rebuild(t, 1); err != nil || !bytes.Equal(b, l1) {
		t.Errorf("top layer: %v", err)
	}
	// With the shadow store, both rebuild.
	mustApplyRecorded(t, [][]byte{l0, l1}).checkRebuilds(t)
}

func TestRebuildArguments(t *testing.T) {
	t.Parallel()
	l := tarOf(t, F("a", "a", 0644))
	a := mustApplyRecorded(t, [][]byte{l})
	err := Rebuild(context.Background(), a.state, a.target, sha([]byte("no such layer")), io.Discard)
	wantKind(t, err, errdefs.ErrNotFound)
	err = Rebuild(context.Background(), a.state, a.target, "sha256:../../x", io.Discard)
	wantKind(t, err, errdefs.ErrInvalidArgument)
	err = Rebuild(context.Background(), filepath.Join(t.TempDir(), "none"), a.target, sha(l), io.Discard)
	wantKind(t, err, errdefs.ErrNotFound)
}

// A payload written through a symlinked parent and replaced through its
// real name (or the reverse) is moved aside like any other: the shadow
// index knows paths by their canonical names. And a payload is read back
// from where the apply wrote it, not by its entry's name: a layer whose
// symbolic link among the parents was replaced later still rebuilds.
func TestRebuildSymlinkAlias(t *testing.T) {
	t.Parallel()
	l0 := tarOf(t, D("usr", 0755), D("usr/lib", 0755), S("lib", "usr/lib"), F("lib/x", "v1", 0644), F("usr/lib/y", "v1", 0644))
	l1 := tarOf(t, F("usr/lib/x", "v2", 0644), F("lib/y", "v2", 0644))
	mustApplyRecorded(t, [][]byte{l0, l1}).checkRebuilds(t)

	l1 = tarOf(t, D("lib", 0755))
	a := mustApplyRecorded(t, [][]byte{l0, l1})
	a.checkRebuilds(t)
	a.noDrift(t)
}

// Layer 1 makes bin -> usr/bin, layer 2 writes bin/sh (into usr/bin), and
// layer 3 whites out bin, replaces it by a directory or points it
// elsewhere: every layer still rebuilds from the tree alone, since a
// payload is read from where the apply wrote it. Before, layer 2 was
// read back as bin/sh and could no longer be rebuilt.
func TestRebuildAfterParentLinkChanges(t *testing.T) {
	t.Parallel()
	l1 := tarOf(t, D("usr", 0755), D("usr/bin", 0755), D("usr/sbin", 0755), S("bin", "usr/bin"), F("usr/sbin/sh", "other", 0755))
	l2 := tarOf(t, F("bin/sh", "shell", 0755), F("bin/tool", "tool", 0755))
	for name, l3 := range map[string][]byte{
		"whiteout": tarOf(t, W("", "bin")),
		"replaced": tarOf(t, D("bin", 0755), F("bin/new", "new", 0644)),
		"retarget": tarOf(t, S("bin", "usr/sbin"), F("bin/tool", "tool v2", 0755)),
	} {
		t.Run(name, func(t *testing.T) {
			a := mustApplyRecorded(t, [][]byte{l1, l2, l3})
			a.noDrift(t)
			a.checkRebuilds(t)
			if b, err := os.ReadFile(filepath.Join(a.target, "usr/bin/sh")); err != nil || string(b) != "shell" {
				t.Errorf("usr/bin/sh: %q %v", b, err)
			}
		})
	}
}
