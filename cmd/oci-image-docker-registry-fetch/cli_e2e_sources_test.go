package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/ocifetch/ocifetch/internal/testutil/testimage"
	"github.com/ocifetch/ocifetch/internal/testutil/testregistry"
)

// One image through every kind of source, resolved and unpacked by the
// binary: a registry name (with and without docker://), an OCI layout
// (oci:DIR:TAG), an OCI archive (a tar of that layout, and one skopeo
// wrote), and a docker-archive skopeo wrote (FILE, FILE:NAME:TAG,
// FILE@0). Every source gives the same layers (diffIDs) and the same
// tree, entry for entry; every tree rebuilds to its diffIDs.
func TestCLIE2EEverySourceKind(t *testing.T) {
	t.Parallel()
	reg := testregistry.Shared(t)
	demo := pushDemo(t, reg.Host+"/e2e/sources:v1")
	const platform = "linux/amd64"
	want := demo.facts(t, platform)
	env := cliEnv(t)
	work := t.TempDir()

	// oci:DIR:TAG, written by go-containerregistry.
	layoutDir := filepath.Join(work, "layout")
	testimage.WriteLayout(t, layoutDir, map[string]v1.ImageIndex{"v1": demo.index})
	// oci-archive:FILE of that layout, tarred here.
	ociTar := filepath.Join(work, "layout.tar")
	testimage.TarDir(t, layoutDir, ociTar, "")

	// docker-archive:FILE:NAME:TAG of a two-image archive written by
	// go-containerregistry (gzip layers, unlike skopeo's).
	ggcrTar := filepath.Join(work, "ggcr-docker.tar")
	amdTag, _ := name.NewTag("example.com/demo:amd64")
	armTag, _ := name.NewTag("example.com/demo:arm64")
	if err := tarball.MultiRefWriteToFile(ggcrTar, map[name.Reference]v1.Image{
		amdTag: demo.images["linux/amd64"], armTag: demo.images["linux/arm64/v8"],
	}); err != nil {
		t.Fatal(err)
	}
	// With two images in it, the archive alone names none.
	r := runBuilt(t, env, "resolve", "--json", "docker-archive:"+ggcrTar)
	if k, msg := exactJSONError(t, r.stdout); k != "invalid_argument" || r.code != exitUsage || !strings.Contains(msg, "2 images") {
		t.Errorf("docker-archive of two images, none named: kind %q exit %d message %q", k, r.code, msg)
	}

	type source struct {
		name, ref string
		// manifest is the manifest digest the source must resolve to; ""
		// when the source makes its own (docker-archive has none).
		manifest string
		index    bool // resolves through an index
	}
	sources := []source{
		{"registry", demo.ref, want.manifest.String(), true},
		{"docker://registry", "docker://" + demo.ref, want.manifest.String(), true},
		{"registry by digest", reg.Host + "/e2e/sources@" + want.manifest.String(), want.manifest.String(), false},
		{"oci layout", "oci:" + layoutDir + ":v1", want.manifest.String(), true},
		{"oci layout by digest", "oci:" + layoutDir + "@" + demo.digest.String(), want.manifest.String(), true},
		{"oci-archive", "oci-archive:" + ociTar + ":v1", want.manifest.String(), true},
		{"oci-archive, no tag", "oci-archive:" + ociTar, want.manifest.String(), true},
		{"docker-archive of two, NAME:TAG", "docker-archive:" + ggcrTar + ":example.com/demo:amd64", "", false},
	}
	if skopeo, err := exec.LookPath("skopeo"); err == nil {
		skopeoCopy := func(dst string) {
			t.Helper()
			cmd := exec.Command(skopeo, "--insecure-policy", "--override-os", "linux", "--override-arch", "amd64",
				"copy", "--quiet", "--src-tls-verify=false", "docker://"+demo.ref, dst)
			cmd.Env = env
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("skopeo copy to %s: %v\n%s", dst, err, out)
			}
		}
		skopeoOCI := filepath.Join(work, "skopeo-oci.tar")
		skopeoCopy("oci-archive:" + skopeoOCI + ":v1")
		dockerTar := filepath.Join(work, "docker.tar")
		skopeoCopy("docker-archive:" + dockerTar + ":example.com/demo:v1")
		sources = append(sources,
			// skopeo copies the one platform, as an image manifest.
			source{"skopeo oci-archive", "oci-archive:" + skopeoOCI + ":v1", want.manifest.String(), false},
			source{"docker-archive", "docker-archive:" + dockerTar, "", false},
			source{"docker-archive:NAME:TAG", "docker-archive:" + dockerTar + ":example.com/demo:v1", "", false},
			source{"docker-archive@INDEX", "docker-archive:" + dockerTar + "@0", "", false},
		)
	} else if os.Getenv("CI") != "" {
		t.Fatal("skopeo is not installed; CI must run the docker-archive cases")
	} else {
		t.Log("skopeo is not installed: no docker-archive or skopeo-written sources")
	}

	// check resolves, validates, unpacks and rebuilds the image from s,
	// and returns the tree.
	check := func(t *testing.T, s source) map[string]entry {
		var res resolveOutput
		runJSON(t, env, &res, "resolve", "--json", "--platform", platform, s.ref)
		if res.Platform != platform || len(res.Layers) != 2 || (s.manifest != "" && res.Manifest.Digest != s.manifest) ||
			(res.Index != nil) != s.index {
			t.Errorf("resolve %s: platform %s, manifest %s (want %q), index %v (want one: %v), %d layers",
				s.ref, res.Platform, res.Manifest.Digest, s.manifest, res.Index, s.index, len(res.Layers))
		}
		for i, l := range res.Layers {
			if i < len(want.diffIDs) && l.DiffID != want.diffIDs[i].String() {
				t.Errorf("resolve %s: layer %d diffID %s, want %s", s.ref, i+1, l.DiffID, want.diffIDs[i])
			}
		}

		// validate reads every kind of source.
		if r := runBuilt(t, env, "validate", s.ref); r.code != 0 || !strings.HasSuffix(r.stdout, ": valid\n") {
			t.Errorf("validate %s: exit %d\n%s%s", s.ref, r.code, r.stdout, r.stderr)
		}

		rootfs := filepath.Join(t.TempDir(), "rootfs")
		r := mustRun(t, env, "unpack", "--quiet", "--store", t.TempDir(), "--platform", platform, s.ref, rootfs)
		if r.stdout != res.Manifest.Digest+"\n" || r.stderr != "" {
			t.Errorf("unpack --quiet %s: stdout %q (want the digest resolve printed, %s), stderr %q", s.ref, r.stdout, res.Manifest.Digest, r.stderr)
		}
		tree := snapshot(t, rootfs)
		if len(tree) < 10 {
			t.Fatalf("unpack %s: only %d entries", s.ref, len(tree))
		}
		if r := runBuilt(t, env, "rebuild", "--all", "--check", rootfs); r.code != 0 || strings.Count(r.stdout, " ok ") != 2 {
			t.Errorf("rebuild --all --check of the tree from %s: exit %d\n%s%s", s.ref, r.code, r.stdout, r.stderr)
		}
		return tree
	}
	// The registry's tree is the reference; the other sources, each
	// checked on its own, must give the same.
	var reference map[string]entry
	t.Run(sources[0].name, func(t *testing.T) { reference = check(t, sources[0]) })
	if reference == nil {
		t.FailNow()
	}
	for _, s := range sources[1:] {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			if d := treeDiff(reference, check(t, s)); len(d) > 0 {
				t.Errorf("the tree unpacked from %s differs from the registry's:\n%s", s.ref, strings.Join(d, "\n"))
			}
		})
	}
}
