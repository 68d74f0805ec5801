package main

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
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
	// The image written by internal/testimage/mklayout, with layer 2's
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
