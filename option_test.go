package ocifetch_test

import (
	"context"
	"path/filepath"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch"
	"github.com/ocifetch/ocifetch/bundle"
	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/resolve"
)

// TestBadOptionFailsFirst: an option with a bad value fails the call with
// invalid_argument, at every level.
func TestBadOptionFailsFirst(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	work := t.TempDir()
	target := filepath.Join(work, "rootfs")
	store := ocifetch.WithStore(filepath.Join(work, "store"))
	for name, opt := range map[string]ocifetch.Option{
		"empty store":         ocifetch.WithStore(""),
		"empty state dir":     ocifetch.WithStateDir(""),
		"platform without os": ocifetch.WithPlatform(ocispec.Platform{Architecture: "amd64"}),
		"resolve option":      ocifetch.WithResolveOptions(resolve.WithMaxDocumentSize(-1)),
	} {
		_, err := ocifetch.Unpack(ctx, "oci:testdata/layouts/multiarch:latest", target, store, opt)
		if errdefs.KindOf(err) != errdefs.ErrInvalidArgument {
			t.Errorf("%s: err = %v (kind %s), want invalid_argument", name, err, errdefs.KindOf(err))
		}
	}
	if _, err := bundle.Spec(ctx, ocispec.Image{}, work, bundle.WithRootPath("")); errdefs.KindOf(err) != errdefs.ErrInvalidArgument {
		t.Errorf("bundle.WithRootPath(\"\"): err = %v", err)
	}
	if _, err := resolve.Open(ctx, "oci:testdata/layouts/multiarch", resolve.WithPlatform(ocispec.Platform{OS: "linux"})); errdefs.KindOf(err) != errdefs.ErrInvalidArgument {
		t.Errorf("resolve.WithPlatform without architecture: err = %v", err)
	}
}
