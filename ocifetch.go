// Package ocifetch gets container images from a registry onto disk in one
// call, composed from the three stages: resolve (reference → verified
// manifest for one platform), fetch (blobs, verified, into an OCI-layout
// store) and apply (layers into a directory, confined to it).
//
//	res, err := ocifetch.Unpack(ctx, "docker.io/library/alpine:3.20", "/var/lib/engine/rootfs/abc",
//		ocifetch.WithResolveOptions(resolve.WithPlatform(p)),
//		ocifetch.WithStore("/var/cache/engine/blobs"))
//
// Each stage is also usable alone; see the packages resolve, fetch and
// apply. Errors carry errdefs kinds.
package ocifetch

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/apply"
	"github.com/ocifetch/ocifetch/bundle"
	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/fetch"
	"github.com/ocifetch/ocifetch/resolve"
)

// Option configures Pull, Unpack and Bundle. Every option of this module
// has this shape: a bad value makes the call fail with kind
// invalid_argument before it does anything.
type Option func(*options) error

type options struct {
	store    string
	stateDir string
	resolve  []resolve.Option
	fetch    []fetch.Option
	apply    []apply.Option
	resolved func(*resolve.Resolved)
	pull     PullPolicy
}

// WithStore sets the store directory (default fetch.DefaultStoreDir()).
func WithStore(dir string) Option {
	return func(o *options) error {
		if dir == "" {
			return errdefs.New(errdefs.ErrInvalidArgument, "empty store directory")
		}
		o.store = dir
		return nil
	}
}

// WithStateDir sets where Unpack keeps the tar-split metadata, the shadow
// store and the state of the root filesystem (default
// apply.DefaultStateDir(dir), a hidden sibling of dir). It must be outside
// dir, on the same file system.
func WithStateDir(dir string) Option {
	return func(o *options) error {
		if dir == "" {
			return errdefs.New(errdefs.ErrInvalidArgument, "empty state directory")
		}
		o.stateDir = dir
		return nil
	}
}

// WithPlatform selects the platform to resolve an index to (default: the
// host's). It is resolve.WithPlatform, at the top level where containerd
// and go-containerregistry users look for it.
func WithPlatform(p ocispec.Platform) Option {
	return WithResolveOptions(resolve.WithPlatform(p))
}

// WithResolveOptions passes options to resolving (platform, credentials,
// mirrors, ...).
func WithResolveOptions(opts ...resolve.Option) Option {
	return func(o *options) error {
		o.resolve = append(o.resolve, opts...)
		return nil
	}
}

// WithFetchOptions passes options to fetching (jobs, progress, ...).
func WithFetchOptions(opts ...fetch.Option) Option {
	return func(o *options) error {
		o.fetch = append(o.fetch, opts...)
		return nil
	}
}

// WithApplyOptions passes options to applying (ownership and device
// policies, ...).
func WithApplyOptions(opts ...apply.Option) Option {
	return func(o *options) error {
		o.apply = append(o.apply, opts...)
		return nil
	}
}

// WithResolved is called with the resolved image before anything is
// downloaded, e.g. to show what is about to be pulled.
func WithResolved(fn func(*resolve.Resolved)) Option {
	return func(o *options) error {
		o.resolved = fn
		return nil
	}
}

func makeOptions(opts []Option) (*options, error) {
	o := &options{}
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	return o, nil
}

func (o *options) openStore() (*fetch.Store, error) {
	dir := o.store
	if dir == "" {
		d, err := fetch.DefaultStoreDir()
		if err != nil {
			return nil, err
		}
		dir = d
	}
	return fetch.OpenStore(dir)
}

// Result is what Pull and Unpack did.
type Result struct {
	Resolved *resolve.Resolved
	Store    *fetch.Store
	Pull     *fetch.Result
	Apply    *apply.Report // nil for Pull
	// StateDir holds the tar-split metadata and apply state (Unpack and
	// Bundle); apply.Rebuild and apply.Verify read it.
	StateDir string
}

// Pull resolves ref and fetches its config and layers into the store.
func Pull(ctx context.Context, ref string, opts ...Option) (*Result, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	store, err := o.openStore()
	if err != nil {
		return nil, err
	}
	res, err := o.resolveRef(ctx, store, ref)
	if err != nil {
		return nil, err
	}
	if o.resolved != nil {
		o.resolved(res)
	}
	pr, err := fetch.Pull(ctx, res, store, o.fetch...)
	if err != nil {
		return nil, err
	}
	return &Result{Resolved: res, Store: store, Pull: pr}, nil
}

// Unpack resolves ref, fetches it into the store and applies its layers to
// dir, which must be empty or not exist. Layer 1 is applied as it arrives
// while the later layers download; every byte is verified (each blob
// against its digest as it streams, each uncompressed layer against its
// diffID). Each layer's tar-split metadata is recorded in the state
// directory (WithStateDir), so that apply.Rebuild can reproduce it later.
//
// A dir left incomplete by an earlier Unpack that crashed or failed (its
// state says "applying") is wiped and unpacked again; a complete one is
// refused, as is any other non-empty dir.
func Unpack(ctx context.Context, ref, dir string, opts ...Option) (*Result, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	stateDir := o.stateDir
	if stateDir == "" {
		stateDir = apply.DefaultStateDir(dir)
	}
	if err := prepareTarget(dir, stateDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "creating target")
	}
	store, err := o.openStore()
	if err != nil {
		return nil, err
	}
	res, err := o.resolveRef(ctx, store, ref)
	if err != nil {
		return nil, err
	}
	if o.resolved != nil {
		o.resolved(res)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sess, err := fetch.Start(ctx, res, store, o.fetch...)
	if err != nil {
		return nil, err
	}
	layers := make([]apply.Layer, len(res.Layers))
	for i, l := range res.Layers {
		i := i
		// The session's stream is verified against the blob digest as it
		// is read, so apply only checks the diffID.
		layers[i] = apply.Layer{
			MediaType: l.MediaType,
			DiffID:    l.DiffID,
			Open:      func(ctx context.Context) (io.ReadCloser, error) { return sess.Layer(ctx, i) },
		}
	}
	aopts := append([]apply.Option{
		apply.WithStateDir(stateDir),
		apply.WithImage(res.Reference, res.Manifest.Descriptor.Digest),
	}, o.apply...)
	rep, aerr := apply.Apply(ctx, dir, layers, aopts...)
	if aerr != nil {
		cancel()
		sess.Wait()
		return nil, aerr
	}
	pr, err := sess.Wait()
	if err != nil {
		return nil, err
	}
	return &Result{Resolved: res, Store: store, Pull: pr, Apply: rep, StateDir: stateDir}, nil
}

// prepareTarget makes dir ready for a fresh apply. A tree whose state says
// an earlier apply did not finish is ours and incomplete: it is removed
// with its state. Anything else already there is refused, since layers on
// top of an unknown tree would not make the image.
func prepareTarget(dir, stateDir string) error {
	st, err := apply.Status(stateDir)
	switch {
	case err == nil && st.Status == apply.StatusComplete:
		if empty, _ := isEmptyDir(dir); !empty {
			return errdefs.New(errdefs.ErrInvalidArgument, "%s already holds a complete unpack of %s; remove it (and %s) first", dir, st.Reference, stateDir)
		}
	case err == nil:
		// Interrupted: repair by starting over.
		if err := os.RemoveAll(dir); err != nil {
			return errdefs.Wrap(err, errdefs.ErrInternal, "removing the incomplete tree %s", dir)
		}
		if err := os.RemoveAll(stateDir); err != nil {
			return errdefs.Wrap(err, errdefs.ErrInternal, "removing the incomplete state %s", stateDir)
		}
		return nil
	}
	return checkEmptyTarget(dir)
}

func isEmptyDir(dir string) (bool, error) {
	f, err := os.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if err != nil && err != io.EOF {
		return false, err
	}
	return len(names) == 0, nil
}

// checkEmptyTarget refuses to apply over something that is already there:
// layers on top of an unknown tree would not make the image.
func checkEmptyTarget(dir string) error {
	f, err := os.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return errdefs.Wrap(err, errdefs.ErrInvalidArgument, "target %s", dir)
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if err != nil && err != io.EOF {
		return errdefs.Wrap(err, errdefs.ErrInvalidArgument, "target %s", dir)
	}
	if len(names) > 0 {
		return errdefs.New(errdefs.ErrInvalidArgument, "target %s is not empty", dir)
	}
	return nil
}

// Bundle makes an OCI runtime bundle in dir (empty or missing): the image
// unpacked into dir/rootfs, and dir/config.json converted from the image
// config as image-spec conversion.md says (see package bundle).
func Bundle(ctx context.Context, ref, dir string, opts ...Option) (*Result, error) {
	rootfs := filepath.Join(dir, "rootfs")
	// A bundle whose unpack was interrupted holds its rootfs and state:
	// Unpack repairs it. Otherwise the directory must be empty.
	if _, err := apply.Status(apply.DefaultStateDir(rootfs)); err != nil {
		if err := checkEmptyTarget(dir); err != nil {
			return nil, err
		}
	}
	res, err := Unpack(ctx, ref, rootfs, opts...)
	if err != nil {
		return nil, err
	}
	spec, err := bundle.Spec(ctx, res.Resolved.Image, rootfs)
	if err != nil {
		return nil, err
	}
	if err := bundle.Write(dir, spec); err != nil {
		return nil, err
	}
	return res, nil
}
