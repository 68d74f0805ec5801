package source

import (
	"context"
	"encoding/json"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
)

// ReferrersSource is implemented by sources that can find what is attached
// to an image in its own repository: other tags (cosign keeps its classic
// signatures at the tag "sha256-<hex>.sig") and OCI 1.1 referrers (the
// manifests whose subject is the image, e.g. sigstore bundles). Verifiers
// use it to find signatures; what it returns is a listing, not content:
// every document read through it must be checked against its digest.
type ReferrersSource interface {
	Source

	// Tag returns the descriptor that tag names in the source's
	// repository, kind not_found when there is no such tag. A registry
	// source reads the document at once (verified) and serves the Fetch
	// of it that follows from memory.
	Tag(ctx context.Context, tag string) (ocispec.Descriptor, error)

	// Referrers lists the manifests whose subject is d: the registry's
	// referrers API, or, where the registry has none (it answers 404),
	// the index at the fallback tag "<alg>-<hex>" that clients push
	// instead. No referrers is an empty list, not an error.
	Referrers(ctx context.Context, d digest.Digest) ([]ocispec.Descriptor, error)
}

var _ ReferrersSource = (*registrySource)(nil)

// Tag asks the hosts that may resolve tags, in order, like Root.
func (s *registrySource) Tag(ctx context.Context, tag string) (ocispec.Descriptor, error) {
	if err := validTag(tag); err != nil {
		return ocispec.Descriptor{}, err
	}
	may := func(m Mirror) bool { return m.can("resolve") }
	d, ok, err := askHosts(ctx, s, may, func(e *endpoint) (ocispec.Descriptor, bool, error) {
		d, err := e.lookup(ctx, tag, "", false)
		return d, err == nil, err
	})
	if !ok && err == nil {
		err = errdefs.New(errdefs.ErrInvalidArgument, "%s: no configured host may resolve tags (capabilities)", s.ref)
	}
	return d, err
}

// Referrers asks the hosts that may resolve tags, in order, and returns the
// first non-empty answer: a mirror that does not carry referrers must not
// hide the upstream's.
func (s *registrySource) Referrers(ctx context.Context, d digest.Digest) ([]ocispec.Descriptor, error) {
	if err := CheckDigest(d); err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "referrers")
	}
	answered := false
	may := func(m Mirror) bool { return m.can("resolve") }
	list, ok, err := askHosts(ctx, s, may, func(e *endpoint) ([]ocispec.Descriptor, bool, error) {
		list, err := e.referrers(ctx, d)
		answered = answered || err == nil
		return list, err == nil && len(list) > 0, err
	})
	if ok || answered && ctx.Err() == nil {
		return list, nil // a list, or a host that answered none
	}
	return nil, err
}

// referrers asks one host: the referrers API first; a 404 means the host
// has no such API (a registry that has one never answers 404 there), and
// the fallback tag is read instead.
func (e *endpoint) referrers(ctx context.Context, d digest.Digest) ([]ocispec.Descriptor, error) {
	limit := e.src.o.maxDocumentSize
	what := "referrers of " + d.String()
	body, _, err := e.document(ctx, e.url("referrers", d.String()), ocispec.MediaTypeImageIndex, what, limit)
	if err == nil && int64(len(body)) > limit {
		return nil, errdefs.New(errdefs.ErrTooLarge, "%s: %s is over the %d byte limit", e, what, limit)
	}
	if errdefs.Is(err, errdefs.ErrNotFound) {
		desc, terr := e.lookup(ctx, d.Algorithm().String()+"-"+d.Encoded(), "", false)
		if errdefs.Is(terr, errdefs.ErrNotFound) {
			return nil, nil
		}
		if terr != nil {
			return nil, terr
		}
		// lookup read the index and checked it against its digest.
		body, err = e.takePrefetched(desc.Digest), nil
	}
	if err != nil {
		return nil, err
	}
	var idx ocispec.Index
	if err := json.Unmarshal(body, &idx); err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrManifestInvalid, "%s: %s", e, what)
	}
	return idx.Manifests, nil
}

// validTag checks a tag against the distribution grammar before it goes
// into a URL.
func validTag(tag string) error {
	if len(tag) == 0 || len(tag) > 128 {
		return errdefs.New(errdefs.ErrInvalidArgument, "invalid tag %q", tag)
	}
	for i, c := range tag {
		ok := c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || i > 0 && (c == '.' || c == '-')
		if !ok {
			return errdefs.New(errdefs.ErrInvalidArgument, "invalid tag %q", tag)
		}
	}
	return nil
}
