package fetch

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"regexp"
	"slices"
	"sort"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/mediatype"
	"github.com/ocifetch/ocifetch/resolve"
	"github.com/ocifetch/ocifetch/source"
)

// The entries of index.json.
//
// An entry is keyed by its name (org.opencontainers.image.ref.name, the
// name skopeo's "oci:DIR:NAME" looks up, kept exactly as given) and its
// platform: pulling linux/arm64 of a tag after linux/amd64 adds an entry
// beside the first instead of replacing it, and a name with several
// entries is resolved by platform as an index would be (Lookup, and
// resolve.OpenLayout for "oci:DIR:NAME"). An image index recorded under a
// name (a pull of every platform) covers every platform: it replaces all
// entries of that name. Every entry carries the media type of its
// document, and a manifest entry its platform, read from the document and
// its config where the descriptor lacks them: GC and other tools decide
// what an entry reaches by its media type.

// document is what the store reads of an index or manifest: its type and
// the descriptors it refers to.
type document struct {
	MediaType    string               `json:"mediaType"`
	ArtifactType string               `json:"artifactType"`
	Manifests    []ocispec.Descriptor `json:"manifests"`
	Config       *ocispec.Descriptor  `json:"config"`
	Layers       []ocispec.Descriptor `json:"layers"`
	Blobs        []ocispec.Descriptor `json:"blobs"` // the withdrawn OCI artifact manifest
	Subject      *ocispec.Descriptor  `json:"subject"`
}

// children lists what the document refers to, its subject included.
func (d *document) children() []ocispec.Descriptor {
	out := make([]ocispec.Descriptor, 0, len(d.Manifests)+len(d.Layers)+len(d.Blobs)+2)
	out = append(out, d.Manifests...)
	if d.Config != nil {
		out = append(out, *d.Config)
	}
	out = append(out, d.Layers...)
	out = append(out, d.Blobs...)
	if d.Subject != nil {
		out = append(out, *d.Subject)
	}
	return out
}

// readDocument reads and parses the stored blob d as an index or manifest,
// whatever a descriptor said of it. It reports false for a blob that is
// missing, larger than a document may be, or not a JSON object. A blob
// that is both an index and a manifest (CVE-2021-41190) is returned with
// an error: GC still follows everything it names, other callers refuse it.
func (s *Store) readDocument(d digest.Digest) (*document, bool, error) {
	if source.CheckDigest(d) != nil {
		return nil, false, nil
	}
	f, err := source.OpenRegular(s.blobPath(d))
	if err != nil {
		return nil, false, nil
	}
	defer f.Close()
	var head [1]byte
	for {
		if _, err := io.ReadFull(f, head[:]); err != nil {
			return nil, false, nil
		}
		if c := head[0]; c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			break
		}
	}
	if head[0] != '{' { // a layer, most likely: not worth reading
		return nil, false, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, false, nil
	}
	data, err := io.ReadAll(io.LimitReader(f, resolve.DefaultMaxDocumentSize+1))
	if err != nil || len(data) > resolve.DefaultMaxDocumentSize {
		return nil, false, nil
	}
	var doc document
	if json.Unmarshal(data, &doc) != nil {
		return nil, false, nil
	}
	if doc.Manifests != nil && (doc.Config != nil || doc.Layers != nil) {
		return &doc, true, errdefs.New(errdefs.ErrManifestInvalid, "blob %s is both an index and a manifest", d)
	}
	if doc.MediaType == "" {
		switch {
		case doc.Manifests != nil:
			doc.MediaType = ocispec.MediaTypeImageIndex
		case doc.Config != nil:
			doc.MediaType = ocispec.MediaTypeImageManifest
		}
	}
	return &doc, true, nil
}

func isIndexType(mt string) bool    { return mediatype.IsIndex(mt) }
func isManifestType(mt string) bool { return mediatype.IsManifest(mt) }

// complete fills in what an entry must carry: the media type of its
// document and, for an image manifest, the platform its config gives.
func (s *Store) complete(desc *ocispec.Descriptor) error {
	if desc.MediaType != "" && (desc.Platform != nil || !isManifestType(desc.MediaType)) {
		return nil
	}
	doc, ok, err := s.readDocument(desc.Digest)
	if err != nil {
		return err
	}
	if !ok || doc.MediaType == "" {
		if desc.MediaType == "" {
			return errdefs.New(errdefs.ErrManifestInvalid, "cannot record %s: it is not an image index or manifest", desc.Digest)
		}
		return nil
	}
	if desc.MediaType == "" {
		desc.MediaType = doc.MediaType
	} else if desc.MediaType != doc.MediaType && doc.MediaType != "" {
		return errdefs.New(errdefs.ErrManifestInvalid, "cannot record %s as %s: the document says %s", desc.Digest, desc.MediaType, doc.MediaType)
	}
	if desc.Platform == nil && isManifestType(desc.MediaType) && doc.Config != nil {
		desc.Platform = s.configPlatform(*doc.Config)
	}
	return nil
}

// configPlatform reads the platform an image config gives, or nil.
func (s *Store) configPlatform(cfg ocispec.Descriptor) *ocispec.Platform {
	if source.CheckDigest(cfg.Digest) != nil || cfg.Size > resolve.DefaultMaxDocumentSize {
		return nil
	}
	f, err := source.OpenRegular(s.blobPath(cfg.Digest))
	if err != nil {
		return nil
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, resolve.DefaultMaxDocumentSize+1))
	if err != nil || len(data) > resolve.DefaultMaxDocumentSize {
		return nil
	}
	var img ocispec.Image
	if json.Unmarshal(data, &img) != nil || img.OS == "" || img.Architecture == "" {
		return nil
	}
	return &ocispec.Platform{OS: img.OS, Architecture: img.Architecture, Variant: img.Variant, OSVersion: img.OSVersion}
}

// platformKey is what makes two entries of one name the same image: their
// normalized platform ("" for none, which an index entry has).
func platformKey(p *ocispec.Platform) string {
	if p == nil {
		return ""
	}
	n := resolve.Normalize(*p)
	k := resolve.FormatPlatform(n)
	if n.OSVersion != "" {
		k += ":" + n.OSVersion
	}
	return k
}

// cosignTagRE matches the tags cosign gives what it attaches to an image:
// "sha256-<hex>.sig" (signatures), ".att" (attestations), ".sbom".
var cosignTagRE = regexp.MustCompile(`:(sha256|sha512)-([0-9a-f]{64,128})\.(sig|att|sbom)$`)

// referrerOf reports the manifest an entry refers to, when it is a
// referrer: recorded by PutReferrer, or named with cosign's tag for what
// it attaches to a digest.
func referrerOf(m ocispec.Descriptor) (digest.Digest, bool) {
	if d := digest.Digest(m.Annotations[AnnotationSubject]); d != "" {
		return d, source.CheckDigest(d) == nil
	}
	if sm := cosignTagRE.FindStringSubmatch(m.Annotations[ocispec.AnnotationRefName]); sm != nil {
		d := digest.NewDigestFromEncoded(digest.Algorithm(sm[1]), sm[2])
		return d, source.CheckDigest(d) == nil
	}
	return "", false
}

// Tag records desc in index.json under name (the
// org.opencontainers.image.ref.name annotation). The blob must be in the
// store. Where desc lacks them, its media type is taken from the document
// and, for an image manifest, its platform from the config.
//
// A manifest replaces the entry of the same name and platform, and is
// added beside entries of the same name for other platforms; it is not
// added when an index recorded under that name already lists it. An index
// replaces every entry of its name. With an empty name, desc is added
// unless an unnamed entry with its digest is already there. An entry that
// was in place keeps its position, so that tools which take the first
// entry of a name (skopeo) keep seeing the same image.
func (s *Store) Tag(ctx context.Context, name string, desc ocispec.Descriptor) error {
	if err := checkDescriptor(desc); err != nil {
		return err
	}
	// Shared, and across the check and the record: GC must not remove
	// the blob in between.
	gc, err := s.lockGC(ctx, false)
	if err != nil {
		return err
	}
	defer gc.unlock()
	if !s.has(desc) {
		return errdefs.New(errdefs.ErrNotFound, "cannot record %s: blob is not in the store", desc.Digest)
	}
	desc.Annotations = maps.Clone(desc.Annotations)
	if err := s.complete(&desc); err != nil {
		return err
	}
	if name != "" {
		if desc.Annotations == nil {
			desc.Annotations = map[string]string{}
		}
		desc.Annotations[ocispec.AnnotationRefName] = name
	} else {
		// The name is Tag's to give: a descriptor read from a layout
		// brings that layout's ref.name, and recorded under it no entry
		// would ever replace it (every pull of "oci:DIR" added one more).
		delete(desc.Annotations, ocispec.AnnotationRefName)
	}
	return s.updateIndexLocked(ctx, func(idx *ocispec.Index) error {
		s.repair(idx)
		replaces := func(m ocispec.Descriptor) bool {
			n := m.Annotations[ocispec.AnnotationRefName]
			switch {
			case name == "":
				return n == "" && m.Digest == desc.Digest
			case n != name:
				return false
			case isIndexType(desc.MediaType):
				return true
			default:
				return !isIndexType(m.MediaType) && platformKey(m.Platform) == platformKey(desc.Platform)
			}
		}
		at, replaced := -1, false
		out := idx.Manifests[:0]
		for _, m := range idx.Manifests {
			if replaces(m) {
				if at < 0 {
					at = len(out)
				}
				replaced = true
				continue
			}
			out = append(out, m)
		}
		if !replaced && name != "" && isManifestType(desc.MediaType) && s.indexedUnder(out, name, desc.Digest) {
			idx.Manifests = out
			return nil
		}
		if at < 0 {
			at = len(out)
		}
		idx.Manifests = slices.Insert(out, at, desc)
		return nil
	})
}

// repair fills in the media type of entries that lack it (recorded by an
// older version, or by another tool), so that GC and lookups by platform
// see what they are.
func (s *Store) repair(idx *ocispec.Index) {
	for i := range idx.Manifests {
		if idx.Manifests[i].MediaType == "" {
			m := idx.Manifests[i]
			if s.complete(&m) == nil {
				idx.Manifests[i] = m
			}
		}
	}
}

// indexedUnder reports whether an index entry of name lists manifest d
// (directly or through nested indexes).
func (s *Store) indexedUnder(entries []ocispec.Descriptor, name string, d digest.Digest) bool {
	for _, m := range entries {
		if m.Annotations[ocispec.AnnotationRefName] == name && isIndexType(m.MediaType) && s.indexLists(m.Digest, d, 0) {
			return true
		}
	}
	return false
}

func (s *Store) indexLists(index, d digest.Digest, depth int) bool {
	if depth >= maxWalkDepth {
		return false
	}
	doc, ok, _ := s.readDocument(index)
	if !ok {
		return false
	}
	for _, m := range doc.Manifests {
		if m.Digest == d || (isIndexType(m.MediaType) && s.indexLists(m.Digest, d, depth+1)) {
			return true
		}
	}
	return false
}

// Lookup returns the index.json entry recorded under name. When the name
// has several entries (one per platform, or an index and some platforms),
// the one for platform is chosen as resolving an index would (nil: this
// machine's platform); see resolve.OpenLayout.
func (s *Store) Lookup(name string, platform *ocispec.Platform) (ocispec.Descriptor, error) {
	var opts []resolve.Option
	if platform != nil {
		opts = append(opts, resolve.WithPlatform(*platform))
	}
	src, err := resolve.OpenLayout(s.dir, name, "", opts...)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return src.Root(context.Background())
}

// Image is an entry of the store's index.json as Images lists it.
type Image struct {
	// Name is the entry's org.opencontainers.image.ref.name ("" for an
	// entry recorded without a name).
	Name string
	// Descriptor is the entry: an image manifest, or an image index
	// recorded whole (pull of every platform).
	Descriptor ocispec.Descriptor
	// Platforms are the entry's platform, or for an index the platforms
	// of the images it lists.
	Platforms []ocispec.Platform
	// Size counts the bytes of the blobs the entry reaches that the store
	// holds, each once.
	Size int64
	// Complete is true when the store holds every blob the entry reaches,
	// so that it can be unpacked without the network.
	Complete bool
	// Missing counts the blobs the entry reaches that the store does not
	// hold; Dropped are those of them that root filesystems make again
	// (see RecordDropped).
	Missing int
	Dropped []Dropped
}

// Images lists the images recorded in index.json, in its order. Entries
// recorded with PutReferrer (signatures and other referrers) are not
// images and are left out.
func (s *Store) Images(ctx context.Context) ([]Image, error) {
	idx, err := s.Index()
	if err != nil {
		return nil, err
	}
	out := []Image{}
	for _, m := range idx.Manifests {
		if _, ok := referrerOf(m); ok {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if m.MediaType == "" {
			s.complete(&m)
		}
		im := Image{Name: m.Annotations[ocispec.AnnotationRefName], Descriptor: m, Complete: true}
		if source.CheckDigest(m.Digest) != nil {
			// A hand-edited entry naming no valid digest: listed as it
			// is, never as an image whose blobs are kept.
			im.Complete = false
			out = append(out, im)
			continue
		}
		if m.Platform != nil {
			im.Platforms = []ocispec.Platform{*m.Platform}
		} else if isIndexType(m.MediaType) {
			if doc, ok, _ := s.readDocument(m.Digest); ok {
				for _, c := range doc.Manifests {
					if c.Platform != nil && !isAttestation(c) {
						im.Platforms = append(im.Platforms, *c.Platform)
					}
				}
			}
		}
		seen := map[digest.Digest]bool{}
		s.reach(m, seen, 0, func(d ocispec.Descriptor, present bool) {
			if present {
				im.Size += d.Size
				return
			}
			im.Complete = false
			im.Missing++
			if rec, ok, _ := s.DroppedBlob(d.Digest); ok {
				im.Dropped = append(im.Dropped, rec)
			}
		})
		out = append(out, im)
	}
	return out, nil
}

// isAttestation recognizes the entries buildx adds to an index for its
// attestations: platform unknown/unknown, or the annotation saying so.
func isAttestation(d ocispec.Descriptor) bool {
	if d.Annotations["vnd.docker.reference.type"] == "attestation-manifest" {
		return true
	}
	return d.Platform != nil && d.Platform.OS == "unknown" && d.Platform.Architecture == "unknown"
}

// reach calls fn for desc and every blob it reaches, each once, with
// whether the store holds it (at its size). The subject of a referrer is
// not followed: it is what the referrer is about, not part of it.
func (s *Store) reach(desc ocispec.Descriptor, seen map[digest.Digest]bool, depth int, fn func(ocispec.Descriptor, bool)) {
	if seen[desc.Digest] || source.CheckDigest(desc.Digest) != nil {
		return
	}
	seen[desc.Digest] = true
	present := s.has(desc)
	fn(desc, present)
	if !present || depth >= maxWalkDepth {
		return
	}
	doc, ok, _ := s.readDocument(desc.Digest)
	if !ok {
		return
	}
	doc.Subject = nil
	for _, c := range doc.children() {
		s.reach(c, seen, depth+1, fn)
	}
}

// Remove removes from index.json every entry recorded under ref, a name
// (every platform of it) or a digest ("sha256:..."), and returns them.
// Their blobs stay until the next GC, which also drops the referrers
// recorded for them. Nothing recorded under ref is not_found.
func (s *Store) Remove(ctx context.Context, ref string) ([]ocispec.Descriptor, error) {
	if ref == "" {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "nothing to remove: empty name")
	}
	byDigest := source.CheckDigest(digest.Digest(ref)) == nil
	var removed []ocispec.Descriptor
	err := s.updateIndex(ctx, func(idx *ocispec.Index) error {
		out := idx.Manifests[:0]
		for _, m := range idx.Manifests {
			if (byDigest && m.Digest == digest.Digest(ref)) || m.Annotations[ocispec.AnnotationRefName] == ref {
				removed = append(removed, m)
				continue
			}
			out = append(out, m)
		}
		idx.Manifests = out
		if len(removed) == 0 {
			return errdefs.New(errdefs.ErrNotFound, "no image named %q in %s", ref, s.dir)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return removed, nil
}

// PutReferrer stores manifest, a document about the image manifest
// subject (a signature, an attestation, an SBOM: an OCI 1.1 referrer, or
// an image that cosign attached under its "sha256-<hex>.sig" tag), with
// the blobs it refers to, and records it in index.json so that GC keeps
// it for as long as it keeps subject. Every blob is verified against its
// descriptor. name, if not empty, is recorded as its ref.name (cosign's
// tag, e.g. "registry.example/app:sha256-<hex>.sig") and replaces an entry
// of that name; otherwise an entry with the same subject and digest is
// replaced. A manifest whose own subject field names another manifest is
// refused.
//
// Signatures are recorded beside the image they sign, not inside it:
// Referrers lists them, GC drops them once their subject is gone (Remove,
// then GC), and tools that read the layout see them as entries with the
// AnnotationSubject annotation.
func (s *Store) PutReferrer(ctx context.Context, subject digest.Digest, name string, manifest resolve.Blob, blobs ...resolve.Blob) error {
	if err := source.CheckDigest(subject); err != nil {
		return err
	}
	gc, err := s.lockGC(ctx, false)
	if err != nil {
		return err
	}
	defer gc.unlock()
	for _, b := range append(blobs, manifest) {
		if err := s.WriteBlob(ctx, b.Descriptor, b.Data); err != nil {
			return err
		}
	}
	desc := manifest.Descriptor
	desc.Annotations = maps.Clone(desc.Annotations)
	if err := s.complete(&desc); err != nil {
		return err
	}
	if doc, ok, _ := s.readDocument(desc.Digest); ok && doc.Subject != nil && doc.Subject.Digest != subject {
		return errdefs.New(errdefs.ErrInvalidArgument, "referrer %s is about %s, not %s", desc.Digest, doc.Subject.Digest, subject)
	}
	if desc.Annotations == nil {
		desc.Annotations = map[string]string{}
	}
	desc.Annotations[AnnotationSubject] = subject.String()
	desc.Platform = nil
	if name != "" {
		desc.Annotations[ocispec.AnnotationRefName] = name
	}
	return s.updateIndexLocked(ctx, func(idx *ocispec.Index) error {
		at := -1
		out := idx.Manifests[:0]
		for _, m := range idx.Manifests {
			n := m.Annotations[ocispec.AnnotationRefName]
			if (name != "" && n == name) || (name == "" && n == "" && m.Digest == desc.Digest && m.Annotations[AnnotationSubject] == subject.String()) {
				if at < 0 {
					at = len(out)
				}
				continue
			}
			out = append(out, m)
		}
		if at < 0 {
			at = len(out)
		}
		idx.Manifests = slices.Insert(out, at, desc)
		return nil
	})
}

// Referrers returns the entries of index.json that refer to subject:
// those PutReferrer recorded, and those named with cosign's tags for it
// ("...:sha256-<hex>.sig", ".att", ".sbom"), in index.json order.
func (s *Store) Referrers(subject digest.Digest) ([]ocispec.Descriptor, error) {
	if err := source.CheckDigest(subject); err != nil {
		return nil, err
	}
	idx, err := s.Index()
	if err != nil {
		return nil, err
	}
	out := []ocispec.Descriptor{}
	for _, m := range idx.Manifests {
		if d, ok := referrerOf(m); ok && d == subject {
			out = append(out, m)
		}
	}
	return out, nil
}

// sortedDigests returns the keys of m in order.
func sortedDigests[V any](m map[digest.Digest]V) []digest.Digest {
	out := make([]digest.Digest, 0, len(m))
	for d := range m {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
