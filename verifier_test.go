package ocifetch_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/ocifetch/ocifetch"
	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/testutil/testimage"
	"github.com/ocifetch/ocifetch/internal/testutil/testregistry"
	"github.com/ocifetch/ocifetch/resolve"
)

// verifierFunc adapts a function to ocifetch.Verifier.
type verifierFunc func(ctx context.Context, src resolve.Source, res *resolve.Resolved) error

func (f verifierFunc) Verify(ctx context.Context, src resolve.Source, res *resolve.Resolved) error {
	return f(ctx, src, res)
}

// The library's verifier hook runs after resolve and before any layer is
// fetched: it sees the resolved chain and a source it can read referrers
// through, and its refusal fails Pull, Unpack and Bundle without a layer
// request, leaving the target as it was.
func TestVerifierVetoesAPull(t *testing.T) {
	t.Parallel()
	reg := testregistry.Shared(t)
	proxy := testregistry.NewCountingProxy(t, reg.URL)
	img := testimage.Image(t, 2, "linux", "amd64", "")
	ref := proxy.Host() + "/veto/app:v1"
	want := testimage.PushImage(t, ref, img)
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}

	var calls int
	veto := verifierFunc(func(ctx context.Context, src resolve.Source, res *resolve.Resolved) error {
		calls++
		if res.Chain()[0].Digest != digest.Digest(want.String()) || len(res.Layers) != 2 {
			t.Errorf("the verifier saw %v", res.Chain())
		}
		if _, ok := src.(resolve.ReferrersSource); !ok {
			t.Errorf("the verifier cannot read referrers through %T", src)
		}
		return errdefs.New(errdefs.ErrUntrusted, "vetoed by the test")
	})
	ctx := context.Background()
	work := t.TempDir()
	store := ocifetch.WithStore(filepath.Join(work, "store"))
	proxy.Reset()
	for name, call := range map[string]func(target string) error{
		"pull": func(string) error { _, err := ocifetch.Pull(ctx, ref, store, ocifetch.WithVerifier(veto)); return err },
		"unpack": func(d string) error {
			_, err := ocifetch.Unpack(ctx, ref, d, store, ocifetch.WithVerifier(veto))
			return err
		},
		"bundle": func(d string) error {
			_, err := ocifetch.Bundle(ctx, ref, d, store, ocifetch.WithVerifier(veto))
			return err
		},
	} {
		target := filepath.Join(work, name)
		err := call(target)
		if errdefs.KindOf(err) != errdefs.ErrUntrusted || !strings.Contains(err.Error(), "vetoed by the test") {
			t.Errorf("%s: %v, want the verifier's refusal", name, err)
		}
		if _, err := os.Lstat(target); !os.IsNotExist(err) {
			t.Errorf("%s: the target was created: %v", name, err)
		}
	}
	if calls != 3 {
		t.Errorf("the verifier was called %d times for 3 calls", calls)
	}
	for _, l := range m.Layers {
		if n := proxy.Count("/blobs/" + l.Digest.String()); n != 0 {
			t.Errorf("layer %s was requested %d times", l.Digest, n)
		}
	}

	// A verifier that admits lets the unpack go on.
	admit := verifierFunc(func(context.Context, resolve.Source, *resolve.Resolved) error { return nil })
	if _, err := ocifetch.Unpack(ctx, ref, filepath.Join(work, "admitted"), store, ocifetch.WithVerifier(admit)); err != nil {
		t.Fatal(err)
	}
}
