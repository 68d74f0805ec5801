package ocifetch_test

// The store as the one-call API uses it: pull policies with the registry
// stopped, two platforms of one tag, a pull of every platform, and a
// corrupt cached layer healed by the next unpack. Against the real
// registry process.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch"
	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/fetch"
	"github.com/ocifetch/ocifetch/internal/testutil/testimage"
	"github.com/ocifetch/ocifetch/internal/testutil/testregistry"
)

var (
	linuxAMD64 = ocispec.Platform{OS: "linux", Architecture: "amd64"}
	linuxARM64 = ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
)

// tree describes a directory: every path with its type and, for regular
// files, the sha256 of the content.
func tree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		what := d.Type().String()
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h := sha256.Sum256(b)
			what += " " + hex.EncodeToString(h[:])
		}
		out[rel] = what
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameTree(t *testing.T, a, b string) {
	t.Helper()
	ta, tb := tree(t, a), tree(t, b)
	if len(ta) != len(tb) {
		t.Fatalf("%s has %d entries, %s %d", a, len(ta), b, len(tb))
	}
	for k, v := range ta {
		if tb[k] != v {
			t.Fatalf("%s: %q in %s, %q in %s", k, v, a, tb[k], b)
		}
	}
}

func storeIndex(t *testing.T, dir string) ocispec.Index {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	return idx
}

// pushTwoPlatforms pushes an amd64 + arm64 index to ref.
func pushTwoPlatforms(t *testing.T, ref string) (v1.ImageIndex, []v1.Image) {
	t.Helper()
	idx, imgs := testimage.Index(t,
		testimage.Platform{OS: "linux", Arch: "amd64"},
		testimage.Platform{OS: "linux", Arch: "arm64", Variant: "v8"})
	testimage.PushIndex(t, ref, idx)
	return idx, imgs
}

// newStore is a store directory that does not exist yet and the option
// that names it.
func newStore(t *testing.T) (string, ocifetch.Option) {
	dir := filepath.Join(t.TempDir(), "store")
	return dir, ocifetch.WithStore(dir)
}

// storedLayer is the path in the store at storeDir of img's layer i and
// its bytes there.
func storedLayer(t *testing.T, storeDir string, img v1.Image, i int) (string, []byte) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	ld, err := layers[i].Digest()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(storeDir, "blobs", "sha256", ld.Hex)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return p, b
}

// corruptStoredLayer changes bytes of img's layer i in the store at
// storeDir in place, keeping its size and modification time (only the
// ctime tells), and returns the blob's path and its good bytes.
func corruptStoredLayer(t *testing.T, storeDir string, img v1.Image, i int) (string, []byte) {
	t.Helper()
	blob, good := storedLayer(t, storeDir, img, i)
	fi, err := os.Stat(blob)
	if err != nil {
		t.Fatal(err)
	}
	bad := slices.Clone(good)
	for j := len(bad) / 3; j < len(bad)/3+64 && j < len(bad); j++ {
		bad[j] ^= 0x5a
	}
	if err := os.WriteFile(blob, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(blob, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	return blob, good
}

func digestOf(t *testing.T, img v1.Image) digest.Digest {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return digest.Digest(d.String())
}

// Pull amd64, then arm64, of one tag; GC; both are still complete in the
// store and both unpack from it, with the registry gone.
func TestTwoPlatformsOfOneTagUnpackFromTheStore(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	ref := reg.Host + "/store/two:1"
	_, imgs := pushTwoPlatforms(t, ref)
	ctx := context.Background()
	work := t.TempDir()
	storeDir := filepath.Join(work, "store")
	store := ocifetch.WithStore(storeDir)
	for _, p := range []ocispec.Platform{linuxAMD64, linuxARM64} {
		if _, err := ocifetch.Pull(ctx, ref, store, ocifetch.WithPlatform(p)); err != nil {
			t.Fatal(err)
		}
	}
	s, err := fetch.OpenStore(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := s.GC(ctx); err != nil || len(res.Blobs) != 0 {
		t.Fatalf("GC removed %+v (%v)", res, err)
	}
	idx := storeIndex(t, storeDir)
	if len(idx.Manifests) != 2 {
		t.Fatalf("index.json: %+v", idx.Manifests)
	}
	images, err := s.Images(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, im := range images {
		if !im.Complete || im.Name != ref || im.Descriptor.Digest != digestOf(t, imgs[i]) {
			t.Errorf("image %d: %+v", i, im)
		}
	}
	reg.Stop()
	for i, p := range []ocispec.Platform{linuxAMD64, linuxARM64} {
		for _, how := range []struct {
			ref string
			opt ocifetch.Option
		}{
			{ref, ocifetch.WithPullPolicy(ocifetch.PullNever)},
			{"oci:" + storeDir + ":" + ref, ocifetch.WithPullPolicy(ocifetch.PullAlways)},
		} {
			dir := filepath.Join(t.TempDir(), "rootfs")
			res, err := ocifetch.Unpack(ctx, how.ref, dir, store, ocifetch.WithPlatform(p), how.opt)
			if err != nil {
				t.Fatalf("unpack %s for %s: %v", how.ref, p.Architecture, err)
			}
			if res.Resolved.Manifest.Descriptor.Digest != digestOf(t, imgs[i]) || len(res.Apply.Layers) != 2 {
				t.Errorf("unpack %s for %s: manifest %s, %d layers", how.ref, p.Architecture, res.Resolved.Manifest.Descriptor.Digest, len(res.Apply.Layers))
			}
		}
	}
	if got := storeIndex(t, storeDir); len(got.Manifests) != 2 {
		t.Errorf("unpacks from the store changed index.json: %+v", got.Manifests)
	}
}

// --pull never touches no network and fails with not_found when the store
// lacks the image; missing uses the store when it holds the image.
func TestPullPolicyWithTheRegistryStopped(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	ref := reg.Host + "/store/policy:1"
	_, imgs := pushTwoPlatforms(t, ref)
	ctx := context.Background()
	_, store := newStore(t)
	amd := ocifetch.WithPlatform(linuxAMD64)
	if _, err := ocifetch.Pull(ctx, ref, store, amd); err != nil {
		t.Fatal(err)
	}
	reg.Stop()

	for _, policy := range []ocifetch.PullPolicy{ocifetch.PullNever, ocifetch.PullMissing} {
		res, err := ocifetch.Unpack(ctx, ref, filepath.Join(t.TempDir(), "rootfs"), store, amd, ocifetch.WithPullPolicy(policy))
		if err != nil {
			t.Fatalf("%s: %v", policy, err)
		}
		if res.Resolved.Manifest.Descriptor.Digest != digestOf(t, imgs[0]) || res.Resolved.Reference != ref || res.Pull.Name != ref {
			t.Errorf("%s: %s as %s, recorded as %q", policy, res.Resolved.Manifest.Descriptor.Digest, res.Resolved.Reference, res.Pull.Name)
		}
	}
	// Pinned by digest: any copy in the store will do.
	pinned := reg.Host + "/store/policy@" + digestOf(t, imgs[0]).String()
	if _, err := ocifetch.Pull(ctx, pinned, store, ocifetch.WithPullPolicy(ocifetch.PullNever)); err != nil {
		t.Errorf("never, pinned: %v", err)
	}
	for _, c := range []struct {
		ref  string
		opts []ocifetch.Option
		kind errdefs.Kind
	}{
		{reg.Host + "/store/other:1", []ocifetch.Option{ocifetch.WithPullPolicy(ocifetch.PullNever)}, errdefs.ErrNotFound},
		{ref, []ocifetch.Option{ocifetch.WithPullPolicy(ocifetch.PullNever), ocifetch.WithPlatform(linuxARM64)}, errdefs.ErrPlatformNotFound},
		{ref, []ocifetch.Option{ocifetch.WithPullPolicy(ocifetch.PullMissing), ocifetch.WithPlatform(linuxARM64)}, errdefs.ErrNetwork},
		{ref, []ocifetch.Option{ocifetch.WithPullPolicy(ocifetch.PullAlways), amd}, errdefs.ErrNetwork},
	} {
		_, err := ocifetch.Pull(ctx, c.ref, append([]ocifetch.Option{store}, c.opts...)...)
		if errdefs.KindOf(err) != c.kind {
			t.Errorf("%s: %v (kind %s), want %s", c.ref, err, errdefs.KindOf(err), c.kind)
		}
	}
	if _, err := ocifetch.ParsePullPolicy("sometimes"); errdefs.KindOf(err) != errdefs.ErrInvalidArgument {
		t.Errorf("ParsePullPolicy: %v", err)
	}
}

// A cached layer corrupted on disk at the same size used to be trusted by
// its size: every unpack failed and nothing healed it. The next unpack
// now notices, fetches the layer again and succeeds.
func TestUnpackHealsASameSizeCorruption(t *testing.T) {
	t.Parallel()
	reg := testregistry.Shared(t)
	ref := reg.Host + "/store/heal:1"
	img := testimage.Image(t, 3, "linux", "amd64", "")
	testimage.PushImage(t, ref, img)
	ctx := context.Background()
	storeDir, store := newStore(t)
	first := filepath.Join(t.TempDir(), "rootfs")
	if _, err := ocifetch.Unpack(ctx, ref, first, store); err != nil {
		t.Fatal(err)
	}
	blob, good := corruptStoredLayer(t, storeDir, img, 1)
	second := filepath.Join(t.TempDir(), "rootfs")
	res, err := ocifetch.Unpack(ctx, ref, second, store)
	if err != nil {
		t.Fatalf("the unpack after the corruption: %v", err)
	}
	if res.Pull.Layers[1].Cached {
		t.Error("the corrupt layer was reported cached")
	}
	sameTree(t, first, second)
	if b, _ := os.ReadFile(blob); string(b) != string(good) {
		t.Error("the store still holds the corrupt layer")
	}
}

// TestPullNeverNamesACorruptBlob: with the registry out of reach, a
// stored layer corrupted at the same size is digest_mismatch naming the
// file (which is removed), not a blob "missing" from the store.
func TestPullNeverNamesACorruptBlob(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	ref := reg.Host + "/store/never:1"
	img := testimage.Image(t, 2, "linux", "amd64", "")
	testimage.PushImage(t, ref, img)
	ctx := context.Background()
	storeDir, store := newStore(t)
	if _, err := ocifetch.Pull(ctx, ref, store); err != nil {
		t.Fatal(err)
	}
	reg.Stop()
	blob, _ := corruptStoredLayer(t, storeDir, img, 1)
	target := filepath.Join(t.TempDir(), "rootfs")
	_, err := ocifetch.Unpack(ctx, ref, target, store, ocifetch.WithPullPolicy(ocifetch.PullNever))
	if errdefs.KindOf(err) != errdefs.ErrDigestMismatch || !strings.Contains(err.Error(), blob) || !strings.Contains(err.Error(), "layer 2") {
		t.Fatalf("err = %v (kind %s), want digest_mismatch naming layer 2 and %s", err, errdefs.KindOf(err), blob)
	}
	if _, err := os.Lstat(blob); !os.IsNotExist(err) {
		t.Error("the corrupt blob is still in the store")
	}
	if _, err := os.Lstat(target); !os.IsNotExist(err) {
		t.Error("the target was created")
	}
}

// attestation builds the manifest buildx pushes beside an image: platform
// unknown/unknown, an in-toto layer, annotations naming the image.
func attestation(t *testing.T, of v1.Image) mutate.IndexAddendum {
	t.Helper()
	l, err := random.Layer(300, types.MediaType("application/vnd.in-toto+json"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON), l)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := of.Digest()
	return mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
		Platform:    &v1.Platform{OS: "unknown", Architecture: "unknown"},
		Annotations: map[string]string{"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": d.String()},
	}}
}

// pull of every platform keeps the index, every platform and the
// attestations, as one index.json entry.
func TestPullAllKeepsTheIndexAndEveryPlatform(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	ref := reg.Host + "/store/all:1"
	idx, imgs := testimage.Index(t,
		testimage.Platform{OS: "linux", Arch: "amd64"},
		testimage.Platform{OS: "linux", Arch: "arm64", Variant: "v8"})
	idx = mutate.AppendManifests(idx, attestation(t, imgs[0]))
	testimage.PushIndex(t, ref, idx)
	ctx := context.Background()
	storeDir, store := newStore(t)
	// One platform first: the whole index replaces its entry.
	if _, err := ocifetch.Pull(ctx, ref, store, ocifetch.WithPlatform(linuxAMD64)); err != nil {
		t.Fatal(err)
	}
	res, err := ocifetch.PullAll(ctx, ref, store)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := idx.Digest()
	if len(res.Pull.Images) != 2 || len(res.Resolved.Artifacts) != 1 || res.Pull.Entry.Digest.String() != id.String() {
		t.Fatalf("PullAll: %d images, %d artifacts, entry %s", len(res.Pull.Images), len(res.Resolved.Artifacts), res.Pull.Entry.Digest)
	}
	got := storeIndex(t, storeDir)
	if len(got.Manifests) != 1 || got.Manifests[0].Digest.String() != id.String() || got.Manifests[0].MediaType != ocispec.MediaTypeImageIndex ||
		got.Manifests[0].Annotations[ocispec.AnnotationRefName] != ref || got.Manifests[0].Platform != nil {
		t.Fatalf("index.json: %+v", got.Manifests)
	}
	s, err := fetch.OpenStore(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	if gc, err := s.GC(ctx); err != nil || len(gc.Blobs) != 0 {
		t.Fatalf("GC removed %+v (%v)", gc, err)
	}
	// Every blob of the index is there, the attestation's included.
	im, _ := idx.IndexManifest()
	for _, m := range im.Manifests {
		img, err := idx.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		want := []v1.Hash{m.Digest}
		cn, _ := img.ConfigName()
		want = append(want, cn)
		ls, _ := img.Layers()
		for _, l := range ls {
			d, _ := l.Digest()
			want = append(want, d)
		}
		for _, d := range want {
			if _, err := os.Stat(filepath.Join(storeDir, "blobs", "sha256", d.Hex)); err != nil {
				t.Errorf("%s of %s is not in the store", d, m.Digest)
			}
		}
	}
	reg.Stop()
	for i, p := range []ocispec.Platform{linuxAMD64, linuxARM64} {
		res, err := ocifetch.Unpack(ctx, ref, filepath.Join(t.TempDir(), "rootfs"), store, ocifetch.WithPlatform(p),
			ocifetch.WithPullPolicy(ocifetch.PullNever))
		if err != nil {
			t.Fatalf("unpack %s from the store: %v", p.Architecture, err)
		}
		if res.Resolved.Manifest.Descriptor.Digest != digestOf(t, imgs[i]) {
			t.Errorf("unpack %s: manifest %s", p.Architecture, res.Resolved.Manifest.Descriptor.Digest)
		}
	}
	// The index entry covers both: nothing was added beside it.
	if got := storeIndex(t, storeDir); len(got.Manifests) != 1 {
		t.Errorf("index.json after unpacks: %+v", got.Manifests)
	}
	if _, err := ocifetch.PullAll(ctx, ref, store, ocifetch.WithPullPolicy(ocifetch.PullNever)); err != nil {
		t.Errorf("pull --platform all --pull never: %v", err)
	}
}
