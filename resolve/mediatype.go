package resolve

import (
	"github.com/ocifetch/ocifetch/mediatype"
)

// Docker media types (image manifest v2 schema 2 and its predecessors),
// kept here under their old names; package mediatype holds the table.
const (
	MediaTypeDockerManifestList  = mediatype.DockerManifestList
	MediaTypeDockerManifest      = mediatype.DockerManifest
	MediaTypeDockerConfig        = mediatype.DockerConfig
	MediaTypeDockerLayer         = mediatype.DockerLayer
	MediaTypeDockerForeignLayer  = mediatype.DockerForeignLayer
	MediaTypeDockerSchema1       = mediatype.DockerSchema1
	MediaTypeDockerSchema1Signed = mediatype.DockerSchema1Signed
)

func isIndexType(mt string) bool    { return mediatype.IsIndex(mt) }
func isManifestType(mt string) bool { return mediatype.IsManifest(mt) }
func isSchema1(mt string) bool      { return mediatype.IsSchema1(mt) }
func isConfigType(mt string) bool   { return mediatype.IsConfig(mt) }

// IsLayerType reports whether mt is a layer media type this program can
// apply (see mediatype.IsLayer).
func IsLayerType(mt string) bool { return mediatype.IsLayer(mt) }

// IsForeignLayer reports whether mt marks a layer whose content may live
// outside the registry, at the descriptor's URLs (see
// mediatype.IsForeignLayer).
func IsForeignLayer(mt string) bool { return mediatype.IsForeignLayer(mt) }
