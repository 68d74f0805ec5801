package resolve

import (
	"context"
	"encoding/json"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/source"
)

// ResolvedAll is a reference resolved for every platform it offers: the
// index it names, every index nested in it, and each image it lists,
// verified as Resolve verifies one.
type ResolvedAll struct {
	// Reference is the normalized reference; Source is where the bytes
	// come from.
	Reference string
	Source    Source

	// Root is the document the reference names: an index, or the
	// manifest of a single-platform image.
	Root Blob

	// Indexes are the indexes walked, the root first (empty when the
	// reference names a manifest).
	Indexes []Blob

	// Images are the runnable images, in index order, each with the
	// indexes that led to it.
	Images []*Resolved

	// Artifacts are the other manifests the indexes list (build
	// attestations, signatures, SBOMs): not platforms, but content of the
	// index, kept with it.
	Artifacts []Artifact
}

// Artifact is a manifest that is not a runnable image: its verified bytes
// and the blobs it refers to.
type Artifact struct {
	Manifest Blob
	Blobs    []ocispec.Descriptor
}

// Platforms lists the platforms of the images, in order.
func (r *ResolvedAll) Platforms() []ocispec.Platform {
	out := make([]ocispec.Platform, len(r.Images))
	for i, im := range r.Images {
		out[i] = im.Platform
	}
	return out
}

// MaxIndexEntries bounds how many entries of one index ResolveAll reads.
// Real multi-platform images list a few dozen (platforms, attestations,
// Windows releases); the bound keeps an index of thousands of entries from
// costing thousands of requests.
const MaxIndexEntries = 1024

// MaxDocuments bounds how many documents (indexes and manifests, each
// listing counted, cached or not) one resolve walks. MaxIndexEntries
// bounds one index, but nested indexes multiply it: 1024 child indexes of
// 1024 entries each would be a million requests.
const MaxDocuments = 4 * MaxIndexEntries

// ResolveAll opens ref and resolves every image its index lists (or the
// one image it names), checking every document as Resolve does. Entries
// that are not runnable images (buildx attestations with platform
// unknown/unknown, artifacts whose config is not an image config) are
// read and checked as documents and returned as Artifacts. WithPlatform
// does not apply.
func ResolveAll(ctx context.Context, ref string, opts ...Option) (*ResolvedAll, error) {
	return openAnd(ctx, ref, opts, resolveAll)
}

// ResolveAllSource is ResolveAll of what src's reference names.
func ResolveAllSource(ctx context.Context, src Source, opts ...Option) (*ResolvedAll, error) {
	return withOptions(ctx, src, opts, resolveAll)
}

func resolveAll(ctx context.Context, src Source, o *options) (*ResolvedAll, error) {
	o.platform = nil
	w, root, err := startWalk(ctx, src, o, HostPlatform())
	if err != nil {
		return nil, err
	}
	ra := &ResolvedAll{Reference: src.Reference(), Source: src}
	if err := w.all(ctx, root, nil, nil, 0, ra); err != nil {
		return nil, err
	}
	if len(ra.Images) == 0 {
		return nil, errdefs.New(errdefs.ErrPlatformNotFound, "%s lists no runnable image", ra.Reference)
	}
	for _, im := range ra.Images {
		im.Platforms = ra.Platforms()
	}
	return ra, nil
}

// all reads desc and, for an index, everything it lists. chain is the
// indexes that led to desc.
func (w *walker) all(ctx context.Context, desc ocispec.Descriptor, platform *ocispec.Platform, chain []Blob, depth int, ra *ResolvedAll) error {
	data, from, kind, err := w.enter(ctx, desc, depth)
	if err != nil {
		return err
	}
	defer delete(w.seen, desc.Digest)
	if desc.MediaType == "" {
		var h docHead
		json.Unmarshal(data, &h)
		desc.MediaType = h.MediaType
	}
	if depth == 0 {
		ra.Root = Blob{Descriptor: desc, Data: data, From: from}
	}
	if kind == kindManifest {
		if isAttestationEntry(desc) {
			return w.artifact(desc, data, ra)
		}
		for _, im := range ra.Images {
			if im.Manifest.Descriptor.Digest == desc.Digest {
				return nil // listed again: one image
			}
		}
		res := &Resolved{Reference: ra.Reference, Source: w.src, Indexes: append([]Blob(nil), chain...)}
		if err := w.manifest(ctx, desc, data, from, platform, res); err != nil {
			if depth > 0 && errdefs.Is(err, errdefs.ErrUnsupportedMediaType) {
				// Listed in an index but not an image: an artifact.
				return w.artifact(desc, data, ra)
			}
			return err
		}
		ra.Images = append(ra.Images, res)
		return nil
	}
	var idx ocispec.Index
	if err := json.Unmarshal(data, &idx); err != nil {
		return errdefs.Wrap(err, errdefs.ErrManifestInvalid, "index %s", desc.Digest)
	}
	// Every entry is read here, unlike when one platform is picked: an
	// index of thousands of entries would take as many requests.
	if len(idx.Manifests) > MaxIndexEntries {
		return errdefs.New(errdefs.ErrTooLarge, "index %s lists %d entries; at most %d are read for every platform", desc.Digest, len(idx.Manifests), MaxIndexEntries)
	}
	b := Blob{Descriptor: desc, Data: data, From: from}
	ra.Indexes = append(ra.Indexes, b)
	chain = append(append([]Blob(nil), chain...), b)
	for i, m := range idx.Manifests {
		if err := source.CheckDigest(m.Digest); err != nil {
			return errdefs.Wrap(err, errdefs.ErrManifestInvalid, "index %s entry %d", desc.Digest, i)
		}
		if m.MediaType != "" && !isIndexType(m.MediaType) && !isManifestType(m.MediaType) {
			// Not a document this program reads (an artifact manifest
			// of a withdrawn type, say): kept as a plain blob.
			if m.Size < 0 || m.Size > w.o.maxDocumentSize {
				return errdefs.New(errdefs.ErrManifestInvalid, "index %s entry %d has size %d", desc.Digest, i, m.Size)
			}
			ra.Artifacts = append(ra.Artifacts, Artifact{Manifest: Blob{Descriptor: m}})
			continue
		}
		if err := w.all(ctx, m, m.Platform, chain, depth+1, ra); err != nil {
			return err
		}
	}
	return nil
}

// artifact records a manifest that is not a runnable image, with the
// blobs it refers to (their digests checked, their sizes not negative).
func (w *walker) artifact(desc ocispec.Descriptor, data []byte, ra *ResolvedAll) error {
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return errdefs.Wrap(err, errdefs.ErrManifestInvalid, "manifest %s", desc.Digest)
	}
	a := Artifact{Manifest: Blob{Descriptor: desc, Data: data}}
	for i, d := range append([]ocispec.Descriptor{m.Config}, m.Layers...) {
		if err := source.CheckDigest(d.Digest); err != nil {
			return errdefs.Wrap(err, errdefs.ErrManifestInvalid, "manifest %s blob %d", desc.Digest, i)
		}
		if d.Size < 0 {
			return errdefs.New(errdefs.ErrManifestInvalid, "manifest %s blob %d has a negative size", desc.Digest, i)
		}
		a.Blobs = append(a.Blobs, d)
	}
	ra.Artifacts = append(ra.Artifacts, a)
	return nil
}

// AnnotationReferenceDigest is the annotation of a build attestation's
// index entry that names the manifest it attests (buildx's
// vnd.docker.reference.digest).
const AnnotationReferenceDigest = annotationReferenceDigest

// IsAttestation reports whether an index entry is a build attestation as
// buildx adds them (see Attestation): platform unknown/unknown, or the
// annotation vnd.docker.reference.type=attestation-manifest. Such entries
// are valid OCI content, not platforms.
func IsAttestation(d ocispec.Descriptor) bool { return isAttestationEntry(d) }

// isAttestationEntry is IsAttestation.
func isAttestationEntry(d ocispec.Descriptor) bool {
	if d.Annotations[annotationReferenceType] == "attestation-manifest" {
		return true
	}
	return d.Platform != nil && d.Platform.OS == "unknown" && d.Platform.Architecture == "unknown"
}
