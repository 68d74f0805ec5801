package fetch_test

// Tests of the network side of fetching against the in-process hostile
// registry (internal/testutil/hostile) through the real registry source.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/fetch"
	"github.com/ocifetch/ocifetch/internal/testutil"
	"github.com/ocifetch/ocifetch/internal/testutil/hostile"
	"github.com/ocifetch/ocifetch/resolve"
	"github.com/ocifetch/ocifetch/source"
)

// openHostile opens the registry source of repo on reg, anonymously.
func openHostile(t *testing.T, reg *hostile.Registry, repo string, opts ...source.Option) source.Source {
	t.Helper()
	src, err := source.OpenRegistry(reg.Host+"/"+repo+":v1", append([]source.Option{source.WithKeychain(authn.NewMultiKeychain())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// A descriptor that lies about the size of a blob whose bytes are right
// is size_mismatch at once, in both directions. Claiming more used to
// retry forever: each short answer counted as progress.
func TestLyingSizeIsSizeMismatchAtOnce(t *testing.T) {
	t.Parallel() // the time bounds checked are seconds wide
	blob := randomBytes(95, 60)
	for _, delta := range []int64{1000, 1, -10} {
		t.Run(fmt.Sprintf("%+d bytes", delta), func(t *testing.T) {
			reg := hostile.New(t)
			reg.PutBlob("lie/app", blob)
			desc := layerDesc(blob)
			desc.Size += delta
			s := openStore(t)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			start := time.Now()
			err := fetch.FetchBlob(ctx, openHostile(t, reg, "lie/app"), s, desc)
			if errdefs.KindOf(err) != errdefs.ErrSizeMismatch {
				t.Fatalf("err = %v (kind %s), want size_mismatch", err, errdefs.KindOf(err))
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
			if n := reg.Count(hostile.Blob, desc.Digest.String()); n != 1 {
				t.Errorf("%d GETs, want 1", n)
			}
			assertNoBlob(t, s, desc.Digest)
		})
	}
}

// Sizes near 2^63 overflowed the offset arithmetic of a download (a panic
// in an errgroup goroutine took the embedding program down); negative
// ones are not sizes.
func TestAbsurdSizesAreRefusedBeforeAnyRequest(t *testing.T) {
	t.Parallel()
	blob := randomBytes(100, 61)
	reg := hostile.New(t)
	reg.PutBlob("huge/app", blob)
	src := openHostile(t, reg, "huge/app")
	for _, tc := range []struct {
		size int64
		kind errdefs.Kind
	}{
		{math.MaxInt64, errdefs.ErrTooLarge},
		{math.MaxInt64 - 1, errdefs.ErrTooLarge},
		{source.MaxBlobSize + 1, errdefs.ErrTooLarge},
		{-1, errdefs.ErrInvalidArgument},
	} {
		desc := layerDesc(blob)
		desc.Size = tc.size
		s := openStore(t)
		if err := fetch.FetchBlob(context.Background(), src, s, desc); errdefs.KindOf(err) != tc.kind {
			t.Errorf("FetchBlob of size %d: %v (kind %s), want %s", tc.size, err, errdefs.KindOf(err), tc.kind)
		}
		if rc, err := fetch.OpenLayer(context.Background(), src, s, desc); errdefs.KindOf(err) != tc.kind {
			t.Errorf("OpenLayer of size %d: %v (kind %s), want %s", tc.size, err, errdefs.KindOf(err), tc.kind)
			if rc != nil {
				rc.Close()
			}
		}
	}
	if n := len(reg.Requests()); n != 0 {
		t.Errorf("%d requests for absurd sizes", n)
	}
	// A stored blob read with a descriptor claiming 2^63-1 bytes ends in
	// size_mismatch, not in a slice bound out of range.
	s := openStore(t)
	if err := fetch.FetchBlob(context.Background(), src, s, layerDesc(blob)); err != nil {
		t.Fatal(err)
	}
	desc := layerDesc(blob)
	desc.Size = math.MaxInt64
	rc, err := s.Open(desc)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadAll(rc); errdefs.KindOf(err) != errdefs.ErrSizeMismatch {
		t.Fatalf("reading with a huge size: %v", err)
	}
}

// A blob that stalls (below the minimum rate over the window) is retried
// from where it stopped, and completes.
func TestStalledBlobResumesWhereItStopped(t *testing.T) {
	t.Parallel() // the time bounds checked are seconds wide
	blob := randomBytes(200_000, 62)
	const first = 70_000
	reg := hostile.New(t)
	d := reg.PutBlob("stall/app", blob)
	var stalled atomic.Bool
	reg.Intercept(func(w http.ResponseWriter, r *http.Request, q hostile.Request) bool {
		if q.Kind != hostile.Blob || stalled.Swap(true) {
			return false
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(blob)))
		w.WriteHeader(http.StatusOK)
		w.Write(blob[:first])
		w.(http.Flusher).Flush()
		<-r.Context().Done() // nothing more, ever
		return true
	})
	s := openStore(t)
	start := time.Now()
	err := fetch.FetchBlob(context.Background(), openHostile(t, reg, "stall/app"), s, layerDesc(blob),
		fetch.WithDeadlines(source.Deadlines{Document: time.Second, MinRate: 1024, RateWindow: 300 * time.Millisecond}), quickRetries())
	if err != nil {
		t.Fatal(err)
	}
	assertBlob(t, s, blob)
	var ranges []string
	for _, q := range reg.Requests() {
		if q.Kind == hostile.Blob && q.Ref == d.String() {
			ranges = append(ranges, q.Header.Get("Range"))
		}
	}
	if want := fmt.Sprintf("bytes=%d-%d", first, len(blob)-1); len(ranges) != 2 || ranges[0] != "" || ranges[1] != want {
		t.Fatalf("requests %q, want the whole blob then %q", ranges, want)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("took %v", el)
	}
}

// mirroredImage puts the same image on an upstream and a mirror and
// returns what resolving it through hosts.toml gives.
func mirroredImage(t *testing.T, caps string, opts ...resolve.Option) (up, mirror *hostile.Registry, res *resolve.Resolved, layers [][]byte) {
	t.Helper()
	up, mirror = hostile.New(t), hostile.New(t)
	layers = [][]byte{randomBytes(150_000, 63), randomBytes(90_000, 64)}
	r := testImage(t, nil, layers...)
	for _, reg := range []*hostile.Registry{up, mirror} {
		for _, l := range layers {
			reg.PutBlob("mirror/app", l)
		}
		reg.PutBlob("mirror/app", r.Config.Data)
		reg.PutManifest("mirror/app", "v1", ocispec.MediaTypeImageManifest, r.Manifest.Data)
	}
	hosts := t.TempDir()
	testutil.WriteHostsFile(t, hosts, up.Host, fmt.Sprintf("[host.%q]\n  %s\n", "http://"+mirror.Host, caps))
	ropts := append([]resolve.Option{resolve.WithKeychain(authn.NewMultiKeychain()), resolve.WithHostsDir(hosts)}, opts...)
	res, err := resolve.Resolve(context.Background(), up.Host+"/mirror/app:v1", ropts...)
	if err != nil {
		t.Fatal(err)
	}
	return up, mirror, res, layers
}

// A pull-only mirror that answers 200 with a short body and ignores Range
// is asked once per blob and the upstream continues from its bytes; it
// used to be retried forever (3,372 requests in 11 minutes).
func TestShortBodiedMirrorFallsBack(t *testing.T) {
	t.Parallel()
	const short = 40_000
	up, mirror, res, layers := mirroredImage(t, `capabilities = ["pull"]`)
	mirror.Intercept(func(w http.ResponseWriter, r *http.Request, q hostile.Request) bool {
		if q.Kind != hostile.Blob || q.Ref == res.Config.Descriptor.Digest.String() {
			return false
		}
		b := mirror.Blob("mirror/app", res.Layers[0].Digest)
		if q.Ref == res.Layers[1].Digest.String() {
			b = mirror.Blob("mirror/app", res.Layers[1].Digest)
		}
		w.Header().Set("Content-Length", fmt.Sprint(short)) // honest about what it sends
		w.WriteHeader(http.StatusOK)                        // and ignores Range
		w.Write(b[:short])
		return true
	})
	s := openStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := fetch.Pull(ctx, res, s); err != nil {
		t.Fatal(err)
	}
	for i, l := range layers {
		assertBlob(t, s, l)
		d := res.Layers[i].Digest.String()
		if n := mirror.Count(hostile.Blob, d); n != 1 {
			t.Errorf("layer %d: the mirror was asked %d times", i+1, n)
		}
		var ranges []string
		for _, q := range up.Requests() {
			if q.Kind == hostile.Blob && q.Ref == d {
				ranges = append(ranges, q.Header.Get("Range"))
			}
		}
		if want := fmt.Sprintf("bytes=%d-%d", short, len(l)-1); len(ranges) != 1 || ranges[0] != want {
			t.Errorf("layer %d: upstream requests %q, want one from the mirror's end, %s", i+1, ranges, want)
		}
	}
}

// A ["resolve"] mirror gets no blob GET: capabilities apply to blobs too.
func TestResolveOnlyMirrorGetsNoBlobGET(t *testing.T) {
	t.Parallel()
	_, mirror, res, layers := mirroredImage(t, `capabilities = ["resolve"]`)
	s := openStore(t)
	if _, err := fetch.Pull(context.Background(), res, s); err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		assertBlob(t, s, l)
	}
	if n := mirror.Count(hostile.Blob, ""); n != 0 {
		t.Fatalf("the resolve-only mirror got %d blob requests", n)
	}
	if mirror.Count(hostile.Manifest, "v1") == 0 {
		t.Fatal("the mirror did not resolve the tag: the test proves nothing")
	}
}

// A corrupt layer 2 is digest_mismatch, naming layer 2 (counted from 1,
// as the CLI does), whatever else was in flight.
func TestCorruptLayer2IsADigestMismatchOnLayer2(t *testing.T) {
	t.Parallel()
	layers := [][]byte{randomBytes(300_000, 65), randomBytes(80_000, 66)}
	r := testImage(t, nil, layers...)
	reg := hostile.New(t)
	for _, l := range layers {
		reg.PutBlob("corrupt/app", l)
	}
	reg.Intercept(func(w http.ResponseWriter, req *http.Request, q hostile.Request) bool {
		if q.Kind == hostile.Blob && q.Ref == r.Layers[1].Digest.String() {
			bad := append([]byte(nil), layers[1]...)
			bad[len(bad)/2] ^= 0xff
			w.Write(bad)
			return true
		}
		return false
	})
	r.Source = openHostile(t, reg, "corrupt/app")
	_, err := fetch.Pull(context.Background(), r, openStore(t))
	if errdefs.KindOf(err) != errdefs.ErrDigestMismatch || !strings.Contains(err.Error(), "layer 2:") {
		t.Fatalf("err = %v (kind %s), want digest_mismatch on layer 2", err, errdefs.KindOf(err))
	}
}

// Cancelling a pull is kind canceled and matches context.Canceled (it was
// network).
func TestCancelledPullIsCanceled(t *testing.T) {
	t.Parallel()
	layers := [][]byte{randomBytes(100_000, 67)}
	r := testImage(t, nil, layers...)
	reg := hostile.New(t)
	reg.PutBlob("cancel/app", layers[0])
	entered := make(chan struct{}, 4)
	reg.Intercept(func(w http.ResponseWriter, req *http.Request, q hostile.Request) bool {
		if q.Kind == hostile.Blob {
			entered <- struct{}{}
			w.Write(layers[0][:1000])
			w.(http.Flusher).Flush()
			<-req.Context().Done()
			return true
		}
		return false
	})
	r.Source = openHostile(t, reg, "cancel/app")
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-entered
		cancel()
	}()
	_, err := fetch.Pull(ctx, r, openStore(t))
	if errdefs.KindOf(err) != errdefs.ErrCanceled || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v (kind %s), want canceled", err, errdefs.KindOf(err))
	}
}

// panicSource panics where a Source would serve bytes: a bug that must
// not take the embedding program down from a download goroutine.
type panicSource struct{ memSource }

func (p *panicSource) FetchAt(context.Context, ocispec.Descriptor, int64) (io.ReadCloser, int64, error) {
	var sizes []int64
	return nil, sizes[3], nil // index out of range
}

func TestAPanicInADownloadGoroutineIsAnError(t *testing.T) {
	t.Parallel()
	blob := randomBytes(1000, 68)
	r := testImage(t, &panicSource{}, blob)
	var wg sync.WaitGroup
	for _, f := range []func() error{
		func() error { _, err := fetch.Pull(context.Background(), r, openStore(t)); return err },
		func() error {
			rc, err := fetch.OpenLayer(context.Background(), r.Source, openStore(t), r.Layers[0].Descriptor)
			if err == nil {
				_, err = io.ReadAll(rc)
				rc.Close()
			}
			return err
		},
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); errdefs.KindOf(err) != errdefs.ErrInternal || !strings.Contains(err.Error(), "panic") {
				t.Errorf("err = %v (kind %s), want internal naming the panic", err, errdefs.KindOf(err))
			}
		}()
	}
	wg.Wait()
}
