package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// The done criterion, with the built binary against a real
// registry: a multi-layer image unpacked from the registry rebuilds, layer
// by layer, to its diffIDs, including the base layer whose file the upper
// layer rewrote; the store is not needed for that; verify sees the tree
// clean, then sees a change.
func TestCLIE2EUnpackRebuildVerify(t *testing.T) {
	t.Parallel()
	demo, env := sharedDemo(t, "/e2e/demo:v1")
	const platform = "linux/arm64/v8"
	want := demo.facts(t, platform)
	work := t.TempDir()
	store, rootfs := filepath.Join(work, "store"), filepath.Join(work, "rootfs")

	var out unpackOutput
	r := runJSON(t, env, &out, "unpack", "--store", store, "--platform", "linux/arm64", "--json", demo.ref, rootfs)
	// "state" (where the tar-split metadata went) is not in docs/cli.md.
	checkKeys(t, "unpack --json", r.stdout, append(pullKeys, "target", "applied", "warnings", "keepBlobs"), "state")
	if out.Reference != demo.ref || out.Platform != platform || out.Target != rootfs || out.Store != store || out.Name != demo.ref ||
		out.Manifest.Digest != want.manifest.String() || out.Index == nil || out.Index.Digest != demo.digest.String() ||
		out.Downloaded != want.sizes[0]+want.sizes[1] || len(out.Warnings) != 0 {
		t.Errorf("unpack --json: %s", r.stdout)
	}
	if len(out.Applied) != 2 || len(out.Layers) != 2 {
		t.Fatalf("unpack --json: %d layers applied, %d listed, want 2\n%s", len(out.Applied), len(out.Layers), r.stdout)
	}
	for i, a := range out.Applied {
		if a.DiffID != want.diffIDs[i].String() || out.Layers[i].DiffID != a.DiffID || out.Layers[i].Digest != want.layers[i].String() ||
			a.Entries == 0 || a.Files == 0 || a.Bytes == 0 {
			t.Errorf("layer %d: applied %+v, listed %+v; want diffID %s", i+1, a, out.Layers[i], want.diffIDs[i])
		}
	}

	// What layer 2 did to layer 1's files: README rewritten, junk whited
	// out, no whiteout file left behind.
	for p, body := range map[string]string{
		"usr/share/doc/demo/README": "Rewritten by layer 2.\n",
		"etc/motd":                  "built for arm64\n",
		"bin/hello":                 "#!/bin/sh\necho hello from arm64\n",
	} {
		if b, err := os.ReadFile(filepath.Join(rootfs, p)); err != nil || string(b) != body {
			t.Errorf("%s: %q %v, want %q", p, b, err, body)
		}
	}
	tree := snapshot(t, rootfs)
	mtime := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()
	if e := tree["bin/hello"]; e.Type != "file" || e.Mode != 0o755 || e.MTime != mtime || e.UID != 0 {
		t.Errorf("bin/hello: %v, want a 0755 root file of the layer's mtime", e)
	}
	if e := tree["bin/hi"]; e.Type != "symlink" || e.Link != "hello" {
		t.Errorf("bin/hi: %v, want a symlink to hello", e)
	}
	for _, p := range []string{"var/cache/junk", "var/cache/.wh.junk"} {
		if _, err := os.Lstat(filepath.Join(rootfs, p)); !os.IsNotExist(err) {
			t.Errorf("%s exists after the whiteout (%v)", p, err)
		}
	}

	// The store is not needed to rebuild: delete it first.
	if err := os.RemoveAll(store); err != nil {
		t.Fatal(err)
	}
	r = mustRun(t, env, "rebuild", "--all", "--check", rootfs)
	checkLine := regexp.MustCompile(`^layer (\d+) (sha256:[0-9a-f]{64}) ok (\d+) bytes$`)
	ls := lines(r.stdout)
	if len(ls) != 2 || r.stderr != "" {
		t.Fatalf("rebuild --all --check: stdout %q stderr %q, want one ok line per layer", r.stdout, r.stderr)
	}
	for i, l := range ls {
		m := checkLine.FindStringSubmatch(l)
		if m == nil || m[1] != strconv.Itoa(i+1) || m[2] != want.diffIDs[i].String() {
			t.Errorf("rebuild --all --check line %d: %q, want layer %d %s ok", i+1, l, i+1, want.diffIDs[i])
		}
	}
	var check struct {
		Rootfs string `json:"rootfs"`
		OK     bool   `json:"ok"`
		Layers []struct {
			Layer  int    `json:"layer"`
			DiffID string `json:"diffID"`
			Bytes  int64  `json:"bytes"`
			OK     bool   `json:"ok"`
		} `json:"layers"`
	}
	r = runJSON(t, env, &check, "rebuild", "--all", "--check", "--json", rootfs)
	if !check.OK || check.Rootfs != rootfs || len(check.Layers) != 2 {
		t.Fatalf("rebuild --all --check --json: %s", r.stdout)
	}
	for i, l := range check.Layers {
		if !l.OK || l.Layer != i+1 || l.DiffID != want.diffIDs[i].String() || l.Bytes <= 0 {
			t.Errorf("rebuild --json layer %d: %+v", i+1, l)
		}
	}

	// Each layer, by position and by diffID, to a file and to stdout:
	// the exact tar whose sha256 is the diffID.
	for i, diffID := range want.diffIDs {
		for _, sel := range []string{strconv.Itoa(i + 1), diffID.String()} {
			f := filepath.Join(work, "layer-"+strconv.Itoa(i+1)+".tar")
			os.Remove(f)
			r := mustRun(t, env, "rebuild", "--layer", sel, "-o", f, rootfs)
			b, err := os.ReadFile(f)
			if err != nil || digest.FromBytes(b) != diffID || r.stdout != "" {
				t.Errorf("rebuild --layer %s -o: %v, sha256 %s, want %s; stdout %q", sel, err, digest.FromBytes(b), diffID, r.stdout)
			}
		}
		r := mustRun(t, env, "rebuild", "--layer", strconv.Itoa(i+1), rootfs)
		if got := digest.FromBytes([]byte(r.stdout)); got != diffID {
			t.Errorf("rebuild --layer %d to stdout: sha256 %s, want %s", i+1, got, diffID)
		}
	}
	outDir := filepath.Join(work, "layers")
	mustRun(t, env, "rebuild", "--all", "-o", outDir, rootfs)
	ents, _ := os.ReadDir(outDir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
		b, _ := os.ReadFile(filepath.Join(outDir, e.Name()))
		if digest.FromBytes(b).Encoded()+".tar" != e.Name() {
			t.Errorf("rebuild --all -o: %s holds a tar hashing to %s", e.Name(), digest.FromBytes(b))
		}
	}
	if wantNames := []string{want.diffIDs[0].Encoded() + ".tar", want.diffIDs[1].Encoded() + ".tar"}; !sameSet(names, wantNames) {
		t.Errorf("rebuild --all -o wrote %v, want %v", names, wantNames)
	}

	// Layers and trees that are not there.
	for _, c := range []struct {
		args []string
		kind string
		exit int
	}{
		{[]string{"rebuild", "--json", "--layer", "3", "-o", filepath.Join(t.TempDir(), "l.tar"), rootfs}, "not_found", exitNotFound},
		{[]string{"rebuild", "--json", "--layer", "sha256:nope", "-o", filepath.Join(t.TempDir(), "l.tar"), rootfs}, "invalid_argument", exitUsage},
		// --json and a tar cannot share standard output.
		{[]string{"rebuild", "--json", "--layer", "1", rootfs}, "invalid_argument", exitUsage},
		{[]string{"rebuild", "--json", "--all", rootfs}, "invalid_argument", exitUsage},
		{[]string{"verify", "--json", t.TempDir()}, "not_found", exitNotFound},
	} {
		r := runBuilt(t, env, c.args...)
		if k, _ := exactJSONError(t, r.stdout); k != c.kind || r.code != c.exit {
			t.Errorf("%v: kind %q exit %d, want %s exit %d", c.args, k, r.code, c.kind, c.exit)
		}
	}

	// verify: clean, in both forms.
	r = mustRun(t, env, "verify", rootfs)
	if r.stdout != "" || r.stderr != "" {
		t.Errorf("verify of a clean tree: stdout %q stderr %q", r.stdout, r.stderr)
	}
	var v struct {
		Rootfs string `json:"rootfs"`
		Clean  bool   `json:"clean"`
		Drift  []struct {
			Path    string   `json:"path"`
			Kind    string   `json:"kind"`
			Changes []string `json:"changes"`
		} `json:"drift"`
	}
	r = runJSON(t, env, &v, "verify", "--json", rootfs)
	checkKeys(t, "verify --json", r.stdout, []string{"rootfs", "clean", "drift", "layers"})
	if !v.Clean || v.Rootfs != rootfs || v.Drift == nil || len(v.Drift) != 0 {
		t.Errorf("verify --json of a clean tree: %s", r.stdout)
	}

	// The file layer 2 rewrote over layer 1's, changed again by hand,
	// keeping its size and mtime: verify still names it (exit 4), and
	// layer 2 no longer rebuilds while layer 1, whose version of the file
	// was replaced, still does.
	readme := filepath.Join(rootfs, "usr/share/doc/demo/README")
	info, err := os.Stat(readme)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(readme, []byte("Rewritten by LAYER 2.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(readme, info.ModTime(), info.ModTime()); err != nil {
		t.Fatal(err)
	}
	r = runBuilt(t, env, "verify", rootfs)
	if r.code != exitVerification || len(lines(r.stdout)) != 1 || !strings.HasPrefix(r.stdout, "changed usr/share/doc/demo/README (") ||
		!strings.Contains(r.stdout, "content") || len(lines(r.stderr)) != 1 {
		t.Errorf("verify after an edit: exit %d stdout %q stderr %q; want exit 4 and one 'changed usr/share/doc/demo/README (… content …)' line", r.code, r.stdout, r.stderr)
	}
	r = runBuilt(t, env, "verify", "--json", rootfs)
	v.Drift = nil
	if err := jsonUnmarshal(r.stdout, &v); err != nil || r.code != exitVerification || v.Clean || len(v.Drift) != 1 ||
		v.Drift[0].Path != "usr/share/doc/demo/README" || v.Drift[0].Kind != "changed" || !slices.Contains(v.Drift[0].Changes, "content") {
		t.Errorf("verify --json after an edit: exit %d %v\n%s", r.code, err, r.stdout)
	}
	r = runBuilt(t, env, "rebuild", "--all", "--check", rootfs)
	ls = lines(r.stdout)
	if r.code != exitVerification || len(ls) != 2 || !checkLine.MatchString(ls[0]) ||
		!strings.HasPrefix(ls[1], "layer 2 "+want.diffIDs[1].String()+" FAILED ") || !strings.Contains(ls[1], "usr/share/doc/demo/README") {
		t.Errorf("rebuild --all --check after an edit: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	f := filepath.Join(work, "bad.tar")
	if r := runBuilt(t, env, "rebuild", "--layer", "2", "-o", f, rootfs); r.code != exitVerification {
		t.Errorf("rebuild --layer 2 of an edited tree: exit %d, want 4", r.code)
	}
	if _, err := os.Stat(f); !os.IsNotExist(err) {
		t.Errorf("a failed rebuild left %s (%v)", f, err)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
