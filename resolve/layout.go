package resolve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/source"
)

// layoutSource reads an OCI image layout directory.
type layoutSource struct {
	dir    string // the directory or archive, for messages
	files  files
	name   string // the org.opencontainers.image.ref.name asked for
	pinned digest.Digest
	ref    string
	// platform is the platform asked for (nil: this machine's, by
	// default), which picks among several entries of one name.
	platform *ocispec.Platform
}

// Annotations the fetch stage's store writes (fetch.AnnotationIndexes and
// fetch.AnnotationSubject): an entry chosen from an index, and an entry
// that is a signature or other referrer rather than an image.
const (
	annotationIndexes = "com.github.ocifetch.indexes"
	annotationSubject = "com.github.ocifetch.subject"
)

// cosignTagRE matches the tags cosign gives what it attaches to an image
// (signatures, attestations, SBOMs): entries named so are not images.
var cosignTagRE = regexp.MustCompile(`:(sha256|sha512)-[0-9a-f]{64,128}\.(sig|att|sbom)$`)

// files is read access to the files of a layout, wherever they are kept:
// a directory, or a tar archive of one.
type files interface {
	// open opens the regular file at the slash-separated name at offset
	// off; a missing file is fs.ErrNotExist.
	open(name string, off int64) (io.ReadCloser, error)
	// size returns the size of the regular file at name.
	size(name string) (int64, error)
}

// dirFiles reads a layout directory. Files are opened without following a
// final symlink, and only regular files are read.
type dirFiles struct{ dir string }

func (d dirFiles) open(name string, off int64) (io.ReadCloser, error) {
	f, err := source.OpenRegular(filepath.Join(d.dir, filepath.FromSlash(name)))
	if err != nil {
		return nil, err
	}
	if off > 0 {
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

func (d dirFiles) size(name string) (int64, error) {
	info, err := os.Lstat(filepath.Join(d.dir, filepath.FromSlash(name)))
	if err != nil {
		return 0, err
	}
	if !info.Mode().IsRegular() {
		return 0, fs.ErrNotExist
	}
	return info.Size(), nil
}

// openLayout parses "DIR", "DIR:NAME", "DIR@DIGEST" or
// "DIR:NAME@DIGEST" (after "oci:").
func openLayout(spec string, o *options) (*layoutSource, error) {
	s, err := parseLayoutSpec(spec, "oci", o)
	if err != nil {
		return nil, err
	}
	s.files = dirFiles{dir: s.dir}
	return s, nil
}

// OpenLayout returns a Source for an image in the OCI image layout at dir:
// the entry of index.json named name (its
// org.opencontainers.image.ref.name), or the manifest or index pinned, or
// with neither the only image the layout holds. Unlike "oci:DIR:NAME" it
// takes dir as it is, so dir may contain ':'. When several entries share
// the name (one per platform, as the fetch stage's store records them),
// the platform of WithPlatform, else this machine's, picks one as an index
// would; resolving then checks the rest as for any reference.
func OpenLayout(dir, name string, pinned digest.Digest, opts ...Option) (Source, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	if pinned != "" {
		if err := source.CheckDigest(pinned); err != nil {
			return nil, err
		}
	}
	s := &layoutSource{dir: dir, name: name, pinned: pinned, platform: o.platform}
	if err := s.finish("oci"); err != nil {
		return nil, err
	}
	s.files = dirFiles{dir: s.dir}
	return s, nil
}

// parseLayoutSpec splits what follows "oci:" or "oci-archive:" as skopeo
// does: a trailing "@ALG:HEX" is a digest, then the first ":" ends the
// path (a path cannot contain ':'), so that what follows may itself hold
// colons: "oci:STORE:127.0.0.1:5000/repo:tag" names the image
// "127.0.0.1:5000/repo:tag" in the layout STORE.
func parseLayoutSpec(spec, scheme string, o *options) (*layoutSource, error) {
	s := &layoutSource{platform: o.platform}
	rest := spec
	if i := strings.LastIndex(rest, "@"); i >= 0 && strings.Contains(rest[i+1:], ":") {
		dg := digest.Digest(rest[i+1:])
		if err := source.CheckDigest(dg); err != nil {
			return nil, err
		}
		s.pinned, rest = dg, rest[:i]
	}
	dir, name, named := strings.Cut(rest, ":")
	if named && name == "" {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "%s:%s: empty image name after the path", scheme, spec)
	}
	s.dir, s.name = dir, name
	if err := s.finish(scheme); err != nil {
		return nil, err
	}
	return s, nil
}

// finish makes the directory absolute and composes the reference.
func (s *layoutSource) finish(scheme string) error {
	if s.dir == "" {
		return errdefs.New(errdefs.ErrInvalidArgument, "%s: reference needs a path", scheme)
	}
	abs, err := filepath.Abs(s.dir)
	if err != nil {
		return errdefs.Wrap(err, errdefs.ErrInvalidArgument, "layout path %q", s.dir)
	}
	s.dir = abs
	s.ref = scheme + ":" + abs
	if s.name != "" {
		s.ref += ":" + s.name
	}
	if s.pinned != "" {
		s.ref += "@" + s.pinned.String()
	}
	return nil
}

func (s *layoutSource) Reference() string { return s.ref }

func (s *layoutSource) String() string { return s.ref }

// Root finds the reference in index.json: by digest, by the
// org.opencontainers.image.ref.name annotation (choosing by platform among
// several entries of the name), or, without either, the only image the
// layout holds.
func (s *layoutSource) Root(ctx context.Context) (ocispec.Descriptor, error) {
	if err := s.checkLayoutVersion(); err != nil {
		return ocispec.Descriptor{}, err
	}
	f, err := s.files.open("index.json", 0)
	if err != nil {
		return ocispec.Descriptor{}, layoutErr(err, s.dir, "index.json")
	}
	defer f.Close()
	data, err := readCapped(f, DefaultMaxDocumentSize, "index.json")
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	var idx ocispec.Index
	if err := json.Unmarshal(data, &idx); err != nil {
		return ocispec.Descriptor{}, errdefs.Wrap(err, errdefs.ErrManifestInvalid, "%s/index.json", s.dir)
	}
	var names []string
	for _, m := range idx.Manifests {
		if n := m.Annotations[ocispec.AnnotationRefName]; n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	switch {
	case s.pinned != "":
		var found *ocispec.Descriptor
		for i, m := range idx.Manifests {
			if m.Digest == s.pinned && (found == nil || m.Annotations[ocispec.AnnotationRefName] == s.name) {
				found = &idx.Manifests[i]
			}
		}
		if found != nil {
			return *found, nil
		}
		// Not listed in index.json, but perhaps present as a blob.
		size, err := s.files.size(blobName(s.pinned))
		if err != nil {
			return ocispec.Descriptor{}, errdefs.New(errdefs.ErrNotFound, "%s: no manifest %s", s.ref, s.pinned)
		}
		return ocispec.Descriptor{Digest: s.pinned, Size: size}, nil
	case s.name != "":
		var named []ocispec.Descriptor
		bad := 0
		for _, m := range idx.Manifests {
			if m.Annotations[ocispec.AnnotationRefName] != s.name {
				continue
			}
			// An entry whose digest does not parse names nothing this
			// program will read; the name's other entries still count.
			if err := source.CheckDigest(m.Digest); err != nil {
				bad++
				continue
			}
			named = append(named, m)
		}
		if len(named) == 0 && bad > 0 {
			return ocispec.Descriptor{}, errdefs.New(errdefs.ErrManifestInvalid, "%s: every entry named %q has an invalid digest", s.dir, s.name)
		}
		if len(named) == 0 {
			return ocispec.Descriptor{}, errdefs.New(errdefs.ErrNotFound, "%s: no image named %q (names: %s)", s.dir, s.name, listOrNone(names))
		}
		return s.choose(named, fmt.Sprintf("%s: image %q", s.dir, s.name))
	}
	var images []ocispec.Descriptor
	for _, m := range idx.Manifests {
		if !isReferrerEntry(m) {
			images = append(images, m)
		}
	}
	switch {
	case len(images) == 0:
		return ocispec.Descriptor{}, errdefs.New(errdefs.ErrNotFound, "%s: the layout holds no image", s.dir)
	case len(images) == 1 || oneName(images):
		return s.choose(images, s.dir)
	}
	return ocispec.Descriptor{}, errdefs.New(errdefs.ErrInvalidArgument,
		"%s holds %d images; name one as oci:DIR:NAME (names: %s) or oci:DIR@DIGEST", s.dir, len(images), listOrNone(names))
}

// isReferrerEntry recognizes entries that are about an image rather than
// images: signatures and other referrers the store recorded, and cosign's
// "sha256-<hex>.sig" tags.
func isReferrerEntry(m ocispec.Descriptor) bool {
	return m.Annotations[annotationSubject] != "" || cosignTagRE.MatchString(m.Annotations[ocispec.AnnotationRefName])
}

func oneName(ms []ocispec.Descriptor) bool {
	for _, m := range ms {
		if m.Annotations[ocispec.AnnotationRefName] != ms[0].Annotations[ocispec.AnnotationRefName] {
			return false
		}
	}
	return true
}

// choose picks among the entries of one name as resolving an index picks
// among its manifests: the image manifest that best fits the platform,
// else an index (which resolving then descends into), else a manifest
// that names no platform. A lone entry is taken as it is (resolving checks
// an explicit platform against its config), unless the store chose it
// from an index for one platform: then it must fit the platform asked
// for, as the index entry it stands for would have had to.
func (s *layoutSource) choose(entries []ocispec.Descriptor, what string) (ocispec.Descriptor, error) {
	if len(entries) == 1 && (entries[0].Annotations[annotationIndexes] == "" || entries[0].Platform == nil) {
		return entries[0], nil
	}
	want := HostPlatform()
	if s.platform != nil {
		want = *s.platform
	}
	var offered []ocispec.Platform
	for _, m := range entries {
		if m.Platform != nil && !isIndexType(m.MediaType) {
			offered = append(offered, *m.Platform)
		}
	}
	if best := bestMatch(want, entries, func(m ocispec.Descriptor) bool { return !isIndexType(m.MediaType) }); best >= 0 {
		return entries[best], nil
	}
	for _, m := range entries {
		if isIndexType(m.MediaType) || (m.MediaType == "" && m.Platform == nil) {
			return m, nil
		}
	}
	for _, m := range entries {
		if m.Platform == nil {
			return m, nil
		}
	}
	return ocispec.Descriptor{}, errdefs.New(errdefs.ErrPlatformNotFound, "%s has no image for platform %s; available: %s",
		what, FormatPlatform(want), platformList(offered))
}

func listOrNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func (s *layoutSource) checkLayoutVersion() error {
	dir := s.dir
	f, err := s.files.open(ocispec.ImageLayoutFile, 0)
	if err != nil {
		return layoutErr(err, dir, ocispec.ImageLayoutFile)
	}
	defer f.Close()
	data, err := readCapped(f, 4096, ocispec.ImageLayoutFile)
	if err != nil {
		return err
	}
	var l ocispec.ImageLayout
	if err := json.Unmarshal(data, &l); err != nil || l.Version == "" {
		return errdefs.New(errdefs.ErrManifestInvalid, "%s/%s is not a valid layout marker", dir, ocispec.ImageLayoutFile)
	}
	if !strings.HasPrefix(l.Version, "1.") {
		return errdefs.New(errdefs.ErrUnsupportedMediaType, "%s: image layout version %q is not supported", dir, l.Version)
	}
	return nil
}

func layoutErr(err error, dir, file string) error {
	if errors.Is(err, fs.ErrNotExist) {
		return errdefs.New(errdefs.ErrNotFound, "%s is not an OCI image layout (no %s)", dir, file)
	}
	return errdefs.Wrap(err, errdefs.ErrInvalidArgument, "%s/%s", dir, file)
}

// blobName is only called with digests that source.CheckDigest accepted, so the
// encoded part is plain hex and cannot climb out of blobs/.
func blobName(d digest.Digest) string {
	return ocispec.ImageBlobsDir + "/" + d.Algorithm().String() + "/" + d.Encoded()
}

func (s *layoutSource) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	rc, _, err := s.FetchAt(ctx, desc, 0)
	return rc, err
}

func (s *layoutSource) FetchAt(_ context.Context, desc ocispec.Descriptor, off int64) (io.ReadCloser, int64, error) {
	if err := source.CheckDigest(desc.Digest); err != nil {
		return nil, 0, errdefs.Wrap(err, errdefs.ErrManifestInvalid, "%s", s.ref)
	}
	rc, err := s.files.open(blobName(desc.Digest), off)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, 0, errdefs.New(errdefs.ErrNotFound, "%s: blob %s is missing", s.dir, desc.Digest)
		}
		return nil, 0, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "%s: blob %s", s.dir, desc.Digest)
	}
	return rc, off, nil
}
