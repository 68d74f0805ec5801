package fetch_test

import (
	"context"
	"fmt"
	"os"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/fetch"
	"github.com/ocifetch/ocifetch/resolve"
)

// Pull an image into a store: every blob verified, the image recorded in
// the store's index.json. The source here is the layout kept in the
// repository; a registry name works the same way.
func ExamplePull() {
	dir, _ := os.MkdirTemp("", "store-")
	defer os.RemoveAll(dir)
	store, err := fetch.OpenStore(dir)
	if err != nil {
		fmt.Println(err)
		return
	}
	amd64 := ocispec.Platform{OS: "linux", Architecture: "amd64"}
	res, err := resolve.Resolve(context.Background(), "oci:../testdata/layouts/multiarch:latest", resolve.WithPlatform(amd64))
	if err != nil {
		fmt.Println(err)
		return
	}
	out, err := fetch.Pull(context.Background(), res, store, fetch.WithRefName("demo:latest"))
	if err != nil {
		fmt.Println(err)
		return
	}
	desc, _ := store.Lookup("demo:latest", &amd64)
	fmt.Println(len(out.Layers), "layers;", desc.Digest == res.Manifest.Descriptor.Digest)
	// Output: 2 layers; true
}
