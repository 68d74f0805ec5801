package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/internal/testutil/testregistry"
)

// "resolve" and "inspect" from a real registry, through a counting proxy:
// every field docs/cli.md promises, the entry chosen for the platform, and
// no layer downloaded.
func TestCLIE2EResolveInspect(t *testing.T) {
	t.Parallel()
	reg := testregistry.Shared(t)
	demo := pushDemo(t, reg.Host+"/e2e/inspect:v1")
	proxy := testregistry.NewCountingProxy(t, reg.URL)
	ref := proxy.Host() + "/e2e/inspect:v1"
	env := cliEnv(t)
	want := demo.facts(t, "linux/arm64/v8")
	platforms := []string{"linux/amd64", "linux/arm64/v8", "linux/arm/v7"}

	var res resolveOutput
	r := runJSON(t, env, &res, "resolve", "--json", "--platform", "linux/arm64", ref)
	checkKeys(t, "resolve --json", r.stdout, resolveKeys)
	if res.Reference != ref || res.Platform != "linux/arm64/v8" || !slices.Equal(res.Platforms, platforms) ||
		res.Index == nil || res.Index.Digest != demo.digest.String() || res.Index.MediaType != ocispec.MediaTypeImageIndex ||
		len(res.Indexes) != 1 || res.Indexes[0] != *res.Index ||
		res.Manifest.Digest != want.manifest.String() || res.Manifest.MediaType != ocispec.MediaTypeImageManifest || res.Manifest.Size <= 0 ||
		res.Config.Digest != want.config.String() || res.Config.MediaType != ocispec.MediaTypeImageConfig || res.Config.Size <= 0 {
		t.Errorf("resolve --json: %s", r.stdout)
	}
	if len(res.Layers) != 2 {
		t.Fatalf("resolve --json: %d layers, want 2", len(res.Layers))
	}
	for i, l := range res.Layers {
		if l.Digest != want.layers[i].String() || l.DiffID != want.diffIDs[i].String() || l.Size != want.sizes[i] || l.MediaType != ocispec.MediaTypeImageLayerGzip {
			t.Errorf("resolve --json layer %d: %+v", i+1, l)
		}
	}
	// The human form says the same things.
	r = mustRun(t, env, "resolve", "--platform", "linux/arm64", ref)
	for _, s := range []string{demo.digest.String(), want.manifest.String(), want.config.String(), want.layers[0].String(), want.diffIDs[1].String(), "linux/arm64/v8"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("resolve (human) does not mention %s:\n%s", s, r.stdout)
		}
	}

	var in struct {
		resolveOutput
		Available []struct {
			Platform string `json:"platform"`
			Digest   string `json:"digest"`
			Size     int64  `json:"size"`
		} `json:"available"`
		CompressedSize int64 `json:"compressedSize"`
		ConfigSummary  struct {
			Created    string            `json:"created"`
			User       string            `json:"user"`
			Entrypoint []string          `json:"entrypoint"`
			Cmd        []string          `json:"cmd"`
			Env        []string          `json:"env"`
			WorkingDir string            `json:"workingDir"`
			Labels     map[string]string `json:"labels"`
		} `json:"configSummary"`
	}
	r = runJSON(t, env, &in, "inspect", "--json", "--platform", "linux/arm/v7", ref)
	// "annotations" is promised, but omitted when the manifest has none.
	checkKeys(t, "inspect --json", r.stdout, append(slices.Clone(resolveKeys), "served", "available", "attestations", "compressedSize", "configSummary", "signatures", "reproducible"), "annotations")
	armv7 := demo.facts(t, "linux/arm/v7")
	var got []string
	for _, a := range in.Available {
		got = append(got, a.Platform)
		if a.Platform == "linux/arm/v7" && a.Digest != armv7.manifest.String() {
			t.Errorf("inspect: available linux/arm/v7 is %s, want %s", a.Digest, armv7.manifest)
		}
	}
	cs := in.ConfigSummary
	if !slices.Equal(got, platforms) || in.Platform != "linux/arm/v7" || in.Manifest.Digest != armv7.manifest.String() ||
		in.CompressedSize != armv7.sizes[0]+armv7.sizes[1] || cs.User != "demo" || !slices.Equal(cs.Cmd, []string{"/bin/hello"}) ||
		len(cs.Entrypoint) != 0 || cs.WorkingDir != "/" || len(cs.Env) != 1 || cs.Created != "2026-01-02T03:04:05Z" ||
		cs.Labels["org.opencontainers.image.title"] != "ocifetch demo" {
		t.Errorf("inspect --json: %s", r.stdout)
	}
	r = mustRun(t, env, "inspect", "--platform", "linux/arm/v7", ref)
	if !regexp.MustCompile(`(?m)^\s+\* linux/arm/v7\s+`+armv7.manifest.String()+`$`).MatchString(r.stdout) ||
		strings.Count(r.stdout, "*") != 1 || !strings.Contains(r.stdout, "demo") || !strings.Contains(r.stdout, "/bin/hello") {
		t.Errorf("inspect (human) does not mark linux/arm/v7 alone, or lacks the config:\n%s", r.stdout)
	}

	// Neither command downloaded a layer.
	for _, p := range platforms {
		for _, l := range demo.facts(t, p).layers {
			if n := proxy.Count("/blobs/" + l.String()); n != 0 {
				t.Errorf("resolve/inspect asked for layer %s %d times", l, n)
			}
		}
	}
}

// "validate" of a clean image in the registry (exit 0), then of a bad
// index pushed there (exit 4, each rule named, in both forms).
func TestCLIE2EValidate(t *testing.T) {
	t.Parallel()
	reg := testregistry.Shared(t)
	demo := pushDemo(t, reg.Host+"/e2e/validate:good")
	env := cliEnv(t)

	r := mustRun(t, env, "validate", demo.ref)
	if r.stdout != demo.ref+": valid\n" {
		t.Errorf("validate of the demo image: %q", r.stdout)
	}
	var out struct {
		Reference string `json:"reference"`
		Valid     bool   `json:"valid"`
		Problems  []struct {
			Where   string `json:"where"`
			Rule    string `json:"rule"`
			Message string `json:"message"`
		} `json:"problems"`
	}
	r = runJSON(t, env, &out, "validate", "--json", demo.ref)
	checkKeys(t, "validate --json", r.stdout, []string{"reference", "valid", "problems", "attestations"})
	if out.Reference != demo.ref || !out.Valid || out.Problems == nil || len(out.Problems) != 0 {
		t.Errorf("validate --json of the demo image: %s", r.stdout)
	}

	// A bad index: entry 0 has no platform, entry 1's config lists one
	// diffID for its two layers.
	repo := reg.Host + "/e2e/validate"
	good := demo.facts(t, "linux/amd64")
	l1, l2 := gzipBytes(t, makeTar(t, tarFile{name: "a", body: "a"})), gzipBytes(t, makeTar(t, tarFile{name: "b", body: "b"}))
	short := pushRawImage(t, repo, "short", "", []rawLayer{
		{data: l1, mediaType: ocispec.MediaTypeImageLayerGzip},
		{data: l2, mediaType: ocispec.MediaTypeImageLayerGzip, none: true},
	}, nil)
	noPlatform := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: good.manifest, Size: manifestSize(t, demo, "linux/amd64")}
	pushRawIndex(t, repo+":bad", noPlatform, withPlatform(short, "linux", "arm64"))

	var bad = out
	bad.Problems = nil
	r = runBuilt(t, env, "validate", "--json", repo+":bad")
	if err := jsonUnmarshal(r.stdout, &bad); err != nil || r.code != exitVerification || bad.Valid || r.stderr != "" {
		t.Fatalf("validate --json of a bad index: exit %d, %v, stderr %q\n%s", r.code, err, r.stderr, r.stdout)
	}
	rules := map[string]string{}
	for _, p := range bad.Problems {
		rules[p.Rule] = p.Where
		if p.Where == "" || p.Message == "" {
			t.Errorf("problem without where or message: %+v", p)
		}
	}
	if _, ok := rules["platform"]; !ok || !strings.HasSuffix(rules["platform"], "manifests[0]") {
		t.Errorf("no platform problem at the entry without one: %s", r.stdout)
	}
	if _, ok := rules["diff_ids"]; !ok {
		t.Errorf("no diff_ids problem: %s", r.stdout)
	}
	if len(bad.Problems) != 2 {
		t.Errorf("%d problems, want 2: %s", len(bad.Problems), r.stdout)
	}
	r = runBuilt(t, env, "validate", repo+":bad")
	problem := regexp.MustCompile(`^.+: (platform|diff_ids): .+$`)
	ls := lines(r.stdout)
	if r.code != exitVerification || len(ls) != 2 || len(lines(r.stderr)) != 1 {
		t.Errorf("validate of a bad index: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	for _, l := range ls {
		if !problem.MatchString(l) {
			t.Errorf("not a WHERE: RULE: MESSAGE line: %q", l)
		}
	}
}

// manifestSize is the size of the manifest of the demo image for platform.
func manifestSize(t *testing.T, demo demoPush, platform string) int64 {
	t.Helper()
	n, err := demo.images[platform].Size()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// "pull --json" into the default store ($XDG_CACHE_HOME/ocifetch), again
// (nothing downloaded), another platform under the same name, then "gc
// --json" removes what the first platform alone used.
func TestCLIE2EPullGC(t *testing.T) {
	t.Parallel()
	demo, env := sharedDemo(t, "/e2e/pull:v1")
	var cache string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "XDG_CACHE_HOME="); ok {
			cache = v
		}
	}
	store := filepath.Join(cache, "ocifetch")
	amd := demo.facts(t, "linux/amd64")

	var out pullOutput
	r := runJSON(t, env, &out, "pull", "--json", "--platform", "linux/amd64", demo.ref)
	checkKeys(t, "pull --json", r.stdout, pullKeys)
	if out.Store != store || out.Name != demo.ref || out.Reference != demo.ref || out.Platform != "linux/amd64" ||
		out.Manifest.Digest != amd.manifest.String() || out.Downloaded != amd.sizes[0]+amd.sizes[1] || len(out.Layers) != 2 {
		t.Errorf("pull --json: %s", r.stdout)
	}
	st := checkStoreValid(t, store)
	if namedManifest(st, demo.ref) != amd.manifest {
		t.Errorf("the store names %s %s, want %s", demo.ref, namedManifest(st, demo.ref), amd.manifest)
	}
	for _, d := range append([]digest.Digest{amd.manifest, amd.config}, amd.layers...) {
		if !st.blobs[d] {
			t.Errorf("the store lacks %s", d)
		}
	}
	// skopeo reads the store, as docs/cli.md says.
	if r := runSkopeoInspect(t, env, "oci:"+store+":"+demo.ref); r != "" && !strings.Contains(r, amd.layers[0].String()) {
		t.Errorf("skopeo inspect of the store does not list the layers:\n%s", r)
	}

	out = pullOutput{}
	runJSON(t, env, &out, "pull", "--json", "--platform", "linux/amd64", demo.ref)
	if out.Downloaded != 0 {
		t.Errorf("a second pull downloaded %d bytes", out.Downloaded)
	}

	// Nothing to collect yet.
	if g := runGC(t, env, store); len(g.Removed) != 0 || len(g.Partials) != 0 || g.Bytes != 0 {
		t.Errorf("gc of a store whose blobs are all named: %+v", g)
	}

	// The arm64 image pulled under the same name is recorded beside the
	// amd64 one (one index.json entry per name and platform); gc keeps
	// both. Removing the amd64 entry by digest lets gc remove the amd64
	// manifest, config and layers, and only them.
	arm := demo.facts(t, "linux/arm64/v8")
	mustRun(t, env, "pull", "--quiet", "--platform", "linux/arm64", demo.ref)
	st = checkStoreValid(t, store)
	if namedManifest(st, demo.ref) != amd.manifest || len(st.index.Manifests) != 2 {
		t.Fatalf("after pulling arm64, index.json: %+v", st.index.Manifests)
	}
	if g := runGC(t, env, store); len(g.Removed) != 0 {
		t.Errorf("gc after a second platform removed %v", g.Removed)
	}
	mustRun(t, env, "rm", amd.manifest.String())
	g := runGC(t, env, store)
	if want := digestSet(append([]digest.Digest{amd.manifest, amd.config}, amd.layers...)...); !slices.Equal(g.Removed, want) {
		t.Errorf("gc removed %v, want the amd64 image's %v", g.Removed, want)
	}
	r = mustRun(t, env, "gc", "--json")
	checkKeys(t, "gc --json", r.stdout, []string{"store", "removed", "corrupt", "partials", "pruned", "bytes", "dropped", "keptUnpacked"})
	var again gcOutput
	if err := json.Unmarshal([]byte(r.stdout), &again); err != nil || again.Store != store || len(again.Removed) != 0 {
		t.Errorf("gc --json (default store) after gc: %v %s", err, r.stdout)
	}
	st = checkStoreValid(t, store)
	if namedManifest(st, demo.ref) != arm.manifest {
		t.Errorf("after rm and gc the store names %s %s, want %s", demo.ref, namedManifest(st, demo.ref), arm.manifest)
	}
	for _, d := range append([]digest.Digest{arm.manifest, arm.config}, arm.layers...) {
		if !st.blobs[d] {
			t.Errorf("gc removed %s, which the arm64 image needs", d)
		}
	}

	t.Run("no such store", func(t *testing.T) {
		typo := filepath.Join(t.TempDir(), "no", "such", "store")
		r := runBuilt(t, env, "gc", "--json", "--store", typo)
		_, statErr := os.Stat(typo)
		if k, _ := exactJSONError(t, r.stdout); k != "not_found" || r.code != exitNotFound || statErr == nil {
			t.Errorf("gc of a missing store: kind %q exit %d, created: %v", k, r.code, statErr == nil)
		}
	})
}

// runSkopeoInspect runs "skopeo inspect --raw REF" and returns its output,
// or "" without skopeo (a failure in CI, which installs it).
func runSkopeoInspect(t *testing.T, env []string, ref string) string {
	t.Helper()
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("skopeo is not installed; CI must run this check: %v", err)
		}
		t.Logf("no skopeo: %v", err)
		return ""
	}
	r, err := execCLI(skopeo, env, "inspect", "--raw", ref)
	if err != nil {
		t.Fatal(err)
	}
	if r.code != 0 {
		t.Errorf("skopeo inspect %s: exit %d\n%s", ref, r.code, r.stderr)
	}
	return r.stdout
}

// The demo, run as a user runs it: offline (no proxy, no credentials),
// every step reported, --keep leaving a rootfs that rebuilds.
func TestCLIE2EDemo(t *testing.T) {
	t.Parallel()
	env := cliEnv(t)
	tmp := t.TempDir()
	env = append(env, "TMPDIR="+tmp, "HTTP_PROXY=http://127.0.0.1:1", "HTTPS_PROXY=http://127.0.0.1:1", "NO_PROXY=")
	keep := filepath.Join(t.TempDir(), "demo")
	r := mustRun(t, env, "demo", "--platform", "linux/arm/v7", "--keep", keep)
	for _, s := range []string{"1. serving a 3-platform demo image", "2. resolved for linux/arm/v7", "index", "manifest", "config", "layer 1", "layer 2",
		"3. pulled into the store", "diffID verified", `/etc/motd says "built for arm"`, "4. with the store out of reach",
		"layer 1  ", "sha256 equals the diffID", "done: sha256:"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("demo output lacks %q:\n%s", s, r.stdout)
		}
	}
	if strings.Count(r.stdout, "sha256 equals the diffID") != 2 {
		t.Errorf("demo did not check both layers:\n%s", r.stdout)
	}
	rootfs := filepath.Join(keep, "rootfs")
	if b, err := os.ReadFile(filepath.Join(rootfs, "etc/motd")); err != nil || string(b) != "built for arm\n" {
		t.Errorf("kept rootfs: etc/motd %q %v", b, err)
	}
	if r := runBuilt(t, env, "rebuild", "--all", "--check", rootfs); r.code != 0 || strings.Count(r.stdout, " ok ") != 2 {
		t.Errorf("rebuild --all --check of the kept rootfs: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// Without --keep, nothing is left in $TMPDIR.
	r = mustRun(t, env, "demo")
	if !strings.Contains(r.stdout, "done: ") || !strings.Contains(r.stdout, "temporary files removed") {
		t.Errorf("demo without --keep:\n%s", r.stdout)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("demo left %d entries in $TMPDIR", len(ents))
	}

	// A platform the demo image lacks: exit 3, the error on one line.
	r = runBuilt(t, env, "demo", "--platform", "linux/s390x")
	if r.code != exitNotFound || len(lines(r.stderr)) != 1 || !strings.Contains(r.stderr, "available: linux/amd64, linux/arm64/v8, linux/arm/v7") {
		t.Errorf("demo --platform linux/s390x: exit %d stderr %q", r.code, r.stderr)
	}

	t.Run("keep leaves the store", func(t *testing.T) {
		// docs/cli.md: "--keep DIR leaves the store and rootfs there".
		if _, err := os.Stat(filepath.Join(keep, "store", "index.json")); err != nil {
			t.Errorf("demo --keep DIR removed DIR/store: %v", err)
		}
		if _, err := os.Stat(filepath.Join(keep, "rootfs")); err != nil {
			t.Errorf("demo --keep DIR removed DIR/rootfs: %v", err)
		}
	})
}

// Credentials, as docs/cli.md describes them: --authfile FILE, else
// ~/.docker/config.json (and $DOCKER_CONFIG/config.json, as Docker has
// it); a missing --authfile is an error of the call.
func TestCLIE2ECredentials(t *testing.T) {
	t.Parallel()
	const user, pass = "alice", "s3cret"
	reg := testregistry.Start(t, testregistry.WithBasicAuth(user, pass))
	demo := pushDemo(t, reg.Host+"/e2e/private:v1", remote.WithAuth(&authn.Basic{Username: user, Password: pass}))
	want := demo.facts(t, "linux/amd64").manifest.String()
	authfile := writeAuthfile(t, user, pass, reg.Host)
	authJSON, err := os.ReadFile(authfile)
	if err != nil {
		t.Fatal(err)
	}

	resolveWith := func(t *testing.T, env []string, extra ...string) (string, cliRun) {
		t.Helper()
		args := append([]string{"resolve", "--json", "--platform", "linux/amd64"}, extra...)
		r := runBuilt(t, env, append(args, demo.ref)...)
		if r.code != 0 {
			return "", r
		}
		var res resolveOutput
		if err := jsonUnmarshal(r.stdout, &res); err != nil {
			t.Fatalf("%v\n%s", err, r.stdout)
		}
		return res.Manifest.Digest, r
	}

	env := cliEnv(t)
	if d, r := resolveWith(t, env); r.code != exitNotFound {
		t.Errorf("no credentials: exit %d (%s), want 3\n%s", r.code, d, r.stdout)
	}
	if d, r := resolveWith(t, env, "--authfile", authfile); d != want {
		t.Errorf("--authfile: exit %d, manifest %q\n%s", r.code, d, r.stdout)
	}

	// $DOCKER_CONFIG/config.json.
	dockerConfig := t.TempDir()
	if err := os.WriteFile(filepath.Join(dockerConfig, "config.json"), authJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	if d, r := resolveWith(t, withEnv(env, "DOCKER_CONFIG", dockerConfig)); d != want {
		t.Errorf("$DOCKER_CONFIG/config.json: exit %d, manifest %q\n%s", r.code, d, r.stdout)
	}
	// ~/.docker/config.json, without $DOCKER_CONFIG.
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, ".docker"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".docker", "config.json"), authJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	if d, r := resolveWith(t, withEnv(withEnv(env, "DOCKER_CONFIG", ""), "HOME", home)); d != want {
		t.Errorf("~/.docker/config.json: exit %d, manifest %q\n%s", r.code, d, r.stdout)
	}

	// An --authfile that does not exist: the call is wrong.
	r := runBuilt(t, env, "resolve", "--json", "--authfile", filepath.Join(t.TempDir(), "nope.json"), demo.ref)
	k, msg := exactJSONError(t, r.stdout)
	if !strings.Contains(msg, "nope.json") {
		t.Errorf("missing --authfile: message %q does not name the file", msg)
	}
	if k != "invalid_argument" || r.code != exitUsage {
		t.Errorf("missing --authfile: kind %q exit %d message %q, want invalid_argument, exit 2, naming the file", k, r.code, msg)
	}
}

// withEnv returns env with key set to value ("" removes it).
func withEnv(env []string, key, value string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	if value != "" {
		out = append(out, key+"="+value)
	}
	return out
}
