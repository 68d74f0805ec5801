package main

// End-to-end tests of the store commands and rules: oci:STORE:NAME with
// the names the store writes, two platforms of one tag, --pull never with
// the registry process stopped, pull --platform all, images/ls, rm and
// gc --verify, and skopeo reading the store.

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/ocifetch/ocifetch/internal/testutil/testregistry"
)

// The top-level keys docs/cli.md promises for "images --json", "rm
// --json" and "pull --platform all --json".
var (
	imagesKeys  = []string{"store", "images"}
	imageKeys   = []string{"name", "platform", "platforms", "index", "digest", "mediaType", "size", "kept", "rootfs"}
	rmKeys      = []string{"store", "removed"}
	pullAllKeys = []string{"reference", "store", "name", "index", "platforms", "images", "artifacts", "downloaded"}
)

// runImages runs "images --json", decoded into the command's own type
// (the keys are held to docs/cli.md by imagesKeys and imageKeys).
func runImages(t *testing.T, env []string, store string) imagesJSON {
	t.Helper()
	var out imagesJSON
	r := runJSON(t, env, &out, "images", "--store", store, "--json")
	checkKeys(t, "images --json", r.stdout, imagesKeys)
	var raw struct {
		Images []json.RawMessage `json:"images"`
	}
	json.Unmarshal([]byte(r.stdout), &raw)
	for _, im := range raw.Images {
		checkKeys(t, "images --json: an image", string(im), imageKeys)
	}
	if out.Store != store {
		t.Errorf("images --json: store %q, want %q", out.Store, store)
	}
	return out
}

// wantExit runs the binary and checks its exit status and, with --json,
// the error kind.
func wantExit(t *testing.T, env []string, code int, kind string, args ...string) cliRun {
	t.Helper()
	r := runBuilt(t, env, args...)
	if r.code != code {
		t.Errorf("%v: exit %d, want %d\nstdout: %s\nstderr: %s", args, r.code, code, r.stdout, r.stderr)
		return r
	}
	if kind != "" {
		if k, _ := jsonError(t, r.stdout); k != kind {
			t.Errorf("%v: kind %q, want %q: %s", args, k, kind, r.stdout)
		}
	}
	return r
}

func motd(t *testing.T, rootfs string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(rootfs, "etc", "motd"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// amd64 then arm64 of one tag: two entries, gc keeps both, images lists
// both, skopeo reads the store, and with the registry process stopped
// both unpack, by oci:STORE:NAME (a name full of colons) and by
// --pull never.
func TestCLIE2EStoreTwoPlatformsOfOneTag(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	demo, env, store := demoAndStore(t, reg, "/e2e/store:v1")
	amd, arm := demo.facts(t, "linux/amd64"), demo.facts(t, "linux/arm64/v8")
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		mustRun(t, env, "pull", "--quiet", "--store", store, "--platform", p, demo.ref)
	}
	st := checkStoreValid(t, store)
	if len(st.index.Manifests) != 2 {
		t.Fatalf("index.json: %+v", st.index.Manifests)
	}
	if g := runGC(t, env, store); len(g.Removed) != 0 {
		t.Fatalf("gc removed %v", g.Removed)
	}
	for _, f := range []demoFacts{amd, arm} {
		for _, d := range append([]digest.Digest{f.manifest, f.config}, f.layers...) {
			if !checkStoreValid(t, store).blobs[d] {
				t.Errorf("%s is not in the store after gc", d)
			}
		}
	}
	out := runImages(t, env, store)
	if len(out.Images) != 2 {
		t.Fatalf("images: %+v", out.Images)
	}
	for i, want := range []struct {
		f    demoFacts
		plat string
	}{{amd, "linux/amd64"}, {arm, "linux/arm64/v8"}} {
		im := out.Images[i]
		size := want.f.sizes[0] + want.f.sizes[1]
		if im.Name != demo.ref || im.Platform != want.plat || !slices.Equal(im.Platforms, []string{want.plat}) || im.Index ||
			im.Digest != want.f.manifest.String() || im.Kept != "blobs" || im.Size <= size {
			t.Errorf("images[%d] = %+v", i, im)
		}
	}
	// The text form and the ls alias.
	r := mustRun(t, env, "ls", "--store", store)
	if l := lines(r.stdout); len(l) != 3 || !strings.HasPrefix(l[0], "NAME") || !strings.Contains(l[1], demo.ref) ||
		!strings.Contains(l[1], "linux/amd64") || !strings.Contains(l[2], shortDigest(arm.manifest.String())+" ") {
		t.Errorf("ls:\n%s", r.stdout)
	}

	// skopeo reads the store after the two-platform pull: the name's
	// first entry, which stays amd64.
	if skopeo, err := exec.LookPath("skopeo"); err == nil {
		sr, err := execCLI(skopeo, env, "inspect", "oci:"+store+":"+demo.ref)
		if err != nil || sr.code != 0 {
			t.Fatalf("skopeo inspect oci:STORE:NAME: %v exit %d\n%s", err, sr.code, sr.stderr)
		}
		var si struct{ Digest, Architecture string }
		if err := json.Unmarshal([]byte(sr.stdout), &si); err != nil || si.Digest != amd.manifest.String() || si.Architecture != "amd64" {
			t.Errorf("skopeo inspect: %v %+v", err, si)
		}
	} else if os.Getenv("CI") != "" {
		t.Fatal("skopeo is not installed; CI must run this case")
	}

	reg.Stop()
	for _, c := range []struct {
		args []string
		motd string
	}{
		{[]string{"--platform", "linux/arm64", "oci:" + store + ":" + demo.ref}, "built for arm64\n"},
		{[]string{"--platform", "linux/amd64", "oci:" + store + ":" + demo.ref}, "built for amd64\n"},
		{[]string{"--pull", "never", "--platform", "linux/arm64", demo.ref}, "built for arm64\n"},
		{[]string{"--pull", "missing", "--platform", "linux/amd64", demo.ref}, "built for amd64\n"},
	} {
		rootfs := filepath.Join(t.TempDir(), "rootfs")
		mustRun(t, env, append(append([]string{"unpack", "--quiet", "--store", store}, c.args...), rootfs)...)
		if got := motd(t, rootfs); got != c.motd {
			t.Errorf("unpack %v: etc/motd %q, want %q", c.args, got, c.motd)
		}
	}
	if st := checkStoreValid(t, store); len(st.index.Manifests) != 2 {
		t.Errorf("unpacks from the store changed index.json: %+v", st.index.Manifests)
	}
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	wantExit(t, env, exitNotFound, "platform_not_found", "unpack", "--json", "--store", store, "--pull", "never", "--platform", "linux/arm/v7", demo.ref, rootfs)
	wantExit(t, env, exitNotFound, "not_found", "unpack", "--json", "--store", store, "--pull", "never", reg.Host+"/e2e/other:v1", rootfs)
	wantExit(t, env, exitNotFound, "not_found", "pull", "--json", "--store", store, "--pull", "never", reg.Host+"/e2e/store:v2")
	wantExit(t, env, 6, "network", "unpack", "--json", "--store", store, "--pull", "always", "--platform", "linux/amd64", demo.ref, rootfs)
	wantExit(t, env, exitUsage, "invalid_argument", "unpack", "--json", "--store", store, "--pull", "sometimes", demo.ref, rootfs)
	if _, err := os.Stat(rootfs); err == nil {
		if ents, _ := os.ReadDir(rootfs); len(ents) > 0 {
			t.Errorf("failed unpacks left %d entries in %s", len(ents), rootfs)
		}
	}
}

// pull --platform all keeps the index and every platform as one entry;
// every platform then unpacks from the store alone.
func TestCLIE2EPullPlatformAll(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	demo, env, store := demoAndStore(t, reg, "/e2e/all:v1")
	var out struct {
		Reference, Store, Name string
		Index                  descJSON
		Platforms              []string
		Images                 []struct {
			Platform string
			Manifest descJSON
			Layers   []layerJSON
		}
		Downloaded int64
	}
	r := runJSON(t, env, &out, "pull", "--json", "--store", store, "--platform", "all", demo.ref)
	checkKeys(t, "pull --platform all --json", r.stdout, pullAllKeys)
	want := []string{"linux/amd64", "linux/arm64/v8", "linux/arm/v7"}
	if out.Reference != demo.ref || out.Name != demo.ref || out.Store != store || out.Index.Digest != demo.digest.String() ||
		!slices.Equal(out.Platforms, want) || len(out.Images) != 3 || out.Downloaded == 0 {
		t.Fatalf("pull --platform all --json: %s", r.stdout)
	}
	for i, im := range out.Images {
		if f := demo.facts(t, want[i]); im.Platform != want[i] || im.Manifest.Digest != f.manifest.String() || len(im.Layers) != len(f.layers) {
			t.Errorf("images[%d]: %+v", i, im)
		}
	}
	st := checkStoreValid(t, store)
	if len(st.index.Manifests) != 1 || st.index.Manifests[0].Digest.String() != demo.digest.String() || st.index.Manifests[0].MediaType == "" {
		t.Fatalf("index.json: %+v", st.index.Manifests)
	}
	if g := runGC(t, env, store); len(g.Removed) != 0 {
		t.Fatalf("gc removed %v", g.Removed)
	}
	imgs := runImages(t, env, store)
	if len(imgs.Images) != 1 || !imgs.Images[0].Index || imgs.Images[0].Platform != "" || !slices.Equal(imgs.Images[0].Platforms, want) || imgs.Images[0].Kept != "blobs" {
		t.Errorf("images: %+v", imgs.Images)
	}
	if r := mustRun(t, env, "images", "--store", store); !strings.Contains(r.stdout, "all: linux/amd64, linux/arm64/v8, linux/arm/v7") {
		t.Errorf("images:\n%s", r.stdout)
	}
	// The plain line: the index digest.
	if r := mustRun(t, env, "pull", "--quiet", "--store", store, "--platform", "all", "--pull", "missing", demo.ref); r.stdout != demo.digest.String()+"\n" {
		t.Errorf("pull --platform all printed %q", r.stdout)
	}

	reg.Stop()
	for _, p := range want {
		rootfs := filepath.Join(t.TempDir(), "rootfs")
		mustRun(t, env, "unpack", "--quiet", "--store", store, "--pull", "never", "--platform", p, demo.ref, rootfs)
		if got, arch := motd(t, rootfs), strings.Split(p, "/")[1]; got != "built for "+arch+"\n" {
			t.Errorf("%s: etc/motd %q", p, got)
		}
	}
	mustRun(t, env, "pull", "--quiet", "--store", store, "--platform", "all", "--pull", "never", demo.ref)
	if st := checkStoreValid(t, store); len(st.index.Manifests) != 1 {
		t.Errorf("index.json after unpacks from the index: %+v", st.index.Manifests)
	}
	wantExit(t, env, exitUsage, "invalid_argument", "unpack", "--json", "--store", store, "--platform", "all", demo.ref, filepath.Join(t.TempDir(), "x"))
	wantExit(t, env, exitUsage, "invalid_argument", "bundle", "--json", "--store", store, "--platform", "all", demo.ref, filepath.Join(t.TempDir(), "x"))
}

// images and rm: rm NAME removes every platform entry of the name, rm
// DIGEST one entry; blobs go at the next gc; rm of a name the store does
// not hold is not_found.
func TestCLIE2EImagesAndRm(t *testing.T) {
	t.Parallel()
	reg := testregistry.Shared(t)
	demo, env, store := demoAndStore(t, reg, "/e2e/rm:v1")
	for _, p := range []string{"linux/amd64", "linux/arm/v7"} {
		mustRun(t, env, "pull", "--quiet", "--store", store, "--platform", p, demo.ref)
	}
	other := reg.Host + "/e2e/rm:v2"
	pushDemo(t, other)
	mustRun(t, env, "pull", "--quiet", "--store", store, "--platform", "linux/amd64", other)
	if imgs := runImages(t, env, store); len(imgs.Images) != 3 {
		t.Fatalf("images: %+v", imgs.Images)
	}

	var out struct {
		Store   string
		Removed []struct{ Name, Platform, Digest string }
	}
	r := runJSON(t, env, &out, "rm", "--json", "--store", store, demo.ref)
	checkKeys(t, "rm --json", r.stdout, rmKeys)
	if len(out.Removed) != 2 || out.Removed[0].Platform != "linux/amd64" || out.Removed[1].Platform != "linux/arm/v7" || out.Removed[0].Name != demo.ref {
		t.Fatalf("rm --json: %s", r.stdout)
	}
	imgs := runImages(t, env, store)
	if len(imgs.Images) != 1 || imgs.Images[0].Name != other {
		t.Fatalf("images after rm: %+v", imgs.Images)
	}
	// The same image stays reachable through the other name: gc removes
	// only what the arm/v7 entry alone held.
	arm := demo.facts(t, "linux/arm/v7")
	g := runGC(t, env, store)
	if want := digestSet(append([]digest.Digest{arm.manifest, arm.config}, arm.layers...)...); !slices.Equal(g.Removed, want) {
		t.Errorf("gc after rm removed %v, want %v", g.Removed, want)
	}
	wantExit(t, env, exitNotFound, "not_found", "rm", "--json", "--store", store, demo.ref)
	// images prints digests cut to 12 hex digits, lines that fit 80
	// columns, and rm takes the cut digest back.
	r = mustRun(t, env, "images", "--store", store)
	short := shortDigest(demo.facts(t, "linux/amd64").manifest.String())
	for _, l := range lines(r.stdout) {
		if len(l) > 80 {
			t.Errorf("images: a line of %d columns: %q", len(l), l)
		}
	}
	if !strings.Contains(r.stdout, " "+short+" ") {
		t.Errorf("images does not print %s:\n%s", short, r.stdout)
	}
	if r = mustRun(t, env, "images", "--no-trunc", "--store", store); !strings.Contains(r.stdout, demo.facts(t, "linux/amd64").manifest.String()) {
		t.Errorf("images --no-trunc:\n%s", r.stdout)
	}
	r = mustRun(t, env, "rm", "--store", store, short)
	if !strings.HasPrefix(r.stdout, "removed "+other+" linux/amd64 sha256:") {
		t.Errorf("rm DIGEST printed %q", r.stdout)
	}
	if imgs := runImages(t, env, store); len(imgs.Images) != 0 {
		t.Errorf("images after removing everything: %+v", imgs.Images)
	}
	wantExit(t, env, exitUsage, "invalid_argument", "rm", "--json", "--store", store)
	wantExit(t, env, exitNotFound, "not_found", "images", "--json", "--store", filepath.Join(t.TempDir(), "nothing"))
}

// gc --verify hashes every blob and removes the corrupt ones; the next
// pull fetches them again.
func TestCLIE2EGCVerify(t *testing.T) {
	t.Parallel()
	reg := testregistry.Shared(t)
	demo, env, store := demoAndStore(t, reg, "/e2e/verify:v1")
	mustRun(t, env, "pull", "--quiet", "--store", store, "--platform", "linux/amd64", demo.ref)
	amd := demo.facts(t, "linux/amd64")
	blob := filepath.Join(store, "blobs", "sha256", amd.layers[1].Encoded())
	b, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(blob, b, 0o644); err != nil {
		t.Fatal(err)
	}
	var out struct {
		Removed, Corrupt []string
		Bytes            int64
	}
	runJSON(t, env, &out, "gc", "--json", "--verify", "--store", store)
	if len(out.Removed) != 0 || !slices.Equal(out.Corrupt, []string{amd.layers[1].String()}) || out.Bytes != int64(len(b)) {
		t.Errorf("gc --verify: %+v", out)
	}
	if _, err := os.Stat(blob); err == nil {
		t.Error("the corrupt blob is still there")
	}
	if imgs := runImages(t, env, store); len(imgs.Images) != 1 || imgs.Images[0].Kept != "incomplete" {
		t.Errorf("images after gc --verify: %+v", imgs.Images)
	}
	mustRun(t, env, "pull", "--quiet", "--store", store, "--platform", "linux/amd64", demo.ref)
	if st := checkStoreValid(t, store); !st.blobs[amd.layers[1]] {
		t.Error("the next pull did not fetch the corrupt blob again")
	}
}
