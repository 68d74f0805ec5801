// Command mklayout writes the small multi-platform OCI image layout kept in
// testdata/layouts/multiarch (package internal/demoimage builds it), used by
// the README's first command and by tests that need a fixed image. Run from
// the repository root:
//
//	go run ./internal/testutil/testimage/mklayout testdata/layouts/multiarch
package main

import (
	"fmt"
	"os"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/internal/demoimage"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: mklayout DIR")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "mklayout:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	idx, err := demoimage.Index()
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	return lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{ocispec.AnnotationRefName: "latest"}))
}
