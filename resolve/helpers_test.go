package resolve_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/testutil/testimage"
	"github.com/ocifetch/ocifetch/resolve"
)

func digestOf(h v1.Hash) digest.Digest { return digest.Digest(h.String()) }

// amd64AndArm64 returns an index of two random images, linux/amd64 and
// linux/arm64/v8, and the images in that order.
func amd64AndArm64(t *testing.T) (v1.ImageIndex, []v1.Image) {
	t.Helper()
	return testimage.Index(t,
		testimage.Platform{OS: "linux", Arch: "amd64"},
		testimage.Platform{OS: "linux", Arch: "arm64", Variant: "v8"})
}

// layoutOf writes the named indexes into a new OCI layout and returns
// its directory.
func layoutOf(t *testing.T, named map[string]v1.ImageIndex) string {
	t.Helper()
	dir := t.TempDir()
	testimage.WriteLayout(t, dir, named)
	return dir
}

// validateRef opens ref and validates it, failing the test on an error.
func validateRef(t *testing.T, ref string) []resolve.Problem {
	t.Helper()
	src, err := resolve.Open(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	problems, err := resolve.Validate(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	return problems
}

// staticKeychain hands out one set of credentials for one host.
type staticKeychain struct {
	host, user, pass string
}

func (k staticKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if r.RegistryStr() == k.host {
		return authn.FromConfig(authn.AuthConfig{Username: k.user, Password: k.pass}), nil
	}
	return authn.Anonymous, nil
}

// anonymous keeps the developer's own Docker config out of the tests.
var anonymous = resolve.WithKeychain(authn.NewMultiKeychain())

func mustResolve(t *testing.T, ref string, opts ...resolve.Option) *resolve.Resolved {
	t.Helper()
	res, err := resolve.Resolve(context.Background(), ref, append([]resolve.Option{anonymous}, opts...)...)
	if err != nil {
		t.Fatalf("Resolve(%s): %v", ref, err)
	}
	return res
}

// resolveFails resolves ref with opts, as given, fails the test unless
// that fails with an error of kind (as wantKind checks it), and returns
// the error.
func resolveFails(t *testing.T, kind errdefs.Kind, ref string, opts ...resolve.Option) error {
	t.Helper()
	_, err := resolve.Resolve(context.Background(), ref, opts...)
	wantKind(t, err, kind)
	return err
}

func wantKind(t *testing.T, err error, kind errdefs.Kind) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", kind)
	}
	if !errors.Is(err, kind) || errdefs.KindOf(err) != kind {
		t.Fatalf("error %q has kind %q, want %q", err, errdefs.KindOf(err), kind)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("error message spans lines: %q", err)
	}
}

// checkImage compares a resolved image with what was pushed, field by field.
func checkImage(t *testing.T, res *resolve.Resolved, img v1.Image) {
	t.Helper()
	d, _ := img.Digest()
	if res.Manifest.Descriptor.Digest.String() != d.String() {
		t.Fatalf("manifest digest %s, want %s", res.Manifest.Descriptor.Digest, d)
	}
	raw, _ := img.RawManifest()
	if string(res.Manifest.Data) != string(raw) {
		t.Fatal("manifest bytes differ from what was pushed")
	}
	cfgName, _ := img.ConfigName()
	if res.Config.Descriptor.Digest.String() != cfgName.String() {
		t.Fatalf("config digest %s, want %s", res.Config.Descriptor.Digest, cfgName)
	}
	rawCfg, _ := img.RawConfigFile()
	if string(res.Config.Data) != string(rawCfg) {
		t.Fatal("config bytes differ from what was pushed")
	}
	layers, _ := img.Layers()
	if len(res.Layers) != len(layers) {
		t.Fatalf("%d layers, want %d", len(res.Layers), len(layers))
	}
	for i, l := range layers {
		ld, _ := l.Digest()
		diff, _ := l.DiffID()
		size, _ := l.Size()
		mt, _ := l.MediaType()
		got := res.Layers[i]
		if got.Digest.String() != ld.String() || got.DiffID.String() != diff.String() || got.Size != size || got.MediaType != string(mt) {
			t.Fatalf("layer %d = %s %s %d %s, want %s %s %d %s", i, got.Digest, got.DiffID, got.Size, got.MediaType, ld, diff, size, mt)
		}
	}
}

// corrupt flips one byte of a file in place, keeping its size.
func corrupt(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// plantManifest writes a manifest straight into a registry's storage and
// tags it, for documents the registry would refuse on push (too large,
// ambiguous). The registry serves what its storage holds.
func plantManifest(t *testing.T, storage, repo, tag string, body []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(body)
	root := filepath.Join(storage, "docker", "registry", "v2")
	files := map[string][]byte{
		filepath.Join(root, "blobs", "sha256", d.Encoded()[:2], d.Encoded(), "data"):                                 body,
		filepath.Join(root, "repositories", repo, "_manifests", "revisions", "sha256", d.Encoded(), "link"):          []byte(d.String()),
		filepath.Join(root, "repositories", repo, "_manifests", "tags", tag, "current", "link"):                      []byte(d.String()),
		filepath.Join(root, "repositories", repo, "_manifests", "tags", tag, "index", "sha256", d.Encoded(), "link"): []byte(d.String()),
	}
	for p, b := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return d
}
