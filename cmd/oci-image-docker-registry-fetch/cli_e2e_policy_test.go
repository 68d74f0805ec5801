package main

// Trust policies from the command line: --policy on resolve, pull,
// unpack and bundle, the default lookup, --insecure-policy, and the
// signatures inspect lists, against the real registry with images signed
// by the real cosign binary.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/testutil"
	"github.com/ocifetch/ocifetch/internal/testutil/cosigntest"
	"github.com/ocifetch/ocifetch/internal/testutil/testimage"
	"github.com/ocifetch/ocifetch/internal/testutil/testregistry"
	"github.com/ocifetch/ocifetch/policy"
)

// No test of this package reads the machine's own policy files
// ($HOME/.config/containers/policy.json, /etc/containers/policy.json):
// the lookup is pointed at a file that does not exist, for the commands
// run in-process and, through cliEnv, for the built binary. Tests of the
// lookup itself set it again.
func init() {
	os.Setenv(policy.EnvPaths, "/nonexistent/ocifetch-test/policy.json")
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCLIE2EPolicy(t *testing.T) {
	t.Parallel()
	c := cosigntest.New(t)
	reg := testregistry.Shared(t)
	key := c.GenerateKeyPair(t)
	push := func(repo string, flags ...[]string) (string, string) {
		img := testimage.Image(t, 2, "linux", "amd64", "")
		ref := reg.Host + "/" + repo + ":v1"
		d := testimage.PushImage(t, ref, img)
		for _, f := range flags {
			c.Sign(t, key, reg.Host+"/"+repo+"@"+d.String(), f...)
		}
		return ref, d.String()
	}
	signed, signedDigest := push("signed", nil)
	both, bothDigest := push("both", nil, []string{"--new-bundle-format"})
	unsigned, _ := push("unsigned")

	work := t.TempDir()
	scope := fmt.Sprintf("transports.docker[%q]", reg.Host)
	pol := writeFile(t, work, "policy.json", fmt.Sprintf(`{"default": [{"type": "reject"}], "transports": {"docker": {%q: [
		{"type": "sigstoreSigned", "keyPath": %q, "signedIdentity": {"type": "matchRepository"}}]}}}`, reg.Host, key.Public))
	env := cliEnv(t)

	type trustOut struct {
		Trust *struct {
			Policy, Scope string
			Signatures    []struct{ Format, Location, Key, Identity string }
		}
	}
	commands := func(ref string, n int) map[string][]string {
		dir := filepath.Join(work, fmt.Sprintf("target-%d", n))
		return map[string][]string{
			"resolve": {"resolve", "--json", ref},
			"pull":    {"pull", "--json", "--store", filepath.Join(work, "store"), ref},
			"unpack":  {"unpack", "--json", "--store", filepath.Join(work, "store"), ref, dir + "-unpack"},
			"bundle":  {"bundle", "--json", "--store", filepath.Join(work, "store"), ref, dir + "-bundle"},
		}
	}
	for name, args := range commands(unsigned, 1) {
		r := runBuilt(t, env, append(args, "--policy", pol)...)
		kind, msg := exactJSONError(t, r.stdout)
		if r.code != 8 || kind != string(errdefs.ErrUntrusted) || !strings.Contains(msg, scope) || !strings.Contains(msg, pol) {
			t.Errorf("%s of an unsigned image: exit %d, %s: %s", name, r.code, kind, msg)
		}
		if target := args[len(args)-1]; strings.Contains(target, "target-") {
			if _, err := os.Lstat(target); !os.IsNotExist(err) {
				t.Errorf("%s: the refused image's target was created", name)
			}
		}
	}
	for name, args := range commands(signed, 2) {
		r := runBuilt(t, env, append(args, "--policy", pol)...)
		var out trustOut
		if r.code != 0 || jsonUnmarshal(r.stdout, &out) != nil || out.Trust == nil || out.Trust.Scope != scope || out.Trust.Policy != pol ||
			len(out.Trust.Signatures) != 1 || out.Trust.Signatures[0].Key != key.Public || out.Trust.Signatures[0].Identity != reg.Host+"/signed" {
			t.Errorf("%s of a signed image: exit %d\n%s\n%s", name, r.code, r.stdout, r.stderr)
		}
	}

	// Without --json, the refusal is one line on stderr and the admission
	// says how it was admitted.
	r := runBuilt(t, env, "unpack", "--store", filepath.Join(work, "store"), "--policy", pol, signed, filepath.Join(work, "plain"))
	if r.code != 0 || !strings.Contains(r.stderr, "trust: admitted by "+pol+", scope "+scope) || !strings.Contains(r.stderr, "verified with "+key.Public) {
		t.Errorf("unpack: exit %d\n%s", r.code, r.stderr)
	}
	r = runBuilt(t, env, "pull", "--store", filepath.Join(work, "store"), "--policy", pol, unsigned)
	if r.code != 8 || len(lines(r.stderr)) != 1 || !strings.Contains(r.stderr, "refused by trust policy") {
		t.Errorf("pull of an unsigned image: exit %d\n%s", r.code, r.stderr)
	}

	// The default lookup: $OCIFETCH_POLICY_PATHS, else
	// $HOME/.config/containers/policy.json first; no file, no check.
	r = runBuilt(t, withEnv(env, policy.EnvPaths, pol), "resolve", unsigned)
	if r.code != 8 {
		t.Errorf("a policy found by the lookup was not applied: exit %d %s", r.code, r.stderr)
	}
	home := t.TempDir()
	writeFile(t, home, ".config/containers/policy.json", `{"default": [{"type": "reject"}]}`)
	r = runBuilt(t, withEnv(withEnv(env, policy.EnvPaths, ""), "HOME", home), "resolve", "--json", unsigned)
	if kind, msg := exactJSONError(t, r.stdout); r.code != 8 || !strings.Contains(msg, filepath.Join(home, ".config/containers/policy.json")) || !strings.Contains(msg, "scope default") {
		t.Errorf("$HOME's policy: exit %d %s %s", r.code, kind, msg)
	}
	if r = runBuilt(t, env, "resolve", unsigned); r.code != 0 {
		t.Errorf("no policy anywhere, yet: exit %d %s", r.code, r.stderr)
	}

	// --insecure-policy skips it, and says so.
	r = runBuilt(t, withEnv(env, policy.EnvPaths, pol), "unpack", "--insecure-policy", "--store", filepath.Join(work, "store"), unsigned, filepath.Join(work, "insecure"))
	if r.code != 0 || !strings.Contains(r.stderr, "--insecure-policy") || strings.Contains(r.stderr, "trust: admitted") {
		t.Errorf("--insecure-policy: exit %d\n%s", r.code, r.stderr)
	}
	r = runBuilt(t, env, "pull", "--insecure-policy", "--policy", pol, "--store", filepath.Join(work, "store"), unsigned)
	if r.code != 0 || !strings.Contains(r.stderr, "no trust policy is checked") {
		t.Errorf("--insecure-policy with --policy: exit %d\n%s", r.code, r.stderr)
	}

	// A policy that cannot be read is the user's error; one whose deciding
	// scope uses what ocifetch does not implement refuses, saying so.
	broken := writeFile(t, work, "broken.json", `{"transports": {}}`)
	r = runBuilt(t, env, "resolve", "--json", "--policy", broken, signed)
	if kind, msg := exactJSONError(t, r.stdout); r.code != 2 || kind != string(errdefs.ErrInvalidArgument) || !strings.Contains(msg, "default") {
		t.Errorf("a policy without default: exit %d %s %s", r.code, kind, msg)
	}
	unknown := writeFile(t, work, "unknown.json", fmt.Sprintf(`{"default": [{"type": "insecureAcceptAnything"}], "transports": {"docker": {%q: [{"type": "notaryV2Signed"}]}}}`, reg.Host+"/signed"))
	r = runBuilt(t, env, "pull", "--json", "--policy", unknown, "--store", filepath.Join(work, "store"), signed)
	if kind, msg := exactJSONError(t, r.stdout); r.code != 8 || !strings.Contains(msg, `"notaryV2Signed" is not known`) {
		t.Errorf("an unknown requirement type: exit %d %s %s", r.code, kind, msg)
	}
	if r = runBuilt(t, env, "pull", "--policy", unknown, "--store", filepath.Join(work, "store"), both); r.code != 0 {
		t.Errorf("an unknown type in another scope stopped this pull: exit %d %s", r.code, r.stderr)
	}

	// inspect lists the signatures: format, where, the identity claimed,
	// and which of the policy's keys made them.
	type inspected struct {
		Signatures []struct{ Format, Location, Signs, Document, Identity, Key, KeyHint, Problem string }
	}
	var ins inspected
	r = mustRun(t, env, "inspect", "--json", "--policy", pol, both)
	if err := jsonUnmarshal(r.stdout, &ins); err != nil || len(ins.Signatures) != 2 {
		t.Fatalf("inspect: %v\n%s", err, r.stdout)
	}
	classic, bundle := ins.Signatures[0], ins.Signatures[1]
	if classic.Format != "cosign simple signing" || !strings.HasPrefix(classic.Location, "tag sha256-") || classic.Identity != reg.Host+"/both" ||
		classic.Key != key.Public || classic.Signs != bothDigest || classic.Problem != "" {
		t.Errorf("inspect, classic signature: %+v", classic)
	}
	if bundle.Format != "sigstore bundle" || !strings.HasPrefix(bundle.Location, "referrer sha256:") || bundle.Key != key.Public || bundle.KeyHint == "" || bundle.Signs != bothDigest {
		t.Errorf("inspect, bundle: %+v", bundle)
	}
	r = mustRun(t, env, "inspect", "--json", signed)
	ins = inspected{}
	if err := jsonUnmarshal(r.stdout, &ins); err != nil || len(ins.Signatures) != 1 || ins.Signatures[0].Key != "" || ins.Signatures[0].Signs != signedDigest {
		t.Errorf("inspect without a policy: %v %+v", err, ins.Signatures)
	}
	r = mustRun(t, env, "inspect", "--policy", pol, both)
	if !strings.Contains(r.stdout, "signature  cosign simple signing") || !strings.Contains(r.stdout, "verified with "+key.Public) {
		t.Errorf("inspect:\n%s", r.stdout)
	}
	r = mustRun(t, env, "inspect", unsigned)
	if !strings.Contains(r.stdout, "signatures  none found") {
		t.Errorf("inspect of an unsigned image:\n%s", r.stdout)
	}
}

// TestCLIE2EPolicyOffline: a signed multi-platform image pulled for one
// platform under a policy verifies again with the registry gone
// (--pull never), from the signatures kept in the store, which name the
// index the tag resolved to; an image pulled without a policy and never
// verified is refused offline, its signatures never having been stored.
func TestCLIE2EPolicyOffline(t *testing.T) {
	t.Parallel()
	testutil.Full(t, "signing, a registry and a key pair of its own; policy's TestOfflineVerificationFromTheStore covers verifying from the store's signatures with no registry")
	c := cosigntest.New(t)
	reg := testregistry.Start(t)
	key := c.GenerateKeyPair(t)
	demo := pushDemo(t, reg.Host+"/offline/signed:v1")
	c.Sign(t, key, reg.Host+"/offline/signed@"+demo.digest.String())
	unsigned := reg.Host + "/offline/unsigned:v1"
	testimage.PushImage(t, unsigned, testimage.Image(t, 1, "linux", "amd64", ""))

	work := t.TempDir()
	store := filepath.Join(work, "store")
	pol := writeFile(t, work, "policy.json", fmt.Sprintf(`{"default": [{"type": "reject"}], "transports": {"docker": {%q: [
		{"type": "sigstoreSigned", "keyPath": %q, "signedIdentity": {"type": "matchRepository"}}]}}}`, reg.Host, key.Public))
	env := cliEnv(t)
	mustRun(t, env, "pull", "--quiet", "--store", store, "--platform", "linux/amd64", "--policy", pol, demo.ref)
	mustRun(t, env, "pull", "--quiet", "--store", store, "--insecure-policy", unsigned)
	reg.Stop()

	var out struct {
		Trust *struct {
			Scope      string
			Signatures []struct{ Location, Key string }
		}
	}
	r := runBuilt(t, env, "unpack", "--json", "--pull", "never", "--store", store, "--platform", "linux/amd64", "--policy", pol, demo.ref, filepath.Join(work, "rootfs"))
	if r.code != 0 || jsonUnmarshal(r.stdout, &out) != nil || out.Trust == nil || len(out.Trust.Signatures) != 1 ||
		out.Trust.Signatures[0].Location != "store" || out.Trust.Signatures[0].Key != key.Public {
		t.Fatalf("offline unpack of the signed image: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r = runBuilt(t, env, "unpack", "--json", "--pull", "never", "--store", store, "--policy", pol, unsigned, filepath.Join(work, "rootfs2"))
	if kind, _ := exactJSONError(t, r.stdout); r.code != 8 || kind != string(errdefs.ErrUntrusted) {
		t.Fatalf("offline unpack of the unsigned image: exit %d, kind %s\n%s", r.code, kind, r.stderr)
	}
	if _, err := os.Lstat(filepath.Join(work, "rootfs2")); !os.IsNotExist(err) {
		t.Error("the refused image's target was created")
	}
}
