package testimage

import (
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// WriteLayout writes an OCI image layout at dir holding each index under
// its name (the org.opencontainers.image.ref.name annotation).
func WriteLayout(t testing.TB, dir string, named map[string]v1.ImageIndex) {
	t.Helper()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	for name, idx := range named {
		if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{ocispec.AnnotationRefName: name})); err != nil {
			t.Fatal(err)
		}
	}
}
