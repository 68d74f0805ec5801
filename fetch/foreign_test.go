package fetch_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/fetch"
	"github.com/ocifetch/ocifetch/internal/testutil/faultproxy"
	"github.com/ocifetch/ocifetch/resolve"
	"github.com/ocifetch/ocifetch/source"
)

func foreignDesc(b []byte, urls ...string) ocispec.Descriptor {
	d := layerDesc(b)
	d.MediaType = resolve.MediaTypeDockerForeignLayer
	d.URLs = urls
	return d
}

// CVE-2020-15157: following a descriptor's urls by default sent registry
// credentials to wherever the image's author pointed.
func TestForeignLayers(t *testing.T) {
	t.Parallel()
	blob := randomBytes(300_000, 40)
	registry := newBlobServer(t) // does not have the layer
	regProxy := faultproxy.New(t, registry.URL)
	cdn := newBlobServer(t, blob)
	cdnProxy := faultproxy.New(t, cdn.URL)
	desc := foreignDesc(blob, cdnProxy.URL+"/v2/win/blobs/"+layerDesc(blob).Digest.String())
	ctx := context.Background()

	t.Run("not followed by default", func(t *testing.T) {
		err := fetch.FetchBlob(ctx, newHTTPSource(regProxy.URL), openStore(t), desc)
		if !errdefs.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), cdnProxy.Host()) || !strings.Contains(err.Error(), "WithAllowedURLHosts") {
			t.Fatalf("err = %v; want not_found naming the host to allow", err)
		}
		if cdnProxy.Requests() != 0 {
			t.Fatal("the URL was contacted")
		}
	})
	t.Run("allowed host, registry first, no credentials", func(t *testing.T) {
		regProxy.ResetStats()
		s := openStore(t)
		if err := fetch.FetchBlob(ctx, newHTTPSource(regProxy.URL), s, desc, fetch.WithAllowedURLHosts(cdnProxy.Host())); err != nil {
			t.Fatal(err)
		}
		assertBlob(t, s, blob)
		if regProxy.Requests() != 1 || regProxy.AuthorizationsSeen() != 1 {
			t.Errorf("registry: %d requests, %d with credentials", regProxy.Requests(), regProxy.AuthorizationsSeen())
		}
		if cdnProxy.Requests() != 1 || cdnProxy.AuthorizationsSeen() != 0 {
			t.Errorf("URL host: %d requests, %d with credentials", cdnProxy.Requests(), cdnProxy.AuthorizationsSeen())
		}
	})
	t.Run("still verified", func(t *testing.T) {
		bad := faultproxy.New(t, cdn.URL)
		bad.Add(faultproxy.Rule{Faults: []faultproxy.Fault{faultproxy.FlipByte(10)}})
		d := foreignDesc(blob, bad.URL+"/v2/win/blobs/"+desc.Digest.String())
		s := openStore(t)
		err := fetch.FetchBlob(ctx, newHTTPSource(regProxy.URL), s, d, fetch.WithAllowedURLHosts(bad.Host()))
		if !errdefs.Is(err, errdefs.ErrDigestMismatch) {
			t.Fatalf("err = %v", err)
		}
		assertNoBlob(t, s, d.Digest)
	})
	t.Run("served by the registry: URL not used", func(t *testing.T) {
		cdnProxy.ResetStats()
		s := openStore(t)
		if err := fetch.FetchBlob(ctx, newHTTPSource(cdn.URL), s, desc, fetch.WithAllowedURLHosts(cdnProxy.Host())); err != nil {
			t.Fatal(err)
		}
		if cdnProxy.Requests() != 0 {
			t.Errorf("URL contacted although the registry has the layer")
		}
	})
	t.Run("plain http only for loopback", func(t *testing.T) {
		d := foreignDesc(blob, "http://example.invalid/layer")
		err := fetch.FetchBlob(ctx, newHTTPSource(regProxy.URL), openStore(t), d, fetch.WithAllowedURLHosts("example.invalid"))
		if !errdefs.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "https") {
			t.Fatalf("err = %v", err)
		}
	})
	// redirected is the layer at a foreign URL whose host (redirecting)
	// redirects every request to another (storage).
	redirected := func(t *testing.T) (storage, redirecting *faultproxy.Proxy, d ocispec.Descriptor) {
		storage = faultproxy.New(t, cdn.URL)
		redirecting = faultproxy.New(t, cdn.URL)
		redirecting.Add(faultproxy.Rule{Faults: []faultproxy.Fault{faultproxy.Redirect(storage)}})
		return storage, redirecting, foreignDesc(blob, redirecting.URL+"/v2/win/blobs/"+desc.Digest.String())
	}
	t.Run("redirects carry no credentials either", func(t *testing.T) {
		storage, redirecting, d := redirected(t)
		s := openStore(t)
		if err := fetch.FetchBlob(ctx, newHTTPSource(regProxy.URL), s, d, fetch.WithAllowedURLHosts(redirecting.Host(), strings.TrimPrefix(storage.OtherHostURL(), "http://"))); err != nil {
			t.Fatal(err)
		}
		assertBlob(t, s, blob)
		if storage.Requests() != 1 || storage.AuthorizationsSeen()+redirecting.AuthorizationsSeen() != 0 {
			t.Errorf("storage %d requests; credentials seen %d/%d", storage.Requests(), redirecting.AuthorizationsSeen(), storage.AuthorizationsSeen())
		}
	})
	// An allowed URL that redirects elsewhere must not take the download
	// to a host the user did not allow: the redirect keeps the first
	// request's rules.
	t.Run("a redirect to a host off the allow list is refused", func(t *testing.T) {
		storage, redirecting, d := redirected(t)
		s := openStore(t)
		err := fetch.FetchBlob(ctx, newHTTPSource(regProxy.URL), s, d, fetch.WithAllowedURLHosts(redirecting.Host()))
		if err == nil || !errors.Is(err, source.ErrRefused) || !strings.Contains(err.Error(), strings.TrimPrefix(storage.OtherHostURL(), "http://")) || !strings.Contains(err.Error(), "--allow-foreign-host") {
			t.Fatalf("err = %v; want a refusal naming %s", err, storage.OtherHostURL())
		}
		if storage.Requests() != 0 {
			t.Fatalf("the host off the allow list got %d requests", storage.Requests())
		}
		assertNoBlob(t, s, d.Digest)
	})
}
