package ocifetch_test

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
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/ocifetch/ocifetch"
	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/testutil/hostile"
	"github.com/ocifetch/ocifetch/internal/testutil/testimage"
	"github.com/ocifetch/ocifetch/resolve"
)

// A corrupt layer 2 is digest_mismatch on layer 2 from Unpack as from
// Pull, also when layer 1 was still streaming into the applier when layer
// 2 failed: that layer's download, cancelled by the failure, used to
// surface as "network" on layer 1, and an engine that retries network
// errors retried corrupt content. Cancelling is canceled.
func TestUnpackReportsTheLayerThatFailed(t *testing.T) {
	t.Parallel()
	img := testimage.Image(t, 2, "linux", "amd64", "")
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var blobs [][]byte
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		blobs = append(blobs, b)
	}
	d1, _ := layers[0].Digest()
	d2, _ := layers[1].Digest()
	anon := ocifetch.WithResolveOptions(resolve.WithKeychain(authn.NewMultiKeychain()))

	for _, stall := range []bool{false, true} {
		name := "layer 1 done first"
		if stall {
			name = "layer 1 still streaming"
		}
		t.Run(name, func(t *testing.T) {
			reg := hostile.New(t)
			ref := reg.PutImage(t, "corrupt/app", "v1", img)
			reg.Intercept(func(w http.ResponseWriter, r *http.Request, q hostile.Request) bool {
				switch {
				case q.Kind == hostile.Blob && q.Ref == d2.String():
					bad := bytes.Clone(blobs[1])
					bad[len(bad)/2] ^= 0xff
					w.Write(bad)
					return true
				case q.Kind == hostile.Blob && q.Ref == d1.String() && stall:
					w.Header().Set("Content-Length", strconv.Itoa(len(blobs[0])))
					w.WriteHeader(http.StatusOK)
					w.Write(blobs[0][:len(blobs[0])/2])
					w.(http.Flusher).Flush()
					<-r.Context().Done()
					return true
				}
				return false
			})
			work := t.TempDir()
			_, err := ocifetch.Unpack(context.Background(), ref, filepath.Join(work, "rootfs"), ocifetch.WithStore(filepath.Join(work, "store")), anon)
			if errdefs.KindOf(err) != errdefs.ErrDigestMismatch || !strings.Contains(err.Error(), "layer 2") {
				t.Fatalf("Unpack: %v (kind %s), want digest_mismatch on layer 2", err, errdefs.KindOf(err))
			}
			t.Logf("Unpack: %v", err)
			_, err = ocifetch.Pull(context.Background(), ref, ocifetch.WithStore(filepath.Join(work, "store2")), anon)
			if errdefs.KindOf(err) != errdefs.ErrDigestMismatch || !strings.Contains(err.Error(), "layer 2") {
				t.Fatalf("Pull: %v (kind %s), want digest_mismatch on layer 2", err, errdefs.KindOf(err))
			}
		})
	}

	t.Run("cancelled", func(t *testing.T) {
		reg := hostile.New(t)
		ref := reg.PutImage(t, "cancel/app", "v1", img)
		ctx, cancel := context.WithCancel(context.Background())
		reg.Intercept(func(w http.ResponseWriter, r *http.Request, q hostile.Request) bool {
			if q.Kind == hostile.Blob && q.Ref == d1.String() {
				w.Header().Set("Content-Length", strconv.Itoa(len(blobs[0])))
				w.WriteHeader(http.StatusOK)
				w.Write(blobs[0][:10])
				w.(http.Flusher).Flush()
				cancel()
				<-r.Context().Done()
				return true
			}
			return false
		})
		work := t.TempDir()
		_, err := ocifetch.Unpack(ctx, ref, filepath.Join(work, "rootfs"), ocifetch.WithStore(filepath.Join(work, "store")), anon)
		if errdefs.KindOf(err) != errdefs.ErrCanceled || !errors.Is(err, context.Canceled) {
			t.Fatalf("Unpack: %v (kind %s), want canceled", err, errdefs.KindOf(err))
		}
	})
}

// A layer whose gzip trailer is wrong (here its CRC-32, so that every
// byte before it decompresses) is digest_mismatch, from the registry with
// the blob kept or streamed, and from the store: the bytes that complete
// a blob wait for its digest. Before, the decompressor read the trailer
// first and the layer was layer_invalid, whichever reader won the race
// (TestUnpackReportsTheLayerThatFailed failed so now and then), and a
// blob corrupted in the store stayed there.
func TestCorruptGzipTrailerIsADigestMismatch(t *testing.T) {
	t.Parallel()
	img := testimage.Image(t, 1, "linux", "amd64", "")
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layers[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	blob, _ := io.ReadAll(rc)
	rc.Close()
	d, _ := layers[0].Digest()
	bad := bytes.Clone(blob)
	bad[len(bad)-8] ^= 0xff // the trailer's CRC-32
	anon := ocifetch.WithResolveOptions(resolve.WithKeychain(authn.NewMultiKeychain()))
	for _, keep := range []bool{true, false} {
		t.Run("keep blobs "+strconv.FormatBool(keep), func(t *testing.T) {
			t.Parallel()
			reg := hostile.New(t)
			ref := reg.PutImage(t, "trailer/app", "v1", img)
			reg.Intercept(func(w http.ResponseWriter, r *http.Request, q hostile.Request) bool {
				if q.Kind == hostile.Blob && q.Ref == d.String() {
					w.Write(bad)
					return true
				}
				return false
			})
			work := t.TempDir()
			_, err := ocifetch.Unpack(context.Background(), ref, filepath.Join(work, "rootfs"), ocifetch.WithStore(filepath.Join(work, "store")), ocifetch.WithKeepBlobs(keep), anon)
			if errdefs.KindOf(err) != errdefs.ErrDigestMismatch {
				t.Fatalf("Unpack: %v (kind %s), want digest_mismatch", err, errdefs.KindOf(err))
			}
		})
	}
	t.Run("from the store", func(t *testing.T) {
		t.Parallel()
		reg := hostile.New(t)
		ref := reg.PutImage(t, "trailer/stored", "v1", img)
		work := t.TempDir()
		store := filepath.Join(work, "store")
		if _, err := ocifetch.Pull(context.Background(), ref, ocifetch.WithStore(store), anon); err != nil {
			t.Fatal(err)
		}
		stored := filepath.Join(store, "blobs", "sha256", d.Hex)
		if err := os.WriteFile(stored, bad, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := ocifetch.Unpack(context.Background(), ref, filepath.Join(work, "rootfs"), ocifetch.WithStore(store), ocifetch.WithPullPolicy(ocifetch.PullNever), anon)
		if errdefs.KindOf(err) != errdefs.ErrDigestMismatch {
			t.Fatalf("Unpack from the store: %v (kind %s), want digest_mismatch", err, errdefs.KindOf(err))
		}
		if _, err := os.Stat(stored); !os.IsNotExist(err) {
			t.Errorf("the corrupt blob is still in the store: %v", err)
		}
	})
}
