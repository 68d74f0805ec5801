package apply

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/testutil"
)

// choppy returns its data in reads of random sizes, then err.
type choppy struct {
	data []byte
	rng  *rand.Rand
	err  error
}

func (c *choppy) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, c.err
	}
	n := min(len(p), len(c.data), 1+c.rng.IntN(100<<10))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func randomBytes(n int) []byte {
	return testutil.RandomBytes(rand.New(rand.NewPCG(3, 4)), n)
}

func TestReadAheadDeliversEveryByteInOrder(t *testing.T) {
	t.Parallel()
	data := randomBytes(3*readAheadSize + 12345)
	for _, withHash := range []bool{true, false} {
		h := sha256.New()
		var hh = h
		if !withHash {
			hh = nil
		}
		ra := startReadAhead(&choppy{data: data, rng: rand.New(rand.NewPCG(5, 6)), err: io.EOF}, hh, nil)
		// Read in sizes of our own, unrelated to the chunks.
		var got []byte
		buf := make([]byte, 7777)
		for {
			n, err := ra.Read(buf)
			got = append(got, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if n := ra.close(); n != int64(len(data)) {
			t.Errorf("close says %d bytes read, want %d", n, len(data))
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("hash %v: got %d bytes, not the %d of the source", withHash, len(got), len(data))
		}
		if want := sha256.Sum256(data); withHash && !bytes.Equal(h.Sum(nil), want[:]) {
			t.Errorf("hash of the read-ahead differs from the data's")
		}
		if ra.failed {
			t.Error("failed set on a clean EOF")
		}
	}
}

func TestReadAheadErrorComesAfterTheBytes(t *testing.T) {
	t.Parallel()
	data := randomBytes(readAheadSize + 100)
	boom := errors.New("boom")
	ra := startReadAhead(&choppy{data: data, rng: rand.New(rand.NewPCG(7, 8)), err: boom}, sha256.New(), nil)
	got, err := io.ReadAll(ra)
	if !errors.Is(err, boom) {
		t.Fatalf("error %v, want boom", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("got %d bytes before the error, want %d", len(got), len(data))
	}
	if !ra.failed {
		t.Error("failed not set after the source's error")
	}
	ra.close()
}

// endless counts its reads and never ends.
type endless struct{ reads atomic.Int64 }

func (e *endless) Read(p []byte) (int, error) {
	e.reads.Add(1)
	return len(p), nil
}

// An applier that stops early stops the goroutine too: it reads no more
// than the chunks it has room for.
func TestReadAheadCloseStopsReading(t *testing.T) {
	t.Parallel()
	src := &endless{}
	ra := startReadAhead(src, sha256.New(), nil)
	if _, err := io.ReadFull(ra, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	done := make(chan int64)
	go func() { done <- ra.close() }()
	select {
	case n := <-done:
		if max := int64(readAheadSize + 1000); n > max {
			t.Errorf("read %d bytes ahead, more than the %d it has room for", n, max)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("close did not return")
	}
	before := src.reads.Load()
	time.Sleep(20 * time.Millisecond)
	if after := src.reads.Load(); after != before {
		t.Errorf("source still read after close: %d reads, then %d", before, after)
	}
}

// stalling serves data, then blocks until its context is cancelled.
type stalling struct {
	ctx  context.Context
	data []byte
}

func (s *stalling) Read(p []byte) (int, error) {
	if len(s.data) > 0 {
		n := copy(p, s.data)
		s.data = s.data[n:]
		return n, nil
	}
	<-s.ctx.Done()
	return 0, errdefs.Wrap(s.ctx.Err(), errdefs.ErrNetwork, "stalled")
}

func (s *stalling) Close() error { return nil }

// A layer that fails for a reason of its own while its blob is still
// arriving fails at once, with its own error, not with the cancelled
// download's.
func TestApplyFailsWhileBlobStalls(t *testing.T) {
	t.Parallel()
	tb := tarOf(t, F("ok", "fine", 0644), F("../escape", "x", 0644))
	tb = tb[:len(tb)-1024] // no end-of-archive: the stream goes on
	l := Layer{MediaType: mtTar, DiffID: sha([]byte("whatever")), Open: func(ctx context.Context) (io.ReadCloser, error) {
		return &stalling{ctx: ctx, data: tb}, nil
	}}
	done := make(chan error)
	go func() {
		_, err := Apply(context.Background(), t.TempDir(), []Layer{l})
		done <- err
	}()
	select {
	case err := <-done:
		wantKind(t, err, errdefs.ErrPathEscape)
		if strings.Contains(err.Error(), "stalled") {
			t.Errorf("error %q is the stalled source's, not the layer's", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Apply did not return while its blob stalled")
	}
}
