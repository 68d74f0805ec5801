package resolve

import (
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Docker media types (image manifest v2 schema 2 and its predecessors).
const (
	MediaTypeDockerManifestList   = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerManifest       = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerConfig         = "application/vnd.docker.container.image.v1+json"
	MediaTypeDockerLayer          = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaTypeDockerForeignLayer   = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	MediaTypeDockerSchema1        = "application/vnd.docker.distribution.manifest.v1+json"
	MediaTypeDockerSchema1Signed  = "application/vnd.docker.distribution.manifest.v1+prettyjws"
	mediaTypeOCINondistributable  = "application/vnd.oci.image.layer.nondistributable.v1.tar"
	mediaTypeOCINondistributableG = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
	mediaTypeOCINondistributableZ = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
)

func isIndexType(mt string) bool {
	return mt == ocispec.MediaTypeImageIndex || mt == MediaTypeDockerManifestList
}

func isManifestType(mt string) bool {
	return mt == ocispec.MediaTypeImageManifest || mt == MediaTypeDockerManifest
}

func isSchema1(mt string) bool {
	return mt == MediaTypeDockerSchema1 || mt == MediaTypeDockerSchema1Signed
}

func isConfigType(mt string) bool {
	return mt == ocispec.MediaTypeImageConfig || mt == MediaTypeDockerConfig
}

// IsLayerType reports whether mt is a layer media type this program can
// apply: OCI tar (plain, gzip, zstd), Docker's gzip layer, and the foreign
// / non-distributable variants of both.
func IsLayerType(mt string) bool {
	switch mt {
	case ocispec.MediaTypeImageLayer, ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerZstd,
		MediaTypeDockerLayer, MediaTypeDockerForeignLayer,
		mediaTypeOCINondistributable, mediaTypeOCINondistributableG, mediaTypeOCINondistributableZ:
		return true
	}
	return false
}

// IsForeignLayer reports whether mt marks a layer whose content may live
// outside the registry, at the descriptor's URLs.
func IsForeignLayer(mt string) bool {
	switch mt {
	case MediaTypeDockerForeignLayer, mediaTypeOCINondistributable, mediaTypeOCINondistributableG, mediaTypeOCINondistributableZ:
		return true
	}
	return false
}
