// Package demoimage builds the small multi-platform image the CLI's demo
// serves and testdata/layouts/multiarch holds: three platforms of two gzip
// layers each, the upper layer rewriting a file and whiting out another,
// built deterministically so that its digests never change.
package demoimage

import (
	"archive/tar"
	"bytes"
	"io"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Platforms are the platforms of Index, in index order.
var Platforms = []v1.Platform{
	{OS: "linux", Architecture: "amd64"},
	{OS: "linux", Architecture: "arm64", Variant: "v8"},
	{OS: "linux", Architecture: "arm", Variant: "v7"},
}

// Index returns the demo image index.
func Index() (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range Platforms {
		img, err := image(p.Architecture, p.Variant)
		if err != nil {
			return nil, err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	return idx, nil
}

type file struct {
	name, body, link string
	typ              byte
	mode             int64
}

// layerOf builds a deterministic tar layer.
func layerOf(files []file) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, f := range files {
		typ := f.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: f.name, Typeflag: typ, Mode: f.mode, ModTime: mtime, Linkname: f.link, Format: tar.FormatPAX}
		if typ == tar.TypeReg {
			h.Size = int64(len(f.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write([]byte(f.body)); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		tarball.WithMediaType(types.OCILayer))
}

func image(arch, variant string) (v1.Image, error) {
	base, err := layerOf([]file{
		{name: "etc/", typ: tar.TypeDir, mode: 0o755},
		{name: "etc/os-release", body: "NAME=ocifetch-demo\nID=demo\n", mode: 0o644},
		{name: "etc/passwd", body: "root:x:0:0:root:/root:/bin/sh\ndemo:x:1000:1000::/home/demo:/bin/sh\n", mode: 0o644},
		{name: "etc/group", body: "root:x:0:\ndemo:x:1000:\n", mode: 0o644},
		{name: "bin/", typ: tar.TypeDir, mode: 0o755},
		{name: "bin/hello", body: "#!/bin/sh\necho hello from " + arch + "\n", mode: 0o755},
		{name: "bin/hi", typ: tar.TypeSymlink, link: "hello", mode: 0o777},
		{name: "usr/share/doc/demo/README", body: "This file is replaced by the upper layer.\n", mode: 0o644},
		{name: "var/cache/junk", body: "deleted by a whiteout in the upper layer\n", mode: 0o644},
	})
	if err != nil {
		return nil, err
	}
	upper, err := layerOf([]file{
		{name: "usr/share/doc/demo/README", body: "Rewritten by layer 2.\n", mode: 0o644},
		{name: "var/cache/.wh.junk", mode: 0o644},
		{name: "etc/motd", body: "built for " + arch + "\n", mode: 0o644},
	})
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), base, upper)
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = "linux", arch, variant
	cf.Created = v1.Time{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	cf.Config.Cmd = []string{"/bin/hello"}
	cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cf.Config.User = "demo"
	cf.Config.WorkingDir = "/"
	cf.Config.Labels = map[string]string{"org.opencontainers.image.title": "ocifetch demo"}
	return mutate.ConfigFile(img, cf)
}
