package apply

import (
	gotar "archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/apply/internal/treecmp"
	"github.com/ocifetch/ocifetch/errdefs"
)

// e is one tar entry of a test layer.
type e struct {
	hdr  gotar.Header
	body string
}

var epoch = time.Unix(1700000000, 0)

func hdr(typ byte, name string, mode int64) gotar.Header {
	return gotar.Header{Typeflag: typ, Name: name, Mode: mode, ModTime: epoch, Format: gotar.FormatPAX}
}

// F is a regular file, D a directory, S a symlink, H a hard link, W a
// whiteout of name in dir ("" for the root), O an opaque marker.
func F(name, body string, mode int64) e {
	h := hdr(gotar.TypeReg, name, mode)
	h.Size = int64(len(body))
	return e{hdr: h, body: body}
}
func D(name string, mode int64) e { return e{hdr: hdr(gotar.TypeDir, name, mode)} }
func S(name, target string) e {
	h := hdr(gotar.TypeSymlink, name, 0777)
	h.Linkname = target
	return e{hdr: h}
}
func H(name, target string) e {
	h := hdr(gotar.TypeLink, name, 0644)
	h.Linkname = target
	return e{hdr: h}
}
func W(dir, name string) e { return F(filepath.Join(dir, ".wh."+name), "", 0644) }
func O(dir string) e       { return F(filepath.Join(dir, ".wh..wh..opq"), "", 0644) }
func Fifo(name string, mode int64) e {
	return e{hdr: hdr(gotar.TypeFifo, name, mode)}
}
func Dev(typ byte, name string, mode, major, minor int64) e {
	h := hdr(typ, name, mode)
	h.Devmajor, h.Devminor = major, minor
	return e{hdr: h}
}

// with returns a copy of x changed by f.
func (x e) with(f func(h *gotar.Header)) e { f(&x.hdr); return x }
func (x e) owner(uid, gid int) e {
	return x.with(func(h *gotar.Header) { h.Uid, h.Gid = uid, gid })
}
func (x e) mtime(t time.Time) e { return x.with(func(h *gotar.Header) { h.ModTime = t }) }
func (x e) xattr(k, v string) e {
	return x.with(func(h *gotar.Header) {
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords["SCHILY.xattr."+k] = v
	})
}

// tarOf writes entries as a tar stream.
func tarOf(t testing.TB, entries ...e) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := gotar.NewWriter(&b)
	for _, x := range entries {
		h := x.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("%s: %v", h.Name, err)
		}
		if _, err := io.WriteString(tw, x.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func gz(t testing.TB, b []byte) []byte {
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func zst(t testing.TB, b []byte) []byte {
	w, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	return w.EncodeAll(b, nil)
}

func sha(b []byte) digest.Digest { return digest.FromBytes(b) }

// blob makes a Layer of an uncompressed tar, compressed as mediaType says.
func blob(t testing.TB, mediaType string, tarBytes []byte) Layer {
	data := tarBytes
	switch c, _ := compressionOf(mediaType); c {
	case gzipped:
		data = gz(t, tarBytes)
	case zstded:
		data = zst(t, tarBytes)
	}
	return rawBlob(mediaType, data, sha(tarBytes))
}

func rawBlob(mediaType string, data []byte, diffID digest.Digest) Layer {
	return Layer{
		MediaType: mediaType,
		Digest:    sha(data),
		Size:      int64(len(data)),
		DiffID:    diffID,
		Open: func(context.Context) (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(data)), nil
		},
	}
}

// layers makes plain tar layers of entry lists.
func layers(t testing.TB, ls ...[]e) []Layer {
	var out []Layer
	for _, l := range ls {
		out = append(out, blob(t, ocispec.MediaTypeImageLayer, tarOf(t, l...)))
	}
	return out
}

// modes runs f with the root handle on openat2 and on the fallback walk.
func modes(t *testing.T, f func(t *testing.T, opts []Option)) {
	t.Run("openat2", func(t *testing.T) { f(t, nil) })
	t.Run("fallback", func(t *testing.T) { f(t, []Option{withFallback()}) })
}

// sandbox makes a target directory and, beside it, an outside directory
// holding a sentinel file.
type sandbox struct {
	target, outside, sentinel string
}

func newSandbox(t *testing.T) sandbox {
	t.Helper()
	base := t.TempDir()
	s := sandbox{target: filepath.Join(base, "rootfs"), outside: filepath.Join(base, "outside")}
	s.sentinel = filepath.Join(s.outside, "sentinel")
	for _, d := range []string{s.target, s.outside} {
		if err := os.Mkdir(d, 0755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(s.sentinel, []byte("sentinel"), 0640); err != nil {
		t.Fatal(err)
	}
	old := time.Unix(1000000000, 0)
	if err := os.Chtimes(s.sentinel, old, old); err != nil {
		t.Fatal(err)
	}
	return s
}

// checkOutside fails when the sentinel changed in any way or anything
// appeared outside the target.
func (s sandbox) checkOutside(t *testing.T) {
	t.Helper()
	// Only the target and the outside folder may be in the sandbox; the
	// target itself is not walked, since reading what a layer wrote there
	// (a sparse file of many GB, say) is not this check's business.
	base := filepath.Dir(s.target)
	names, err := os.ReadDir(base)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if n.Name() != "rootfs" && n.Name() != "outside" {
			t.Errorf("outside the target: %s appeared", n.Name())
		}
	}
	got, err := treecmp.Walk(s.outside)
	if err != nil {
		t.Fatal(err)
	}
	var outside []treecmp.Entry
	for _, e := range got {
		if e.Path == "." {
			continue
		}
		e.Path = "outside/" + e.Path
		outside = append(outside, e)
	}
	info, err := os.Lstat(s.outside)
	if err != nil || !info.IsDir() || info.Mode().Perm() != 0o755 {
		t.Errorf("outside the target: the outside folder changed: %v %v", info, err)
	}
	want := treecmp.MustParse(`
		file outside/sentinel 0640 content=sentinel mtime=1000000000
	`)
	for _, d := range treecmp.Diff(outside, want, treecmp.Options{Owner: &[2]uint32{uint32(os.Getuid()), uint32(os.Getgid())}}) {
		t.Errorf("outside the target: %s", d)
	}
}

// checkTree compares the target (root excluded) with a listing; entries
// that name no owner must belong to the caller.
func checkTree(t *testing.T, dir, listing string) {
	t.Helper()
	diffTree(t, treecmpWalk(t, dir), listing, [2]uint32{uint32(os.Getuid()), uint32(os.Getgid())})
}

func treecmpWalk(t *testing.T, dir string) []treecmp.Entry {
	t.Helper()
	got, err := treecmp.Walk(dir)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func diffTree(t *testing.T, got []treecmp.Entry, listing string, owner [2]uint32) {
	t.Helper()
	for _, d := range treecmp.Diff(got, treecmp.MustParse(listing), treecmp.Options{IgnoreRoot: true, Owner: &owner}) {
		t.Error(d)
	}
}

func wantKind(t *testing.T, err error, k errdefs.Kind) {
	t.Helper()
	if !errdefs.Is(err, k) || errdefs.KindOf(err) != k {
		t.Fatalf("error %v (kind %q), want kind %q", err, errdefs.KindOf(err), k)
	}
}

func requireRoot(t testing.TB) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}
