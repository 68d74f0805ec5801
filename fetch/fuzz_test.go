package fetch_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/fetch"
	"github.com/ocifetch/ocifetch/internal/testutil/hostile"
	"github.com/ocifetch/ocifetch/resolve"
	"github.com/ocifetch/ocifetch/source"
)

// FuzzRegistryResponses resolves and pulls an image whose descriptors and
// whose registry's answers the fuzzer chooses: sizes that lie or overflow,
// any status, Content-Range and Content-Length, bodies cut anywhere,
// ranges honoured or not. Whatever happens must end in a typed error (or
// success) within the deadlines: never a panic, which would kill the
// process from a download goroutine, and never a panic turned into an
// internal error either, since that is a bug too.
func FuzzRegistryResponses(f *testing.F) {
	layer := randomBytes(3000, 70)
	r := testImage(f, nil, layer)
	reg := hostile.New(f)
	reg.PutBlob("fuzz/app", layer)
	reg.PutBlob("fuzz/app", r.Config.Data)
	var n atomic.Int64

	f.Add(int64(0), int64(0), uint16(200), int64(-1), int64(-1), false, "")
	f.Add(int64(1000), int64(0), uint16(200), int64(-1), int64(-1), false, "")
	f.Add(int64(-10), int64(0), uint16(200), int64(-1), int64(-1), false, "")
	f.Add(int64(math.MaxInt64-3000), int64(0), uint16(200), int64(-1), int64(-1), false, "")
	f.Add(int64(-3001), int64(7), uint16(200), int64(-1), int64(-1), false, "")
	f.Add(int64(0), int64(math.MaxInt64), uint16(200), int64(-1), int64(-1), false, "")
	f.Add(int64(0), int64(0), uint16(206), int64(1500), int64(-1), true, "bytes 5-2999/3000")
	f.Add(int64(0), int64(0), uint16(206), int64(1500), int64(1500), true, "bytes -9223372036854775808-1/3")
	f.Add(int64(0), int64(0), uint16(200), int64(1500), int64(3000), true, "")
	f.Add(int64(0), int64(0), uint16(503), int64(-1), int64(-1), false, "")
	f.Add(int64(0), int64(0), uint16(416), int64(-1), int64(-1), false, "")
	f.Add(int64(0), int64(0), uint16(307), int64(-1), int64(-1), false, "")

	f.Fuzz(func(t *testing.T, layerDelta, configDelta int64, status uint16, cut, length int64, ignoreRange bool, contentRange string) {
		tag := fmt.Sprintf("v%d", n.Add(1))
		m := r.ImageManifest
		m.Layers = append([]ocispec.Descriptor(nil), m.Layers...)
		m.Layers[0].Size = saturatingAdd(m.Layers[0].Size, layerDelta)
		m.Config.Size = saturatingAdd(m.Config.Size, configDelta)
		raw := mustJSON(t, m)
		reg.PutManifest("fuzz/app", tag, ocispec.MediaTypeImageManifest, raw)

		code := int(status)
		if code < 200 || code > 599 {
			code = 200 + code%400
		}
		contentRange = strings.Map(func(r rune) rune {
			if r < ' ' || r > '~' {
				return -1
			}
			return r
		}, contentRange)
		if len(contentRange) > 100 {
			contentRange = contentRange[:100]
		}
		layerRef := digest.FromBytes(layer).String()
		reg.Intercept(func(w http.ResponseWriter, req *http.Request, q hostile.Request) bool {
			if q.Kind != hostile.Blob || q.Ref != layerRef {
				return false
			}
			if !ignoreRange && req.Header.Get("Range") != "" && code == http.StatusOK {
				return false // an honest answer to the range
			}
			body := layer
			if cut >= 0 && cut < int64(len(layer)) {
				body = layer[:cut]
			}
			if contentRange != "" {
				w.Header().Set("Content-Range", contentRange)
			}
			if code == http.StatusTemporaryRedirect {
				w.Header().Set("Location", "http://"+reg.Host+req.URL.Path+"?again")
			}
			if length >= 0 {
				w.Header().Set("Content-Length", fmt.Sprint(length))
			}
			w.WriteHeader(code)
			if code == http.StatusOK || code == http.StatusPartialContent {
				w.Write(body)
			}
			return true
		})
		defer reg.Intercept(nil)

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		sopts := []source.Option{
			source.WithKeychain(authn.NewMultiKeychain()),
			source.WithRetryPolicy(source.RetryPolicy{MaxAttempts: 2, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond, MaxRetryAfter: time.Millisecond}),
			source.WithDeadlines(source.Deadlines{Document: 500 * time.Millisecond, MinRate: 1, RateWindow: 200 * time.Millisecond}),
		}
		start := time.Now()
		defer func() {
			// Everything is bounded by the deadlines above: a few seconds
			// at worst, never the context's ten.
			if d := time.Since(start); d > 6*time.Second {
				t.Fatalf("took %v", d)
			}
		}()
		res, err := resolve.Resolve(ctx, reg.Host+"/fuzz/app:"+tag, resolve.WithSourceOptions(sopts...))
		checkFuzzErr(t, "resolve", err)
		if err == nil {
			_, err = fetch.Pull(ctx, res, openStore(t))
			checkFuzzErr(t, "pull", err)
		}
		src, err := source.OpenRegistry(reg.Host+"/fuzz/app:"+tag, sopts...)
		if err != nil {
			t.Fatal(err)
		}
		desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(layer), Size: saturatingAdd(int64(len(layer)), layerDelta)}
		err = fetch.FetchBlob(ctx, src, openStore(t), desc)
		checkFuzzErr(t, "FetchBlob", err)
	})
}

func saturatingAdd(a, b int64) int64 {
	switch {
	case b > 0 && a > math.MaxInt64-b:
		return math.MaxInt64
	case b < 0 && a < math.MinInt64-b:
		return math.MinInt64
	}
	return a + b
}

func checkFuzzErr(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	k := errdefs.KindOf(err)
	known := false
	for _, kk := range errdefs.Kinds() {
		known = known || kk == k
	}
	msg := err.Error()
	if !known || k == errdefs.ErrInternal || strings.Contains(msg, "panic") || strings.Contains(msg, "\n") {
		t.Fatalf("%s: %q (kind %s)", what, msg, k)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
