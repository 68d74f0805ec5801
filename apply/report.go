package apply

import (
	"time"

	"github.com/opencontainers/go-digest"
)

// Report describes what Apply did, one LayerReport per layer applied
// (including, on failure, the layer that failed).
type Report struct {
	Layers []LayerReport
}

// LayerReport counts what one layer put into the tree.
type LayerReport struct {
	DiffID    digest.Digest // digest of the uncompressed stream as read
	TarBytes  int64         // length of the uncompressed stream
	Entries   int           // tar entries read, whiteouts included
	Files     int           // regular files written
	Bytes     int64         // content of regular files written (sparse files: holes included)
	Dirs      int           // directory entries applied
	Symlinks  int           // symbolic links created
	Hardlinks int           // hard links created
	Specials  int           // device nodes and FIFOs created
	Whiteouts int           // whiteout and opaque markers applied
	Warnings  []Warning     // what was applied only partly, first maxWarnings
	// WarningsDropped counts warnings beyond the first maxWarnings.
	WarningsDropped int
	// Duration is how long the layer took in Apply, from opening its
	// blob until it was verified and recorded; with a blob still
	// downloading, that includes waiting for its bytes.
	Duration time.Duration
}

// maxWarnings bounds Warnings: an image full of devices or of xattrs the
// file system refuses must not grow the report without bound.
const maxWarnings = 1000

// Warning is something the layer asked for that this apply left out.
type Warning struct {
	Path    string      `json:"path"`    // cleaned entry name, relative to the target
	Kind    WarningKind `json:"kind"`    // what was left out
	Message string      `json:"message"` // for people, with the cause
}

// WarningKind classifies warnings.
type WarningKind string

// The warning kinds.
const (
	WarnDeviceSkipped WarningKind = "device_skipped" // DevicesSkip left a device node out
	WarnXattrSkipped  WarningKind = "xattr_skipped"  // the file system or kernel refused an xattr
	WarnOwnerKept     WarningKind = "owner_kept"     // OwnershipPreserve could not change the owner
	WarnAUFSMetadata  WarningKind = "aufs_metadata"  // a .wh..wh.* AUFS metadata entry was ignored
)

func (r *LayerReport) warn(path string, kind WarningKind, msg string) {
	if len(r.Warnings) >= maxWarnings {
		r.WarningsDropped++
		return
	}
	r.Warnings = append(r.Warnings, Warning{Path: path, Kind: kind, Message: msg})
}
