// Package mediatype is the one table of media types ocifetch reads: which
// are indexes, manifests, configs and layers, in their OCI and Docker
// spellings, and for each layer type how its blob is compressed. Every
// stage asks it rather than keeping its own list: resolve accepts exactly
// the layer types apply can decompress, fetch and gc tell documents from
// layers with it, and the compressed rebuild of a blob (package apply)
// knows from it whether a layer needs a recipe at all.
package mediatype

import (
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Docker media types (image manifest v2 schema 2 and its predecessors).
const (
	DockerManifestList  = "application/vnd.docker.distribution.manifest.list.v2+json"
	DockerManifest      = "application/vnd.docker.distribution.manifest.v2+json"
	DockerConfig        = "application/vnd.docker.container.image.v1+json"
	DockerLayer         = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	DockerForeignLayer  = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	DockerSchema1       = "application/vnd.docker.distribution.manifest.v1+json"
	DockerSchema1Signed = "application/vnd.docker.distribution.manifest.v1+prettyjws"
	// DockerLayerTar is an uncompressed Docker layer: not in Docker's
	// schema 2 text, but written by go-containerregistry
	// (types.DockerUncompressedLayer) and buildkit for uncompressed
	// exports, and read by containerd.
	DockerLayerTar = "application/vnd.docker.image.rootfs.diff.tar"
)

// The OCI non-distributable layer types, deprecated by image-spec 1.1 but
// still found in Windows images.
const (
	OCINondistributable     = "application/vnd.oci.image.layer.nondistributable.v1.tar"
	OCINondistributableGzip = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
	OCINondistributableZstd = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
)

// Compression is how a layer blob wraps its tar.
type Compression int

// The compressions of layer blobs.
const (
	// Uncompressed: the blob is the tar, its digest the diffID; it is
	// rebuilt from a rootfs without a recipe.
	Uncompressed Compression = iota + 1
	// Gzip: one or more RFC 1952 members.
	Gzip
	// Zstd: one or more Zstandard frames.
	Zstd
)

func (c Compression) String() string {
	switch c {
	case Uncompressed:
		return "tar"
	case Gzip:
		return "gzip"
	case Zstd:
		return "zstd"
	}
	return "unknown"
}

// Layer is a row of the table of layer media types.
type Layer struct {
	MediaType   string
	Compression Compression
	// Foreign: the content may live outside the registry, at the
	// descriptor's URLs (Docker's foreign layers, OCI's
	// non-distributable ones).
	Foreign bool
}

// layers is the table: every layer media type this program applies.
var layers = []Layer{
	{ocispec.MediaTypeImageLayer, Uncompressed, false},
	{ocispec.MediaTypeImageLayerGzip, Gzip, false},
	{ocispec.MediaTypeImageLayerZstd, Zstd, false},
	{DockerLayer, Gzip, false},
	{DockerLayerTar, Uncompressed, false},
	{DockerForeignLayer, Gzip, true},
	{OCINondistributable, Uncompressed, true},
	{OCINondistributableGzip, Gzip, true},
	{OCINondistributableZstd, Zstd, true},
}

// Layers returns the table of layer media types, a copy.
func Layers() []Layer { return append([]Layer(nil), layers...) }

// LayerOf returns the row of the layer media type mt; ok is false for a
// type this program does not apply.
func LayerOf(mt string) (l Layer, ok bool) {
	for _, l := range layers {
		if l.MediaType == mt {
			return l, true
		}
	}
	return Layer{}, false
}

// IsIndex reports an image index (manifest list).
func IsIndex(mt string) bool {
	return mt == ocispec.MediaTypeImageIndex || mt == DockerManifestList
}

// IsManifest reports an image manifest.
func IsManifest(mt string) bool {
	return mt == ocispec.MediaTypeImageManifest || mt == DockerManifest
}

// IsSchema1 reports Docker's obsolete schema 1 manifest.
func IsSchema1(mt string) bool {
	return mt == DockerSchema1 || mt == DockerSchema1Signed
}

// IsConfig reports an image config.
func IsConfig(mt string) bool {
	return mt == ocispec.MediaTypeImageConfig || mt == DockerConfig
}

// IsLayer reports a layer media type this program can apply: a row of
// the table (OCI tar, gzip and zstd, Docker's gzip and uncompressed
// layers, and the foreign and non-distributable variants).
func IsLayer(mt string) bool {
	_, ok := LayerOf(mt)
	return ok
}

// IsForeignLayer reports a layer whose content may live outside the
// registry, at the descriptor's URLs.
func IsForeignLayer(mt string) bool {
	l, ok := LayerOf(mt)
	return ok && l.Foreign
}
