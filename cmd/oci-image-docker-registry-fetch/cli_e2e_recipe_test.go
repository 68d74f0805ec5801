package main

// The rootfs is the store (issue #13), through the built binary against
// real registry processes and real producers: images pushed by crane,
// by go-containerregistry, from go-containerregistry's testdata, by the
// benchmark generator, by umoci and recompressed by skopeo are unpacked,
// their layer blobs deleted, and rebuild --compressed --all --store puts
// every one back with the manifest's digest; a GNU gzip -9 layer is
// reported not reproducible and its blob kept. --keep-blobs=false
// survives a cut connection; gc --unpacked, rebuild --compressed and
// skopeo copy give the same manifest digest in a second registry.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/apply"
	"github.com/ocifetch/ocifetch/internal/testutil"
	"github.com/ocifetch/ocifetch/internal/testutil/faultproxy"
	"github.com/ocifetch/ocifetch/internal/testutil/testimage"
	"github.com/ocifetch/ocifetch/internal/testutil/testregistry"
	"github.com/ocifetch/ocifetch/mediatype"
)

// runTool runs a command, failing the test with its output.
func runTool(t *testing.T, dir, tool string, args ...string) string {
	t.Helper()
	cmd := exec.Command(tool, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", tool, args, err, out)
	}
	return string(out)
}

func goroot(t *testing.T) string {
	t.Helper()
	return strings.TrimSpace(runTool(t, "", "go", "env", "GOROOT"))
}

// treeTarFile writes a tar of dir (a real tree: Go's sources) to file,
// named under prefix, and returns its bytes.
func treeTarFile(t *testing.T, dir, prefix, file string) []byte {
	t.Helper()
	b := testimage.TreeTar(t, dir, prefix)
	if file != "" {
		if err := os.WriteFile(file, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func sha256File(t *testing.T, p string) digest.Digest {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(b)
	return digest.Digest("sha256:" + hex.EncodeToString(h[:]))
}

func blobFile(store string, d digest.Digest) string {
	return filepath.Join(store, "blobs", d.Algorithm().String(), d.Encoded())
}

// roundTrip unpacks ref into a new root filesystem with the store, deletes
// the image's layer blobs from the store, and has rebuild --compressed
// --all --store put them back: every layer comes back with the manifest's
// digest, except those notRepro lists (by digest prefix), which fail with
// not_reproducible and stay missing. It returns the rows and the tree.
func roundTrip(t *testing.T, env []string, store, ref string, notRepro ...string) ([]blobRowJSON, string) {
	t.Helper()
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	mustRun(t, env, "unpack", "--quiet", "--store", store, ref, rootfs)
	st, err := apply.Status(apply.DefaultStateDir(rootfs))
	if err != nil {
		t.Fatal(err)
	}
	isNot := func(d digest.Digest) bool {
		return slices.ContainsFunc(notRepro, func(p string) bool { return strings.HasPrefix(d.Encoded(), p) })
	}
	for _, l := range st.Layers {
		if l.Digest == "" || l.Size == 0 {
			t.Fatalf("the state records layer %s without its digest and size", l.DiffID)
		}
		if err := os.Remove(blobFile(store, l.Digest)); err != nil {
			t.Fatal(err)
		}
	}
	r := runBuilt(t, env, "rebuild", "--compressed", "--all", "--store", store, "--json", rootfs)
	var out struct {
		OK     bool          `json:"ok"`
		Layers []blobRowJSON `json:"layers"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("rebuild --compressed --json: %v\n%s%s", err, r.stdout, r.stderr)
	}
	wantCode := exitOK
	for _, l := range st.Layers {
		if isNot(l.Digest) {
			wantCode = exitVerification
		}
	}
	if r.code != wantCode || len(out.Layers) != len(st.Layers) {
		t.Fatalf("rebuild --compressed --all: exit %d (want %d), %d rows for %d layers\n%s%s", r.code, wantCode, len(out.Layers), len(st.Layers), r.stdout, r.stderr)
	}
	for i, l := range st.Layers {
		row := out.Layers[i]
		if isNot(l.Digest) {
			if row.OK || row.Kind != "not_reproducible" {
				t.Errorf("layer %d (%s) should not be reproducible: %+v", i+1, l.Digest, row)
			}
			if _, err := os.Lstat(blobFile(store, l.Digest)); err == nil {
				t.Errorf("layer %d: a blob was stored although not reproducible", i+1)
			}
			continue
		}
		if !row.OK || row.Stored != "written" || row.Digest != l.Digest.String() || row.Bytes != l.Size {
			t.Errorf("layer %d (%s, %s): %+v", i+1, l.Digest, l.MediaType, row)
			continue
		}
		if got := sha256File(t, blobFile(store, l.Digest)); got != l.Digest {
			t.Errorf("layer %d: the blob put back hashes to %s, the manifest says %s", i+1, got, l.Digest)
		}
	}
	return out.Layers, rootfs
}

// recipes lists the recipe of each row ("" for uncompressed layers).
func recipes(rows []blobRowJSON) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r.Recipe)
	}
	return out
}

func pushImage(t *testing.T, ref string, img v1.Image) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
}

// ggcrImage is an image go-containerregistry makes of uncompressed tars,
// as programs built on it (and crane append) push them.
func ggcrImage(t *testing.T, c compression.Compression, tars ...[]byte) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, tb := range tars {
		tb := tb
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(tb)), nil },
			tarball.WithCompression(c), tarball.WithMediaType(map[compression.Compression]types.MediaType{compression.GZip: types.OCILayer, compression.ZStd: types.OCILayerZStd}[c]))
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

// Must reproduce: images pushed by crane (the binary) and by
// go-containerregistry, go-containerregistry's testdata images, and the
// benchmark generator's images; should reproduce, as pinned: umoci's and
// skopeo's layers. A GNU gzip -9 layer is not reproducible.
func TestCLIE2ERebuildCompressedRealProducers(t *testing.T) {
	t.Parallel()
	reg := testregistry.Shared(t)
	env := cliEnv(t)
	src := filepath.Join(goroot(t), "src")
	work := t.TempDir()
	// The short tier takes a tree of 280 KB instead of 3.2 MB: the
	// recipes are the same, and every layer is recompressed whole.
	treeA := testutil.Scale("encoding", "encoding/xml")
	tarA := treeTarFile(t, filepath.Join(src, treeA), "usr/local/go/src/"+treeA, filepath.Join(work, "a.tar"))
	tarB := treeTarFile(t, filepath.Join(src, "net/url"), "usr/local/go/src/net/url", filepath.Join(work, "b.tar"))
	goFlate1 := "gzip go-flate go1.26.8 level 1 (mtime 0, os 255)"
	// Each producer's case runs in parallel with a store of its own:
	// roundTrip removes the layer blobs, which several cases share.
	ownStore := func(t *testing.T) string {
		t.Parallel()
		return filepath.Join(t.TempDir(), "store")
	}

	t.Run("crane", func(t *testing.T) {
		store := ownStore(t)
		crane := testutil.Tool(t, "crane")
		base, ref := reg.Host+"/crane/app:1", reg.Host+"/crane/app:2"
		runTool(t, work, crane, "append", "--insecure", "--oci-empty-base", "-f", "a.tar", "-t", base)
		runTool(t, work, crane, "append", "--insecure", "-b", base, "-f", "b.tar", "-t", ref)
		rows, _ := roundTrip(t, env, store, ref)
		if got := recipes(rows); !slices.Equal(got, []string{goFlate1, goFlate1}) {
			t.Errorf("recipes %q", got)
		}
	})
	// ggcrRecipes pushes the two trees as go-containerregistry writes
	// them with c, as ggcr/C:1, and returns the recipes a round trip found.
	ggcrRecipes := func(t *testing.T, c compression.Compression) []string {
		store := ownStore(t)
		ref := reg.Host + "/ggcr/" + string(c) + ":1"
		pushImage(t, ref, ggcrImage(t, c, tarA, tarB))
		rows, _ := roundTrip(t, env, store, ref)
		return recipes(rows)
	}
	t.Run("go-containerregistry gzip", func(t *testing.T) {
		if got := ggcrRecipes(t, compression.GZip); !slices.Equal(got, []string{goFlate1, goFlate1}) {
			t.Errorf("recipes %q", got)
		}
	})
	t.Run("go-containerregistry zstd", func(t *testing.T) {
		testutil.Full(t, "a third round trip through the CLI; recipe's TestGoContainerregistryLayers finds the same zstd recipe in process")
		for _, r := range ggcrRecipes(t, compression.ZStd) {
			if !strings.HasPrefix(r, "zstd klauspost-zstd v1.20.4 level 1") {
				t.Errorf("recipe %q", r)
			}
		}
	})
	t.Run("go-containerregistry testdata", func(t *testing.T) {
		store := ownStore(t)
		testutil.Full(t, "five images through the CLI; recipe's TestGoContainerregistryTestdata finds the same recipes in process")
		ggcr := strings.TrimSpace(runTool(t, "", "go", "list", "-m", "-f", "{{.Dir}}", "github.com/google/go-containerregistry"))
		n := 0
		push := func(img v1.Image) string {
			n++
			ref := fmt.Sprintf("%s/ggcr/testdata:%d", reg.Host, n)
			pushImage(t, ref, img)
			return ref
		}
		// The layouts' image manifests, pushed byte for byte with their
		// blobs, each under its own media type.
		var refs []string
		seen := map[string]bool{}
		for _, dir := range []string{"test_index", "test_index_one_image", "test_index_media_type", "test_gc_image_unknown_mediatype"} {
			blobs := filepath.Join(ggcr, "pkg/v1/layout/testdata", dir, "blobs/sha256")
			ents, err := os.ReadDir(blobs)
			if errors.Is(err, fs.ErrNotExist) {
				continue // an index without blobs
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				body, err := os.ReadFile(filepath.Join(blobs, e.Name()))
				if err != nil {
					t.Fatal(err)
				}
				var m ocispec.Manifest
				if json.Unmarshal(body, &m) != nil || !mediatype.IsConfig(m.Config.MediaType) || len(m.Layers) == 0 || seen[e.Name()] {
					continue // not an image (an index, a config, a Helm chart)
				}
				complete := true
				for _, d := range append([]ocispec.Descriptor{m.Config}, m.Layers...) {
					if _, err := os.Stat(filepath.Join(blobs, d.Digest.Encoded())); err != nil {
						complete = false
					}
				}
				if !complete {
					continue
				}
				seen[e.Name()] = true
				n++
				repo := fmt.Sprintf("%s/ggcr/testdata%d", reg.Host, n)
				for _, d := range append([]ocispec.Descriptor{m.Config}, m.Layers...) {
					b, _ := os.ReadFile(filepath.Join(blobs, d.Digest.Encoded()))
					pushBlob(t, repo, b)
				}
				mt := m.MediaType
				if mt == "" {
					mt = ocispec.MediaTypeImageManifest
				}
				testimage.PushRaw(t, repo+":1", body, types.MediaType(mt))
				refs = append(refs, repo+":1")
			}
		}
		for _, f := range []string{"pkg/v1/tarball/testdata/test_image_1.tar", "pkg/v1/mutate/testdata/whiteout_image.tar"} {
			img, err := tarball.ImageFromPath(filepath.Join(ggcr, f), nil)
			if err != nil {
				t.Fatal(err)
			}
			refs = append(refs, push(img))
		}
		if len(refs) < 3 {
			t.Fatalf("only %d testdata images", len(refs))
		}
		for _, ref := range refs {
			// 492b89b9dd3c is "manually produced" (the testdata's README):
			// no pinned compressor writes it (docs/reproducibility.md).
			roundTrip(t, env, store, ref, "492b89b9dd3c")
		}
	})
	t.Run("benchmark generator", func(t *testing.T) {
		store := ownStore(t)
		testutil.Full(t, "building the benchmark generator takes longer than the whole short tier allows")
		bt := filepath.Join(work, "benchtool")
		runTool(t, "../..", "go", "build", "-o", bt, "./bench/benchtool")
		for _, tc := range []struct{ image, want string }{
			{"a", "gzip go-flate go1.26.8 level 6 (mtime 0, os 255)"},
			{"d", "zstd klauspost-zstd v1.20.4 level 2 (checksum true)"},
		} {
			out := filepath.Join(work, "bench-"+tc.image)
			runTool(t, work, bt, "images", "-image", tc.image, "-tree", filepath.Join(src, "encoding"), "-prefix", "usr/local/go/src/encoding", "-out", out)
			ref := reg.Host + "/bench/" + tc.image + ":latest"
			runTool(t, work, bt, "push", "-layout", out, "-ref", ref)
			rows, _ := roundTrip(t, env, store, ref)
			for _, r := range recipes(rows) {
				if r != tc.want {
					t.Errorf("image %s: recipe %q, want %q", tc.image, r, tc.want)
				}
			}
		}
	})
	t.Run("umoci and skopeo", func(t *testing.T) {
		store := ownStore(t)
		umoci, skopeo := testutil.Tool(t, "umoci"), testutil.Tool(t, "skopeo")
		lay := filepath.Join(work, "umoci-layout")
		runTool(t, work, umoci, "init", "--layout", lay)
		runTool(t, work, umoci, "new", "--image", lay+":t")
		for i, tree := range []string{filepath.Join(src, "encoding/csv"), filepath.Join(src, "encoding")} {
			bundle := filepath.Join(work, "umoci-bundle")
			os.RemoveAll(bundle)
			runTool(t, work, umoci, "unpack", "--rootless", "--image", lay+":t", bundle)
			runTool(t, work, "cp", "-a", tree, filepath.Join(bundle, "rootfs", fmt.Sprintf("tree%d", i)))
			runTool(t, work, umoci, "repack", "--image", lay+":t", bundle)
		}
		push := func(from, ref string, args ...string) {
			runTool(t, work, skopeo, append(append([]string{"copy", "--insecure-policy", "--dest-tls-verify=false"}, args...), from, "docker://"+ref)...)
		}
		ref := reg.Host + "/umoci/app:1"
		push("oci:"+lay+":t", ref)
		rows, _ := roundTrip(t, env, store, ref)
		if got := rows[1].Recipe; got != "gzip klauspost-flate v1.15.12 level 5 pgzip blocks of 262144 (mtime 2288912640, os 255)" {
			t.Errorf("umoci's layer of many blocks: recipe %q", got)
		}
		// skopeo recompresses into a layout (to a registry it would
		// keep the blobs as they are), which is then pushed unchanged.
		for _, tc := range []struct{ format, from, want string }{
			// klauspost's zstd releases v1.15.12 (skopeo's) and v1.20.4
			// agree on layers of this size: the first candidate that
			// makes the blob is the one reported.
			{"zstd", "oci:" + lay + ":t", "zstd klauspost-zstd v1.*.* level 2 (checksum true)"},
			{"gzip", "oci:" + filepath.Join(work, "skopeo-zstd") + ":t", "gzip klauspost-flate v1.15.12 level 5 pgzip blocks of 1048576 (mtime 2288912640, os 255)"},
		} {
			dst := filepath.Join(work, "skopeo-"+tc.format)
			runTool(t, work, skopeo, "copy", "--insecure-policy", "--dest-compress-format", tc.format, tc.from, "oci:"+dst+":t")
			sref := reg.Host + "/skopeo/" + tc.format + ":1"
			push("oci:"+dst+":t", sref)
			rows, _ = roundTrip(t, env, store, sref)
			for _, r := range recipes(rows) {
				if ok, _ := filepath.Match(tc.want, r); !ok {
					t.Errorf("skopeo %s: recipe %q, want %q", tc.format, r, tc.want)
				}
			}
		}
	})
	t.Run("GNU gzip -9", func(t *testing.T) {
		store := ownStore(t)
		gz := testutil.Tool(t, "gzip")
		cmd := exec.Command(gz, "-9", "-c", filepath.Join(work, "b.tar"))
		blob, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		good := gzipBytes(t, tarA)
		desc := pushRawImage(t, reg.Host+"/gnu/gzip", "1", "", []rawLayer{{data: good, mediaType: ocispec.MediaTypeImageLayerGzip}, {data: blob, mediaType: ocispec.MediaTypeImageLayerGzip}}, nil)
		ref := reg.Host + "/gnu/gzip@" + desc.Digest.String()
		rows, rootfs := roundTrip(t, env, store, ref, digest.FromBytes(blob).Encoded())
		if rows[0].Recipe == "" {
			t.Errorf("Go's gzip layer beside it: %+v", rows[0])
		}
		// One layer asked for: exit 4, kind not_reproducible, nothing
		// written.
		out := filepath.Join(t.TempDir(), "blob")
		r := runBuilt(t, env, "rebuild", "--compressed", "--layer", "2", "-o", out, "--json", rootfs)
		if k, _ := exactJSONError(t, r.stdout); k != "not_reproducible" || r.code != exitVerification {
			t.Errorf("rebuild --compressed --layer 2: kind %q exit %d\n%s", k, r.code, r.stdout)
		}
		if _, err := os.Lstat(out); err == nil {
			t.Errorf("-o %s was written", out)
		}
	})
}

// layerDigests lists the layer digests of the image a state records.
func layerDigests(t *testing.T, rootfs string) []apply.StateLayer {
	t.Helper()
	st, err := apply.Status(apply.DefaultStateDir(rootfs))
	if err != nil {
		t.Fatal(err)
	}
	return st.Layers
}

// imagesKept returns what "images --json" says of the one image of store.
func imagesKept(t *testing.T, env []string, store string) imageEntryJSON {
	t.Helper()
	var out imagesJSON
	runJSON(t, env, &out, "images", "--json", "--store", store)
	if len(out.Images) != 1 {
		t.Fatalf("images: %+v", out.Images)
	}
	return out.Images[0]
}

// unpack --keep-blobs=false streams the layers from the registry into
// the tree and keeps none; a connection cut in the middle of a layer
// continues with a ranged request into the same decompressor: the unpack
// completes with the bytes of each layer served less than twice, and the
// tree is the one an unpack with blobs makes. bundle takes the flag too.
func TestCLIE2EKeepBlobsFalseCutConnection(t *testing.T) {
	t.Parallel()
	reg := testregistry.Shared(t)
	src := filepath.Join(goroot(t), "src")
	// The short tier pushes 280 KB of source instead of 3.2 MB: the cut,
	// the Range request and the rebuild are the same, and the test
	// process gzips the layers under the race detector.
	tree := testutil.Scale("encoding", "encoding/xml")
	tars := [][]byte{
		treeTarFile(t, filepath.Join(src, tree), "usr/local/go/src/"+tree, ""),
		treeTarFile(t, filepath.Join(src, "net/url"), "usr/local/go/src/net/url", ""),
	}
	pushImage(t, reg.Host+"/keep/none:1", ggcrImage(t, compression.GZip, tars...))
	p := faultproxy.New(t, reg.URL)
	ref := p.Host() + "/keep/none:1"
	env := cliEnv(t)
	work := t.TempDir()

	with := filepath.Join(work, "with-blobs")
	mustRun(t, env, "unpack", "--quiet", "--store", filepath.Join(work, "store1"), ref, with)
	layers := layerDigests(t, with)
	big := layers[0]
	p.Add(faultproxy.Rule{Match: faultproxy.PathSuffix(big.Digest.String()), Times: 1, Faults: []faultproxy.Fault{faultproxy.CutAfter(big.Size / 3)}})

	store := filepath.Join(work, "store")
	rootfs := filepath.Join(work, "rootfs")
	before := len(p.Log())
	var out unpackOutput
	r := runJSON(t, env, &out, "unpack", "--json", "--keep-blobs=false", "--store", store, ref, rootfs)
	checkKeys(t, "unpack --json", r.stdout, append(pullKeys, "target", "applied", "warnings", "keepBlobs"), "state")
	if out.KeepBlobs || len(out.Applied) != 2 || out.Applied[0].Reproducible != "candidate" {
		t.Errorf("unpack --json: %s", r.stdout)
	}
	if d := treeDiff(snapshot(t, with), snapshot(t, rootfs)); len(d) > 0 {
		t.Errorf("the tree differs from an unpack with blobs: %v", d)
	}
	served := map[digest.Digest]int64{}
	var ranges []string
	for _, e := range p.Log()[before:] {
		for _, l := range layers {
			if strings.HasSuffix(e.Path, l.Digest.String()) && e.Method == "GET" {
				served[l.Digest] += e.Bytes
				if l.Digest == big.Digest {
					ranges = append(ranges, e.Range)
				}
			}
		}
	}
	for _, l := range layers {
		if served[l.Digest] < l.Size || served[l.Digest] >= 2*l.Size {
			t.Errorf("layer %s of %d bytes: %d bytes served", l.Digest, l.Size, served[l.Digest])
		}
		if _, err := os.Lstat(blobFile(store, l.Digest)); err == nil {
			t.Errorf("layer %s is in the store", l.Digest)
		}
	}
	if len(ranges) != 2 || ranges[0] != "" || !strings.HasPrefix(ranges[1], fmt.Sprintf("bytes=%d-", big.Size/3)) {
		t.Errorf("requests of the cut layer: %q", ranges)
	}
	mustRun(t, env, "verify", rootfs)
	if im := imagesKept(t, env, store); im.Kept != "recipe" || len(im.Rootfs) != 1 || im.Rootfs[0].Status != "clean" {
		t.Errorf("images: %+v", im)
	}
	// The store is made whole again from the tree alone.
	r = mustRun(t, env, "rebuild", "--compressed", "--all", "--store", store, rootfs)
	if n := strings.Count(r.stdout, " ok "); n != 2 {
		t.Errorf("rebuild --compressed --all --store:\n%s", r.stdout)
	}
	if im := imagesKept(t, env, store); im.Kept != "blobs" {
		t.Errorf("images after rebuild --store: %+v", im)
	}

	bdir := filepath.Join(work, "bundle")
	bstore := filepath.Join(work, "bstore")
	mustRun(t, env, "bundle", "--quiet", "--keep-blobs=false", "--store", bstore, ref, bdir)
	for _, l := range layers {
		if _, err := os.Lstat(blobFile(bstore, l.Digest)); err == nil {
			t.Errorf("bundle --keep-blobs=false stored %s", l.Digest)
		}
	}
	if im := imagesKept(t, env, bstore); im.Kept != "recipe" {
		t.Errorf("images of the bundle's store: %+v", im)
	}
}

// gc --unpacked drops the layer blobs a verified tree makes again, and
// keeps the one no recipe makes (GNU gzip -9); images says "recipe";
// rebuild --compressed --all --store puts them back, after which skopeo
// copies the store to a second registry with the same manifest digest. A
// tree that changed makes images say "drifted" and rebuild fail without
// writing; a pull fetches the blobs from the registry again.
func TestCLIE2EGCUnpackedRebuildSkopeoCopy(t *testing.T) {
	testutil.Full(t, "two registries, skopeo, and 4 MiB of Go source recompressed under the race detector; apply's TestRebuildBlob, TestCLIE2EGCUnpackedRebuildsBeforeDropping and TestCLIE2EKeepBlobsFalseCutConnection cover its parts")
	t.Parallel()
	skopeo := testutil.Tool(t, "skopeo")
	gz := testutil.Tool(t, "gzip")
	reg, reg2 := testregistry.Start(t), testregistry.Start(t)
	src := filepath.Join(goroot(t), "src")
	work := t.TempDir()
	tarA := treeTarFile(t, filepath.Join(src, "encoding"), "usr/local/go/src/encoding", "")
	treeTarFile(t, filepath.Join(src, "net/url"), "usr/local/go/src/net/url", filepath.Join(work, "b.tar"))
	tarC := treeTarFile(t, filepath.Join(src, "unicode/utf8"), "usr/local/go/src/unicode/utf8", "")
	gnu, err := exec.Command(gz, "-9", "-c", filepath.Join(work, "b.tar")).Output()
	if err != nil {
		t.Fatal(err)
	}
	zstdImg := ggcrImage(t, compression.ZStd, tarC)
	zl, _ := zstdImg.Layers()
	zblob, _ := zl[0].Compressed()
	zdata, _ := io.ReadAll(zblob)
	repo := reg.Host + "/gc/unpacked"
	desc := pushRawImage(t, repo, "1", "", []rawLayer{
		{data: gzipBytes(t, tarA), mediaType: ocispec.MediaTypeImageLayerGzip},
		{data: gnu, mediaType: ocispec.MediaTypeImageLayerGzip},
		{data: zdata, mediaType: ocispec.MediaTypeImageLayerZstd, diffID: digest.FromBytes(tarC)},
		{data: tarC, mediaType: mediatype.DockerLayerTar},
	}, nil)
	ref := repo + ":1"
	env := cliEnv(t)
	store := filepath.Join(work, "store")
	rootfs := filepath.Join(work, "rootfs")
	mustRun(t, env, "unpack", "--quiet", "--store", store, ref, rootfs)
	layers := layerDigests(t, rootfs)
	gnuDigest := digest.FromBytes(gnu)

	var g gcJSON
	r := runJSON(t, env, &g, "gc", "--unpacked", "--json", "--store", store)
	checkKeys(t, "gc --json", r.stdout, []string{"store", "removed", "corrupt", "partials", "pruned", "bytes", "dropped", "keptUnpacked"})
	var dropped []digest.Digest
	for _, d := range g.Dropped {
		dropped = append(dropped, d.Digest)
		if d.Rootfs != rootfs {
			t.Errorf("dropped %s relies on %q, want %q", d.Digest, d.Rootfs, rootfs)
		}
	}
	want := []digest.Digest{layers[0].Digest, layers[2].Digest, layers[3].Digest}
	if slices.Sort(dropped); !slices.Equal(dropped, slices.Sorted(slices.Values(want))) {
		t.Errorf("gc --unpacked dropped %v, want %v", dropped, want)
	}
	if len(g.KeptUnpacked) != 1 || g.KeptUnpacked[0].Digest != gnuDigest || !strings.Contains(g.KeptUnpacked[0].Reason, "not") {
		t.Errorf("gc --unpacked kept %+v, want the GNU gzip layer", g.KeptUnpacked)
	}
	if _, err := os.Lstat(blobFile(store, gnuDigest)); err != nil {
		t.Errorf("the GNU gzip layer's blob is gone: %v", err)
	}
	for _, d := range want {
		if _, err := os.Lstat(blobFile(store, d)); err == nil {
			t.Errorf("%s is still in the store", d)
		}
	}
	st, _ := apply.Status(apply.DefaultStateDir(rootfs))
	for i, l := range st.Layers {
		if w := []string{"confirmed", "", "confirmed", "tar"}[i]; l.Reproducible() != w {
			t.Errorf("layer %d: %q after gc --unpacked, want %q", i+1, l.Reproducible(), w)
		}
	}
	var v struct {
		Clean  bool        `json:"clean"`
		Layers []reproJSON `json:"layers"`
	}
	runJSON(t, env, &v, "verify", "--json", rootfs)
	if !v.Clean || len(v.Layers) != 4 || v.Layers[0].Reproducible != "confirmed" || v.Layers[1].Reproducible != "" || v.Layers[1].Reason == "" {
		t.Errorf("verify --json: %+v", v)
	}
	r = mustRun(t, env, "verify", "--layers", rootfs)
	if ls := lines(r.stdout); len(ls) != 4 || !strings.Contains(ls[0], "recipe confirmed: gzip go-flate go1.26.8 level 6") ||
		!strings.Contains(ls[1], "blob not reproducible") || !strings.Contains(ls[2], "recipe confirmed: zstd klauspost-zstd v1.20.4 level 1") ||
		!strings.Contains(ls[3], "the tar itself") || r.stderr != "" {
		t.Errorf("verify --layers:\n%s%s", r.stdout, r.stderr)
	}
	var in inspectOutput
	runJSON(t, env, &in, "inspect", "--json", "--store", store, ref)
	if len(in.Reproducible) != 4 || in.Reproducible[0].How != "confirmed" || in.Reproducible[1].How != "no" || in.Reproducible[3].How != "tar" {
		t.Errorf("inspect --json reproducible: %+v", in.Reproducible)
	}
	if im := imagesKept(t, env, store); im.Kept != "recipe" || len(im.Rootfs) != 1 || im.Rootfs[0].Status != "clean" {
		t.Errorf("images after gc --unpacked: %+v", im)
	}
	// A second gc --unpacked has nothing left to drop, and does not read
	// the tree again for blobs it already dropped.
	g = gcJSON{}
	runJSON(t, env, &g, "gc", "--unpacked", "--json", "--store", store)
	if len(g.Dropped) != 0 || len(g.KeptUnpacked) != 1 {
		t.Errorf("second gc --unpacked: %+v", g)
	}

	// Back into the store, then into a second registry with skopeo.
	mustRun(t, env, "rebuild", "--compressed", "--all", "--store", store, rootfs)
	if im := imagesKept(t, env, store); im.Kept != "blobs" {
		t.Errorf("images after rebuild --store: %+v", im)
	}
	for _, l := range layers {
		if got := sha256File(t, blobFile(store, l.Digest)); got != l.Digest {
			t.Errorf("%s hashes to %s", l.Digest, got)
		}
	}
	ref2 := reg2.Host + "/copied/app:1"
	runTool(t, work, skopeo, "copy", "--insecure-policy", "--dest-tls-verify=false", "oci:"+store+":"+ref, "docker://"+ref2)
	var res resolveOutput
	runJSON(t, env, &res, "resolve", "--json", ref2)
	if res.Manifest.Digest != desc.Digest.String() {
		t.Errorf("the second registry has %s, the first %s", res.Manifest.Digest, desc.Digest)
	}

	// A tree that changed stands in for nothing.
	mustRun(t, env, "gc", "--unpacked", "--store", store)
	target := filepath.Join(rootfs, "usr/local/go/src/encoding/json/encode.go")
	if err := os.WriteFile(target, []byte("package json // changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if im := imagesKept(t, env, store); im.Kept != "drifted" || len(im.Rootfs) != 1 || im.Rootfs[0].Status != "drifted" {
		t.Errorf("images after the tree changed: %+v", im)
	}
	out := filepath.Join(work, "layer1.tar.gz")
	r = runBuilt(t, env, "rebuild", "--compressed", "--layer", "1", "-o", out, rootfs)
	if r.code != exitVerification {
		t.Errorf("rebuild --compressed of a changed layer: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Lstat(out); err == nil {
		t.Errorf("-o %s was written", out)
	}
	var pr pullOutput
	runJSON(t, env, &pr, "pull", "--json", "--store", store, ref)
	if pr.Downloaded != layers[0].Size+layers[2].Size+layers[3].Size {
		t.Errorf("pull downloaded %d bytes, want the three dropped layers'", pr.Downloaded)
	}
	if im := imagesKept(t, env, store); im.Kept != "blobs" {
		t.Errorf("images after a pull: %+v", im)
	}
}
