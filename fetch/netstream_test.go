package fetch_test

// Layers streamed without a store (WithKeepBlobs(false)): one continuous
// verified stream whatever the network does, and no layer blob stored.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/fetch"
	"github.com/ocifetch/ocifetch/internal/testutil/hostile"
)

// cutOnce serves the first GET of a blob only up to cut bytes, then
// drops the connection; later GETs are answered honestly, or, with
// ignoreRange, with the whole blob whatever Range asks.
func cutOnce(reg *hostile.Registry, blob []byte, cut int, ignoreRange bool, served *atomic.Int64) hostile.Interceptor {
	var cuts atomic.Int64
	return func(w http.ResponseWriter, r *http.Request, q hostile.Request) bool {
		if q.Kind != hostile.Blob || q.Ref != layerDesc(blob).Digest.String() {
			return false
		}
		if cuts.Add(1) == 1 {
			w.Header().Set("Content-Length", fmt.Sprint(len(blob)))
			w.WriteHeader(http.StatusOK)
			w.Write(blob[:cut])
			served.Add(int64(cut))
			w.(http.Flusher).Flush()
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
			return true
		}
		if ignoreRange {
			w.Header().Set("Content-Length", fmt.Sprint(len(blob)))
			w.WriteHeader(http.StatusOK)
			w.Write(blob)
			served.Add(int64(len(blob)))
			return true
		}
		start := 0
		if rg := r.Header.Get("Range"); rg != "" {
			fmt.Sscanf(strings.TrimPrefix(rg, "bytes="), "%d-", &start)
		}
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(blob)-1, len(blob)))
		w.Header().Set("Content-Length", fmt.Sprint(len(blob)-start))
		if start > 0 {
			w.WriteHeader(http.StatusPartialContent)
		} else {
			w.WriteHeader(http.StatusOK)
		}
		w.Write(blob[start:])
		served.Add(int64(len(blob) - start))
		return true
	}
}

// A connection cut in the middle of a layer that is not kept continues
// with a ranged request, into the same reader: the consumer reads the
// blob once, verified, nothing lands in the store, and the bytes served
// stay under twice the blob's size. A host that ignores the range costs
// the prefix once more, and the stream still ends right.
func TestStreamWithoutStoreResumes(t *testing.T) {
	t.Parallel()
	blob := randomBytes(3<<20, 81)
	for _, tc := range []struct {
		name        string
		ignoreRange bool
		ranged      bool
	}{{"range", false, true}, {"range ignored", true, false}} {
		t.Run(tc.name, func(t *testing.T) {
			reg := hostile.New(t)
			reg.PutBlob("stream/app", blob)
			var served atomic.Int64
			reg.Intercept(cutOnce(reg, blob, 1<<20+17, tc.ignoreRange, &served))
			src := openHostile(t, reg, "stream/app")
			res := testImage(t, src, blob)
			s := openStore(t)
			sess, rc := startLayer(t, context.Background(), res, s, fetch.WithKeepBlobs(false), quickRetries())
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(got, blob) {
				t.Fatalf("read %d bytes (%v), want the blob's %d", len(got), err, len(blob))
			}
			pr, err := sess.Wait()
			if err != nil {
				t.Fatal(err)
			}
			assertNoBlob(t, s, layerDesc(blob).Digest)
			if n := served.Load(); n >= 2*int64(len(blob)) {
				t.Errorf("served %d bytes for a blob of %d", n, len(blob))
			}
			if pr.Downloaded != served.Load() {
				t.Errorf("the session counts %d bytes downloaded, the registry served %d", pr.Downloaded, served.Load())
			}
			var ranges []string
			for _, q := range reg.Requests() {
				if q.Kind == hostile.Blob && q.Ref == layerDesc(blob).Digest.String() {
					ranges = append(ranges, q.Header.Get("Range"))
				}
			}
			want := fmt.Sprintf("bytes=%d-%d", 1<<20+17, len(blob)-1)
			if len(ranges) != 2 || ranges[0] != "" || ranges[1] != want {
				t.Errorf("requests %q, want the whole blob then %q", ranges, want)
			}
			// The image is recorded, its layer missing.
			images, err := s.Images(context.Background())
			if err != nil || len(images) != 1 || images[0].Complete || images[0].Missing != 1 {
				t.Fatalf("images %+v (%v)", images, err)
			}
		})
	}
}

// Content that does not hash to the digest is an error before io.EOF,
// never a clean end; a cut connection is not one.
func TestStreamWithoutStoreBadContent(t *testing.T) {
	t.Parallel()
	blob := randomBytes(1<<20, 82)
	reg := hostile.New(t)
	reg.PutBlob("stream/bad", blob)
	bad := append([]byte(nil), blob...)
	bad[len(bad)/2] ^= 1
	reg.Intercept(func(w http.ResponseWriter, r *http.Request, q hostile.Request) bool {
		if q.Kind != hostile.Blob || q.Ref != layerDesc(blob).Digest.String() {
			return false
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(bad)))
		w.WriteHeader(http.StatusOK)
		w.Write(bad)
		return true
	})
	res := testImage(t, openHostile(t, reg, "stream/bad"), blob)
	s := openStore(t)
	sess, rc := startLayer(t, context.Background(), res, s, fetch.WithKeepBlobs(false), quickRetries())
	got, err := io.ReadAll(rc)
	rc.Close()
	if errdefs.KindOf(err) != errdefs.ErrDigestMismatch {
		t.Fatalf("read %d bytes, err %v; want digest_mismatch", len(got), err)
	}
	if _, err := sess.Wait(); errdefs.KindOf(err) != errdefs.ErrDigestMismatch {
		t.Fatalf("Wait: %v", err)
	}
	assertNoBlob(t, s, layerDesc(blob).Digest)
}
