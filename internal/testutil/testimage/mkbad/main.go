// Command mkbad writes testdata/validate: one small OCI image layout per
// rule of "validate", each breaking exactly that rule. The directory name
// is the rule the layout must be reported for. Run from the repository
// root:
//
//	go run ./internal/testutil/testimage/mkbad testdata/validate
package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: mkbad DIR")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "mkbad:", err)
		os.Exit(1)
	}
}

// layout accumulates blobs for one case.
type layout struct{ dir string }

func (l layout) blob(data []byte) (string, int) {
	sum := fmt.Sprintf("%x", sha256.Sum256(data))
	p := filepath.Join(l.dir, "blobs", "sha256", sum)
	must(os.MkdirAll(filepath.Dir(p), 0o755))
	must(os.WriteFile(p, data, 0o644))
	return "sha256:" + sum, len(data)
}

func (l layout) json(v any) (string, int) {
	b, err := json.Marshal(v)
	must(err)
	return l.blob(b)
}

func (l layout) finish(root map[string]any) {
	must(os.WriteFile(filepath.Join(l.dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644))
	root["annotations"] = map[string]string{"org.opencontainers.image.ref.name": "bad"}
	idx := map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []any{root}}
	b, err := json.MarshalIndent(idx, "", "  ")
	must(err)
	must(os.WriteFile(filepath.Join(l.dir, "index.json"), b, 0o644))
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

const (
	ociIndex    = "application/vnd.oci.image.index.v1+json"
	ociManifest = "application/vnd.oci.image.manifest.v1+json"
	ociConfig   = "application/vnd.oci.image.config.v1+json"
	ociLayer    = "application/vnd.oci.image.layer.v1.tar"
	dockerMan   = "application/vnd.docker.distribution.manifest.v2+json"
)

func desc(mt, d string, n int) map[string]any {
	return map[string]any{"mediaType": mt, "digest": d, "size": n}
}

// image writes a one-layer image with optional edits and returns the
// manifest's descriptor.
type edits struct {
	config   func(map[string]any)
	manifest func(map[string]any)
}

func (l layout) image(e edits) map[string]any {
	// An empty tar: two zero blocks.
	layer := make([]byte, 1024)
	ld, ln := l.blob(layer)
	cfg := map[string]any{
		"architecture": "amd64", "os": "linux",
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{ld}},
	}
	if e.config != nil {
		e.config(cfg)
	}
	cd, cn := l.json(cfg)
	m := map[string]any{
		"schemaVersion": 2, "mediaType": ociManifest,
		"config": desc(ociConfig, cd, cn),
		"layers": []any{desc(ociLayer, ld, ln)},
	}
	if e.manifest != nil {
		e.manifest(m)
	}
	md, mn := l.json(m)
	return desc(ociManifest, md, mn)
}

func (l layout) index(entries ...map[string]any) map[string]any {
	d, n := l.json(map[string]any{"schemaVersion": 2, "mediaType": ociIndex, "manifests": entries})
	return desc(ociIndex, d, n)
}

func withPlatform(d map[string]any) map[string]any {
	d["platform"] = map[string]string{"os": "linux", "architecture": "amd64"}
	return d
}

func run(out string) error {
	cases := map[string]func(l layout) map[string]any{
		// The image-spec JSON schemas.
		"schema-manifest": func(l layout) map[string]any {
			return l.image(edits{manifest: func(m map[string]any) {
				delete(m["layers"].([]any)[0].(map[string]any), "size")
			}})
		},
		"schema-config": func(l layout) map[string]any {
			return l.image(edits{config: func(c map[string]any) { delete(c, "os") }})
		},
		"schema-index": func(l layout) map[string]any {
			e := withPlatform(l.image(edits{}))
			e["urls"] = "not-a-list"
			return l.index(e)
		},
		// Content that does not match its descriptor.
		"digest": func(l layout) map[string]any {
			d := l.image(edits{})
			p := filepath.Join(l.dir, "blobs", "sha256", strings.TrimPrefix(d["digest"].(string), "sha256:"))
			b, _ := os.ReadFile(p)
			b[len(b)-2] = ' ' // same size, other bytes
			must(os.WriteFile(p, b, 0o644))
			return d
		},
		"size": func(l layout) map[string]any {
			d := withPlatform(l.image(edits{}))
			d["size"] = d["size"].(int) + 3
			return l.index(d)
		},
		// What a schema cannot say.
		"media_type": func(l layout) map[string]any {
			d := withPlatform(l.image(edits{}))
			d["mediaType"] = dockerMan // the manifest itself says OCI
			return l.index(d)
		},
		"ambiguous": func(l layout) map[string]any {
			return l.image(edits{manifest: func(m map[string]any) { m["manifests"] = []any{} }})
		},
		"platform": func(l layout) map[string]any {
			return l.index(l.image(edits{}))
		},
		"diff_ids": func(l layout) map[string]any {
			return l.image(edits{config: func(c map[string]any) {
				rf := c["rootfs"].(map[string]any)
				ids := rf["diff_ids"].([]string)
				rf["diff_ids"] = append(ids, ids[0])
			}})
		},
		"layer_media_type": func(l layout) map[string]any {
			return l.image(edits{manifest: func(m map[string]any) {
				m["layers"].([]any)[0].(map[string]any)["mediaType"] = "application/octet-stream"
			}})
		},
		"config_media_type": func(l layout) map[string]any {
			return l.image(edits{manifest: func(m map[string]any) {
				m["config"].(map[string]any)["mediaType"] = "application/vnd.cncf.helm.config.v1+json"
			}})
		},
	}
	if err := os.RemoveAll(out); err != nil {
		return err
	}
	for name, build := range cases {
		l := layout{dir: filepath.Join(out, name)}
		must(os.MkdirAll(l.dir, 0o755))
		l.finish(build(l))
	}
	return nil
}
