package resolve

import (
	"github.com/ocifetch/ocifetch/source"
)

// Source turns descriptors into bytes; it is source.Source, which moved
// to package source with everything else that talks to registries. The
// name stays here so that code written against resolve keeps compiling.
type Source = source.Source

// Mirrored is source.Mirrored: a Source that can fetch the same content
// from several hosts, mirrors first.
type Mirrored = source.Mirrored

// ReferrersSource is source.ReferrersSource: a Source that can list an
// image's other tags and OCI 1.1 referrers, where verifiers find
// signatures.
type ReferrersSource = source.ReferrersSource
