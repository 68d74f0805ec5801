package bundle_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/bundle"
)

// Convert an image config into a runtime config; the user is looked up in
// the unpacked root filesystem.
func ExampleSpec() {
	rootfs, _ := os.MkdirTemp("", "rootfs-")
	defer os.RemoveAll(rootfs)
	os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755)
	os.WriteFile(filepath.Join(rootfs, "etc", "passwd"), []byte("app:x:1001:1001::/home/app:/bin/sh\n"), 0o644)

	img := ocispec.Image{Config: ocispec.ImageConfig{
		User: "app", Entrypoint: []string{"/app"}, Cmd: []string{"--serve"}, WorkingDir: "/srv",
	}}
	spec, err := bundle.Spec(context.Background(), img, rootfs)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(spec.Process.Args, spec.Process.Cwd, spec.Process.User.UID, spec.Process.User.GID)
	// Output: [/app --serve] /srv 1001 1001
}
