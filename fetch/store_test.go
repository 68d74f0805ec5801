package fetch_test

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/fetch"
	"github.com/ocifetch/ocifetch/resolve"
)

func TestOpenStoreCreatesAnOCILayout(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "store")
	s, err := fetch.OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "oci-layout"))
	if err != nil || string(b) != `{"imageLayoutVersion":"1.0.0"}` {
		t.Fatalf("oci-layout = %q, %v", b, err)
	}
	idx, err := s.Index()
	if err != nil || idx.SchemaVersion != 2 || idx.MediaType != ocispec.MediaTypeImageIndex || len(idx.Manifests) != 0 {
		t.Fatalf("index.json = %+v, %v", idx, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "blobs", "sha256")); err != nil || !fi.IsDir() {
		t.Fatalf("blobs/sha256: %v", err)
	}
	// Reopening keeps what is there.
	data := []byte("hello")
	if err := s.WriteBlob(context.Background(), layerDesc(data), data); err != nil {
		t.Fatal(err)
	}
	s2, err := fetch.OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	assertBlob(t, s2, data)
}

func TestOpenStoreRefusesOtherLayoutVersions(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"2.0.0"}`), 0o644)
	if _, err := fetch.OpenStore(dir); !errdefs.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("err = %v, want invalid_argument", err)
	}
}

// A store whose index.json was lost is refused rather than given an
// empty one: every blob would have been garbage, and gc removed them all
// (an acceptance sweep deleted index.json and ran gc: 10 of 10 blobs
// gone).
func TestOpenStoreRefusesBlobsWithoutAnIndex(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "store")
	s, err := fetch.OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("kept")
	if err := s.WriteBlob(context.Background(), layerDesc(data), data); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "index.json")); err != nil {
		t.Fatal(err)
	}
	_, err = fetch.OpenStore(dir)
	if !errdefs.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "no index.json") {
		t.Fatalf("err = %v, want invalid_argument naming the missing index.json", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "index.json")); !os.IsNotExist(err) {
		t.Errorf("index.json was written: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", digest.FromBytes(data).Encoded())); err != nil || string(b) != "kept" {
		t.Errorf("the blob: %q, %v", b, err)
	}
	// Blobs of sha512 digests live in blobs/sha512, which gc sweeps too:
	// before, only blobs/sha256 was looked at, and such a store got an
	// empty index.json that made them all garbage.
	dir512 := filepath.Join(t.TempDir(), "store")
	s512, err := fetch.OpenStore(dir512)
	if err != nil {
		t.Fatal(err)
	}
	d512 := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.SHA512.FromBytes(data), Size: int64(len(data))}
	if err := s512.WriteBlob(context.Background(), d512, data); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir512, "index.json"))
	if _, err := fetch.OpenStore(dir512); !errdefs.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "no index.json") {
		t.Errorf("sha512 blobs: err = %v, want invalid_argument naming the missing index.json", err)
	}
	// With no blob, a missing index.json is the store's first open cut
	// short, and is written.
	empty := t.TempDir()
	os.WriteFile(filepath.Join(empty, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
	if _, err := fetch.OpenStore(empty); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(empty, "index.json")); err != nil {
		t.Error(err)
	}
}

// Two processes opening a new store at once: one finds no index.json,
// the other then writes it and pulls a first blob before the first looks
// at the blobs. That store is whole, not one whose index.json was lost;
// before, the first open was refused (invalid_argument, "holds 1 blobs
// but no index.json").
func TestOpenStoreRacingAFirstOpen(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "store")
	data := []byte("first pull")
	s, err := fetch.OpenStoreRacing(dir, func() {
		other, err := fetch.OpenStore(dir)
		if err != nil {
			t.Fatal(err)
		}
		if err := other.WriteBlob(context.Background(), layerDesc(data), data); err != nil {
			t.Fatal(err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Has(layerDesc(data)); !ok || err != nil {
		t.Errorf("the other open's blob: %v, %v", ok, err)
	}
}

func TestDefaultStoreDirFollowsXDG(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", "/xdg/cache")
	if d, _ := fetch.DefaultStoreDir(); d != "/xdg/cache/ocifetch" {
		t.Errorf("with XDG_CACHE_HOME: %q", d)
	}
	t.Setenv("XDG_CACHE_HOME", "relative/ignored")
	t.Setenv("HOME", "/home/u")
	if d, _ := fetch.DefaultStoreDir(); d != "/home/u/.cache/ocifetch" {
		t.Errorf("without XDG_CACHE_HOME: %q", d)
	}
}

// CVE-2024-3727: a digest from a manifest must never become a path that
// climbs out of the store.
func TestDigestsAreValidatedBeforeUseInPaths(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := context.Background()
	for _, d := range []digest.Digest{
		"sha256:../../../../etc/passwd",
		"sha256:../x",
		"sha256:ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
		"sha256:0123",
		"md5:d41d8cd98f00b204e9800998ecf8427e",
		"",
	} {
		desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d, Size: 1}
		if _, err := s.BlobPath(d); !errdefs.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("BlobPath(%q): %v", d, err)
		}
		if err := s.WriteBlob(ctx, desc, []byte("x")); !errdefs.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("WriteBlob(%q): %v", d, err)
		}
		if err := fetch.FetchBlob(ctx, newMemSource(), s, desc); !errdefs.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("FetchBlob(%q): %v", d, err)
		}
		if _, err := fetch.OpenLayer(ctx, newMemSource(), s, desc); !errdefs.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("OpenLayer(%q): %v", d, err)
		}
		r := testImage(t, newMemSource())
		r.Layers = append(r.Layers, resolve.Layer{Descriptor: desc, DiffID: digest.FromString("x")})
		if _, err := fetch.Pull(ctx, r, s); !errdefs.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Pull with layer %q: %v", d, err)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(s.Dir()), "etc")); err == nil {
		t.Fatal("something was written outside the store")
	}
}

func TestWriteBlobVerifiesContent(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := context.Background()
	data := []byte("config bytes")
	desc := layerDesc(data)
	if err := s.WriteBlob(ctx, desc, []byte("other bytes!")); !errdefs.Is(err, errdefs.ErrDigestMismatch) {
		t.Errorf("wrong content: %v", err)
	}
	if err := s.WriteBlob(ctx, desc, data[:3]); !errdefs.Is(err, errdefs.ErrSizeMismatch) {
		t.Errorf("wrong size: %v", err)
	}
	if ok, _ := s.Has(desc); ok {
		t.Fatal("a rejected blob is in the store")
	}
	if err := s.WriteBlob(ctx, desc, data); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.Has(desc); !ok {
		t.Fatal("blob missing after WriteBlob")
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Dir(), ".ocifetch", "tmp")); len(ents) != 0 {
		t.Errorf("temporary files left: %v", ents)
	}
}

func TestStoreOpenVerifiesWhatItReads(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	data := randomBytes(100_000, 1)
	desc := layerDesc(data)
	if err := s.WriteBlob(context.Background(), desc, data); err != nil {
		t.Fatal(err)
	}
	p, _ := s.BlobPath(desc.Digest)
	// Rot one byte on disk: the reader must fail before EOF.
	os.Chmod(p, 0o644)
	corrupt := slices.Clone(data)
	corrupt[500] ^= 1
	if err := os.WriteFile(p, corrupt, 0o644); err != nil {
		t.Fatal(err)
	}
	rc, err := s.Open(desc)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadAll(rc); !errdefs.Is(err, errdefs.ErrDigestMismatch) {
		t.Fatalf("err = %v, want digest_mismatch", err)
	}
}

func TestTagReplacesTheEntryOfTheSameName(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := context.Background()
	var descs []ocispec.Descriptor
	for i := 0; i < 2; i++ {
		data := randomBytes(100, uint64(i))
		d := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(data), Size: 100}
		if err := s.WriteBlob(ctx, d, data); err != nil {
			t.Fatal(err)
		}
		descs = append(descs, d)
	}
	must(t, s.Tag(ctx, "app:1", descs[0]))
	must(t, s.Tag(ctx, "app:2", descs[0]))
	must(t, s.Tag(ctx, "app:1", descs[1]))
	idx, err := s.Index()
	if err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 2 {
		t.Fatalf("%d entries, want 2: %+v", len(idx.Manifests), idx.Manifests)
	}
	if d, err := s.Lookup("app:1", nil); err != nil || d.Digest != descs[1].Digest {
		t.Errorf("app:1 -> %v, %v", d.Digest, err)
	}
	if d, err := s.Lookup("app:2", nil); err != nil || d.Digest != descs[0].Digest {
		t.Errorf("app:2 -> %v, %v", d.Digest, err)
	}
	if _, err := s.Lookup("nope", nil); !errdefs.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Lookup(nope): %v", err)
	}
	// A blob that is not in the store cannot be recorded.
	missing := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("missing"), Size: 7}
	if err := s.Tag(ctx, "x", missing); !errdefs.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Tag of a missing blob: %v", err)
	}
	raw, _ := os.ReadFile(filepath.Join(s.Dir(), "index.json"))
	var generic map[string]any
	if err := json.Unmarshal(raw, &generic); err != nil || generic["schemaVersion"] != float64(2) {
		t.Errorf("index.json is not a plain OCI index: %s", raw)
	}
}

// An unnamed Tag records an unnamed entry, whatever ref.name the
// descriptor brought from the layout it was read from; with that name it
// was never replaced, and each pull of "oci:DIR" added another entry.
func TestUnnamedTagDropsTheSourcesName(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := context.Background()
	data := randomBytes(100, 7)
	d := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(data), Size: 100,
		Annotations: map[string]string{ocispec.AnnotationRefName: "foo"}}
	must(t, s.WriteBlob(ctx, d, data))
	for i := 0; i < 3; i++ {
		must(t, s.Tag(ctx, "", d))
	}
	idx, err := s.Index()
	if err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 1 {
		t.Fatalf("%d entries, want 1: %+v", len(idx.Manifests), idx.Manifests)
	}
	if n, ok := idx.Manifests[0].Annotations[ocispec.AnnotationRefName]; ok {
		t.Errorf("the unnamed entry is named %q", n)
	}
	if d.Annotations[ocispec.AnnotationRefName] != "foo" {
		t.Errorf("Tag changed the caller's annotations: %v", d.Annotations)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestDefaultRefName(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"docker.io/library/alpine:3.20":     "docker.io/library/alpine:3.20",
		"127.0.0.1:5000/a/b:t":              "127.0.0.1:5000/a/b:t",
		"oci:/work/x/layout:latest":         "latest",
		"oci-archive:/tmp/image.tar":        "",
		"quay.io/a/b@sha256:" + hex64Digest: "quay.io/a/b@sha256:" + hex64Digest,
		"oci:/dir@sha256:" + hex64Digest:    "sha256:" + hex64Digest,
		// The name inside a layout, as the store writes it.
		"oci:/store:127.0.0.1:5000/a/b:t":                       "127.0.0.1:5000/a/b:t",
		"oci:/store:127.0.0.1:5000/a/b:t@sha256:" + hex64Digest: "127.0.0.1:5000/a/b:t",
		"oci-archive:/x.tar:app:1":                              "app:1",
		"docker-archive:/x.tar:example.com/demo:v1":             "example.com/demo:v1",
		"docker-archive:/x.tar:@1":                              "",
		"oci:/store:bad name":                                   "",
	}
	for in, want := range tests {
		if got := fetch.DefaultRefName(in); got != want {
			t.Errorf("DefaultRefName(%q) = %q, want %q", in, got, want)
		}
	}
}

const hex64Digest = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
