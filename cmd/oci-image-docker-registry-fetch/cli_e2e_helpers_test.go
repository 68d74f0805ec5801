package main

// Helpers of the cli_e2e_*_test.go suite: the built binary (builtCLI,
// cliEnv, runBuilt and mustRun of pull_e2e_test.go) run against a real
// registry process holding the demo image and hand-made bad images.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/internal/demoimage"
	"github.com/ocifetch/ocifetch/internal/testutil/testimage"
	"github.com/ocifetch/ocifetch/internal/testutil/testregistry"
)

// demoPush is the demo image as pushed: its index and, per platform
// ("linux/amd64", "linux/arm64/v8", "linux/arm/v7"), its image.
type demoPush struct {
	ref    string
	index  v1.ImageIndex
	digest v1.Hash
	images map[string]v1.Image
}

// demoAndStore pushes the demo image to repo on reg, and returns it with
// the command's environment and the path of a new store.
func demoAndStore(t *testing.T, reg *testregistry.Registry, repo string) (demoPush, []string, string) {
	t.Helper()
	return pushDemo(t, reg.Host+repo), cliEnv(t), filepath.Join(t.TempDir(), "store")
}

// sharedDemo pushes the demo image to repo (a path such as
// "/e2e/app:v1") on the package's shared registry, and returns it with
// the command's environment.
func sharedDemo(t *testing.T, repo string) (demoPush, []string) {
	t.Helper()
	return pushDemo(t, testregistry.Shared(t).Host+repo), cliEnv(t)
}

// pushDemo pushes demoimage.Index() to ref with remote.WriteIndex.
func pushDemo(t *testing.T, ref string, opts ...remote.Option) demoPush {
	t.Helper()
	idx, err := demoimage.Index()
	if err != nil {
		t.Fatal(err)
	}
	d := testimage.PushIndex(t, ref, idx, opts...)
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	p := demoPush{ref: ref, index: idx, digest: d, images: map[string]v1.Image{}}
	for _, m := range im.Manifests {
		img, err := idx.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		plat := m.Platform.OS + "/" + m.Platform.Architecture
		if m.Platform.Variant != "" {
			plat += "/" + m.Platform.Variant
		}
		p.images[plat] = img
	}
	return p
}

// demoFacts is what a platform's demo image is made of.
type demoFacts struct {
	manifest, config digest.Digest
	layers, diffIDs  []digest.Digest
	sizes            []int64
}

func (p demoPush) facts(t *testing.T, platform string) demoFacts {
	t.Helper()
	img, ok := p.images[platform]
	if !ok {
		t.Fatalf("the demo image has no %s", platform)
	}
	var f demoFacts
	md, _ := img.Digest()
	cd, _ := img.ConfigName()
	f.manifest, f.config = digest.Digest(md.String()), digest.Digest(cd.String())
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		d, _ := l.Digest()
		diff, _ := l.DiffID()
		size, _ := l.Size()
		f.layers = append(f.layers, digest.Digest(d.String()))
		f.diffIDs = append(f.diffIDs, digest.Digest(diff.String()))
		f.sizes = append(f.sizes, size)
	}
	return f
}

// runJSON runs the binary, which must exit 0 with nothing on stderr, and
// decodes its standard output, which must be one JSON value, into v.
func runJSON(t *testing.T, env []string, v any, args ...string) cliRun {
	t.Helper()
	r := mustRun(t, env, args...)
	if r.stderr != "" {
		t.Errorf("%v wrote to stderr: %q", args, r.stderr)
	}
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%v: stdout is not the documented JSON: %v\n%s", args, err, r.stdout)
	}
	if dec.More() {
		t.Fatalf("%v: more than one JSON value on stdout:\n%s", args, r.stdout)
	}
	return r
}

// checkKeys checks that stdout is one JSON object that has every key
// docs/cli.md promises (documented) and no other key but the undocumented
// ones a test knows about (each of which is a gap in the docs, reported).
func checkKeys(t *testing.T, what, stdout string, documented []string, undocumented ...string) {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(stdout), &m); err != nil {
		t.Fatalf("%s: not one JSON object: %v\n%s", what, err, stdout)
	}
	for _, k := range documented {
		if _, ok := m[k]; !ok {
			t.Errorf("%s: no %q in the output, which docs/cli.md promises:\n%s", what, k, stdout)
		}
	}
	for k := range m {
		if !slices.Contains(documented, k) && !slices.Contains(undocumented, k) {
			t.Errorf("%s: key %q is not in docs/cli.md", what, k)
		}
	}
}

// entry is one path of a tree, as compared across source kinds.
type entry struct {
	Type     string // "file", "dir", "symlink", "other"
	Mode     fs.FileMode
	UID, GID uint32
	Size     int64
	SHA256   string // regular files
	Link     string // symlinks
	// MTime of files and symlinks, whose tar headers set it (directories
	// a layer does not list are made when applied, at no fixed time).
	MTime int64
}

func (e entry) String() string {
	return fmt.Sprintf("%s %v %d:%d size=%d sha256=%.12s link=%q mtime=%d", e.Type, e.Mode, e.UID, e.GID, e.Size, e.SHA256, e.Link, e.MTime)
}

// snapshot walks root (without following symlinks) into path → entry.
func snapshot(t *testing.T, root string) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		e := entry{Mode: info.Mode()}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			e.UID, e.GID = st.Uid, st.Gid
		}
		switch {
		case info.Mode().IsRegular():
			e.Type, e.Size, e.MTime = "file", info.Size(), info.ModTime().UnixNano()
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			e.SHA256 = hex.EncodeToString(sum[:])
		case info.IsDir():
			e.Type = "dir"
		case info.Mode()&fs.ModeSymlink != 0:
			e.Type, e.MTime = "symlink", info.ModTime().UnixNano()
			if e.Link, err = os.Readlink(p); err != nil {
				return err
			}
		default:
			e.Type = "other"
		}
		out[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// treeDiff lists how b differs from a, one line per path, sorted.
func treeDiff(a, b map[string]entry) []string {
	var out []string
	for p, ea := range a {
		eb, ok := b[p]
		switch {
		case !ok:
			out = append(out, "missing "+p)
		case ea != eb:
			out = append(out, fmt.Sprintf("differs %s: %v, want %v", p, eb, ea))
		}
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			out = append(out, "extra "+p)
		}
	}
	sort.Strings(out)
	return out
}

// tarFile is one entry of a hand-made layer.
type tarFile struct {
	name, body, link string
	typ              byte
}

// makeTar builds an uncompressed tar of files (with layerOf).
func makeTar(t *testing.T, files ...tarFile) []byte {
	t.Helper()
	es := make([]ent, 0, len(files))
	for _, f := range files {
		typ := f.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := tar.Header{Name: f.name, Typeflag: typ, Mode: 0o644, Linkname: f.link, Format: tar.FormatPAX}
		if typ == tar.TypeDir {
			h.Mode = 0o755
		}
		if typ == tar.TypeReg {
			h.Size = int64(len(f.body))
		}
		es = append(es, ent{h, f.body})
	}
	return layerOf(t, es...)
}

func gzipBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// pushBlob uploads data as a blob of repo ("host/name").
func pushBlob(t *testing.T, repo string, data []byte) ocispec.Descriptor {
	t.Helper()
	r, err := name.NewRepository(repo)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteLayer(r, static.NewLayer(data, types.OCIUncompressedLayer)); err != nil {
		t.Fatalf("pushing a blob to %s: %v", repo, err)
	}
	return ocispec.Descriptor{Digest: digest.FromBytes(data), Size: int64(len(data))}
}

// rawLayer is one layer of pushRawImage: the bytes pushed, the media type
// and size its descriptor claims (size 0: the true size), and its diffID
// in the config ("": the sha256 of the gunzipped bytes, or of the bytes;
// none: not listed at all).
type rawLayer struct {
	data      []byte
	mediaType string
	size      int64
	diffID    digest.Digest
	none      bool
}

// pushRawImage pushes layers, a linux/amd64 config and a hand-written OCI
// manifest naming them to repo:tag, and returns the manifest's descriptor.
// configType "" is the OCI image config type. edit, when not nil, may
// change the manifest before it is pushed.
func pushRawImage(t *testing.T, repo, tag, configType string, layers []rawLayer, edit func(m *ocispec.Manifest)) ocispec.Descriptor {
	t.Helper()
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest}
	m.SchemaVersion = 2
	var diffIDs []digest.Digest
	for _, l := range layers {
		d := pushBlob(t, repo, l.data)
		d.MediaType = l.mediaType
		if l.size != 0 {
			d.Size = l.size
		}
		m.Layers = append(m.Layers, d)
		if l.none {
			continue
		}
		diff := l.diffID
		if diff == "" {
			diff = digest.FromBytes(l.data)
			if zr, err := gzip.NewReader(bytes.NewReader(l.data)); err == nil {
				if b, err := io.ReadAll(zr); err == nil {
					diff = digest.FromBytes(b)
				}
			}
		}
		diffIDs = append(diffIDs, diff)
	}
	cfg := testimage.JSON(t, ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: diffIDs},
		Config:   ocispec.ImageConfig{Cmd: []string{"/bin/sh"}},
	})
	m.Config = pushBlob(t, repo, cfg)
	m.Config.MediaType = configType
	if configType == "" {
		m.Config.MediaType = ocispec.MediaTypeImageConfig
	}
	if edit != nil {
		edit(&m)
	}
	body := testimage.JSON(t, m)
	testimage.PushRaw(t, repo+":"+tag, body, types.OCIManifestSchema1)
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(body), Size: int64(len(body))}
}

// pushRawIndex pushes an OCI index of entries to ref.
func pushRawIndex(t *testing.T, ref string, entries ...ocispec.Descriptor) digest.Digest {
	t.Helper()
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: entries}
	idx.SchemaVersion = 2
	body := testimage.JSON(t, idx)
	testimage.PushRaw(t, ref, body, types.OCIImageIndex)
	return digest.FromBytes(body)
}

// withPlatform returns d for an index entry of platform os/arch.
func withPlatform(d ocispec.Descriptor, os, arch string) ocispec.Descriptor {
	d.Platform = &ocispec.Platform{OS: os, Architecture: arch}
	return d
}

// lines splits output into its lines, without the final newline.
func lines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// jsonUnmarshal decodes s, which must be exactly one JSON value, into v.
func jsonUnmarshal(s string, v any) error {
	dec := json.NewDecoder(strings.NewReader(s))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("more than one JSON value: %s", s)
	}
	return nil
}

// The top-level keys docs/cli.md promises for "resolve --json" and
// "pull --json".
var (
	resolveKeys = []string{"reference", "platform", "platforms", "index", "indexes", "manifest", "config", "layers"}
	pullKeys    = append(slices.Clone(resolveKeys), "store", "name", "downloaded")
)
