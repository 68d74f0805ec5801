// Package sigstore finds and verifies the signatures cosign attaches to
// container images, in both of the layouts cosign v2 writes:
//
//   - the classic one: an image at the tag "sha256-<hex>.sig" of the same
//     repository, each of whose layers is a simple-signing payload
//     ("critical.image.docker-manifest-digest",
//     "critical.identity.docker-reference") with its signature in the
//     layer annotation "dev.cosignproject.cosign/signature";
//   - the sigstore bundle (cosign sign --new-bundle-format): an OCI 1.1
//     referrer of the image, artifactType
//     "application/vnd.dev.sigstore.bundle.v0.3+json", whose layer is a
//     bundle holding a DSSE envelope of an in-toto statement that names
//     the image's digest, found through the registry's referrers API or
//     its fallback tag "sha256-<hex>".
//
// Verification is offline and uses sigstore's own libraries: the bundle
// format is sigstore's protobuf schema (github.com/sigstore/protobuf-specs),
// keys, signatures and DSSE envelopes are github.com/sigstore/sigstore's;
// no transparency log is asked. Key-based signatures are verified in both
// layouts (VerifyKey); keyless ones (a Fulcio certificate and a Rekor
// entry) in the classic layout, against a CA and a Rekor key the caller
// trusts (VerifyFulcio). Every
// document read is checked against its digest and read with a size cap,
// and at most MaxSignatures documents are examined for an image.
package sigstore

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/resolve"
	"github.com/ocifetch/ocifetch/source"
)

// Format is how a signature is stored next to the image.
type Format string

// The formats this package reads.
const (
	// FormatSimpleSigning is cosign's classic layout: simple-signing
	// payloads in the layers of the image at tag "sha256-<hex>.sig".
	FormatSimpleSigning Format = "cosign simple signing"
	// FormatBundle is a sigstore bundle attached as an OCI 1.1 referrer.
	FormatBundle Format = "sigstore bundle"
)

// Media types and annotations cosign writes.
const (
	MediaTypeSimpleSigning = "application/vnd.dev.cosign.simplesigning.v1+json"
	MediaTypeBundle        = "application/vnd.dev.sigstore.bundle.v0.3+json"
	AnnotationSignature    = "dev.cosignproject.cosign/signature"
	AnnotationCertificate  = "dev.sigstore.cosign/certificate"
	AnnotationChain        = "dev.sigstore.cosign/chain"
	AnnotationRekorBundle  = "dev.sigstore.cosign/bundle"
	// PredicateTypeSign is the in-toto predicate type of cosign's image
	// signatures in a bundle; bundles of other predicates (attestations
	// such as SLSA provenance) are not signatures of the image.
	PredicateTypeSign = "https://sigstore.dev/cosign/sign/v1"
	mediaTypeEmpty    = "application/vnd.oci.empty.v1+json"
)

// Limits on what is read for one image. Signature documents are a few
// hundred bytes to a few kilobytes; the limits only stop a hostile
// registry from making a verification read without end.
const (
	// MaxSignatures is how many signature documents (signature images and
	// referrers) are examined for an image, and how many layers of one
	// signature image.
	MaxSignatures = 64
	// MaxBlobSize caps a payload, bundle or signature config.
	MaxBlobSize = 1 << 20
)

// Signature is one signature found for an image. Its fields come from the
// registry or the store and are not verified until Verify succeeds.
type Signature struct {
	Format Format
	// Subject is the digest the signature was looked up for.
	Subject digest.Digest
	// Location says where it was found: "tag sha256-<hex>.sig",
	// "referrer sha256:...", or "store" for a copy kept in the store.
	Location string
	// Manifest is the document that carries the signature (the signature
	// image, or the referrer); Blobs its config and layers, as read.
	Manifest resolve.Blob
	Blobs    []resolve.Blob
	// Layer is the index of the payload among the signature image's
	// layers (FormatSimpleSigning).
	Layer int

	payload     []byte // FormatSimpleSigning
	sig         []byte
	cert, chain []byte
	rekorBundle []byte
	bundle      *protobundle.Bundle // FormatBundle

	// Problem is set when the document could not be read as a signature
	// (a malformed payload or bundle, a referrer of another subject); such
	// a signature never verifies.
	Problem error
}

// Store keeps signature documents with the image they sign, so that a
// later verification can read them without the registry. fetch.Store
// implements it.
type Store interface {
	// PutReferrer records a document (manifest and blobs) that refers
	// to the image whose root digest is subject, so that it lives as
	// long as that image; name is empty for signatures.
	PutReferrer(ctx context.Context, subject digest.Digest, name string, manifest resolve.Blob, blobs ...resolve.Blob) error
	// Referrers lists the documents recorded for subject.
	Referrers(subject digest.Digest) ([]ocispec.Descriptor, error)
	// Open reads a blob of the store, verified against desc.
	Open(desc ocispec.Descriptor) (io.ReadCloser, error)
}

// reader reads a document or blob and checks it against its descriptor.
type reader func(ctx context.Context, desc ocispec.Descriptor, limit int64) ([]byte, error)

// Find returns the signatures src holds for subject, in both layouts. A
// source that cannot list tags and referrers (a layout, an archive) holds
// none. Errors are those of the registry (network, unauthorized); a
// signature that is there but malformed is returned with its Problem set.
func Find(ctx context.Context, src resolve.Source, subject digest.Digest) ([]Signature, error) {
	if err := source.CheckDigest(subject); err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "signatures")
	}
	rs, ok := src.(resolve.ReferrersSource)
	if !ok {
		return nil, nil
	}
	read := sourceReader(src)
	var classic, bundles []Signature
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		tag := subject.Algorithm().String() + "-" + subject.Encoded() + ".sig"
		desc, err := rs.Tag(gctx, tag)
		if errdefs.Is(err, errdefs.ErrNotFound) {
			return nil
		}
		if unreadable(err) {
			// The tag names a document that cannot be a signature (too
			// large, lying about its digest): it condemns itself, and the
			// referrers may still hold one.
			classic = []Signature{{Format: FormatSimpleSigning, Subject: subject, Location: "tag " + tag, Problem: err}}
			return nil
		}
		if err != nil {
			return err
		}
		classic, err = readSignatureImage(gctx, read, desc, subject, "tag "+tag)
		if unreadable(err) {
			classic, err = []Signature{{Format: FormatSimpleSigning, Subject: subject, Location: "tag " + tag, Problem: err}}, nil
		}
		return err
	})
	g.Go(func() error {
		list, err := rs.Referrers(gctx, subject)
		if unreadable(err) {
			bundles = []Signature{{Format: FormatBundle, Subject: subject, Location: "referrers of " + subject.String(), Problem: err}}
			return nil
		}
		if err != nil {
			return err
		}
		var cands []ocispec.Descriptor
		for _, d := range list {
			if maybeBundle(d) && len(cands) < MaxSignatures {
				cands = append(cands, d)
			}
		}
		bundles = make([]Signature, len(cands))
		rg, rctx := errgroup.WithContext(gctx)
		rg.SetLimit(4)
		for i, d := range cands {
			rg.Go(func() error {
				where := "referrer " + d.Digest.String()
				s, err := readReferrer(rctx, read, d, subject, where)
				if unreadable(err) {
					s, err = Signature{Format: FormatBundle, Subject: subject, Location: where, Problem: err}, nil
				}
				bundles[i] = s
				return err
			})
		}
		return rg.Wait()
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return append(classic, bundles...), nil
}

// unreadable reports an error that condemns one signature document (it is
// missing, or its bytes are not what its descriptor says) rather than the
// lookup: the other signatures may still admit the image. Network and
// authorization failures stop the lookup instead, so that a registry that
// cannot be reached is not reported as an image without signatures.
func unreadable(err error) bool {
	switch errdefs.KindOf(err) {
	case errdefs.ErrNotFound, errdefs.ErrDigestMismatch, errdefs.ErrSizeMismatch, errdefs.ErrTooLarge, errdefs.ErrManifestInvalid:
		return err != nil
	}
	return false
}

// FromStore returns the signatures st keeps for subject.
func FromStore(ctx context.Context, st Store, subject digest.Digest) ([]Signature, error) {
	descs, err := st.Referrers(subject)
	if err != nil {
		return nil, err
	}
	read := storeReader(st)
	var out []Signature
	for i, d := range descs {
		if i == MaxSignatures {
			break
		}
		sigs, err := fromStore(ctx, read, d, subject)
		if unreadable(err) {
			// A damaged copy condemns itself, not the verification: the
			// registry may still have the signature.
			sigs, err = []Signature{{Subject: subject, Location: "store", Problem: fmt.Errorf("stored signature %s: %w", d.Digest, err)}}, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, sigs...)
	}
	return out, nil
}

func fromStore(ctx context.Context, read reader, d ocispec.Descriptor, subject digest.Digest) ([]Signature, error) {
	data, err := read(ctx, d, resolve.DefaultMaxDocumentSize)
	if err != nil {
		return nil, err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrManifestInvalid, "not a manifest")
	}
	doc := resolve.Blob{Descriptor: d, Data: data}
	if isBundleManifest(m) {
		s, err := parseReferrer(ctx, read, doc, m, subject, "store")
		return []Signature{s}, err
	}
	return parseSignatureImage(ctx, read, doc, m, subject, "store")
}

// Keep stores in st the documents of sigs that came from a registry, each
// once.
func Keep(ctx context.Context, st Store, sigs []Signature) error {
	seen := map[digest.Digest]bool{}
	for _, s := range sigs {
		if s.Location == "store" || s.Manifest.Data == nil || seen[s.Manifest.Descriptor.Digest] {
			continue
		}
		seen[s.Manifest.Descriptor.Digest] = true
		if err := st.PutReferrer(ctx, s.Subject, "", s.Manifest, s.Blobs...); err != nil {
			return err
		}
	}
	return nil
}

// maybeBundle reports whether a referrers listing entry may be a bundle.
// go-containerregistry's referrers tag fallback records the config media
// type (the empty descriptor's) as the entry's artifactType, so that one is
// let through too; the manifest itself decides.
func maybeBundle(d ocispec.Descriptor) bool {
	switch d.ArtifactType {
	case MediaTypeBundle, mediaTypeEmpty, "":
		return d.MediaType == ocispec.MediaTypeImageManifest || d.MediaType == ""
	}
	return false
}

func isBundleManifest(m ocispec.Manifest) bool {
	return m.ArtifactType == MediaTypeBundle || (m.ArtifactType == "" && m.Config.MediaType == MediaTypeBundle)
}

// readSignatureImage reads cosign's classic signature image: one
// signature per simple-signing layer.
func readSignatureImage(ctx context.Context, read reader, desc ocispec.Descriptor, subject digest.Digest, where string) ([]Signature, error) {
	data, err := read(ctx, desc, resolve.DefaultMaxDocumentSize)
	if err != nil {
		return nil, err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil || m.MediaType == ocispec.MediaTypeImageIndex || len(m.Layers) == 0 {
		return []Signature{{Format: FormatSimpleSigning, Subject: subject, Location: where,
			Problem: fmt.Errorf("%s is not a signature image", where)}}, nil
	}
	return parseSignatureImage(ctx, read, resolve.Blob{Descriptor: desc, Data: data}, m, subject, where)
}

func parseSignatureImage(ctx context.Context, read reader, doc resolve.Blob, m ocispec.Manifest, subject digest.Digest, where string) ([]Signature, error) {
	// The config (kept with the signature so the store stays a complete
	// layout) and the payloads are read side by side.
	var want []ocispec.Descriptor
	if m.Config.Digest != "" {
		want = append(want, m.Config)
	}
	var layers []int
	for i, l := range m.Layers {
		if i == MaxSignatures {
			break
		}
		if l.MediaType == MediaTypeSimpleSigning {
			want = append(want, l)
			layers = append(layers, i)
		}
	}
	blobs, err := readBlobs(ctx, read, want)
	if err != nil {
		return nil, err
	}
	payloads := blobs[len(blobs)-len(layers):]
	var out []Signature
	for j, i := range layers {
		l := m.Layers[i]
		s := Signature{Format: FormatSimpleSigning, Subject: subject, Location: where, Manifest: doc, Layer: i, Blobs: blobs, payload: payloads[j].Data}
		if s.sig, err = base64.StdEncoding.DecodeString(l.Annotations[AnnotationSignature]); err != nil || len(s.sig) == 0 {
			s.Problem = fmt.Errorf("layer %d has no valid %s annotation", i, AnnotationSignature)
		}
		s.cert = []byte(l.Annotations[AnnotationCertificate])
		s.chain = []byte(l.Annotations[AnnotationChain])
		s.rekorBundle = []byte(l.Annotations[AnnotationRekorBundle])
		out = append(out, s)
	}
	if len(out) == 0 {
		out = append(out, Signature{Format: FormatSimpleSigning, Subject: subject, Location: where, Manifest: doc,
			Problem: fmt.Errorf("%s has no simple-signing layer", where)})
	}
	return out, nil
}

// readBlobs reads descs, a few at a time, in their order: each is a round
// trip to the registry, and the verification waits for all of them.
func readBlobs(ctx context.Context, read reader, descs []ocispec.Descriptor) ([]resolve.Blob, error) {
	out := make([]resolve.Blob, len(descs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for i, d := range descs {
		g.Go(func() error {
			b, err := readBlob(gctx, read, d)
			out[i] = b
			return err
		})
	}
	return out, g.Wait()
}

// readReferrer reads one referrer that may hold a sigstore bundle.
func readReferrer(ctx context.Context, read reader, desc ocispec.Descriptor, subject digest.Digest, where string) (Signature, error) {
	desc.MediaType = ocispec.MediaTypeImageManifest
	data, err := read(ctx, desc, resolve.DefaultMaxDocumentSize)
	if err != nil {
		return Signature{}, err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return Signature{Format: FormatBundle, Subject: subject, Location: where, Problem: fmt.Errorf("%s is not a manifest", where)}, nil
	}
	return parseReferrer(ctx, read, resolve.Blob{Descriptor: desc, Data: data}, m, subject, where)
}

func parseReferrer(ctx context.Context, read reader, doc resolve.Blob, m ocispec.Manifest, subject digest.Digest, where string) (Signature, error) {
	s := Signature{Format: FormatBundle, Subject: subject, Location: where, Manifest: doc}
	switch {
	case !isBundleManifest(m):
		s.Problem = fmt.Errorf("%s is not a sigstore bundle (artifactType %q)", where, m.ArtifactType)
		return s, nil
	case m.Subject == nil || m.Subject.Digest != subject:
		// The listing is not content-addressed: only the referrer's own
		// subject says what it refers to.
		s.Problem = fmt.Errorf("%s does not name %s as its subject", where, subject)
		return s, nil
	}
	var layer *ocispec.Descriptor
	for i := range m.Layers {
		if m.Layers[i].MediaType == MediaTypeBundle {
			layer = &m.Layers[i]
			break
		}
	}
	if layer == nil {
		s.Problem = fmt.Errorf("%s has no %s layer", where, MediaTypeBundle)
		return s, nil
	}
	want := []ocispec.Descriptor{*layer}
	if m.Config.Digest != "" {
		want = append(want, m.Config)
	}
	blobs, err := readBlobs(ctx, read, want)
	if err != nil {
		return s, err
	}
	b := blobs[0]
	s.Blobs = blobs
	var bundle protobundle.Bundle
	if err := protojson.Unmarshal(b.Data, &bundle); err != nil {
		s.Problem = fmt.Errorf("%s: not a sigstore bundle: %v", where, err)
		return s, nil
	}
	if bundle.GetMediaType() != MediaTypeBundle {
		s.Problem = fmt.Errorf("%s: bundle media type %q is not %s, the version this verifier reads", where, bundle.GetMediaType(), MediaTypeBundle)
		return s, nil
	}
	s.bundle = &bundle
	return s, nil
}

func readBlob(ctx context.Context, read reader, desc ocispec.Descriptor) (resolve.Blob, error) {
	// Non-document media types make a registry source use the blobs
	// endpoint, which is where configs and layers live.
	data, err := read(ctx, desc, MaxBlobSize)
	if err != nil {
		return resolve.Blob{}, err
	}
	return resolve.Blob{Descriptor: ocispec.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size}, Data: data}, nil
}

// sourceReader reads from src. A registry source tries its hosts in
// order; a host that serves bytes that do not match fails the read, which
// fails the verification: nothing unverified is ever used.
func sourceReader(src resolve.Source) reader {
	return func(ctx context.Context, desc ocispec.Descriptor, limit int64) ([]byte, error) {
		if err := checkDescriptor(desc, limit); err != nil {
			return nil, err
		}
		rc, err := src.Fetch(ctx, desc)
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		return readChecked(rc, desc)
	}
}

func storeReader(st Store) reader {
	return func(_ context.Context, desc ocispec.Descriptor, limit int64) ([]byte, error) {
		if err := checkDescriptor(desc, limit); err != nil {
			return nil, err
		}
		rc, err := st.Open(desc)
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		return readChecked(rc, desc)
	}
}

func checkDescriptor(desc ocispec.Descriptor, limit int64) error {
	if err := source.CheckDigest(desc.Digest); err != nil {
		return errdefs.Wrap(err, errdefs.ErrManifestInvalid, "signature document")
	}
	if desc.Size <= 0 || desc.Size > limit {
		return errdefs.New(errdefs.ErrTooLarge, "signature document %s has size %d, not within 1..%d bytes", desc.Digest, desc.Size, limit)
	}
	return nil
}

// readChecked reads exactly desc.Size bytes and checks their digest.
func readChecked(r io.Reader, desc ocispec.Descriptor) ([]byte, error) {
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(r, desc.Size+1))
	if err != nil {
		var kinded *errdefs.Error
		if errors.As(err, &kinded) {
			return nil, err // e.g. the store's own digest check
		}
		return nil, errdefs.Wrap(err, errdefs.ErrNetwork, "reading %s", desc.Digest)
	}
	if n != desc.Size {
		return nil, errdefs.New(errdefs.ErrSizeMismatch, "%s has %d bytes, its descriptor says %d", desc.Digest, n, desc.Size)
	}
	if got := desc.Digest.Algorithm().FromBytes(buf.Bytes()); got != desc.Digest {
		return nil, errdefs.New(errdefs.ErrDigestMismatch, "%s: content hashes to %s", desc.Digest, got)
	}
	return buf.Bytes(), nil
}

// String names the signature for messages: format and location.
func (s Signature) String() string {
	if s.Format == FormatSimpleSigning && s.Manifest.Data != nil {
		return fmt.Sprintf("%s (%s, layer %d)", s.Format, s.Location, s.Layer)
	}
	return fmt.Sprintf("%s (%s)", s.Format, strings.TrimSpace(s.Location))
}

// Claim returns what the signature says it signs, before any verification
// (for display only): the identity and digest of a simple-signing
// payload, or the first digest a bundle's statement names (a bundle names
// no identity).
func (s Signature) Claim() (identity, signed string) {
	switch {
	case s.Format == FormatSimpleSigning && s.payload != nil:
		var p simpleSigningPayload
		if json.Unmarshal(s.payload, &p) == nil {
			return p.Critical.Identity.DockerReference, p.Critical.Image.DockerManifestDigest
		}
	case s.bundle.GetDsseEnvelope() != nil:
		var st struct {
			Subject []struct {
				Digest map[string]string `json:"digest"`
			} `json:"subject"`
		}
		if json.Unmarshal(s.bundle.GetDsseEnvelope().GetPayload(), &st) == nil && len(st.Subject) > 0 {
			for alg, hex := range st.Subject[0].Digest {
				return "", alg + ":" + hex
			}
		}
	}
	return "", ""
}

// KeyHint is the hint a bundle gives of the key that signed it (the base64
// SHA-256 of the key, as Key.Hint), or "" when it gives none.
func (s Signature) KeyHint() string {
	if s.bundle == nil {
		return ""
	}
	return s.bundle.GetVerificationMaterial().GetPublicKey().GetHint()
}
