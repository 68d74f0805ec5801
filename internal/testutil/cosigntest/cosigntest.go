// Package cosigntest runs the real cosign binary for tests: key pairs and
// signatures made by the tool users sign with, not by code of our own that
// could share our misreadings of the format.
//
//	c := cosigntest.New(t)
//	key := c.GenerateKeyPair(t)
//	c.Sign(t, key, reg.Host+"/app@"+digest)               // classic .sig tag
//	c.Sign(t, key, reg.Host+"/app@"+digest, "--new-bundle-format") // bundle referrer
//
// Signing is offline: no transparency log upload, no OIDC, no TUF. The
// binary is found by Binary; without one, New skips the test, except when
// $CI is set: CI must never pass by silently skipping.
package cosigntest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ocifetch/ocifetch/internal/testutil"
)

// EnvBinary names the environment variable that overrides the cosign
// binary.
const EnvBinary = "OCIFETCH_COSIGN_BIN"

// Install is the command that installs the version the tests are written
// against; .ci/run and scripts/test.sh run it.
const Install = "GOFLAGS= go install github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5"

// Binary finds cosign: $OCIFETCH_COSIGN_BIN, then cosign on $PATH, then
// $(go env GOBIN)/cosign and $(go env GOPATH)/bin/cosign.
func Binary() (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		return p, testutil.Executable(p)
	}
	if p, err := exec.LookPath("cosign"); err == nil {
		return p, nil
	}
	looked := []string{"$" + EnvBinary + " (unset)", "cosign on $PATH"}
	if out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output(); err == nil {
		lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
		var cands []string
		if len(lines) > 0 && lines[0] != "" {
			cands = append(cands, filepath.Join(lines[0], "cosign"))
		}
		if len(lines) > 1 {
			for _, gp := range filepath.SplitList(lines[1]) {
				cands = append(cands, filepath.Join(gp, "bin", "cosign"))
			}
		}
		for _, c := range cands {
			if testutil.Executable(c) == nil {
				return c, nil
			}
			looked = append(looked, c)
		}
	}
	return "", fmt.Errorf("no cosign binary; looked at %s (install it with `%s`, or set $%s)", strings.Join(looked, ", "), Install, EnvBinary)
}

// Cosign runs one cosign binary in a private home directory.
type Cosign struct {
	bin  string
	home string
}

// New finds cosign, or skips t (fails it when $CI is set).
func New(t testing.TB) *Cosign {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		testutil.Missing(t, "cosigntest: %v", err)
		return nil
	}
	return &Cosign{bin: bin, home: t.TempDir()}
}

// Key is a key pair cosign generated.
type Key struct {
	// Private is cosign.key (encrypted with an empty password); Public is
	// cosign.pub, the PEM public key a policy names.
	Private, Public string
}

// GenerateKeyPair makes a key pair in a directory of its own.
func (c *Cosign) GenerateKeyPair(t testing.TB) Key {
	t.Helper()
	return c.GenerateKeyPairIn(t, t.TempDir())
}

// GenerateKeyPairIn makes a key pair in dir, an existing directory that
// may outlive the test: key pairs a test binary's tests share (cosign
// takes half a second to make one), in a directory its TestMain removes.
func (c *Cosign) GenerateKeyPairIn(t testing.TB, dir string) Key {
	t.Helper()
	c.Run(t, dir, "generate-key-pair")
	return Key{Private: filepath.Join(dir, "cosign.key"), Public: filepath.Join(dir, "cosign.pub")}
}

// Sign signs the image ref (by digest) with key, against a plain-HTTP
// loopback registry, without a transparency log. extra flags are added,
// e.g. "--new-bundle-format" or "--sign-container-identity=NAME".
func (c *Cosign) Sign(t testing.TB, key Key, ref string, extra ...string) {
	t.Helper()
	args := append([]string{"sign", "--key", key.Private, "--tlog-upload=false", "--allow-http-registry", "--yes"}, extra...)
	c.Run(t, "", append(args, ref)...)
}

// Attest attaches an in-toto attestation of a custom predicate (the JSON
// document predicate) to ref, signed with key, as a bundle referrer.
func (c *Cosign) Attest(t testing.TB, key Key, ref, predicate string) {
	t.Helper()
	c.Run(t, "", "attest", "--key", key.Private, "--type", "custom", "--predicate", predicate,
		"--new-bundle-format", "--tlog-upload=false", "--allow-http-registry", "--yes", ref)
}

// Run runs cosign with args in dir ("" for the home directory) and fails t
// when it fails. It returns stdout.
func (c *Cosign) Run(t testing.TB, dir string, args ...string) string {
	t.Helper()
	out, err := c.Exec(dir, args...)
	if err != nil {
		t.Fatalf("cosign %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// Exec is Run without a testing.T.
func (c *Cosign) Exec(dir string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	if dir == "" {
		dir = c.home
	}
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+c.home, "COSIGN_PASSWORD=", "COSIGN_YES=true",
		"DOCKER_CONFIG="+c.home, "SIGSTORE_NO_CACHE=true", "TUF_ROOT="+filepath.Join(c.home, "tuf"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%v\n%s", err, stderr.String())
	}
	return stdout.String(), nil
}
