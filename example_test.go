package ocifetch_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch"
	"github.com/ocifetch/ocifetch/apply"
)

// Unpack an image into a directory in one call. A registry name works the
// same way; this example reads the layout kept in the repository so that
// it runs offline.
func ExampleUnpack() {
	work, _ := os.MkdirTemp("", "example-")
	defer os.RemoveAll(work)

	res, err := ocifetch.Unpack(context.Background(), "oci:testdata/layouts/multiarch:latest", filepath.Join(work, "rootfs"),
		ocifetch.WithStore(filepath.Join(work, "store")),
		ocifetch.WithPlatform(ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}))
	if err != nil {
		fmt.Println(err)
		return
	}
	motd, _ := os.ReadFile(filepath.Join(work, "rootfs", "etc", "motd"))
	fmt.Printf("%d layers applied; /etc/motd: %s", len(res.Apply.Layers), motd)
	// Output: 2 layers applied; /etc/motd: built for arm
}

// Pull an image into a store, then apply it from the store alone: LayersOf
// gives apply.Apply the pulled layers, each read verified from the store.
func ExampleLayersOf() {
	work, _ := os.MkdirTemp("", "example-")
	defer os.RemoveAll(work)
	ctx := context.Background()

	res, err := ocifetch.Pull(ctx, "oci:testdata/layouts/multiarch:latest",
		ocifetch.WithStore(filepath.Join(work, "store")),
		ocifetch.WithPlatform(ocispec.Platform{OS: "linux", Architecture: "arm64"}))
	if err != nil {
		fmt.Println(err)
		return
	}
	rootfs := filepath.Join(work, "rootfs")
	rep, err := apply.Apply(ctx, rootfs, ocifetch.LayersOf(res.Resolved, res.Store))
	if err != nil {
		fmt.Println(err)
		return
	}
	motd, _ := os.ReadFile(filepath.Join(rootfs, "etc", "motd"))
	fmt.Printf("%d layers applied from the store; /etc/motd: %s", len(rep.Layers), motd)
	// Output: 2 layers applied from the store; /etc/motd: built for arm64
}
