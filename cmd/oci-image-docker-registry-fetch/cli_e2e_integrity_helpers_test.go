package main

// Helpers of cli_e2e_integrity_test.go: images written as OCI layouts
// from hand-made layers, so that a test controls every entry.

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/internal/testutil/testimage"
)

var layerTime = time.Unix(1700000000, 0)

// ent is one entry of a hand-made layer.
type ent struct {
	h    tar.Header
	body string
}

func efile(name, body string, mode int64) ent {
	return ent{tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body)), ModTime: layerTime, Format: tar.FormatPAX}, body}
}

func edir(name string, mtime time.Time) ent {
	return ent{h: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: mtime, Format: tar.FormatPAX}}
}

func elink(name, target string) ent {
	return ent{h: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: layerTime, Format: tar.FormatPAX}}
}

// ewhiteout is DIR/.wh.NAME; NAME ".wh..opq" makes the opaque marker.
func ewhiteout(dir, name string) ent {
	return efile(filepath.Join(dir, ".wh."+name), "", 0o644)
}

// layerOf builds an uncompressed tar of the entries.
func layerOf(t *testing.T, es ...ent) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range es {
		h := e.h
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// ociLayout writes a linux/amd64 image of the uncompressed layers, each
// gzipped, into a new OCI layout and returns its reference ("oci:DIR:t")
// and directory.
func ociLayout(t *testing.T, cfg ocispec.ImageConfig, layers ...[]byte) (string, string) {
	t.Helper()
	return ociLayoutOf(t, ocispec.MediaTypeImageLayerGzip, cfg, layers...)
}

// oneFileLayout writes an image of one layer holding the file name (mode
// 0644, body) into a new OCI layout, and returns its reference, the
// command's environment and a working directory.
func oneFileLayout(t *testing.T, name, body string) (ref string, env []string, work string) {
	t.Helper()
	ref, _ = ociLayout(t, ocispec.ImageConfig{}, layerOf(t, efile(name, body, 0o644)))
	return ref, cliEnv(t), t.TempDir()
}

// ociLayoutOf is ociLayout with the layers compressed as mediaType says
// (gzip or zstd).
func ociLayoutOf(t *testing.T, mediaType string, cfg ocispec.ImageConfig, layers ...[]byte) (string, string) {
	t.Helper()
	var blobs []layoutBlob
	for _, l := range layers {
		blob := gzipBytes(t, l)
		if mediaType == ocispec.MediaTypeImageLayerZstd {
			zw, err := zstd.NewWriter(nil)
			if err != nil {
				t.Fatal(err)
			}
			blob = zw.EncodeAll(l, nil)
			zw.Close()
		}
		blobs = append(blobs, layoutBlob{mediaType: mediaType, data: blob, diffID: digest.FromBytes(l)})
	}
	return ociLayoutBlobs(t, cfg, blobs...)
}

// layoutBlob is a layer as stored: its blob and the digest of the tar
// inside.
type layoutBlob struct {
	mediaType string
	data      []byte
	diffID    digest.Digest
}

// ociLayoutBlobs writes a linux/amd64 image of the layer blobs.
func ociLayoutBlobs(t *testing.T, cfg ocispec.ImageConfig, blobs ...layoutBlob) (string, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	put := func(mediaType string, b []byte) ocispec.Descriptor {
		d := digest.FromBytes(b)
		p := filepath.Join(dir, "blobs", "sha256", d.Encoded())
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}
	}
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest}
	m.SchemaVersion = 2
	var diffIDs []digest.Digest
	for _, b := range blobs {
		m.Layers = append(m.Layers, put(b.mediaType, b.data))
		diffIDs = append(diffIDs, b.diffID)
	}
	m.Config = put(ocispec.MediaTypeImageConfig, testimage.JSON(t, ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: diffIDs},
		Config:   cfg,
	}))
	md := put(ocispec.MediaTypeImageManifest, testimage.JSON(t, m))
	md.Annotations = map[string]string{ocispec.AnnotationRefName: "t"}
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{md}}
	idx.SchemaVersion = 2
	b, _ := json.Marshal(idx)
	os.WriteFile(filepath.Join(dir, "index.json"), b, 0o644)
	os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
	return "oci:" + dir + ":t", dir
}

// dirEntries lists the names in dir ("-" when it does not exist).
func dirEntries(dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return []string{"-"}
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}
