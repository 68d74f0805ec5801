package resolve

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/source"
)

// Open parses a reference and returns the Source that serves it:
//
//	alpine, docker.io/library/alpine:3.20, host:5000/a/b@sha256:...   a registry
//	docker://NAME                                                     the same, skopeo-style
//	oci:DIR, oci:DIR:NAME, oci:DIR@DIGEST                             an OCI image layout
//	oci-archive:FILE[:NAME][@DIGEST]                                  a tar of an OCI image layout
//	docker-archive:FILE[:NAME:TAG|:@INDEX]                            the format of "docker save"
//
// For oci: and oci-archive:, as in skopeo, a trailing @ALG:HEX is a
// digest and the first ':' ends the path, so a name may hold colons
// ("oci:STORE:127.0.0.1:5000/repo:tag") and a path may not.
//
// Opening does no I/O for registries; the first request authenticates.
func Open(ctx context.Context, ref string, opts ...Option) (Source, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	return open(ref, o)
}

func open(ref string, o *options) (Source, error) {
	switch {
	case strings.HasPrefix(ref, "oci:"):
		return openLayout(strings.TrimPrefix(ref, "oci:"), o)
	case strings.HasPrefix(ref, "docker://"):
		return source.OpenRegistry(strings.TrimPrefix(ref, "docker://"), o.source...)
	case strings.HasPrefix(ref, "oci-archive:"):
		return openOCIArchive(strings.TrimPrefix(ref, "oci-archive:"), o)
	case strings.HasPrefix(ref, "docker-archive:"):
		return openDockerArchive(strings.TrimPrefix(ref, "docker-archive:"))
	case ref == "":
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "empty image reference")
	}
	return source.OpenRegistry(ref, o.source...)
}

// Resolve opens ref and resolves it to one platform's manifest, config and
// layers, verifying every document on the way.
func Resolve(ctx context.Context, ref string, opts ...Option) (*Resolved, error) {
	return openAnd(ctx, ref, opts, resolveSource)
}

// ResolveSource resolves what src's reference names.
func ResolveSource(ctx context.Context, src Source, opts ...Option) (*Resolved, error) {
	return withOptions(ctx, src, opts, resolveSource)
}

// openAnd opens ref with opts and runs do on the Source: the front of
// Resolve and ResolveAll.
func openAnd[T any](ctx context.Context, ref string, opts []Option, do func(context.Context, Source, *options) (T, error)) (T, error) {
	var zero T
	o, err := makeOptions(opts)
	if err != nil {
		return zero, err
	}
	src, err := open(ref, o)
	if err != nil {
		return zero, err
	}
	return do(ctx, src, o)
}

// withOptions runs do on src with opts: the front of ResolveSource and
// ResolveAllSource.
func withOptions[T any](ctx context.Context, src Source, opts []Option, do func(context.Context, Source, *options) (T, error)) (T, error) {
	o, err := makeOptions(opts)
	if err != nil {
		var zero T
		return zero, err
	}
	return do(ctx, src, o)
}

func resolveSource(ctx context.Context, src Source, o *options) (*Resolved, error) {
	want := HostPlatform()
	if o.platform != nil {
		want = *o.platform
	}
	w, root, err := startWalk(ctx, src, o, want)
	if err != nil {
		return nil, err
	}
	res := &Resolved{Reference: src.Reference(), Source: src}
	if err := w.walk(ctx, root, nil, 0, res); err != nil {
		return nil, err
	}
	return res, nil
}

// startWalk reads src's root descriptor and makes the walker that
// descends from it, wanting the platform want.
func startWalk(ctx context.Context, src Source, o *options, want ocispec.Platform) (*walker, ocispec.Descriptor, error) {
	root, err := src.Root(ctx)
	if err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	return &walker{src: src, o: o, want: want, seen: map[digest.Digest]bool{}}, root, nil
}

type walker struct {
	src  Source
	o    *options
	want ocispec.Platform
	seen map[digest.Digest]bool
	// entered counts the documents walked, for MaxDocuments.
	entered int
	// docs keeps the documents read, verified, by digest: an index that
	// lists one manifest many times costs one request for it.
	docs map[digest.Digest]fetched
	// platforms offered by every index read, for the error when none fits.
	offered []ocispec.Platform
}

// fetched is a document read and verified, and the host that served it.
type fetched struct {
	data []byte
	from string
}

// fetch reads a document verified against desc, once per digest.
func (w *walker) fetch(ctx context.Context, desc ocispec.Descriptor, what string) ([]byte, string, error) {
	if f, ok := w.docs[desc.Digest]; ok && int64(len(f.data)) == desc.Size {
		return f.data, f.from, nil
	}
	data, from, err := fetchDocument(ctx, w.src, desc, w.o.maxDocumentSize, what)
	if err != nil {
		return nil, "", err
	}
	if w.docs == nil {
		w.docs = map[digest.Digest]fetched{}
	}
	w.docs[desc.Digest] = fetched{data, from}
	return data, from, nil
}

// enter checks the nesting depth and loops, marks desc as being walked,
// and reads and classifies its document. Once it returns no error the
// caller deletes desc from w.seen when desc's subtree is done.
func (w *walker) enter(ctx context.Context, desc ocispec.Descriptor, depth int) ([]byte, string, docKind, error) {
	if depth > w.o.maxDepth {
		return nil, "", 0, errdefs.New(errdefs.ErrManifestInvalid, "indexes nest more than %d levels deep at %s", w.o.maxDepth, desc.Digest)
	}
	if w.seen[desc.Digest] {
		return nil, "", 0, errdefs.New(errdefs.ErrManifestInvalid, "index %s refers to itself", desc.Digest)
	}
	if w.entered++; w.entered > MaxDocuments {
		return nil, "", 0, errdefs.New(errdefs.ErrTooLarge, "the indexes list more than %d documents in all (at %s); this program reads at most that many", MaxDocuments, desc.Digest)
	}
	data, from, err := w.fetch(ctx, desc, "manifest")
	if err != nil {
		return nil, "", 0, err
	}
	kind, err := classifyDocument(desc, data)
	if err != nil {
		return nil, "", 0, err
	}
	w.seen[desc.Digest] = true
	return data, from, kind, nil
}

// walk reads desc and, for an index, descends into the best entry for the
// wanted platform; nested indexes are tried in order when no manifest of
// the index itself fits.
func (w *walker) walk(ctx context.Context, desc ocispec.Descriptor, platform *ocispec.Platform, depth int, res *Resolved) error {
	data, from, kind, err := w.enter(ctx, desc, depth)
	if err != nil {
		return err
	}
	defer delete(w.seen, desc.Digest)
	if kind == kindManifest {
		return w.manifest(ctx, desc, data, from, platform, res)
	}

	var idx ocispec.Index
	if err := json.Unmarshal(data, &idx); err != nil {
		return errdefs.Wrap(err, errdefs.ErrManifestInvalid, "index %s", desc.Digest)
	}
	res.Indexes = append(res.Indexes, Blob{Descriptor: desc, Data: data, From: from})
	defer func() {
		if len(res.Indexes) > 0 && res.Manifest.Data == nil {
			res.Indexes = res.Indexes[:len(res.Indexes)-1]
		}
	}()

	// An entry without a mediaType (the schema wants one; ResolveAll and
	// the store read the type from the document) is a candidate too:
	// entering it classifies the document. Skipped, its platform was
	// offered and then said to be missing.
	candidate := func(m ocispec.Descriptor) bool { return m.MediaType == "" || isManifestType(m.MediaType) }
	var nested []int
	firstUnplatformed := -1
	for i, m := range idx.Manifests {
		if err := source.CheckDigest(m.Digest); err != nil {
			return errdefs.Wrap(err, errdefs.ErrManifestInvalid, "index %s entry %d", desc.Digest, i)
		}
		if m.Platform != nil && !isAttestationEntry(m) {
			// A build attestation (unknown/unknown) is not a platform.
			w.offered = append(w.offered, *m.Platform)
			res.Platforms = append(res.Platforms, *m.Platform)
		}
		switch {
		case candidate(m) && m.Platform == nil && firstUnplatformed < 0:
			firstUnplatformed = i
		case isIndexType(m.MediaType):
			if m.Platform == nil || Matches(w.want, *m.Platform) {
				nested = append(nested, i)
			}
		}
	}
	// The best manifest for the wanted platform by containerd's order; an
	// entry without a platform fits anything, but least well.
	best := bestMatch(w.want, idx.Manifests, candidate)
	if best < 0 {
		best = firstUnplatformed
	}
	if best >= 0 {
		m := idx.Manifests[best]
		return w.walk(ctx, m, m.Platform, depth+1, res)
	}
	var lastErr error
	for _, i := range nested {
		m := idx.Manifests[i]
		err := w.walk(ctx, m, m.Platform, depth+1, res)
		if err == nil {
			return nil
		}
		if !errdefs.Is(err, errdefs.ErrPlatformNotFound) {
			return err
		}
		lastErr = err
	}
	if lastErr != nil && depth > 0 {
		return lastErr
	}
	return errdefs.New(errdefs.ErrPlatformNotFound, "%s has no image for platform %s; available: %s",
		w.src.Reference(), FormatPlatform(w.want), platformList(w.offered))
}

// manifest reads a manifest and its config, and pairs layers with diffIDs.
func (w *walker) manifest(ctx context.Context, desc ocispec.Descriptor, data []byte, from string, platform *ocispec.Platform, res *Resolved) error {
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return errdefs.Wrap(err, errdefs.ErrManifestInvalid, "manifest %s", desc.Digest)
	}
	if desc.MediaType == "" {
		desc.MediaType = m.MediaType
	}
	if !isConfigType(m.Config.MediaType) {
		return errdefs.New(errdefs.ErrUnsupportedMediaType,
			"manifest %s is an artifact (config media type %q), not a runnable image", desc.Digest, m.Config.MediaType)
	}
	if err := source.CheckDigest(m.Config.Digest); err != nil {
		return errdefs.Wrap(err, errdefs.ErrManifestInvalid, "manifest %s config", desc.Digest)
	}
	for i, l := range m.Layers {
		if err := source.CheckDigest(l.Digest); err != nil {
			return errdefs.Wrap(err, errdefs.ErrManifestInvalid, "manifest %s layer %d", desc.Digest, i+1)
		}
		// A size near 2^63 would overflow the offset arithmetic of a
		// download; no layer is anywhere near the cap.
		if err := source.CheckSize(l.Size, source.MaxBlobSize, fmt.Sprintf("manifest %s layer %d", desc.Digest, i+1)); err != nil {
			return err
		}
		if !IsLayerType(l.MediaType) {
			return errdefs.New(errdefs.ErrUnsupportedMediaType, "manifest %s layer %d has media type %q, which is not an image layer", desc.Digest, i+1, l.MediaType)
		}
	}
	cfgData, cfgFrom, err := w.fetch(ctx, m.Config, "config")
	if err != nil {
		return err
	}
	var img ocispec.Image
	if err := json.Unmarshal(cfgData, &img); err != nil {
		return errdefs.Wrap(err, errdefs.ErrManifestInvalid, "config %s", m.Config.Digest)
	}
	if img.RootFS.Type != "layers" {
		return errdefs.New(errdefs.ErrManifestInvalid, "config %s: rootfs.type is %q, want \"layers\"", m.Config.Digest, img.RootFS.Type)
	}
	if len(img.RootFS.DiffIDs) != len(m.Layers) {
		return errdefs.New(errdefs.ErrManifestInvalid, "config %s lists %d diffIDs for %d layers", m.Config.Digest, len(img.RootFS.DiffIDs), len(m.Layers))
	}
	layers := make([]Layer, len(m.Layers))
	for i, l := range m.Layers {
		d := img.RootFS.DiffIDs[i]
		if err := source.CheckDigest(d); err != nil {
			return errdefs.Wrap(err, errdefs.ErrManifestInvalid, "config %s diffID %d", m.Config.Digest, i)
		}
		layers[i] = Layer{Descriptor: l, DiffID: d}
	}

	cfgPlatform := ocispec.Platform{OS: img.OS, Architecture: img.Architecture, Variant: img.Variant, OSVersion: img.OSVersion}
	if platform == nil {
		// A manifest named directly: with an explicit platform it must
		// fit; by default any platform is accepted, as other tools do.
		if w.o.platform != nil && cfgPlatform.OS == "" && cfgPlatform.Architecture == "" {
			// crane append makes such configs; normalized, the empty
			// platform printed as "linux/", an image for no architecture.
			return errdefs.New(errdefs.ErrPlatformNotFound, "%s names no platform (its config has no os and no architecture), so it cannot be checked against %s; name no platform to take it as it is",
				w.src.Reference(), FormatPlatform(*w.o.platform))
		}
		if w.o.platform != nil && !Matches(*w.o.platform, cfgPlatform) {
			return errdefs.New(errdefs.ErrPlatformNotFound, "%s is an image for %s, not %s",
				w.src.Reference(), FormatPlatform(Normalize(cfgPlatform)), FormatPlatform(*w.o.platform))
		}
		platform = &cfgPlatform
	}

	res.Manifest = Blob{Descriptor: desc, Data: data, From: from}
	res.ImageManifest = m
	res.Config = Blob{Descriptor: m.Config, Data: cfgData, From: cfgFrom}
	res.Image = img
	res.Platform = *platform
	res.Layers = layers
	return nil
}
