package main

import (
	"strconv"

	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// treeOf lists a directory as "path type mode [content|target]" lines.
func treeOf(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		line := rel + " " + info.Mode().String()
		switch {
		case info.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += " " + strings.TrimSpace(string(b))
		case info.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			line += " -> " + target
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func TestUnpackLayout(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "rootfs")
	store := t.TempDir()
	code, stdout, stderr := cli(t, "unpack", "--store", store, "--platform", "linux/amd64", "--json", layout, dir)
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, stdout, stderr)
	}
	var out unpackOutput
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Applied) != 2 || out.Store != store || out.Target != dir || out.Platform != "linux/amd64" {
		t.Fatalf("unexpected output %s", stdout)
	}
	// The image written by internal/testutil/testimage/mklayout, with layer 2's
	// rewrite and whiteout applied.
	want := []string{
		"bin drwxr-xr-x",
		"bin/hello -rwxr-xr-x #!/bin/sh\necho hello from amd64",
		"bin/hi Lrwxrwxrwx -> hello",
		"etc drwxr-xr-x",
		"etc/group -rw-r--r-- root:x:0:\ndemo:x:1000:",
		"etc/motd -rw-r--r-- built for amd64",
		"etc/os-release -rw-r--r-- NAME=ocifetch-demo\nID=demo",
		"etc/passwd -rw-r--r-- root:x:0:0:root:/root:/bin/sh\ndemo:x:1000:1000::/home/demo:/bin/sh",
		"usr drwxr-xr-x",
		"usr/share drwxr-xr-x",
		"usr/share/doc drwxr-xr-x",
		"usr/share/doc/demo drwxr-xr-x",
		"usr/share/doc/demo/README -rw-r--r-- Rewritten by layer 2.",
		"var drwxr-xr-x",
		"var/cache drwxr-xr-x",
	}
	got := treeOf(t, dir)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("tree:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// A second unpack into the same, now populated, directory is refused.
	code, stdout, _ = cli(t, "unpack", "--store", store, "--json", layout, dir)
	if kind, _ := jsonError(t, stdout); code != exitUsage || kind != "invalid_argument" {
		t.Fatalf("unpack over a populated dir: exit %d %s", code, stdout)
	}
}

func TestBundleLayout(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "bundle")
	code, stdout, stderr := cli(t, "bundle", "--quiet", "--store", t.TempDir(), "--platform", "linux/arm/v7", layout, dir)
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, stdout, stderr)
	}
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Root    struct{ Path string }
		Process struct {
			Args []string
			Cwd  string
			User struct{ UID, GID uint32 }
		}
		Annotations map[string]string
	}
	if err := json.Unmarshal(data, &spec); err != nil {
		t.Fatal(err)
	}
	if spec.Root.Path != "rootfs" || strings.Join(spec.Process.Args, " ") != "/bin/hello" || spec.Process.Cwd != "/" ||
		spec.Process.User.UID != 1000 || spec.Process.User.GID != 1000 ||
		spec.Annotations["org.opencontainers.image.architecture"] != "arm" || spec.Annotations["org.opencontainers.image.variant"] != "v7" {
		t.Fatalf("config.json: %s", data)
	}
	motd, _ := os.ReadFile(filepath.Join(dir, "rootfs/etc/motd"))
	if string(motd) != "built for arm\n" {
		t.Fatalf("rootfs/etc/motd = %q", motd)
	}
}

func TestRebuildAndVerify(t *testing.T) {
	t.Parallel()
	work := t.TempDir()
	rootfs, store := filepath.Join(work, "rootfs"), filepath.Join(work, "store")
	if code, _, stderr := cli(t, "unpack", "--quiet", "--store", store, "--platform", "linux/arm64", layout, rootfs); code != 0 {
		t.Fatalf("unpack: %s", stderr)
	}
	var res resolveOutput
	_, stdout, _ := cli(t, "resolve", "--json", "--platform", "linux/arm64", layout)
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatal(err)
	}
	// The store's blobs are not needed to rebuild.
	if err := os.RemoveAll(store); err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr := cli(t, "rebuild", "--all", "--check", rootfs)
	if code != 0 || strings.Count(stdout, " ok ") != 2 {
		t.Fatalf("rebuild --all --check: exit %d\n%s%s", code, stdout, stderr)
	}
	for i, l := range res.Layers {
		out := filepath.Join(work, "layer.tar")
		for _, sel := range []string{strconv.Itoa(i + 1), l.DiffID} {
			if code, _, stderr := cli(t, "rebuild", "--layer", sel, "-o", out, rootfs); code != 0 {
				t.Fatalf("rebuild --layer %s: %s", sel, stderr)
			}
			b, _ := os.ReadFile(out)
			if got := digest.FromBytes(b).String(); got != l.DiffID {
				t.Fatalf("layer %s rebuilt to %s, diffID %s", sel, got, l.DiffID)
			}
		}
	}
	if code, stdout, _ := cli(t, "verify", rootfs); code != 0 || stdout != "" {
		t.Fatalf("verify of an untouched tree: exit %d %q", code, stdout)
	}

	// Drift: a changed file, a removed one, a new one.
	os.WriteFile(filepath.Join(rootfs, "etc/motd"), []byte("built for ARM64\n"), 0o644)
	os.Remove(filepath.Join(rootfs, "bin/hi"))
	os.Remove(filepath.Join(rootfs, "etc/os-release"))
	os.WriteFile(filepath.Join(rootfs, "etc/new"), nil, 0o644)
	code, stdout, _ = cli(t, "verify", rootfs)
	want := []string{"appeared etc/new", "changed etc/motd", "disappeared bin/hi", "disappeared etc/os-release"}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	sort.Strings(lines)
	for i := range lines {
		lines[i], _, _ = strings.Cut(lines[i], " (")
	}
	if code != exitVerification || strings.Join(lines, "|") != strings.Join(want, "|") {
		t.Fatalf("verify: exit %d\n%s", code, stdout)
	}
	code, stdout, _ = cli(t, "rebuild", "--all", "--check", "--json", rootfs)
	var check struct {
		OK     bool
		Layers []struct {
			Layer int
			OK    bool
			Kind  string
		}
	}
	if err := json.Unmarshal([]byte(stdout), &check); err != nil {
		t.Fatal(err)
	}
	// Layer 1 wrote etc/os-release, layer 2 etc/motd: neither rebuilds
	// now. (bin/hi, a symlink, is all in its header: no payload to miss.)
	if code != exitVerification || check.OK || len(check.Layers) != 2 {
		t.Fatalf("rebuild --check after drift: exit %d %s", code, stdout)
	}
	for _, l := range check.Layers {
		if l.OK || l.Kind == "" {
			t.Fatalf("layer %d: ok %v kind %q", l.Layer, l.OK, l.Kind)
		}
	}
	code, _, _ = cli(t, "rebuild", "--layer", "2", "-o", filepath.Join(work, "bad.tar"), rootfs)
	if _, err := os.Stat(filepath.Join(work, "bad.tar")); code != exitVerification || err == nil {
		t.Fatalf("a failed rebuild: exit %d, file left: %v", code, err == nil)
	}
}

// An unpack that did not finish is detected and redone; a finished one is
// not overwritten.
func TestUnpackRepairsAnInterruptedTree(t *testing.T) {
	t.Parallel()
	work := t.TempDir()
	rootfs, store := filepath.Join(work, "rootfs"), filepath.Join(work, "store")
	if code, _, stderr := cli(t, "unpack", "--quiet", "--store", store, layout, rootfs); code != 0 {
		t.Fatal(stderr)
	}
	statePath := filepath.Join(work, ".rootfs.ocifetch", "state.json")
	b, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatal(err)
	}
	// Pretend the apply was cut short after writing a stray file.
	os.WriteFile(statePath, []byte(strings.Replace(string(b), `"complete"`, `"applying"`, 1)), 0o644)
	os.WriteFile(filepath.Join(rootfs, "half-written"), []byte("x"), 0o644)
	if code, _, stderr := cli(t, "unpack", "--quiet", "--store", store, layout, rootfs); code != 0 {
		t.Fatalf("repairing unpack: %s", stderr)
	}
	if _, err := os.Stat(filepath.Join(rootfs, "half-written")); err == nil {
		t.Fatal("the incomplete tree was not wiped")
	}
	if code, _, _ := cli(t, "rebuild", "--all", "--check", rootfs); code != 0 {
		t.Fatal("the repaired tree does not rebuild")
	}
}

// A bundle cut short is finished by running bundle again.
func TestBundleRepairsAnInterruptedBundle(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "b")
	store := t.TempDir()
	if code, _, stderr := cli(t, "bundle", "--quiet", "--store", store, layout, dir); code != 0 {
		t.Fatal(stderr)
	}
	statePath := filepath.Join(dir, ".rootfs.ocifetch", "state.json")
	b, _ := os.ReadFile(statePath)
	os.WriteFile(statePath, []byte(strings.Replace(string(b), `"complete"`, `"applying"`, 1)), 0o644)
	os.Remove(filepath.Join(dir, "config.json"))
	if code, _, stderr := cli(t, "bundle", "--quiet", "--store", store, layout, dir); code != 0 {
		t.Fatalf("second bundle: %s", stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
		t.Fatal(err)
	}
	// A complete bundle is not overwritten.
	if code, _, _ := cli(t, "bundle", "--quiet", "--store", store, layout, dir); code != exitUsage {
		t.Fatalf("bundle over a complete bundle: exit %d", code)
	}
}
