package policy_test

// Trust policies against the real registry (Debian's distribution 2.8,
// which has no referrers API, so cosign's bundles land on the fallback
// tag), with images signed by the real cosign binary, pulled through a
// counting proxy that shows which requests were made.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch"
	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/fetch"
	"github.com/ocifetch/ocifetch/internal/testutil"
	"github.com/ocifetch/ocifetch/internal/testutil/cosigntest"
	"github.com/ocifetch/ocifetch/internal/testutil/testimage"
	"github.com/ocifetch/ocifetch/internal/testutil/testregistry"
	"github.com/ocifetch/ocifetch/policy"
	"github.com/ocifetch/ocifetch/policy/sigstore"
	"github.com/ocifetch/ocifetch/resolve"
)

// signatureRequests counts the requests for signatures: .sig tags and
// the referrers API.
func (f *fixture) signatureRequests() int {
	return f.proxy.Count(".sig") + f.proxy.Count("/referrers/")
}

type fixture struct {
	reg      *testregistry.Registry
	proxy    *testregistry.CountingProxy
	host     string // the proxy's host: every reference goes through it
	cosign   *cosigntest.Cosign
	key      cosigntest.Key
	otherKey cosigntest.Key
}

func TestMain(m *testing.M) {
	// The tests wait on cosign and the registry more than they compute:
	// 4 at once rather than one per CPU.
	testutil.WaitingParallel(4)
	os.Exit(testregistry.Main(m))
}

// sharedKeys are the two key pairs of every fixture, made once for the
// test binary (cosign takes half a second for each) in its BinaryDir.
var sharedKeys struct {
	once       sync.Once
	key, other cosigntest.Key
}

// newFixture makes a fixture on the package's shared registry: each
// test keeps to repositories of its own, and counts its requests on a
// proxy of its own.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{cosign: cosigntest.New(t), reg: testregistry.Shared(t)}
	f.proxy = testregistry.NewCountingProxy(t, f.reg.URL)
	f.host = f.proxy.Host()
	dir := testutil.BinaryDir(t)
	sharedKeys.once.Do(func() {
		for name, k := range map[string]*cosigntest.Key{"key": &sharedKeys.key, "other": &sharedKeys.other} {
			if err := os.Mkdir(filepath.Join(dir, name), 0o700); err != nil {
				t.Fatal(err)
			}
			*k = f.cosign.GenerateKeyPairIn(t, filepath.Join(dir, name))
		}
	})
	if sharedKeys.key.Private == "" || sharedKeys.other.Private == "" {
		t.Fatal("the shared key pairs were not made (see the first test that failed)")
	}
	f.key, f.otherKey = sharedKeys.key, sharedKeys.other
	return f
}

// pushed is an image in the registry.
type pushed struct {
	ref    string // host/repo:tag
	digest digest.Digest
	layers []digest.Digest
}

func (p pushed) byDigest() string {
	repo, _, _ := strings.Cut(p.ref, ":")
	if i := strings.LastIndex(p.ref, ":"); i > strings.LastIndex(p.ref, "/") {
		repo = p.ref[:i]
	}
	return repo + "@" + p.digest.String()
}

func (f *fixture) push(t *testing.T, repoTag string) pushed {
	t.Helper()
	img := testimage.Image(t, 2, "linux", "amd64", "")
	ref := f.host + "/" + repoTag
	d := testimage.PushImage(t, ref, img)
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	p := pushed{ref: ref, digest: digest.Digest(d.String())}
	for _, l := range m.Layers {
		p.layers = append(p.layers, digest.Digest(l.Digest.String()))
	}
	return p
}

// sign signs p's digest with key; extra cosign flags select the layout
// ("--new-bundle-format") or the claimed identity.
// newSignedFixture is a new fixture with an image pushed as repoTag and
// signed with the fixture's key (extra: more cosign sign arguments).
func newSignedFixture(t *testing.T, repoTag string, extra ...string) (*fixture, pushed) {
	t.Helper()
	f := newFixture(t)
	img := f.push(t, repoTag)
	f.sign(t, f.key, img, extra...)
	return f, img
}

func (f *fixture) sign(t *testing.T, key cosigntest.Key, p pushed, extra ...string) {
	t.Helper()
	f.cosign.Sign(t, key, p.byDigest(), extra...)
}

// policyFile writes a policy and loads it with store (nil: none).
func policyFile(t *testing.T, doc string, store sigstore.Store, opts ...policy.Option) *policy.Policy {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if store != nil {
		opts = append(opts, policy.WithStore(store))
	}
	p, err := policy.Load(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// scoped is a policy that rejects by default and requires, for scope, a
// signature by key with the given signedIdentity ("" for the default).
func scoped(scope, key, identity string) string {
	id := ""
	if identity != "" {
		id = `, "signedIdentity": ` + identity
	}
	return fmt.Sprintf(`{"default": [{"type": "reject"}], "transports": {"docker": {%q: [{"type": "sigstoreSigned", "keyPath": %q%s}]}}}`, scope, key, id)
}

const matchRepository = `{"type": "matchRepository"}`

// unpack runs the library's Unpack with the policy into a fresh target
// and store.
type unpacked struct {
	res    *ocifetch.Result
	err    error
	target string
	store  *fetch.Store
	d      policy.Decision
}

func unpack(t *testing.T, ref, doc string) unpacked {
	t.Helper()
	u := unpacked{target: filepath.Join(t.TempDir(), "rootfs")}
	storeDir := t.TempDir()
	var err error
	if u.store, err = fetch.OpenStore(storeDir); err != nil {
		t.Fatal(err)
	}
	pol := policyFile(t, doc, u.store, policy.WithReport(func(d policy.Decision) { u.d = d }))
	u.res, u.err = ocifetch.Unpack(context.Background(), ref, u.target, ocifetch.WithStore(storeDir), ocifetch.WithVerifier(pol))
	return u
}

// An image signed with the policy's key is admitted, in either layout
// cosign writes; the signature is kept in the store with the image.
func TestSignedImageIsAdmitted(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, tc := range []struct {
		name   string
		flags  []string
		format sigstore.Format
		where  string
	}{
		{"classic .sig tag", nil, sigstore.FormatSimpleSigning, "tag sha256-"},
		{"bundle on the referrers fallback tag", []string{"--new-bundle-format"}, sigstore.FormatBundle, "referrer sha256:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := "admitted-" + strings.Fields(tc.name)[0]
			img := f.push(t, repo+":v1")
			f.sign(t, f.key, img, tc.flags...)
			u := unpack(t, img.ref, scoped(f.host+"/"+repo, f.key.Public, matchRepository))
			if u.err != nil {
				t.Fatal(u.err)
			}
			if !u.d.Admitted || len(u.d.Accepted) != 1 || u.d.Accepted[0].Signature.Format != tc.format ||
				u.d.Accepted[0].Key != f.key.Public || !strings.HasPrefix(u.d.Accepted[0].Signature.Location, tc.where) ||
				u.d.Accepted[0].Identity != f.host+"/"+repo || u.d.Subject != img.digest {
				t.Fatalf("decision %+v", u.d)
			}
			if len(u.res.Apply.Layers) != 2 {
				t.Fatalf("applied %d layers", len(u.res.Apply.Layers))
			}
			stored, err := u.store.Referrers(img.digest)
			if err != nil || len(stored) != 1 || stored[0].Digest != u.d.Accepted[0].Signature.Manifest.Descriptor.Digest {
				t.Fatalf("stored signatures %v %v", stored, err)
			}
		})
	}
}

// What must be refused is refused as untrusted, naming the scope, before
// any layer is requested, leaving the target as it was and keeping no
// signature.
func TestRefusedBeforeAnyLayer(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	copyManifest := func(t *testing.T, from, to string) {
		t.Helper()
		r, err := name.ParseReference(from)
		if err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Get(r)
		if err != nil {
			t.Fatal(err)
		}
		testimage.PushRaw(t, to, desc.Manifest, desc.MediaType)
	}
	hexOf := func(d digest.Digest) string { return d.Encoded() }
	// The short tier pushes and signs for the first three cases.
	for i, tc := range testutil.First([]struct {
		name  string
		setup func(t *testing.T, repo string) pushed
		why   string
	}{
		{"unsigned", func(t *testing.T, repo string) pushed {
			return f.push(t, repo+":v1")
		}, "no signature of sha256:"},
		{"signed by another key", func(t *testing.T, repo string) pushed {
			img := f.push(t, repo+":v1")
			f.sign(t, f.otherKey, img)
			f.sign(t, f.otherKey, img, "--new-bundle-format")
			return img
		}, "signed by another key than " + f.key.Public},
		{"signed tag moved to an unsigned image", func(t *testing.T, repo string) pushed {
			f.sign(t, f.key, f.push(t, repo+":v1"))
			return f.push(t, repo+":v1")
		}, "no signature of sha256:"},
		{"another image's signature at this image's .sig tag", func(t *testing.T, repo string) pushed {
			signed := f.push(t, repo+":old")
			f.sign(t, f.key, signed)
			img := f.push(t, repo+":v1")
			copyManifest(t, f.host+"/"+repo+":sha256-"+hexOf(signed.digest)+".sig", f.host+"/"+repo+":sha256-"+hexOf(img.digest)+".sig")
			return img
		}, "signature is for " + "sha256:"},
		{"another image's bundle at this image's referrers tag", func(t *testing.T, repo string) pushed {
			signed := f.push(t, repo+":old")
			f.sign(t, f.key, signed, "--new-bundle-format")
			img := f.push(t, repo+":v1")
			copyManifest(t, f.host+"/"+repo+":sha256-"+hexOf(signed.digest), f.host+"/"+repo+":sha256-"+hexOf(img.digest))
			return img
		}, "does not name sha256:"},
		{"only an attestation, signed with the key", func(t *testing.T, repo string) pushed {
			img := f.push(t, repo+":v1")
			pred := filepath.Join(t.TempDir(), "predicate.json")
			if err := os.WriteFile(pred, []byte(`{"builder": "ci"}`), 0o644); err != nil {
				t.Fatal(err)
			}
			f.cosign.Attest(t, f.key, img.byDigest(), pred)
			return img
		}, "is an attestation"},
	}, 3) {
		repo := fmt.Sprintf("refused-%d", i)
		t.Run(tc.name, func(t *testing.T) {
			img := tc.setup(t, repo)
			f.proxy.Reset()
			u := unpack(t, img.ref, scoped(f.host+"/"+repo, f.key.Public, matchRepository))
			checkRefused(t, u.err, fmt.Sprintf(`scope transports.docker[%q]`, f.host+"/"+repo), tc.why)
			if _, err := os.Lstat(u.target); !os.IsNotExist(err) {
				t.Errorf("the target was created: %v", err)
			}
			for _, l := range img.layers {
				if n := f.proxy.Count("/blobs/" + l.String()); n != 0 {
					t.Errorf("layer %s was requested %d times", l, n)
				}
			}
			if got, err := u.store.Referrers(img.digest); err != nil || len(got) != 0 {
				t.Errorf("kept signatures of a refused image: %v %v", got, err)
			}
		})
	}
}

func checkRefused(t *testing.T, err error, in ...string) {
	t.Helper()
	if errdefs.KindOf(err) != errdefs.ErrUntrusted || errdefs.ExitCode(errdefs.KindOf(err)) != 8 {
		t.Fatalf("error %v (kind %s), want untrusted", err, errdefs.KindOf(err))
	}
	for _, s := range in {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("the message does not say %q:\n%v", s, err)
		}
	}
}

// The policy's default applies to repositories outside its scopes.
func TestDefaultRejectOutsideScopes(t *testing.T) {
	t.Parallel()
	f, img := newSignedFixture(t, "outside:v1")
	u := unpack(t, img.ref, scoped(f.host+"/inside", f.key.Public, matchRepository))
	checkRefused(t, u.err, "scope default", "rejects")
}

// A Fedora or RHEL system policy, with signedBy (GPG) scopes for Red Hat's
// registries whose key files this machine lacks, still admits images of
// other registries; a scope that decides with signedBy refuses, saying
// why, without looking for signatures.
func TestSignedByForAnotherRegistry(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	unsigned := f.push(t, "fedora-unsigned:v1")
	signed := f.push(t, "fedora-signed:v1")
	f.sign(t, f.key, signed)
	redhat := `"registry.access.redhat.com": [{"type": "signedBy", "keyType": "GPGKeys", "keyPaths": ["/nonexistent/RPM-GPG-KEY-redhat-release", "/nonexistent/RPM-GPG-KEY-redhat-beta"]}],
		"registry.redhat.io": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/nonexistent/RPM-GPG-KEY-redhat-release"}]`
	fedora := `{"default": [{"type": "insecureAcceptAnything"}], "transports": {"docker": {` + redhat + `}, "docker-daemon": {"": [{"type": "insecureAcceptAnything"}]}}}`
	if u := unpack(t, unsigned.ref, fedora); u.err != nil {
		t.Fatalf("the Fedora policy refused another registry's image: %v", u.err)
	}
	withOurs := fmt.Sprintf(`{"default": [{"type": "reject"}], "transports": {"docker": {%s, %q: [{"type": "sigstoreSigned", "keyPath": %q, "signedIdentity": {"type": "matchRepository"}}]}}}`,
		redhat, f.host, f.key.Public)
	if u := unpack(t, signed.ref, withOurs); u.err != nil {
		t.Fatalf("refused an image signed for its own scope: %v", u.err)
	}

	gpg := fmt.Sprintf(`{"default": [{"type": "reject"}], "transports": {"docker": {%q: [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/nonexistent/key.gpg"}]}}}`, f.host)
	f.proxy.Reset()
	u := unpack(t, signed.ref, gpg)
	checkRefused(t, u.err, "GPG simple signing", "not supported", fmt.Sprintf("transports.docker[%q]", f.host))
	if n := f.signatureRequests(); n != 0 {
		t.Errorf("%d signature requests for a requirement that cannot be enforced", n)
	}
}

// A scope that uses a requirement type ocifetch does not know refuses the
// image with a message naming it, and asks the registry nothing more.
func TestUnknownRequirementTypeIsRefused(t *testing.T) {
	t.Parallel()
	f, img := newSignedFixture(t, "unknown-type:v1")
	doc := fmt.Sprintf(`{"default": [{"type": "insecureAcceptAnything"}], "transports": {"docker": {%q: [{"type": "sigstoreSigned", "keyPath": %q, "signedIdentity": {"type": "matchRepository"}}, {"type": "fooBar", "level": 3}]}}}`,
		f.host+"/unknown-type", f.key.Public)
	f.proxy.Reset()
	u := unpack(t, img.ref, doc)
	checkRefused(t, u.err, `requirement type "fooBar" is not known`, "requirement 2", "refusing rather than ignoring it")
	if n := f.signatureRequests(); n != 0 {
		t.Errorf("%d signature requests before refusing", n)
	}
}

// signedIdentity against what cosign signs: by default the repository
// only, so matchRepoDigestOrExact admits a digest reference but not a tag,
// and matchRepository admits both; with --sign-container-identity the
// signature names a tag, and matchRepoDigestOrExact then refuses another
// tag of the same digest (tag substitution).
func TestIdentityCases(t *testing.T) {
	t.Parallel()
	f, app := newSignedFixture(t, "ident:v1")
	named := f.push(t, "named:v1")
	f.sign(t, f.key, named, "--sign-container-identity="+f.host+"/named:v1")
	alias := named
	alias.ref = f.host + "/named:v2"
	r, err := name.ParseReference(named.ref)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(r)
	if err != nil {
		t.Fatal(err)
	}
	testimage.PushRaw(t, alias.ref, desc.Manifest, types.MediaType(desc.MediaType))

	const digestOrExact = `{"type": "matchRepoDigestOrExact"}`
	for _, tc := range []struct {
		ref, scope, identity string
		ok                   bool
		why                  string
	}{
		{app.ref, "ident", "", false, "use signedIdentity matchRepository"},
		{app.ref, "ident", digestOrExact, false, "signed for " + f.host + "/ident, not " + app.ref},
		{app.ref, "ident", matchRepository, true, ""},
		{app.byDigest(), "ident", digestOrExact, true, ""},
		{app.byDigest(), "ident", `{"type": "exactRepository", "dockerRepository": "` + f.host + `/elsewhere"}`, false, "not " + f.host + "/elsewhere"},
		{named.ref, "named", digestOrExact, true, ""},
		{alias.ref, "named", digestOrExact, false, "signed for " + named.ref + ", not " + alias.ref},
		{alias.ref, "named", matchRepository, true, ""},
		{alias.ref, "named", `{"type": "exactReference", "dockerReference": "` + named.ref + `"}`, true, ""},
		{alias.ref, "named", `{"type": "remapIdentity", "prefix": "` + f.host + `/named", "signedPrefix": "` + f.host + `/other"}`, false, "signed for " + named.ref},
	} {
		pol := policyFile(t, scoped(f.host+"/"+tc.scope, f.key.Public, tc.identity), nil)
		res, err := resolve.Resolve(context.Background(), tc.ref)
		if err != nil {
			t.Fatal(err)
		}
		err = pol.Verify(context.Background(), res.Source, res)
		if tc.ok && err != nil {
			t.Errorf("%s with %s: %v", tc.ref, tc.identity, err)
		}
		if !tc.ok {
			if err == nil {
				t.Errorf("%s with %s: admitted", tc.ref, tc.identity)
			} else {
				checkRefused(t, err, tc.why)
			}
		}
	}
}

// The signature must name the digest the reference first resolves to: for
// a tag that names an index, the index, not the platform's manifest.
func TestSignatureNamesTheIndex(t *testing.T) {
	t.Parallel()
	testutil.Full(t, "signing (two cosign runs); TestSignedImageIsAdmitted and TestRefusedBeforeAnyLayer cover the subject digest of a single manifest")
	f := newFixture(t)
	idx, imgs := testimage.Index(t, testimage.Platform{OS: "linux", Arch: "amd64"}, testimage.Platform{OS: "linux", Arch: "arm64", Variant: "v8"})
	idxDigest := testimage.PushIndex(t, f.host+"/multi:v1", idx)
	f.cosign.Sign(t, f.key, f.host+"/multi@"+idxDigest.String())
	amd := pushed{ref: f.host + "/multi-manifest-only:v1"}
	testimage.PushIndex(t, amd.ref, idx)
	d, err := imgs[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	f.cosign.Sign(t, f.key, f.host+"/multi-manifest-only@"+d.String())

	doc := fmt.Sprintf(`{"default": [{"type": "reject"}], "transports": {"docker": {%q: [{"type": "sigstoreSigned", "keyPath": %q, "signedIdentity": {"type": "matchRepository"}}]}}}`, f.host, f.key.Public)
	for _, tc := range []struct {
		ref string
		ok  bool
	}{{f.host + "/multi:v1", true}, {f.host + "/multi-manifest-only:v1", false}} {
		res, err := resolve.Resolve(context.Background(), tc.ref, resolve.WithPlatform(ocispec.Platform{OS: "linux", Architecture: "amd64"}))
		if err != nil {
			t.Fatal(err)
		}
		err = policyFile(t, doc, nil).Verify(context.Background(), res.Source, res)
		if tc.ok && err != nil {
			t.Errorf("%s: %v", tc.ref, err)
		}
		if !tc.ok {
			if err == nil {
				t.Errorf("%s: admitted with a signature of its amd64 manifest only", tc.ref)
			} else {
				checkRefused(t, err, "no signature of "+res.Indexes[0].Descriptor.Digest.String())
			}
		}
	}
}

// Signatures kept in the store verify an image read from the store with
// no registry at all: through an oci: reference to the store, and as an
// offline pull (--pull never) resolves it, with its registry reference.
// A store without signatures refuses. An image verified before is
// verified again without a signature request.
func TestOfflineVerificationFromTheStore(t *testing.T) {
	t.Parallel()
	f, img := newSignedFixture(t, "offline:v1")
	f.sign(t, f.key, img, "--new-bundle-format")
	storeDir := t.TempDir()
	store, err := fetch.OpenStore(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	registryPolicy := policyFile(t, scoped(f.host+"/offline", f.key.Public, matchRepository), store)
	ctx := context.Background()
	if _, err := ocifetch.Unpack(ctx, img.ref, filepath.Join(t.TempDir(), "rootfs"), ocifetch.WithStore(storeDir), ocifetch.WithVerifier(registryPolicy)); err != nil {
		t.Fatal(err)
	}
	if got, _ := store.Referrers(img.digest); len(got) != 2 {
		t.Fatalf("stored %d signature documents, want the .sig image and the bundle", len(got))
	}

	f.proxy.Reset()
	if _, err := ocifetch.Pull(ctx, img.ref, ocifetch.WithStore(storeDir), ocifetch.WithVerifier(registryPolicy)); err != nil {
		t.Fatal(err)
	}
	if n := f.signatureRequests() + f.proxy.Count("sha256-"); n != 0 {
		t.Errorf("a pull verified before asked the registry for signatures %d times", n)
	}

	f.proxy.Close() // every reference went through it: the registry is out of reach
	var d policy.Decision
	layoutPolicy := policyFile(t, fmt.Sprintf(`{"default": [{"type": "reject"}], "transports": {"oci": {%q: [{"type": "sigstoreSigned", "keyPath": %q, "signedIdentity": {"type": "exactRepository", "dockerRepository": %q}}]}}}`,
		store.Dir(), f.key.Public, f.host+"/offline"), store, policy.WithReport(func(x policy.Decision) { d = x }))
	target := filepath.Join(t.TempDir(), "rootfs")
	if _, err := ocifetch.Unpack(ctx, "oci:"+storeDir+"@"+img.digest.String(), target, ocifetch.WithStore(t.TempDir()), ocifetch.WithVerifier(layoutPolicy)); err != nil {
		t.Fatalf("offline unpack from the store: %v", err)
	}
	if len(d.Accepted) != 1 || d.Accepted[0].Signature.Location != "store" || d.Accepted[0].Signature.Format != sigstore.FormatSimpleSigning {
		t.Fatalf("decision %+v", d)
	}

	// As an offline pull resolves it: the registry's reference, the bytes
	// from the store.
	layout, err := resolve.Open(ctx, "oci:"+storeDir+"@"+img.digest.String())
	if err != nil {
		t.Fatal(err)
	}
	src := storeSource{Source: layout, ref: img.ref}
	res, err := resolve.ResolveSource(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	if err := registryPolicy.Verify(ctx, src, res); err != nil {
		t.Fatalf("verifying the registry reference from the store: %v", err)
	}

	empty, err := fetch.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	unsignedPolicy := policyFile(t, scoped(f.host+"/offline", f.key.Public, matchRepository), empty)
	checkRefused(t, unsignedPolicy.Verify(ctx, src, res), "no signature of "+img.digest.String()+" found in the store")
}

// storeSource is an image of the store under its registry name, as an
// offline pull reads it.
type storeSource struct {
	resolve.Source
	ref string
}

func (s storeSource) Reference() string { return s.ref }

// The policy's keys may be given inline (keyData, base64 of the PEM) and
// several at once (keyPaths); any of them admits.
func TestKeyDataAndKeyPaths(t *testing.T) {
	t.Parallel()
	testutil.Full(t, "signing; TestSignedImageIsAdmitted covers keyPath")
	f, img := newSignedFixture(t, "keys:v1", "--new-bundle-format")
	pem, err := os.ReadFile(f.key.Public)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(pem) // []byte marshals as base64
	for _, keys := range []string{
		`"keyData": ` + string(data),
		fmt.Sprintf(`"keyPaths": [%q, %q]`, f.otherKey.Public, f.key.Public),
		fmt.Sprintf(`"keyDatas": [%s]`, data),
	} {
		doc := fmt.Sprintf(`{"default": [{"type": "reject"}], "transports": {"docker": {%q: [{"type": "sigstoreSigned", %s, "signedIdentity": {"type": "matchRepository"}}]}}}`, f.host+"/keys", keys)
		if u := unpack(t, img.ref, doc); u.err != nil {
			t.Errorf("%s: %v", keys, u.err)
		}
	}
}

// A stored signature that was damaged since condemns only itself: the
// registry's copy admits the image.
func TestDamagedStoredSignatureFallsBackToTheRegistry(t *testing.T) {
	t.Parallel()
	f, img := newSignedFixture(t, "damaged:v1")
	u := unpack(t, img.ref, scoped(f.host+"/damaged", f.key.Public, matchRepository))
	if u.err != nil {
		t.Fatal(u.err)
	}
	stored, err := u.store.Referrers(img.digest)
	if err != nil || len(stored) != 1 {
		t.Fatalf("stored %v %v", stored, err)
	}
	// Damage the stored signature image's payload.
	for _, b := range u.d.Accepted[0].Signature.Blobs {
		if b.Descriptor.MediaType == sigstore.MediaTypeSimpleSigning {
			p, err := u.store.BlobPath(b.Descriptor.Digest)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(strings.Repeat("x", len(b.Data))), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	var d policy.Decision
	pol := policyFile(t, scoped(f.host+"/damaged", f.key.Public, matchRepository), u.store, policy.WithReport(func(x policy.Decision) { d = x }))
	if _, err := ocifetch.Pull(context.Background(), img.ref, ocifetch.WithStore(u.store.Dir()), ocifetch.WithVerifier(pol)); err != nil {
		t.Fatal(err)
	}
	if len(d.Accepted) != 1 || !strings.HasPrefix(d.Accepted[0].Signature.Location, "tag ") {
		t.Fatalf("admitted by %+v, want the registry's signature", d.Accepted)
	}
}
