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

// Validate checks every index, manifest and config reachable from src's
// root, for every platform: the image-spec JSON schemas, and what a schema
// cannot say (digests and sizes match, one diffID per layer, media types
// agree, platforms present in indexes). It returns every problem found; an
// error only when the root itself cannot be read.
func Validate(ctx context.Context, src Source, opts ...Option) ([]Problem, error) {
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
	return v.problems, ctx.Err()
}

type validator struct {
	src      Source
	o        *options
	problems []Problem
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
	v.manifest(ctx, desc, data, strings.Replace(where, "document", "manifest", 1))
}

func (v *validator) index(ctx context.Context, desc ocispec.Descriptor, data []byte, where string, depth int) {
	v.schema(where, schema.ValidatorMediaTypeImageIndex, data)
	var idx ocispec.Index
	if err := json.Unmarshal(data, &idx); err != nil {
		v.add(where, "schema", "%v", err)
		return
	}
	for i, m := range idx.Manifests {
		entry := fmt.Sprintf("%s > manifests[%d]", where, i)
		if m.Platform != nil {
			entry += " " + FormatPlatform(*m.Platform)
		}
		switch {
		case isManifestType(m.MediaType):
			if m.Platform == nil {
				v.add(entry, "platform", "an image manifest in an index has no platform")
			} else if m.Platform.OS == "" || m.Platform.Architecture == "" {
				v.add(entry, "platform", "platform lacks os or architecture")
			}
			v.document(ctx, m, entry, depth+1)
		case isIndexType(m.MediaType):
			v.document(ctx, m, entry, depth+1)
		default:
			// Other content (signatures, attestations, artifacts) may hang
			// off an index; it is not an image and is not checked further.
		}
	}
}

func (v *validator) manifest(ctx context.Context, desc ocispec.Descriptor, data []byte, where string) {
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
