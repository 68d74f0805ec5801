package apply

import (
	"cmp"
	"math"
	"os"

	"github.com/opencontainers/go-digest"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/fsroot"
	"github.com/ocifetch/ocifetch/internal/recipe"
)

// Ownership decides what happens to the uid and gid of entries.
type Ownership int

const (
	// OwnershipPreserve gives every entry the uid and gid of its header;
	// where the kernel refuses (not root, an unmapped id in a user
	// namespace) the entry keeps the caller's and a warning is recorded.
	// The default when running as root.
	OwnershipPreserve Ownership = iota + 1
	// OwnershipCaller leaves every entry owned by the caller. The default
	// when not running as root.
	OwnershipCaller
	// OwnershipFail is OwnershipPreserve that fails instead of warning: the
	// tree has the layer's ownership or the apply fails.
	OwnershipFail
)

// Devices decides what happens to character and block device entries.
// FIFOs need no privilege and are always created.
type Devices int

const (
	// DevicesCreate creates device nodes; failing to is an error. The
	// default when running as root.
	DevicesCreate Devices = iota + 1
	// DevicesSkip leaves device nodes out and records a warning for each.
	// The default when not running as root.
	DevicesSkip
	// DevicesFail fails on the first device entry.
	DevicesFail
)

// Option configures Apply, ApplyLayer and Verify; each takes the options
// that concern it and ignores the others.
type Option func(*options) error

type options struct {
	ownership Ownership
	devices   Devices
	rootOpts  []fsroot.Option

	maxLayerBytes int64 // WithMaxLayerBytes, 0 for no limit
	maxTotalBytes int64 // WithMaxTotalBytes, 0 for no limit
	maxEntries    int64 // WithMaxEntries, 0 for no limit
	maxDepth      int   // WithMaxDepth

	progress func(Progress) // WithProgress

	stateDir      string          // WithStateDir
	noShadow      bool            // WithoutShadow
	compactShadow bool            // WithCompactShadow
	noRecipes     bool            // withoutRecipes
	probeOpts     []recipe.Option // withProbe
	imageRef      string          // WithImage
	manifest      digest.Digest   // WithImage

	// Verify's.
	ignored   []string // WithIgnoredXattrs; nil: DefaultIgnoredXattrs
	ignoreSet bool
	dirMtimes bool // WithDirMtimes
}

// WithStateDir makes Apply record, in the directory dir, what Rebuild,
// Check and Verify need: each layer's tar-split metadata and content
// digests, the shadow store of payloads later layers replaced, the
// manifest of the final tree, and state.json, which says whether the
// apply completed and which directory it describes. dir must lie outside
// the target, on the same file system (DefaultStateDir is such a place);
// it is created if missing. It must be empty or hold a state of this
// target: anything else is refused. With it, Apply follows the
// failed-unpack rule and locks the target (see Apply). Only Apply
// records; ApplyLayer refuses this option.
func WithStateDir(dir string) Option {
	return func(opts *options) error {
		if dir == "" {
			return errdefs.New(errdefs.ErrInvalidArgument, "empty state directory")
		}
		opts.stateDir = dir
		return nil
	}
}

// WithMaxLayerBytes fails a layer whose uncompressed stream exceeds n
// bytes, with an error of kind too_large, as soon as byte n+1 is read:
// nothing past the limit is written. It is checked while streaming,
// against the tar as decompressed (headers, padding and whatever follows
// the end-of-archive blocks included, sparse entries as archived), so a
// small blob that decompresses to far more cannot fill the disk or run
// for hours. n = 0, the default, means no limit, for two reasons: an OCI
// descriptor gives the compressed size only, so there is no claimed
// uncompressed size to hold the stream to (the diffID is checked, but only
// at the end), and legitimate layers (CUDA, model weights, game assets)
// are many GiB uncompressed, so any fixed default would refuse real
// images. Callers that apply untrusted images should set one.
func WithMaxLayerBytes(n int64) Option {
	return inRange(n, 0, math.MaxInt64, "negative layer size limit %d", func(o *options) *int64 { return &o.maxLayerBytes })
}

// WithMaxTotalBytes fails the apply, with an error of kind too_large, as
// soon as the uncompressed streams of all its layers together exceed n
// bytes: WithMaxLayerBytes for the whole image. n = 0, the default, means
// no limit.
func WithMaxTotalBytes(n int64) Option {
	return inRange(n, 0, math.MaxInt64, "negative total size limit %d", func(o *options) *int64 { return &o.maxTotalBytes })
}

// WithMaxDepth sets how many directory levels below the target an entry
// may lie, its name's or, through symbolic links among its parents, the
// path it lands on (default DefaultMaxDepth). Apply refuses a deeper
// entry with too_large and records the limit, which Verify and Rebuild
// then enforce on the tree.
func WithMaxDepth(n int) Option {
	return inRange(n, 1, math.MaxInt, "depth limit %d is not positive", func(o *options) *int { return &o.maxDepth })
}

// WithIgnoredXattrs sets the extended attributes Verify does not compare,
// replacing DefaultIgnoredXattrs (security.selinux); with no names, every
// attribute is compared.
func WithIgnoredXattrs(names ...string) Option {
	return func(opts *options) error {
		opts.ignored, opts.ignoreSet = append([]string(nil), names...), true
		return nil
	}
}

// WithDirMtimes makes Verify compare the modification times of
// directories too. They are not compared by default: whatever adds or
// removes an entry changes them, and a directory no layer lists gets the
// time of the unpack.
func WithDirMtimes() Option {
	return func(opts *options) error {
		opts.dirMtimes = true
		return nil
	}
}

func (o *options) ignoredXattrs() []string {
	if o.ignoreSet {
		return o.ignored
	}
	return DefaultIgnoredXattrs
}

// WithMaxEntries fails a layer of more than n tar entries (each header
// Next returns: files, directories, links, whiteouts, PAX global headers;
// a PAX or GNU long-name header counts with the entry it belongs to) with
// an error of kind too_large, when entry n+1 is read. It bounds the time
// and inodes a layer of millions of tiny entries costs. n = 0, the
// default, means no limit.
func WithMaxEntries(n int64) Option {
	return inRange(n, 0, math.MaxInt64, "negative entry limit %d", func(o *options) *int64 { return &o.maxEntries })
}

// WithoutShadow keeps no shadow store: a payload that a later layer
// replaces or removes is deleted as without a state directory, and
// rebuilding its layer then fails with a not_found error naming the file.
func WithoutShadow() Option {
	return func(opts *options) error {
		opts.noShadow = true
		return nil
	}
}

// WithCompactShadow makes Apply (and Confirm) compress the shadow store
// once the layers are applied (see CompactShadow): the state then takes
// less room, for some CPU time at the end of the apply. Without it the
// shadow store is filled by rename(2) alone, and CompactShadow or
// Confirm can compress it later.
func WithCompactShadow() Option {
	return func(opts *options) error {
		opts.compactShadow = true
		return nil
	}
}

// WithImage records the image's reference and manifest digest in
// state.json; both are informational.
func WithImage(reference string, manifest digest.Digest) Option {
	return func(opts *options) error {
		if manifest != "" {
			if err := manifest.Validate(); err != nil {
				return errdefs.Wrap(err, errdefs.ErrInvalidArgument, "manifest digest %q", manifest)
			}
		}
		opts.imageRef, opts.manifest = reference, manifest
		return nil
	}
}

// String returns the policy's name as state.json records it.
func (o Ownership) String() string {
	switch o {
	case OwnershipPreserve:
		return "preserve"
	case OwnershipCaller:
		return "caller"
	case OwnershipFail:
		return "fail"
	}
	return "unknown"
}

// String returns the policy's name as state.json records it.
func (d Devices) String() string {
	switch d {
	case DevicesCreate:
		return "create"
	case DevicesSkip:
		return "skip"
	case DevicesFail:
		return "fail"
	}
	return "unknown"
}

// WithOwnership sets the ownership policy.
func WithOwnership(o Ownership) Option {
	return inRange(o, OwnershipPreserve, OwnershipFail, "unknown ownership policy %d", func(o *options) *Ownership { return &o.ownership })
}

// WithDevices sets the device policy.
func WithDevices(d Devices) Option {
	return inRange(d, DevicesCreate, DevicesFail, "unknown device policy %d", func(o *options) *Devices { return &o.devices })
}

// withFallback makes the root handle resolve names without openat2, as on
// old kernels; the tests run every case both ways.
func withFallback() Option {
	return func(opts *options) error {
		opts.rootOpts = append(opts.rootOpts, fsroot.WithFallback())
		return nil
	}
}

// withoutRecipes records no recipes: the benchmark of what probing
// costs compares with it.
func withoutRecipes() Option {
	return func(opts *options) error {
		opts.noRecipes = true
		return nil
	}
}

// withProbe tunes the recipe probe: the tests scale its 1 MiB prefix
// down with their layers, because the race detector makes compressing a
// MiB take seconds.
func withProbe(ro ...recipe.Option) Option {
	return func(opts *options) error {
		opts.probeOpts = append(opts.probeOpts, ro...)
		return nil
	}
}

// withoutProc makes the root handle behave as where /proc is not mounted.
func withoutProc() Option {
	return func(opts *options) error {
		opts.rootOpts = append(opts.rootOpts, fsroot.WithoutProc())
		return nil
	}
}

// makeOptions applies opts over the defaults, which depend on whether the
// caller is root.
func makeOptions(opts []Option) (*options, error) {
	o := &options{ownership: OwnershipCaller, devices: DevicesSkip, maxDepth: DefaultMaxDepth}
	if os.Geteuid() == 0 {
		o.ownership, o.devices = OwnershipPreserve, DevicesCreate
	}
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// inRange is an Option that sets the field of options that field points
// to to v, or refuses v outside [lo, hi] with invalid_argument, format
// saying what is wrong with v.
func inRange[T cmp.Ordered](v, lo, hi T, format string, field func(*options) *T) Option {
	return func(o *options) error {
		if v < lo || v > hi {
			return errdefs.New(errdefs.ErrInvalidArgument, format, v)
		}
		*field(o) = v
		return nil
	}
}
