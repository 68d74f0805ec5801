package resolve_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/testutil"
	"github.com/ocifetch/ocifetch/internal/testutil/testimage"
	"github.com/ocifetch/ocifetch/internal/testutil/testregistry"
	"github.com/ocifetch/ocifetch/resolve"
	"github.com/ocifetch/ocifetch/source"
)

func TestResolveOCIAndDockerImages(t *testing.T) {
	t.Parallel()
	reg := testregistry.Shared(t)
	oci := testimage.Image(t, 3, "linux", "amd64", "")
	docker := testimage.Docker(t, 2, "linux", "amd64")
	testimage.PushImage(t, reg.Host+"/test/oci:v1", oci)
	testimage.PushImage(t, reg.Host+"/test/docker:v1", docker)

	res := mustResolve(t, reg.Host+"/test/oci:v1")
	checkImage(t, res, oci)
	if res.Manifest.Descriptor.MediaType != ocispec.MediaTypeImageManifest {
		t.Fatalf("media type %q", res.Manifest.Descriptor.MediaType)
	}
	if res.Reference != reg.Host+"/test/oci:v1" || len(res.Indexes) != 0 {
		t.Fatalf("reference %q, %d indexes", res.Reference, len(res.Indexes))
	}

	res = mustResolve(t, reg.Host+"/test/docker:v1")
	checkImage(t, res, docker)
	if res.Manifest.Descriptor.MediaType != resolve.MediaTypeDockerManifest || res.Config.Descriptor.MediaType != resolve.MediaTypeDockerConfig {
		t.Fatalf("media types %q %q", res.Manifest.Descriptor.MediaType, res.Config.Descriptor.MediaType)
	}
	if got := resolve.FormatPlatform(res.Platform); got != "linux/amd64" {
		t.Fatalf("platform %s", got)
	}
}

func TestResolvePlatforms(t *testing.T) {
	t.Parallel()
	reg := testregistry.Shared(t)
	// Three indexes: arm64 entries without a variant, with v8, and both.
	bare, bareImgs := testimage.Index(t,
		testimage.Platform{OS: "linux", Arch: "amd64"},
		testimage.Platform{OS: "linux", Arch: "arm64", IndexVariant: "-"},
		testimage.Platform{OS: "linux", Arch: "arm", Variant: "v7"})
	v8, v8Imgs := testimage.Index(t,
		testimage.Platform{OS: "linux", Arch: "amd64"},
		testimage.Platform{OS: "linux", Arch: "arm64", Variant: "v8"},
		testimage.Platform{OS: "linux", Arch: "arm", Variant: "v7"})
	both, bothImgs := testimage.Index(t,
		testimage.Platform{OS: "linux", Arch: "arm64", IndexVariant: "-"},
		testimage.Platform{OS: "linux", Arch: "arm64", Variant: "v8"},
		testimage.Platform{OS: "linux", Arch: "amd64"})
	bareDigest := testimage.PushIndex(t, reg.Host+"/multi/bare:latest", bare)
	testimage.PushIndex(t, reg.Host+"/multi/v8:latest", v8)
	testimage.PushIndex(t, reg.Host+"/multi/both:latest", both)

	tests := []struct {
		name, ref, platform string
		want                v1.Image
	}{
		{"arm64/v8 picks an entry without variant", "multi/bare", "linux/arm64/v8", bareImgs[1]},
		{"arm64 picks an entry without variant", "multi/bare", "linux/arm64", bareImgs[1]},
		{"arm64 picks the v8 entry", "multi/v8", "linux/arm64", v8Imgs[1]},
		{"aarch64 alias", "multi/v8", "linux/aarch64", v8Imgs[1]},
		{"explicit variant beats implied", "multi/both", "linux/arm64", bothImgs[1]},
		{"amd64", "multi/v8", "linux/amd64", v8Imgs[0]},
		{"arm/v7", "multi/v8", "linux/arm/v7", v8Imgs[2]},
		{"arm/v8 runs v7", "multi/bare", "linux/arm/v8", bareImgs[2]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := resolve.ParsePlatform(tt.platform)
			if err != nil {
				t.Fatal(err)
			}
			res := mustResolve(t, reg.Host+"/"+tt.ref+":latest", resolve.WithPlatform(p))
			checkImage(t, res, tt.want)
			if len(res.Indexes) != 1 || len(res.Platforms) != 3 {
				t.Fatalf("%d indexes, %d platforms", len(res.Indexes), len(res.Platforms))
			}
		})
	}

	res := mustResolve(t, reg.Host+"/multi/bare:latest", resolve.WithPlatform(ocispec.Platform{OS: "linux", Architecture: "arm64"}))
	if res.Indexes[0].Descriptor.Digest.String() != bareDigest.String() {
		t.Fatalf("index digest %s, want %s", res.Indexes[0].Descriptor.Digest, bareDigest)
	}

	for _, p := range []string{"linux/s390x", "linux/arm/v6", "windows/amd64"} {
		t.Run("no "+p, func(t *testing.T) {
			pl, _ := resolve.ParsePlatform(p)
			err := resolveFails(t, errdefs.ErrPlatformNotFound, reg.Host+"/multi/v8:latest", anonymous, resolve.WithPlatform(pl))
			for _, offered := range []string{"linux/amd64", "linux/arm64/v8", "linux/arm/v7"} {
				if !strings.Contains(err.Error(), offered) {
					t.Fatalf("error %q does not list %s", err, offered)
				}
			}
		})
	}

	// A single-platform image named directly must fit an explicit platform.
	single := testimage.Image(t, 1, "linux", "amd64", "")
	testimage.PushImage(t, reg.Host+"/single/img:v1", single)
	_, err := resolve.Resolve(context.Background(), reg.Host+"/single/img:v1", anonymous,
		resolve.WithPlatform(ocispec.Platform{OS: "linux", Architecture: "arm64"}))
	wantKind(t, err, errdefs.ErrPlatformNotFound)

	// A config that names no platform (crane append without a base makes
	// one) fits no explicit platform, and the error says so: it said the
	// image was for "linux/".
	none := testimage.Image(t, 1, "", "", "")
	testimage.PushImage(t, reg.Host+"/single/none:v1", none)
	_, err = resolve.Resolve(context.Background(), reg.Host+"/single/none:v1", anonymous,
		resolve.WithPlatform(ocispec.Platform{OS: "linux", Architecture: "amd64"}))
	wantKind(t, err, errdefs.ErrPlatformNotFound)
	if want := reg.Host + "/single/none:v1 names no platform (its config has no os and no architecture), so it cannot be checked against linux/amd64; name no platform to take it as it is"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	checkImage(t, mustResolve(t, reg.Host+"/single/none:v1"), none)
	src, err := resolve.Open(context.Background(), reg.Host+"/single/none:v1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = resolve.Validate(context.Background(), src, resolve.WithPlatform(ocispec.Platform{OS: "linux", Architecture: "amd64"}))
	wantKind(t, err, errdefs.ErrPlatformNotFound)
	if want := "names no platform (its config has no os and no architecture)"; !strings.Contains(err.Error(), want) {
		t.Errorf("Validate: error %q, want it to say it %s", err, want)
	}
}

func TestResolvePinnedDigest(t *testing.T) {
	t.Parallel()
	reg := testregistry.Shared(t)
	a := testimage.Image(t, 1, "linux", "amd64", "")
	b := testimage.Image(t, 1, "linux", "amd64", "")
	da := testimage.PushImage(t, reg.Host+"/pin/img:a", a)
	testimage.PushImage(t, reg.Host+"/pin/img:b", b)

	// The tag is informational once a digest pins the image.
	res := mustResolve(t, reg.Host+"/pin/img:b@"+da.String())
	checkImage(t, res, a)
	if res.Reference != reg.Host+"/pin/img@"+da.String() {
		t.Fatalf("reference %q", res.Reference)
	}
	res = mustResolve(t, reg.Host+"/pin/img@"+da.String())
	checkImage(t, res, a)

	missing := "sha256:" + strings.Repeat("0", 64)
	resolveFails(t, errdefs.ErrNotFound, reg.Host+"/pin/img@"+missing, anonymous)
	resolveFails(t, errdefs.ErrNotFound, reg.Host+"/pin/img:nope", anonymous)
	resolveFails(t, errdefs.ErrNotFound, reg.Host+"/no/such/repo:v1", anonymous)
}

// editedManifest pushes a one-layer image as ref and returns its manifest
// changed by edit, for a test to serve under another name.
func editedManifest(t *testing.T, ref string, edit func(m *v1.Manifest)) []byte {
	t.Helper()
	img := testimage.Image(t, 1, "linux", "amd64", "")
	testimage.PushImage(t, ref, img)
	m, _ := img.Manifest()
	m = m.DeepCopy()
	edit(m)
	return testimage.JSON(t, m)
}

func TestResolveRejectsBadContent(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)

	t.Run("wrong bytes behind a digest", func(t *testing.T) {
		img := testimage.Image(t, 1, "linux", "amd64", "")
		testimage.PushImage(t, reg.Host+"/bad/bytes:v1", img)
		cfg, _ := img.ConfigName()
		corrupt(t, reg.BlobDataPath(digestOf(cfg)))
		resolveFails(t, errdefs.ErrDigestMismatch, reg.Host+"/bad/bytes:v1", anonymous)
	})

	t.Run("wrong size", func(t *testing.T) {
		body := editedManifest(t, reg.Host+"/bad/size:base", func(m *v1.Manifest) { m.Config.Size += 7 })
		testimage.PushRaw(t, reg.Host+"/bad/size:v1", body, types.OCIManifestSchema1)
		resolveFails(t, errdefs.ErrSizeMismatch, reg.Host+"/bad/size:v1", anonymous)
	})

	t.Run("mediaType disagrees with descriptor", func(t *testing.T) {
		img := testimage.Image(t, 1, "linux", "amd64", "")
		d := testimage.PushImage(t, reg.Host+"/bad/mt:img", img)
		size, _ := img.Size()
		idx := v1.IndexManifest{
			SchemaVersion: 2,
			MediaType:     types.OCIImageIndex,
			Manifests: []v1.Descriptor{{
				MediaType: types.DockerManifestSchema2, // the manifest says OCI
				Digest:    d, Size: size,
				Platform: &v1.Platform{OS: "linux", Architecture: "amd64"},
			}},
		}
		testimage.PushRaw(t, reg.Host+"/bad/mt:v1", testimage.JSON(t, idx), types.OCIImageIndex)
		resolveFails(t, errdefs.ErrManifestInvalid, reg.Host+"/bad/mt:v1", anonymous, resolve.WithPlatform(ocispec.Platform{OS: "linux", Architecture: "amd64"}))
	})

	t.Run("ambiguous document", func(t *testing.T) {
		img := testimage.Image(t, 1, "linux", "amd64", "")
		testimage.PushImage(t, reg.Host+"/bad/amb:img", img)
		raw, _ := img.RawManifest()
		body := strings.Replace(string(raw), "{", `{"manifests":[],`, 1)
		plantManifest(t, reg.StorageDir, "bad/amb", "v1", []byte(body))
		resolveFails(t, errdefs.ErrManifestInvalid, reg.Host+"/bad/amb:v1", anonymous)
	})

	t.Run("index nests itself too deeply", func(t *testing.T) {
		img := testimage.Image(t, 1, "linux", "amd64", "")
		d := testimage.PushImage(t, reg.Host+"/bad/nest:img", img)
		size, _ := img.Size()
		desc := v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: d, Size: size,
			Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}
		for i := 0; i < resolve.DefaultMaxDepth+2; i++ {
			body := testimage.JSON(t, v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{desc}})
			h := testimage.PushRaw(t, fmt.Sprintf("%s/bad/nest:l%d", reg.Host, i), body, types.OCIImageIndex)
			desc = v1.Descriptor{MediaType: types.OCIImageIndex, Digest: h, Size: int64(len(body))}
			if i == 2 {
				// Three levels is fine.
				res := mustResolve(t, fmt.Sprintf("%s/bad/nest:l%d", reg.Host, i), resolve.WithPlatform(ocispec.Platform{OS: "linux", Architecture: "amd64"}))
				if len(res.Indexes) != 3 {
					t.Fatalf("%d indexes walked, want 3", len(res.Indexes))
				}
			}
		}
		resolveFails(t, errdefs.ErrManifestInvalid, fmt.Sprintf("%s/bad/nest:l%d", reg.Host, resolve.DefaultMaxDepth+1), anonymous,
			resolve.WithPlatform(ocispec.Platform{OS: "linux", Architecture: "amd64"}))
	})

	t.Run("artifact is not an image", func(t *testing.T) {
		body := editedManifest(t, reg.Host+"/bad/art:img", func(m *v1.Manifest) {
			m.Config.MediaType = "application/vnd.cncf.helm.config.v1+json"
		})
		testimage.PushRaw(t, reg.Host+"/bad/art:v1", body, types.OCIManifestSchema1)
		resolveFails(t, errdefs.ErrUnsupportedMediaType, reg.Host+"/bad/art:v1", anonymous)
	})
}

func TestResolveTooLargeManifest(t *testing.T) {
	t.Parallel()
	big := func(t *testing.T, reg string) []byte {
		return editedManifest(t, reg+"/big/img:base", func(m *v1.Manifest) {
			m.Annotations = map[string]string{"padding": strings.Repeat("x", 5<<20)}
		})
	}
	amd64 := resolve.WithPlatform(ocispec.Platform{OS: "linux", Architecture: "amd64"})

	// Docker's registry neither accepts nor serves a manifest over 4 MiB,
	// so a real registry can only send an index that claims one.
	t.Run("distribution registry: index entry claims 5 MiB", func(t *testing.T) {
		reg := testregistry.Shared(t)
		img := testimage.Image(t, 1, "linux", "amd64", "")
		d := testimage.PushImage(t, reg.Host+"/big/claim:img", img)
		idx := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{{
			MediaType: types.OCIManifestSchema1, Digest: d, Size: 5 << 20,
			Platform: &v1.Platform{OS: "linux", Architecture: "amd64"},
		}}}
		testimage.PushRaw(t, reg.Host+"/big/claim:v1", testimage.JSON(t, idx), types.OCIImageIndex)
		resolveFails(t, errdefs.ErrTooLarge, reg.Host+"/big/claim:v1", anonymous, amd64)
	})

	// Other registries do serve them: go-containerregistry's does.
	t.Run("registry that serves 5 MiB", func(t *testing.T) {
		srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
		defer srv.Close()
		host := strings.TrimPrefix(srv.URL, "http://")
		body := big(t, host)
		d := testimage.PushRaw(t, host+"/big/img:v1", body, types.OCIManifestSchema1)
		resolveFails(t, errdefs.ErrTooLarge, host+"/big/img:v1", anonymous)
		// Named through an index that gives its true size.
		idx := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{{
			MediaType: types.OCIManifestSchema1, Digest: d, Size: int64(len(body)),
			Platform: &v1.Platform{OS: "linux", Architecture: "amd64"},
		}}}
		testimage.PushRaw(t, host+"/big/img:idx", testimage.JSON(t, idx), types.OCIImageIndex)
		resolveFails(t, errdefs.ErrTooLarge, host+"/big/img:idx", anonymous, amd64)
		// And with a lying size, the body is cut off at the cap.
		idx.Manifests[0].Size = 1000
		testimage.PushRaw(t, host+"/big/img:lie", testimage.JSON(t, idx), types.OCIImageIndex)
		resolveFails(t, errdefs.ErrSizeMismatch, host+"/big/img:lie", anonymous, amd64)
	})
}

// pushAs pushes a one-layer image to repo (a path such as "/app:v1") on
// reg with user's credentials, and returns it with a keychain holding them.
func pushAs(t *testing.T, reg *testregistry.Registry, repo, user, pass string) (v1.Image, staticKeychain) {
	t.Helper()
	img := testimage.Image(t, 1, "linux", "amd64", "")
	creds := staticKeychain{host: reg.Host, user: user, pass: pass}
	testimage.PushImage(t, reg.Host+repo, img, remote.WithAuthFromKeychain(creds))
	return img, creds
}

func TestResolveBasicAuth(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t, testregistry.WithBasicAuth("alice", "s3cret"))
	img, good := pushAs(t, reg, "/auth/img:v1", "alice", "s3cret")

	res, err := resolve.Resolve(context.Background(), reg.Host+"/auth/img:v1", resolve.WithKeychain(good))
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, res, img)

	_, err = resolve.Resolve(context.Background(), reg.Host+"/auth/img:v1",
		resolve.WithKeychain(staticKeychain{host: reg.Host, user: "alice", pass: "wrong"}))
	wantKind(t, err, errdefs.ErrUnauthorized)
	resolveFails(t, errdefs.ErrUnauthorized, reg.Host+"/auth/img:v1", anonymous)

	// The same credentials from a Docker config file given as --authfile.
	authfile := filepath.Join(t.TempDir(), "auth.json")
	conf := fmt.Sprintf(`{"auths":{%q:{"username":"alice","password":"s3cret"}}}`, reg.Host)
	if err := os.WriteFile(authfile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err = resolve.Resolve(context.Background(), reg.Host+"/auth/img:v1", resolve.WithAuthfile(authfile))
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, res, img)
}

func TestResolveTokenAuth(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t, testregistry.WithTokenAuth("bob", "hunter2"))
	img, good := pushAs(t, reg, "/tok/img:v1", "bob", "hunter2")

	// The token server is at localhost:PORT, another host:port than the
	// registry's 127.0.0.1:PORT: it gets the credentials only when allowed.
	allow := resolve.WithSourceOptions(source.WithAllowTokenHost(reg.TokenHost))
	before := reg.TokenRequests()
	res, err := resolve.Resolve(context.Background(), reg.Host+"/tok/img:v1", resolve.WithKeychain(good), allow)
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, res, img)
	if reg.TokenRequests() == before {
		t.Fatal("no token was requested")
	}

	_, err = resolve.Resolve(context.Background(), reg.Host+"/tok/img:v1",
		resolve.WithKeychain(staticKeychain{host: reg.Host, user: "bob", pass: "nope"}), allow)
	wantKind(t, err, errdefs.ErrUnauthorized)
	resolveFails(t, errdefs.ErrUnauthorized, reg.Host+"/tok/img:v1", anonymous)
}

func TestResolveThroughMirror(t *testing.T) {
	t.Parallel()
	upstream := testregistry.Shared(t)
	img := testimage.Image(t, 2, "linux", "amd64", "")
	testimage.PushImage(t, upstream.Host+"/mirrored/img:v1", img)
	mirror := testregistry.Start(t, testregistry.WithProxy(upstream.URL, "", ""))
	counter := testregistry.NewCountingProxy(t, mirror.URL)

	hosts := t.TempDir()
	testutil.WriteHostsFile(t, hosts, upstream.Host, fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", upstream.URL, counter.URL()))
	res := mustResolve(t, upstream.Host+"/mirrored/img:v1", resolve.WithHostsDir(hosts))
	checkImage(t, res, img)
	if counter.Count("/manifests/") == 0 {
		t.Fatal("the mirror was not asked for the manifest")
	}
	for _, r := range counter.Requests() {
		q, _ := url.ParseQuery(r.Query)
		if strings.Contains(r.Path, "/mirrored/") && q.Get("ns") != upstream.Host {
			t.Fatalf("mirror request %s %s?%s lacks ns=%s", r.Method, r.Path, r.Query, upstream.Host)
		}
	}

	// A mirror that is down is skipped.
	counter.Close()
	res = mustResolve(t, upstream.Host+"/mirrored/img:v1", resolve.WithHostsDir(hosts))
	checkImage(t, res, img)
}

func TestResolveNetworkErrors(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	host := reg.Host
	reg.Stop()
	resolveFails(t, errdefs.ErrNetwork, host+"/gone/img:v1", anonymous)

	// Plain HTTP to a non-loopback host needs an explicit opt-in, even for
	// private addresses, which go-containerregistry would try over HTTP.
	rec := &refuseAll{}
	err := resolveFails(t, errdefs.ErrInvalidArgument, "10.255.255.1:5000/a/b:c", anonymous, resolve.WithTransport(rec))
	if !strings.Contains(err.Error(), "--insecure-registry 10.255.255.1:5000") {
		t.Fatalf("error does not say how to allow plain HTTP: %v", err)
	}
	for _, u := range rec.urls {
		if strings.HasPrefix(u, "http://") {
			t.Fatalf("plain HTTP request sent without opt-in: %s", u)
		}
	}
	if len(rec.urls) == 0 {
		t.Fatal("no request was attempted")
	}
	rec = &refuseAll{}
	resolve.Resolve(context.Background(), "10.255.255.1:5000/a/b:c", anonymous, resolve.WithTransport(rec),
		resolve.WithInsecureRegistry("10.255.255.1:5000"))
	sawPlain := false
	for _, u := range rec.urls {
		sawPlain = sawPlain || strings.HasPrefix(u, "http://")
	}
	if !sawPlain {
		t.Fatalf("--insecure-registry did not allow plain HTTP: %v", rec.urls)
	}
}

// refuseAll fails every request without touching the network, recording
// the URLs it was asked for.
type refuseAll struct {
	mu   sync.Mutex
	urls []string
}

func (r *refuseAll) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.urls = append(r.urls, req.URL.String())
	r.mu.Unlock()
	return nil, errors.New("network disabled in this test")
}
