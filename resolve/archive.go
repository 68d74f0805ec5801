package resolve

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/source"
)

// tarFiles reads the regular files of a tar archive in place: one pass
// records where each file's bytes lie, and reads are sections of the
// archive, so nothing is extracted.
type tarFiles struct {
	f       *os.File
	entries map[string]tarEntry
}

type tarEntry struct{ off, size int64 }

// offsetReader counts how far a tar reader has read, and lets it seek over
// file bodies instead of reading them.
type offsetReader struct {
	f   *os.File
	off int64
}

func (r *offsetReader) Read(p []byte) (int, error) {
	n, err := r.f.Read(p)
	r.off += int64(n)
	return n, err
}

func (r *offsetReader) Seek(offset int64, whence int) (int64, error) {
	n, err := r.f.Seek(offset, whence)
	if err == nil {
		r.off = n
	}
	return n, err
}

func openTarFiles(p string) (*tarFiles, error) {
	// The archive is the file the user named: their own symlinks to it are
	// followed, as skopeo and tar follow them; what it resolves to must
	// still be a regular file (never a FIFO or a device).
	if real, err := filepath.EvalSymlinks(p); err == nil {
		p = real
	}
	f, err := source.OpenRegular(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errdefs.New(errdefs.ErrNotFound, "archive %s does not exist", p)
		}
		return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "archive %s", p)
	}
	t := &tarFiles{f: f, entries: map[string]tarEntry{}}
	or := &offsetReader{f: f}
	tr := tar.NewReader(or)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			f.Close()
			return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "reading archive %s", p)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		// Sparse entries would need their map to be read in place; layout
		// archives never hold them.
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		t.entries[name] = tarEntry{off: or.off, size: h.Size}
	}
	return t, nil
}

func (t *tarFiles) open(name string, off int64) (io.ReadCloser, error) {
	e, ok := t.entries[name]
	if !ok {
		return nil, fs.ErrNotExist
	}
	if off > e.size {
		off = e.size
	}
	return io.NopCloser(io.NewSectionReader(t.f, e.off+off, e.size-off)), nil
}

func (t *tarFiles) size(name string) (int64, error) {
	e, ok := t.entries[name]
	if !ok {
		return 0, fs.ErrNotExist
	}
	return e.size, nil
}

// openOCIArchive reads "FILE[:NAME][@DIGEST]": a tar of an OCI image
// layout, its reference split as for "oci:".
func openOCIArchive(spec string, o *options) (*layoutSource, error) {
	s, err := parseLayoutSpec(spec, "oci-archive", o)
	if err != nil {
		return nil, err
	}
	tf, err := openTarFiles(s.dir)
	if err != nil {
		return nil, err
	}
	s.files = tf
	return s, nil
}

// dockerArchive reads the format of "docker save": manifest.json lists each
// image's config file and layer tars. It has no manifests of its own, so
// one is made: an OCI manifest whose layers are the archive's tars, named by
// their sha256 (which, for uncompressed tars, is also their diffID).
type dockerArchive struct {
	tf       *tarFiles
	ref      string
	manifest []byte
	desc     ocispec.Descriptor
	blobs    map[digest.Digest]string // digest → file in the archive
}

type dockerArchiveEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// openDockerArchive reads "FILE", "FILE:NAME:TAG" or "FILE:@INDEX", as
// skopeo names them: the first ':' ends the path. "FILE@INDEX", this
// program's older spelling, is still read.
func openDockerArchive(spec string) (*dockerArchive, error) {
	file, sel, index := spec, "", -1
	atIndex := func(s string) (int, error) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return 0, errdefs.New(errdefs.ErrInvalidArgument, "docker-archive:%s: @ must be followed by an image index (0, 1, ...)", spec)
		}
		return n, nil
	}
	if f, rest, ok := strings.Cut(spec, ":"); ok {
		file = f
		switch {
		case rest == "":
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "docker-archive:%s: empty image name after the path", spec)
		case strings.HasPrefix(rest, "@"):
			n, err := atIndex(rest[1:])
			if err != nil {
				return nil, err
			}
			index = n
		default:
			sel = rest
		}
	} else if i := strings.LastIndex(spec, "@"); i >= 0 && !strings.Contains(spec[i+1:], "/") {
		n, err := atIndex(spec[i+1:])
		if err != nil {
			return nil, err
		}
		file, index = spec[:i], n
	}
	if file == "" {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "docker-archive: reference needs a path")
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "archive path %q", file)
	}
	tf, err := openTarFiles(abs)
	if err != nil {
		return nil, err
	}
	rc, err := tf.open("manifest.json", 0)
	if err != nil {
		return nil, errdefs.New(errdefs.ErrNotFound, "%s is not a docker-archive (no manifest.json)", abs)
	}
	data, err := readCapped(rc, DefaultMaxDocumentSize, "manifest.json")
	if err != nil {
		return nil, err
	}
	var entries []dockerArchiveEntry
	if err := json.Unmarshal(data, &entries); err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrManifestInvalid, "%s: manifest.json", abs)
	}
	pick, err := pickDockerArchiveEntry(entries, sel, index, abs)
	if err != nil {
		return nil, err
	}
	a := &dockerArchive{tf: tf, ref: "docker-archive:" + abs, blobs: map[digest.Digest]string{}}
	if sel != "" {
		a.ref += ":" + sel
	} else if index >= 0 {
		a.ref += ":@" + strconv.Itoa(index)
	}
	if err := a.build(entries[pick]); err != nil {
		return nil, err
	}
	return a, nil
}

func pickDockerArchiveEntry(entries []dockerArchiveEntry, sel string, index int, file string) (int, error) {
	switch {
	case len(entries) == 0:
		return 0, errdefs.New(errdefs.ErrNotFound, "%s holds no image", file)
	case index >= 0:
		if index >= len(entries) {
			return 0, errdefs.New(errdefs.ErrNotFound, "%s holds %d image(s), @0 to @%d; there is no @%d", file, len(entries), len(entries)-1, index)
		}
		return index, nil
	case sel != "":
		want := normalizeTag(sel)
		var tags []string
		for i, e := range entries {
			for _, t := range e.RepoTags {
				tags = append(tags, t)
				if normalizeTag(t) == want {
					return i, nil
				}
			}
		}
		return 0, errdefs.New(errdefs.ErrNotFound, "%s has no image tagged %q (tags: %s)", file, sel, listOrNone(tags))
	case len(entries) > 1:
		return 0, errdefs.New(errdefs.ErrInvalidArgument, "%s holds %d images; name one as docker-archive:FILE:NAME:TAG or docker-archive:FILE:@INDEX", file, len(entries))
	}
	return 0, nil
}

func normalizeTag(s string) string {
	if t, err := name.NewTag(s); err == nil {
		return t.Name()
	}
	return s
}

// build hashes the config and layer files and writes the manifest.
func (a *dockerArchive) build(e dockerArchiveEntry) error {
	cfg, err := a.hashFile(e.Config)
	if err != nil {
		return err
	}
	cfg.MediaType = ocispec.MediaTypeImageConfig
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cfg}
	m.SchemaVersion = 2
	for _, l := range e.Layers {
		d, err := a.hashFile(l)
		if err != nil {
			return err
		}
		m.Layers = append(m.Layers, d)
	}
	data, err := json.Marshal(m)
	if err != nil {
		return errdefs.Wrap(err, errdefs.ErrInternal, "encoding manifest")
	}
	a.manifest = data
	a.desc = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(data), Size: int64(len(data))}
	return nil
}

// hashFile names a file of the archive by its sha256, and tells plain from
// gzip-compressed layers by their first bytes.
func (a *dockerArchive) hashFile(file string) (ocispec.Descriptor, error) {
	name := path.Clean(strings.TrimPrefix(file, "./"))
	rc, err := a.tf.open(name, 0)
	if err != nil {
		return ocispec.Descriptor{}, errdefs.New(errdefs.ErrNotFound, "%s: manifest.json names %q, which the archive lacks", a.ref, file)
	}
	defer rc.Close()
	var head [2]byte
	n, _ := io.ReadFull(rc, head[:])
	h := digest.SHA256.Digester()
	h.Hash().Write(head[:n])
	size, err := io.Copy(h.Hash(), rc)
	if err != nil {
		return ocispec.Descriptor{}, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "%s: reading %s", a.ref, file)
	}
	mt := ocispec.MediaTypeImageLayer
	if n == 2 && head[0] == 0x1f && head[1] == 0x8b {
		mt = ocispec.MediaTypeImageLayerGzip
	}
	d := h.Digest()
	a.blobs[d] = name
	return ocispec.Descriptor{MediaType: mt, Digest: d, Size: size + int64(n)}, nil
}

func (a *dockerArchive) Reference() string { return a.ref }

func (a *dockerArchive) String() string { return a.ref }

func (a *dockerArchive) Root(context.Context) (ocispec.Descriptor, error) { return a.desc, nil }

func (a *dockerArchive) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	rc, _, err := a.FetchAt(ctx, desc, 0)
	return rc, err
}

func (a *dockerArchive) FetchAt(_ context.Context, desc ocispec.Descriptor, off int64) (io.ReadCloser, int64, error) {
	if desc.Digest == a.desc.Digest {
		return io.NopCloser(bytes.NewReader(a.manifest[min(off, int64(len(a.manifest))):])), off, nil
	}
	file, ok := a.blobs[desc.Digest]
	if !ok {
		return nil, 0, errdefs.New(errdefs.ErrNotFound, "%s: no blob %s", a.ref, desc.Digest)
	}
	rc, err := a.tf.open(file, off)
	if err != nil {
		return nil, 0, errdefs.Wrap(err, errdefs.ErrNotFound, "%s: %s", a.ref, file)
	}
	return rc, off, nil
}
