package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/testutil/testimage"
	"github.com/ocifetch/ocifetch/internal/testutil/testregistry"
)

// Every error kind the CLI can reach, provoked for real against registry
// processes and reported by the binary: with --json, exactly one
// {"error":{"kind","message"}} object on stdout (one-line message) and
// nothing on stderr; without, nothing on stdout and one line on stderr
// carrying the same message; the exit status of docs/cli.md either way.
func TestCLIE2EErrorKinds(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	const user, pass = "e2e", "s3cret"
	authReg := testregistry.Start(t, testregistry.WithBasicAuth(user, pass))
	downReg := testregistry.Start(t)
	down := downReg.Host
	downReg.Stop()

	demo := pushDemo(t, reg.Host+"/e2e/demo:v1")
	amd := demo.facts(t, "linux/amd64")
	repo := reg.Host + "/e2e/bad"
	work := t.TempDir()

	// digest_mismatch: a layer of an image of its own (blobs are shared
	// across repositories) rewritten in the registry's storage, same size.
	corrupt := testimage.Image(t, 1, "linux", "amd64", "")
	testimage.PushImage(t, reg.Host+"/e2e/corrupt:v1", corrupt)
	cl, _ := corrupt.Layers()
	cd, _ := cl[0].Digest()
	blobPath := reg.BlobDataPath(digest.Digest(cd.String()))
	b, err := os.ReadFile(blobPath)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(blobPath, b, 0o644); err != nil {
		t.Fatal(err)
	}

	gz := func(files ...tarFile) []byte { return gzipBytes(t, makeTar(t, files...)) }
	// size_mismatch: a layer descriptor one byte short of the blob.
	sizeLayer := gz(tarFile{name: "size", body: "size mismatch"})
	pushRawImage(t, repo, "size", "", []rawLayer{{data: sizeLayer, mediaType: ocispec.MediaTypeImageLayerGzip, size: int64(len(sizeLayer)) - 1}}, nil)
	// manifest_invalid: two layers, one diffID in the config.
	pushRawImage(t, repo, "diffids", "", []rawLayer{
		{data: gz(tarFile{name: "one", body: "1"}), mediaType: ocispec.MediaTypeImageLayerGzip},
		{data: gz(tarFile{name: "two", body: "2"}), mediaType: ocispec.MediaTypeImageLayerGzip, none: true},
	}, nil)
	// unsupported_media_type: an artifact (config media type of its own).
	pushRawImage(t, repo, "artifact", "application/vnd.example.artifact.config.v1+json",
		[]rawLayer{{data: gz(tarFile{name: "x", body: "x"}), mediaType: ocispec.MediaTypeImageLayerGzip}}, nil)
	// too_large: an index entry claiming its manifest is 5 MiB (in the
	// demo's repository, where the registry checks the manifest exists).
	pushRawIndex(t, reg.Host+"/e2e/demo:huge", ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: amd.manifest, Size: 5 << 20,
		Platform: &ocispec.Platform{OS: "linux", Architecture: "amd64"}})
	// layer_invalid: the media type says gzip, the bytes are a plain tar.
	pushRawImage(t, repo, "notgzip", "", []rawLayer{{data: makeTar(t, tarFile{name: "plain", body: "not gzip"}), mediaType: ocispec.MediaTypeImageLayerGzip}}, nil)
	// path_escape: an entry "../evil".
	pushRawImage(t, repo, "escape", "", []rawLayer{{data: gz(tarFile{name: "ok", body: "fine"}, tarFile{name: "../evil", body: "escaped"}), mediaType: ocispec.MediaTypeImageLayerGzip}}, nil)

	// A layout with no tag "nope".
	layoutDir, err := filepath.Abs("../../testdata/layouts/multiarch")
	if err != nil {
		t.Fatal(err)
	}

	// A target that is not empty.
	full := filepath.Join(work, "full")
	if err := os.MkdirAll(full, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(full, "precious"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}

	// A target whose parent is checked for anything the escape left.
	escapeParent := filepath.Join(work, "escape")

	tests := []struct {
		name string
		args []string // the command and its arguments, without --json
		kind errdefs.Kind
		exit int
		// in is a string the message must hold.
		in string
		// usage marks the errors of how the command was called, which
		// print a usage line after the error line.
		usage bool
	}{
		{"bad flag", []string{"unpack", "--frobnicate", demo.ref, filepath.Join(work, "x")}, errdefs.ErrInvalidArgument, exitUsage, "frobnicate", true},
		{"missing argument", []string{"pull"}, errdefs.ErrInvalidArgument, exitUsage, "", true},
		{"bad platform", []string{"pull", "--platform", "linux", demo.ref}, errdefs.ErrInvalidArgument, exitUsage, "linux", false},
		{"bad reference", []string{"resolve", "Not/A/Valid:Ref:x"}, errdefs.ErrInvalidArgument, exitUsage, "Not/A/Valid", false},
		{"bad --jobs", []string{"unpack", "--jobs", "0", demo.ref, filepath.Join(work, "jobs")}, errdefs.ErrInvalidArgument, exitUsage, "jobs", true},
		{"target not empty", []string{"unpack", "--store", t.TempDir(), demo.ref, full}, errdefs.ErrInvalidArgument, exitUsage, full, false},
		{"no such tag", []string{"resolve", reg.Host + "/e2e/demo:nope"}, errdefs.ErrNotFound, exitNotFound, "nope", false},
		{"no such repository", []string{"pull", "--store", t.TempDir(), reg.Host + "/e2e/missing:v1"}, errdefs.ErrNotFound, exitNotFound, "e2e/missing", false},
		{"not a layout", []string{"unpack", "oci:" + t.TempDir() + ":v1", filepath.Join(work, "nolayout")}, errdefs.ErrNotFound, exitNotFound, "not an OCI image layout", false},
		{"no such layout tag", []string{"resolve", "oci:" + layoutDir + ":nope"}, errdefs.ErrNotFound, exitNotFound, "nope", false},
		{"unauthorized", []string{"resolve", authReg.Host + "/e2e/private:v1"}, errdefs.ErrUnauthorized, exitNotFound, authReg.Host, false},
		{"wrong credentials", []string{"inspect", "--authfile", writeAuthfile(t, user, "wrong", authReg.Host), authReg.Host + "/e2e/private:v1"}, errdefs.ErrUnauthorized, exitNotFound, authReg.Host, false},
		{"platform not found", []string{"unpack", "--platform", "linux/s390x", demo.ref, filepath.Join(work, "s390x")}, errdefs.ErrPlatformNotFound, exitNotFound,
			"available: linux/amd64, linux/arm64/v8, linux/arm/v7", false},
		{"single-platform image, other platform", []string{"resolve", "--platform", "linux/arm64", reg.Host + "/e2e/demo@" + amd.manifest.String()},
			errdefs.ErrPlatformNotFound, exitNotFound, "linux/amd64", false},
		{"digest mismatch", []string{"pull", "--store", t.TempDir(), reg.Host + "/e2e/corrupt:v1"}, errdefs.ErrDigestMismatch, exitVerification, cd.String(), false},
		{"size mismatch", []string{"pull", "--store", t.TempDir(), repo + ":size"}, errdefs.ErrSizeMismatch, exitVerification, digest.FromBytes(sizeLayer).String(), false},
		{"manifest invalid", []string{"resolve", repo + ":diffids"}, errdefs.ErrManifestInvalid, exitVerification, "diffID", false},
		{"artifact", []string{"resolve", repo + ":artifact"}, errdefs.ErrUnsupportedMediaType, exitVerification, "application/vnd.example.artifact.config.v1+json", false},
		{"too large", []string{"resolve", "--platform", "linux/amd64", reg.Host + "/e2e/demo:huge"}, errdefs.ErrTooLarge, exitVerification, amd.manifest.String(), false},
		{"layer not gzip", []string{"unpack", "--store", t.TempDir(), repo + ":notgzip", filepath.Join(work, "notgzip")}, errdefs.ErrLayerInvalid, exitVerification, "gzip", false},
		{"path escape", []string{"unpack", "--store", t.TempDir(), repo + ":escape", filepath.Join(escapeParent, "rootfs")}, errdefs.ErrPathEscape, errdefs.ExitUnsafe, "evil", false},
		{"network", []string{"resolve", down + "/e2e/demo:v1"}, errdefs.ErrNetwork, errdefs.ExitNetwork, down, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := cliEnv(t)
			args := append([]string{tt.args[0], "--json"}, tt.args[1:]...)
			r := runBuilt(t, env, args...)
			kind, msg := exactJSONError(t, r.stdout)
			if kind != string(tt.kind) || r.code != tt.exit {
				t.Errorf("%v: kind %q exit %d, want %q exit %d\nstdout %s\nstderr %s", args, kind, r.code, tt.kind, tt.exit, r.stdout, r.stderr)
			}
			if !strings.Contains(msg, tt.in) {
				t.Errorf("%v: message %q does not mention %q", args, msg, tt.in)
			}
			if r.stderr != "" {
				t.Errorf("%v: stderr %q; with --json the error is only on stdout", args, r.stderr)
			}
			if tt.name == "target not empty" {
				if b, err := os.ReadFile(filepath.Join(full, "precious")); err != nil || string(b) != "mine" {
					t.Errorf("unpack into a non-empty directory touched its file: %q %v", b, err)
				}
			}
			if tt.name == "path escape" {
				checkNothingEscaped(t, escapeParent)
			}
			if tt.name == "bad flag" {
				// --json given after the bad flag is honoured too.
				r := runBuilt(t, env, tt.args[0], "--frobnicate", "--json", demo.ref, filepath.Join(work, "x"))
				if k, _ := exactJSONError(t, r.stdout); k != string(tt.kind) || r.code != tt.exit {
					t.Errorf("--json after a bad flag: kind %q exit %d", k, r.code)
				}
			}

			// The same without --json, into fresh targets (but the same
			// non-empty one).
			plain := append([]string(nil), tt.args...)
			for i, a := range plain {
				if strings.HasPrefix(a, work) && a != full {
					plain[i] = a + "-plain"
				}
			}
			r = runBuilt(t, env, plain...)
			if r.code != tt.exit || r.stdout != "" {
				t.Errorf("%v: exit %d stdout %q, want exit %d and nothing on stdout", plain, r.code, r.stdout, tt.exit)
			}
			// Progress lines (pull, unpack: documented to go to stderr)
			// may come first; then the error, on one line.
			var ls []string
			for _, l := range lines(r.stderr) {
				if len(ls) == 0 && (progressLine.MatchString(l) || progressExtra.MatchString(l)) {
					continue
				}
				ls = append(ls, l)
			}
			if len(ls) == 0 || ls[0] != prog+" "+tt.args[0]+": "+msg {
				t.Errorf("%v: stderr %q, want (after progress lines) %q", plain, r.stderr, prog+" "+tt.args[0]+": "+msg)
			}
			if len(ls) != 1 {
				t.Errorf("%v: %d lines on stderr after the progress, want one:\n%s", plain, len(ls), r.stderr)
			}
		})
	}
}

// exactJSONError checks that stdout is exactly one JSON object
// {"error":{"kind":...,"message":...}} with nothing else in it, on one
// line, and returns the kind and message.
func exactJSONError(t *testing.T, stdout string) (kind, message string) {
	t.Helper()
	if len(lines(stdout)) != 1 {
		t.Errorf("the JSON error is not one line: %q", stdout)
	}
	var v map[string]map[string]any
	if err := jsonUnmarshal(stdout, &v); err != nil {
		t.Fatalf("stdout is not one JSON error object: %v\n%s", err, stdout)
	}
	e, ok := v["error"]
	if !ok || len(v) != 1 || len(e) != 2 {
		t.Fatalf("stdout is not {\"error\":{\"kind\",\"message\"}}: %s", stdout)
	}
	k, _ := e["kind"].(string)
	m, _ := e["message"].(string)
	if k == "" || m == "" || strings.ContainsAny(m, "\r\n") {
		t.Fatalf("bad error object: %s", stdout)
	}
	// The kind is one of docs/cli.md's table (internal aside: nothing
	// here should be an unclassified failure).
	if k == string(errdefs.ErrInternal) || errdefs.ExitCode(errdefs.Kind(k)) == errdefs.ExitFailure && !slices.Contains(errdefs.Kinds(), errdefs.Kind(k)) {
		t.Errorf("kind %q is not one docs/cli.md lists: %s", k, stdout)
	}
	return k, m
}

// checkNothingEscaped checks that parent, the parent of an unpack target
// whose layer held "../evil", holds nothing but the target and its state.
func checkNothingEscaped(t *testing.T, parent string) {
	t.Helper()
	for _, p := range []string{filepath.Join(parent, "evil"), filepath.Join(filepath.Dir(parent), "evil")} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("the layer's ../evil was created at %s (%v)", p, err)
		}
	}
	ents, _ := os.ReadDir(parent)
	for _, e := range ents {
		if e.Name() != "rootfs" && e.Name() != ".rootfs.ocifetch" {
			t.Errorf("%s appeared beside the target", filepath.Join(parent, e.Name()))
		}
	}
	filepath.WalkDir(filepath.Join(parent, "rootfs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == "evil" {
			t.Logf("note: %s is inside the target", p)
		}
		return nil
	})
}
