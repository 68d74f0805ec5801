package fetch_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/fetch"
	"github.com/ocifetch/ocifetch/internal/testutil/faultproxy"
	"github.com/ocifetch/ocifetch/resolve"
)

func TestPullStoresTheImageAndRecordsIt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	layers := [][]byte{randomBytes(300_000, 1), randomBytes(1<<20, 2), randomBytes(10, 3)}
	srv := newBlobServer(t, layers...)
	r := testImage(t, newHTTPSource(srv.URL), layers...)
	s := openStore(t)

	res, err := fetch.Pull(ctx, r, s, fetch.WithRefName("app:1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		assertBlob(t, s, l)
	}
	assertBlob(t, s, r.Manifest.Data)
	assertBlob(t, s, r.Config.Data)
	var total int64
	for i, l := range res.Layers {
		total += l.Size
		if l.Cached || l.Digest != r.Layers[i].Digest || l.DiffID != r.Layers[i].DiffID {
			t.Errorf("layer %d result %+v", i, l)
		}
		if b, err := os.ReadFile(l.Path); err != nil || !bytes.Equal(b, layers[i]) {
			t.Errorf("layer %d path %s: %v", i, l.Path, err)
		}
	}
	if res.Downloaded != total || res.Name != "app:1" {
		t.Errorf("Downloaded %d (want %d), Name %q", res.Downloaded, total, res.Name)
	}
	got, err := s.Lookup("app:1", nil)
	if err != nil || got.Digest != r.Manifest.Descriptor.Digest || got.Platform == nil || got.Platform.Architecture != "amd64" ||
		got.Annotations[fetch.AnnotationReference] != r.Reference {
		t.Fatalf("index.json entry %+v, %v", got, err)
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Dir(), ".ocifetch", "partial", "sha256")); len(ents) != 0 {
		t.Errorf("partial files left after success: %v", ents)
	}

	// Present blobs are not downloaded again.
	gets := srv.gets.Load()
	res, err = fetch.Pull(ctx, r, s)
	if err != nil {
		t.Fatal(err)
	}
	if srv.gets.Load() != gets || res.Downloaded != 0 {
		t.Errorf("second pull made %d GETs, downloaded %d", srv.gets.Load()-gets, res.Downloaded)
	}
	for _, l := range res.Layers {
		if !l.Cached {
			t.Errorf("layer %s not reported cached", l.Digest)
		}
	}
	if _, err := s.Lookup(r.Reference, nil); err != nil {
		t.Errorf("default name is the reference: %v", err)
	}
}

func TestBrokenConnectionsResumeFromTheVerifiedOffset(t *testing.T) {
	t.Parallel()
	blob := randomBytes(2<<20, 7)
	p := trickling(t, blob, 0, 0)
	p.Add(faultproxy.Rule{Match: faultproxy.BlobGETs, Times: 4, Faults: []faultproxy.Fault{faultproxy.CutAfter(300_000)}})
	s := openStore(t)
	r := testImage(t, newHTTPSource(p.URL), blob)

	res, err := fetch.Pull(context.Background(), r, s, quickRetries())
	if err != nil {
		t.Fatal(err)
	}
	assertBlob(t, s, blob)
	if sent := p.BytesSent(); sent >= 2*int64(len(blob)) || sent < int64(len(blob)) {
		t.Errorf("proxy sent %d bytes for a %d byte blob", sent, len(blob))
	}
	// Each resume asks for the bytes after the ones already verified.
	log := p.Log()
	if len(log) != 5 {
		t.Fatalf("%d requests, want 5: %+v", len(log), log)
	}
	for i, e := range log {
		want := ""
		if i > 0 {
			want = "bytes=" + strconv.Itoa(i*300_000) + "-" + strconv.Itoa(len(blob)-1)
		}
		if e.Range != want {
			t.Errorf("request %d Range %q, want %q", i, e.Range, want)
		}
	}
	if res.Downloaded != int64(len(blob)) {
		t.Errorf("Downloaded = %d, want %d", res.Downloaded, len(blob))
	}
}

func TestCancelledPullResumesInTheNextRun(t *testing.T) {
	t.Parallel()
	blob, p, r, s := trickledImage(t, 4<<20, 8, 64<<10, 3*time.Millisecond)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := fetch.Pull(ctx, r, s, quickRetries(), fetch.WithProgressInterval(0), fetch.WithProgress(func(ev fetch.Event) {
		if ev.Digest == r.Layers[0].Digest && ev.Done*10 >= ev.Total*7 {
			cancel()
		}
	}))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if ok, _ := s.Has(r.Layers[0].Descriptor); ok {
		t.Fatal("a cancelled blob is visible")
	}
	partial := filepath.Join(s.Dir(), ".ocifetch", "partial", "sha256", r.Layers[0].Digest.Encoded())
	fi, err := os.Stat(partial)
	if err != nil || fi.Size()*10 < int64(len(blob))*7 {
		t.Fatalf("partial file: %v, %v", fi, err)
	}
	if _, err := s.Lookup(r.Reference, nil); err == nil {
		t.Fatal("a cancelled pull was recorded in index.json")
	}

	p.ClearRules()
	waitIdle(t, p) // the cancelled request's handler may still be sending
	p.ResetStats()
	res, err := fetch.Pull(context.Background(), r, s, quickRetries())
	if err != nil {
		t.Fatal(err)
	}
	assertBlob(t, s, blob)
	rest := int64(len(blob)) - fi.Size()
	if p.BytesSent() != rest || res.Downloaded != rest {
		t.Errorf("second run transferred %d (reported %d), want the missing %d of %d", p.BytesSent(), res.Downloaded, rest, len(blob))
	}
	if log := p.Log(); len(log) != 1 || !strings.HasPrefix(log[0].Range, "bytes="+strconv.FormatInt(fi.Size(), 10)+"-") {
		t.Errorf("second run requests: %+v", log)
	}
}

func TestFlippedByteIsADigestMismatchAndLeavesNothing(t *testing.T) {
	t.Parallel()
	blob := randomBytes(1<<20, 9)
	p := trickling(t, blob, 0, 0)
	p.Add(faultproxy.Rule{Match: faultproxy.BlobGETs, Faults: []faultproxy.Fault{faultproxy.FlipByte(123_456)}})
	s := openStore(t)
	r := testImage(t, newHTTPSource(p.URL), blob)

	var failed []fetch.Event
	_, err := fetch.Pull(context.Background(), r, s, quickRetries(), fetch.WithProgress(func(ev fetch.Event) {
		if ev.State == fetch.StateFailed {
			failed = append(failed, ev)
		}
	}))
	if !errdefs.Is(err, errdefs.ErrDigestMismatch) || errdefs.KindOf(err) != errdefs.ErrDigestMismatch {
		t.Fatalf("err = %v (kind %s), want digest_mismatch", err, errdefs.KindOf(err))
	}
	assertNoBlob(t, s, r.Layers[0].Digest)
	if _, err := s.Lookup(r.Reference, nil); err == nil {
		t.Fatal("image recorded despite a bad layer")
	}
	if len(failed) != 1 || !errdefs.Is(failed[0].Err, errdefs.ErrDigestMismatch) {
		t.Errorf("failed events: %+v", failed)
	}
	// One endpoint, fresh bytes, a mismatch: nothing to retry.
	if n := p.Requests(); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}

func TestRetryAfterIsHonouredAndCapped(t *testing.T) {
	blob := randomBytes(100_000, 10)
	p := trickling(t, blob, 0, 0)
	p.Add(faultproxy.Rule{Match: faultproxy.BlobGETs, Times: 2, Faults: []faultproxy.Fault{faultproxy.Status(http.StatusTooManyRequests, "1")}})
	s := openStore(t)
	// Backoff alone would wait ~1 ms; Retry-After asks for 1 s, capped at 100 ms.
	policy := fetch.RetryPolicy{MaxAttempts: 5, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond, MaxRetryAfter: 100 * time.Millisecond}
	var retrying int
	start := time.Now()
	err := fetch.FetchBlob(context.Background(), newHTTPSource(p.URL), s, layerDesc(blob), fetch.WithRetryPolicy(policy),
		fetch.WithProgress(func(ev fetch.Event) {
			if ev.State == fetch.StateRetrying {
				retrying++
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 1900*time.Millisecond {
		t.Errorf("took %v; want two waits of the 100 ms cap", d)
	}
	if p.Requests() != 3 || retrying != 2 {
		t.Errorf("%d requests, %d retrying events", p.Requests(), retrying)
	}
	assertBlob(t, s, blob)
}

func TestServiceUnavailableBursts(t *testing.T) {
	t.Parallel()
	blob := randomBytes(100_000, 11)
	srv := newBlobServer(t, blob)
	t.Run("a burst shorter than the budget is ridden out", func(t *testing.T) {
		p := faultproxy.New(t, srv.URL)
		p.Add(faultproxy.Rule{Match: faultproxy.BlobGETs, Times: 3, Faults: []faultproxy.Fault{faultproxy.Status(http.StatusServiceUnavailable, "")}})
		s := openStore(t)
		if err := fetch.FetchBlob(context.Background(), newHTTPSource(p.URL), s, layerDesc(blob), quickRetries()); err != nil {
			t.Fatal(err)
		}
		assertBlob(t, s, blob)
	})
	t.Run("a longer one fails as a network error", func(t *testing.T) {
		p := faultproxy.New(t, srv.URL)
		p.Add(faultproxy.Rule{Match: faultproxy.BlobGETs, Faults: []faultproxy.Fault{faultproxy.Status(http.StatusServiceUnavailable, "")}})
		s := openStore(t)
		err := fetch.FetchBlob(context.Background(), newHTTPSource(p.URL), s, layerDesc(blob), quickRetries())
		if errdefs.KindOf(err) != errdefs.ErrNetwork || !strings.Contains(err.Error(), "503") {
			t.Fatalf("err = %v (kind %s)", err, errdefs.KindOf(err))
		}
		if p.Requests() != 5 {
			t.Errorf("%d requests, want MaxAttempts = 5", p.Requests())
		}
		assertNoBlob(t, s, digest.FromBytes(blob))
	})
}

func TestAuthAndNotFoundAreNotRetried(t *testing.T) {
	t.Parallel()
	blob := randomBytes(1000, 12)
	srv := newBlobServer(t, blob)
	for _, tc := range []struct {
		name string
		code int
		kind errdefs.Kind
	}{
		{"unauthorized", http.StatusUnauthorized, errdefs.ErrUnauthorized},
		{"forbidden", http.StatusForbidden, errdefs.ErrUnauthorized},
		{"not found", http.StatusNotFound, errdefs.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := faultproxy.New(t, srv.URL)
			p.Add(faultproxy.Rule{Faults: []faultproxy.Fault{faultproxy.Status(tc.code, "")}})
			err := fetch.FetchBlob(context.Background(), newHTTPSource(p.URL), openStore(t), layerDesc(blob), quickRetries())
			if !errdefs.Is(err, tc.kind) {
				t.Fatalf("err = %v, want %s", err, tc.kind)
			}
			if p.Requests() != 1 {
				t.Errorf("%d requests, want 1", p.Requests())
			}
		})
	}
}

func TestSlowTrickleHitsTheDeadlineCleanly(t *testing.T) {
	_, _, r, s := trickledImage(t, 1<<20, 13, 1024, 10*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := fetch.Pull(ctx, r, s, quickRetries())
	if !errors.Is(err, context.DeadlineExceeded) || errdefs.KindOf(err) != errdefs.ErrNetwork {
		t.Fatalf("err = %v (kind %s), want a network error wrapping the deadline", err, errdefs.KindOf(err))
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("returned %v after the deadline", d)
	}
	if ok, _ := s.Has(r.Layers[0].Descriptor); ok {
		t.Fatal("blob visible after the deadline")
	}
	if _, err := s.Lookup(r.Reference, nil); err == nil {
		t.Fatal("image recorded after the deadline")
	}
	for _, name := range listBlobs(t, s) {
		if name == r.Layers[0].Digest.Encoded() {
			t.Fatal("layer listed in blobs/")
		}
	}
}

func TestMirrorsWithBadContentFallBack(t *testing.T) {
	t.Parallel()
	blob := randomBytes(1<<20, 14)
	d := digest.FromBytes(blob)
	upstream := newBlobServer(t, blob)
	upProxy := faultproxy.New(t, upstream.URL)

	missing := newBlobServer(t) // knows nothing
	corrupt := faultproxy.New(t, upstream.URL)
	corrupt.Add(faultproxy.Rule{Faults: []faultproxy.Fault{faultproxy.FlipByte(777)}})
	short := newBlobServer(t)
	short.mu.Lock()
	short.blobs[d] = blob[:400_000] // a truncated copy: ranges past it are unsatisfiable
	short.mu.Unlock()

	t.Run("corrupt, then upstream", func(t *testing.T) {
		upProxy.ResetStats()
		src := &mirrored{httpSource: newHTTPSource(upProxy.URL), eps: []resolve.Source{newHTTPSource(missing.URL), newHTTPSource(corrupt.URL), newHTTPSource(upProxy.URL)}}
		s := openStore(t)
		if err := fetch.FetchBlob(context.Background(), src, s, layerDesc(blob), quickRetries()); err != nil {
			t.Fatal(err)
		}
		assertBlob(t, s, blob)
		if upProxy.BytesSent() != int64(len(blob)) {
			t.Errorf("upstream sent %d bytes: the corrupt mirror's bytes should have been discarded entirely", upProxy.BytesSent())
		}
	})
	t.Run("truncated, then upstream continues", func(t *testing.T) {
		upProxy.ResetStats()
		src := &mirrored{httpSource: newHTTPSource(upProxy.URL), eps: []resolve.Source{newHTTPSource(short.URL), newHTTPSource(upProxy.URL)}}
		s := openStore(t)
		if err := fetch.FetchBlob(context.Background(), src, s, layerDesc(blob), quickRetries()); err != nil {
			t.Fatal(err)
		}
		assertBlob(t, s, blob)
		if want := int64(len(blob) - 400_000); upProxy.BytesSent() != want {
			t.Errorf("upstream sent %d bytes, want the %d the mirror lacked", upProxy.BytesSent(), want)
		}
	})
	t.Run("truncated prefix then corrupt tail: restart from zero", func(t *testing.T) {
		corruptTail := faultproxy.New(t, upstream.URL)
		corruptTail.Add(faultproxy.Rule{Faults: []faultproxy.Fault{faultproxy.FlipByte(900_000)}})
		upProxy.ResetStats()
		src := &mirrored{httpSource: newHTTPSource(upProxy.URL), eps: []resolve.Source{newHTTPSource(short.URL), newHTTPSource(corruptTail.URL), newHTTPSource(upProxy.URL)}}
		s := openStore(t)
		if err := fetch.FetchBlob(context.Background(), src, s, layerDesc(blob), quickRetries()); err != nil {
			t.Fatal(err)
		}
		assertBlob(t, s, blob)
	})
	t.Run("every endpoint bad", func(t *testing.T) {
		src := &mirrored{httpSource: newHTTPSource(corrupt.URL), eps: []resolve.Source{newHTTPSource(missing.URL), newHTTPSource(corrupt.URL)}}
		s := openStore(t)
		err := fetch.FetchBlob(context.Background(), src, s, layerDesc(blob), quickRetries())
		if !errdefs.Is(err, errdefs.ErrDigestMismatch) {
			t.Fatalf("err = %v", err)
		}
		assertNoBlob(t, s, d)
	})
}

func TestHostIgnoringRangesRestartsCleanly(t *testing.T) {
	t.Parallel()
	blob := randomBytes(1<<20, 15)
	srv := newBlobServer(t, blob)
	srv.ignoreRange.Store(true)
	p := faultproxy.New(t, srv.URL)
	p.Add(faultproxy.Rule{Match: faultproxy.BlobGETs, Times: 2, Faults: []faultproxy.Fault{faultproxy.CutAfter(500_000)}})
	s := openStore(t)
	if err := fetch.FetchBlob(context.Background(), newHTTPSource(p.URL), s, layerDesc(blob), quickRetries()); err != nil {
		t.Fatal(err)
	}
	assertBlob(t, s, blob)
	if p.Requests() != 3 {
		t.Errorf("%d requests", p.Requests())
	}
}

func TestTwoGoroutinesShareOneDownload(t *testing.T) {
	t.Parallel()
	blob := randomBytes(2<<20, 16)
	srv, p := tricklingServer(t, blob, 64<<10, 5*time.Millisecond)
	s := openStore(t)
	src := newHTTPSource(p.URL)
	desc := layerDesc(blob)

	started := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Add(2)
	go func() {
		defer wg.Done()
		errs[0] = fetch.FetchBlob(context.Background(), src, s, desc, fetch.WithProgress(func(ev fetch.Event) {
			if ev.State == fetch.StateDownloading && ev.Done > 0 {
				once.Do(func() { close(started) })
			}
		}))
	}()
	go func() {
		defer wg.Done()
		<-started
		rc, err := fetch.OpenLayer(context.Background(), src, s, desc)
		if err != nil {
			errs[1] = err
			return
		}
		b, err := io.ReadAll(rc)
		if err == nil && !bytes.Equal(b, blob) {
			err = errors.New("second reader got other bytes")
		}
		if cerr := rc.Close(); err == nil {
			err = cerr
		}
		errs[1] = err
	}()
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("errors: %v / %v", errs[0], errs[1])
	}
	assertBlob(t, s, blob)
	if srv.gets.Load() != 1 || p.BytesSent() != int64(len(blob)) {
		t.Errorf("%d GETs, %d bytes: want one download", srv.gets.Load(), p.BytesSent())
	}
}

func TestDownloadsOverlapWithinTheJobsBound(t *testing.T) {
	t.Parallel()
	var layers [][]byte
	for i := 0; i < 8; i++ {
		layers = append(layers, randomBytes(100_000, uint64(100+i)))
	}
	srv := newBlobServer(t, layers...)
	for _, jobs := range []int{1, 3} {
		p := faultproxy.New(t, srv.URL)
		p.Add(faultproxy.Rule{Faults: []faultproxy.Fault{faultproxy.Delay(30 * time.Millisecond)}})
		r := testImage(t, newHTTPSource(p.URL), layers...)
		if _, err := fetch.Pull(context.Background(), r, openStore(t), fetch.WithJobs(jobs)); err != nil {
			t.Fatal(err)
		}
		got := p.MaxInFlight()
		if got > int64(jobs) || (jobs > 1 && got < 2) {
			t.Errorf("WithJobs(%d): max in flight %d", jobs, got)
		}
	}
	if _, err := fetch.Pull(context.Background(), testImage(t, newMemSource()), openStore(t), fetch.WithJobs(0)); !errdefs.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("WithJobs(0): %v", err)
	}
}

func TestProgressEvents(t *testing.T) {
	t.Parallel()
	layers := [][]byte{randomBytes(1<<20, 20), randomBytes(200_000, 21)}
	srv := newBlobServer(t, layers...)
	p := faultproxy.New(t, srv.URL)
	p.Add(faultproxy.Rule{Match: faultproxy.PathSuffix(digest.FromBytes(layers[0]).String()), Times: 1, Faults: []faultproxy.Fault{faultproxy.CutAfter(100_000)}})
	p.Add(faultproxy.Rule{Faults: []faultproxy.Fault{faultproxy.Trickle(32<<10, 2*time.Millisecond)}})
	r := testImage(t, newHTTPSource(p.URL), layers...)
	s := openStore(t)

	// No locking here: calls are serialized, and the race detector
	// would flag it if they were not.
	events := map[digest.Digest][]fetch.Event{}
	at := map[digest.Digest][]time.Time{}
	const interval = 20 * time.Millisecond
	_, err := fetch.Pull(context.Background(), r, s, quickRetries(), fetch.WithProgressInterval(interval), fetch.WithProgress(func(ev fetch.Event) {
		events[ev.Digest] = append(events[ev.Digest], ev)
		at[ev.Digest] = append(at[ev.Digest], time.Now())
	}))
	if err != nil {
		t.Fatal(err)
	}
	cfg := events[r.Config.Descriptor.Digest]
	if len(cfg) != 1 || cfg[0].State != fetch.StateDone {
		t.Errorf("config events %+v", cfg)
	}
	for i, l := range r.Layers {
		evs := events[l.Digest]
		if len(evs) < 3 || evs[0].State != fetch.StateWaiting || evs[len(evs)-1].State != fetch.StateDone || evs[len(evs)-1].Done != l.Size {
			t.Errorf("layer %d: events %+v", i, evs)
			continue
		}
		var downloading, retrying int
		for j, ev := range evs {
			// Byte progress is throttled: two downloading events in a
			// row are the interval apart where they are sent. They are
			// timed here, on arrival, where a late delivery of the first
			// (a parallel test holding the CPU) shortens the gap; half
			// the interval still tells a throttled stream from one that
			// is not (events microseconds apart).
			if j > 0 && ev.State == fetch.StateDownloading && evs[j-1].State == fetch.StateDownloading {
				if gap := at[l.Digest][j].Sub(at[l.Digest][j-1]); gap < interval/2 {
					t.Errorf("layer %d: downloading events %v apart", i, gap)
				}
				if ev.Done < evs[j-1].Done {
					t.Errorf("layer %d: Done went back from %d to %d", i, evs[j-1].Done, ev.Done)
				}
			}
			if ev.Total != l.Size || ev.MediaType != l.MediaType {
				t.Errorf("layer %d: event %+v", i, ev)
			}
			switch ev.State {
			case fetch.StateDownloading:
				downloading++
			case fetch.StateRetrying:
				retrying++
				if ev.Err == nil {
					t.Errorf("retrying without an error")
				}
			}
		}
		// One per 32 KiB chunk would be over 30.
		if downloading == 0 || downloading > 30 {
			t.Errorf("layer %d: %d downloading events", i, downloading)
		}
		if want := map[int]int{0: 1, 1: 0}[i]; retrying != want {
			t.Errorf("layer %d: %d retrying events, want %d", i, retrying, want)
		}
	}

	// A second pull reports everything cached.
	var states []fetch.State
	if _, err := fetch.Pull(context.Background(), r, s, fetch.WithProgress(func(ev fetch.Event) {
		if ev.State != fetch.StateWaiting {
			states = append(states, ev.State)
		}
	})); err != nil {
		t.Fatal(err)
	}
	if len(states) != 3 || states[0] != fetch.StateCached || states[1] != fetch.StateCached || states[2] != fetch.StateCached {
		t.Errorf("second pull states %v", states)
	}
}

// waitIdle waits until the proxy handles no request.
func waitIdle(t testing.TB, p *faultproxy.Proxy) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); p.InFlight() > 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("proxy still busy")
		}
	}
}
