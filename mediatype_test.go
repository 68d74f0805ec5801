package ocifetch_test

// One table of media types (package mediatype) holds resolve, fetch,
// apply, gc and the compressed rebuild together: every layer type of the
// table resolves, is fetched into the store and kept by gc, applies with
// the decompression the table names, and rebuilds to its blob; a type
// outside the table is refused by resolve and by apply alike.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch"
	"github.com/ocifetch/ocifetch/apply"
	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/fetch"
	"github.com/ocifetch/ocifetch/mediatype"
)

// oneFileTar is a tar holding one file.
func oneFileTar(t *testing.T, name, body string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(body))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// compressAs compresses tb as an image builder would for c: Go's
// compress/gzip at its default level, klauspost's streaming zstd writer
// at its default.
func compressAs(t *testing.T, c mediatype.Compression, tb []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	switch c {
	case mediatype.Uncompressed:
		return tb
	case mediatype.Gzip:
		w := gzip.NewWriter(&out)
		w.Write(tb)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	case mediatype.Zstd:
		w, err := zstd.NewWriter(&out)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(tb)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("compression %v", c)
	}
	return out.Bytes()
}

// writeLayoutImage writes a one-layer image into the OCI layout dir
// under tag: blob, of mediaType, whose uncompressed tar is tb.
func writeLayoutImage(t *testing.T, dir, tag, mediaType string, blob, tb []byte) ocispec.Descriptor {
	t.Helper()
	put := func(mt string, data []byte) ocispec.Descriptor {
		d := digest.FromBytes(data)
		p := filepath.Join(dir, "blobs", "sha256", d.Encoded())
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return ocispec.Descriptor{MediaType: mt, Digest: d, Size: int64(len(data))}
	}
	marshal := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cfg := ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(tb)}}}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: put(ocispec.MediaTypeImageConfig, marshal(cfg)), Layers: []ocispec.Descriptor{put(mediaType, blob)}}
	md := put(ocispec.MediaTypeImageManifest, marshal(m))
	md.Annotations = map[string]string{ocispec.AnnotationRefName: tag}
	md.Platform = &cfg.Platform
	var idx ocispec.Index
	if b, err := os.ReadFile(filepath.Join(dir, "index.json")); err == nil {
		json.Unmarshal(b, &idx)
	}
	idx.SchemaVersion, idx.MediaType = 2, ocispec.MediaTypeImageIndex
	idx.Manifests = append(idx.Manifests, md)
	if err := os.WriteFile(filepath.Join(dir, "index.json"), marshal(idx), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return m.Layers[0]
}

func TestMediaTypeTableHoldsEveryStage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	work := t.TempDir()
	layout := filepath.Join(work, "layout")
	storeDir := filepath.Join(work, "store")
	for i, row := range mediatype.Layers() {
		t.Run(row.MediaType, func(t *testing.T) {
			tb := oneFileTar(t, "etc/row", row.MediaType)
			blob := compressAs(t, row.Compression, tb)
			tag := "row" + string(rune('a'+i))
			desc := writeLayoutImage(t, layout, tag, row.MediaType, blob, tb)
			rootfs := filepath.Join(work, tag)
			res, err := ocifetch.Unpack(ctx, "oci:"+layout+":"+tag, rootfs, ocifetch.WithStore(storeDir))
			if err != nil {
				t.Fatalf("unpack: %v", err)
			}
			if b, err := os.ReadFile(filepath.Join(rootfs, "etc/row")); err != nil || string(b) != row.MediaType {
				t.Fatalf("etc/row: %q, %v", b, err)
			}
			if res.Pull.Layers[0].Digest != desc.Digest {
				t.Fatalf("pulled %s", res.Pull.Layers[0].Digest)
			}
			st, err := apply.Status(res.StateDir)
			if err != nil {
				t.Fatal(err)
			}
			want := "confirmed" // a layer this small fits the probe whole
			if row.Compression == mediatype.Uncompressed {
				want = "tar"
			}
			if got := st.Layers[0].Reproducible(); got != want {
				t.Errorf("reproducible %q, want %q (%+v)", got, want, st.Layers[0].Recipe)
			}
			var out bytes.Buffer
			if _, err := apply.RebuildBlob(ctx, res.StateDir, rootfs, desc.Digest, &out); err != nil || !bytes.Equal(out.Bytes(), blob) {
				t.Errorf("rebuilt blob: %d bytes, %v", out.Len(), err)
			}
		})
	}
	s, err := fetch.OpenStore(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.GC(ctx); err != nil {
		t.Fatal(err)
	}
	images, err := s.Images(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(images) != len(mediatype.Layers()) {
		t.Fatalf("%d images in the store, want %d", len(images), len(mediatype.Layers()))
	}
	for _, im := range images {
		if !im.Complete {
			t.Errorf("gc dropped a blob of %s", im.Name)
		}
	}

	// A type outside the table: resolve refuses it, and so does apply.
	const unknown = "application/vnd.example.layer.v1.tar"
	tb := oneFileTar(t, "etc/row", unknown)
	writeLayoutImage(t, layout, "unknown", unknown, tb, tb)
	_, err = ocifetch.Unpack(ctx, "oci:"+layout+":unknown", filepath.Join(work, "unknown"), ocifetch.WithStore(storeDir))
	if errdefs.KindOf(err) != errdefs.ErrUnsupportedMediaType {
		t.Errorf("unpack of %s: %v, want unsupported_media_type", unknown, err)
	}
	_, err = apply.Apply(ctx, filepath.Join(work, "unknown2"), []apply.Layer{{MediaType: unknown, DiffID: digest.FromBytes(tb),
		Open: func(context.Context) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(tb)), nil }}})
	if errdefs.KindOf(err) != errdefs.ErrUnsupportedMediaType {
		t.Errorf("apply of %s: %v, want unsupported_media_type", unknown, err)
	}
}
