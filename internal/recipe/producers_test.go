package recipe

import (
	"bytes"
	stdgzip "compress/gzip"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/internal/testutil"
	"github.com/ocifetch/ocifetch/internal/testutil/testimage"
)

// Layers from real producers, each rebuilt byte for byte from its
// uncompressed tar by the recipe the probe finds, or reported not
// reproducible where no release of the producer's compressor is pinned.

// goEnv is `go env NAME`.
func goEnv(t *testing.T, name string) string {
	t.Helper()
	return strings.TrimSpace(string(runCmd(t, "", "go", "env", name)))
}

// goSrcTar is a tar of GOROOT/src/NAME.
func goSrcTar(t *testing.T, name string) []byte {
	return testimage.TreeTar(t, filepath.Join(goEnv(t, "GOROOT"), "src", name), "usr/local/go/src/"+name)
}

// ggcrDir is go-containerregistry's module directory, at the version
// go.mod pins.
func ggcrDir(t *testing.T) string {
	t.Helper()
	return strings.TrimSpace(string(runCmd(t, "", "go", "list", "-m", "-f", "{{.Dir}}", "github.com/google/go-containerregistry")))
}

// ggcrCompressed is the blob go-containerregistry makes of an
// uncompressed layer, as crane push and crane append send it.
func ggcrCompressed(t *testing.T, layer []byte, opts ...tarball.LayerOption) []byte {
	t.Helper()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layer)), nil }, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return testimage.LayerBytes(t, l)
}

// go-containerregistry (the library crane pushes with)
// compresses with Go's compress/gzip at level 1, and with klauspost zstd
// at its fastest level when asked for zstd.
func TestGoContainerregistryLayers(t *testing.T) {
	t.Parallel()
	big := goSrcTar(t, testutil.Scale("encoding", "encoding/xml"))
	small := goSrcTar(t, "encoding/csv")
	for _, tc := range []struct {
		name  string
		layer []byte
		opts  []tarball.LayerOption
		want  string
	}{
		{"gzip", big, nil, "gzip go-flate go1.26.8 level 1 (mtime 0, os 255)"},
		{"gzip small", small, nil, "gzip go-flate go1.26.8 level 1 (mtime 0, os 255)"},
		{"zstd", big, []tarball.LayerOption{tarball.WithCompression(compression.ZStd)}, "zstd klauspost-zstd " + klauspostModuleVersion + " level 1 (checksum true)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := assertReproduces(t, ggcrCompressed(t, tc.layer, tc.opts...)).String(); got != tc.want {
				t.Errorf("recipe %s, want %s", got, tc.want)
			}
		})
	}
}

// crane itself (its release built from go-containerregistry v0.22.1, as
// .ci/run installs it): crane append writes the layer it would push into
// a tarball.
func TestCraneAppend(t *testing.T) {
	t.Parallel()
	crane := testutil.Tool(t, "crane")
	dir := t.TempDir()
	layer := filepath.Join(dir, "layer.tar")
	if err := os.WriteFile(layer, goSrcTar(t, testutil.Scale("encoding", "encoding/xml")), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "image.tar")
	runCmd(t, dir, crane, "append", "--oci-empty-base", "-f", layer, "-t", "example.com/recipe:test", "-o", out)
	img, err := tarball.ImageFromPath(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%d layers, %v", len(layers), err)
	}
	blob := testimage.LayerBytes(t, layers[0])
	if got, want := assertReproduces(t, blob).String(), "gzip go-flate go1.26.8 level 1 (mtime 0, os 255)"; got != want {
		t.Errorf("recipe %s, want %s", got, want)
	}
}

// go-containerregistry's test images: OCI layouts with gzip layers, a
// docker-save tarball with pre-compressed layers, docker-save tarballs
// whose uncompressed layers ggcr compresses when it pushes them, and a
// zstd layer made by the zstd tool (libzstd: not reproducible).
func TestGoContainerregistryTestdata(t *testing.T) {
	t.Parallel()
	root := ggcrDir(t)
	var gz [][]byte
	layouts, _ := filepath.Glob(filepath.Join(root, "pkg/v1/layout/testdata/*/blobs/sha256/*"))
	seen := map[string]bool{}
	for _, p := range layouts {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.HasPrefix(b, []byte{0x1f, 0x8b}) && !seen[sha(b)] {
			seen[sha(b)] = true
			gz = append(gz, b)
		}
	}
	f, err := os.Open(filepath.Join(root, "pkg/v1/mutate/testdata/whiteout_dir.tar"))
	if err != nil {
		t.Fatal(err)
	}
	for h, tr := range testutil.TarEntries(t, f) {
		if strings.HasSuffix(h.Name, ".tar.gz") {
			b, _ := io.ReadAll(tr)
			gz = append(gz, b)
		}
	}
	f.Close()
	if len(gz) < 5 {
		t.Fatalf("only %d gzip layers in go-containerregistry's testdata", len(gz))
	}
	// Each blob's expected recipe, by the start of its digest; "" is
	// not reproducible. The layout images' layers are crane's (level 1);
	// whiteout_dir's were written by pgzip (its MTIME), whole streams
	// that pgzip's default reproduces; 492b89b9dd3c ("manually produced",
	// says the testdata's README) is pgzip-like, ends with a sync flush,
	// and matches no release pinned here.
	want := map[string]string{
		"dc52c6e48a1d": "gzip go-flate go1.26.8 level 1 (mtime 0, os 255)",
		"321460fa87fd": "gzip go-flate go1.26.8 level 1 (mtime 0, os 255)",
		"e351ee8e5cab": "gzip klauspost-flate v1.15.12 level 5 pgzip blocks of 1048576 (mtime 2288912640, os 255)",
		"66386e0afc5a": "gzip klauspost-flate v1.15.12 level 5 pgzip blocks of 1048576 (mtime 2288912640, os 255)",
		"9d8bff046c70": "gzip klauspost-flate v1.15.12 level 5 pgzip blocks of 1048576 (mtime 2288912640, os 255)",
		"a09a7f2d8191": "gzip klauspost-flate v1.15.12 level 5 pgzip blocks of 1048576 (mtime 2288912640, os 255)",
		"492b89b9dd3c": "",
	}
	for _, b := range gz {
		id := sha(b)[:12]
		t.Run("gzip blob "+id, func(t *testing.T) {
			w, ok := want[id]
			switch {
			case !ok:
				t.Fatalf("a gzip blob not known to this test: %s", sha(b))
			case w == "":
				assertNotReproducible(t, b)
			default:
				if got := assertReproduces(t, b).String(); got != w {
					t.Errorf("recipe %s, want %s", got, w)
				}
			}
			delete(want, id)
		})
	}
	if len(want) != 0 {
		t.Errorf("blobs not found in the testdata: %v", want)
	}
	// test_bundle.tar holds test_image_1's and test_image_2's images.
	for _, name := range []string{"test_image_1.tar", "test_image_2.tar", "hello-world-v25.tar"} {
		t.Run(name, func(t *testing.T) {
			img, err := tarball.ImageFromPath(filepath.Join(root, "pkg/v1/tarball/testdata", name), nil)
			if err != nil {
				t.Fatal(err)
			}
			layers, err := img.Layers()
			if err != nil || len(layers) == 0 {
				t.Fatalf("%d layers, %v", len(layers), err)
			}
			for _, l := range layers {
				assertReproduces(t, testimage.LayerBytes(t, l))
			}
		})
	}
	t.Run("zstd tool", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(root, "pkg/crane/testdata/content.tar.zst"))
		if err != nil {
			t.Fatal(err)
		}
		assertNotReproducible(t, b)
	})
}

// assertLayoutRecipes checks that the image tag of the OCI layout dir
// has n layers, each reproduced by the recipe want (its String).
func assertLayoutRecipes(t *testing.T, dir, tag string, n int, want string) {
	t.Helper()
	layers := layoutLayers(t, dir, tag)
	if len(layers) != n {
		t.Fatalf("%d layers, want %d", len(layers), n)
	}
	for _, l := range layers {
		if got := assertReproduces(t, readBlob(t, dir, l)).String(); got != want {
			t.Errorf("layer %s: recipe %s, want %s", l.Digest, got, want)
		}
	}
}

// layoutLayers returns the layer blobs of the image tagged tag in the OCI
// layout at dir.
func layoutLayers(t *testing.T, dir, tag string) []ocispec.Descriptor {
	t.Helper()
	readJSON := func(p string, v any) {
		b, err := os.ReadFile(p)
		if err == nil {
			err = json.Unmarshal(b, v)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	var idx ocispec.Index
	readJSON(filepath.Join(dir, "index.json"), &idx)
	for _, m := range idx.Manifests {
		if m.Annotations[ocispec.AnnotationRefName] != tag {
			continue
		}
		var man ocispec.Manifest
		readJSON(filepath.Join(dir, "blobs", m.Digest.Algorithm().String(), m.Digest.Encoded()), &man)
		return man.Layers
	}
	t.Fatalf("no image %s in %s", tag, dir)
	return nil
}

func readBlob(t *testing.T, layout string, d ocispec.Descriptor) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(layout, "blobs", d.Digest.Algorithm().String(), d.Digest.Encoded()))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The benchmark's images (bench/benchtool, run as bench/run.sh runs it on
// a smaller tree): image a's layers are Go's compress/gzip at its default
// level, image d's klauspost zstd at its default level.
func TestBenchmarkGeneratorImages(t *testing.T) {
	t.Parallel()
	testutil.Full(t, "builds and runs the benchmark generator; TestProberFindsEveryRecipe and TestStdlibGzipHeaders cover the encoders it uses")
	goroot := goEnv(t, "GOROOT")
	tree := testutil.Scale("encoding", "encoding/xml")
	dir := t.TempDir()
	for _, tc := range []struct{ image, want string }{
		{"a", "gzip go-flate go1.26.8 level 6 (mtime 0, os 255)"},
		{"d", "zstd klauspost-zstd " + klauspostModuleVersion + " level 2 (checksum true)"},
	} {
		t.Run("image "+tc.image, func(t *testing.T) {
			out := filepath.Join(dir, tc.image)
			runCmd(t, "../..", "go", "run", "./bench/benchtool", "images", "-image", tc.image,
				"-tree", filepath.Join(goroot, "src", tree), "-prefix", "usr/local/go/src/"+tree, "-out", out)
			assertLayoutRecipes(t, out, "latest", 3, tc.want)
		})
	}
}

// umociImage makes an OCI layout at dir with umoci: an empty image, then
// one layer per tree, each added by unpack, copy and repack.
func umociImage(t *testing.T, umoci, dir string, trees ...string) []ocispec.Descriptor {
	t.Helper()
	layout := filepath.Join(dir, "layout")
	runCmd(t, dir, umoci, "init", "--layout", layout)
	runCmd(t, dir, umoci, "new", "--image", layout+":t")
	for i, tree := range trees {
		bundle := filepath.Join(dir, "bundle")
		os.RemoveAll(bundle)
		runCmd(t, dir, umoci, "unpack", "--rootless", "--image", layout+":t", bundle)
		runCmd(t, dir, "cp", "-a", tree, filepath.Join(bundle, "rootfs", "tree"+string(rune('0'+i))))
		runCmd(t, dir, umoci, "repack", "--image", layout+":t", bundle)
	}
	return layoutLayers(t, layout, "t")
}

// Debian bookworm's umoci 0.4.7 writes layers with pgzip (v1.2.5) in
// 256 KiB blocks on klauspost/compress v1.15.12 at its default level: a
// layer within one block and one of many blocks.
func TestUmociLayers(t *testing.T) {
	t.Parallel()
	umoci := testutil.Tool(t, "umoci")
	goroot := goEnv(t, "GOROOT")
	dir := t.TempDir()
	layers := umociImage(t, umoci, dir, filepath.Join(goroot, "src/encoding/csv"), filepath.Join(goroot, "src", testutil.Scale("encoding", "encoding/xml")))
	if len(layers) != 2 {
		t.Fatalf("%d layers", len(layers))
	}
	want := "gzip klauspost-flate v1.15.12 level 5 pgzip blocks of 262144 (mtime 2288912640, os 255)"
	for i, l := range layers {
		blob := readBlob(t, filepath.Join(dir, "layout"), l)
		r := assertReproduces(t, blob)
		if i == 1 && r.String() != want {
			// The small layer is a single block: every block size
			// reproduces it, so only the large one pins umoci's.
			t.Errorf("recipe %s, want %s", r, want)
		}
	}
}

// Debian bookworm's skopeo 1.9.3 (containers/image 5.23.1) recompresses
// with klauspost/compress v1.15.12: zstd at the default level, gzip with
// pgzip's default 1 MiB blocks at the default level.
func TestSkopeoRecompressed(t *testing.T) {
	t.Parallel()
	testutil.Full(t, "umoci, then skopeo copying the image twice; TestUmociLayers covers pgzip on klauspost/compress v1.15.12")
	skopeo := testutil.Tool(t, "skopeo")
	umoci := testutil.Tool(t, "umoci")
	goroot := goEnv(t, "GOROOT")
	dir := t.TempDir()
	umociImage(t, umoci, dir, filepath.Join(goroot, "src", testutil.Scale("encoding", "encoding/xml")), filepath.Join(goroot, "src", testutil.Scale("net/http", "compress/flate")))
	src := "oci:" + filepath.Join(dir, "layout") + ":t"
	for _, tc := range []struct{ format, want string }{
		{"zstd", "zstd klauspost-zstd v1.15.12 level 2 (checksum true)"},
		{"gzip", "gzip klauspost-flate v1.15.12 level 5 pgzip blocks of 1048576 (mtime 2288912640, os 255)"},
	} {
		t.Run(tc.format, func(t *testing.T) {
			dst := filepath.Join(dir, tc.format)
			// From gzip to gzip skopeo would copy the blobs as they are:
			// go through zstd first.
			from := src
			if tc.format == "gzip" {
				runCmd(t, dir, skopeo, "copy", "--insecure-policy", "--dest-compress-format", "zstd", src, "oci:"+dst+"-zstd:t")
				from = "oci:" + dst + "-zstd:t"
			}
			runCmd(t, dir, skopeo, "copy", "--insecure-policy", "--dest-compress-format", tc.format, from, "oci:"+dst+":t")
			assertLayoutRecipes(t, dst, "t", 2, tc.want)
		})
	}
}

// GNU gzip is zlib's deflate, which no pinned recipe reproduces: its
// header names OS 3 and the probe tries nothing. With that byte forged to
// 255 the probe runs candidates, bounded by its work limit, and finds
// none.
func TestGNUGzipNotReproducible(t *testing.T) {
	t.Parallel()
	gzipTool := testutil.Tool(t, "gzip")
	layer := goSrcTar(t, testutil.Scale("encoding", "encoding/xml"))
	for _, level := range testutil.First([]string{"-6", "-9", "-1"}, 1) {
		t.Run(level, func(t *testing.T) {
			cmd := exec.Command(gzipTool, level, "-c", "-n")
			cmd.Stdin = bytes.NewReader(layer)
			blob, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			res := assertNotReproducible(t, blob)
			if res.Tried != 0 || !strings.Contains(res.Reason, "OS 3") {
				t.Errorf("GNU gzip's header should rule every candidate out: %+v", res)
			}
			forged := append([]byte{}, blob...)
			forged[9] = 255
			res = assertNotReproducible(t, forged)
			if res.Tried == 0 || res.Work > defaultWork+chunk {
				t.Errorf("forged header: tried %d, work %d (limit %d)", res.Tried, res.Work, defaultWork)
			}
		})
	}
}

// The standard library's gzip at every level, with header fields set, is
// Go 1.26's recipe (the toolchain this module builds with).
func TestStdlibGzipHeaders(t *testing.T) {
	t.Parallel()
	layer := corpus(testutil.Scale(300<<10, 100<<10))
	for _, level := range testutil.First([]int{stdgzip.DefaultCompression, 5, stdgzip.BestSpeed, stdgzip.NoCompression, 2, 3, 4, 7, 8, stdgzip.BestCompression, stdgzip.HuffmanOnly}, 3) {
		var buf bytes.Buffer
		zw, _ := stdgzip.NewWriterLevel(&buf, level)
		if level == 5 {
			zw.Name, zw.Comment, zw.Extra = "layér.tar", "made by a test", []byte("xy\x00z")
			zw.ModTime = zw.ModTime.AddDate(2024, 0, 0)
		}
		if _, err := zw.Write(layer); err != nil {
			t.Fatal(err)
		}
		zw.Close()
		r := assertReproduces(t, buf.Bytes())
		if r.Version != "go1.26.8" {
			t.Errorf("level %d: %s", level, r)
		}
	}
}
