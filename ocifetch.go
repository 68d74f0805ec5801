// Package ocifetch gets container images from a registry onto disk in one
// call, composed from the three stages: resolve (reference → verified
// manifest for one platform), fetch (blobs, verified, into an OCI-layout
// store) and apply (layers into a directory, confined to it).
//
//	res, err := ocifetch.Unpack(ctx, "docker.io/library/alpine:3.20", "/var/lib/engine/rootfs/abc",
//		ocifetch.WithPlatform(p),
//		ocifetch.WithStore("/var/cache/engine/blobs"))
//
// Each stage is also usable alone; see the packages resolve, fetch and
// apply. Errors carry errdefs kinds.
package ocifetch

import (
	"context"
	"errors"
	"fmt"
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
	verifier Verifier
	noKeep   bool // WithKeepBlobs(false)
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

// WithStateDir sets where Unpack and Bundle keep the tar-split metadata,
// the content digests, the shadow store, the lock and the state of the
// root filesystem (default apply.DefaultStateDir of the root filesystem,
// a hidden sibling of it). It must be outside the root filesystem, on the
// same file system, and out of reach of whatever runs in it: verify and
// rebuild trust it.
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
// downloaded, e.g. to show what is about to be pulled (by PullAll, once
// per image of the index).
func WithResolved(fn func(*resolve.Resolved)) Option {
	return func(o *options) error {
		o.resolved = fn
		return nil
	}
}

// Verifier admits or refuses an image after it is resolved and before any
// layer is fetched or applied. It sees the resolved chain (res.Chain():
// the index the reference named, if any, then the manifest) and can read
// what the registry attaches to the image, such as signatures, through src
// (see resolve.ReferrersSource). A refusal should be an error of kind
// errdefs.ErrUntrusted. policy.Policy, a containers-policy.json trust
// policy checking cosign signatures, is one.
type Verifier interface {
	Verify(ctx context.Context, src resolve.Source, res *resolve.Resolved) error
}

// WithVerifier makes Pull, Unpack and Bundle ask v about every image
// before fetching its layers; a refusal fails the call, leaving the target
// directory as it was (documents resolving read may stay in the store).
func WithVerifier(v Verifier) Option {
	return func(o *options) error {
		o.verifier = v
		return nil
	}
}

// verify runs the verifier, if any, on what resolve found.
func (o *options) verify(ctx context.Context, res *resolve.Resolved) error {
	if o.verifier == nil {
		return nil
	}
	return o.verifier.Verify(ctx, res.Source, res)
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

// admit opens the store, resolves ref as the pull policy says, asks the
// verifier and reports the image resolved: what Pull, Unpack and Bundle
// do before they fetch a layer or write anything.
func (o *options) admit(ctx context.Context, ref string) (*fetch.Store, *resolve.Resolved, error) {
	store, err := o.openStore()
	if err != nil {
		return nil, nil, err
	}
	res, stored, err := o.resolveRef(ctx, store, ref)
	if err != nil {
		return nil, nil, err
	}
	if err := o.verify(ctx, res); o.refusedFromStore(stored, err) {
		refused := err
		if res, err = resolve.Resolve(ctx, ref, o.resolve...); err == nil {
			err = o.verify(ctx, res)
		} else {
			err = registryFailed(refused, err)
		}
		if err != nil {
			return nil, nil, err
		}
	} else if err != nil {
		return nil, nil, err
	}
	if o.resolved != nil {
		o.resolved(res)
	}
	return store, res, nil
}

// stateDirOf is the state directory of an unpack into target.
func (o *options) stateDirOf(target string) string {
	if o.stateDir != "" {
		return o.stateDir
	}
	return apply.DefaultStateDir(target)
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
	store, res, err := o.admit(ctx, ref)
	if err != nil {
		return nil, err
	}
	pr, err := fetch.Pull(ctx, res, store, o.fetch...)
	if err != nil {
		return nil, err
	}
	return &Result{Resolved: res, Store: store, Pull: pr}, nil
}

// Unpack resolves ref, fetches it into the store and applies its layers to
// dir, which must be empty or not exist (it is made once ref resolved; a
// symbolic link given as dir is followed). Layer 1 is applied as it
// arrives while the later layers download; every byte is verified (each
// blob against its digest as it streams, each uncompressed layer against
// its diffID). Each layer's tar-split metadata and content digests are
// recorded in the state directory (WithStateDir; default
// apply.DefaultStateDir(dir), beside dir), so that apply.Rebuild and
// apply.Verify can use them later.
//
// Failures follow one rule (apply.Apply has it in full): a failure before
// the first byte leaves dir as it was, not made if it did not exist; a
// failure caught after it (a bad digest, a limit, a cancellation) empties
// dir and removes the state before Unpack returns; after a crash the
// state says "applying", and the next Unpack into dir empties it and
// starts over. A dir holding a complete unpack, or anything that is not
// ours, is refused (invalid_argument); one another Unpack is filling is
// busy, at once, before anything is resolved.
func Unpack(ctx context.Context, ref, dir string, opts ...Option) (*Result, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	stateDir := o.stateDirOf(dir)
	// Fail at once, before the network, on a target Apply would refuse.
	if err := apply.CheckTarget(dir, stateDir); err != nil {
		return nil, err
	}
	// The verifier decides before the target is touched: a refused image
	// leaves it as it was.
	store, res, err := o.admit(ctx, ref)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fopts := o.fetch
	if o.noKeep {
		fopts = append(fopts[:len(fopts):len(fopts)], fetch.WithKeepBlobs(false))
	}
	sess, err := fetch.Start(ctx, res, store, fopts...)
	if err != nil {
		return nil, err
	}
	// The session's stream is verified against the blob digest as it is
	// read, so apply only checks the diffID (and records the digest, for
	// the compressed rebuild of the blob).
	layers := layersFrom(res, func(ctx context.Context, i int) (io.ReadCloser, error) { return sess.Layer(ctx, i) })
	aopts := []apply.Option{
		apply.WithStateDir(stateDir),
		apply.WithImage(res.Reference, res.Manifest.Descriptor.Digest),
	}
	if o.noKeep {
		// Without the blobs, the tree and its state are all there is:
		// the state should take as little room as it can.
		aopts = append(aopts, apply.WithCompactShadow())
	}
	aopts = append(aopts, o.apply...)
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
	recordUnpacked(ctx, store, res, dir, stateDir, !o.noKeep)
	return &Result{Resolved: res, Store: store, Pull: pr, Apply: rep, StateDir: stateDir}, nil
}

// LayersOf returns the layers of an image that was pulled into store, for
// apply.Apply: what resolving found (media type, diffID) with an Open that
// reads the blob from the store, verified against its digest as it is
// read (fetch.Store.Open). It bridges the stages for an embedder that
// pulls first and applies later, maybe offline:
//
//	res, _ := ocifetch.Pull(ctx, ref, ocifetch.WithStore(dir))
//	rep, err := apply.Apply(ctx, rootfs, ocifetch.LayersOf(res.Resolved, res.Store))
//
// A blob missing from the store fails that layer's Open with not_found.
func LayersOf(res *resolve.Resolved, store *fetch.Store) []apply.Layer {
	return layersFrom(res, func(_ context.Context, i int) (io.ReadCloser, error) {
		return store.Open(res.Layers[i].Descriptor)
	})
}

// layersFrom makes apply's layers of res, opened by open(ctx, i). The
// opener verifies the blob's digest, so the layers carry only the diffID,
// which apply checks.
func layersFrom(res *resolve.Resolved, open func(ctx context.Context, i int) (io.ReadCloser, error)) []apply.Layer {
	layers := make([]apply.Layer, len(res.Layers))
	for i, l := range res.Layers {
		layers[i] = apply.Layer{
			MediaType: l.MediaType,
			Digest:    l.Digest,
			Size:      l.Size,
			DiffID:    l.DiffID,
			Verified:  true,
			Open:      func(ctx context.Context) (io.ReadCloser, error) { return open(ctx, i) },
		}
	}
	return layers
}

// Bundle makes an OCI runtime bundle in dir (empty or missing): the image
// unpacked into dir/rootfs, and dir/config.json converted from the image
// config as image-spec conversion.md says (see package bundle). The
// rootfs's state directory is dir/.rootfs.ocifetch unless WithStateDir
// says otherwise.
//
// A bundle is finished by running Bundle again: an unpack that failed or
// crashed follows Unpack's rule, and a bundle whose unpack completed but
// whose config.json could not be written (the image's user missing from
// its /etc/passwd, say, until someone adds it) gets its config.json,
// without unpacking again, once ref still resolves to the image unpacked.
func Bundle(ctx context.Context, ref, dir string, opts ...Option) (*Result, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	rootfs := filepath.Join(dir, "rootfs")
	stateDir := o.stateDirOf(rootfs)
	config := filepath.Join(dir, "config.json")
	if st, err := apply.CheckComplete(stateDir, rootfs); err == nil {
		if _, err := os.Lstat(config); err == nil {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "%s already holds a complete bundle of %s; remove it first", dir, st.Reference)
		}
		store, res, err := o.admit(ctx, ref)
		if err != nil {
			return nil, err
		}
		if res.Manifest.Descriptor.Digest != st.Manifest {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "%s holds an unpack of %s (%s), and %s is now %s; remove %s to bundle it afresh",
				dir, st.Reference, st.Manifest, ref, res.Manifest.Descriptor.Digest, dir)
		}
		if err := writeBundleConfig(ctx, res, dir, rootfs); err != nil {
			return nil, err
		}
		return &Result{Resolved: res, Store: store, StateDir: stateDir}, nil
	}
	// Otherwise dir may hold only what an unfinished bundle leaves.
	if err := checkBundleDir(dir, rootfs, stateDir); err != nil {
		return nil, err
	}
	res, err := Unpack(ctx, ref, rootfs, append(opts, WithStateDir(stateDir))...)
	if err != nil {
		return nil, err
	}
	if err := writeBundleConfig(ctx, res.Resolved, dir, rootfs); err != nil {
		return nil, err
	}
	return res, nil
}

// writeBundleConfig writes dir/config.json for the unpacked rootfs.
func writeBundleConfig(ctx context.Context, res *resolve.Resolved, dir, rootfs string) error {
	spec, err := bundle.Spec(ctx, res.Image, rootfs)
	if err == nil {
		err = bundle.Write(dir, spec)
	}
	if err != nil {
		// The rootfs is complete and stays: running bundle again finishes
		// the bundle once the cause is fixed.
		return fmt.Errorf("%w (the image is unpacked in %s; fix the cause and run bundle again to write %s)", err, rootfs, filepath.Join(dir, "config.json"))
	}
	return nil
}

// checkBundleDir refuses a bundle directory that holds anything but an
// (empty or unfinished) rootfs and its state directory.
func checkBundleDir(dir, rootfs, stateDir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return errdefs.Wrap(err, errdefs.ErrInvalidArgument, "bundle directory %s", dir)
	}
	// Absolute paths compared: the default state directory is absolute
	// (apply.DefaultStateDir) while dir may be relative, and a relative
	// dir's own state was taken for foreign content, so a crashed bundle
	// could not be finished.
	abs := func(p string) string {
		if a, err := filepath.Abs(p); err == nil {
			return a
		}
		return filepath.Clean(p)
	}
	absDir, absRootfs, absState := abs(dir), abs(rootfs), abs(stateDir)
	for _, e := range ents {
		p := filepath.Join(absDir, e.Name())
		if p == absRootfs || p == absState {
			continue
		}
		return errdefs.New(errdefs.ErrInvalidArgument, "bundle directory %s is not empty (it holds %s)", dir, e.Name())
	}
	return nil
}
