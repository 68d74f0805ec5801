package resolve_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/testutil/testimage"
	"github.com/ocifetch/ocifetch/resolve"
)

// An index as buildx pushes it, with a provenance and an SBOM attestation
// per image, is valid: the attestations are checked as attestations (the
// manifest they attest is listed, their layers are in-toto statements of
// the predicate type they are annotated with) and reported apart; they
// are not platforms. With a platform, only that platform's image and its
// attestation are validated.
func TestValidateBuildxAttestations(t *testing.T) {
	t.Parallel()
	idx, imgs, atts := testimage.BuildxIndex(t,
		testimage.Platform{OS: "linux", Arch: "amd64"}, testimage.Platform{OS: "linux", Arch: "arm64", Variant: "v8"})
	dir := layoutOf(t, map[string]v1.ImageIndex{"app": idx})
	ref := "oci:" + dir + ":app"
	ctx := context.Background()
	src, err := resolve.Open(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	v, err := resolve.ValidateImage(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Problems) != 0 {
		t.Errorf("problems in a buildx index: %v", v.Problems)
	}
	if len(v.Attestations) != 2 {
		t.Fatalf("attestations: %+v", v.Attestations)
	}
	for i, a := range v.Attestations {
		want, _ := imgs[i].Digest()
		ad, _ := atts[i].Digest()
		plat := []string{"linux/amd64", "linux/arm64/v8"}[i]
		if a.Subject != want.String() || a.Digest != ad.String() || a.Platform != plat ||
			!slices.Equal(a.PredicateTypes, []string{testimage.PredicateProvenance, testimage.PredicateSPDX}) || !strings.Contains(a.Where, "attestation") {
			t.Errorf("attestation %d: %+v, want subject %s (%s)", i, a, want, plat)
		}
	}

	// Resolving lists the platforms without unknown/unknown.
	res, err := resolve.Resolve(ctx, ref, resolve.WithPlatform(ocispec.Platform{OS: "linux", Architecture: "arm64"}))
	if err != nil {
		t.Fatal(err)
	}
	var plats []string
	for _, p := range res.Platforms {
		plats = append(plats, resolve.FormatPlatform(p))
	}
	if !slices.Equal(plats, []string{"linux/amd64", "linux/arm64/v8"}) {
		t.Errorf("platforms %v", plats)
	}
	_, err = resolve.Resolve(ctx, ref, resolve.WithPlatform(ocispec.Platform{OS: "linux", Architecture: "s390x"}))
	if !errdefs.Is(err, errdefs.ErrPlatformNotFound) || strings.Contains(err.Error(), "unknown") {
		t.Errorf("no s390x: %v", err)
	}

	// --platform: one image and its attestation.
	v, err = resolve.ValidateImage(ctx, src, resolve.WithPlatform(ocispec.Platform{OS: "linux", Architecture: "arm64"}))
	if err != nil || len(v.Problems) != 0 || len(v.Attestations) != 1 || v.Attestations[0].Platform != "linux/arm64/v8" {
		t.Errorf("arm64 only: %v %+v", err, v)
	}
	_, err = resolve.ValidateImage(ctx, src, resolve.WithPlatform(ocispec.Platform{OS: "linux", Architecture: "s390x"}))
	if !errdefs.Is(err, errdefs.ErrPlatformNotFound) || !strings.Contains(err.Error(), "available: linux/amd64, linux/arm64/v8") {
		t.Errorf("s390x: %v", err)
	}

	// An attestation of a manifest the index does not list, and one
	// whose statement says another predicate type than its annotation,
	// are problems of rule "attestation".
	bad := mutate.AppendManifests(idx, mutate.IndexAddendum{
		Add: testimage.Attestation(t, v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}, testimage.PredicateProvenance),
		Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"},
			Annotations: map[string]string{"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": "sha256:" + strings.Repeat("ab", 32)}},
	})
	dir2 := layoutOf(t, map[string]v1.ImageIndex{"bad": bad})
	src2, err := resolve.Open(ctx, "oci:"+filepath.Clean(dir2)+":bad")
	if err != nil {
		t.Fatal(err)
	}
	v, err = resolve.ValidateImage(ctx, src2)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Problems) != 1 || v.Problems[0].Rule != "attestation" || !strings.Contains(v.Problems[0].Message, "does not list") {
		b, _ := json.Marshal(v.Problems)
		t.Errorf("problems: %s", b)
	}
}

// Validate reads no entry of an index of more than MaxIndexEntries
// entries: it is one too_large problem, as for ResolveAll.
func TestValidateHugeIndex(t *testing.T) {
	t.Parallel()
	idx, _, _ := testimage.BuildxIndex(t, testimage.Platform{OS: "linux", Arch: "amd64"})
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	// The entries are copies of the first: Validate must not read them.
	// (Built as JSON: ggcr's mutate and layout take half a minute under
	// -race for a thousand entries.)
	for range resolve.MaxIndexEntries {
		im.Manifests = append(im.Manifests, im.Manifests[0])
	}
	raw, err := json.Marshal(im)
	if err != nil {
		t.Fatal(err)
	}
	dir := layoutOf(t, map[string]v1.ImageIndex{"base": idx})
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	h, _, _ := v1.SHA256(bytes.NewReader(raw))
	if err := p.WriteBlob(h, io.NopCloser(bytes.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	if err := p.AppendDescriptor(v1.Descriptor{MediaType: im.MediaType, Digest: h, Size: int64(len(raw)), Annotations: map[string]string{ocispec.AnnotationRefName: "huge"}}); err != nil {
		t.Fatal(err)
	}
	src, err := resolve.Open(context.Background(), "oci:"+dir+":huge")
	if err != nil {
		t.Fatal(err)
	}
	v, err := resolve.ValidateImage(context.Background(), src)
	if err != nil || len(v.Problems) != 1 || v.Problems[0].Rule != "too_large" || len(v.Attestations) != 0 {
		t.Fatalf("%v %+v", err, v)
	}
}
