package main

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ocifetch/ocifetch/internal/testutil"
	"github.com/ocifetch/ocifetch/internal/testutil/hostile"
	"github.com/ocifetch/ocifetch/internal/testutil/testimage"
	"github.com/ocifetch/ocifetch/internal/testutil/testregistry"
)

// builtVersion is the main module's version as the build recorded it in
// the binary ("devel" when go build had none).
func builtVersion(t *testing.T, bin string) string {
	t.Helper()
	out, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == "mod" && f[1] == "github.com/ocifetch/ocifetch" {
			if f[2] == "(devel)" {
				return "devel"
			}
			return f[2]
		}
	}
	t.Fatalf("no main module in:\n%s", out)
	return ""
}

// The CLI sends its version as the User-Agent, on every request, and
// inspect says which host answered each document.
func TestCLIE2EUserAgentAndServedBy(t *testing.T) {
	t.Parallel()
	reg := hostile.New(t)
	ref := reg.PutImage(t, "ua/app", "v1", testimage.Image(t, 1, "linux", "amd64", ""))
	env := cliEnv(t)
	r := mustRun(t, env, "inspect", ref)
	want := "ocifetch/" + builtVersion(t, builtCLI(t))
	for _, q := range reg.Requests() {
		if ua := q.Header.Get("User-Agent"); ua != want {
			t.Fatalf("%s %s %s: User-Agent %q, want %q", q.Method, q.Kind, q.Ref, ua, want)
		}
	}
	if !strings.Contains(r.stdout, "served") || !strings.Contains(r.stdout, "manifest sha256:") || !strings.Contains(r.stdout, "by http://"+reg.Host) {
		t.Fatalf("inspect does not say which host answered:\n%s", r.stdout)
	}
	var out struct {
		Served []struct{ Document, Digest, From string } `json:"served"`
	}
	runJSON(t, env, &out, "inspect", "--json", ref)
	if len(out.Served) != 2 || out.Served[0].Document != "manifest" || out.Served[1].Document != "config" || out.Served[0].From != "http://"+reg.Host {
		t.Fatalf("inspect --json served: %+v", out.Served)
	}
}

// A token server on localhost for a registry on 127.0.0.1 gets no
// credentials without --allow-token-host, and the error says so.
func TestCLIE2ERealmOnAnotherLoopbackHost(t *testing.T) {
	t.Parallel()
	const user, pass = "e2e", "pa55w0rd"
	reg := testregistry.Start(t, testregistry.WithTokenAuth(user, pass))
	ref := reg.Host + "/realm/app:v1"
	testimage.PushImage(t, ref, testimage.Image(t, 1, "linux", "amd64", ""), remote.WithAuth(&authn.Basic{Username: user, Password: pass}))
	env := cliEnv(t)
	authfile := writeAuthfile(t, user, pass, reg.Host)
	before := len(reg.TokenLog())

	r := runBuilt(t, env, "resolve", "--json", "--authfile", authfile, ref)
	var e struct {
		Error struct{ Kind, Message string } `json:"error"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &e); err != nil || r.code != 3 || e.Error.Kind != "unauthorized" ||
		!strings.Contains(e.Error.Message, "--allow-token-host "+reg.TokenHost) {
		t.Fatalf("exit %d, %s", r.code, r.stdout)
	}
	for _, q := range reg.TokenLog()[before:] {
		if q.Credentials {
			t.Fatalf("the token server on localhost got credentials: %+v", q)
		}
	}
	mustRun(t, env, "resolve", "--authfile", authfile, "--allow-token-host", reg.TokenHost, ref)
	var sent bool
	for _, q := range reg.TokenLog()[before:] {
		sent = sent || q.Credentials
	}
	if !sent {
		t.Fatal("with --allow-token-host the credentials did not go to the token server")
	}
}

// A password in a hosts.toml URL is refused and never printed, --json
// included; unknown keys are warned about on standard error.
func TestCLIE2EHostsToml(t *testing.T) {
	t.Parallel()
	reg := hostile.New(t)
	ref := reg.PutImage(t, "hosts/app", "v1", testimage.Image(t, 1, "linux", "amd64", ""))
	env := cliEnv(t)
	write := func(body string) string {
		dir := t.TempDir()
		testutil.WriteHostsFile(t, dir, reg.Host, body)
		return dir
	}
	secret := write("[host.\"http://mirror:S3CRETPW@" + reg.Host + "\"]\n")
	for _, args := range [][]string{{"resolve", "--json"}, {"resolve"}, {"inspect", "--json"}, {"pull", "--json", "--store", t.TempDir()}} {
		r := runBuilt(t, env, append(args, "--hosts-dir", secret, ref)...)
		if r.code != 2 || strings.Contains(r.stdout+r.stderr, "S3CRETPW") || !strings.Contains(r.stdout+r.stderr, "user info") {
			t.Fatalf("%v: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
		}
	}
	unknown := write("proxy = \"http://proxy.example\"\n")
	r := mustRun(t, env, "resolve", "--hosts-dir", unknown, ref)
	if !strings.Contains(r.stderr, "warning: ") || !strings.Contains(r.stderr, "unknown key proxy") {
		t.Fatalf("no warning about the unknown key: %q", r.stderr)
	}
}
