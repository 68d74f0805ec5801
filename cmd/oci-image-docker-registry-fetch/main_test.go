package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/ocifetch/ocifetch/errdefs"
)

const layout = "oci:../../testdata/layouts/multiarch:latest"

// cli runs the CLI in-process and returns its exit code and output.
func cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// jsonError parses the {"error":{...}} object a failing --json command prints.
func jsonError(t *testing.T, stdout string) (kind, message string) {
	t.Helper()
	var v struct {
		Error struct{ Kind, Message string }
	}
	if err := json.Unmarshal([]byte(stdout), &v); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, stdout)
	}
	if v.Error.Kind == "" || v.Error.Message == "" || strings.Contains(v.Error.Message, "\n") {
		t.Fatalf("bad error object: %s", stdout)
	}
	return v.Error.Kind, v.Error.Message
}

func TestResolveJSON(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := cli(t, "resolve", "--platform", "linux/arm64", "--json", layout)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var out resolveOutput
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatal(err)
	}
	if out.Platform != "linux/arm64/v8" || out.Index == nil || len(out.Layers) != 2 || len(out.Platforms) != 3 {
		t.Fatalf("unexpected output: %s", stdout)
	}
	// The manifest printed is the index's arm64/v8 entry.
	var idx struct {
		Manifests []struct {
			Digest   string
			Platform struct{ Architecture, Variant string }
		}
	}
	blob := filepath.Join("../../testdata/layouts/multiarch/blobs/sha256", strings.TrimPrefix(out.Index.Digest, "sha256:"))
	data, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &idx); err != nil {
		t.Fatal(err)
	}
	want := ""
	for _, m := range idx.Manifests {
		if m.Platform.Architecture == "arm64" && m.Platform.Variant == "v8" {
			want = m.Digest
		}
	}
	if want == "" || out.Manifest.Digest != want {
		t.Fatalf("manifest %s, want the arm64/v8 entry %s", out.Manifest.Digest, want)
	}
	for _, l := range out.Layers {
		if !strings.HasPrefix(l.Digest, "sha256:") || !strings.HasPrefix(l.DiffID, "sha256:") || l.Size <= 0 || l.MediaType == "" {
			t.Fatalf("bad layer %+v", l)
		}
	}

	// Flags after the positional argument work too.
	code, stdout2, _ := cli(t, "resolve", layout, "--json", "--platform=linux/arm64/v8")
	if code != 0 || stdout2 != stdout {
		t.Fatalf("flags after REF: exit %d, output differs:\n%s", code, stdout2)
	}
}

func TestResolveHuman(t *testing.T) {
	t.Parallel()
	code, stdout, _ := cli(t, "resolve", "--platform", "linux/amd64", layout)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"index", "manifest", "config", "layer 1", "layer 2", "diffID", "linux/amd64"} {
		if !strings.Contains(stdout, want) {
			t.Fatalf("output lacks %q:\n%s", want, stdout)
		}
	}
}

func TestResolveErrors(t *testing.T) {
	t.Parallel()
	broken := t.TempDir()
	copyTree(t, "../../testdata/layouts/multiarch", broken)
	// Corrupt every config blob so that whichever platform is picked fails.
	entries, _ := os.ReadDir(filepath.Join(broken, "blobs/sha256"))
	for _, e := range entries {
		p := filepath.Join(broken, "blobs/sha256", e.Name())
		b, _ := os.ReadFile(p)
		if bytes.Contains(b, []byte(`"rootfs"`)) {
			b[len(b)-2] ^= 1
			os.WriteFile(p, b, 0o644)
		}
	}
	tests := []struct {
		name string
		args []string
		kind errdefs.Kind
		exit int
	}{
		{"bad platform", []string{"--platform", "linux", layout}, errdefs.ErrInvalidArgument, exitUsage},
		{"platform with os version", []string{"--platform", "linux/amd64:10.0", layout}, errdefs.ErrInvalidArgument, exitUsage},
		{"platform list", []string{"--platform", "linux/arm64,linux/amd64", layout}, errdefs.ErrInvalidArgument, exitUsage},
		{"missing tag", []string{"oci:../../testdata/layouts/multiarch:nope"}, errdefs.ErrNotFound, exitNotFound},
		{"no such platform", []string{"--platform", "linux/s390x", layout}, errdefs.ErrPlatformNotFound, exitNotFound},
		{"corrupt blob", []string{"--platform", "linux/amd64", "oci:" + broken + ":latest"}, errdefs.ErrDigestMismatch, exitVerification},
		{"bad reference", []string{"Not/A/Valid:Ref:x"}, errdefs.ErrInvalidArgument, exitUsage},
		{"too many arguments", []string{layout, layout}, errdefs.ErrInvalidArgument, exitUsage},
		{"unknown flag", []string{"--frobnicate", layout}, errdefs.ErrInvalidArgument, exitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"resolve", "--json"}, tt.args...)
			code, stdout, _ := cli(t, args...)
			kind, _ := jsonError(t, stdout)
			if kind != string(tt.kind) || code != tt.exit {
				t.Fatalf("kind %q exit %d, want %q exit %d; stdout %s", kind, code, tt.kind, tt.exit, stdout)
			}
			// Without --json: one line on stderr, nothing on stdout.
			plain := []string{"resolve"}
			for _, a := range args[1:] {
				if a != "--json" {
					plain = append(plain, a)
				}
			}
			code, stdout, stderr := cli(t, plain...)
			if code != tt.exit || stdout != "" || !strings.HasPrefix(stderr, prog+" resolve: ") {
				t.Fatalf("plain: exit %d stdout %q stderr %q", code, stdout, stderr)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	code, stdout, _ := cli(t)
	if code != 0 || !strings.Contains(stdout, "resolve") || !strings.Contains(stdout, "Exit status") {
		t.Fatalf("overview: exit %d\n%s", code, stdout)
	}
	for _, c := range commands() {
		code, stdout, _ := cli(t, "help", c.name)
		if code != 0 || !strings.Contains(stdout, "Usage: "+prog+" "+c.name) || !strings.Contains(stdout, "Example:") {
			t.Fatalf("help %s: exit %d\n%s", c.name, code, stdout)
		}
		// Flags come before positional arguments in every usage line:
		// outside brackets, once a positional word appears, no flag follows.
		if !flagsFirst(c.usage) {
			t.Fatalf("usage of %s has a flag after a positional argument: %s", c.name, c.usage)
		}
	}
	if code, _, _ := cli(t, "frobnicate"); code != exitUsage {
		t.Fatalf("unknown command exit %d", code)
	}
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.Walk(from, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if info.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// flagsFirst reports whether, in a usage line, every flag (bracketed or
// not) comes before the first positional argument.
func flagsFirst(usage string) bool {
	depth, seenPositional := 0, false
	for _, word := range strings.Fields(usage)[1:] {
		startDepth := depth
		depth += strings.Count(word, "[") - strings.Count(word, "]")
		isFlag := strings.HasPrefix(word, "[-") || strings.HasPrefix(word, "-")
		switch {
		case startDepth > 0:
			// inside a bracketed flag: its argument
		case isFlag && seenPositional:
			return false
		case !isFlag && word != "...":
			seenPositional = true
		}
	}
	return true
}

func TestFlagsFirst(t *testing.T) {
	t.Parallel()
	good := []string{"resolve [--json] REF", "x [--a B]... [--c] SRC DST", "rebuild [--store DIR] --layer N ROOTFS"}
	bad := []string{"resolve REF [--json]", "x SRC --flag DST"}
	for _, u := range good {
		if !flagsFirst(u) {
			t.Errorf("flagsFirst(%q) = false", u)
		}
	}
	for _, u := range bad {
		if flagsFirst(u) {
			t.Errorf("flagsFirst(%q) = true", u)
		}
	}
}

func TestInspectJSON(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := cli(t, "inspect", "--json", "--platform", "linux/arm/v7", layout)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var out inspectOutput
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Available) != 3 || out.Platform != "linux/arm/v7" {
		t.Fatalf("available %v platform %s", out.Available, out.Platform)
	}
	chosen := 0
	for _, a := range out.Available {
		if a.Digest == out.Manifest.Digest {
			chosen++
			if a.Platform != "linux/arm/v7" {
				t.Fatalf("chosen entry is %s", a.Platform)
			}
		}
	}
	var sum int64
	for _, l := range out.Layers {
		sum += l.Size
	}
	if chosen != 1 || out.CompressedSize != sum || out.ConfigSummary.User != "demo" ||
		len(out.ConfigSummary.Cmd) != 1 || out.ConfigSummary.Labels["org.opencontainers.image.title"] != "ocifetch demo" {
		t.Fatalf("unexpected inspect output: %s", stdout)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	code, stdout, _ := cli(t, "validate", layout)
	if code != 0 || !strings.Contains(stdout, "valid") {
		t.Fatalf("good layout: exit %d\n%s", code, stdout)
	}
	code, stdout, _ = cli(t, "validate", "--json", "oci:../../testdata/validate/diff_ids:bad")
	var out struct {
		Valid    bool
		Problems []struct{ Where, Rule, Message string }
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatal(err)
	}
	if code != exitVerification || out.Valid || len(out.Problems) != 1 || out.Problems[0].Rule != "diff_ids" {
		t.Fatalf("bad layout: exit %d\n%s", code, stdout)
	}
	code, stdout, _ = cli(t, "validate", "oci:../../testdata/validate/platform:bad")
	if code != exitVerification || !strings.Contains(stdout, ": platform: ") {
		t.Fatalf("bad layout, plain: exit %d\n%s", code, stdout)
	}
}

func TestDemo(t *testing.T) {
	t.Parallel()
	keep := t.TempDir()
	code, stdout, stderr := cli(t, "demo", "--platform", "linux/arm64", "--keep", keep)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"1. serving", "2. resolved for linux/arm64/v8", "3. pulled", "built for arm64", "4. with the store out of reach", "sha256 equals the diffID", "done:"} {
		if !strings.Contains(stdout, want) {
			t.Fatalf("demo output lacks %q:\n%s", want, stdout)
		}
	}
	motd, err := os.ReadFile(filepath.Join(keep, "rootfs/etc/motd"))
	if err != nil || string(motd) != "built for arm64\n" {
		t.Fatalf("kept rootfs: %q %v", motd, err)
	}
	if strings.Count(stdout, "sha256 equals the diffID") != 2 {
		t.Fatalf("not every layer was rebuilt:\n%s", stdout)
	}
}

// TestVersion: "version" and "--version" name the program, its version
// and the Go release; --json gives the same as one object.
func TestVersion(t *testing.T) {
	t.Parallel()
	code, out, errOut := cli(t, "version")
	if code != 0 || errOut != "" || !strings.HasPrefix(out, prog+" ") || !strings.Contains(out, runtime.Version()) {
		t.Fatalf("version: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code, out2, _ := cli(t, "--version"); code != 0 || out2 != out {
		t.Fatalf("--version: exit %d, %q; want what version prints", code, out2)
	}
	code, out, _ = cli(t, "version", "--json")
	var v versionOutput
	if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil || v.Version == "" || v.Go != runtime.Version() || v.Platform != runtime.GOOS+"/"+runtime.GOARCH {
		t.Fatalf("version --json: exit %d, %v, %+v", code, err, v)
	}
	if code, _, _ := cli(t, "version", "extra"); code != exitUsage {
		t.Fatalf("version with an argument: exit %d, want 2", code)
	}
}

// TestJSONNotHTMLEscaped: JSON output is for programs, so '>', '<' and
// '&' stay as they are ("validate --json" printed \u003e).
func TestJSONNotHTMLEscaped(t *testing.T) {
	t.Parallel()
	_, stdout, _ := cli(t, "resolve", "--json", "--platform", "linux/a>b&c", "oci:../../testdata/layouts/multiarch")
	if strings.Contains(stdout, `\u003e`) || strings.Contains(stdout, `\u0026`) || !strings.Contains(stdout, "a>b&c") {
		t.Fatalf("stdout %q: want the platform quoted as typed", stdout)
	}
}
