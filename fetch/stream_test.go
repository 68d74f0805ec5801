package fetch_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/fetch"
	"github.com/ocifetch/ocifetch/internal/faultproxy"
)

// The apply stage reads layer 1 as it arrives while layers 2..n download
// into the store.
func TestSessionStreamsALayerWhileItDownloads(t *testing.T) {
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
	blob := randomBytes(1<<20, 33)
	srv := newBlobServer(t, blob)
	p := faultproxy.New(t, srv.URL)
	p.Add(faultproxy.Rule{Faults: []faultproxy.Fault{faultproxy.FlipByte(1 << 19)}})
	s := openStore(t)
	r := testImage(t, newHTTPSource(p.URL), blob)
	sess, err := fetch.Start(context.Background(), r, s, quickRetries())
	if err != nil {
		t.Fatal(err)
	}
	rc, err := sess.Layer(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
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
	blob := randomBytes(1<<20, 34)
	srv := newBlobServer(t, blob)
	p := faultproxy.New(t, srv.URL)
	p.Add(faultproxy.Rule{Faults: []faultproxy.Fault{faultproxy.Trickle(64<<10, 2*time.Millisecond)}})
	s := openStore(t)
	desc := layerDesc(blob)
	ctx := context.Background()

	rc, err := fetch.OpenLayer(ctx, newHTTPSource(p.URL), s, desc)
	if err != nil {
		t.Fatal(err)
	}
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
	rc, err = fetch.OpenLayer(ctx, newHTTPSource(p.URL), s, desc)
	if err != nil {
		t.Fatal(err)
	}
	b, err = io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(b, blob) || p.Requests() != 0 {
		t.Fatalf("cached read: %v, %d requests", err, p.Requests())
	}
}

func TestOpenLayerClosedEarlyKeepsThePartialForLater(t *testing.T) {
	blob := randomBytes(2<<20, 35)
	srv := newBlobServer(t, blob)
	p := faultproxy.New(t, srv.URL)
	p.Add(faultproxy.Rule{Faults: []faultproxy.Fault{faultproxy.Trickle(64<<10, 3*time.Millisecond)}})
	s := openStore(t)
	desc := layerDesc(blob)
	ctx := context.Background()

	rc, err := fetch.OpenLayer(ctx, newHTTPSource(p.URL), s, desc)
	if err != nil {
		t.Fatal(err)
	}
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
	blob := randomBytes(1<<20, 36)
	srv := newBlobServer(t, blob)
	p := faultproxy.New(t, srv.URL)
	p.Add(faultproxy.Rule{Faults: []faultproxy.Fault{faultproxy.Trickle(1024, 20*time.Millisecond)}})
	s := openStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	rc, err := fetch.OpenLayer(ctx, newHTTPSource(p.URL), s, layerDesc(blob))
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(rc)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	rc.Close()
	if ok, _ := s.Has(layerDesc(blob)); ok {
		t.Fatal("blob visible")
	}
}
