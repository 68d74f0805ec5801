package fetch_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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
	"github.com/ocifetch/ocifetch/internal/testutil/faultproxy"
	"github.com/ocifetch/ocifetch/resolve"
	"github.com/ocifetch/ocifetch/source"
)

// randomBytes returns n deterministic pseudo-random bytes.
func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

func layerDesc(b []byte) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(b), Size: int64(len(b))}
}

// blobServer is a minimal registry blob endpoint: GET and HEAD of
// /v2/NAME/blobs/DIGEST, with Range support from http.ServeContent.
type blobServer struct {
	*httptest.Server
	mu          sync.Mutex
	blobs       map[digest.Digest][]byte
	ignoreRange atomic.Bool
	gets        atomic.Int64
}

func newBlobServer(t testing.TB, blobs ...[]byte) *blobServer {
	t.Helper()
	s := &blobServer{blobs: map[digest.Digest][]byte{}}
	for _, b := range blobs {
		s.add(b)
	}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// startLayer starts a pull of r into s and opens the stream of its first
// layer, which the test reads as the download goes on.
func startLayer(t testing.TB, ctx context.Context, r *resolve.Resolved, s *fetch.Store, opts ...fetch.Option) (*fetch.Session, io.ReadCloser) {
	t.Helper()
	sess, err := fetch.Start(ctx, r, s, opts...)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := sess.Layer(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	return sess, rc
}

// pulledLayer pulls an image of one layer, served from memory, into a
// new store, and returns with them the layer's file in the store.
func pulledLayer(t testing.TB, layer []byte) (*memSource, *resolve.Resolved, *fetch.Store, string) {
	t.Helper()
	src := newMemSource(layer)
	r := testImage(t, src, layer)
	s := openStore(t)
	if _, err := fetch.Pull(context.Background(), r, s); err != nil {
		t.Fatal(err)
	}
	p, err := s.BlobPath(r.Layers[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return src, r, s, p
}

// flipByte writes blob to path with the byte at xored with x, and
// returns what it wrote.
func flipByte(t testing.TB, path string, blob []byte, at int, x byte) []byte {
	t.Helper()
	bad := bytes.Clone(blob)
	bad[at] ^= x
	must(t, os.WriteFile(path, bad, 0o644))
	return bad
}

// openLayer is fetch.OpenLayer, failing the test on an error.
func openLayer(t testing.TB, ctx context.Context, src resolve.Source, s *fetch.Store, desc ocispec.Descriptor) io.ReadCloser {
	t.Helper()
	rc, err := fetch.OpenLayer(ctx, src, s, desc)
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

// trickling serves blob through a fault proxy that, with chunk > 0, sends
// chunk bytes every pause.
func trickling(t testing.TB, blob []byte, chunk int, pause time.Duration) *faultproxy.Proxy {
	t.Helper()
	_, p := tricklingServer(t, blob, chunk, pause)
	return p
}

// trickledImage is an image of one random layer of n bytes that a fault
// proxy serves chunk bytes every pause, and an empty store.
func trickledImage(t testing.TB, n int, seed uint64, chunk int, pause time.Duration) ([]byte, *faultproxy.Proxy, *resolve.Resolved, *fetch.Store) {
	t.Helper()
	blob := randomBytes(n, seed)
	p := trickling(t, blob, chunk, pause)
	return blob, p, testImage(t, newHTTPSource(p.URL), blob), openStore(t)
}

// tricklingServer is trickling that also returns the server.
func tricklingServer(t testing.TB, blob []byte, chunk int, pause time.Duration) (*blobServer, *faultproxy.Proxy) {
	t.Helper()
	srv := newBlobServer(t, blob)
	p := faultproxy.New(t, srv.URL)
	if chunk > 0 {
		p.Add(faultproxy.Rule{Faults: []faultproxy.Fault{faultproxy.Trickle(chunk, pause)}})
	}
	return srv, p
}

func (s *blobServer) add(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blobs[digest.FromBytes(b)] = b
}

func (s *blobServer) serve(w http.ResponseWriter, r *http.Request) {
	_, ds, ok := strings.Cut(r.URL.Path, "/blobs/")
	if !ok || !strings.HasPrefix(r.URL.Path, "/v2/") {
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	data, ok := s.blobs[digest.Digest(ds)]
	s.mu.Unlock()
	if !ok {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}`)
		return
	}
	if r.Method == http.MethodGet {
		s.gets.Add(1)
	}
	if s.ignoreRange.Load() {
		r.Header.Del("Range")
	}
	w.Header().Set("Docker-Content-Digest", ds)
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
}

// httpSource is a test-only resolve.Source that fetches blobs over the
// registry API (GET /v2/NAME/blobs/DIGEST, with Range to resume), so the
// fault proxy can sit between it and a server. It sends a fixed
// Authorization header, standing in for registry credentials.
type httpSource struct {
	base, repo string
	client     *http.Client
	auth       string
}

var testTransport = &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}

func newHTTPSource(base string) *httpSource {
	return &httpSource{base: base, repo: "test/image", client: &http.Client{Transport: testTransport}, auth: "Bearer registry-secret"}
}

func (s *httpSource) Reference() string { return strings.TrimPrefix(s.base, "http://") + "/" + s.repo }
func (s *httpSource) String() string    { return s.base }

func (s *httpSource) Root(context.Context) (ocispec.Descriptor, error) { return noRoot() }

func (s *httpSource) Fetch(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	return fromStart(ctx, s, d)
}

func (s *httpSource) FetchAt(ctx context.Context, desc ocispec.Descriptor, off int64) (io.ReadCloser, int64, error) {
	if err := desc.Digest.Validate(); err != nil {
		return nil, 0, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "bad digest")
	}
	u := fmt.Sprintf("%s/v2/%s/blobs/%s", s.base, s.repo, desc.Digest)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, err
	}
	if off > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, desc.Size-1))
	}
	if s.auth != "" {
		req.Header.Set("Authorization", s.auth)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, 0, errdefs.Wrap(err, errdefs.ErrNetwork, "GET %s", u)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return resp.Body, 0, nil
	case http.StatusPartialContent:
		var start int64
		if _, err := fmt.Sscanf(resp.Header.Get("Content-Range"), "bytes %d-", &start); err != nil || start != off {
			resp.Body.Close()
			return nil, 0, errdefs.New(errdefs.ErrNetwork, "bad Content-Range %q for offset %d", resp.Header.Get("Content-Range"), off)
		}
		return resp.Body, off, nil
	}
	resp.Body.Close()
	return nil, 0, source.StatusError(resp, u)
}

// mirrored offers several endpoints, as a registry source with mirrors does.
type mirrored struct {
	*httpSource // the upstream, also used by Fetch/FetchAt directly
	eps         []resolve.Source
}

func (m *mirrored) Endpoints() []resolve.Source { return m.eps }

// noRoot is Root of the test sources: the tests hand fetch a resolved
// image, so nothing asks for a root.
func noRoot() (ocispec.Descriptor, error) {
	return ocispec.Descriptor{}, errdefs.New(errdefs.ErrInvalidArgument, "a test source has no root")
}

// fromStart is Fetch of the test sources: FetchAt from byte 0.
func fromStart(ctx context.Context, src resolve.Source, d ocispec.Descriptor) (io.ReadCloser, error) {
	rc, _, err := src.FetchAt(ctx, d, 0)
	return rc, err
}

// memSource serves blobs from memory; it never fails. For tests that are
// not about the network.
type memSource struct {
	blobs map[digest.Digest][]byte
	calls atomic.Int64
}

func newMemSource(blobs ...[]byte) *memSource {
	m := &memSource{blobs: map[digest.Digest][]byte{}}
	for _, b := range blobs {
		m.blobs[digest.FromBytes(b)] = b
	}
	return m
}

func (m *memSource) Reference() string                                { return "mem" }
func (m *memSource) Root(context.Context) (ocispec.Descriptor, error) { return noRoot() }
func (m *memSource) Fetch(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	return fromStart(ctx, m, d)
}
func (m *memSource) FetchAt(_ context.Context, desc ocispec.Descriptor, off int64) (io.ReadCloser, int64, error) {
	m.calls.Add(1)
	b, ok := m.blobs[desc.Digest]
	if !ok {
		return nil, 0, errdefs.New(errdefs.ErrNotFound, "blob %s unknown", desc.Digest)
	}
	return io.NopCloser(bytes.NewReader(b[off:])), off, nil
}

// testImage builds a Resolved image of the given layers, with OCI media
// types, whose documents are in memory and whose layers src serves.
func testImage(t testing.TB, src resolve.Source, layers ...[]byte) *resolve.Resolved {
	t.Helper()
	cfg := ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		RootFS:   ocispec.RootFS{Type: "layers"},
	}
	var ls []resolve.Layer
	var descs []ocispec.Descriptor
	for _, b := range layers {
		d := layerDesc(b)
		// fetch does not look inside layers; any diffID will do.
		diffID := digest.FromString("uncompressed " + d.Digest.String())
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, diffID)
		ls = append(ls, resolve.Layer{Descriptor: d, DiffID: diffID})
		descs = append(descs, d)
	}
	cfgBytes, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfgBytes), Size: int64(len(cfgBytes))}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cfgDesc, Layers: descs}
	mBytes, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	mDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(mBytes), Size: int64(len(mBytes))}
	return &resolve.Resolved{
		Reference:     "registry.test/test/image:latest",
		Source:        src,
		Manifest:      resolve.Blob{Descriptor: mDesc, Data: mBytes},
		ImageManifest: m,
		Config:        resolve.Blob{Descriptor: cfgDesc, Data: cfgBytes},
		Image:         cfg,
		Platform:      cfg.Platform,
		Layers:        ls,
	}
}

func openStore(t testing.TB) *fetch.Store {
	t.Helper()
	s, err := fetch.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// quickRetries keeps fault tests fast: tiny backoff and Retry-After caps.
func quickRetries() fetch.Option {
	return fetch.WithRetryPolicy(fetch.RetryPolicy{MaxAttempts: 5, BaseDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond, MaxRetryAfter: 20 * time.Millisecond})
}

// assertBlob checks that the store holds exactly data for its digest.
func assertBlob(t testing.TB, s *fetch.Store, data []byte) {
	t.Helper()
	p, err := s.BlobPath(digest.FromBytes(data))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("blob missing: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("blob %s has wrong content (%d bytes)", digest.FromBytes(data), len(got))
	}
}

// assertNoBlob checks that the blob is not in blobs/ and that no partial
// file claims to hold (a prefix of) it.
func assertNoBlob(t testing.TB, s *fetch.Store, d digest.Digest) {
	t.Helper()
	if ok, _ := s.Has(ocispec.Descriptor{Digest: d}); ok {
		t.Fatalf("blob %s is in the store", d)
	}
	p, _ := s.BlobPath(d)
	if _, err := os.Lstat(p); err == nil {
		t.Fatalf("blob file %s exists", p)
	}
	partial := filepath.Join(s.Dir(), ".ocifetch", "partial", d.Algorithm().String(), d.Encoded())
	if fi, err := os.Lstat(partial); err == nil && fi.Size() > 0 {
		t.Fatalf("partial file %s left with %d bytes", partial, fi.Size())
	}
}

// listBlobs returns the names under blobs/sha256.
func listBlobs(t testing.TB, s *fetch.Store) []string {
	t.Helper()
	return testutil.DirNames(t, filepath.Join(s.Dir(), "blobs", "sha256"))
}
