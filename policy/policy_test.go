package policy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ocifetch/ocifetch/errdefs"
)

// A policy whose structure is broken does not load: that is an error of
// the user's file (invalid_argument), not a verdict about an image.
func TestParseRefusesBrokenStructure(t *testing.T) {
	t.Parallel()
	for name, doc := range map[string]string{
		"not JSON":            `{"default": [`,
		"not an object":       `[]`,
		"no default":          `{"transports": {}}`,
		"unknown top field":   `{"default": [{"type": "reject"}], "defaults": []}`,
		"default not a list":  `{"default": {"type": "reject"}}`,
		"requirement no type": `{"default": [{"keyPath": "/k"}]}`,
		"scope not a list":    `{"default": [{"type": "reject"}], "transports": {"docker": {"example.com": {"type": "reject"}}}}`,
		"trailing data":       `{"default": [{"type": "reject"}]} {}`,
		"scope not expanded":  `{"default": [{"type": "reject"}], "transports": {"docker": {"docker.io/busybox": [{"type": "reject"}]}}}`,
		"scope inner star":    `{"default": [{"type": "reject"}], "transports": {"docker": {"example*.com": [{"type": "reject"}]}}}`,
		"oci scope relative":  `{"default": [{"type": "reject"}], "transports": {"oci": {"layouts/x": [{"type": "reject"}]}}}`,
		"oci scope root":      `{"default": [{"type": "reject"}], "transports": {"oci": {"/": [{"type": "reject"}]}}}`,
		"docker-archive path": `{"default": [{"type": "reject"}], "transports": {"docker-archive": {"/tmp/a.tar": [{"type": "reject"}]}}}`,
		// A key given twice: encoding/json takes the last, skopeo refuses.
		"default twice":    `{"default": [{"type": "reject"}], "default": [{"type": "insecureAcceptAnything"}]}`,
		"transports twice": `{"default": [{"type": "reject"}], "transports": {"docker": {"example.com": [{"type": "reject"}]}}, "transports": {}}`,
		"scope twice":      `{"default": [{"type": "reject"}], "transports": {"docker": {"example.com": [{"type": "reject"}], "example.com": [{"type": "insecureAcceptAnything"}]}}}`,
		"type twice":       `{"default": [{"type": "reject", "type": "insecureAcceptAnything"}]}`,
		"transport null":   `{"default": [{"type": "reject"}], "transports": {"docker": null}}`,
	} {
		if _, err := Parse([]byte(doc), "test.json"); err == nil || errdefs.KindOf(err) != errdefs.ErrInvalidArgument || !strings.Contains(err.Error(), "test.json") {
			t.Errorf("%s: %v, want invalid_argument naming the file", name, err)
		}
	}
}

// What the policy says about a requirement is judged when a scope that
// uses it decides, so one that cannot be enforced never stands in the way
// of images other scopes decide, and is never silently skipped.
func TestRequirementsThatCannotBeEnforced(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		req, want string
	}{
		{`{"type": "signedBy", "keyType": "GPGKeys", "keyPaths": ["/etc/pki/rpm-gpg/RPM-GPG-KEY-redhat-release"]}`, "GPG simple signing"},
		{`{"type": "fooBar"}`, `requirement type "fooBar" is not known`},
		{`{"type": "signedBaseLayer", "baseLayerIdentity": {"type": "matchRepository"}}`, "signedBaseLayer"},
		{`{"type": "reject", "why": "x"}`, `field "why"`},
		{`{"type": "sigstoreSigned", "keyPath": "/k", "colour": "red"}`, `field "colour"`},
		{`{"type": "sigstoreSigned", "fulcio": {"caPath": "/ca"}, "rekorPublicKeyPath": "/r"}`, "oidcIssuer, the identity provider the signer must have used, is mandatory"},
		{`{"type": "sigstoreSigned", "fulcio": {"caPath": "/ca", "oidcIssuer": "https://issuer", "subjectEmail": "a@example.com"}}`, "needs a Rekor key"},
		{`{"type": "sigstoreSigned", "fulcio": {"caPath": "/ca", "caData": "AA==", "oidcIssuer": "https://issuer", "subjectEmail": "a@example.com"}, "rekorPublicKeyPath": "/r"}`, "exactly one of caPath and caData"},
		{`{"type": "sigstoreSigned", "fulcio": {"caPath": "/ca", "oidcIssuer": "https://issuer", "subjectEmail": "a@example.com", "subjectHostname": "x"}, "rekorPublicKeyPath": "/r"}`, `field "subjectHostname"`},
		{`{"type": "sigstoreSigned", "fulcio": {"caPath": "/ca", "oidcIssuer": "https://issuer", "subjectEmail": "a@example.com"}, "rekorPublicKeyPath": "/r"}`, ""},
		{`{"type": "sigstoreSigned", "fulcio": {"caPath": "/ca", "oidcIssuer": "https://issuer", "subjectEmail": "a@example.com"}, "keyPath": "/k", "rekorPublicKeyPath": "/r"}`, "exactly one of"},
		{`{"type": "sigstoreSigned", "keyPath": "/k", "rekorPublicKeyPath": "/r", "rekorPublicKeyData": "AA=="}`, "at most one of rekorPublicKeyPath"},
		{`{"type": "sigstoreSigned", "keyPath": "/k", "rekorPublicKeyPaths": ["/r1", "/r2"]}`, ""},
		{`{"type": "sigstoreSigned", "pki": {"caRootsPath": "/ca"}}`, `"pki"`},
		{`{"type": "sigstoreSigned", "keyPath": "/k", "keyData": "AA=="}`, "exactly one"},
		{`{"type": "sigstoreSigned"}`, "exactly one"},
		{`{"type": "sigstoreSigned", "keyPaths": []}`, "empty or malformed"},
		{`{"type": "sigstoreSigned", "keyPath": 5}`, "empty or malformed"},
		{`{"type": "sigstoreSigned", "keyPath": "/k", "signedIdentity": {"type": "matchSomething"}}`, `"matchSomething" is not known`},
		{`{"type": "sigstoreSigned", "keyPath": "/k", "signedIdentity": {"type": "exactReference", "dockerReference": "example.com/app"}}`, "needs a tag or digest"},
		{`{"type": "sigstoreSigned", "keyPath": "/k", "signedIdentity": {"type": "exactRepository", "dockerRepository": "example.com/app:1"}}`, "must not have a tag"},
		{`{"type": "sigstoreSigned", "keyPath": "/k", "signedIdentity": {"type": "remapIdentity", "prefix": "busybox", "signedPrefix": "example.com"}}`, ""},
		{`{"type": "sigstoreSigned", "keyPath": "/k", "signedIdentity": {"type": "remapIdentity", "prefix": "library/busybox", "signedPrefix": "example.com"}}`, "fully expanded"},
		{`{"type": "sigstoreSigned", "keyPath": "/k", "signedIdentity": {"type": "matchRepository", "extra": 1}}`, `field "extra"`},
	} {
		doc := `{"default": [{"type": "insecureAcceptAnything"}], "transports": {"docker": {"other.example.com": [` + tc.req + `]}}}`
		p, err := Parse([]byte(doc), "p.json")
		if err != nil {
			t.Errorf("%s: the policy did not load: %v", tc.req, err)
			continue
		}
		r := p.transports["docker"]["other.example.com"][0]
		if tc.want == "" {
			if r.unusable != "" {
				t.Errorf("%s: %q, want usable", tc.req, r.unusable)
			}
			continue
		}
		if !strings.Contains(r.unusable, tc.want) {
			t.Errorf("%s: %q, want it to say %q", tc.req, r.unusable, tc.want)
		}
		// Images of other scopes are decided by them.
		reqs, scope := p.lookup(mustImage(t, "registry.example.com/app:1"))
		if scope != "default" || reqs[0].typ != typeAcceptAnything {
			t.Errorf("%s: another registry's image is decided by %s", tc.req, scope)
		}
	}
}

func mustImage(t *testing.T, ref string) image {
	t.Helper()
	img, err := imageOf(ref)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// The most specific scope that matches wins, as in containers/image:
// reference, repository, namespaces, host, wildcard domains, the
// transport's "", then default.
func TestScopeLookup(t *testing.T) {
	t.Parallel()
	doc := `{
		"default": [{"type": "reject"}],
		"transports": {
			"docker": {
				"": [{"type": "insecureAcceptAnything"}],
				"registry.example.com": [{"type": "reject"}],
				"registry.example.com/team": [{"type": "reject"}],
				"registry.example.com/team/app": [{"type": "reject"}],
				"registry.example.com/team/app:v1": [{"type": "reject"}],
				"*.example.com": [{"type": "reject"}],
				"*.com": [{"type": "reject"}],
				"docker.io/library/busybox": [{"type": "reject"}],
				"127.0.0.1:5000": [{"type": "reject"}]
			},
			"oci": {
				"/srv/layouts": [{"type": "reject"}],
				"/srv/layouts/app:v1": [{"type": "reject"}]
			},
			"oci-archive": {"": [{"type": "insecureAcceptAnything"}]},
			"docker-daemon": {"": [{"type": "insecureAcceptAnything"}]}
		}
	}`
	p, err := Parse([]byte(doc), "p.json")
	if err != nil {
		t.Fatal(err)
	}
	for ref, want := range map[string]string{
		"registry.example.com/team/app:v1":                `transports.docker["registry.example.com/team/app:v1"]`,
		"registry.example.com/team/app:v2":                `transports.docker["registry.example.com/team/app"]`,
		"registry.example.com/team/app@sha256:" + hex64(): `transports.docker["registry.example.com/team/app"]`,
		"registry.example.com/team/other:v1":              `transports.docker["registry.example.com/team"]`,
		"registry.example.com/app:v1":                     `transports.docker["registry.example.com"]`,
		"eu.registry.example.com/app:v1":                  `transports.docker["*.example.com"]`,
		"quay.io/app:v1":                                  `transports.docker[""]`,
		"ghcr.com/app:v1":                                 `transports.docker["*.com"]`,
		"docker.io/library/busybox:latest":                `transports.docker["docker.io/library/busybox"]`,
		"127.0.0.1:5000/app:v1":                           `transports.docker["127.0.0.1:5000"]`,
		"127.0.0.1:5001/app:v1":                           `transports.docker[""]`,
		"oci:/srv/layouts/app:v1":                         `transports.oci["/srv/layouts/app:v1"]`,
		"oci:/srv/layouts/app:v2":                         `transports.oci["/srv/layouts"]`,
		"oci:/srv/layouts/sub/x@sha256:" + hex64():        `transports.oci["/srv/layouts"]`,
		"oci:/elsewhere:v1":                               "default",
		"oci-archive:/srv/a.tar:v1":                       `transports.oci-archive[""]`,
		"docker-archive:/srv/a.tar:app:v1":                "default",
	} {
		_, got := p.lookup(mustImage(t, ref))
		if got != want {
			t.Errorf("%s: decided by %s, want %s", ref, got, want)
		}
	}
}

func hex64() string { return strings.Repeat("ab", 32) }

// A layout reference splits as resolve splits it (a trailing digest, then
// the first ':'), so an image the store names "host:port/repo:tag" is
// decided by the store directory's scope. Split at the last colon, it fell
// to default: a policy rejecting the store admitted it.
func TestLayoutScopesSplitAtFirstColon(t *testing.T) {
	t.Parallel()
	doc := `{
		"default": [{"type": "insecureAcceptAnything"}],
		"transports": {
			"oci": {
				"/srv/store": [{"type": "reject"}],
				"/srv/store:127.0.0.1:5000/team/app:v1": [{"type": "reject"}]
			},
			"oci-archive": {"/srv/a.tar": [{"type": "reject"}]}
		}
	}`
	p, err := Parse([]byte(doc), "p.json")
	if err != nil {
		t.Fatal(err)
	}
	for ref, want := range map[string]string{
		"oci:/srv/store:127.0.0.1:5000/team/app:v1":                   `transports.oci["/srv/store:127.0.0.1:5000/team/app:v1"]`,
		"oci:/srv/store:127.0.0.1:5000/team/app:v2":                   `transports.oci["/srv/store"]`,
		"oci:/srv/store:team/app:v2":                                  `transports.oci["/srv/store"]`,
		"oci:/srv/store:127.0.0.1:5000/team/app:v1@sha256:" + hex64(): `transports.oci["/srv/store:127.0.0.1:5000/team/app:v1"]`,
		"oci:/srv/store@sha256:" + hex64():                            `transports.oci["/srv/store"]`,
		"oci-archive:/srv/a.tar:127.0.0.1:5000/team/app:v1":           `transports.oci-archive["/srv/a.tar"]`,
		"oci:/srv/other:127.0.0.1:5000/team/app:v1":                   "default",
	} {
		_, got := p.lookup(mustImage(t, ref))
		if got != want {
			t.Errorf("%s: decided by %s, want %s", ref, got, want)
		}
	}
}

// A layout's scopes name the directory itself, whichever symlink led to
// it.
func TestLayoutScopesResolveSymlinks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	img := mustImage(t, "oci:"+filepath.Join(dir, "link")+":v1")
	realDir, _ := filepath.EvalSymlinks(real)
	if img.scopes[0] != realDir+":v1" || !slices.Contains(img.scopes, realDir) || slices.Contains(img.scopes, "/") {
		t.Fatalf("scopes %q", img.scopes)
	}
}

// signedIdentity, as containers-policy.json(5) defines it. cosign's
// signatures name the repository only (without --sign-container-identity).
func TestSignedIdentity(t *testing.T) {
	t.Parallel()
	id := func(doc string) identityRequirement {
		t.Helper()
		var raw []byte
		if doc != "" {
			raw = []byte(doc)
		}
		r, err := parseIdentity(raw)
		if err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		return r
	}
	const (
		repoDigestOrExact = `{"type": "matchRepoDigestOrExact"}`
		repository        = `{"type": "matchRepository"}`
		exact             = `{"type": "matchExact"}`
	)
	d := "@sha256:" + hex64()
	for _, tc := range []struct {
		identity, image, signed string
		ok                      bool
	}{
		{"", "example.com/app:v1", "example.com/app:v1", true}, // the default is matchRepoDigestOrExact
		{"", "example.com/app:v1", "example.com/app", false},
		{repoDigestOrExact, "example.com/app:v1", "example.com/app:v1", true},
		{repoDigestOrExact, "example.com/app:v2", "example.com/app:v1", false},
		{repoDigestOrExact, "example.com/app:v1", "example.com/app", false},
		{repoDigestOrExact, "example.com/app" + d, "example.com/app", true},
		{repoDigestOrExact, "example.com/app" + d, "example.com/app:v1", true},
		{repoDigestOrExact, "example.com/app" + d, "example.com/other", false},
		{repository, "example.com/app:v1", "example.com/app", true},
		{repository, "example.com/app:v2", "example.com/app:v1", true},
		{repository, "example.com/app:v1", "example.com/other", false},
		{repository, "example.com/app:v1", "other.example.com/app", false},
		{repository, "docker.io/library/busybox:1", "busybox", true}, // normalized as Docker does
		{repository, "docker.io/library/busybox:1", "index.docker.io/library/busybox", true},
		{exact, "example.com/app:v1", "example.com/app:v1", true},
		{exact, "example.com/app:v1", "example.com/app", false},
		{exact, "example.com/app" + d, "example.com/app:v1", false},
		{`{"type": "exactReference", "dockerReference": "vendor.example.com/app:v1"}`, "mirror.example.com/app:v1", "vendor.example.com/app:v1", true},
		{`{"type": "exactReference", "dockerReference": "vendor.example.com/app:v1"}`, "mirror.example.com/app:v1", "vendor.example.com/app:v2", false},
		{`{"type": "exactRepository", "dockerRepository": "vendor.example.com/app"}`, "mirror.example.com/app:v1", "vendor.example.com/app", true},
		{`{"type": "exactRepository", "dockerRepository": "vendor.example.com/app"}`, "mirror.example.com/app:v1", "vendor.example.com/other", false},
		{`{"type": "remapIdentity", "prefix": "mirror.example.com/vendor", "signedPrefix": "vendor.example.com"}`, "mirror.example.com/vendor/app:v1", "vendor.example.com/app:v1", true},
		{`{"type": "remapIdentity", "prefix": "mirror.example.com/vendor", "signedPrefix": "vendor.example.com"}`, "mirror.example.com/vendor/app:v1", "mirror.example.com/vendor/app:v1", false},
		{`{"type": "remapIdentity", "prefix": "mirror.example.com/vendor", "signedPrefix": "vendor.example.com"}`, "mirror.example.com/vendorx/app:v1", "mirror.example.com/vendorx/app:v1", true}, // no prefix match: unchanged
		{`{"type": "remapIdentity", "prefix": "mirror.example.com/vendor", "signedPrefix": "vendor.example.com"}`, "mirror.example.com/vendor/app" + d, "vendor.example.com/app", true},
	} {
		img := mustImage(t, tc.image)
		ok, why := id(tc.identity).matches(img.docker, tc.signed)
		if ok != tc.ok {
			t.Errorf("%s: image %s signed as %s: %v (%s), want %v", tc.identity, tc.image, tc.signed, ok, why, tc.ok)
		}
	}
	// Layouts and archives have no Docker reference: only exact* apply.
	layout := mustImage(t, "oci:/srv/layout:v1")
	if ok, why := id(repository).matches(layout.docker, "example.com/app"); ok || !strings.Contains(why, "exactReference or exactRepository") {
		t.Errorf("matchRepository on a layout: %v %s", ok, why)
	}
	if ok, _ := id(`{"type": "exactRepository", "dockerRepository": "example.com/app"}`).matches(layout.docker, "example.com/app"); !ok {
		t.Error("exactRepository on a layout does not match its repository")
	}
}

// The default lookup is containers/image's, unless $OCIFETCH_POLICY_PATHS
// names the files; no file found means no policy.
func TestLoadDefault(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv(EnvPaths, "")
	paths := DefaultPaths()
	if len(paths) != 2 || paths[0] != filepath.Join(home, ".config/containers/policy.json") || paths[1] != "/etc/containers/policy.json" {
		t.Fatalf("default paths %q", paths)
	}
	dir := t.TempDir()
	missing, present := filepath.Join(dir, "missing.json"), filepath.Join(dir, "policy.json")
	if err := os.WriteFile(present, []byte(`{"default": [{"type": "reject"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvPaths, missing+string(filepath.ListSeparator)+present)
	p, err := LoadDefault(nil)
	if err != nil || p == nil || p.Name() != present {
		t.Fatalf("LoadDefault: %v %v", p, err)
	}
	t.Setenv(EnvPaths, missing)
	if p, err := LoadDefault(nil); p != nil || err != nil {
		t.Fatalf("no policy file: %v %v, want none", p, err)
	}
	if _, err := Load(missing); errdefs.KindOf(err) != errdefs.ErrInvalidArgument {
		t.Fatalf("a missing --policy file: %v", err)
	}
}
