package main

import (
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ocifetch/ocifetch/internal/testutil/hostile"
	"github.com/ocifetch/ocifetch/internal/testutil/testimage"
)

// debugRequest is one request line of -v/--debug.
var debugRequest = regexp.MustCompile(`^debug: (GET|HEAD) (\S+) (\d{3}) [A-Za-z ]+, headers \S+, \d+(?:\.\d)? (?:B|[KMGT]iB) in \S+ from (\S+)`)

// -v/--debug: every command that talks to a registry or applies layers
// prints, on stderr, one line per HTTP request (method, URL without its
// query, status, time, bytes, the address that answered) and the time
// each step took (resolve, each blob, each layer applied); a blob behind
// a redirect whose URL carries a token shows both hops and never the
// token. Without the flag, nothing of it.
func TestCLIE2EDebug(t *testing.T) {
	t.Parallel()
	reg := hostile.New(t)
	img := testimage.Image(t, 2, "linux", "amd64", "")
	ref := reg.PutImage(t, "app", "v1", img)
	layers, _ := img.Layers()
	l1, _ := layers[0].Digest()
	cfg, _ := img.ConfigName()
	md, _ := img.Digest()
	reg.Intercept(func(w http.ResponseWriter, r *http.Request, q hostile.Request) bool {
		if q.Kind == hostile.Blob && q.Ref == l1.String() && r.URL.Query().Get("token") == "" {
			http.Redirect(w, r, r.URL.Path+"?token=s3cret", http.StatusTemporaryRedirect)
			return true
		}
		return false
	})
	env := cliEnv(t)
	work := t.TempDir()

	r := mustRun(t, env, "unpack", "-v", "--insecure-policy", "--store", filepath.Join(work, "store"), ref, filepath.Join(work, "rootfs"))
	if strings.Contains(r.stderr, "s3cret") {
		t.Errorf("the token of a redirect reached the output:\n%s", r.stderr)
	}
	seen := map[string]string{}
	for _, l := range lines(r.stderr) {
		if m := debugRequest.FindStringSubmatch(l); m != nil {
			seen[m[1]+" "+strings.TrimPrefix(m[2], reg.URL)+" "+m[3]] = m[4]
		}
	}
	for _, want := range []string{
		"GET /v2/ 200",
		"HEAD /v2/app/manifests/v1 200",
		"GET /v2/app/manifests/" + md.String() + " 200",
		"GET /v2/app/blobs/" + cfg.String() + " 200",
		"GET /v2/app/blobs/" + l1.String() + " 307",
		"GET /v2/app/blobs/" + l1.String() + " 200",
	} {
		if from, ok := seen[want]; !ok || from != reg.Host {
			t.Errorf("no debug line for %q answered by %s (%q); stderr:\n%s", want, reg.Host, from, r.stderr)
		}
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^debug: resolved ` + regexp.QuoteMeta(ref) + ` to ` + md.String() + ` in \S+$`),
		regexp.MustCompile(`(?m)^debug: blob ` + cfg.String() + ` done: \S+ B in \S+$`),
		regexp.MustCompile(`(?m)^debug: layer 1 blob ` + l1.String() + ` done: \S+ (B|KiB) in \S+$`),
		regexp.MustCompile(`(?m)^debug: layer 1/2 applied \(sha256:[0-9a-f]{64}\): \d+ entries, \S+ (B|KiB) in \S+$`),
		regexp.MustCompile(`(?m)^debug: layer 2/2 applied \(sha256:[0-9a-f]{64}\): \d+ entries, \S+ (B|KiB) in \S+$`),
	} {
		if !want.MatchString(r.stderr) {
			t.Errorf("no line matching %s in:\n%s", want, r.stderr)
		}
	}

	// Every command that talks to a registry takes it, also with --json
	// (stdout stays one JSON object); without it, no debug line.
	for _, args := range [][]string{
		{"resolve", "--insecure-policy", ref},
		{"inspect", "--insecure-policy", ref},
		{"pull", "--insecure-policy", "--store", filepath.Join(work, "s2"), ref},
		{"bundle", "--insecure-policy", "--store", filepath.Join(work, "s3"), ref, filepath.Join(work, "bundle")},
		{"validate", ref},
	} {
		var v map[string]any
		r := runJSON2(t, env, &v, append([]string{args[0], "--json", "--debug"}, args[1:]...)...)
		n := 0
		for _, l := range lines(r.stderr) {
			if debugRequest.MatchString(l) {
				n++
			}
		}
		if n < 3 {
			t.Errorf("%s --debug: %d request lines on stderr:\n%s", args[0], n, r.stderr)
		}
		if args[0] == "bundle" {
			continue // made; a second run would be refused
		}
		r = mustRun(t, env, args...)
		if strings.Contains(r.stderr, "debug:") {
			t.Errorf("%s without -v printed debug lines:\n%s", args[0], r.stderr)
		}
	}
	// demo talks to its own registry and applies layers: -v too.
	r = mustRun(t, env, "demo", "-v")
	n := 0
	for _, l := range lines(r.stderr) {
		if debugRequest.MatchString(l) {
			n++
		}
	}
	if n < 3 || !strings.Contains(r.stderr, "debug: layer 2/2 applied") {
		t.Errorf("demo -v: %d request lines:\n%s", n, r.stderr)
	}
}

// runJSON2 is runJSON that lets the command write to stderr.
func runJSON2(t *testing.T, env []string, v any, args ...string) cliRun {
	t.Helper()
	r := mustRun(t, env, args...)
	if err := jsonUnmarshal(r.stdout, v); err != nil {
		t.Fatalf("%v: stdout is not one JSON value: %v\n%s", args, err, r.stdout)
	}
	return r
}
