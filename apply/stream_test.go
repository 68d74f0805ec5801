package apply

import (
	gotar "archive/tar"
	"bytes"
	"context"
	"errors"
	"hash/crc64"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
)

const (
	mtTar   = ocispec.MediaTypeImageLayer
	mtGzip  = ocispec.MediaTypeImageLayerGzip
	mtZstd  = ocispec.MediaTypeImageLayerZstd
	mtDock  = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	mtForgn = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	mtNDZst = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
)

func sampleTar(t testing.TB) []byte {
	return tarOf(t, D("d", 0755), F("d/f", strings.Repeat("payload ", 1000), 0644), S("l", "d/f"))
}

func TestMediaTypes(t *testing.T) {
	t.Parallel()
	for _, mt := range []string{mtTar, mtGzip, mtZstd, mtDock, mtForgn, mtNDZst,
		"application/vnd.oci.image.layer.nondistributable.v1.tar", "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"} {
		t.Run(mt, func(t *testing.T) {
			dir := t.TempDir()
			rep, err := Apply(context.Background(), dir, []Layer{blob(t, mt, sampleTar(t))})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Layers[0].Bytes != 8000 {
				t.Errorf("report %+v", rep.Layers[0])
			}
			checkTree(t, dir, `
				dir d 0755
				file d/f size=8000
				symlink l target=d/f
			`)
		})
	}
}

func TestStreamFailures(t *testing.T) {
	t.Parallel()
	tb := sampleTar(t)
	truncated := tarOf(t, F("big", strings.Repeat("x", 1<<20), 0644))[:512+10]
	cases := []struct {
		name  string
		layer Layer
		kind  errdefs.Kind
		msg   string
	}{
		{"gzip media type, plain content", rawBlob(mtGzip, tb, sha(tb)), errdefs.ErrLayerInvalid, "says gzip, but the content is an uncompressed tar"},
		{"plain media type, gzip content", rawBlob(mtTar, gz(t, tb), sha(tb)), errdefs.ErrLayerInvalid, "says an uncompressed tar, but the content is gzip"},
		{"zstd media type, gzip content", rawBlob(mtZstd, gz(t, tb), sha(tb)), errdefs.ErrLayerInvalid, "says zstd, but the content is gzip"},
		{"gzip media type, zstd content", rawBlob(mtDock, zst(t, tb), sha(tb)), errdefs.ErrLayerInvalid, "says gzip, but the content is zstd"},
		{"wrong diffID", rawBlob(mtTar, tb, sha([]byte("other"))), errdefs.ErrDigestMismatch, "want diffID"},
		{"wrong blob digest", func() Layer { l := blob(t, mtGzip, tb); l.Digest = sha([]byte("x")); return l }(), errdefs.ErrDigestMismatch, "blob digest"},
		{"wrong blob size", func() Layer { l := blob(t, mtGzip, tb); l.Size++; return l }(), errdefs.ErrSizeMismatch, "descriptor says"},
		{"truncated payload", rawBlob(mtTar, truncated, sha(truncated)), errdefs.ErrLayerInvalid, "cut short after 10 of 1048576 bytes"},
		{"truncated gzip", func() Layer { g := gz(t, tb); return rawBlob(mtGzip, g[:len(g)/2], sha(tb)) }(), errdefs.ErrLayerInvalid, ""},
		{"corrupt gzip", func() Layer {
			g := gz(t, tb)
			g[len(g)-5] ^= 0xff // the CRC
			return rawBlob(mtGzip, g, sha(tb))
		}(), errdefs.ErrLayerInvalid, ""},
		{"unknown media type", rawBlob("application/vnd.oci.image.layer.v1.tar+bzip2", tb, sha(tb)), errdefs.ErrUnsupportedMediaType, "bzip2"},
		{"garbage header", rawBlob(mtTar, bytes.Repeat([]byte{'x'}, 2048), sha(bytes.Repeat([]byte{'x'}, 2048))), errdefs.ErrLayerInvalid, "tar header"},
		{"source failure keeps its kind", Layer{MediaType: mtTar, DiffID: sha(tb), Open: func(context.Context) (io.ReadCloser, error) {
			return io.NopCloser(io.MultiReader(bytes.NewReader(tb[:3000]), errReader{errdefs.New(errdefs.ErrNetwork, "connection reset")})), nil
		}}, errdefs.ErrNetwork, "connection reset"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Apply(context.Background(), t.TempDir(), []Layer{c.layer})
			wantKind(t, err, c.kind)
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("message %q lacks %q", err, c.msg)
			}
		})
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// tarsWithoutEnd returns a tar of two files, full, and the same tar cut
// after the last entry's payload as Go's and GNU's readers accept it
// (without end-of-archive blocks, or even without the last padding), or
// with something after its end.
func tarsWithoutEnd(t testing.TB) (full []byte, cases map[string][]byte) {
	full = tarOf(t, F("a", "aaa", 0644), F("b", strings.Repeat("b", 100), 0600))
	return full, map[string][]byte{
		"no end-of-archive blocks":   full[:len(full)-1024],
		"one end-of-archive block":   full[:len(full)-512],
		"no padding after last file": full[:len(full)-1024-412],
		"part of the padding":        full[:len(full)-1024-400],
		"extra zeros after the end":  append(append([]byte{}, full...), make([]byte, 10240)...),
		"garbage after the end":      append(append([]byte{}, full...), "trailing garbage"...),
	}
}

// Go's and GNU's readers accept tars cut after the last entry's payload:
// without end-of-archive blocks, or even without the last padding.
func TestTarWithoutEnd(t *testing.T) {
	t.Parallel()
	full, cases := tarsWithoutEnd(t)
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			rec := &testRecorder{}
			lr, err := applyLayerRec(context.Background(), dir, bytes.NewReader(b), rec)
			if err != nil {
				t.Fatal(err)
			}
			if lr.DiffID != sha(b) || lr.TarBytes != int64(len(b)) {
				t.Errorf("diffID %s over %d bytes, want %s over %d", lr.DiffID, lr.TarBytes, sha(b), len(b))
			}
			checkTree(t, dir, `
				file a 0644 content=aaa
				file b 0600 size=100
			`)
			rec.check(t, b, map[string]string{"a": "aaa", "b": strings.Repeat("b", 100)})
			// The diffID covers the bytes after the end-of-archive marker.
			_, err = Apply(context.Background(), t.TempDir(), []Layer{rawBlob(mtTar, b, sha(full[:len(full)-1024]))})
			if len(b) != len(full)-1024 {
				wantKind(t, err, errdefs.ErrDigestMismatch)
			}
		})
	}
}

// testRecorder keeps what an entryRecorder is told, to check that every
// byte of the stream reaches it exactly once and in order.
type testRecorder struct {
	items []recItem
	ended bool
}

type recItem struct {
	segment []byte
	name    string
	size    int64
	crc     []byte
	sum     sum
}

// applyLayerRec is ApplyLayer telling rec.
func applyLayerRec(ctx context.Context, dir string, r io.Reader, rec recorder) (*LayerReport, error) {
	o, err := makeOptions(nil)
	if err != nil {
		return nil, err
	}
	return applyLayer(ctx, dir, r, o, rec)
}

func (r *testRecorder) beginLayer(int) (layerTaps, error) { return layerTaps{}, nil }
func (r *testRecorder) segment(b []byte) error {
	if len(b) > 0 {
		r.items = append(r.items, recItem{segment: append([]byte(nil), b...)})
	}
	return nil
}
func (r *testRecorder) file(f *fileRecord) error {
	it := recItem{name: f.name, size: f.size, crc: f.crc}
	if f.sum != nil {
		it.sum = *f.sum
	}
	r.items = append(r.items, it)
	return nil
}
func (r *testRecorder) wantDigests() bool                  { return true }
func (r *testRecorder) written(uint64, uint64, *sum) error { return nil }
func (r *testRecorder) displace(*treeFile) (bool, error)   { return false, nil }
func (r *testRecorder) holdsPayloads() bool                { return false }
func (r *testRecorder) endLayer(digest.Digest) error       { r.ended = true; return nil }
func (r *testRecorder) abortLayer()                        {}

// check rebuilds the stream from the records and the payloads by name.
func (r *testRecorder) check(t *testing.T, stream []byte, payloads map[string]string) {
	t.Helper()
	if !r.ended {
		t.Error("recorder not ended")
	}
	var b bytes.Buffer
	for _, it := range r.items {
		if it.segment != nil {
			b.Write(it.segment)
			continue
		}
		p := payloads[it.name]
		if it.size != int64(len(p)) {
			t.Errorf("%s: size %d, want %d", it.name, it.size, len(p))
		}
		want := crc64.New(crcTable)
		io.WriteString(want, p)
		if !bytes.Equal(it.crc, want.Sum(nil)) {
			t.Errorf("%s: crc %x, want %x", it.name, it.crc, want.Sum(nil))
		}
		if it.size > 0 && it.sum != digestOf([]byte(p)) {
			t.Errorf("%s: digest %s, want %s", it.name, it.sum, digestOf([]byte(p)))
		}
		b.WriteString(p)
	}
	if !bytes.Equal(b.Bytes(), stream) {
		t.Errorf("rebuilt stream differs: %d bytes, want %d", b.Len(), len(stream))
	}
}

func TestRecorderSeesEveryByte(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("n", 200)
	entries := []e{
		D("d", 0755), F("d/"+long, "long name", 0644), F("x", "", 0644).xattr("user.k", "v"),
		S("s", long), H("h", "x"), W("", "gone"), F("big", strings.Repeat("z", 70000), 0644),
	}
	b := tarOf(t, entries...)
	rec := &testRecorder{}
	if _, err := applyLayerRec(context.Background(), t.TempDir(), bytes.NewReader(b), rec); err != nil {
		t.Fatal(err)
	}
	rec.check(t, b, map[string]string{"d/" + long: "long name", "big": strings.Repeat("z", 70000)})
	var gnu bytes.Buffer
	tw := gotar.NewWriter(&gnu)
	tw.WriteHeader(&gotar.Header{Name: "g/" + long, Typeflag: gotar.TypeReg, Size: 3, Mode: 0644, Format: gotar.FormatGNU})
	tw.Write([]byte("gnu"))
	tw.Close()
	rec = &testRecorder{}
	if _, err := applyLayerRec(context.Background(), t.TempDir(), bytes.NewReader(gnu.Bytes()), rec); err != nil {
		t.Fatal(err)
	}
	rec.check(t, gnu.Bytes(), map[string]string{"g/" + long: "gnu"})
}

func TestCancelledContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := ApplyLayer(ctx, t.TempDir(), bytes.NewReader(sampleTar(t)))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("%v, want context.Canceled", err)
	}
}

func TestInvalidArguments(t *testing.T) {
	t.Parallel()
	tb := sampleTar(t)
	l := blob(t, mtTar, tb)
	noDiff := l
	noDiff.DiffID = ""
	if _, err := Apply(context.Background(), t.TempDir(), []Layer{noDiff}); !errdefs.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("no diffID: %v", err)
	}
	// A missing target is made, parents included, as ocifetch.Unpack
	// makes it.
	missingTarget := filepath.Join(t.TempDir(), "a", "rootfs")
	if _, err := Apply(context.Background(), missingTarget, []Layer{l}); err != nil {
		t.Errorf("missing target: %v", err)
	}
	if ents, err := os.ReadDir(missingTarget); err != nil || len(ents) == 0 {
		t.Errorf("missing target not made and filled: %v %v", ents, err)
	}
	// A target that cannot be made is invalid_argument.
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0644)
	if _, err := Apply(context.Background(), filepath.Join(file, "rootfs"), []Layer{l}); !errdefs.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("target under a file: %v", err)
	}
	if _, err := Apply(context.Background(), t.TempDir(), []Layer{l}, WithOwnership(0)); !errdefs.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("bad option: %v", err)
	}
}

// A zstd frame that asks for a window larger than zstdMaxWindow is a
// malformed layer, refused before the decoder allocates it.
func TestZstdWindowLimit(t *testing.T) {
	t.Parallel()
	// Frame header: magic, descriptor 0 (no single segment, no checksum,
	// no content size), window descriptor for 256 MiB (window log 28:
	// exponent 18, mantissa 0; the library alone would allow it), then a
	// last raw block of no bytes.
	frame := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 18 << 3, 0x01, 0x00, 0x00}
	_, err := Apply(context.Background(), t.TempDir(), []Layer{rawBlob(mtZstd, frame, sha(nil))})
	wantKind(t, err, errdefs.ErrLayerInvalid)
	// The same frame with a 64 MiB window (log 26) is within the limit.
	frame[5] = 16 << 3
	_, err = Apply(context.Background(), t.TempDir(), []Layer{rawBlob(mtZstd, frame, sha(nil))})
	if err != nil {
		t.Fatalf("a 64 MiB window is refused: %v", err)
	}
}
