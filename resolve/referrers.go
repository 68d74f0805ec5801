package resolve

import (
	"context"
	"encoding/json"
	"net/http"

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
	// source reads the document at once and serves the Fetch of it that
	// follows from memory.
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
	var errs []error
	for _, e := range s.endpoints {
		if !e.mirror.can("resolve") {
			continue
		}
		d, err := e.lookup(ctx, tag, "", false)
		if err == nil {
			return d, nil
		}
		if ctx.Err() != nil {
			return ocispec.Descriptor{}, err
		}
		errs = append(errs, err)
	}
	return ocispec.Descriptor{}, lastError(errs, s.ref)
}

// Referrers asks the hosts that may resolve tags, in order, and returns the
// first non-empty answer: a mirror that does not carry referrers must not
// hide the upstream's.
func (s *registrySource) Referrers(ctx context.Context, d digest.Digest) ([]ocispec.Descriptor, error) {
	if _, err := parseDigest(d.String()); err != nil {
		return nil, err
	}
	var errs []error
	answered := false
	for _, e := range s.endpoints {
		if !e.mirror.can("resolve") {
			continue
		}
		list, err := e.referrers(ctx, d)
		if err == nil && len(list) > 0 {
			return list, nil
		}
		if err == nil {
			answered = true
			continue
		}
		if ctx.Err() != nil {
			return nil, err
		}
		errs = append(errs, err)
	}
	if answered {
		return nil, nil
	}
	return nil, lastError(errs, s.ref)
}

// referrers asks one host: the referrers API first; a 404 means the host
// has no such API (a registry that has one never answers 404 there), and
// the fallback tag is read instead.
func (e *endpoint) referrers(ctx context.Context, d digest.Digest) ([]ocispec.Descriptor, error) {
	var body []byte
	err := retry(ctx, func() error {
		resp, err := e.do(ctx, http.MethodGet, e.url("referrers", d.String()), ocispec.MediaTypeImageIndex, 0, 0)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err = readCapped(resp.Body, e.opts.maxDocumentSize, "referrers of "+d.String())
		return err
	})
	if errdefs.Is(err, errdefs.ErrNotFound) {
		desc, terr := e.lookup(ctx, d.Algorithm().String()+"-"+d.Encoded(), "", false)
		if errdefs.Is(terr, errdefs.ErrNotFound) {
			return nil, nil
		}
		if terr != nil {
			return nil, terr
		}
		if desc.Size > e.opts.maxDocumentSize {
			return nil, errdefs.New(errdefs.ErrTooLarge, "referrers index %s is %d bytes, over the %d byte limit", desc.Digest, desc.Size, e.opts.maxDocumentSize)
		}
		desc.MediaType = ocispec.MediaTypeImageIndex
		body, err = readVerified(ctx, e, desc, e.opts.maxDocumentSize, "referrers index")
	}
	if err != nil {
		return nil, err
	}
	var idx ocispec.Index
	if err := json.Unmarshal(body, &idx); err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrManifestInvalid, "%s: referrers of %s", e.host, d)
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
