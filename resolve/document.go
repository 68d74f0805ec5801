package resolve

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/source"
)

// readCapped reads all of r, failing with too_large past limit bytes.
func readCapped(r io.Reader, limit int64, what string) ([]byte, error) {
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(r, limit+1))
	if err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrNetwork, "reading %s", what)
	}
	if n > limit {
		return nil, errdefs.New(errdefs.ErrTooLarge, "%s is over the %d byte limit", what, limit)
	}
	return buf.Bytes(), nil
}

// docKind is what a document turned out to be.
type docKind int

const (
	kindIndex docKind = iota + 1
	kindManifest
)

// fetchDocument reads an index or manifest (or, with config set, a config)
// named by desc and checks it: size within the cap and equal to the
// descriptor's, bytes hashing to the digest. With a Mirrored source every
// endpoint is tried in order until one serves good bytes, so a mirror with
// stale or corrupt content cannot stop a pull the upstream can serve. It
// returns the bytes and the name of the host (or file) that served them.
func fetchDocument(ctx context.Context, src Source, desc ocispec.Descriptor, limit int64, what string) ([]byte, string, error) {
	if err := source.CheckDigest(desc.Digest); err != nil {
		return nil, "", errdefs.Wrap(err, errdefs.ErrManifestInvalid, "%s", what)
	}
	if err := source.CheckSize(desc.Size, limit, what+" "+desc.Digest.String()); err != nil {
		return nil, "", err
	}
	sources := []Source{src}
	if m, ok := src.(Mirrored); ok {
		sources = m.Endpoints()
	}
	var last error
	for _, s := range sources {
		data, err := readVerified(ctx, s, desc, limit, what)
		if err == nil {
			return data, source.Name(s), nil
		}
		if ctx.Err() != nil {
			return nil, "", source.ContextError(ctx, what+" "+desc.Digest.String(), err)
		}
		// The upstream's error is the last one, and the one that
		// matters when nothing worked.
		last = err
	}
	if last == nil {
		return nil, "", errdefs.New(errdefs.ErrInvalidArgument, "%s: no configured host may serve content (capabilities)", src.Reference())
	}
	return nil, "", last
}

func readVerified(ctx context.Context, s Source, desc ocispec.Descriptor, limit int64, what string) ([]byte, error) {
	rc, err := s.Fetch(ctx, desc)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	// Read one byte past what the descriptor promises, to notice a body
	// that is too long without reading an unbounded one.
	max := limit
	if desc.Size > 0 {
		max = desc.Size
	}
	data, err := readCapped(rc, max, fmt.Sprintf("%s %s", what, desc.Digest))
	if err != nil {
		if desc.Size > 0 && errdefs.Is(err, errdefs.ErrTooLarge) {
			return nil, errdefs.New(errdefs.ErrSizeMismatch, "%s %s: %s served more than the %d bytes its descriptor gives", what, desc.Digest, source.Name(s), desc.Size)
		}
		return nil, err
	}
	if desc.Size > 0 && int64(len(data)) != desc.Size {
		return nil, errdefs.New(errdefs.ErrSizeMismatch, "%s %s: %s served %d bytes, its descriptor gives %d", what, desc.Digest, source.Name(s), len(data), desc.Size)
	}
	if got := desc.Digest.Algorithm().FromBytes(data); got != desc.Digest {
		return nil, errdefs.New(errdefs.ErrDigestMismatch, "%s %s: %s served bytes that hash to %s", what, desc.Digest, source.Name(s), got)
	}
	return data, nil
}

// ruleError is a document error that names the Validate rule it breaks,
// so that Validate never has to recognize an error by its text. Its text
// and kind are those of the error it carries.
type ruleError struct {
	rule string
	error
}

func (r ruleError) Unwrap() error { return r.error }

// docHead holds the fields that tell an index from a manifest.
type docHead struct {
	SchemaVersion *int            `json:"schemaVersion"`
	MediaType     string          `json:"mediaType"`
	Manifests     json.RawMessage `json:"manifests"`
	Config        json.RawMessage `json:"config"`
	Layers        json.RawMessage `json:"layers"`
	FSLayers      json.RawMessage `json:"fsLayers"`
}

// classifyDocument decides whether data is an index or a manifest, and
// refuses documents whose own mediaType disagrees with the descriptor that
// led to them or that could be read as both (CVE-2021-41190).
func classifyDocument(desc ocispec.Descriptor, data []byte) (docKind, error) {
	var h docHead
	if err := json.Unmarshal(data, &h); err != nil {
		return 0, errdefs.Wrap(err, errdefs.ErrManifestInvalid, "document %s is not valid JSON", desc.Digest)
	}
	if isSchema1(desc.MediaType) || isSchema1(h.MediaType) || (h.SchemaVersion != nil && *h.SchemaVersion == 1) || h.FSLayers != nil {
		return 0, errdefs.New(errdefs.ErrUnsupportedMediaType,
			"manifest %s is Docker schema 1, which is obsolete and unsupported; push the image again with a current client", desc.Digest)
	}
	if h.SchemaVersion == nil || *h.SchemaVersion != 2 {
		return 0, errdefs.New(errdefs.ErrManifestInvalid, "document %s: schemaVersion must be 2", desc.Digest)
	}
	hasIndex := h.Manifests != nil
	hasManifest := h.Config != nil || h.Layers != nil
	if hasIndex && hasManifest {
		return 0, ruleError{"ambiguous", errdefs.New(errdefs.ErrManifestInvalid,
			"document %s is ambiguous: it has both \"manifests\" and \"config\"/\"layers\"", desc.Digest)}
	}
	if h.MediaType != "" && desc.MediaType != "" && h.MediaType != desc.MediaType {
		return 0, ruleError{"media_type", errdefs.New(errdefs.ErrManifestInvalid,
			"document %s declares mediaType %q but was referenced as %q", desc.Digest, h.MediaType, desc.MediaType)}
	}
	mt := h.MediaType
	if mt == "" {
		mt = desc.MediaType
	}
	switch {
	case isIndexType(mt):
		if !hasIndex {
			return 0, errdefs.New(errdefs.ErrManifestInvalid, "index %s has no \"manifests\"", desc.Digest)
		}
		return kindIndex, nil
	case isManifestType(mt):
		if !hasManifest || h.Config == nil {
			return 0, errdefs.New(errdefs.ErrManifestInvalid, "manifest %s has no \"config\"", desc.Digest)
		}
		return kindManifest, nil
	case mt == "":
		// Neither the document nor its descriptor says; the structure is
		// unambiguous (checked above), so go by it.
		if hasIndex {
			return kindIndex, nil
		}
		if h.Config != nil {
			return kindManifest, nil
		}
		return 0, errdefs.New(errdefs.ErrManifestInvalid, "document %s is neither an index nor a manifest", desc.Digest)
	default:
		return 0, errdefs.New(errdefs.ErrUnsupportedMediaType, "document %s has media type %q, which is not an image index or manifest", desc.Digest, mt)
	}
}
