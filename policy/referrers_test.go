package policy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/testutil/hostile"
	"github.com/ocifetch/ocifetch/internal/testutil/testimage"
	"github.com/ocifetch/ocifetch/policy/sigstore"
	"github.com/ocifetch/ocifetch/resolve"
)

// bundleCopy is an image and the bundle referrer cosign attached to it,
// copied out of the real registry.
type bundleCopy struct {
	image, referrer []byte
	imageType       string
	blobs           [][]byte // the image's config and layers, the referrer's config and bundle
	referrerDesc    ocispec.Descriptor
}

// signedBundleCopy pushes an image as repoTag to a new fixture, signs it
// with the fixture's key in cosign's bundle format and copies both out.
func signedBundleCopy(t *testing.T, repoTag string) (*fixture, pushed, bundleCopy) {
	t.Helper()
	f, img := newSignedFixture(t, repoTag, "--new-bundle-format")
	return f, img, copyBundle(t, f, img)
}

func copyBundle(t *testing.T, f *fixture, img pushed) bundleCopy {
	t.Helper()
	get := func(ref string) *remote.Descriptor {
		r, err := name.ParseReference(ref)
		if err != nil {
			t.Fatal(err)
		}
		d, err := remote.Get(r)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	blob := func(repo string, d digest.Digest) []byte {
		r, err := name.NewDigest(repo + "@" + d.String())
		if err != nil {
			t.Fatal(err)
		}
		l, err := remote.Layer(r)
		if err != nil {
			t.Fatal(err)
		}
		return testimage.LayerBytes(t, l)
	}
	repo, _, _ := strings.Cut(img.byDigest(), "@")
	var c bundleCopy
	id := get(img.byDigest())
	c.image, c.imageType = id.Manifest, string(id.MediaType)
	var m ocispec.Manifest
	if err := json.Unmarshal(c.image, &m); err != nil {
		t.Fatal(err)
	}
	for _, d := range append([]ocispec.Descriptor{m.Config}, m.Layers...) {
		c.blobs = append(c.blobs, blob(repo, d.Digest))
	}
	idx := get(repo + ":" + img.digest.Algorithm().String() + "-" + img.digest.Encoded())
	var list ocispec.Index
	if err := json.Unmarshal(idx.Manifest, &list); err != nil || len(list.Manifests) != 1 {
		t.Fatalf("referrers index %s: %v", idx.Manifest, err)
	}
	c.referrerDesc = list.Manifests[0]
	c.referrerDesc.ArtifactType = sigstore.MediaTypeBundle // as a registry with the API lists it
	c.referrer = get(repo + "@" + c.referrerDesc.Digest.String()).Manifest
	var rm ocispec.Manifest
	if err := json.Unmarshal(c.referrer, &rm); err != nil {
		t.Fatal(err)
	}
	for _, d := range append([]ocispec.Descriptor{rm.Config}, rm.Layers...) {
		c.blobs = append(c.blobs, blob(repo, d.Digest))
	}
	return c
}

// serve puts the copy into a registry that has the referrers API, and
// answers referrers requests for the image with list.
func (c bundleCopy) serve(reg *hostile.Registry, repo string, list func(subject string) []ocispec.Descriptor) string {
	for _, b := range c.blobs {
		reg.PutBlob(repo, b)
	}
	reg.PutManifest(repo, "v1", c.imageType, c.image)
	reg.PutManifest(repo, "", ocispec.MediaTypeImageManifest, c.referrer)
	reg.Intercept(func(w http.ResponseWriter, r *http.Request, q hostile.Request) bool {
		if q.Kind != hostile.Referrers {
			return false
		}
		idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: list(q.Ref)}
		if idx.Manifests == nil {
			idx.Manifests = []ocispec.Descriptor{}
		}
		w.Header().Set("Content-Type", ocispec.MediaTypeImageIndex)
		_ = json.NewEncoder(w).Encode(idx)
		return true
	})
	return reg.Host + "/" + repo + ":v1"
}

// A bundle attached through the OCI 1.1 referrers API (which registry 2.8
// lacks, so the documents cosign made are served by a registry that has
// it) admits the image; the fallback tag is then not asked for. A listing
// that names another image's referrer, or thousands of referrers, does
// not admit it, and the lookup stops after MaxSignatures.
func TestBundleThroughTheReferrersAPI(t *testing.T) {
	t.Parallel()
	f, img, c := signedBundleCopy(t, "api:v1")
	ctx := context.Background()

	for _, tc := range []struct {
		name string
		list func(subject string) []ocispec.Descriptor
		ok   bool
		why  string
	}{
		{"listed", func(s string) []ocispec.Descriptor {
			if s != img.digest.String() {
				return nil
			}
			return []ocispec.Descriptor{c.referrerDesc}
		}, true, ""},
		{"none", func(string) []ocispec.Descriptor { return nil }, false, "no signature of"},
		{"endless", func(string) []ocispec.Descriptor {
			var out []ocispec.Descriptor
			for i := range 5000 {
				out = append(out, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: sigstore.MediaTypeBundle,
					Digest: digest.FromString(fmt.Sprint(i)), Size: 500})
			}
			return out
		}, false, "and 60 more"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := hostile.New(t)
			ref := c.serve(reg, "api", tc.list)
			res, err := resolve.Resolve(ctx, ref)
			if err != nil {
				t.Fatal(err)
			}
			// The registry identity differs from where cosign signed, which
			// a bundle does not record: matchRepository takes the
			// repository the bundle is found in.
			pol := policyFile(t, scoped(reg.Host+"/api", f.key.Public, matchRepository), nil)
			err = pol.Verify(ctx, res.Source, res)
			if tc.ok && err != nil {
				t.Fatal(err)
			}
			if !tc.ok {
				if err == nil {
					t.Fatal("admitted")
				}
				checkRefused(t, err, tc.why)
			}
			if n := reg.Count(hostile.Referrers, img.digest.String()); n != 1 {
				t.Errorf("%d referrers requests", n)
			}
			if n := reg.Count(hostile.Manifest, "sha256-"+img.digest.Encoded()); n != 0 {
				t.Errorf("the fallback tag was asked for %d times though the registry has the API", n)
			}
			if n := reg.Count(hostile.Manifest, ""); n > 2+sigstore.MaxSignatures+2 {
				t.Errorf("%d manifest requests: the referrers examined are not bounded", n)
			}
		})
	}
}

// TestOversizedSignatureDocumentCondemnsItself: a document at the classic
// signature tag that is over the size limit condemns that one signature,
// not the lookup: the bundle among the referrers still admits the image
// (it failed the whole check with too_large).
func TestOversizedSignatureDocumentCondemnsItself(t *testing.T) {
	t.Parallel()
	f, img, c := signedBundleCopy(t, "big:v1")
	reg := hostile.New(t)
	ref := c.serve(reg, "big", func(s string) []ocispec.Descriptor {
		if s != img.digest.String() {
			return nil
		}
		return []ocispec.Descriptor{c.referrerDesc}
	})
	huge := append([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{"x":"`),
		bytes.Repeat([]byte("a"), resolve.DefaultMaxDocumentSize)...)
	huge = append(huge, `"}}`...)
	reg.PutManifest("big", "sha256-"+img.digest.Encoded()+".sig", ocispec.MediaTypeImageManifest, huge)
	ctx := context.Background()
	res, err := resolve.Resolve(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	pol := policyFile(t, scoped(reg.Host+"/big", f.key.Public, matchRepository), nil)
	if err := pol.Verify(ctx, res.Source, res); err != nil {
		t.Fatalf("the bundle did not admit the image beside an oversized .sig: %v", err)
	}
	// Without the bundle, the oversized document alone is a refusal, not
	// a too_large failure of the check.
	reg2 := hostile.New(t)
	ref2 := c.serve(reg2, "big", func(string) []ocispec.Descriptor { return nil })
	reg2.PutManifest("big", "sha256-"+img.digest.Encoded()+".sig", ocispec.MediaTypeImageManifest, huge)
	res2, err := resolve.Resolve(ctx, ref2)
	if err != nil {
		t.Fatal(err)
	}
	pol2 := policyFile(t, scoped(reg2.Host+"/big", f.key.Public, matchRepository), nil)
	if err := pol2.Verify(ctx, res2.Source, res2); errdefs.KindOf(err) != errdefs.ErrUntrusted {
		t.Fatalf("err = %v (kind %s), want untrusted", err, errdefs.KindOf(err))
	}
}
