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

// Under PullMissing, a verifier's refusal of the store's copy sends the
// call to the registry, as for an image the store lacks: the store keeps
// signatures only from pulls that checked them, so an image pulled before
// a policy existed (or with --insecure-policy) has none there. Before, the
// image was refused although the registry held what the verifier wanted.
// PullNever still refuses.
func TestPullMissingAsksTheRegistryWhenTheStoreCopyIsRefused(t *testing.T) {
	t.Parallel()
	reg := testregistry.Shared(t)
	img := testimage.Image(t, 1, "linux", "amd64", "")
	ref := reg.Host + "/veto/missing:v1"
	testimage.PushImage(t, ref, img)
	ctx := context.Background()
	work := t.TempDir()
	store := ocifetch.WithStore(filepath.Join(work, "store"))
	if _, err := ocifetch.Pull(ctx, ref, store); err != nil {
		t.Fatal(err)
	}
	// Admits what the registry serves, refuses what the store serves (as
	// a policy does when the signatures are only in the registry).
	var sources []string
	onlyRegistry := verifierFunc(func(ctx context.Context, src resolve.Source, res *resolve.Resolved) error {
		sources = append(sources, src.Reference())
		if strings.HasPrefix(src.Reference(), "oci:") {
			return errdefs.New(errdefs.ErrUntrusted, "no signature in the store")
		}
		return nil
	})
	if _, err := ocifetch.Unpack(ctx, ref, filepath.Join(work, "rootfs"), store,
		ocifetch.WithPullPolicy(ocifetch.PullMissing), ocifetch.WithVerifier(onlyRegistry)); err != nil {
		t.Fatalf("unpack --pull missing: %v (verifier saw %q)", err, sources)
	}
	if len(sources) != 2 || !strings.HasPrefix(sources[0], "oci:") || sources[1] != ref {
		t.Errorf("the verifier saw %q, want the store's copy then the registry's", sources)
	}
	if _, err := ocifetch.Pull(ctx, ref, store, ocifetch.WithPullPolicy(ocifetch.PullNever), ocifetch.WithVerifier(onlyRegistry)); errdefs.KindOf(err) != errdefs.ErrUntrusted {
		t.Errorf("pull --pull never: %v, want untrusted", err)
	}
	// The same for every platform (pull --platform all).
	if _, err := ocifetch.PullAll(ctx, ref, store); err != nil {
		t.Fatal(err)
	}
	sources = nil
	if _, err := ocifetch.PullAll(ctx, ref, store, ocifetch.WithPullPolicy(ocifetch.PullMissing), ocifetch.WithVerifier(onlyRegistry)); err != nil {
		t.Fatalf("pull --platform all --pull missing: %v (verifier saw %q)", err, sources)
	}
	if len(sources) != 2 || !strings.HasPrefix(sources[0], "oci:") || sources[1] != ref {
		t.Errorf("PullAll: the verifier saw %q, want the store's copy then the registry's", sources)
	}
	if _, err := ocifetch.PullAll(ctx, ref, store, ocifetch.WithPullPolicy(ocifetch.PullNever), ocifetch.WithVerifier(onlyRegistry)); errdefs.KindOf(err) != errdefs.ErrUntrusted {
		t.Errorf("pull --platform all --pull never: %v, want untrusted", err)
	}
}

// When the registry cannot be asked (it is down), the verifier's refusal
// of the store's copy stands: untrusted, naming both. Before, the call
// failed with the registry's error (network, exit 6), as if the image
// had never been judged.
func TestPullMissingKeepsTheRefusalWhenTheRegistryIsDown(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	ref := reg.Host + "/veto/down:v1"
	testimage.PushImage(t, ref, testimage.Image(t, 1, "linux", "amd64", ""))
	ctx := context.Background()
	work := t.TempDir()
	store := ocifetch.WithStore(filepath.Join(work, "store"))
	if _, err := ocifetch.Pull(ctx, ref, store); err != nil {
		t.Fatal(err)
	}
	reg.Stop()
	refuseStore := verifierFunc(func(ctx context.Context, src resolve.Source, res *resolve.Resolved) error {
		if strings.HasPrefix(src.Reference(), "oci:") {
			return errdefs.New(errdefs.ErrUntrusted, "no signature in the store")
		}
		return nil
	})
	opts := []ocifetch.Option{store, ocifetch.WithPullPolicy(ocifetch.PullMissing), ocifetch.WithVerifier(refuseStore)}
	_, err := ocifetch.Unpack(ctx, ref, filepath.Join(work, "rootfs"), opts...)
	if errdefs.KindOf(err) != errdefs.ErrUntrusted || !strings.Contains(err.Error(), "no signature in the store") {
		t.Errorf("unpack --pull missing, registry down: %v (%s), want untrusted", err, errdefs.KindOf(err))
	}
	_, err = ocifetch.PullAll(ctx, ref, opts...)
	if errdefs.KindOf(err) != errdefs.ErrUntrusted || !strings.Contains(err.Error(), "no signature in the store") {
		t.Errorf("pull --platform all --pull missing, registry down: %v (%s), want untrusted", err, errdefs.KindOf(err))
	}
}
