package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ocifetch/ocifetch/internal/testutil/testimage"
	"github.com/ocifetch/ocifetch/internal/testutil/testregistry"
)

// docJSON reads docs/cli.md's "JSON output" examples: each fenced json
// block after a "<!-- json: NAME -->" marker, parsed.
func docJSON(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)<!-- json: ([a-z-]+) -->\\s*```json\\n(.*?)```")
	out := map[string]any{}
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		var v any
		if err := json.Unmarshal([]byte(m[2]), &v); err != nil {
			t.Fatalf("docs/cli.md: the %s example is not JSON: %v\n%s", m[1], err, m[2])
		}
		out[m[1]] = v
	}
	return out
}

// The keys whose values are maps of the image's own keys, and the keys
// docs/cli.md marks optional (present only when they apply).
var (
	dataMaps     = map[string]bool{"labels": true, "annotations": true}
	optionalKeys = map[string]bool{
		"trust": true, "signatureError": true, "commit": true, "modified": true, "kind": true, "error": true, "changes": true,
		"created": true, "author": true, "user": true, "entrypoint": true, "cmd": true, "env": true, "workingDir": true,
		"exposedPorts": true, "volumes": true, "stopSignal": true, "labels": true,
		"document": true, "identity": true, "key": true, "keyHint": true, "certificate": true, "problem": true,
		"recipe": true, "reason": true, "detail": true,
	}
	// optionalPaths are optional only where they are listed.
	optionalPaths = map[string]bool{"inspect.reproducible[].rootfs": true}
	// pathKeys name files and directories of this machine: absolute.
	pathKeys  = map[string]bool{"store": true, "target": true, "state": true, "rootfs": true, "bundle": true, "output": true, "policy": true}
	camelCase = regexp.MustCompile(`^[a-z][a-zA-Z0-9]*$`)
)

// matchDoc holds got, an output, to doc, its documented example, at path:
// every key of got is documented and camelCase, every documented key that
// is not optional is there, arrays' elements are held to the example's
// first element, and path fields are absolute.
func matchDoc(t *testing.T, path string, doc, got any) {
	t.Helper()
	switch d := doc.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			if got != nil {
				t.Errorf("%s: %T, documented as an object", path, got)
			}
			return
		}
		for k, v := range g {
			if !camelCase.MatchString(k) {
				t.Errorf("%s.%s: key not camelCase", path, k)
			}
			dv, ok := d[k]
			if !ok {
				t.Errorf("%s.%s: key not documented in docs/cli.md", path, k)
				continue
			}
			if pathKeys[k] || (k == "config" && path == "bundle") {
				if s, ok := v.(string); ok && !filepath.IsAbs(s) {
					t.Errorf("%s.%s: %q is not an absolute path", path, k, s)
				}
			}
			if !dataMaps[k] {
				matchDoc(t, path+"."+k, dv, v)
			}
		}
		for k := range d {
			if _, ok := g[k]; !ok && !optionalKeys[k] && !optionalPaths[path+"."+k] {
				t.Errorf("%s.%s: documented, missing from the output", path, k)
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok {
			t.Errorf("%s: %T, documented as a list (never null)", path, got)
			return
		}
		if len(d) > 0 {
			for _, e := range g {
				matchDoc(t, path+"[]", d[0], e)
			}
		}
	}
}

// runIn runs the binary in dir (relative paths in its arguments are
// relative to dir).
func runIn(t *testing.T, env []string, dir string, args ...string) cliRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, builtCLI(t), args...)
	cmd.Env, cmd.Dir = env, dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := cliRun{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return r
}

// Every command run with --json prints one JSON object on stdout, nothing
// else, whose keys are the ones docs/cli.md documents for it: camelCase,
// paths absolute although the command was given relative ones; and
// --json never sends a tar to stdout.
func TestCLIE2EJSONEverywhere(t *testing.T) {
	t.Parallel()
	docs := docJSON(t)
	reg := testregistry.Shared(t)
	demo := pushDemo(t, reg.Host+"/e2e/json:v1")
	idx, _, _ := testimage.BuildxIndex(t, testimage.Platform{OS: "linux", Arch: "amd64"}, testimage.Platform{OS: "linux", Arch: "arm64"})
	buildx := reg.Host + "/e2e/json-buildx:v1"
	testimage.PushIndex(t, buildx, idx)
	env := cliEnv(t)
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.json")
	if err := os.WriteFile(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}

	runs := []struct {
		doc  string
		args []string
		code int
		edit func() // run before the command
	}{
		{"resolve", []string{"resolve", "--policy", "policy.json", demo.ref}, 0, nil},
		{"inspect", []string{"inspect", "--policy", "policy.json", buildx}, 0, nil},
		{"pull", []string{"pull", "--store", "store", "--policy", "policy.json", demo.ref}, 0, nil},
		{"pull-all", []string{"pull", "--store", "store", "--platform", "all", "--insecure-policy", buildx}, 0, nil},
		{"unpack", []string{"unpack", "--store", "store", "--state", "state", "--insecure-policy", demo.ref, "rootfs"}, 0, nil},
		{"bundle", []string{"bundle", "--store", "store", "--insecure-policy", demo.ref, "bundle"}, 0, nil},
		{"rebuild-all", []string{"rebuild", "--state", "state", "--all", "--check", "rootfs"}, 0, nil},
		{"rebuild-layer", []string{"rebuild", "--state", "state", "--layer", "1", "-o", "layer1.tar", "rootfs"}, 0, nil},
		{"verify", []string{"verify", "--state", "state", "rootfs"}, exitVerification, func() {
			os.WriteFile(filepath.Join(dir, "rootfs", "etc", "motd"), []byte("changed\n"), 0o644)
		}},
		{"images", []string{"images", "--store", "store"}, 0, nil},
		{"validate", []string{"validate", buildx}, 0, nil},
		{"version", []string{"version"}, 0, nil},
		{"rm", []string{"rm", "--store", "store", buildx}, 0, nil},
		{"gc", []string{"gc", "--store", "store"}, 0, nil},
		{"error", []string{"resolve", reg.Host + "/e2e/json:nope"}, exitNotFound, nil},
	}
	seen := map[string]bool{}
	for _, r := range runs {
		if r.edit != nil {
			r.edit()
		}
		args := append([]string{r.args[0], "--json"}, r.args[1:]...)
		res := runIn(t, env, dir, args...)
		if res.code != r.code {
			t.Errorf("%v: exit %d, want %d\nstdout %s\nstderr %s", args, res.code, r.code, res.stdout, res.stderr)
			continue
		}
		if strings.Contains(res.stderr, "debug:") || (r.doc != "verify" && r.doc != "pull-all" && r.doc != "unpack" && r.doc != "bundle" && res.stderr != "") {
			t.Errorf("%v wrote to stderr: %q", args, res.stderr)
		}
		var got any
		if err := jsonUnmarshal(res.stdout, &got); err != nil {
			t.Errorf("%v: stdout is not one JSON value: %v\n%q", args, err, res.stdout)
			continue
		}
		doc, ok := docs[r.doc]
		if !ok {
			t.Errorf("docs/cli.md has no JSON example for %s", r.doc)
			continue
		}
		seen[r.doc] = true
		if strings.Contains(res.stdout, `\u003c`) || strings.Contains(res.stdout, `\u003e`) || strings.Contains(res.stdout, `\u0026`) {
			t.Errorf("%v: HTML-escaped output", args)
		}
		matchDoc(t, r.doc, doc, got)
	}
	var missing []string
	for name := range docs {
		if !seen[name] {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("documented examples no run checked: %v", missing)
	}

	// A tar never goes to stdout with --json: rebuild --layer N --json
	// without -o is a usage error that writes nothing but the error.
	res := runIn(t, env, dir, "rebuild", "--json", "--state", "state", "--layer", "1", "rootfs")
	if k, _ := exactJSONError(t, res.stdout); res.code != exitUsage || k != "invalid_argument" {
		t.Errorf("rebuild --layer 1 --json without -o: exit %d, stdout %q", res.code, res.stdout)
	}
	if res = runIn(t, env, dir, "rebuild", "--json", "--state", "state", "--layer", "1", "-o", "-", "rootfs"); res.code != exitUsage {
		t.Errorf("rebuild --layer 1 --json -o -: exit %d", res.code)
	}
}

// rebuild --compressed --all --json names its rootfs by an absolute path,
// as every other command's JSON does, although it was given a relative
// one.
func TestCLIE2ERebuildCompressedJSONAbsRootfs(t *testing.T) {
	t.Parallel()
	demo, env := sharedDemo(t, "/e2e/json-compressed:v1")
	dir := t.TempDir()
	if r := runIn(t, env, dir, "unpack", "--quiet", "--store", "store", "--insecure-policy", demo.ref, "rootfs"); r.code != 0 {
		t.Fatalf("unpack: exit %d\n%s", r.code, r.stderr)
	}
	r := runIn(t, env, dir, "rebuild", "--json", "--compressed", "--all", "--check", "rootfs")
	var got struct {
		Rootfs string `json:"rootfs"`
		OK     bool   `json:"ok"`
	}
	if err := jsonUnmarshal(r.stdout, &got); err != nil || r.code != 0 || !got.OK {
		t.Fatalf("rebuild --compressed --all --check --json: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	if want := filepath.Join(dir, "rootfs"); got.Rootfs != want {
		t.Errorf("rootfs is %q, want %q", got.Rootfs, want)
	}
}
