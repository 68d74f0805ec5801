package resolve_test

import (
	"context"
	"errors"
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/resolve"
)

// Resolve a multi-platform image to its arm64 manifest. A registry name
// ("docker.io/library/alpine:3.20") works the same way; this example reads
// the layout kept in the repository so that it runs offline.
func ExampleResolve() {
	ctx := context.Background()
	res, err := resolve.Resolve(ctx, "oci:../testdata/layouts/multiarch:latest",
		resolve.WithPlatform(ocispec.Platform{OS: "linux", Architecture: "arm64"}))
	if err != nil {
		fmt.Println(errdefs.KindOf(err), err)
		return
	}
	fmt.Println("platform:", resolve.FormatPlatform(resolve.Normalize(res.Platform)))
	fmt.Println("indexes walked:", len(res.Indexes))
	fmt.Println("layers:", len(res.Layers))
	// Output:
	// platform: linux/arm64/v8
	// indexes walked: 1
	// layers: 2
}

// Errors carry a kind that callers test with errors.Is.
func ExampleResolve_platformNotFound() {
	_, err := resolve.Resolve(context.Background(), "oci:../testdata/layouts/multiarch:latest",
		resolve.WithPlatform(ocispec.Platform{OS: "linux", Architecture: "riscv64"}))
	fmt.Println(errors.Is(err, errdefs.ErrPlatformNotFound))
	fmt.Println(errdefs.KindOf(err))
	// Output:
	// true
	// platform_not_found
}

func ExampleParsePlatform() {
	p, _ := resolve.ParsePlatform("linux/aarch64")
	fmt.Println(resolve.FormatPlatform(p))
	// Output: linux/arm64/v8
}

// Validate one platform's image of an index against the image spec; build
// attestations, if the index had any, would be reported apart, as valid.
func ExampleValidateImage() {
	ctx := context.Background()
	src, err := resolve.Open(ctx, "oci:../testdata/layouts/multiarch:latest")
	if err != nil {
		fmt.Println(err)
		return
	}
	v, err := resolve.ValidateImage(ctx, src, resolve.WithPlatform(ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}))
	if err != nil {
		fmt.Println(errdefs.KindOf(err), err)
		return
	}
	fmt.Println("problems:", len(v.Problems), "attestations:", len(v.Attestations))
	_, err = resolve.ValidateImage(ctx, src, resolve.WithPlatform(ocispec.Platform{OS: "linux", Architecture: "s390x"}))
	fmt.Println(errdefs.KindOf(err))
	// Output:
	// problems: 0 attestations: 0
	// platform_not_found
}
