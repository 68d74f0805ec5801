package testimage

import (
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The in-toto predicate types buildx attaches: provenance, and an SBOM
// with --sbom.
const (
	PredicateProvenance = "https://slsa.dev/provenance/v0.2"
	PredicateSPDX       = "https://spdx.dev/Document"
)

// BuildxIndex returns an index as "docker buildx build --push" makes it
// (with provenance, the default since buildx 0.10, and an SBOM): for each
// platform an image entry, then for each image an attestation manifest
// under platform unknown/unknown, annotated vnd.docker.reference.type =
// attestation-manifest and vnd.docker.reference.digest = the image's
// manifest digest, whose config is an OCI config of os and architecture
// "unknown" and whose layers are in-toto statements
// (application/vnd.in-toto+json) about the image, annotated with their
// predicate type. It also returns the images and the attestations.
func BuildxIndex(t testing.TB, platforms ...Platform) (idx v1.ImageIndex, images, attestations []v1.Image) {
	t.Helper()
	idx = mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	var atts []mutate.IndexAddendum
	for _, p := range platforms {
		img := Image(t, 2, p.OS, p.Arch, p.Variant)
		images = append(images, img)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: p.OS, Architecture: p.Arch, Variant: p.Variant}},
		})
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		att := Attestation(t, d, PredicateProvenance, PredicateSPDX)
		attestations = append(attestations, att)
		atts = append(atts, mutate.IndexAddendum{
			Add: att,
			Descriptor: v1.Descriptor{
				Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"},
				Annotations: map[string]string{
					"vnd.docker.reference.type":   "attestation-manifest",
					"vnd.docker.reference.digest": d.String(),
				},
			},
		})
	}
	// buildx lists the attestations after the images.
	return mutate.AppendManifests(idx, atts...), images, attestations
}

// Attestation returns an attestation manifest as buildx makes it for the
// image manifest subject: one in-toto statement per predicate type.
func Attestation(t testing.TB, subject v1.Hash, predicates ...string) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, pt := range predicates {
		stmt := JSON(t, map[string]any{
			"_type":         "https://in-toto.io/Statement/v0.1",
			"predicateType": pt,
			"subject": []map[string]any{{
				"name":   "pkg:docker/example/app@v1",
				"digest": map[string]string{subject.Algorithm: subject.Hex},
			}},
			"predicate": map[string]any{"buildType": "https://mobyproject.org/buildkit@v1"},
		})
		var err error
		img, err = mutate.Append(img, mutate.Addendum{
			Layer:       static.NewLayer(stmt, "application/vnd.in-toto+json"),
			Annotations: map[string]string{"in-toto.io/predicate-type": pt},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return withPlatform(t, img, "unknown", "unknown", "")
}
