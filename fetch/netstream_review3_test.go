package fetch_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/fetch"
	"github.com/ocifetch/ocifetch/internal/testutil/hostile"
	"github.com/ocifetch/ocifetch/resolve"
)

// A host that ignores Range and cuts every answer one byte past the
// furthest offset reached makes progress on each attempt, so the retry
// budget never ran out: a stream without a store read a 64 KiB blob
// with 64,536 requests and 2 GB, and a 256 KiB one would take hours
// (the bytes grow with the square of the size). What a host sends again
// is now bounded by the blob's size: the stream fails with network, the
// bytes served under twice the blob plus one read buffer.
// byteByByte serves blob ignoring Range, each answer cut one byte past
// the furthest offset served so far (from 4 KiB on); served counts the
// bytes written.
func byteByByte(blob []byte, served *atomic.Int64) hostile.Interceptor {
	var furthest atomic.Int64
	furthest.Store(4096)
	return func(w http.ResponseWriter, r *http.Request, q hostile.Request) bool {
		if q.Kind != hostile.Blob || q.Ref != layerDesc(blob).Digest.String() {
			return false
		}
		end := min(furthest.Add(1), int64(len(blob)))
		w.Header().Set("Content-Length", fmt.Sprint(len(blob)))
		w.WriteHeader(http.StatusOK)
		w.Write(blob[:end])
		served.Add(end)
		w.(http.Flusher).Flush()
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
		return true
	}
}

// byteByByteImage is a one-layer image, a 256 KiB blob made from seed,
// whose registry answers as byteByByte; checkServed fails the test if it
// had to serve more than about twice the blob.
func byteByByteImage(t *testing.T, seed uint64) (res *resolve.Resolved, checkServed func()) {
	t.Helper()
	blob := randomBytes(256<<10, seed)
	reg := hostile.New(t)
	reg.PutBlob("stream/app", blob)
	var served atomic.Int64
	reg.Intercept(byteByByte(blob, &served))
	return testImage(t, openHostile(t, reg, "stream/app"), blob), func() {
		t.Helper()
		if n := served.Load(); n > 2*int64(len(blob))+64<<10 {
			t.Errorf("served %d bytes for a blob of %d", n, len(blob))
		}
	}
}

func TestStreamWithoutStoreRangeIgnoredByteByByte(t *testing.T) {
	res, checkServed := byteByByteImage(t, 83)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sess, err := fetch.Start(ctx, res, openStore(t), fetch.WithKeepBlobs(false), quickRetries())
	if err != nil {
		t.Fatal(err)
	}
	rc, err := sess.Layer(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	sess.Wait()
	if errdefs.KindOf(err) != errdefs.ErrNetwork || ctx.Err() != nil {
		t.Errorf("read %d bytes, err %v (deadline: %v); want network before the deadline", len(got), err, ctx.Err())
	}
	checkServed()
}

// The same host against a download into the store, which started over
// at every answer: 62 MB served in 20 s for a 256 KiB blob.
func TestPullRangeIgnoredByteByByte(t *testing.T) {
	res, checkServed := byteByByteImage(t, 84)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sess, err := fetch.Start(ctx, res, openStore(t), quickRetries())
	if err != nil {
		t.Fatal(err)
	}
	_, err = sess.Wait()
	if errdefs.KindOf(err) != errdefs.ErrNetwork || ctx.Err() != nil {
		t.Errorf("err %v (deadline: %v); want network before the deadline", err, ctx.Err())
	}
	checkServed()
}

// Unpacks that did not keep a blob record, at once, the trees it relies
// on: each merge read the record, added its tree and wrote it, and the
// last write lost the others (three concurrent unpacks --keep-blobs=false
// of one image lost a tree in 2 rounds of 8). Every tree is kept now.
func TestRecordDroppedConcurrently(t *testing.T) {
	s := openStore(t)
	blob := randomBytes(1024, 85)
	d := layerDesc(blob)
	const n = 8
	for round := 0; round < 3; round++ {
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rel := fetch.Reliance{Rootfs: fmt.Sprintf("/r%d/%d", round, i), StateDir: fmt.Sprintf("/s%d/%d", round, i)}
				if err := s.RecordDropped(context.Background(), fetch.Dropped{Digest: d.Digest, Size: d.Size, MediaType: d.MediaType, ReliesOn: []fetch.Reliance{rel}}); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		rec, ok, err := s.DroppedBlob(d.Digest)
		if err != nil || !ok || len(rec.ReliesOn) != n*(round+1) {
			t.Fatalf("round %d: the record lists %d trees (%v, %v), want %d", round, len(rec.ReliesOn), ok, err, n*(round+1))
		}
	}
}
