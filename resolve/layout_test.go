package resolve_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/testutil/testimage"
	"github.com/ocifetch/ocifetch/resolve"
)

func TestResolveLayout(t *testing.T) {
	t.Parallel()
	idx, imgs := amd64AndArm64(t)
	other, otherImgs := testimage.Index(t, testimage.Platform{OS: "linux", Arch: "amd64"})
	dir := layoutOf(t, map[string]v1.ImageIndex{"v1": idx, "v2": other})
	arm64 := resolve.WithPlatform(ocispec.Platform{OS: "linux", Architecture: "arm64"})
	amd64 := resolve.WithPlatform(ocispec.Platform{OS: "linux", Architecture: "amd64"})

	res := mustResolve(t, "oci:"+dir+":v1", arm64)
	checkImage(t, res, imgs[1])
	if res.Reference != "oci:"+dir+":v1" {
		t.Fatalf("reference %q", res.Reference)
	}
	checkImage(t, mustResolve(t, "oci:"+dir+":v2", amd64), otherImgs[0])

	d, _ := idx.Digest()
	checkImage(t, mustResolve(t, "oci:"+dir+"@"+d.String(), arm64), imgs[1])
	// A manifest that index.json does not list, named by digest.
	md, _ := imgs[0].Digest()
	checkImage(t, mustResolve(t, "oci:"+dir+"@"+md.String()), imgs[0])

	ctx := context.Background()
	_, err := resolve.Resolve(ctx, "oci:"+dir+":nope")
	wantKind(t, err, errdefs.ErrNotFound)
	_, err = resolve.Resolve(ctx, "oci:"+dir)
	wantKind(t, err, errdefs.ErrInvalidArgument) // two images: which one?
	_, err = resolve.Resolve(ctx, "oci:"+t.TempDir())
	wantKind(t, err, errdefs.ErrNotFound)
	// A bad digest in the reference is the caller's, as in a registry
	// reference: invalid_argument.
	_, err = resolve.Resolve(ctx, "oci:"+dir+"@sha256:../../etc/passwd")
	wantKind(t, err, errdefs.ErrInvalidArgument)

	// Bytes changed behind a digest are caught.
	cfg, _ := imgs[1].ConfigName()
	corrupt(t, filepath.Join(dir, "blobs", "sha256", cfg.Hex))
	_, err = resolve.Resolve(ctx, "oci:"+dir+":v1", arm64)
	wantKind(t, err, errdefs.ErrDigestMismatch)
}

func TestResolveLayoutRefusesSymlinkedBlob(t *testing.T) {
	t.Parallel()
	idx, imgs := testimage.Index(t, testimage.Platform{OS: "linux", Arch: "amd64"})
	dir := layoutOf(t, map[string]v1.ImageIndex{"v1": idx})
	cfg, _ := imgs[0].ConfigName()
	p := filepath.Join(dir, "blobs", "sha256", cfg.Hex)
	if err := os.Rename(p, p+".real"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(p+".real", p); err != nil {
		t.Fatal(err)
	}
	resolveFails(t, errdefs.ErrInvalidArgument, "oci:"+dir+":v1", resolve.WithPlatform(ocispec.Platform{OS: "linux", Architecture: "amd64"}))
}

func TestResolveCommittedLayout(t *testing.T) {
	t.Parallel()
	res := mustResolve(t, "oci:../testdata/layouts/multiarch:latest", resolve.WithPlatform(ocispec.Platform{OS: "linux", Architecture: "arm64"}))
	if got := resolve.FormatPlatform(resolve.Normalize(res.Platform)); got != "linux/arm64/v8" {
		t.Fatalf("platform %s", got)
	}
	if len(res.Indexes) != 1 || len(res.Layers) != 2 || len(res.Platforms) != 3 {
		t.Fatalf("%d indexes, %d layers, %d platforms", len(res.Indexes), len(res.Layers), len(res.Platforms))
	}
}

func TestOpenRejectsBadReferences(t *testing.T) {
	t.Parallel()
	for _, ref := range []string{"", "UPPER/case", "host:5000/a/b@sha256:123", "a b", "docker-archive:x.tar@-1"} {
		_, err := resolve.Open(context.Background(), ref)
		if errdefs.KindOf(err) != errdefs.ErrInvalidArgument && errdefs.KindOf(err) != errdefs.ErrManifestInvalid {
			t.Errorf("Open(%q) = %v (kind %q), want invalid_argument", ref, err, errdefs.KindOf(err))
		}
	}
}

func TestOpenNormalizesNames(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"alpine":                          "docker.io/library/alpine:latest",
		"docker.io/library/alpine:3.20":   "docker.io/library/alpine:3.20",
		"user/app":                        "docker.io/user/app:latest",
		"docker://alpine:3":               "docker.io/library/alpine:3",
		"index.docker.io/library/busybox": "docker.io/library/busybox:latest",
		"localhost/x":                     "localhost/x:latest",
		"host:5000/a/b:t":                 "host:5000/a/b:t",
		"quay.io/a/b@sha256:" + hex64:     "quay.io/a/b@sha256:" + hex64,
		"quay.io/a/b:t@sha256:" + hex64:   "quay.io/a/b@sha256:" + hex64,
	}
	for in, want := range tests {
		src, err := resolve.Open(context.Background(), in)
		if err != nil {
			t.Errorf("Open(%q): %v", in, err)
			continue
		}
		if src.Reference() != want {
			t.Errorf("Open(%q).Reference() = %q, want %q", in, src.Reference(), want)
		}
	}
}

const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// References split as skopeo splits them: a trailing @ALG:HEX is a digest,
// then the first ':' ends the path, so the names ocifetch's store writes
// ("127.0.0.1:5000/repo:tag") can be addressed as oci:STORE:NAME.
func TestLayoutReferencesSplitAtTheFirstColon(t *testing.T) {
	t.Parallel()
	idx, imgs := testimage.Index(t, testimage.Platform{OS: "linux", Arch: "amd64"})
	other, otherImgs := testimage.Index(t, testimage.Platform{OS: "linux", Arch: "amd64"})
	const name = "127.0.0.1:5000/team/app:1.0"
	dir := layoutOf(t, map[string]v1.ImageIndex{name: idx, "127.0.0.1:5000/team/app@sha256:" + hex64: other})
	amd64 := resolve.WithPlatform(ocispec.Platform{OS: "linux", Architecture: "amd64"})

	res := mustResolve(t, "oci:"+dir+":"+name, amd64)
	checkImage(t, res, imgs[0])
	if res.Reference != "oci:"+dir+":"+name {
		t.Errorf("reference %q", res.Reference)
	}
	// A name that ends in a digest is a name with a pinned digest: the
	// digest decides.
	d, _ := other.Digest()
	checkImage(t, mustResolve(t, "oci:"+dir+":127.0.0.1:5000/team/app@"+d.String(), amd64), otherImgs[0])
	d0, _ := idx.Digest()
	checkImage(t, mustResolve(t, "oci:"+dir+":"+name+"@"+d0.String(), amd64), imgs[0])
	// oci-archive: the same rule.
	archive := filepath.Join(t.TempDir(), "image.tar")
	testimage.TarDir(t, dir, archive, "./")
	checkImage(t, mustResolve(t, "oci-archive:"+archive+":"+name, amd64), imgs[0])

	ctx := context.Background()
	for ref, kind := range map[string]errdefs.Kind{
		"oci:" + dir + ":":                           errdefs.ErrInvalidArgument,
		"oci:" + dir + ":127.0.0.1:5000/team/app:2":  errdefs.ErrNotFound,
		"oci:" + dir + ":" + name + "@sha256:nothex": errdefs.ErrInvalidArgument,
		// The path ends at the first colon: a directory with one cannot
		// be named (as in skopeo); OpenLayout takes one as it is.
		"oci:" + dir + "x:y:" + name: errdefs.ErrNotFound,
	} {
		if _, err := resolve.Resolve(ctx, ref, amd64); errdefs.KindOf(err) != kind {
			t.Errorf("%s: %v, want %s", ref, err, kind)
		}
	}
	colon := filepath.Join(t.TempDir(), "a:b")
	testimage.WriteLayout(t, colon, map[string]v1.ImageIndex{name: idx})
	src, err := resolve.OpenLayout(colon, name, "", amd64)
	if err != nil {
		t.Fatal(err)
	}
	res, err = resolve.ResolveSource(ctx, src, amd64)
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, res, imgs[0])
}

// Several entries of one name, one per platform, as the store records a
// tag pulled for two platforms: chosen by platform, as an index would be.
func TestLayoutNameWithSeveralEntriesResolvesByPlatform(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, imgs := amd64AndArm64(t)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	for i, plat := range []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64", Variant: "v8"}} {
		if err := p.AppendImage(imgs[i], layout.WithPlatform(plat),
			layout.WithAnnotations(map[string]string{ocispec.AnnotationRefName: "app:1", "com.github.ocifetch.indexes": "sha256:" + hex64})); err != nil {
			t.Fatal(err)
		}
	}
	for i, plat := range []ocispec.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}} {
		checkImage(t, mustResolve(t, "oci:"+dir+":app:1", resolve.WithPlatform(plat)), imgs[i])
	}
	// Without a name, the layout's one name is meant.
	checkImage(t, mustResolve(t, "oci:"+dir, resolve.WithPlatform(ocispec.Platform{OS: "linux", Architecture: "arm64"})), imgs[1])
	err = resolveFails(t, errdefs.ErrPlatformNotFound, "oci:"+dir+":app:1", resolve.WithPlatform(ocispec.Platform{OS: "linux", Architecture: "s390x"}))
	if err != nil && !strings.Contains(err.Error(), "linux/amd64") {
		t.Errorf("the error does not list what is there: %v", err)
	}
}

// TestLayoutSkipsEntriesWithInvalidDigests: a hand-edited index.json entry
// whose digest does not parse (sha256:../../x) does not hide the valid
// entries of the same name; a name with only such entries is
// manifest_invalid, and no path is ever built from them.
func TestLayoutSkipsEntriesWithInvalidDigests(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	img := testimage.Image(t, 1, "linux", "amd64", "")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithPlatform(v1.Platform{OS: "linux", Architecture: "amd64"}),
		layout.WithAnnotations(map[string]string{ocispec.AnnotationRefName: "app"})); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	bad := func(name string) ocispec.Descriptor {
		return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: "sha256:../../../../tmp/victim", Size: 10,
			Platform: &ocispec.Platform{OS: "linux", Architecture: "amd64"}, Annotations: map[string]string{ocispec.AnnotationRefName: name}}
	}
	idx.Manifests = append([]ocispec.Descriptor{bad("app"), bad("only-bad")}, idx.Manifests...)
	raw, _ = json.Marshal(idx)
	if err := os.WriteFile(filepath.Join(dir, "index.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	checkImage(t, mustResolve(t, "oci:"+dir+":app", resolve.WithPlatform(ocispec.Platform{OS: "linux", Architecture: "amd64"})), img)
	resolveFails(t, errdefs.ErrManifestInvalid, "oci:"+dir+":only-bad")
}
