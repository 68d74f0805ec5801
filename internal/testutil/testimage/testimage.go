// Package testimage builds and pushes images for tests: random layers,
// multi-platform indexes, and hand-made documents that a normal client
// would refuse to produce.
package testimage

import (
	"bytes"
	"encoding/json"
	"io"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Image returns a random OCI image of layers gzip layers for a platform.
func Image(t testing.TB, layers int, os, arch, variant string) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for i := 0; i < layers; i++ {
		l, err := random.Layer(512, types.OCILayer)
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	return withPlatform(t, img, os, arch, variant)
}

// FromLayers returns an OCI image for a platform whose layers are the
// given gzip blobs, byte for byte (what the registry will serve).
func FromLayers(t testing.TB, gzLayers [][]byte, os, arch, variant string) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, gz := range gzLayers {
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(gz)), nil },
			tarball.WithMediaType(types.OCILayer))
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	return withPlatform(t, img, os, arch, variant)
}

// withPlatform returns img with the platform set in its config.
func withPlatform(t testing.TB, img v1.Image, os, arch, variant string) v1.Image {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = os, arch, variant
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// Platform is one entry of an index built by Index.
type Platform struct {
	OS, Arch, Variant string
	// IndexVariant overrides what the index entry says about the variant
	// (the config keeps Variant); "-" leaves the entry's variant empty.
	IndexVariant string
}

// Index returns an OCI index with one random image per platform, each entry
// carrying its platform.
func Index(t testing.TB, platforms ...Platform) (v1.ImageIndex, []v1.Image) {
	t.Helper()
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	var imgs []v1.Image
	for _, p := range platforms {
		img := Image(t, 2, p.OS, p.Arch, p.Variant)
		imgs = append(imgs, img)
		v := p.Variant
		switch p.IndexVariant {
		case "":
		case "-":
			v = ""
		default:
			v = p.IndexVariant
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: p.OS, Architecture: p.Arch, Variant: v}},
		})
	}
	return idx, imgs
}

// Docker returns a random Docker schema 2 image (Docker media types for
// the manifest, config and gzip layers).
func Docker(t testing.TB, layers int, os, arch string) v1.Image {
	t.Helper()
	img, err := random.Image(512, int64(layers))
	if err != nil {
		t.Fatal(err)
	}
	return withPlatform(t, img, os, arch, "")
}

// PushImage pushes img to ref ("host/repo:tag") and returns its digest.
func PushImage(t testing.TB, ref string, img v1.Image, opts ...remote.Option) v1.Hash {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, opts...); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// PushIndex pushes an index and all its images to ref.
func PushIndex(t testing.TB, ref string, idx v1.ImageIndex, opts ...remote.Option) v1.Hash {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx, opts...); err != nil {
		t.Fatalf("push index %s: %v", ref, err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Raw is a hand-made manifest or index document.
type Raw struct {
	Body []byte
	Type types.MediaType
}

// RawManifest implements remote.Taggable.
func (r Raw) RawManifest() ([]byte, error) { return r.Body, nil }

// MediaType is the Content-Type the document is pushed with.
func (r Raw) MediaType() (types.MediaType, error) { return r.Type, nil }

// PushRaw pushes a document as it is to ref and returns its digest.
func PushRaw(t testing.TB, ref string, body []byte, mediaType types.MediaType, opts ...remote.Option) v1.Hash {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(r, Raw{Body: body, Type: mediaType}, opts...); err != nil {
		t.Fatalf("push raw %s: %v", ref, err)
	}
	h, _, err := v1.SHA256(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// JSON marshals v or fails the test.
func JSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
