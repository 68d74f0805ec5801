package apply

import (
	"os"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/fsroot"
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

// Option configures Apply and ApplyLayer.
type Option func(*options) error

type options struct {
	ownership Ownership
	devices   Devices
	rootOpts  []fsroot.Option
	rec       entryRecorder
}

// WithOwnership sets the ownership policy.
func WithOwnership(o Ownership) Option {
	return func(opts *options) error {
		if o < OwnershipPreserve || o > OwnershipFail {
			return errdefs.New(errdefs.ErrInvalidArgument, "unknown ownership policy %d", o)
		}
		opts.ownership = o
		return nil
	}
}

// WithDevices sets the device policy.
func WithDevices(d Devices) Option {
	return func(opts *options) error {
		if d < DevicesCreate || d > DevicesFail {
			return errdefs.New(errdefs.ErrInvalidArgument, "unknown device policy %d", d)
		}
		opts.devices = d
		return nil
	}
}

// withFallback makes the root handle resolve names without openat2, as on
// old kernels; the tests run every case both ways.
func withFallback() Option {
	return func(opts *options) error {
		opts.rootOpts = append(opts.rootOpts, fsroot.WithFallback())
		return nil
	}
}

// makeOptions applies opts over the defaults, which depend on whether the
// caller is root.
func makeOptions(opts []Option) (*options, error) {
	o := &options{ownership: OwnershipCaller, devices: DevicesSkip, rec: nopRecorder{}}
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
