// Package mediatype is the one table of media types ocifetch reads: which
// are indexes, manifests, configs and layers, in their OCI and Docker
// spellings. Every stage asks it rather than keeping its own list.
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
)

// The OCI non-distributable layer types, deprecated by image-spec 1.1 but
// still found in Windows images.
const (
	OCINondistributable     = "application/vnd.oci.image.layer.nondistributable.v1.tar"
	OCINondistributableGzip = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
	OCINondistributableZstd = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
)

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

// IsLayer reports a layer media type this program can apply: OCI tar
// (plain, gzip, zstd), Docker's gzip layer, and the foreign /
// non-distributable variants of both.
func IsLayer(mt string) bool {
	switch mt {
	case ocispec.MediaTypeImageLayer, ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerZstd,
		DockerLayer, DockerForeignLayer,
		OCINondistributable, OCINondistributableGzip, OCINondistributableZstd:
		return true
	}
	return false
}

// IsForeignLayer reports a layer whose content may live outside the
// registry, at the descriptor's URLs.
func IsForeignLayer(mt string) bool {
	switch mt {
	case DockerForeignLayer, OCINondistributable, OCINondistributableGzip, OCINondistributableZstd:
		return true
	}
	return false
}
