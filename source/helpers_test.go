package source_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/testutil/hostile"
	"github.com/ocifetch/ocifetch/internal/testutil/testimage"
	"github.com/ocifetch/ocifetch/resolve"
	"github.com/ocifetch/ocifetch/source"
)

// anonymous keeps the developer's own Docker config out of the tests.
var anonymous = source.WithKeychain(authn.NewMultiKeychain())

// quick is a retry policy and deadlines scaled down for tests.
var quick = []source.Option{
	source.WithRetryPolicy(source.RetryPolicy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond, MaxRetryAfter: 10 * time.Millisecond}),
}

// staticKeychain hands out one set of credentials to every host.
type staticKeychain struct{ user, pass string }

func (k staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	return authn.FromConfig(authn.AuthConfig{Username: k.user, Password: k.pass}), nil
}

// redirectingRegistry pushes an image to repo of a registry that wants a
// token from a loopback token server and redirects its layer GETs to a
// loopback storage server that holds the image too.
func redirectingRegistry(t *testing.T, repo string) (ref string, reg *hostile.Registry, tokens *hostile.TokenServer, storage *hostile.Registry) {
	t.Helper()
	reg, ref, img := image(t, repo)
	tokens = hostile.NewTokenServer(t)
	reg.RequireToken(tokens.Realm("localhost"), tokens.Token)
	storage = hostile.New(t)
	storage.PutImage(t, repo, "v1", img)
	redirectLayers(t, reg, img, "http://"+localhost(storage.Host))
	return ref, reg, tokens, storage
}

// image starts an in-process registry with opts, puts a two-layer image
// into it as repo:v1, and returns the registry, the reference and the
// image.
func image(t *testing.T, repo string, opts ...hostile.Option) (*hostile.Registry, string, v1.Image) {
	t.Helper()
	reg := hostile.New(t, opts...)
	img := testimage.Image(t, 2, "linux", "amd64", "")
	return reg, reg.PutImage(t, repo, "v1", img), img
}

func resolveWith(ctx context.Context, ref string, opts ...source.Option) (*resolve.Resolved, error) {
	return resolve.Resolve(ctx, ref, resolve.WithSourceOptions(append([]source.Option{anonymous}, opts...)...))
}

func mustResolve(t *testing.T, ref string, opts ...source.Option) *resolve.Resolved {
	t.Helper()
	res, err := resolveWith(context.Background(), ref, opts...)
	if err != nil {
		t.Fatalf("Resolve(%s): %v", ref, err)
	}
	return res
}

// readLayer reads layer i of res through its Source, whole.
func readLayer(t *testing.T, res *resolve.Resolved, i int) ([]byte, error) {
	t.Helper()
	rc, _, err := res.Source.FetchAt(context.Background(), res.Layers[i].Descriptor, 0)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func wantKind(t *testing.T, err error, kind errdefs.Kind) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", kind)
	}
	if errdefs.KindOf(err) != kind || !errors.Is(err, kind) {
		t.Fatalf("error %q has kind %q, want %q", err, errdefs.KindOf(err), kind)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("error message spans lines: %q", err)
	}
}

func authHeaders(reqs []hostile.Request) []string {
	var out []string
	for _, q := range reqs {
		if a := q.Header.Get("Authorization"); a != "" {
			out = append(out, fmt.Sprintf("%s %s %s: %s", q.Method, q.Kind, q.Ref, a))
		}
	}
	return out
}

// writeAuthfile writes a Docker config with one auths entry.
func writeAuthfile(t *testing.T, key, user, pass string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "config.json")
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	if err := os.WriteFile(f, []byte(fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, key, auth)), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// redirectLayers makes reg answer GETs of img's layers with a 307 to
// base + path (the config is served as it is, so that resolving works).
func redirectLayers(t *testing.T, reg *hostile.Registry, img v1.Image, base string) {
	t.Helper()
	layers := map[string]bool{}
	for i := range 2 {
		layers[layerDigest(t, img, i).String()] = true
	}
	reg.Intercept(func(w http.ResponseWriter, r *http.Request, q hostile.Request) bool {
		if q.Kind != hostile.Blob || r.Method != http.MethodGet || !layers[q.Ref] {
			return false
		}
		http.Redirect(w, r, base+r.URL.Path, http.StatusTemporaryRedirect)
		return true
	})
}

func layerDigest(t *testing.T, img v1.Image, i int) digest.Digest {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	h, err := ls[i].Digest()
	if err != nil {
		t.Fatal(err)
	}
	return digest.Digest(h.String())
}
