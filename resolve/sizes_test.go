package resolve_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/testutil/hostile"
	"github.com/ocifetch/ocifetch/resolve"
)

// sizedImage is a small image whose descriptor sizes a test can change:
// the manifest's JSON with one layer, and the blobs it refers to.
func sizedImage(t *testing.T, layerSize, configSize int64) (manifest []byte, blobs map[string][]byte) {
	t.Helper()
	layer := []byte("not really a layer: resolving never reads it")
	ld := fmt.Sprintf("sha256:%x", sha256.Sum256(layer))
	config, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{ld}},
	})
	cd := fmt.Sprintf("sha256:%x", sha256.Sum256(config))
	if configSize == 0 {
		configSize = int64(len(config))
	}
	m, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": configSize},
		"layers":        []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": layerSize}},
	})
	return m, map[string][]byte{ld: layer, cd: config}
}

// writeSizedLayout writes an OCI layout holding the image as "x".
func writeSizedLayout(t *testing.T, manifest []byte, blobs map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	blobs["sha256:"+fmt.Sprintf("%x", sha256.Sum256(manifest))] = manifest
	for d, b := range blobs {
		p := filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(d, "sha256:"))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	idx, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []any{map[string]any{
		"mediaType": "application/vnd.oci.image.manifest.v1+json",
		"digest":    fmt.Sprintf("sha256:%x", sha256.Sum256(manifest)), "size": len(manifest),
		"annotations": map[string]string{"org.opencontainers.image.ref.name": "x"},
	}}})
	for name, b := range map[string][]byte{"index.json": idx, "oci-layout": []byte(`{"imageLayoutVersion":"1.0.0"}`)} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Descriptor sizes are claims from the registry or the layout: 2^63-1
// overflowed the download's arithmetic (a panic), a negative size is not
// a size. Resolve refuses both before anything is fetched, whether from a
// layout or a registry, and Validate reports both (it called them valid).
func TestAbsurdDescriptorSizes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		layer, config int64
		kind          errdefs.Kind
		rule          string
	}{
		{"layer of 2^63-1 bytes", math.MaxInt64, 0, errdefs.ErrTooLarge, "too_large"},
		{"layer of 1 TiB + 1", 1<<40 + 1, 0, errdefs.ErrTooLarge, "too_large"},
		{"negative layer", -1, 0, errdefs.ErrManifestInvalid, "size"},
		{"config of 2^63-1 bytes", 10, math.MaxInt64, errdefs.ErrTooLarge, "too_large"},
		{"negative config", 10, -5, errdefs.ErrManifestInvalid, "size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			manifest, blobs := sizedImage(t, tc.layer, tc.config)

			dir := writeSizedLayout(t, manifest, blobs)
			_, err := resolve.Resolve(context.Background(), "oci:"+dir+":x")
			wantKind(t, err, tc.kind)

			if problems := validateRef(t, "oci:"+dir+":x"); !slices.ContainsFunc(problems, func(p resolve.Problem) bool { return p.Rule == tc.rule }) {
				t.Fatalf("Validate: no %q problem in %+v", tc.rule, problems)
			}

			reg := hostile.New(t)
			for _, b := range blobs {
				reg.PutBlob("size/app", b)
			}
			reg.PutManifest("size/app", "v1", "application/vnd.oci.image.manifest.v1+json", manifest)
			_, err = resolve.Resolve(context.Background(), reg.Host+"/size/app:v1", anonymous)
			wantKind(t, err, tc.kind)
		})
	}
}
