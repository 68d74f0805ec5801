package ocifetch

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/fetch"
	"github.com/ocifetch/ocifetch/resolve"
)

// PullPolicy says when Pull, PullAll, Unpack and Bundle ask the registry
// and when they use what the store holds. The names are podman's.
type PullPolicy string

const (
	// PullAlways resolves the reference through the registry every time
	// (blobs already in the store are still not downloaded again). It is
	// the default.
	PullAlways PullPolicy = "always"
	// PullMissing uses the image the store holds under the reference, for
	// the platform asked for, when every blob of it is there; otherwise it
	// pulls as PullAlways does, and so it does when the verifier refuses
	// the store's copy (which may lack the signatures the registry has).
	PullMissing PullPolicy = "missing"
	// PullNever never contacts a registry: the image must be in the
	// store, or the call fails with not_found (platform_not_found when the
	// store holds the reference for other platforms only).
	PullNever PullPolicy = "never"
)

// ParsePullPolicy reads "always", "missing" or "never".
func ParsePullPolicy(s string) (PullPolicy, error) {
	switch p := PullPolicy(strings.ToLower(strings.TrimSpace(s))); p {
	case PullAlways, PullMissing, PullNever:
		return p, nil
	}
	return "", errdefs.New(errdefs.ErrInvalidArgument, "invalid pull policy %q: want always, missing or never", s)
}

// WithPullPolicy sets when to ask the registry (default PullAlways).
// References to local layouts and archives (oci:, oci-archive:,
// docker-archive:) never touch the network and are read as they are.
func WithPullPolicy(p PullPolicy) Option {
	return func(o *options) error {
		if _, err := ParsePullPolicy(string(p)); err != nil {
			return err
		}
		o.pull = p
		return nil
	}
}

// isLocalRef reports whether ref names a layout or archive on this
// machine rather than a registry.
func isLocalRef(ref string) bool {
	for _, p := range []string{"oci:", "oci-archive:", "docker-archive:"} {
		if strings.HasPrefix(ref, p) {
			return true
		}
	}
	return false
}

// resolveRef resolves ref as the pull policy says: through the registry,
// or from the store (stored is true then).
func (o *options) resolveRef(ctx context.Context, store *fetch.Store, ref string) (*resolve.Resolved, bool, error) {
	if o.pull == "" || o.pull == PullAlways || isLocalRef(ref) {
		res, err := resolve.Resolve(ctx, ref, o.resolve...)
		return res, false, err
	}
	res, err := o.fromStore(ctx, store, ref, func(ctx context.Context, src resolve.Source) (any, error) {
		res, err := resolve.ResolveSource(ctx, src, o.resolve...)
		if err != nil {
			return nil, err
		}
		for i, l := range res.Layers {
			if err := store.Check(ctx, l.Descriptor); err != nil {
				return nil, errdefs.Wrap(err, errdefs.KindOf(err), "layer %d", i+1)
			}
		}
		return res, nil
	})
	switch {
	case err == nil:
		return res.(*resolve.Resolved), true, nil
	case o.pull == PullNever || errdefs.KindOf(err) == errdefs.ErrCanceled:
		return nil, false, err
	}
	r, err := resolve.Resolve(ctx, ref, o.resolve...)
	return r, false, err
}

// resolveAllRef is resolveRef for every platform: from the store, the
// reference must be recorded as a whole index (pull of every platform).
func (o *options) resolveAllRef(ctx context.Context, store *fetch.Store, ref string) (*resolve.ResolvedAll, bool, error) {
	if o.pull == "" || o.pull == PullAlways || isLocalRef(ref) {
		ra, err := resolve.ResolveAll(ctx, ref, o.resolve...)
		return ra, false, err
	}
	res, err := o.fromStore(ctx, store, ref, func(ctx context.Context, src resolve.Source) (any, error) {
		ra, err := resolve.ResolveAllSource(ctx, src, o.resolve...)
		if err != nil {
			return nil, err
		}
		if len(ra.Indexes) == 0 && ra.Root.Descriptor.Annotations[fetch.AnnotationIndexes] != "" {
			return nil, errdefs.New(errdefs.ErrNotFound, "the store holds it for %s only, not as a whole index; pull it with --platform all",
				resolve.FormatPlatform(ra.Images[0].Platform))
		}
		for _, im := range ra.Images {
			for i, l := range im.Layers {
				if err := store.Check(ctx, l.Descriptor); err != nil {
					return nil, errdefs.Wrap(err, errdefs.KindOf(err), "layer %d of %s", i+1, resolve.FormatPlatform(im.Platform))
				}
			}
		}
		for _, a := range ra.Artifacts {
			for _, b := range append(a.Blobs, a.Manifest.Descriptor) {
				if ok, _ := store.Has(b); !ok {
					return nil, errdefs.New(errdefs.ErrNotFound, "blob %s is not in the store", b.Digest)
				}
			}
		}
		return ra, nil
	})
	switch {
	case err == nil:
		return res.(*resolve.ResolvedAll), true, nil
	case o.pull == PullNever || errdefs.KindOf(err) == errdefs.ErrCanceled:
		return nil, false, err
	}
	ra, err := resolve.ResolveAll(ctx, ref, o.resolve...)
	return ra, false, err
}

// refusedFromStore reports whether a verifier's refusal of an image the
// store served should send PullMissing to the registry, as for an image
// the store lacks: the store keeps signatures only from pulls that checked
// them (a pull before the policy existed, or with --insecure-policy, kept
// none), and the registry may hold what the verifier wants.
func (o *options) refusedFromStore(stored bool, err error) bool {
	return stored && o.pull == PullMissing && errdefs.Is(err, errdefs.ErrUntrusted)
}

// registryFailed is the error when the registry, asked because the
// verifier refused the store's copy, could not be resolved: the refusal
// stands (untrusted), with why the registry did not help. Reported as
// the registry's failure (network, exit 6), a refused image read as one
// never judged, that a retry might admit.
func registryFailed(refused, err error) error {
	return errdefs.Wrap(err, errdefs.ErrUntrusted, "%v; asking the registry instead failed", refused)
}

// fromStore resolves ref from what the store holds under the name a pull
// of ref records (fetch.DefaultRefName of its normalized form) or, for a
// reference pinned by digest, under that digest. Nothing goes to the
// network: opening a registry reference does no I/O. The result keeps the
// normalized registry reference, so that it is recorded under the same
// name, and reads its layers from the store itself.
func (o *options) fromStore(ctx context.Context, store *fetch.Store, ref string, resolveFrom func(context.Context, resolve.Source) (any, error)) (any, error) {
	src, err := resolve.Open(ctx, ref, o.resolve...)
	if err != nil {
		return nil, err
	}
	normalized := src.Reference()
	name := fetch.DefaultRefName(normalized)
	var pinned digest.Digest
	if i := strings.LastIndex(normalized, "@"); i >= 0 {
		if d, err := digest.Parse(normalized[i+1:]); err == nil {
			pinned = d
		}
	}
	try := func(name string, pinned digest.Digest) (any, error) {
		lsrc, err := resolve.OpenLayout(store.Dir(), name, pinned, o.resolve...)
		if err != nil {
			return nil, err
		}
		res, err := resolveFrom(ctx, lsrc)
		if err != nil {
			return nil, err
		}
		switch r := res.(type) {
		case *resolve.Resolved:
			r.Reference = normalized
			if err := restoreChain(store, r); err != nil {
				return nil, err
			}
		case *resolve.ResolvedAll:
			r.Reference = normalized
			for _, im := range r.Images {
				im.Reference = normalized
			}
		}
		return res, nil
	}
	res, err := try(name, "")
	if err != nil && pinned != "" && errdefs.KindOf(err) == errdefs.ErrNotFound {
		// Content addressed: any copy of the digest in the store will do.
		res, err = try("", pinned)
	}
	if err != nil {
		kind := errdefs.KindOf(err)
		if kind != errdefs.ErrNotFound && kind != errdefs.ErrPlatformNotFound && kind != errdefs.ErrCanceled && kind != errdefs.ErrDigestMismatch {
			kind = errdefs.ErrNotFound
		}
		return nil, errdefs.Wrap(err, kind, "%s is not usable from the store %s", normalized, store.Dir())
	}
	return res, nil
}

// restoreChain puts back in front of a manifest resolved from the store
// the indexes its reference resolved through when it was pulled (recorded
// as fetch.AnnotationIndexes), so that the chain starts where the
// registry's did: a signature names that first digest, and offline
// verification must find it. Each index is read verified and must list
// the next document of the chain.
func restoreChain(store *fetch.Store, r *resolve.Resolved) error {
	list := r.Manifest.Descriptor.Annotations[fetch.AnnotationIndexes]
	if len(r.Indexes) > 0 || list == "" {
		return nil
	}
	var chain []resolve.Blob
	for _, s := range strings.Split(list, ",") {
		d, err := digest.Parse(s)
		if err != nil {
			return errdefs.Wrap(err, errdefs.ErrManifestInvalid, "index digest %q recorded for %s", s, r.Manifest.Descriptor.Digest)
		}
		b, err := readStoredIndex(store, d)
		if err != nil {
			return err
		}
		chain = append(chain, b)
	}
	for i, b := range chain {
		next := r.Manifest.Descriptor.Digest
		if i+1 < len(chain) {
			next = chain[i+1].Descriptor.Digest
		}
		var idx ocispec.Index
		if err := json.Unmarshal(b.Data, &idx); err != nil {
			return errdefs.Wrap(err, errdefs.ErrManifestInvalid, "stored index %s", b.Descriptor.Digest)
		}
		if !slices.ContainsFunc(idx.Manifests, func(m ocispec.Descriptor) bool { return m.Digest == next }) {
			return errdefs.New(errdefs.ErrManifestInvalid, "stored index %s does not list %s, which it was recorded as leading to", b.Descriptor.Digest, next)
		}
	}
	r.Indexes = chain
	return nil
}

// readStoredIndex reads an index blob of the store, verified, capped as
// every document is.
func readStoredIndex(store *fetch.Store, d digest.Digest) (resolve.Blob, error) {
	path, err := store.BlobPath(d)
	if err != nil {
		return resolve.Blob{}, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return resolve.Blob{}, errdefs.Wrap(err, errdefs.ErrNotFound, "index %s is not in the store", d)
	}
	if fi.Size() > resolve.DefaultMaxDocumentSize {
		return resolve.Blob{}, errdefs.New(errdefs.ErrTooLarge, "stored index %s is %d bytes", d, fi.Size())
	}
	desc := ocispec.Descriptor{Digest: d, Size: fi.Size()}
	rc, err := store.Open(desc)
	if err != nil {
		return resolve.Blob{}, err
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return resolve.Blob{}, err
	}
	var probe struct {
		MediaType string `json:"mediaType"`
	}
	_ = json.Unmarshal(data, &probe)
	desc.MediaType = probe.MediaType
	if desc.MediaType == "" {
		desc.MediaType = ocispec.MediaTypeImageIndex
	}
	return resolve.Blob{Descriptor: desc, Data: data}, nil
}

// AllResult is what PullAll did.
type AllResult struct {
	Resolved *resolve.ResolvedAll
	Store    *fetch.Store
	Pull     *fetch.AllResult
}

// PullAll resolves ref for every platform it offers and fetches all of it
// into the store — the index, each platform's image, and the other
// manifests the index lists, such as build attestations — recording the
// index as one entry of the store's index.json. WithPlatform does not
// apply; WithPullPolicy does.
func PullAll(ctx context.Context, ref string, opts ...Option) (*AllResult, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	store, err := o.openStore()
	if err != nil {
		return nil, err
	}
	ra, stored, err := o.resolveAllRef(ctx, store, ref)
	if err != nil {
		return nil, err
	}
	// Every image of the index shares its root, which is what a signature
	// names: one verdict covers them all.
	if len(ra.Images) > 0 {
		if err := o.verify(ctx, ra.Images[0]); o.refusedFromStore(stored, err) {
			refused := err
			if ra, err = resolve.ResolveAll(ctx, ref, o.resolve...); err == nil && len(ra.Images) > 0 {
				err = o.verify(ctx, ra.Images[0])
			} else if err != nil {
				err = registryFailed(refused, err)
			}
			if err != nil {
				return nil, err
			}
		} else if err != nil {
			return nil, err
		}
	}
	if o.resolved != nil {
		for _, im := range ra.Images {
			o.resolved(im)
		}
	}
	pr, err := fetch.PullAll(ctx, ra, store, o.fetch...)
	if err != nil {
		return nil, err
	}
	return &AllResult{Resolved: ra, Store: store, Pull: pr}, nil
}
