package fetch

import (
	"context"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/resolve"
)

// AnnotationSignatureOf marks an index.json entry as a signature document
// (a cosign signature image, a sigstore bundle referrer) of the image whose
// root digest it names: the digest its reference first resolved to. GC
// keeps such an entry, and the blobs it refers to, exactly as long as it
// keeps that image.
const AnnotationSignatureOf = "com.github.ocifetch.signature-of"

// PutSignature stores a signature document found for the image whose root
// digest is subject: the manifest and the blobs it refers to, each
// checked against its descriptor, and an entry in index.json (without a
// name) that records what it signs. Storing the same manifest for the same
// subject again changes nothing.
func (s *Store) PutSignature(ctx context.Context, subject digest.Digest, manifest resolve.Blob, blobs []resolve.Blob) error {
	if err := checkDigest(subject); err != nil {
		return err
	}
	// Shared with pulls, exclusive for GC: the blobs are not referred to
	// by index.json until the entry is written.
	gc, err := s.lockGC(ctx, false)
	if err != nil {
		return err
	}
	defer gc.unlock()
	for _, b := range append(append([]resolve.Blob(nil), blobs...), manifest) {
		if err := s.WriteBlob(ctx, b.Descriptor, b.Data); err != nil {
			return err
		}
	}
	desc := ocispec.Descriptor{
		MediaType:   manifest.Descriptor.MediaType,
		Digest:      manifest.Descriptor.Digest,
		Size:        manifest.Descriptor.Size,
		Annotations: map[string]string{AnnotationSignatureOf: subject.String()},
	}
	return s.updateIndex(ctx, func(idx *ocispec.Index) error {
		for _, m := range idx.Manifests {
			if m.Digest == desc.Digest && m.Annotations[AnnotationSignatureOf] == subject.String() {
				return nil
			}
		}
		idx.Manifests = append(idx.Manifests, desc)
		return nil
	})
}

// Signatures returns the signature documents stored for subject, in the
// order they were stored.
func (s *Store) Signatures(subject digest.Digest) ([]ocispec.Descriptor, error) {
	if err := checkDigest(subject); err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "signatures of %q", subject)
	}
	idx, err := s.Index()
	if err != nil {
		return nil, err
	}
	var out []ocispec.Descriptor
	for _, m := range idx.Manifests {
		if m.Annotations[AnnotationSignatureOf] == subject.String() {
			out = append(out, m)
		}
	}
	return out, nil
}
