package resolve

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/errdefs"
)

// layoutSource reads an OCI image layout directory.
type layoutSource struct {
	dir    string // the directory or archive, for messages
	files  files
	tag    string
	pinned digest.Digest
	ref    string
}

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
	f, err := openRegular(filepath.Join(d.dir, filepath.FromSlash(name)))
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

// openLayout parses "DIR", "DIR:TAG" or "DIR@DIGEST" (after "oci:"). As in
// skopeo, the last ":" separates the tag, so a directory name may contain
// colons only when a tag or digest follows.
func openLayout(spec string) (*layoutSource, error) {
	s, err := parseLayoutSpec(spec, "oci")
	if err != nil {
		return nil, err
	}
	s.files = dirFiles{dir: s.dir}
	return s, nil
}

func parseLayoutSpec(spec, scheme string) (*layoutSource, error) {
	s := &layoutSource{}
	if dir, d, ok := strings.Cut(spec, "@"); ok {
		dg, err := parseDigest(d)
		if err != nil {
			return nil, err
		}
		s.dir, s.pinned = dir, dg
	} else if i := strings.LastIndex(spec, ":"); i >= 0 && !strings.Contains(spec[i+1:], "/") {
		s.dir, s.tag = spec[:i], spec[i+1:]
		if s.tag == "" {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "%s:%s: empty tag", scheme, spec)
		}
	} else {
		s.dir = spec
	}
	if s.dir == "" {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "%s: reference needs a path", scheme)
	}
	abs, err := filepath.Abs(s.dir)
	if err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "layout path %q", s.dir)
	}
	s.dir = abs
	s.ref = scheme + ":" + abs
	switch {
	case s.pinned != "":
		s.ref += "@" + s.pinned.String()
	case s.tag != "":
		s.ref += ":" + s.tag
	}
	return s, nil
}

func (s *layoutSource) Reference() string { return s.ref }

func (s *layoutSource) String() string { return s.ref }

// Root finds the reference in index.json: by digest, by the
// org.opencontainers.image.ref.name annotation, or, without either, the
// only image the layout holds.
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
		refName := m.Annotations[ocispec.AnnotationRefName]
		if refName != "" {
			names = append(names, refName)
		}
		switch {
		case s.pinned != "" && m.Digest == s.pinned:
			return m, nil
		case s.tag != "" && refName == s.tag:
			return m, nil
		}
	}
	switch {
	case s.pinned != "":
		// Not listed in index.json, but perhaps present as a blob.
		size, err := s.files.size(blobName(s.pinned))
		if err != nil {
			return ocispec.Descriptor{}, errdefs.New(errdefs.ErrNotFound, "%s: no manifest %s", s.ref, s.pinned)
		}
		return ocispec.Descriptor{Digest: s.pinned, Size: size}, nil
	case s.tag != "":
		return ocispec.Descriptor{}, errdefs.New(errdefs.ErrNotFound, "%s: no image named %q (names: %s)", s.dir, s.tag, listOrNone(names))
	case len(idx.Manifests) == 1:
		return idx.Manifests[0], nil
	case len(idx.Manifests) == 0:
		return ocispec.Descriptor{}, errdefs.New(errdefs.ErrNotFound, "%s: the layout holds no image", s.dir)
	default:
		return ocispec.Descriptor{}, errdefs.New(errdefs.ErrInvalidArgument,
			"%s holds %d images; name one as oci:DIR:NAME (names: %s) or oci:DIR@DIGEST", s.dir, len(idx.Manifests), listOrNone(names))
	}
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

// blobName is only called with digests that parseDigest accepted, so the
// encoded part is plain hex and cannot climb out of blobs/.
func blobName(d digest.Digest) string {
	return ocispec.ImageBlobsDir + "/" + d.Algorithm().String() + "/" + d.Encoded()
}

func (s *layoutSource) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	rc, _, err := s.FetchAt(ctx, desc, 0)
	return rc, err
}

func (s *layoutSource) FetchAt(_ context.Context, desc ocispec.Descriptor, off int64) (io.ReadCloser, int64, error) {
	if _, err := parseDigest(desc.Digest.String()); err != nil {
		return nil, 0, err
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

// openRegular opens a file for reading without following a final symlink
// and refuses anything but a regular file, so a layout cannot make us read
// a FIFO (and hang) or a device.
func openRegular(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "%s is a symlink", path)
		}
		return nil, err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !info.Mode().IsRegular() {
		f.Close()
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "%s is not a regular file", path)
	}
	return f, nil
}
