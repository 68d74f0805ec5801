package resolve

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/schema"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/source"
)

// Problem is one way a document fails the image spec.
type Problem struct {
	// Where names the document: the path of descriptors from the root,
	// e.g. "index sha256:ab… > manifests[1] linux/arm64 sha256:cd… > config sha256:ef…".
	Where string `json:"where"`
	// Rule is a short stable name: schema, digest, size, media_type,
	// ambiguous, platform, diff_ids, layer_media_type, config_media_type,
	// depth, too_large, unreadable.
	Rule string `json:"rule"`
	// Message says what is wrong, for people.
	Message string `json:"message"`
}

func (p Problem) String() string { return p.Where + ": " + p.Rule + ": " + p.Message }

// Attestation is a build attestation an index lists, as buildx pushes
// them: an image manifest in the index under platform unknown/unknown,
// annotated vnd.docker.reference.type=attestation-manifest and
// vnd.docker.reference.digest=the manifest it attests, whose layers are
// in-toto statements (application/vnd.in-toto+json). The image spec
// allows such manifests (an artifact's layers may have any media type);
// they are not platforms.
type Attestation struct {
	// Where names it as a Problem does; Digest is its manifest's.
	Where  string `json:"where"`
	Digest string `json:"digest"`
	// Subject is the digest of the manifest it attests, Platform that
	// manifest's platform in the index ("" when the index does not list
	// it).
	Subject  string `json:"subject"`
	Platform string `json:"platform"`
	// PredicateTypes are the in-toto predicate types of its statements
	// (https://slsa.dev/provenance/v0.2, https://spdx.dev/Document, ...).
	PredicateTypes []string `json:"predicateTypes"`
}

// Validation is what ValidateImage found.
type Validation struct {
	Problems     []Problem
	Attestations []Attestation
}

// Validate checks every index, manifest and config reachable from src's
// root, for every platform (for the one WithPlatform names, if given):
// the image-spec JSON schemas, and what a schema cannot say (digests and
// sizes match, one diffID per layer, media types agree, platforms present
// in indexes). Build attestations are checked as such (see Attestation),
// not as images. It returns every problem found; an error only when the
// root itself cannot be read, or no image fits the platform asked for.
func Validate(ctx context.Context, src Source, opts ...Option) ([]Problem, error) {
	v, err := ValidateImage(ctx, src, opts...)
	if err != nil {
		return nil, err
	}
	return v.Problems, nil
}

// ValidateImage is Validate that also reports the build attestations it
// checked.
func ValidateImage(ctx context.Context, src Source, opts ...Option) (*Validation, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	root, err := src.Root(ctx)
	if err != nil {
		return nil, err
	}
	v := &validator{src: src, o: o}
	v.document(ctx, root, "", 0)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if v.err != nil {
		return nil, v.err
	}
	if o.platform != nil && !v.matched {
		return nil, errdefs.New(errdefs.ErrPlatformNotFound, "%s has no image for platform %s; available: %s",
			src.Reference(), FormatPlatform(*o.platform), platformList(v.offered))
	}
	return &Validation{Problems: v.problems, Attestations: v.attestations}, nil
}

type validator struct {
	src          Source
	o            *options
	problems     []Problem
	attestations []Attestation
	// With WithPlatform: whether a manifest fit it, the platforms the
	// indexes offered, and a failure that ends the validation.
	matched bool
	offered []ocispec.Platform
	err     error
}

func (v *validator) add(where, rule, format string, args ...any) {
	v.problems = append(v.problems, Problem{Where: where, Rule: rule, Message: fmt.Sprintf(format, args...)})
}

func short(d digest.Digest) string {
	s := d.String()
	if len(s) > 19 {
		return s[:19] + "…"
	}
	return s
}

// read fetches desc without stopping at the first problem: size and digest
// mismatches are recorded and the bytes are still checked further.
func (v *validator) read(ctx context.Context, desc ocispec.Descriptor, where, what string) ([]byte, bool) {
	if err := source.CheckDigest(desc.Digest); err != nil {
		v.add(where, "digest", "%v", err)
		return nil, false
	}
	if !v.size(where, desc.Size, v.o.maxDocumentSize, what) {
		return nil, false
	}
	rc, err := v.src.Fetch(ctx, desc)
	if err != nil {
		v.add(where, "unreadable", "%v", err)
		return nil, false
	}
	defer rc.Close()
	data, err := readCapped(rc, v.o.maxDocumentSize, what)
	if err != nil {
		rule := "unreadable"
		if errdefs.Is(err, errdefs.ErrTooLarge) {
			rule = "too_large"
		}
		v.add(where, rule, "%v", err)
		return nil, false
	}
	if desc.Size > 0 && int64(len(data)) != desc.Size {
		v.add(where, "size", "descriptor says %d bytes, content is %d", desc.Size, len(data))
	}
	if got := desc.Digest.Algorithm().FromBytes(data); got != desc.Digest {
		v.add(where, "digest", "content hashes to %s", got)
	}
	return data, true
}

// size checks a descriptor's size claim: not negative ("size") and within
// the limit for its kind ("too_large").
func (v *validator) size(where string, size, limit int64, what string) bool {
	switch err := source.CheckSize(size, limit, what); {
	case err == nil:
		return true
	case errdefs.Is(err, errdefs.ErrTooLarge):
		v.add(where, "too_large", "%v", err)
	default:
		v.add(where, "size", "%v", err)
	}
	return false
}

func (v *validator) schema(where string, val schema.Validator, data []byte) {
	err := val.Validate(bytes.NewReader(data))
	if err == nil {
		return
	}
	v.add(where, "schema", "%s", oneLine(err.Error()))
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func (v *validator) document(ctx context.Context, desc ocispec.Descriptor, parent string, depth int) {
	where := strings.TrimPrefix(parent+" > ", " > ") + "document " + short(desc.Digest)
	if depth > v.o.maxDepth {
		v.add(where, "depth", "indexes nest more than %d levels deep", v.o.maxDepth)
		return
	}
	data, ok := v.read(ctx, desc, where, "document")
	if !ok {
		return
	}
	kind, err := classifyDocument(desc, data)
	if err != nil {
		rule := "schema"
		var re ruleError
		switch {
		case errors.As(err, &re):
			rule = re.rule
		case errdefs.Is(err, errdefs.ErrUnsupportedMediaType):
			rule = "media_type"
		}
		v.add(where, rule, "%s", err.Error())
		return
	}
	if kind == kindIndex {
		v.index(ctx, desc, data, strings.Replace(where, "document", "index", 1), depth)
		return
	}
	v.manifest(ctx, desc, data, strings.Replace(where, "document", "manifest", 1), depth)
}

func (v *validator) index(ctx context.Context, desc ocispec.Descriptor, data []byte, where string, depth int) {
	v.schema(where, schema.ValidatorMediaTypeImageIndex, data)
	var idx ocispec.Index
	if err := json.Unmarshal(data, &idx); err != nil {
		v.add(where, "schema", "%v", err)
		return
	}
	if len(idx.Manifests) > MaxIndexEntries {
		// As ResolveAll refuses it: reading every entry of a huge index
		// costs a request each.
		v.add(where, "too_large", "the index lists %d entries; at most %d are read", len(idx.Manifests), MaxIndexEntries)
		return
	}
	// With a platform, only the manifest that fits it best (as Resolve
	// picks it), the attestations of that manifest and the nested
	// indexes that may hold it are read.
	want := -1
	if v.o.platform != nil {
		want = bestMatch(*v.o.platform, idx.Manifests, func(m ocispec.Descriptor) bool {
			return isManifestType(m.MediaType) && !isAttestationEntry(m)
		})
	}
	for i, m := range idx.Manifests {
		entry := fmt.Sprintf("%s > manifests[%d]", where, i)
		attestation := isManifestType(m.MediaType) && isAttestationEntry(m)
		if attestation {
			entry += " attestation"
		} else if m.Platform != nil {
			entry += " " + FormatPlatform(*m.Platform)
			if isManifestType(m.MediaType) {
				v.offered = append(v.offered, *m.Platform)
			}
		}
		switch {
		case attestation:
			if v.o.platform != nil && (want < 0 || m.Annotations[annotationReferenceDigest] != idx.Manifests[want].Digest.String()) {
				continue
			}
			v.attestation(ctx, m, idx, entry)
		case isManifestType(m.MediaType):
			if m.Platform == nil {
				v.add(entry, "platform", "an image manifest in an index has no platform")
			} else if m.Platform.OS == "" || m.Platform.Architecture == "" {
				v.add(entry, "platform", "platform lacks os or architecture")
			}
			if v.o.platform != nil {
				if i != want {
					continue
				}
				v.matched = true
			}
			v.document(ctx, m, entry, depth+1)
		case isIndexType(m.MediaType):
			if v.o.platform != nil && (want >= 0 || (m.Platform != nil && !Matches(*v.o.platform, *m.Platform))) {
				continue
			}
			v.document(ctx, m, entry, depth+1)
		default:
			// Other content (signatures, artifacts of other types) may
			// hang off an index; it is not an image and is not checked
			// further.
		}
	}
}

// The annotations buildx gives an attestation's index entry.
const (
	annotationReferenceType   = "vnd.docker.reference.type"
	annotationReferenceDigest = "vnd.docker.reference.digest"
	mediaTypeInToto           = "application/vnd.in-toto+json"
	annotationPredicateType   = "in-toto.io/predicate-type"
)

// attestation checks a build attestation that idx lists: its index entry
// names the manifest it attests, which the index lists as an image; its
// manifest and config are read and checked like any document; each layer
// is an in-toto statement whose predicate type agrees with its
// annotation, read verified.
func (v *validator) attestation(ctx context.Context, desc ocispec.Descriptor, idx ocispec.Index, where string) {
	a := Attestation{Where: where, Digest: desc.Digest.String(), Subject: desc.Annotations[annotationReferenceDigest], PredicateTypes: []string{}}
	if t := desc.Annotations[annotationReferenceType]; t != "attestation-manifest" {
		v.add(where, "attestation", "annotation %s is %q, want \"attestation-manifest\"", annotationReferenceType, t)
	}
	if d, err := digest.Parse(a.Subject); err != nil {
		v.add(where, "attestation", "annotation %s is %q, not a digest", annotationReferenceDigest, a.Subject)
	} else {
		found := false
		for _, m := range idx.Manifests {
			if m.Digest == d && !isAttestationEntry(m) {
				found = true
				if m.Platform != nil {
					a.Platform = FormatPlatform(*m.Platform)
				}
			}
		}
		if !found {
			v.add(where, "attestation", "it attests %s, which the index does not list as an image", d)
		}
	}
	data, ok := v.read(ctx, desc, where, "attestation")
	if !ok {
		return
	}
	v.schema(where, schema.ValidatorMediaTypeManifest, data)
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		v.add(where, "schema", "%v", err)
		return
	}
	if !isManifestType(m.MediaType) && m.MediaType != "" {
		v.add(where, "media_type", "an attestation is an image manifest, not %q", m.MediaType)
	}
	cfgWhere := where + " > config " + short(m.Config.Digest)
	if _, ok := v.read(ctx, m.Config, cfgWhere, "config"); !ok {
		return
	}
	for i, l := range m.Layers {
		lw := fmt.Sprintf("%s > layers[%d]", where, i)
		if l.MediaType != mediaTypeInToto {
			v.add(lw, "layer_media_type", "an attestation's layer is an in-toto statement (%s), not %q", mediaTypeInToto, l.MediaType)
			continue
		}
		body, ok := v.read(ctx, l, lw, "in-toto statement")
		if !ok {
			continue
		}
		var st struct {
			Type          string            `json:"_type"`
			PredicateType string            `json:"predicateType"`
			Subject       []json.RawMessage `json:"subject"`
		}
		if err := json.Unmarshal(body, &st); err != nil {
			v.add(lw, "attestation", "not an in-toto statement: %s", oneLine(err.Error()))
			continue
		}
		switch {
		case !strings.HasPrefix(st.Type, "https://in-toto.io/Statement/"):
			v.add(lw, "attestation", "_type is %q, not an in-toto statement", printableString(st.Type))
		case st.PredicateType == "":
			v.add(lw, "attestation", "the statement has no predicateType")
		case len(st.Subject) == 0:
			v.add(lw, "attestation", "the statement has no subject")
		}
		if want := l.Annotations[annotationPredicateType]; want != "" && st.PredicateType != want {
			v.add(lw, "attestation", "annotation %s is %q, the statement says %q", annotationPredicateType, printableString(want), printableString(st.PredicateType))
		}
		if st.PredicateType != "" {
			a.PredicateTypes = append(a.PredicateTypes, printableString(st.PredicateType))
		}
	}
	v.attestations = append(v.attestations, a)
}

// printableString keeps what an image chose on one printable line.
func printableString(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

func (v *validator) manifest(ctx context.Context, desc ocispec.Descriptor, data []byte, where string, depth int) {
	v.schema(where, schema.ValidatorMediaTypeManifest, data)
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		v.add(where, "schema", "%v", err)
		return
	}
	for i, l := range m.Layers {
		if !IsLayerType(l.MediaType) {
			v.add(fmt.Sprintf("%s > layers[%d]", where, i), "layer_media_type", "media type %q is not an image layer", l.MediaType)
		}
		v.size(fmt.Sprintf("%s > layers[%d]", where, i), l.Size, source.MaxBlobSize, "layer")
		if err := source.CheckDigest(l.Digest); err != nil {
			v.add(fmt.Sprintf("%s > layers[%d]", where, i), "digest", "%v", err)
		}
	}
	cfgWhere := where + " > config " + short(m.Config.Digest)
	if !isConfigType(m.Config.MediaType) {
		v.add(cfgWhere, "config_media_type", "config media type %q is not an image config: this is an artifact", m.Config.MediaType)
		return
	}
	cfg, ok := v.read(ctx, m.Config, cfgWhere, "config")
	if !ok {
		return
	}
	v.schema(cfgWhere, schema.ValidatorMediaTypeImageConfig, cfg)
	var img ocispec.Image
	if err := json.Unmarshal(cfg, &img); err != nil {
		v.add(cfgWhere, "schema", "%v", err)
		return
	}
	if depth == 0 && v.o.platform != nil {
		// The reference names one image: it must be of the platform
		// asked for, as Resolve holds it.
		p := Normalize(img.Platform)
		v.offered = append(v.offered, p)
		if img.OS == "" && img.Architecture == "" {
			v.err = errdefs.New(errdefs.ErrPlatformNotFound, "%s names no platform (its config has no os and no architecture), so it cannot be checked against %s; name no platform to take it as it is",
				v.src.Reference(), FormatPlatform(*v.o.platform))
			return
		}
		if !Matches(*v.o.platform, p) {
			v.err = errdefs.New(errdefs.ErrPlatformNotFound, "%s is an image for %s, not %s", v.src.Reference(), FormatPlatform(p), FormatPlatform(*v.o.platform))
			return
		}
		v.matched = true
	}
	if img.RootFS.Type != "layers" {
		v.add(cfgWhere, "diff_ids", "rootfs.type is %q, want \"layers\"", img.RootFS.Type)
	}
	if len(img.RootFS.DiffIDs) != len(m.Layers) {
		v.add(cfgWhere, "diff_ids", "%d diffIDs for %d layers", len(img.RootFS.DiffIDs), len(m.Layers))
	}
	for i, d := range img.RootFS.DiffIDs {
		if err := source.CheckDigest(d); err != nil {
			v.add(fmt.Sprintf("%s > rootfs.diff_ids[%d]", cfgWhere, i), "digest", "%v", err)
		}
	}
}
