package resolve

import (
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Blob is a small document (index, manifest or config) that resolving read
// and verified: its descriptor and its exact bytes. Later stages store these
// bytes as they are instead of fetching them again.
type Blob struct {
	Descriptor ocispec.Descriptor
	Data       []byte
	// From names the host (a registry or mirror URL, without user info)
	// or the file that served Data.
	From string
}

// Layer is a layer descriptor paired with the diffID the config gives it:
// the sha256 of the layer's uncompressed tar.
type Layer struct {
	ocispec.Descriptor
	DiffID digest.Digest
}

// Resolved is what a reference resolves to for one platform: every document
// walked on the way, each verified against its digest, size and media type.
type Resolved struct {
	// Reference is the normalized reference, e.g.
	// "docker.io/library/alpine:3.20" or "oci:/abs/layout:tag".
	Reference string

	// Source is where the bytes came from; the fetch stage reads layers
	// from it.
	Source Source

	// Indexes are the image indexes (manifest lists) walked, outermost
	// first. Empty when the reference names a manifest directly.
	Indexes []Blob

	// Manifest is the chosen image manifest; ImageManifest is it parsed.
	Manifest      Blob
	ImageManifest ocispec.Manifest

	// Config is the image config blob; Image is it parsed.
	Config Blob
	Image  ocispec.Image

	// Platform is the platform of the chosen manifest. Platforms lists the
	// platforms the index offered, in index order (empty without an index).
	Platform  ocispec.Platform
	Platforms []ocispec.Platform

	// Layers are the manifest's layers, lowest first, with their diffIDs.
	Layers []Layer
}

// Chain returns the descriptors walked from the root to the manifest.
func (r *Resolved) Chain() []ocispec.Descriptor {
	out := make([]ocispec.Descriptor, 0, len(r.Indexes)+1)
	for _, b := range r.Indexes {
		out = append(out, b.Descriptor)
	}
	return append(out, r.Manifest.Descriptor)
}
