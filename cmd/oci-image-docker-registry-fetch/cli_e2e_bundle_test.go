package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ocifetch/ocifetch/internal/testutil/specschema"
)

// "bundle" from a real registry: DIR/config.json validates against the
// runtime-spec schema and carries the image config (user demo resolved
// against the image's /etc/passwd to 1000:1000, args, env, cwd, labels
// and fields as annotations); DIR/rootfs is the unpacked image.
func TestCLIE2EBundle(t *testing.T) {
	t.Parallel()
	demo, env := sharedDemo(t, "/e2e/bundle:v1")
	want := demo.facts(t, "linux/arm/v7")
	dir := filepath.Join(t.TempDir(), "bundle")

	var out struct {
		Reference string   `json:"reference"`
		Manifest  descJSON `json:"manifest"`
		Bundle    string   `json:"bundle"`
		Rootfs    string   `json:"rootfs"`
		Config    string   `json:"config"`
	}
	r := runJSON(t, env, &out, "bundle", "--json", "--store", t.TempDir(), "--platform", "linux/arm/v7", demo.ref, dir)
	if out.Reference != demo.ref || out.Manifest.Digest != want.manifest.String() || out.Bundle != dir ||
		out.Rootfs != filepath.Join(dir, "rootfs") || out.Config != filepath.Join(dir, "config.json") {
		t.Errorf("bundle --json: %s", r.stdout)
	}

	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := specschema.ValidateRuntimeConfig(data); err != nil {
		t.Errorf("config.json does not validate against the runtime-spec schema: %v\n%s", err, data)
	}
	var spec rspec.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		t.Fatal(err)
	}
	if spec.Process == nil || spec.Root == nil {
		t.Fatalf("config.json has no process or root:\n%s", data)
	}
	p := spec.Process
	if p.User.UID != 1000 || p.User.GID != 1000 || !slices.Equal(p.Args, []string{"/bin/hello"}) || p.Cwd != "/" ||
		!slices.Equal(p.Env, []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}) {
		t.Errorf("process: user %+v args %q cwd %q env %q; want 1000:1000, [/bin/hello], /, the image's PATH", p.User, p.Args, p.Cwd, p.Env)
	}
	if spec.Root.Path != "rootfs" {
		t.Errorf("root.path %q, want rootfs", spec.Root.Path)
	}
	for k, v := range map[string]string{
		"org.opencontainers.image.title":        "ocifetch demo",
		"org.opencontainers.image.os":           "linux",
		"org.opencontainers.image.architecture": "arm",
		"org.opencontainers.image.variant":      "v7",
		"org.opencontainers.image.created":      "2026-01-02T03:04:05Z",
	} {
		if spec.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, spec.Annotations[k], v)
		}
	}

	// The rootfs is the image, layer 2 applied over layer 1.
	tree := snapshot(t, filepath.Join(dir, "rootfs"))
	for _, p := range []string{"bin/hello", "bin/hi", "etc/passwd", "etc/group", "etc/motd", "etc/os-release", "usr/share/doc/demo/README"} {
		if _, ok := tree[p]; !ok {
			t.Errorf("rootfs has no %s", p)
		}
	}
	if _, ok := tree["var/cache/junk"]; ok {
		t.Error("rootfs has var/cache/junk, which layer 2 whited out")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "rootfs", "etc/motd")); string(b) != "built for arm\n" {
		t.Errorf("rootfs/etc/motd = %q", b)
	}
	// Nothing in DIR but the bundle, and the state unpack keeps beside a
	// rootfs (.ROOTFS.ocifetch, docs/cli.md "rebuild").
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != ".rootfs.ocifetch,config.json,rootfs" {
		t.Errorf("the bundle directory holds %v, want .rootfs.ocifetch, config.json and rootfs", names)
	}
	// The rootfs rebuilds like any unpacked tree.
	if r := runBuilt(t, env, "rebuild", "--all", "--check", filepath.Join(dir, "rootfs")); r.code != 0 || strings.Count(r.stdout, " ok ") != 2 {
		t.Errorf("rebuild --all --check of the bundle's rootfs: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
