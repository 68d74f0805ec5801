package fetch_test

// Integration tests of the fetch stage against a real registry process
// (Docker distribution, started by internal/testutil/testregistry), with the fault
// proxy between client and registry where a test needs faults or counts.
// The resolve stage opens the registry as any user would, by reference, so
// auth, ranges, redirects and mirrors are the real thing end to end.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/fetch"
	"github.com/ocifetch/ocifetch/internal/testutil"
	"github.com/ocifetch/ocifetch/internal/testutil/faultproxy"
	"github.com/ocifetch/ocifetch/internal/testutil/testimage"
	"github.com/ocifetch/ocifetch/internal/testutil/testregistry"
	"github.com/ocifetch/ocifetch/resolve"
	"github.com/ocifetch/ocifetch/source"
)

// The one user of the token-auth registries.
const regUser, regPass = "puller", "c0rrect-h0rse"

// hostKeychain hands out the registry user's credentials to the hosts it
// lists and nothing to anyone else, so a test knows exactly who may get
// them (and the developer's own Docker config stays out of the tests).
type hostKeychain []string

func (k hostKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if slices.Contains(k, r.RegistryStr()) {
		return authn.FromConfig(authn.AuthConfig{Username: regUser, Password: regPass}), nil
	}
	return authn.Anonymous, nil
}

// gzipTarLayer returns a gzip-compressed tar holding one file of size
// pseudo-random bytes. The content does not compress, so the blob is about
// size bytes long, and it is deterministic for a seed.
func gzipTarLayer(t testing.TB, size int, seed uint64) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.NoCompression)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(zw)
	data := randomBytes(size, seed)
	hdr := &tar.Header{Name: fmt.Sprintf("data-%d", seed), Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg, ModTime: time.Unix(1_700_000_000, 0)}
	if err := tw.WriteHeader(hdr); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// pushedImage is what a test pushed: the exact bytes the store must end
// up holding.
type pushedImage struct {
	Manifest []byte
	Config   []byte
	Layers   [][]byte // compressed, in manifest order
}

func (p pushedImage) manifestDigest() digest.Digest { return digest.FromBytes(p.Manifest) }

func (p pushedImage) layerSizes() (total int64) {
	for _, l := range p.Layers {
		total += int64(len(l))
	}
	return total
}

// pushLayers builds an OCI image for linux/amd64 whose layers hold about
// the given numbers of bytes, pushes it to ref and returns its bytes.
func pushLayers(t testing.TB, ref string, seed uint64, sizes []int, opts ...remote.Option) pushedImage {
	t.Helper()
	var p pushedImage
	for i, n := range sizes {
		p.Layers = append(p.Layers, gzipTarLayer(t, n, seed*1000+uint64(i)))
	}
	img, err := mutate.Config(testimage.FromLayers(t, p.Layers, "linux", "amd64", ""), v1.Config{Cmd: []string{"/bin/true"}})
	if err != nil {
		t.Fatal(err)
	}
	testimage.PushImage(t, ref, img, opts...)
	if p.Manifest, err = img.RawManifest(); err != nil {
		t.Fatal(err)
	}
	if p.Config, err = img.RawConfigFile(); err != nil {
		t.Fatal(err)
	}
	return p
}

// regSetup is a registry process with a fault proxy in front of it and an
// image pushed to it. Ref names the image through the proxy.
type regSetup struct {
	Reg   *testregistry.Registry
	Proxy *faultproxy.Proxy
	Image pushedImage
	Ref   string
	keys  []resolve.Option
}

// newRegSetup starts a registry with token auth when auth is set (else it
// takes the package's shared one: repo must be the test's own), puts a
// fault proxy in front of it and pushes an image of the given layer sizes
// to repo ("name:tag") directly.
func newRegSetup(t *testing.T, auth bool, repo string, seed uint64, sizes ...int) *regSetup {
	t.Helper()
	var reg *testregistry.Registry
	if auth {
		reg = testregistry.Start(t, testregistry.WithTokenAuth(regUser, regPass))
	} else {
		reg = testregistry.Shared(t)
	}
	p := faultproxy.New(t, reg.URL)
	kc := hostKeychain{reg.Host, p.Host()}
	var pushOpts []remote.Option
	if auth {
		pushOpts = append(pushOpts, remote.WithAuthFromKeychain(kc))
	}
	img := pushLayers(t, reg.Host+"/"+repo, seed, sizes, pushOpts...)
	keys := []resolve.Option{resolve.WithKeychain(authn.NewMultiKeychain())}
	if auth {
		// The token server is on localhost, another host:port than the
		// registry's 127.0.0.1: credentials go there only when allowed.
		keys = []resolve.Option{resolve.WithKeychain(kc), resolve.WithSourceOptions(source.WithAllowTokenHost(reg.TokenHost))}
	}
	return &regSetup{Reg: reg, Proxy: p, Image: img, Ref: p.Host() + "/" + repo, keys: keys}
}

// resolve resolves ref with the setup's credentials, then forgets what the
// proxy counted so far: afterwards the proxy sees only the pull.
func (s *regSetup) resolve(t *testing.T, ref string, opts ...resolve.Option) *resolve.Resolved {
	t.Helper()
	r := resolveRef(t, ref, append(append([]resolve.Option(nil), s.keys...), opts...)...)
	if r.Manifest.Descriptor.Digest != s.Image.manifestDigest() {
		t.Fatalf("resolved %s to %s, pushed %s", ref, r.Manifest.Descriptor.Digest, s.Image.manifestDigest())
	}
	s.Proxy.ResetStats()
	return r
}

func resolveRef(t *testing.T, ref string, opts ...resolve.Option) *resolve.Resolved {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := resolve.Resolve(ctx, ref, opts...)
	if err != nil {
		t.Fatalf("resolve %s: %v", ref, err)
	}
	return r
}

// assertStoreHoldsImage checks that the store holds exactly the pushed
// manifest, config and layers, byte for byte, that every file in blobs/ is
// verified, and that index.json records the manifest under name.
func assertStoreHoldsImage(t *testing.T, s *fetch.Store, img pushedImage, name string) {
	t.Helper()
	for _, b := range append([][]byte{img.Manifest, img.Config}, img.Layers...) {
		assertBlob(t, s, b)
	}
	assertBlobsVerified(t, s)
	got, err := s.Lookup(name, nil)
	if err != nil {
		t.Fatalf("index.json: %v", err)
	}
	if got.Digest != img.manifestDigest() || got.Size != int64(len(img.Manifest)) || got.MediaType != ocispec.MediaTypeImageManifest {
		t.Fatalf("index.json entry for %s: %+v, want manifest %s", name, got, img.manifestDigest())
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Dir(), ".ocifetch", "partial", "sha256")); len(ents) != 0 {
		t.Errorf("partial files left after a successful pull: %d", len(ents))
	}
}

// assertBlobsVerified checks that every file under blobs/sha256 hashes to
// its name, so no partial or corrupt blob is ever visible, and returns the
// digests it found.
func assertBlobsVerified(t *testing.T, s *fetch.Store) map[digest.Digest]bool {
	t.Helper()
	dir := filepath.Join(s.Dir(), "blobs", "sha256")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	found := map[digest.Digest]bool{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if got := digest.FromBytes(b); got.Encoded() != e.Name() {
			t.Errorf("blobs/sha256/%s holds %d bytes that hash to %s", e.Name(), len(b), got)
		}
		found[digest.NewDigestFromEncoded(digest.SHA256, e.Name())] = true
	}
	return found
}

// assertIndexEmpty checks that index.json records no image.
func assertIndexEmpty(t *testing.T, s *fetch.Store) {
	t.Helper()
	idx, err := s.Index()
	if err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 0 {
		t.Fatalf("index.json records %d images after a failed pull: %+v", len(idx.Manifests), idx.Manifests)
	}
}

// settledLog returns the proxy's log once every request it has received
// is in it. A client may be done with a response (it read all it wanted)
// before the proxy's handler has returned and logged it.
func settledLog(t *testing.T, p *faultproxy.Proxy) []faultproxy.Entry {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		if log := p.Log(); int64(len(log)) == p.Requests() {
			return log
		}
		if time.Now().After(deadline) {
			t.Fatalf("the proxy logged %d of %d requests", len(p.Log()), p.Requests())
		}
	}
}

// blobGETs returns the proxy's log entries for GETs of blob d.
func blobGETs(t *testing.T, p *faultproxy.Proxy, d digest.Digest) []faultproxy.Entry {
	t.Helper()
	var out []faultproxy.Entry
	for _, e := range settledLog(t, p) {
		if e.Method == http.MethodGet && strings.HasSuffix(e.Path, "/blobs/"+d.String()) {
			out = append(out, e)
		}
	}
	return out
}

// parseRange parses a closed "bytes=START-END" header.
func parseRange(t *testing.T, h string) (start, end int64) {
	t.Helper()
	s, e, ok := strings.Cut(strings.TrimPrefix(h, "bytes="), "-")
	if !strings.HasPrefix(h, "bytes=") || !ok || e == "" {
		t.Fatalf("Range %q is not a closed byte range", h)
	}
	start, err1 := strconv.ParseInt(s, 10, 64)
	end, err2 := strconv.ParseInt(e, 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("Range %q does not parse", h)
	}
	return start, end
}

// A multi-layer image from a token-auth registry lands in the store
// exactly as pushed, under its reference, readable by skopeo and umoci.
func TestRegistryPullWithTokenAuth(t *testing.T) {
	t.Parallel()
	rs := newRegSetup(t, true, "integ/app:v1", 1, 300_000, 1<<20, 10, 70_000)
	ref := rs.Reg.Host + "/integ/app:v1" // directly, no proxy
	tokens := rs.Reg.TokenRequests()
	r := resolveRef(t, ref, rs.keys...)
	s := openStore(t)
	res, err := fetch.Pull(context.Background(), r, s)
	if err != nil {
		t.Fatal(err)
	}
	if rs.Reg.TokenRequests() == tokens {
		t.Fatal("the client never asked the token server: token auth was not exercised")
	}
	name := fetch.DefaultRefName(ref)
	if name != ref || res.Name != ref || res.Reference != ref {
		t.Fatalf("recorded as %q (reference %q), want %q", res.Name, res.Reference, ref)
	}
	assertStoreHoldsImage(t, s, rs.Image, name)
	if res.Downloaded != rs.Image.layerSizes() {
		t.Errorf("Downloaded = %d, want the layers' %d bytes", res.Downloaded, rs.Image.layerSizes())
	}
	for i, l := range res.Layers {
		if l.Cached || l.Digest != digest.FromBytes(rs.Image.Layers[i]) {
			t.Errorf("layer %d: %+v", i, l)
		}
	}
	if n := len(assertBlobsVerified(t, s)); n != 2+len(rs.Image.Layers) {
		t.Errorf("%d blobs in the store, want manifest, config and %d layers", n, len(rs.Image.Layers))
	}

	// Anonymous pulls of the same image are refused, and say so.
	_, err = resolve.Resolve(context.Background(), ref, resolve.WithKeychain(authn.NewMultiKeychain()))
	if !errors.Is(err, errdefs.ErrUnauthorized) {
		t.Errorf("anonymous resolve: %v, want unauthorized", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t.Run("skopeo", func(t *testing.T) {
		skopeo := testutil.Tool(t, "skopeo")
		out, err := exec.CommandContext(ctx, skopeo, "inspect", "oci:"+s.Dir()+":"+name).CombinedOutput()
		if err != nil {
			t.Fatalf("skopeo inspect: %v\n%s", err, out)
		}
		var info struct {
			Digest       string
			Layers       []string
			Os           string
			Architecture string
		}
		if err := json.Unmarshal(out, &info); err != nil {
			t.Fatalf("skopeo output: %v\n%s", err, out)
		}
		var want []string
		for _, l := range rs.Image.Layers {
			want = append(want, digest.FromBytes(l).String())
		}
		if info.Digest != rs.Image.manifestDigest().String() || !slices.Equal(info.Layers, want) || info.Os != "linux" || info.Architecture != "amd64" {
			t.Errorf("skopeo sees %s %v %s/%s, want %s %v linux/amd64", info.Digest, info.Layers, info.Os, info.Architecture, rs.Image.manifestDigest(), want)
		}
		// copy reads every blob and checks its digest.
		if out, err := exec.CommandContext(ctx, skopeo, "copy", "--quiet", "oci:"+s.Dir()+":"+name, "dir:"+t.TempDir()).CombinedOutput(); err != nil {
			t.Fatalf("skopeo copy: %v\n%s", err, out)
		}
	})
	t.Run("umoci", func(t *testing.T) {
		umoci := testutil.Tool(t, "umoci")
		out, err := exec.CommandContext(ctx, umoci, "stat", "--json", "--image", s.Dir()+":"+name).CombinedOutput()
		if err != nil {
			t.Fatalf("umoci stat: %v\n%s", err, out)
		}
		var stat struct {
			History []struct {
				Layer *struct{ Digest string }
			}
		}
		if err := json.Unmarshal(out, &stat); err != nil {
			t.Fatalf("umoci stat output: %v\n%s", err, out)
		}
		var got, want []string
		for _, h := range stat.History {
			if h.Layer != nil {
				got = append(got, h.Layer.Digest)
			}
		}
		for _, l := range rs.Image.Layers {
			want = append(want, digest.FromBytes(l).String())
		}
		if !slices.Equal(got, want) {
			t.Errorf("umoci sees layers %v, want %v", got, want)
		}
	})
}

// Connections cut mid-layer resume with closed ranges, which the real
// registry honours with 206; nothing is transferred twice.
func TestRegistryResumesCutConnectionsWithClosedRanges(t *testing.T) {
	t.Parallel()
	const cuts, cutAfter = 3, 400_000
	rs := newRegSetup(t, true, "integ/cut:v1", 2, 2<<20)
	r := rs.resolve(t, rs.Ref)
	layer := rs.Image.Layers[0]
	size := int64(len(layer))
	rs.Proxy.Add(faultproxy.Rule{Match: faultproxy.BlobGETs, Times: cuts, Faults: []faultproxy.Fault{faultproxy.CutAfter(cutAfter)}})
	s := openStore(t)
	res, err := fetch.Pull(context.Background(), r, s, quickRetries())
	if err != nil {
		t.Fatal(err)
	}
	assertStoreHoldsImage(t, s, rs.Image, rs.Ref)

	if sent := rs.Proxy.BytesSent(); sent >= 2*size || sent < size {
		t.Errorf("the proxy sent %d bytes for a %d byte layer", sent, size)
	}
	gets := blobGETs(t, rs.Proxy, digest.FromBytes(layer))
	if len(gets) != cuts+1 {
		t.Fatalf("%d GETs of the layer, want %d: %+v", len(gets), cuts+1, gets)
	}
	var received int64
	for i, e := range gets {
		if i == 0 {
			if e.Range != "" || e.Status != http.StatusOK {
				t.Errorf("first GET: Range %q status %d", e.Range, e.Status)
			}
		} else {
			// Each resume asks, with a closed range, for exactly the
			// bytes after those already received, and the registry
			// answers 206 with them.
			start, end := parseRange(t, e.Range)
			if start != received || end != size-1 || e.Status != http.StatusPartialContent {
				t.Errorf("GET %d: Range %q status %d, want bytes=%d-%d and 206", i, e.Range, e.Status, received, size-1)
			}
		}
		want := int64(cutAfter)
		if i == cuts {
			want = size - received
		}
		if e.Bytes != want {
			t.Errorf("GET %d carried %d bytes, want %d", i, e.Bytes, want)
		}
		received += e.Bytes
	}
	if received != size || res.Downloaded != size {
		t.Errorf("received %d bytes, Downloaded %d, for a %d byte layer", received, res.Downloaded, size)
	}
}

// A pull cancelled at ~70% of a large layer leaves a partial file; the
// next pull re-hashes it and asks the registry only for the rest.
func TestRegistryCancelledPullResumes(t *testing.T) {
	t.Parallel()
	rs := newRegSetup(t, false, "integ/big:v1", 3, 8<<20)
	r := rs.resolve(t, rs.Ref)
	layer := rs.Image.Layers[0]
	size := int64(len(layer))
	d := digest.FromBytes(layer)
	// ~0.7 s for the whole layer, so there is time to see 70% pass.
	rs.Proxy.Add(faultproxy.Rule{Match: faultproxy.BlobGETs, Faults: []faultproxy.Fault{faultproxy.Trickle(128<<10, 10*time.Millisecond)}})
	s := openStore(t)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cancelledAt int64
	_, err := fetch.Pull(ctx, r, s, fetch.WithProgressInterval(0), fetch.WithProgress(func(ev fetch.Event) {
		if ev.Digest == d && cancelledAt == 0 && ev.Done*10 >= ev.Total*7 {
			cancelledAt = ev.Done
			cancel()
		}
	}))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if cancelledAt == 0 {
		t.Fatal("never saw 70% of the layer")
	}
	assertIndexEmpty(t, s)
	if assertBlobsVerified(t, s)[d] {
		t.Fatal("the cancelled layer is visible in blobs/")
	}
	partial := filepath.Join(s.Dir(), ".ocifetch", "partial", "sha256", d.Encoded())
	fi, err := os.Stat(partial)
	if err != nil {
		t.Fatal(err)
	}
	kept := fi.Size()
	if kept < cancelledAt || kept >= size {
		t.Fatalf("partial file holds %d bytes; cancelled at %d of %d", kept, cancelledAt, size)
	}
	if b, _ := os.ReadFile(partial); !bytes.Equal(b, layer[:kept]) {
		t.Fatal("the partial file is not a prefix of the layer")
	}

	rs.Proxy.ClearRules()
	waitIdle(t, rs.Proxy) // the cancelled request's handler may still be sending
	rs.Proxy.ResetStats()
	res, err := fetch.Pull(context.Background(), r, s)
	if err != nil {
		t.Fatal(err)
	}
	assertStoreHoldsImage(t, s, rs.Image, rs.Ref)
	rest := size - kept
	sent := rs.Proxy.BytesSent()
	t.Logf("cancelled at %d of %d bytes, %d kept; the second pull transferred %d", cancelledAt, size, kept, sent)
	if sent*10 >= size*4 {
		t.Errorf("second pull transferred %d bytes, over 40%% of the %d byte layer", sent, size)
	}
	if sent != rest || res.Downloaded != rest {
		t.Errorf("second pull transferred %d (reported %d), want the missing %d", sent, res.Downloaded, rest)
	}
	gets := blobGETs(t, rs.Proxy, d)
	if len(gets) != 1 {
		t.Fatalf("second pull: %+v", gets)
	}
	if start, _ := parseRange(t, gets[0].Range); start != kept || gets[0].Status != http.StatusPartialContent {
		t.Errorf("second pull asked for %q (status %d), want bytes=%d-", gets[0].Range, gets[0].Status, kept)
	}
}

// Bad bytes, in flight or in the registry's own storage, are a
// digest_mismatch; the layer never becomes a blob and nothing is recorded.
func TestRegistryCorruptLayerIsADigestMismatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		corrupt func(t *testing.T, rs *regSetup, d digest.Digest)
	}{
		{"byte flipped in flight", func(t *testing.T, rs *regSetup, d digest.Digest) {
			rs.Proxy.Add(faultproxy.Rule{Match: faultproxy.PathSuffix(d.String()), Faults: []faultproxy.Fault{faultproxy.FlipByte(100_000)}})
		}},
		{"blob corrupted in registry storage", func(t *testing.T, rs *regSetup, d digest.Digest) {
			p := rs.Reg.BlobDataPath(d)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 0x01
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := newRegSetup(t, true, "integ/bad:v1", 40+uint64(i), 200_000, 300_000)
			r := rs.resolve(t, rs.Ref)
			bad := digest.FromBytes(rs.Image.Layers[1])
			tt.corrupt(t, rs, bad)
			s := openStore(t)
			_, err := fetch.Pull(context.Background(), r, s, quickRetries())
			if !errors.Is(err, errdefs.ErrDigestMismatch) || errdefs.KindOf(err) != errdefs.ErrDigestMismatch {
				t.Fatalf("err = %v (kind %s), want digest_mismatch", err, errdefs.KindOf(err))
			}
			if !strings.Contains(err.Error(), bad.String()) {
				t.Errorf("error does not name the bad layer %s: %v", bad, err)
			}
			assertNoBlob(t, s, bad)
			if assertBlobsVerified(t, s)[bad] {
				t.Fatal("the bad layer is in blobs/")
			}
			assertIndexEmpty(t, s)
			if _, err := s.Lookup(rs.Ref, nil); !errors.Is(err, errdefs.ErrNotFound) {
				t.Fatalf("Lookup after a failed pull: %v", err)
			}
			// The registry served every byte of it exactly once: a
			// mismatch from the only endpoint is not retried.
			if gets := blobGETs(t, rs.Proxy, bad); len(gets) != 1 || gets[0].Bytes != int64(len(rs.Image.Layers[1])) {
				t.Errorf("GETs of the bad layer: %+v", gets)
			}
		})
	}
}

// Transient failures: 429 with Retry-After is waited out, bursts of 503
// are retried, and a trickle that outlasts the context fails cleanly.
func TestRegistryTransientFailures(t *testing.T) {
	t.Parallel() // the time bounds checked are seconds wide
	rs := newRegSetup(t, true, "integ/flaky:v1", 6, 150_000, 250_000, 350_000)
	r := rs.resolve(t, rs.Ref)
	layerRule := func(i int, times int, f ...faultproxy.Fault) faultproxy.Rule {
		return faultproxy.Rule{Match: faultproxy.PathSuffix(digest.FromBytes(rs.Image.Layers[i]).String()), Times: times, Faults: f}
	}
	tests := []struct {
		name       string
		rules      []faultproxy.Rule
		minElapsed time.Duration
		wantStatus map[int]int // status → how many answers the proxy gave with it
	}{
		{
			name:       "429 with Retry-After",
			rules:      []faultproxy.Rule{layerRule(1, 1, faultproxy.Status(http.StatusTooManyRequests, "1"))},
			minElapsed: time.Second,
			wantStatus: map[int]int{http.StatusTooManyRequests: 1, http.StatusOK: 3},
		},
		{
			// The default policy gives a host three attempts in a row
			// without progress: two 503s and then the blob.
			name: "bursts of 503",
			rules: []faultproxy.Rule{
				layerRule(0, 2, faultproxy.Status(http.StatusServiceUnavailable, "")),
				layerRule(1, 1, faultproxy.Status(http.StatusServiceUnavailable, "")),
				layerRule(2, 2, faultproxy.Status(http.StatusServiceUnavailable, "")),
			},
			wantStatus: map[int]int{http.StatusServiceUnavailable: 5, http.StatusOK: 3},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs.Proxy.ClearRules()
			rs.Proxy.ResetStats()
			for _, rule := range tt.rules {
				rs.Proxy.Add(rule)
			}
			s := openStore(t)
			start := time.Now()
			// The default policy: Retry-After is honoured up to 30 s.
			_, err := fetch.Pull(context.Background(), r, s)
			elapsed := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			assertStoreHoldsImage(t, s, rs.Image, rs.Ref)
			if elapsed < tt.minElapsed {
				t.Errorf("pull took %s, less than the %s the registry asked to wait", elapsed, tt.minElapsed)
			}
			got := map[int]int{}
			log := settledLog(t, rs.Proxy)
			for _, e := range log {
				got[e.Status]++
			}
			for status, n := range tt.wantStatus {
				if got[status] != n {
					t.Errorf("%d answers with status %d, want %d (log %+v)", got[status], status, n, log)
				}
			}
		})
	}

	t.Run("slow trickle outlasts the deadline", func(t *testing.T) {
		rs.Proxy.ClearRules()
		rs.Proxy.ResetStats()
		// 4 KiB every 50 ms: ~4 s for the smallest layer.
		rs.Proxy.Add(faultproxy.Rule{Match: faultproxy.BlobGETs, Faults: []faultproxy.Fault{faultproxy.Trickle(4<<10, 50*time.Millisecond)}})
		s := openStore(t)
		const deadline = 700 * time.Millisecond
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		start := time.Now()
		_, err := fetch.Pull(ctx, r, s)
		elapsed := time.Since(start)
		if !errors.Is(err, context.DeadlineExceeded) || errdefs.KindOf(err) != errdefs.ErrNetwork {
			t.Fatalf("err = %v (kind %s), want network wrapping context.DeadlineExceeded", err, errdefs.KindOf(err))
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("error spans lines: %q", err)
		}
		if elapsed > deadline+3*time.Second {
			t.Errorf("pull returned %s after a %s deadline", elapsed, deadline)
		}
		// Only the documents resolving already verified are blobs; the
		// layers are partial files, out of sight.
		found := assertBlobsVerified(t, s)
		want := map[digest.Digest]bool{rs.Image.manifestDigest(): true, digest.FromBytes(rs.Image.Config): true}
		if len(found) != len(want) || !found[rs.Image.manifestDigest()] || !found[digest.FromBytes(rs.Image.Config)] {
			t.Errorf("blobs/ holds %v, want only the manifest and config", found)
		}
		assertIndexEmpty(t, s)
		var partial int64
		for _, l := range rs.Image.Layers {
			if fi, err := os.Stat(filepath.Join(s.Dir(), ".ocifetch", "partial", "sha256", digest.FromBytes(l).Encoded())); err == nil {
				partial += fi.Size()
			}
		}
		if partial == 0 {
			t.Error("no partial file kept for the next pull to resume")
		}
		rs.Proxy.ClearRules()
		waitIdle(t, rs.Proxy)
	})
}

// Blob GETs redirected to another host succeed without the registry's
// Authorization header going there, resumes included: a connection the
// storage host cuts is resumed at the registry, with a range that survives
// the redirect.
func TestRegistryRedirectDoesNotLeakAuthorization(t *testing.T) {
	t.Parallel()
	const cutAfter = 100_000
	rs := newRegSetup(t, true, "integ/redir:v1", 7, 200_000, 400_000)
	// "Blob storage": a second registry process without auth serving the
	// same storage, behind its own proxy, which counts Authorization
	// headers. The redirect names it as localhost:PORT, another host name.
	storage := testregistry.Start(t, testregistry.WithStorageDir(rs.Reg.StorageDir))
	blobHost := faultproxy.New(t, storage.URL)
	r := rs.resolve(t, rs.Ref)
	if rs.Proxy.AuthorizationsSeen() != 0 {
		t.Fatal("ResetStats did not reset")
	}
	rs.Proxy.Add(faultproxy.Rule{Match: faultproxy.BlobGETs, Faults: []faultproxy.Fault{faultproxy.Redirect(blobHost)}})
	blobHost.Add(faultproxy.Rule{Match: faultproxy.BlobGETs, Times: 1, Faults: []faultproxy.Fault{faultproxy.CutAfter(cutAfter)}})
	s := openStore(t)
	if _, err := fetch.Pull(context.Background(), r, s, quickRetries()); err != nil {
		t.Fatal(err)
	}
	assertStoreHoldsImage(t, s, rs.Image, rs.Ref)

	var redirected, ranged int64
	log := settledLog(t, rs.Proxy)
	for _, e := range log {
		if e.Method != http.MethodGet || !strings.Contains(e.Path, "/blobs/") {
			continue
		}
		if e.Status != http.StatusTemporaryRedirect {
			t.Errorf("blob GET not redirected: %+v", e)
		}
		redirected++
		if e.Range != "" {
			ranged++
		}
	}
	if want := int64(len(rs.Image.Layers) + 1); redirected != want || ranged != 1 {
		t.Fatalf("%d blob GETs redirected (%d ranged), want %d (1 ranged): %+v", redirected, ranged, want, log)
	}
	if got := rs.Proxy.AuthorizationsSeen(); got != redirected {
		t.Errorf("the registry saw Authorization on %d of %d blob GETs", got, redirected)
	}
	var received int64
	for _, e := range settledLog(t, blobHost) {
		switch {
		case e.Method != http.MethodGet:
			t.Errorf("storage host got %+v", e)
		case e.Range == "" && e.Status == http.StatusOK:
		case e.Status == http.StatusPartialContent:
			if start, _ := parseRange(t, e.Range); start != cutAfter {
				t.Errorf("resume at the storage host: %+v, want bytes=%d-", e, cutAfter)
			}
		default:
			t.Errorf("storage host answered %+v", e)
		}
		received += e.Bytes
	}
	if want := rs.Image.layerSizes(); received != want {
		t.Errorf("the storage host sent %d bytes, want the layers' %d", received, want)
	}
	if n := blobHost.AuthorizationsSeen(); n != 0 {
		t.Fatalf("the storage host received %d Authorization headers", n)
	}
}

// A mirror that serves short or corrupt blobs is verified like anything
// else, and the pull falls back to the upstream: continuing after the
// mirror's prefix when its content merely ended early, from zero when the
// bytes were bad.
func TestRegistryBadMirrorFallsBackToUpstream(t *testing.T) {
	t.Parallel()
	const shortAt = 100_000
	rs := newRegSetup(t, false, "integ/mirrored:v1", 8, 300_000, 600_000)
	// The mirror is a real pull-through cache of the upstream, behind its
	// own fault proxy; hosts.toml names it for the upstream as the
	// reference spells it (the upstream's proxy).
	cache := testregistry.Start(t, testregistry.WithProxy(rs.Reg.URL, "", ""))
	mirror := faultproxy.New(t, cache.URL)
	hosts := t.TempDir()
	testutil.WriteHostsFile(t, hosts, rs.Proxy.Host(), fmt.Sprintf("[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", mirror.URL))
	r := rs.resolve(t, rs.Ref, resolve.WithHostsDir(hosts))
	if m, ok := r.Source.(resolve.Mirrored); !ok || len(m.Endpoints()) != 2 {
		t.Fatalf("source %T: want the mirror and the upstream as endpoints", r.Source)
	}
	// The cache fetches and stores every blob now: while it is still
	// streaming one from its remote, it answers ranges with 200 or 500.
	for _, l := range rs.Image.Layers {
		warmCache(t, cache, "integ/mirrored", digest.FromBytes(l), int64(len(l)))
	}
	noRange := func(r *http.Request) bool { return faultproxy.BlobGETs(r) && r.Header.Get("Range") == "" }
	ranged := func(r *http.Request) bool { return faultproxy.BlobGETs(r) && r.Header.Get("Range") != "" }

	tests := []struct {
		name  string
		setup func(t *testing.T)
		// upstreamFrom is where the upstream's one GET per layer starts.
		upstreamFrom int64
		// mirrorStatuses, if set, are the mirror's answers for each layer.
		mirrorStatuses []int
	}{
		{
			// The first answer ends short (cleanly, with a Content-Length
			// that agrees), and resumes get nothing more.
			name: "truncated in flight",
			setup: func(t *testing.T) {
				mirror.Add(faultproxy.Rule{Match: noRange, Faults: []faultproxy.Fault{faultproxy.Truncate(shortAt)}})
				mirror.Add(faultproxy.Rule{Match: ranged, Faults: []faultproxy.Fault{faultproxy.Truncate(0)}})
			},
			upstreamFrom: shortAt,
		},
		{
			name: "corrupted in flight",
			setup: func(t *testing.T) {
				mirror.Add(faultproxy.Rule{Match: faultproxy.BlobGETs, Faults: []faultproxy.Fault{faultproxy.FlipByte(12_345)}})
			},
			upstreamFrom:   0,
			mirrorStatuses: []int{http.StatusOK},
		},
		{
			// The cache's own copy is short: it serves what it has, and
			// is skipped for that blob at once (a mirror gets no retry).
			name: "truncated in the mirror's storage",
			setup: func(t *testing.T) {
				for _, l := range rs.Image.Layers {
					if err := os.Truncate(cache.BlobDataPath(digest.FromBytes(l)), shortAt); err != nil {
						t.Fatal(err)
					}
				}
			},
			upstreamFrom:   shortAt,
			mirrorStatuses: []int{http.StatusOK},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mirror.ClearRules()
			tt.setup(t)
			mirror.ResetStats()
			rs.Proxy.ResetStats()
			s := openStore(t)
			if _, err := fetch.Pull(context.Background(), r, s, quickRetries()); err != nil {
				t.Fatal(err)
			}
			assertStoreHoldsImage(t, s, rs.Image, rs.Ref)
			for _, l := range rs.Image.Layers {
				d := digest.FromBytes(l)
				size := int64(len(l))
				mgets := blobGETs(t, mirror, d)
				var statuses []int
				for _, e := range mgets {
					statuses = append(statuses, e.Status)
				}
				if len(mgets) == 0 || mgets[0].Range != "" || (tt.mirrorStatuses != nil && !slices.Equal(statuses, tt.mirrorStatuses)) {
					t.Errorf("mirror GETs of %s: %+v", d, mgets)
				}
				gets := blobGETs(t, rs.Proxy, d)
				if len(gets) != 1 {
					t.Fatalf("upstream GETs of %s: %+v (mirror: %+v)", d, gets, mgets)
				}
				if tt.upstreamFrom == 0 {
					if gets[0].Range != "" || gets[0].Bytes != size {
						t.Errorf("upstream GET of %s: %+v, want the whole blob", d, gets[0])
					}
					continue
				}
				if start, end := parseRange(t, gets[0].Range); start != tt.upstreamFrom || end != size-1 || gets[0].Bytes != size-tt.upstreamFrom {
					t.Errorf("upstream GET of %s: %+v, want bytes=%d-%d", d, gets[0], tt.upstreamFrom, size-1)
				}
			}
		})
	}
}

// warmCache has a pull-through cache fetch blob d of repo from its remote
// and waits until the whole blob is in its storage.
func warmCache(t *testing.T, cache *testregistry.Registry, repo string, d digest.Digest, size int64) {
	t.Helper()
	resp, err := http.Get(cache.URL + "/v2/" + repo + "/blobs/" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("cache answered %s for %s", resp.Status, d)
	}
	// It stores what it streamed in the background.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if fi, err := os.Stat(cache.BlobDataPath(d)); err == nil && fi.Size() == size {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cache did not store %s", d)
		}
	}
}

// A mirror that is down (connection refused) is skipped at once for each
// blob, as resolving skips it, instead of being retried with backoff
// before the upstream is asked: with the default policy that cost about
// three seconds per pull.
func TestRegistryMirrorThatIsDownIsSkippedAtOnce(t *testing.T) {
	t.Parallel()
	rs := newRegSetup(t, false, "integ/mirrordown:v1", 11, 300_000, 600_000)
	mirror := faultproxy.New(t, rs.Reg.URL)
	hosts := t.TempDir()
	testutil.WriteHostsFile(t, hosts, rs.Proxy.Host(), fmt.Sprintf("[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", mirror.URL))
	r := rs.resolve(t, rs.Ref, resolve.WithHostsDir(hosts))
	if mirror.Requests() == 0 {
		t.Fatal("resolving did not use the mirror")
	}
	mirror.Close() // down between resolving and fetching

	s := openStore(t)
	var retries []fetch.Event
	start := time.Now()
	_, err := fetch.Pull(context.Background(), r, s, fetch.WithProgress(func(ev fetch.Event) {
		if ev.State == fetch.StateRetrying {
			retries = append(retries, ev)
		}
	}))
	elapsed := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	assertStoreHoldsImage(t, s, rs.Image, rs.Ref)
	if len(retries) != 0 {
		t.Errorf("%d retries of a host that refuses connections, first: %v", len(retries), retries[0].Err)
	}
	for _, l := range rs.Image.Layers {
		if gets := blobGETs(t, rs.Proxy, digest.FromBytes(l)); len(gets) != 1 || gets[0].Bytes != int64(len(l)) {
			t.Errorf("upstream GETs of %s: %+v", digest.FromBytes(l), gets)
		}
	}
	// It used to sleep at least 125+250+500+1000 ms per blob.
	t.Logf("pull took %s with the mirror down", elapsed)
}

// Layers download concurrently, never more than WithJobs at once.
func TestRegistryDownloadsOverlap(t *testing.T) {
	t.Parallel()
	rs := newRegSetup(t, true, "integ/six:v1", 9, 100_000, 110_000, 120_000, 130_000, 140_000, 150_000)
	r := rs.resolve(t, rs.Ref)
	rs.Proxy.Add(faultproxy.Rule{Match: faultproxy.BlobGETs, Faults: []faultproxy.Fault{faultproxy.Delay(250 * time.Millisecond)}})
	s := openStore(t)
	if _, err := fetch.Pull(context.Background(), r, s, fetch.WithJobs(3)); err != nil {
		t.Fatal(err)
	}
	assertStoreHoldsImage(t, s, rs.Image, rs.Ref)
	var gets int
	for _, e := range settledLog(t, rs.Proxy) {
		if e.Method == http.MethodGet && strings.Contains(e.Path, "/blobs/") {
			gets++
		}
	}
	if gets != 6 || int64(gets) != rs.Proxy.Requests() {
		t.Fatalf("%d blob GETs of %d requests, want 6 and nothing else", gets, rs.Proxy.Requests())
	}
	if got := rs.Proxy.MaxInFlight(); got < 2 || got > 3 {
		t.Errorf("max blob GETs in flight %d, want 2..3 with WithJobs(3)", got)
	}
}

// A manifest may lie about a layer's size: the registry does not check
// descriptor sizes on push. Either way it is a size_mismatch, found on
// the first answer and not retried, and the layer never becomes a blob.
// When the descriptor claims more, the whole blob arrives and hashes to
// the digest: that is conclusive, with no resume (which once got a 416
// that read as a broken connection and failed as "network", and before
// that retried forever, each short answer counting as progress).
func TestRegistryLayerSizeDisagreesWithItsDescriptor(t *testing.T) {
	t.Parallel()
	rs := newRegSetup(t, false, "integ/lie:v1", 10, 200_000)
	var m ocispec.Manifest
	if err := json.Unmarshal(rs.Image.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	layer := m.Layers[0]
	for _, tt := range []struct {
		name     string
		delta    int64
		wantGETs int
	}{
		{"descriptor claims 10 bytes more", 10, 1},
		{"descriptor claims 10 bytes less", -10, 1},
		{"descriptor claims 1000 bytes more", 1000, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			lie := m
			lie.Layers = []ocispec.Descriptor{layer}
			lie.Layers[0].Size += tt.delta
			tag := "lie" + strconv.Itoa(int(tt.delta+100))
			testimage.PushRaw(t, rs.Reg.Host+"/integ/lie:"+tag, testimage.JSON(t, lie), types.OCIManifestSchema1)
			r := resolveRef(t, rs.Proxy.Host()+"/integ/lie:"+tag, rs.keys...)
			rs.Proxy.ResetStats()
			s := openStore(t)
			// The default policy, as users get it.
			_, err := fetch.Pull(context.Background(), r, s)
			if !errors.Is(err, errdefs.ErrSizeMismatch) || errdefs.KindOf(err) != errdefs.ErrSizeMismatch {
				t.Fatalf("err = %v (kind %s), want size_mismatch", err, errdefs.KindOf(err))
			}
			if assertBlobsVerified(t, s)[layer.Digest] {
				t.Fatal("the layer is in blobs/")
			}
			assertIndexEmpty(t, s)
			if gets := blobGETs(t, rs.Proxy, layer.Digest); len(gets) != tt.wantGETs {
				t.Errorf("%d GETs of the layer, want %d: %+v", len(gets), tt.wantGETs, gets)
			}
		})
	}
}
