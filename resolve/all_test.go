package resolve_test

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/testutil/hostile"
	"github.com/ocifetch/ocifetch/internal/testutil/testimage"
	"github.com/ocifetch/ocifetch/resolve"
)

// wideIndex pushes an index that lists one image's manifest n times.
func wideIndex(t *testing.T, reg *hostile.Registry, repo string, n int) (string, ocispec.Descriptor) {
	t.Helper()
	img := testimage.Image(t, 1, "linux", "amd64", "")
	reg.PutImage(t, repo, "img", img)
	raw, _ := img.RawManifest()
	d, _ := img.Digest()
	m := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digestOf(d), Size: int64(len(raw)),
		Platform: &ocispec.Platform{OS: "linux", Architecture: "amd64"}}
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex}
	idx.SchemaVersion = 2
	for i := 0; i < n; i++ {
		idx.Manifests = append(idx.Manifests, m)
	}
	body, err := json.Marshal(idx)
	if err != nil {
		t.Fatal(err)
	}
	reg.PutManifest(repo, "wide", ocispec.MediaTypeImageIndex, body)
	return reg.Host + "/" + repo + ":wide", m
}

// TestResolveAllWideIndex: an index listing one manifest hundreds of
// times costs one request for it and its config and gives one image; one
// listing more entries than MaxIndexEntries is too_large before its
// entries are read (an index of 15,000 entries took 30,000 requests).
func TestResolveAllWideIndex(t *testing.T) {
	t.Parallel()
	reg := hostile.New(t)
	ref, m := wideIndex(t, reg, "wide/a", 500)
	ra, err := resolve.ResolveAll(context.Background(), ref, anonymous)
	if err != nil {
		t.Fatal(err)
	}
	if len(ra.Images) != 1 || ra.Images[0].Manifest.Descriptor.Digest != m.Digest {
		t.Fatalf("%d images, want the one listed 500 times", len(ra.Images))
	}
	if n := reg.Count(hostile.Manifest, m.Digest.String()); n > 2 {
		t.Errorf("the manifest was asked for %d times", n)
	}
	if n := reg.Count(hostile.Blob, ""); n > 2 {
		t.Errorf("%d blob requests for one config", n)
	}

	ref, _ = wideIndex(t, reg, "wide/b", resolve.MaxIndexEntries+1)
	before := len(reg.Requests())
	_, err = resolve.ResolveAll(context.Background(), ref, anonymous)
	if errdefs.KindOf(err) != errdefs.ErrTooLarge {
		t.Fatalf("err = %v, want too_large", err)
	}
	if n := len(reg.Requests()) - before; n > 6 {
		t.Errorf("%d requests before refusing the index", n)
	}
}

// TestResolveAllNestedIndexesBounded: MaxIndexEntries bounds one index,
// but nested indexes multiply it; the walk as a whole stops at
// MaxDocuments with too_large.
func TestResolveAllNestedIndexesBounded(t *testing.T) {
	t.Parallel()
	reg := hostile.New(t)
	_, m := wideIndex(t, reg, "nested/a", 1)
	root := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex}
	root.SchemaVersion = 2
	for c := 0; c < 5; c++ {
		child := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Annotations: map[string]string{"child": strconv.Itoa(c)}}
		child.SchemaVersion = 2
		for i := 0; i < resolve.MaxIndexEntries; i++ {
			child.Manifests = append(child.Manifests, m)
		}
		body, err := json.Marshal(child)
		if err != nil {
			t.Fatal(err)
		}
		d := digest.FromBytes(body)
		reg.PutManifest("nested/a", d.String(), ocispec.MediaTypeImageIndex, body)
		root.Manifests = append(root.Manifests, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: d, Size: int64(len(body))})
	}
	body, err := json.Marshal(root)
	if err != nil {
		t.Fatal(err)
	}
	reg.PutManifest("nested/a", "root", ocispec.MediaTypeImageIndex, body)
	_, err = resolve.ResolveAll(context.Background(), reg.Host+"/nested/a:root", anonymous)
	if errdefs.KindOf(err) != errdefs.ErrTooLarge {
		t.Fatalf("err = %v, want too_large", err)
	}
}

// TestResolveUntypedIndexEntry: an index entry without a mediaType is a
// candidate for its platform, its type read from the document, as
// ResolveAll reads it. Before, Resolve skipped it and failed with
// platform_not_found while listing that very platform as available.
func TestResolveUntypedIndexEntry(t *testing.T) {
	t.Parallel()
	reg := hostile.New(t)
	img := testimage.Image(t, 1, "linux", "amd64", "")
	reg.PutImage(t, "untyped/a", "img", img)
	raw, _ := img.RawManifest()
	d, _ := img.Digest()
	for _, platform := range []*ocispec.Platform{{OS: "linux", Architecture: "amd64"}, nil} {
		idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex,
			Manifests: []ocispec.Descriptor{{Digest: digestOf(d), Size: int64(len(raw)), Platform: platform}}}
		idx.SchemaVersion = 2
		body, err := json.Marshal(idx)
		if err != nil {
			t.Fatal(err)
		}
		tag := "p" + strconv.FormatBool(platform != nil)
		reg.PutManifest("untyped/a", tag, ocispec.MediaTypeImageIndex, body)
		res, err := resolve.Resolve(context.Background(), reg.Host+"/untyped/a:"+tag, anonymous,
			resolve.WithPlatform(ocispec.Platform{OS: "linux", Architecture: "amd64"}))
		if err != nil {
			t.Fatalf("platform %v: %v", platform, err)
		}
		if res.Manifest.Descriptor.Digest != digestOf(d) || res.Manifest.Descriptor.MediaType == "" {
			t.Errorf("platform %v: resolved to %+v", platform, res.Manifest.Descriptor)
		}
		checkImage(t, res, img)
	}
}
