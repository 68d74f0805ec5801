package fetch_test

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/fetch"
	"github.com/ocifetch/ocifetch/internal/testutil"
	"github.com/ocifetch/ocifetch/internal/testutil/faultproxy"
	"github.com/ocifetch/ocifetch/internal/testutil/testimage"
	"github.com/ocifetch/ocifetch/resolve"
)

// resolvedFromImage turns a go-containerregistry image into what resolving
// it would give, with its layers served by a blob server.
func resolvedFromImage(t *testing.T, img v1.Image) (*resolve.Resolved, *blobServer) {
	t.Helper()
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	var image ocispec.Image
	if err := json.Unmarshal(cfg, &image); err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	srv := newBlobServer(t)
	var ls []resolve.Layer
	for i, l := range layers {
		srv.add(testimage.LayerBytes(t, l))
		ls = append(ls, resolve.Layer{Descriptor: m.Layers[i], DiffID: image.RootFS.DiffIDs[i]})
	}
	mt := string(must1(img.MediaType()))
	return &resolve.Resolved{
		Reference:     "registry.test/random:latest",
		Source:        newHTTPSource(srv.URL),
		Manifest:      resolve.Blob{Descriptor: ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(raw), Size: int64(len(raw))}, Data: raw},
		ImageManifest: m,
		Config:        resolve.Blob{Descriptor: m.Config, Data: cfg},
		Image:         image,
		Platform:      ocispec.Platform{OS: "linux", Architecture: "amd64"},
		Layers:        ls,
	}, srv
}

func must1[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func randomImage(t *testing.T, layers int64, oci bool) v1.Image {
	t.Helper()
	img, err := random.Image(200_000, layers)
	if err != nil {
		t.Fatal(err)
	}
	if oci {
		img = mutate.MediaType(img, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	}
	return img
}

// Tools that read OCI layouts read the store as it is.
func TestStoreIsReadableBySkopeo(t *testing.T) {
	t.Parallel()
	skopeo := testutil.Tool(t, "skopeo")
	// Only OCI-typed images: skopeo's oci: transport (containers/image)
	// skips index.json entries whose mediaType is not an OCI manifest, so
	// a Docker schema 2 image, stored byte-for-byte under its own digest
	// and media type, is not found by name there. Converting it would
	// change its digest.
	for _, tc := range []struct {
		name string
		oci  bool
	}{{"oci", true}} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := resolvedFromImage(t, randomImage(t, 3, tc.oci))
			s := openStore(t)
			if _, err := fetch.Pull(context.Background(), r, s, fetch.WithRefName("app-"+tc.name)); err != nil {
				t.Fatal(err)
			}
			// A second image under another name, so skopeo has to pick.
			r2, _ := resolvedFromImage(t, randomImage(t, 1, tc.oci))
			if _, err := fetch.Pull(context.Background(), r2, s, fetch.WithRefName("other")); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, skopeo, "inspect", "oci:"+s.Dir()+":app-"+tc.name).CombinedOutput()
			if err != nil {
				t.Fatalf("skopeo inspect: %v\n%s", err, out)
			}
			var info struct {
				Digest string
				Layers []string
			}
			if err := json.Unmarshal(out, &info); err != nil {
				t.Fatalf("skopeo output: %v\n%s", err, out)
			}
			var want []string
			for _, l := range r.Layers {
				want = append(want, l.Digest.String())
			}
			if info.Digest != r.Manifest.Descriptor.Digest.String() || !slices.Equal(info.Layers, want) {
				t.Errorf("skopeo sees %s %v, want %s %v", info.Digest, info.Layers, r.Manifest.Descriptor.Digest, want)
			}
			// skopeo copy reads every blob, and verifies them.
			dst := t.TempDir()
			if out, err := exec.CommandContext(ctx, skopeo, "copy", "oci:"+s.Dir()+":app-"+tc.name, "dir:"+dst).CombinedOutput(); err != nil {
				t.Fatalf("skopeo copy: %v\n%s", err, out)
			}
		})
	}
}

func TestStoreIsReadableByUmoci(t *testing.T) {
	t.Parallel()
	umoci := testutil.Tool(t, "umoci")
	r, _ := resolvedFromImage(t, randomImage(t, 2, true))
	s := openStore(t)
	if _, err := fetch.Pull(context.Background(), r, s, fetch.WithRefName("app")); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(umoci, "stat", "--json", "--image", s.Dir()+":app").CombinedOutput()
	if err != nil {
		t.Fatalf("umoci stat: %v\n%s", err, out)
	}
}

func TestGCRemovesOnlyUnreachableBlobs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	shared := randomBytes(50_000, 50)
	onlyA, onlyB := randomBytes(60_000, 51), randomBytes(70_000, 52)
	stray := randomBytes(80_000, 53)
	src := newMemSource(shared, onlyA, onlyB, stray)
	a := testImage(t, src, shared, onlyA)
	b := testImage(t, src, shared, onlyB)
	// An index that led to a: kept while a's entry names it.
	a.Indexes = []resolve.Blob{{Descriptor: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromString(`{"manifests":[]}`), Size: 16}, Data: []byte(`{"manifests":[]}`)}}
	s := openStore(t)
	must(t, first(fetch.Pull(ctx, a, s, fetch.WithRefName("a"))))
	must(t, first(fetch.Pull(ctx, b, s, fetch.WithRefName("b"))))
	must(t, fetch.FetchBlob(ctx, src, s, layerDesc(stray)))
	// A partial download left by a killed process.
	partial := s.Dir() + "/.ocifetch/partial/sha256/" + digest.FromString("never finished").Encoded()
	must(t, os.WriteFile(partial, []byte("never"), 0o644))

	res, err := s.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Blobs) != 1 || res.Blobs[0] != digest.FromBytes(stray) || len(res.Partials) != 1 || res.Bytes != int64(len(stray))+5 {
		t.Fatalf("first GC removed %+v", res)
	}
	for _, blob := range [][]byte{shared, onlyA, onlyB, a.Manifest.Data, a.Config.Data, b.Manifest.Data, b.Config.Data, a.Indexes[0].Data} {
		assertBlob(t, s, blob)
	}

	// Point "b" at a's manifest: b's own manifest, config and layer go,
	// the shared layer stays.
	must(t, s.Tag(ctx, "b", a.Manifest.Descriptor))
	res, err = s.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []digest.Digest{b.Manifest.Descriptor.Digest, b.Config.Descriptor.Digest, digest.FromBytes(onlyB)}
	slices.Sort(want)
	slices.Sort(res.Blobs)
	if !slices.Equal(res.Blobs, want) {
		t.Fatalf("second GC removed %v, want %v", res.Blobs, want)
	}
	assertBlob(t, s, shared)
	assertBlob(t, s, onlyA)
	if _, err := fetch.Pull(ctx, a, s); err != nil {
		t.Fatal("the store still works after GC:", err)
	}
}

// GC waits for a running pull, so the pull's blobs are recorded before
// GC decides what is reachable.
func TestGCDoesNotRaceAPull(t *testing.T) {
	t.Parallel()
	blob, _, r, s := trickledImage(t, 1<<20, 54, 64<<10, 5*time.Millisecond)
	sess, err := fetch.Start(context.Background(), r, s)
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.GC(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-sess.Done():
	default:
		t.Fatal("GC finished while the pull was running")
	}
	if _, err := sess.Wait(); err != nil {
		t.Fatal(err)
	}
	if len(res.Blobs) != 0 || len(res.Partials) != 0 {
		t.Fatalf("GC removed %+v", res)
	}
	assertBlob(t, s, blob)
	assertBlob(t, s, r.Manifest.Data)
}

func first[T any](_ T, err error) error { return err }

// The same pull against go-containerregistry's in-process registry, with
// the connection cut twice per layer: its Range parser only accepts
// "bytes=START-END", which is what resumes send.
func TestPullFromAnInProcessRegistryWithCuts(t *testing.T) {
	t.Parallel()
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	img := randomImage(t, 3, true)
	ref, err := name.ParseReference(strings.TrimPrefix(reg.URL, "http://")+"/test/image:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	p := faultproxy.New(t, reg.URL)
	p.Add(faultproxy.Rule{Match: faultproxy.BlobGETs, Times: 6, Faults: []faultproxy.Fault{faultproxy.CutAfter(20_000)}})
	r, _ := resolvedFromImage(t, img)
	r.Source = newHTTPSource(p.URL)
	s := openStore(t)
	res, err := fetch.Pull(context.Background(), r, s, quickRetries(), fetch.WithJobs(1))
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, l := range r.Layers {
		total += l.Size
		if ok, _ := s.Has(l.Descriptor); !ok {
			t.Errorf("layer %s missing", l.Digest)
		}
	}
	if res.Downloaded != total || p.BytesSent() != total {
		t.Errorf("downloaded %d, proxy sent %d, layers total %d", res.Downloaded, p.BytesSent(), total)
	}
}
