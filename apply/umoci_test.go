package apply

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/apply/internal/treecmp"
	"github.com/ocifetch/ocifetch/internal/testutil"
)

// The same layers unpacked by umoci and by Apply make the same tree. A
// differential check of the layer.md rules against an implementation the
// field trusts; skipped where umoci is not installed.
func TestSameTreeAsUmoci(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	ns := time.Unix(1600000000, 123456789)
	ls := [][]e{
		{
			D("etc", 0755), F("etc/passwd", "root:x:0:0", 0644), F("etc/shadow", "s", 0).owner(0, 42),
			D("usr", 0755), D("usr/lib", 0755), S("lib", "usr/lib"), F("usr/lib/a.so", "a", 0755),
			D("tmp", 01777).mtime(ns), F("usr/bin/su", "su", 04755), D("opq", 0755), F("opq/lower", "", 0644),
			D("d", 0700).owner(1000, 1000), F("d/f", "f", 0600).owner(1000, 1000).mtime(ns), Fifo("fifo", 0600),
			F("x", "", 0644).xattr("user.k", "v"), D("gone", 0755), F("gone/f", "", 0644),
		},
		{F("lib/b.so", "b", 0755), H("etc/passwd-", "etc/passwd"), W("", "gone"), O("opq"), F("opq/upper", "u", 0644)},
		{F("etc/passwd", "root:x:0:0:new", 0644), S("usr/bin/link", "../lib/b.so"), D("d", 0750).owner(1000, 1000).mtime(ns)},
	}
	theirs, appl := umociUnpack(t, ls)
	modes(t, func(t *testing.T, opts []Option) {
		ours := t.TempDir()
		if _, err := Apply(context.Background(), ours, appl, opts...); err != nil {
			t.Fatal(err)
		}
		a, b := treecmpWalk(t, ours), treecmpWalk(t, theirs)
		// Directory mtimes differ where a layer made implicit parents
		// (usr/bin here): those are the time of unpacking in both, and
		// umoci gives that time to their listed parent (usr) too, while
		// Apply gives a listed directory its header's mtime once the
		// layer ends. TestUnlistedParentKeepsMtime compares them on a
		// tree without implicit parents.
		for _, d := range treecmp.Diff(a, b, treecmp.Options{IgnoreRoot: true, IgnoreDirMtime: true}) {
			t.Error(d)
		}
	})
}

// umociUnpack writes layers as an image layout, unpacks it with umoci
// and returns umoci's tree and the same layers for Apply.
func umociUnpack(t *testing.T, ls [][]e) (string, []Layer) {
	t.Helper()
	umoci := testutil.Tool(t, "umoci")
	base := t.TempDir()
	layout := filepath.Join(base, "layout")
	var descs []v1.Descriptor
	var diffIDs []digest.Digest
	var appl []Layer
	for _, l := range ls {
		tb := tarOf(t, l...)
		gzb := gz(t, tb)
		descs = append(descs, writeBlob(t, layout, v1.MediaTypeImageLayerGzip, gzb))
		diffIDs = append(diffIDs, sha(tb))
		appl = append(appl, blob(t, v1.MediaTypeImageLayerGzip, tb))
	}
	cfg, _ := json.Marshal(v1.Image{Platform: v1.Platform{OS: "linux", Architecture: "amd64"}, RootFS: v1.RootFS{Type: "layers", DiffIDs: diffIDs}})
	man, _ := json.Marshal(v1.Manifest{Versioned: ocispec.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageManifest,
		Config: writeBlob(t, layout, v1.MediaTypeImageConfig, cfg), Layers: descs})
	md := writeBlob(t, layout, v1.MediaTypeImageManifest, man)
	md.Annotations = map[string]string{v1.AnnotationRefName: "t"}
	idx, _ := json.Marshal(v1.Index{Versioned: ocispec.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageIndex, Manifests: []v1.Descriptor{md}})
	os.WriteFile(filepath.Join(layout, "index.json"), idx, 0644)
	os.WriteFile(filepath.Join(layout, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0644)
	theirs := filepath.Join(base, "umoci")
	if out, err := exec.Command(umoci, "raw", "unpack", "--image", layout+":t", theirs).CombinedOutput(); err != nil {
		t.Fatalf("umoci: %v\n%s", err, out)
	}
	return theirs, appl
}

func writeBlob(t *testing.T, layout, mediaType string, b []byte) v1.Descriptor {
	d := sha(b)
	p := filepath.Join(layout, "blobs", d.Algorithm().String(), d.Encoded())
	if err := os.MkdirAll(filepath.Dir(p), 0755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0644); err != nil {
		t.Fatal(err)
	}
	return v1.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}
}

// A directory a layer changes without listing it keeps the mtime it had:
// layer 1 lists d/, layer 2 rewrites d/f and whites out d/g without
// listing d/ (Debian's second layer does this to var/log). The tree,
// directory mtimes of listed directories included, is umoci's, and two
// applies of the same layers give the same tree. Before, d got the time
// of the unpack.
func TestUnlistedParentKeepsMtime(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	old := time.Unix(1500000000, 0)
	ls := [][]e{
		{D("d", 0755).mtime(old), F("d/f", "v1", 0644), F("d/g", "g", 0644), D("d/sub", 0755).mtime(old), F("d/sub/x", "x", 0644)},
		{F("d/f", "v2", 0644), W("d", "g"), F("d/sub/y", "y", 0644), S("d/sub/l", "x")},
	}
	theirs, appl := umociUnpack(t, ls)
	trees := make([][]treecmp.Entry, 2)
	for i := range trees {
		ours := t.TempDir()
		if _, err := Apply(context.Background(), ours, appl); err != nil {
			t.Fatal(err)
		}
		trees[i] = treecmpWalk(t, ours)
		for _, d := range treecmp.Diff(trees[i], treecmpWalk(t, theirs), treecmp.Options{IgnoreRoot: true}) {
			t.Errorf("against umoci: %s", d)
		}
		diffTree(t, trees[i], `
			dir d 0755 mtime=1500000000
			file d/f content=v2
			dir d/sub 0755 mtime=1500000000
			symlink d/sub/l target=x
			file d/sub/x content=x
			file d/sub/y content=y
		`, [2]uint32{0, 0})
	}
	for _, d := range treecmp.Diff(trees[0], trees[1], treecmp.Options{IgnoreRoot: true}) {
		t.Errorf("two applies differ: %s", d)
	}
}

// An opaque whiteout reached through a symbolic link to its own directory
// (s -> ., then s/.wh..wh..opq) removes every lower entry, whatever order
// readdir gives them in, the link itself included, as umoci does, with
// /proc and without. Before, removing s as one of the children cut the
// way to those after it.
func TestOpaqueThroughSelfLink(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	var lower []e
	for i := range 40 {
		lower = append(lower, F(fmt.Sprintf("f%02d", i), "lower", 0644))
	}
	lower = append(lower, S("s", "."), D("dir", 0755), F("dir/in", "x", 0644))
	ls := [][]e{lower, {O("s"), F("s/upper", "u", 0644)}}
	theirs, appl := umociUnpack(t, ls)
	modes(t, func(t *testing.T, opts []Option) {
		for _, noProc := range []bool{false, true} {
			o := opts
			if noProc {
				o = append(o[:len(o):len(o)], withoutProc())
			}
			ours := t.TempDir()
			if _, err := Apply(context.Background(), ours, appl, o...); err != nil {
				t.Fatal(err)
			}
			// s went with the rest; s/upper then made s a directory, an
			// implicit one (its mtime is the unpack's).
			checkTree(t, ours, `
				dir s 0755
				file s/upper content=u
			`)
			for _, d := range treecmp.Diff(treecmpWalk(t, ours), treecmpWalk(t, theirs), treecmp.Options{IgnoreRoot: true, IgnoreDirMtime: true}) {
				t.Errorf("against umoci: %s", d)
			}
		}
	})
}
