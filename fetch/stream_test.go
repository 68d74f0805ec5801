package fetch_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/fetch"
	"github.com/ocifetch/ocifetch/internal/testutil/faultproxy"
	"github.com/ocifetch/ocifetch/resolve"
)

// The apply stage reads layer 1 as it arrives while layers 2..n download
// into the store.
func TestSessionStreamsALayerWhileItDownloads(t *testing.T) {
	t.Parallel()
	layers := [][]byte{randomBytes(1<<20, 30), randomBytes(1<<20, 31), randomBytes(1<<20, 32)}
	srv := newBlobServer(t, layers...)
	p := faultproxy.New(t, srv.URL)
	p.Add(faultproxy.Rule{Faults: []faultproxy.Fault{faultproxy.Trickle(32<<10, 3*time.Millisecond)}})
	// One cut in the middle of layer 0: the reader must not notice.
	p.Add(faultproxy.Rule{Match: faultproxy.PathSuffix(layerDesc(layers[0]).Digest.String()), Times: 1, Faults: []faultproxy.Fault{faultproxy.CutAfter(400_000)}})
	s := openStore(t)
	r := testImage(t, newHTTPSource(p.URL), layers...)
	ctx := context.Background()

	sess, err := fetch.Start(ctx, r, s, fetch.WithJobs(3), quickRetries())
	if err != nil {
		t.Fatal(err)
	}
	rc, err := sess.Layer(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, 1000)
	if _, err := io.ReadFull(rc, first); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.Has(r.Layers[0].Descriptor); ok {
		t.Fatal("layer 0 was complete before the first read returned: not streamed")
	}
	rest, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(append(first, rest...), layers[0]) {
		t.Fatal("streamed bytes differ from the layer")
	}
	must(t, rc.Close())
	// Reading layer 0 overlapped the downloads of the others.
	if p.MaxInFlight() < 2 {
		t.Errorf("max in flight %d", p.MaxInFlight())
	}
	if _, err := sess.Wait(); err != nil {
		t.Fatal(err)
	}
	// After the pull, layers come from the store.
	for i, l := range layers {
		rc, err := sess.Layer(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(b, l) {
			t.Fatalf("layer %d after the pull: %v", i, err)
		}
	}
	if _, err := sess.Layer(ctx, 3); !errdefs.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Layer(3): %v", err)
	}
}

// A mismatch reaches the reader as an error from Read, never after io.EOF.
func TestStreamReportsAMismatchBeforeEOF(t *testing.T) {
	t.Parallel()
	blob := randomBytes(1<<20, 33)
	p := trickling(t, blob, 0, 0)
	p.Add(faultproxy.Rule{Faults: []faultproxy.Fault{faultproxy.FlipByte(1 << 19)}})
	s := openStore(t)
	r := testImage(t, newHTTPSource(p.URL), blob)
	sess, rc := startLayer(t, context.Background(), r, s, quickRetries())
	defer rc.Close()
	buf := make([]byte, 4096)
	var n int
	for {
		m, err := rc.Read(buf)
		n += m
		if err == io.EOF {
			t.Fatalf("io.EOF after %d bytes of a corrupt layer", n)
		}
		if err != nil {
			if !errdefs.Is(err, errdefs.ErrDigestMismatch) {
				t.Fatalf("err = %v", err)
			}
			break
		}
	}
	if _, err := sess.Wait(); !errdefs.Is(err, errdefs.ErrDigestMismatch) {
		t.Fatalf("Wait: %v", err)
	}
	assertNoBlob(t, s, r.Layers[0].Digest)
}

func TestOpenLayerTeesIntoTheStore(t *testing.T) {
	t.Parallel()
	blob, p, r, s := trickledImage(t, 1<<20, 34, 64<<10, 2*time.Millisecond)
	desc := r.Layers[0].Descriptor
	ctx := context.Background()

	rc := openLayer(t, ctx, newHTTPSource(p.URL), s, desc)
	b, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(b, blob) {
		t.Fatalf("read: %v", err)
	}
	if err := rc.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	assertBlob(t, s, blob)

	// Now it is in the store: no request.
	p.ResetStats()
	rc = openLayer(t, ctx, newHTTPSource(p.URL), s, desc)
	b, err = io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(b, blob) || p.Requests() != 0 {
		t.Fatalf("cached read: %v, %d requests", err, p.Requests())
	}
}

func TestOpenLayerClosedEarlyKeepsThePartialForLater(t *testing.T) {
	t.Parallel()
	blob, p, r, s := trickledImage(t, 2<<20, 35, 64<<10, 3*time.Millisecond)
	desc := r.Layers[0].Descriptor
	ctx := context.Background()

	rc := openLayer(t, ctx, newHTTPSource(p.URL), s, desc)
	if _, err := io.ReadFull(rc, make([]byte, 300_000)); err != nil {
		t.Fatal(err)
	}
	must(t, rc.Close())
	if ok, _ := s.Has(desc); ok {
		t.Fatal("blob complete after an early close")
	}
	partial := filepath.Join(s.Dir(), ".ocifetch", "partial", "sha256", desc.Digest.Encoded())
	fi, err := os.Stat(partial)
	if err != nil || fi.Size() < 300_000 {
		t.Fatalf("partial: %v %v", fi, err)
	}
	p.ClearRules()
	waitIdle(t, p)
	p.ResetStats()
	must(t, fetch.FetchBlob(ctx, newHTTPSource(p.URL), s, desc))
	assertBlob(t, s, blob)
	if p.BytesSent() != int64(len(blob))-fi.Size() {
		t.Errorf("resumed with %d bytes, want %d", p.BytesSent(), int64(len(blob))-fi.Size())
	}
}

func TestStreamReaderHonoursItsContext(t *testing.T) {
	t.Parallel()
	blob := randomBytes(1<<20, 36)
	p := trickling(t, blob, 1024, 20*time.Millisecond)
	s := openStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	rc := openLayer(t, ctx, newHTTPSource(p.URL), s, layerDesc(blob))
	_, err := io.ReadAll(rc)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	rc.Close()
	if ok, _ := s.Has(layerDesc(blob)); ok {
		t.Fatal("blob visible")
	}
}

// gatedSource serves body (which need not be the blob) from the offset it
// is asked for, or from 0 when ignoreRange is set, and holds the response
// at byte holdAt until gate is closed; then the first response fails with
// failAfterHold (if set), the others go on to the end. It lets a test read from a stream before the download finds
// out what it is about to.
type gatedSource struct {
	*memSource
	body          []byte
	holdAt        int64
	gate          chan struct{}
	failAfterHold error
	ignoreRange   bool
}

func (g *gatedSource) FetchAt(ctx context.Context, desc ocispec.Descriptor, off int64) (io.ReadCloser, int64, error) {
	failure := g.failAfterHold
	if g.calls.Add(1) > 1 {
		failure = nil // only the first response breaks
	}
	if g.ignoreRange {
		off = 0
	}
	if off >= g.holdAt {
		return io.NopCloser(bytes.NewReader(g.body[off:])), off, nil
	}
	return io.NopCloser(io.MultiReader(
		bytes.NewReader(g.body[off:g.holdAt]),
		&gateReader{ctx: ctx, gate: g.gate, rest: bytes.NewReader(g.body[g.holdAt:]), err: failure},
	)), off, nil
}

type gateReader struct {
	ctx  context.Context
	gate chan struct{}
	rest io.Reader
	err  error
}

func (r *gateReader) Read(p []byte) (int, error) {
	select {
	case <-r.gate:
	case <-r.ctx.Done():
		return 0, r.ctx.Err()
	}
	if r.err != nil {
		return 0, r.err
	}
	return r.rest.Read(p)
}

// A stream that follows a download of this process does not hash the
// bytes again: it returns io.EOF once the download has verified the blob
// and put it in blobs/.
func TestStreamFollowingADownloadUsesItsVerdict(t *testing.T) {
	t.Parallel()
	blob, _, r, s := trickledImage(t, 1<<20, 34, 64<<10, 2*time.Millisecond)
	sess, rc := startLayer(t, context.Background(), r, s, quickRetries())
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, blob) {
		t.Fatal("streamed bytes differ from the layer")
	}
	if fetch.StreamHashes(rc) {
		t.Error("the stream hashed bytes the download already hashes")
	}
	// io.EOF came after the verdict: the blob is in the store already.
	if ok, _ := s.Has(r.Layers[0].Descriptor); !ok {
		t.Error("io.EOF before the blob was stored")
	}
	must(t, rc.Close())
	if _, err := sess.Wait(); err != nil {
		t.Fatal(err)
	}
}

// A follower whose bytes came from an attempt the download then discarded
// (a mirror with bad content, before the registry's good one) must not
// end cleanly although the download itself succeeds: it read the bad
// bytes.
func TestStreamNoticesARestartWithOtherBytes(t *testing.T) {
	t.Parallel()
	blob := randomBytes(1<<20, 35)
	bad := bytes.Clone(blob)
	bad[100_000] ^= 0xff
	mirror := &gatedSource{memSource: newMemSource(), body: bad, holdAt: int64(len(bad)) - 1, gate: make(chan struct{})}
	upstream := newMemSource(blob)
	src := &mirrored{httpSource: newHTTPSource("http://unused.invalid"), eps: []resolve.Source{mirror, upstream}}
	s := openStore(t)
	r := testImage(t, src, blob)
	sess, rc := startLayer(t, context.Background(), r, s, quickRetries())
	defer rc.Close()
	first := make([]byte, 200_000)
	if _, err := io.ReadFull(rc, first); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, bad[:200_000]) {
		t.Fatal("the stream did not return the mirror's bytes")
	}
	close(mirror.gate) // the mirror's digest mismatch now restarts from zero
	_, err := io.ReadAll(rc)
	if !errdefs.Is(err, errdefs.ErrDigestMismatch) {
		t.Fatalf("reading on after a restart with other bytes: err = %v, want a digest mismatch", err)
	}
	if _, err := sess.Wait(); err != nil {
		t.Fatalf("the download itself should succeed from upstream: %v", err)
	}
	assertBlob(t, s, blob)
	if upstream.calls.Load() == 0 {
		t.Error("upstream was never asked")
	}
}

// A host that ignores ranges makes the download restart from zero after a
// broken connection; a follower that already returned bytes keeps reading
// and ends cleanly, since the rewrite has the same bytes.
func TestStreamSurvivesAnHonestRestart(t *testing.T) {
	t.Parallel()
	blob := randomBytes(1<<20, 36)
	src := &gatedSource{memSource: newMemSource(), body: blob, holdAt: 500_000, gate: make(chan struct{}),
		failAfterHold: syscall.ECONNRESET, ignoreRange: true}
	s := openStore(t)
	r := testImage(t, src, blob)
	sess, rc := startLayer(t, context.Background(), r, s, quickRetries())
	first := make([]byte, 300_000)
	if _, err := io.ReadFull(rc, first); err != nil {
		t.Fatal(err)
	}
	close(src.gate) // the connection breaks; the retry gets the whole body
	rest, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(append(first, rest...), blob) {
		t.Fatal("streamed bytes differ from the layer")
	}
	if !fetch.StreamHashes(rc) {
		t.Error("after a restart under it, the stream should check what it returned itself")
	}
	must(t, rc.Close())
	if _, err := sess.Wait(); err != nil {
		t.Fatal(err)
	}
	assertBlob(t, s, blob)
	if n := src.calls.Load(); n < 2 {
		t.Errorf("%d requests: no restart happened", n)
	}
}

// A layer the session downloaded before the stream was opened is read from
// blobs/ without hashing it again (the download just did); one that was
// in the store before the pull is hashed as it is read (Store.Open).
func TestStreamOfAFinishedDownloadReadsTheStoredBlob(t *testing.T) {
	t.Parallel()
	blob := randomBytes(1<<20, 37)
	s := openStore(t)
	r := testImage(t, newMemSource(blob), blob)
	for _, fresh := range []bool{true, false} {
		sess, err := fetch.Start(context.Background(), r, s, quickRetries())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sess.Wait(); err != nil {
			t.Fatal(err)
		}
		rc, err := sess.Layer(context.Background(), 0)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, blob) {
			t.Fatal("read other bytes")
		}
		if hashed := fetch.StreamHashes(rc); hashed == fresh {
			t.Errorf("downloaded by this pull %v: hashed again %v", fresh, hashed)
		}
		must(t, rc.Close())
	}
}
