package apply

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/apply/internal/treecmp"
)

// The same layers unpacked by umoci and by Apply make the same tree. A
// differential check of the layer.md rules against an implementation the
// field trusts; skipped where umoci is not installed.
func TestSameTreeAsUmoci(t *testing.T) {
	requireRoot(t)
	umoci, err := exec.LookPath("umoci")
	if err != nil {
		missing(t, "umoci not installed")
	}
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
	modes(t, func(t *testing.T, opts []Option) {
		ours := t.TempDir()
		if _, err := Apply(context.Background(), ours, appl, opts...); err != nil {
			t.Fatal(err)
		}
		a, b := treecmpWalk(t, ours), treecmpWalk(t, theirs)
		// The mtimes of implicit parents and of directories that later
		// layers wrote into are the time of unpacking, in both.
		for _, d := range treecmp.Diff(a, b, treecmp.Options{IgnoreRoot: true, IgnoreDirMtime: true}) {
			t.Error(d)
		}
	})
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
