package fetch_test

// Regression tests of the store rules (issue 11): typed index.json
// entries, one entry per (name, platform), GC marking through any
// document and keeping referrers, the store lock around every writer,
// re-verification of changed blobs, and shared downloads outliving the
// session that started them.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/fetch"
	"github.com/ocifetch/ocifetch/internal/testutil"
	"github.com/ocifetch/ocifetch/resolve"
)

// imageFor is testImage for another platform, with the manifest
// descriptor's media type as given ("" for none) and, for "", a manifest
// document without a mediaType field (both are optional in image-spec).
func imageFor(t testing.TB, src resolve.Source, p ocispec.Platform, manifestType string, layers ...[]byte) *resolve.Resolved {
	t.Helper()
	r := testImage(t, src, layers...)
	r.Image.Platform = p
	cfg, err := json.Marshal(r.Image)
	if err != nil {
		t.Fatal(err)
	}
	r.Config = resolve.Blob{Descriptor: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))}, Data: cfg}
	r.ImageManifest.Config = r.Config.Descriptor
	r.ImageManifest.MediaType = manifestType
	m, err := json.Marshal(r.ImageManifest)
	if err != nil {
		t.Fatal(err)
	}
	r.Manifest = resolve.Blob{Descriptor: ocispec.Descriptor{MediaType: manifestType, Digest: digest.FromBytes(m), Size: int64(len(m))}, Data: m}
	r.Platform = p
	return r
}

// twoPlatforms is two images of one source, for linux/amd64 with the
// layer la and for linux/arm64/v8 with lb.
func twoPlatforms(t testing.TB, la, lb []byte) (a, b *resolve.Resolved) {
	t.Helper()
	src := newMemSource(la, lb)
	return imageFor(t, src, amd64, ocispec.MediaTypeImageManifest, la), imageFor(t, src, arm64, ocispec.MediaTypeImageManifest, lb)
}

// allBlobs lists the digests of everything r consists of.
func allBlobs(r *resolve.Resolved) []digest.Digest {
	out := []digest.Digest{r.Manifest.Descriptor.Digest, r.Config.Descriptor.Digest}
	for _, b := range r.Indexes {
		out = append(out, b.Descriptor.Digest)
	}
	for _, l := range r.Layers {
		out = append(out, l.Digest)
	}
	return out
}

func assertHasAll(t testing.TB, s *fetch.Store, ds []digest.Digest) {
	t.Helper()
	for _, d := range ds {
		p, _ := s.BlobPath(d)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("blob %s is gone: %v", d, err)
			continue
		}
		if digest.FromBytes(b) != d {
			t.Errorf("blob %s holds other bytes", d)
		}
	}
}

var (
	amd64 = ocispec.Platform{OS: "linux", Architecture: "amd64"}
	arm64 = ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
)

// A manifest descriptor without mediaType (optional in image-spec) used to
// be recorded untyped; GC then never descended into it and deleted its
// config and layers.
func TestUntypedManifestSurvivesGC(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	layer := randomBytes(30_000, 60)
	r := imageFor(t, newMemSource(layer), amd64, "", layer)
	s := openStore(t)
	if _, err := fetch.Pull(ctx, r, s, fetch.WithRefName("untyped:1")); err != nil {
		t.Fatal(err)
	}
	idx, err := s.Index()
	if err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 1 || idx.Manifests[0].MediaType != ocispec.MediaTypeImageManifest {
		t.Fatalf("index.json entry %+v, want the manifest's media type, taken from the document", idx.Manifests)
	}
	res, err := s.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Blobs) != 0 {
		t.Fatalf("GC removed %v", res.Blobs)
	}
	assertHasAll(t, s, allBlobs(r))

	// An untyped entry written by another tool, or an older version, is
	// followed too: GC reads the document, whatever the descriptor says.
	entry := idx.Manifests[0]
	entry.MediaType = ""
	entry.Platform = nil
	raw, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, Manifests: []ocispec.Descriptor{entry}})
	must(t, os.WriteFile(filepath.Join(s.Dir(), "index.json"), raw, 0o644))
	if res, err = s.GC(ctx); err != nil || len(res.Blobs) != 0 {
		t.Fatalf("GC of an untyped entry removed %v (%v)", res, err)
	}
	assertHasAll(t, s, allBlobs(r))
	// The next update of index.json types it.
	must(t, s.Tag(ctx, "other", r.Manifest.Descriptor))
	idx, _ = s.Index()
	for _, m := range idx.Manifests {
		if m.MediaType != ocispec.MediaTypeImageManifest || m.Platform == nil || m.Platform.Architecture != "amd64" {
			t.Errorf("entry %+v lacks its media type or platform", m)
		}
	}
}

// Pulling linux/arm64 of a tag after linux/amd64 used to replace the
// index.json entry, and GC then deleted the amd64 image without a word.
func TestSecondPlatformOfATagKeepsTheFirst(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, b := twoPlatforms(t, randomBytes(40_000, 61), randomBytes(50_000, 62))
	// Both chosen from one index, as a pull of one tag does.
	index := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[{"mediaType":%q,"digest":%q,"size":%d,"platform":{"os":"linux","architecture":"amd64"}},{"mediaType":%q,"digest":%q,"size":%d,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}}]}`,
		ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageManifest, a.Manifest.Descriptor.Digest, a.Manifest.Descriptor.Size,
		ocispec.MediaTypeImageManifest, b.Manifest.Descriptor.Digest, b.Manifest.Descriptor.Size))
	ib := resolve.Blob{Descriptor: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromBytes(index), Size: int64(len(index))}, Data: index}
	a.Indexes, b.Indexes = []resolve.Blob{ib}, []resolve.Blob{ib}
	a.Reference, b.Reference = "registry.test/app:1", "registry.test/app:1"
	s := openStore(t)
	for _, r := range []*resolve.Resolved{a, b, a} { // amd64 again: replaces itself only
		if _, err := fetch.Pull(ctx, r, s); err != nil {
			t.Fatal(err)
		}
	}
	idx, _ := s.Index()
	if len(idx.Manifests) != 2 {
		t.Fatalf("%d entries, want one per platform: %+v", len(idx.Manifests), idx.Manifests)
	}
	for i, want := range []*resolve.Resolved{a, b} { // amd64 stays first, where skopeo looks
		m := idx.Manifests[i]
		if m.Digest != want.Manifest.Descriptor.Digest || m.Annotations[ocispec.AnnotationRefName] != "registry.test/app:1" ||
			m.Platform == nil || m.Platform.Architecture != want.Platform.Architecture {
			t.Errorf("entry %d: %+v", i, m)
		}
	}
	if res, err := s.GC(ctx); err != nil || len(res.Blobs) != 0 {
		t.Fatalf("GC removed %+v (%v)", res, err)
	}
	assertHasAll(t, s, append(allBlobs(a), allBlobs(b)...))
	for _, r := range []*resolve.Resolved{a, b} {
		d, err := s.Lookup("registry.test/app:1", &r.Platform)
		if err != nil || d.Digest != r.Manifest.Descriptor.Digest {
			t.Errorf("Lookup for %s: %s, %v", resolve.FormatPlatform(r.Platform), d.Digest, err)
		}
		// And both resolve from the store, by platform.
		res, err := resolve.Resolve(ctx, "oci:"+s.Dir()+":registry.test/app:1", resolve.WithPlatform(r.Platform))
		if err != nil || res.Manifest.Descriptor.Digest != r.Manifest.Descriptor.Digest {
			t.Errorf("oci:STORE:NAME for %s: %v", resolve.FormatPlatform(r.Platform), err)
		}
	}
	if _, err := s.Lookup("registry.test/app:1", &ocispec.Platform{OS: "linux", Architecture: "s390x"}); !errdefs.Is(err, errdefs.ErrPlatformNotFound) {
		t.Errorf("Lookup for s390x: %v, want platform_not_found", err)
	}

	// An index recorded under the name covers every platform: it
	// replaces both entries, and a manifest it lists is not added again.
	must(t, s.WriteBlob(ctx, ib.Descriptor, ib.Data))
	must(t, s.Tag(ctx, "registry.test/app:1", ocispec.Descriptor{Digest: ib.Descriptor.Digest, Size: ib.Descriptor.Size}))
	must(t, s.Tag(ctx, "registry.test/app:1", a.Manifest.Descriptor))
	idx, _ = s.Index()
	if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != ib.Descriptor.Digest || idx.Manifests[0].MediaType != ocispec.MediaTypeImageIndex {
		t.Fatalf("after recording the index: %+v", idx.Manifests)
	}
	if res, err := s.GC(ctx); err != nil || len(res.Blobs) != 0 {
		t.Fatalf("GC removed %+v (%v)", res, err)
	}
	assertHasAll(t, s, append(allBlobs(a), allBlobs(b)...))
	images, err := s.Images(ctx)
	if err != nil || len(images) != 1 || !images[0].Complete || len(images[0].Platforms) != 2 {
		t.Fatalf("Images: %+v, %v", images, err)
	}
	var want int64
	for _, r := range []*resolve.Resolved{a, b} {
		want += r.Manifest.Descriptor.Size + r.Config.Descriptor.Size + r.Layers[0].Size
	}
	if want += ib.Descriptor.Size; images[0].Size != want {
		t.Errorf("Images size %d, want %d", images[0].Size, want)
	}
}

// Store.GC used to delete temporary files that Tag and OpenStore were
// using; every writer now holds the store lock shared, GC exclusively.
// Hold keeps a blob written and not yet recorded from being collected.
func TestGCBesideTagAndOpenStore(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := context.Background()
	stop := make(chan struct{})
	var gcs atomic.Int64
	gcErr := make(chan error, 1)
	go func() {
		defer close(gcErr)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.GC(ctx); err != nil {
				gcErr <- err
				return
			}
			gcs.Add(1)
		}
	}()
	// 20 OpenStores of the same directory, each making 15 Tag calls (4
	// in the short tier) of blobs it writes first, holding the store
	// across both.
	perStore := testutil.Scale(15, 4)
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for w := 0; w < 20; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := fetch.OpenStore(s.Dir())
			if err != nil {
				errs <- err
				return
			}
			for j := range perStore {
				i := w*perStore + j
				data := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%064x","size":2},"layers":[]}`, i))
				d := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(data), Size: int64(len(data))}
				release, err := st.Hold(ctx)
				if err != nil {
					errs <- err
					return
				}
				if err := st.WriteBlob(ctx, d, data); err != nil {
					errs <- err
				} else if err := st.Tag(ctx, fmt.Sprintf("app:%d", i), d); err != nil {
					errs <- err
				}
				release()
			}
		}()
	}
	wg.Wait()
	close(stop)
	if err := <-gcErr; err != nil {
		t.Fatal("GC:", err)
	}
	close(errs)
	n := 0
	for err := range errs {
		if n++; n <= 3 {
			t.Error(err)
		}
	}
	if n > 0 {
		t.Fatalf("%d calls failed beside %d GCs", n, gcs.Load())
	}
	if gcs.Load() < 2 {
		t.Fatalf("GC ran %d times beside the writers: it was kept out", gcs.Load())
	}
	idx, _ := s.Index()
	if len(idx.Manifests) != 20*perStore {
		t.Fatalf("%d entries, want %d", len(idx.Manifests), 20*perStore)
	}
	for _, m := range idx.Manifests {
		p, _ := s.BlobPath(m.Digest)
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("recorded %s, whose blob is gone", m.Digest)
		}
	}
	t.Logf("%d GCs ran beside the writers", gcs.Load())
}

// GC removes what crashed writers left: atomicfile's named temporaries in
// the store and in blobs/, which only a GC holding the lock may touch.
func TestGCRemovesLeftoverTemporaries(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	leftovers := []string{
		filepath.Join(s.Dir(), ".ocifetch-tmp-index.json-0123456789abcdef"),
		filepath.Join(s.Dir(), "blobs", "sha256", ".ocifetch-tmp-"+hex64Digest+"-0123456789abcdef"),
	}
	for _, p := range leftovers {
		must(t, os.WriteFile(p, []byte("half"), 0o644))
	}
	if _, err := s.GC(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, p := range leftovers {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s left behind", p)
		}
	}
}

// A cached blob changed on disk at the same size used to be trusted by
// its size: pull said cached and every unpack failed. A file that no
// longer matches its stamp is hashed again, and fetched again when wrong.
func TestPullReverifiesAChangedCachedBlob(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	layer := randomBytes(200_000, 63)
	src, r, s, p := pulledLayer(t, layer)
	bad := flipByte(t, p, layer, 100_000, 0xff)
	calls := src.calls.Load()
	res, err := fetch.Pull(ctx, r, s)
	if err != nil {
		t.Fatal(err)
	}
	if res.Layers[0].Cached || src.calls.Load() == calls {
		t.Fatal("the changed blob was trusted as cached")
	}
	assertBlob(t, s, layer)
	// Unchanged since: cached, and not read again.
	calls = src.calls.Load()
	if res, err = fetch.Pull(ctx, r, s); err != nil || !res.Layers[0].Cached || src.calls.Load() != calls {
		t.Fatalf("second pull: %v cached=%v", err, res.Layers[0].Cached)
	}
	// Changed again, and the source no longer has it: the error says
	// what happened and names the file.
	must(t, os.WriteFile(p, bad, 0o644))
	delete(src.blobs, r.Layers[0].Digest)
	_, err = fetch.Pull(ctx, r, s)
	if !errdefs.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("pull of a corrupt blob the source lacks: %v", err)
	}
	if fileExists(p) {
		t.Fatal("the corrupt blob is still in the store")
	}
	src.blobs[r.Layers[0].Digest] = layer
	// A manifest changed behind its stamp is rewritten from memory.
	mp, _ := s.BlobPath(r.Manifest.Descriptor.Digest)
	must(t, os.WriteFile(mp, bytes.Repeat([]byte("x"), len(r.Manifest.Data)), 0o644))
	if _, err := fetch.Pull(ctx, r, s); err != nil {
		t.Fatal(err)
	}
	assertBlob(t, s, r.Manifest.Data)
}

// A change that leaves the file's stamp alone (bit rot) is caught by the
// hash of every stored read: the blob is removed and the error names its
// file, so the next pull fetches it again.
func TestStoredReadRemovesACorruptBlob(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	layer := randomBytes(300_000, 64)
	_, r, s, p := pulledLayer(t, layer)
	flipByte(t, p, layer, 7, 1)
	fetch.Restamp(s, r.Layers[0].Digest) // as if the disk had changed it
	sess, rc := startLayer(t, ctx, r, s)
	_, err := io.ReadAll(rc)
	rc.Close()
	if !errdefs.Is(err, errdefs.ErrDigestMismatch) || !strings.Contains(err.Error(), p) {
		t.Fatalf("read of the corrupt blob: %v, want digest_mismatch naming %s", err, p)
	}
	if _, err := sess.Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(p); err == nil {
		t.Fatal("the corrupt blob is still in the store")
	}
	res, err := fetch.Pull(ctx, r, s)
	if err != nil || res.Layers[0].Cached {
		t.Fatalf("the next pull: %v, cached=%v", err, res.Layers[0].Cached)
	}
	assertBlob(t, s, layer)
}

// gc --verify hashes everything and removes what does not match.
func TestGCVerifyRemovesCorruptBlobs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	la, lb := randomBytes(20_000, 65), randomBytes(20_000, 66)
	r := testImage(t, newMemSource(la, lb), la, lb)
	s := openStore(t)
	if _, err := fetch.Pull(ctx, r, s); err != nil {
		t.Fatal(err)
	}
	p, _ := s.BlobPath(r.Layers[1].Digest)
	must(t, os.WriteFile(p, randomBytes(20_000, 67), 0o644))
	res, err := s.GC(ctx)
	if err != nil || len(res.Blobs)+len(res.Corrupt) != 0 {
		t.Fatalf("plain GC: %+v, %v", res, err)
	}
	res, err = s.GC(ctx, fetch.WithVerify())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Corrupt, []digest.Digest{r.Layers[1].Digest}) || len(res.Blobs) != 0 || res.Bytes != 20_000 {
		t.Fatalf("GC --verify: %+v", res)
	}
	assertBlob(t, s, la)
	assertNoBlob(t, s, r.Layers[1].Digest)
}

// Signatures and other referrers stored for an image stay as long as it
// does: recorded with PutReferrer, named with cosign's tag, or stored as
// OCI 1.1 manifests whose subject is kept. Removing the image lets GC
// take them.
func TestGCKeepsReferrersOfKeptImages(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	layer := randomBytes(10_000, 68)
	r := testImage(t, newMemSource(layer), layer)
	s := openStore(t)
	if _, err := fetch.Pull(ctx, r, s, fetch.WithRefName("app:1")); err != nil {
		t.Fatal(err)
	}
	subject := r.Manifest.Descriptor
	blob := func(mt string, data []byte) resolve.Blob {
		return resolve.Blob{Descriptor: ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(data), Size: int64(len(data))}, Data: data}
	}
	referrer := func(kind string, subj *ocispec.Descriptor) (resolve.Blob, []resolve.Blob) {
		cfg := blob("application/vnd.oci.empty.v1+json", []byte("{}"))
		payload := blob("application/vnd.test."+kind, []byte(kind+" of "+subject.Digest.String()))
		m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
			ArtifactType: "application/vnd.test." + kind, Config: cfg.Descriptor, Layers: []ocispec.Descriptor{payload.Descriptor}, Subject: subj}
		data, _ := json.Marshal(m)
		return blob(ocispec.MediaTypeImageManifest, data), []resolve.Blob{cfg, payload}
	}
	// A sigstore bundle as an OCI 1.1 referrer, recorded.
	bundle, bundleBlobs := referrer("bundle", &subject)
	must(t, s.PutReferrer(ctx, subject.Digest, "", bundle, bundleBlobs...))
	// A cosign signature image under its tag.
	sig, sigBlobs := referrer("sig", nil)
	sigTag := "registry.test/test/image:sha256-" + subject.Digest.Encoded() + ".sig"
	must(t, s.PutReferrer(ctx, subject.Digest, sigTag, sig, sigBlobs...))
	// An SBOM stored by someone else, only as blobs: found by its subject.
	sbom, sbomBlobs := referrer("sbom", &subject)
	release, err := s.Hold(ctx)
	must(t, err)
	for _, b := range append(sbomBlobs, sbom) {
		must(t, s.WriteBlob(ctx, b.Descriptor, b.Data))
	}
	release()
	// A signature of the SBOM: a referrer of a referrer.
	sbomSig, sbomSigBlobs := referrer("sbomsig", &sbom.Descriptor)
	must(t, s.PutReferrer(ctx, sbom.Descriptor.Digest, "", sbomSig, sbomSigBlobs...))

	refs, err := s.Referrers(subject.Digest)
	if err != nil || len(refs) != 2 || refs[0].Digest != bundle.Descriptor.Digest || refs[1].Annotations[ocispec.AnnotationRefName] != sigTag {
		t.Fatalf("Referrers: %+v, %v", refs, err)
	}
	// A referrer that says it is about something else is refused.
	if err := s.PutReferrer(ctx, r.Config.Descriptor.Digest, "", bundle, bundleBlobs...); !errdefs.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("PutReferrer with another subject: %v", err)
	}
	var kept []digest.Digest
	for _, b := range [][]resolve.Blob{{bundle}, bundleBlobs, {sig}, sigBlobs, {sbom}, sbomBlobs, {sbomSig}, sbomSigBlobs} {
		for _, x := range b {
			kept = append(kept, x.Descriptor.Digest)
		}
	}
	res, err := s.GC(ctx)
	if err != nil || len(res.Blobs) != 0 || len(res.Entries) != 0 {
		t.Fatalf("GC with the image kept removed %+v (%v)", res, err)
	}
	assertHasAll(t, s, append(kept, allBlobs(r)...))
	if images, _ := s.Images(ctx); len(images) != 1 {
		t.Errorf("Images lists referrers: %+v", images)
	}

	removed, err := s.Remove(ctx, "app:1")
	if err != nil || len(removed) != 1 {
		t.Fatalf("Remove: %v, %v", removed, err)
	}
	res, err = s.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Entries) != 3 {
		t.Errorf("GC dropped %d referrer entries, want 3: %+v", len(res.Entries), res.Entries)
	}
	for _, d := range append(kept, allBlobs(r)...) {
		if !slices.Contains(res.Blobs, d) {
			t.Errorf("GC kept %s after its image was removed", d)
		}
	}
	if idx, _ := s.Index(); len(idx.Manifests) != 0 {
		t.Errorf("index.json after GC: %+v", idx.Manifests)
	}
}

// Remove takes a name (every platform of it) or a digest.
func TestRemoveByNameOrDigest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	la := randomBytes(1000, 69)
	a, b := twoPlatforms(t, la, randomBytes(1000, 70))
	s := openStore(t)
	for _, r := range []*resolve.Resolved{a, b} {
		must(t, first(fetch.Pull(ctx, r, s, fetch.WithRefName("app:1"))))
	}
	must(t, first(fetch.Pull(ctx, a, s, fetch.WithRefName("app:2"))))
	if _, err := s.Remove(ctx, "app:3"); !errdefs.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Remove of a missing name: %v", err)
	}
	removed, err := s.Remove(ctx, a.Manifest.Descriptor.Digest.String())
	if err != nil || len(removed) != 2 {
		t.Fatalf("Remove by digest: %d entries, %v", len(removed), err)
	}
	removed, err = s.Remove(ctx, "app:1")
	if err != nil || len(removed) != 1 || removed[0].Digest != b.Manifest.Descriptor.Digest {
		t.Fatalf("Remove by name: %+v, %v", removed, err)
	}
	if idx, _ := s.Index(); len(idx.Manifests) != 0 {
		t.Fatalf("left: %+v", idx.Manifests)
	}
	// Blobs go at the next GC.
	assertBlob(t, s, la)
	res, err := s.GC(ctx)
	if err != nil || len(res.Blobs) != len(allBlobs(a))+len(allBlobs(b)) {
		t.Fatalf("GC after Remove: %+v, %v", res, err)
	}
}

// A reader of Session.Layer that follows a download another session
// started used to die with "context canceled" when that session was
// cancelled. The download now goes on while any session wants it.
func TestSharedDownloadSurvivesTheCancelOfItsStarter(t *testing.T) {
	t.Parallel()
	blob, p, r, s := trickledImage(t, 2<<20, 71, 64<<10, 5*time.Millisecond)

	actx, cancelA := context.WithCancel(context.Background())
	defer cancelA()
	a, ra := startLayer(t, actx, r, s)
	if _, err := io.ReadFull(ra, make([]byte, 100_000)); err != nil {
		t.Fatal(err) // a's download is under way
	}
	b, rb := startLayer(t, context.Background(), r, s)
	head := make([]byte, 200_000)
	if _, err := io.ReadFull(rb, head); err != nil {
		t.Fatal(err)
	}
	if fetch.StreamHashes(rb) {
		t.Fatal("b's reader does not follow a's download")
	}
	cancelA()
	if _, err := a.Wait(); errdefs.KindOf(err) != errdefs.ErrCanceled {
		t.Errorf("the cancelled session: %v (kind %s)", err, errdefs.KindOf(err))
	}
	ra.Close()
	rest, err := io.ReadAll(rb)
	if err != nil {
		t.Fatalf("the follower: %v", err)
	}
	must(t, rb.Close())
	if !bytes.Equal(append(head, rest...), blob) {
		t.Fatal("the follower read other bytes")
	}
	if _, err := b.Wait(); err != nil {
		t.Fatal(err)
	}
	assertBlob(t, s, blob)
	if got := p.BytesSent(); got > int64(len(blob))+int64(len(blob))/2 {
		t.Errorf("%d bytes sent for a %d-byte blob: the download started over", got, len(blob))
	}
}

// When every session that wants a download is cancelled, the download
// stops, and has stopped when the last of them returns.
func TestDownloadStopsWithItsLastSession(t *testing.T) {
	t.Parallel()
	blob, _, r, s := trickledImage(t, 2<<20, 72, 32<<10, 5*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	sessions := make([]*fetch.Session, 2)
	for i := range sessions {
		var err error
		if sessions[i], err = fetch.Start(ctx, r, s); err != nil {
			t.Fatal(err)
		}
	}
	// Cancel once the download has begun (on a loaded machine that can
	// take longer than any fixed wait).
	partial := filepath.Join(s.Dir(), ".ocifetch", "partial", "sha256", r.Layers[0].Digest.Encoded())
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if fi, err := os.Stat(partial); err == nil && fi.Size() > 0 {
			break
		}
	}
	cancel()
	for _, sess := range sessions {
		if _, err := sess.Wait(); errdefs.KindOf(err) != errdefs.ErrCanceled {
			t.Errorf("Wait: %v", err)
		}
	}
	// Stopped: the partial file stays (for a resume) and no longer grows.
	fi, err := os.Stat(partial)
	if err != nil || fi.Size() == 0 || fi.Size() >= int64(len(blob)) {
		t.Fatalf("partial file after the cancel: %v, %v", fi, err)
	}
	time.Sleep(200 * time.Millisecond)
	if fi2, err := os.Stat(partial); err != nil || fi2.Size() != fi.Size() {
		t.Fatalf("the partial file changed after every session returned: %d -> %v (%v)", fi.Size(), fi2, err)
	}
	if p, _ := s.BlobPath(r.Layers[0].Digest); fileExists(p) {
		t.Fatal("the blob was stored after every session was cancelled")
	}
}

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// TestImagesListsABadEntryAsIncomplete: a hand-edited index.json entry
// whose digest does not parse is listed as it is, never as an image whose
// blobs are kept.
func TestImagesListsABadEntryAsIncomplete(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	idx := `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:../../../../tmp/victim","size":10,"annotations":{"org.opencontainers.image.ref.name":"bad"}}]}`
	if err := os.WriteFile(filepath.Join(s.Dir(), "index.json"), []byte(idx), 0o644); err != nil {
		t.Fatal(err)
	}
	ims, err := s.Images(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(ims) != 1 || ims[0].Name != "bad" || ims[0].Complete || ims[0].Size != 0 {
		t.Fatalf("images %+v, want the bad entry listed incomplete", ims)
	}
}
