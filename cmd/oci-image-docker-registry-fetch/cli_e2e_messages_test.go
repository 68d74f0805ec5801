package main

import (
	"archive/tar"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/testutil/hostile"
	"github.com/ocifetch/ocifetch/internal/testutil/netns"
	"github.com/ocifetch/ocifetch/internal/testutil/testcerts"
	"github.com/ocifetch/ocifetch/internal/testutil/testimage"
	"github.com/ocifetch/ocifetch/internal/testutil/testregistry"
)

// leaks are pieces of library text that must never reach a user: the
// internals of go-containerregistry, net/http, crypto/tls and the
// resolver.
var leaks = []string{
	"HEAD responses have no body", "use GET for details", "name.Insecure", "could not parse reference",
	"dial tcp", "lookup ", "on 127.0.0.53", "http: server gave", "tls: first record", "unexpected status code",
	"giving up after", "x509:", "Get \"", "Head \"",
}

// msgCase is one failure a user can provoke, with the exact one-line
// message the CLI must print for it.
type msgCase struct {
	name string
	args []string // without --json
	kind errdefs.Kind
	exit int
	msg  string
}

// checkMessage runs c with and without --json: with it, one error object
// on stdout and nothing on stderr; without, one line on stderr; the kind,
// the exit status and the exact message each time, and no library text.
func checkMessage(t *testing.T, bin string, env []string, c msgCase) {
	t.Helper()
	args := append([]string{c.args[0], "--json"}, c.args[1:]...)
	r, err := execCLI(bin, env, args...)
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	kind, msg := exactJSONError(t, r.stdout)
	if kind != string(c.kind) || r.code != c.exit || msg != c.msg {
		t.Errorf("%s: %v:\n got kind %s exit %d %q\nwant kind %s exit %d %q", c.name, args, kind, r.code, msg, c.kind, c.exit, c.msg)
	}
	if r.stderr != "" {
		t.Errorf("%s: stderr %q with --json", c.name, r.stderr)
	}
	for _, l := range leaks {
		if strings.Contains(msg, l) {
			t.Errorf("%s: the message leaks library text %q: %s", c.name, l, msg)
		}
	}
	r, err = execCLI(bin, env, c.args...)
	if err != nil {
		t.Fatalf("%v: %v", c.args, err)
	}
	if want := prog + " " + c.args[0] + ": " + c.msg + "\n"; r.stderr != want || r.code != c.exit || r.stdout != "" {
		t.Errorf("%s: %v: exit %d stdout %q stderr\n %q, want\n %q", c.name, c.args, r.code, r.stdout, r.stderr, want)
	}
}

// msgEnv is cliEnv with a HOME of its own, so that where credentials are
// looked for is the same on every machine.
func msgEnv(t *testing.T) (env []string, looked string) {
	home := t.TempDir()
	var out []string
	vals := map[string]string{}
	for _, kv := range cliEnv(t) {
		k, v, _ := strings.Cut(kv, "=")
		if k == "HOME" {
			continue
		}
		vals[k] = v
		out = append(out, kv)
	}
	out = append(out, "HOME="+home)
	looked = strings.Join([]string{
		filepath.Join(vals["DOCKER_CONFIG"], "config.json"), filepath.Join(home, ".docker", "config.json"),
		filepath.Join(vals["XDG_RUNTIME_DIR"], "containers", "auth.json"), filepath.Join(vals["XDG_CONFIG_HOME"], "containers", "auth.json"),
	}, ", ")
	return out, looked
}

// Every failure of talking to a registry that a user can provoke on this
// machine, against a real registry process (and the hostile one for what
// a registry process will not do): kind, exit status and the exact
// one-line message, which says what failed and what to do, in this
// program's words.
func TestCLIE2EErrorMessages(t *testing.T) {
	t.Parallel()
	bin := builtCLI(t)
	env, looked := msgEnv(t)
	reg := testregistry.Start(t)
	pushDemo(t, reg.Host+"/e2e/msg:v1")
	const user, pass = "e2e", "s3cret"
	basic := testregistry.Start(t, testregistry.WithBasicAuth(user, pass))
	token := testregistry.Start(t, testregistry.WithTokenAuth(user, pass))
	down := testregistry.Start(t)
	downHost := down.Host
	down.Stop()
	wrongBasic := writeAuthfile(t, user, "wrong", basic.Host)
	wrongToken := writeAuthfile(t, user, "wrong", token.Host)

	hr := hostile.New(t)
	hr.PutImage(t, "five", "v1", testimage.Image(t, 1, "linux", "amd64", ""))
	hr.Intercept(func(w http.ResponseWriter, r *http.Request, q hostile.Request) bool {
		switch {
		case q.Kind == hostile.Manifest && q.Repo == "gone":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}`)
			return true
		case q.Kind == hostile.Manifest && q.Repo == "five":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprint(w, `{"errors":[{"code":"UNKNOWN","message":"boom"}]}`)
			return true
		}
		return false
	})
	zero := "sha256:" + strings.Repeat("0", 64)
	host, _, _ := net.SplitHostPort(reg.Host)

	cases := []msgCase{
		{"wrong tag", []string{"resolve", reg.Host + "/e2e/msg:nope"}, errdefs.ErrNotFound, exitNotFound,
			"tag nope not found in " + reg.Host + "/e2e/msg"},
		{"wrong repository", []string{"pull", "--store", t.TempDir(), reg.Host + "/e2e/nothing:v1"}, errdefs.ErrNotFound, exitNotFound,
			"tag v1 not found in " + reg.Host + "/e2e/nothing"},
		{"unknown repository", []string{"inspect", hr.Host + "/gone:v1"}, errdefs.ErrNotFound, exitNotFound,
			"tag v1 not found in " + hr.Host + "/gone: the registry has no such repository; check the name"},
		{"unknown digest", []string{"resolve", reg.Host + "/e2e/msg@" + zero}, errdefs.ErrNotFound, exitNotFound,
			"manifest " + zero + " not found in " + reg.Host + "/e2e/msg"},
		{"no credentials", []string{"resolve", basic.Host + "/e2e/private:v1"}, errdefs.ErrUnauthorized, exitNotFound,
			"no credentials for " + basic.Host + " (looked in " + looked + "), and it wants them for e2e/private (HTTP 401 Unauthorized); log in (docker login, podman login) or give --authfile FILE"},
		{"credentials refused", []string{"resolve", "--authfile", wrongBasic, basic.Host + "/e2e/private:v1"}, errdefs.ErrUnauthorized, exitNotFound,
			basic.Host + " refused the credentials from " + wrongBasic + " for e2e/private (HTTP 401 Unauthorized); check or renew them for " + basic.Host + " there"},
		{"credentials refused by the token server", []string{"pull", "--store", t.TempDir(), "--allow-token-host", "localhost", "--authfile", wrongToken, token.Host + "/e2e/private:v1"}, errdefs.ErrUnauthorized, exitNotFound,
			token.Host + " refused the credentials from " + wrongToken + " for e2e/private (HTTP 401 Unauthorized: invalid username or password); check or renew them for " + token.Host + " there"},
		{"connection refused", []string{"resolve", downHost + "/e2e/msg:v1"}, errdefs.ErrNetwork, errdefs.ExitNetwork,
			"cannot connect to " + downHost + ": connection refused; check that the registry runs and the port is right"},
		{"server error", []string{"resolve", hr.Host + "/five:v1"}, errdefs.ErrNetwork, errdefs.ExitNetwork,
			"GET " + hr.URL + "/v2/five/manifests/v1: HTTP 500 Internal Server Error: boom; the registry failed, try again later (gave up after 3 attempts without progress)"},
		{"reference with a scheme", []string{"resolve", "http://" + reg.Host + "/e2e/msg:v1"}, errdefs.ErrInvalidArgument, exitUsage,
			`invalid image reference "http://` + reg.Host + `/e2e/msg:v1": a reference has no scheme, write ` + reg.Host + "/e2e/msg:v1; for plain HTTP, add --insecure-registry " + host},
		{"bad reference", []string{"resolve", "Not/A:b:c"}, errdefs.ErrInvalidArgument, exitUsage,
			`invalid image reference "Not/A:b:c": want [HOST[:PORT]/]PATH[:TAG][@DIGEST], PATH in lower case, e.g. docker.io/library/alpine:3.20`},
		{"--insecure-registry with a scheme", []string{"resolve", "--insecure-registry", "http://" + reg.Host, reg.Host + "/e2e/msg:v1"}, errdefs.ErrInvalidArgument, exitUsage,
			"--insecure-registry http://" + reg.Host + ": give the host without http://: --insecure-registry " + host + " (every port) or --insecure-registry " + reg.Host},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			checkMessage(t, bin, env, c)
		})
	}
}

// The failures that need names of their own: a registry that speaks
// plain HTTP, spoken to over HTTPS, says what to allow, and
// --insecure-registry HOST allows every port of HOST (HOST:PORT only that
// port); a name that does not resolve, and a certificate nobody trusts.
// They run in a network namespace with a hosts file and a DNS server of
// the test's, so that the messages are the same on every machine.
func TestCLIE2ENetworkMessages(t *testing.T) {
	bin := builtCLI(t)
	t.Setenv("OCIFETCH_TEST_CLI", bin)
	if !netns.Run(t, map[string]string{"plain.test": netns.Private1, "tls.test": netns.Private2}) {
		return
	}
	bin = os.Getenv("OCIFETCH_TEST_CLI")
	serveNXDOMAIN(t)
	env, _ := msgEnv(t)
	plain := hostile.New(t, hostile.WithAddr(netns.Private1+":0"))
	ref := plain.PutImage(t, "app", "v1", testimage.Image(t, 1, "linux", "amd64", ""))
	_, port, _ := net.SplitHostPort(plain.Host)
	named := "plain.test:" + port + "/app:v1"
	_ = ref
	certs := testcerts.New(t, t.TempDir(), "tls.test")
	secure := hostile.New(t, hostile.WithAddr(netns.Private2+":0"), hostile.WithTLS(certs.ServerConfig(false)))
	secure.PutImage(t, "app", "v1", testimage.Image(t, 1, "linux", "amd64", ""))
	_, tport, _ := net.SplitHostPort(secure.Host)

	for _, c := range []msgCase{
		{"plain HTTP over HTTPS", []string{"resolve", named}, errdefs.ErrNetwork, errdefs.ExitNetwork,
			"plain.test:" + port + " answered in plain HTTP, not HTTPS: if plain HTTP to it is what you want, allow it with --insecure-registry plain.test"},
		{"another port allowed", []string{"resolve", "--insecure-registry", "plain.test:1", named}, errdefs.ErrNetwork, errdefs.ExitNetwork,
			"plain.test:" + port + " answered in plain HTTP, not HTTPS: if plain HTTP to it is what you want, allow it with --insecure-registry plain.test"},
		{"no such host", []string{"resolve", "nohost.invalid/app:v1"}, errdefs.ErrNetwork, errdefs.ExitNetwork,
			"cannot find the host nohost.invalid: no such host; check the registry's name"},
		{"untrusted certificate", []string{"resolve", "tls.test:" + tport + "/app:v1"}, errdefs.ErrNetwork, errdefs.ExitNetwork,
			"the TLS certificate of tls.test:" + tport + " is signed by an authority this machine does not trust; add the CA to the system's trust store or give it in a hosts directory (--hosts-dir, ca = ...)"},
	} {
		checkMessage(t, bin, env, c)
	}
	for _, allow := range []string{"plain.test", "PLAIN.test", "plain.test:" + port} {
		r, err := execCLI(bin, env, "resolve", "--insecure-policy", "--insecure-registry", allow, named)
		if err != nil || r.code != 0 {
			t.Errorf("--insecure-registry %s: %v exit %d\n%s", allow, err, r.code, r.stderr)
		}
	}
}

// serveNXDOMAIN makes this network namespace's resolver a DNS server of
// the test's that answers every question "no such name" (NXDOMAIN), as a
// resolver answers for .invalid, and points /etc/resolv.conf at it (the
// mount namespace is the test's own).
func serveNXDOMAIN(t *testing.T) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:53")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n < 12 {
				continue
			}
			q := buf[:n]
			// The question ends after its name's labels and 4 bytes of
			// type and class.
			i := 12
			for i < n && q[i] != 0 {
				i += int(q[i]) + 1
			}
			i += 5
			if i > n {
				continue
			}
			resp := append([]byte(nil), q[:i]...)
			flags := binary.BigEndian.Uint16(resp[2:]) | 0x8000 | 0x0080 // QR, RA
			flags = flags&^0x000f | 3                                    // NXDOMAIN
			binary.BigEndian.PutUint16(resp[2:], flags)
			binary.BigEndian.PutUint16(resp[4:], 1) // one question
			binary.BigEndian.PutUint16(resp[6:], 0)
			binary.BigEndian.PutUint16(resp[8:], 0)
			binary.BigEndian.PutUint16(resp[10:], 0)
			pc.WriteTo(resp, addr)
		}
	}()
	f := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(f, []byte("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(f, "/etc/resolv.conf", "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind-mounting resolv.conf: %v", err)
	}
}

// A message that carries text from an image carries it escaped on a
// terminal, even text a library wrapped raw: a hard link whose target is
// an escape sequence (one that retitles a terminal window and rings its
// bell) failed with the lstat error naming the target byte for byte.
func TestCLIE2EErrorMessageEscapesImageText(t *testing.T) {
	t.Parallel()
	bin := builtCLI(t)
	env := cliEnv(t)
	reg := testregistry.Start(t)
	repo := reg.Host + "/e2e/escape"
	const target = "\x1b]0;pwned\anope"
	pushRawImage(t, repo, "v1", "", []rawLayer{{
		data:      gzipBytes(t, makeTar(t, tarFile{name: "h", link: target, typ: tar.TypeLink})),
		mediaType: ocispec.MediaTypeImageLayerGzip,
	}}, nil)
	for _, json := range []bool{false, true} {
		args := []string{"unpack", "--store", t.TempDir(), "-q"}
		if json {
			args = append(args, "--json")
		}
		args = append(args, repo+":v1", filepath.Join(t.TempDir(), "rootfs"))
		r, err := execCLI(bin, env, args...)
		if err != nil {
			t.Fatal(err)
		}
		out := r.stderr
		if json {
			kind, msg := exactJSONError(t, r.stdout)
			if kind != string(errdefs.ErrLayerInvalid) {
				t.Errorf("--json: kind %s, want %s: %s", kind, errdefs.ErrLayerInvalid, msg)
			}
			out = msg
		}
		if r.code != errdefs.ExitCode(errdefs.ErrLayerInvalid) {
			t.Errorf("json %v: exit %d, want %d", json, r.code, errdefs.ExitCode(errdefs.ErrLayerInvalid))
		}
		line := strings.TrimSuffix(out, "\n")
		if strings.ContainsAny(line, "\x1b\a\n") || !strings.Contains(line, `\x1b]0;pwned\anope`) {
			t.Errorf("json %v: the message does not carry the link target escaped, and only so: %q", json, out)
		}
	}
}

// verify and rebuild of a directory nothing was unpacked into, or that
// does not exist, say which and what to do: they said only "no apply
// state in DIR/.NAME.ocifetch: open ...: no such file or directory".
func TestCLIE2ENoUnpackMessages(t *testing.T) {
	t.Parallel()
	bin := builtCLI(t)
	env := cliEnv(t)
	work := t.TempDir()
	empty := filepath.Join(work, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(work, "missing")
	noState := filepath.Join(work, "nostate")
	holdsNone := empty + " holds no unpack: there is no state directory " + filepath.Join(work, ".empty.ocifetch") +
		" beside it; unpack an image into it first, or give its state directory with --state DIR"
	cases := []msgCase{
		{"verify of a tree never unpacked", []string{"verify", empty}, errdefs.ErrNotFound, exitNotFound, holdsNone},
		{"rebuild of a tree never unpacked", []string{"rebuild", "--all", "--check", empty}, errdefs.ErrNotFound, exitNotFound, holdsNone},
		{"rebuild --compressed of a tree never unpacked", []string{"rebuild", "--compressed", "--all", "--check", empty}, errdefs.ErrNotFound, exitNotFound, holdsNone},
		{"verify of a missing directory", []string{"verify", missing}, errdefs.ErrNotFound, exitNotFound,
			missing + " does not exist; name the directory an image was unpacked into"},
		{"rebuild with a missing --state", []string{"rebuild", "--state", noState, "--layer", "1", "-o", filepath.Join(work, "l.tar"), empty}, errdefs.ErrNotFound, exitNotFound,
			"state directory " + noState + " does not exist; give --state the directory unpack recorded " + empty + " in"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checkMessage(t, bin, env, c)
		})
	}
}

// A flag value that does not parse as a number or a boolean is named in
// this program's words: the message quoted strconv ("strconv.ParseInt:
// parsing \"abc\": invalid syntax").
func TestCLIE2EFlagValueMessages(t *testing.T) {
	t.Parallel()
	bin := builtCLI(t)
	env := cliEnv(t)
	target := filepath.Join(t.TempDir(), "rootfs")
	for _, c := range []struct{ flag, value, want string }{
		{"--jobs", "abc", `invalid argument "abc" for "--jobs" flag: want a whole number`},
		{"--jobs", "99999999999999999999", `invalid argument "99999999999999999999" for "--jobs" flag: the number is too large`},
		{"--max-layer-entries", "1.5", `invalid argument "1.5" for "--max-layer-entries" flag: want a whole number`},
		{"--quiet", "maybe", `invalid argument "maybe" for "-q, --quiet" flag: want true or false`},
	} {
		r, err := execCLI(bin, env, "unpack", "--json", c.flag+"="+c.value, "127.0.0.1:1/x:1", target)
		if err != nil {
			t.Fatal(err)
		}
		kind, msg := exactJSONError(t, r.stdout)
		if want := c.want + "; see '" + prog + " unpack --help'"; kind != string(errdefs.ErrInvalidArgument) || r.code != exitUsage || msg != want {
			t.Errorf("%s=%s: kind %s exit %d %q, want kind %s exit %d %q", c.flag, c.value, kind, r.code, msg, errdefs.ErrInvalidArgument, exitUsage, want)
		}
	}
}

// An image whose config names no platform (crane append without a base
// makes one) resolves with platform "", as images lists it, and fits no
// explicit platform: it printed "linux/" (the empty platform given this
// machine's OS) in both, "is an image for linux/, not linux/amd64".
func TestCLIE2EResolveNoPlatform(t *testing.T) {
	t.Parallel()
	bin := builtCLI(t)
	env := cliEnv(t)
	reg := testregistry.Shared(t)
	ref := reg.Host + "/e2e/noplatform:v1"
	testimage.PushImage(t, ref, testimage.Image(t, 1, "", "", ""))

	var out struct {
		Platform *string `json:"platform"`
	}
	runJSON(t, env, &out, "resolve", "--json", ref)
	if out.Platform == nil || *out.Platform != "" {
		t.Errorf("resolve --json: platform %v, want \"\"", out.Platform)
	}
	r, err := execCLI(bin, env, "resolve", ref)
	if err != nil {
		t.Fatal(err)
	}
	if r.code != 0 || !strings.Contains(r.stdout, "platform   none: the config names no os and no architecture\n") || strings.Contains(r.stdout, "linux/") {
		t.Errorf("resolve: exit %d, stdout:\n%s", r.code, r.stdout)
	}
	checkMessage(t, bin, env, msgCase{"explicit platform", []string{"resolve", "--platform", "linux/amd64", ref}, errdefs.ErrPlatformNotFound, exitNotFound,
		ref + " names no platform (its config has no os and no architecture), so it cannot be checked against linux/amd64; name no platform to take it as it is"})
}

// The platform an image's config or index names is the image's string:
// resolve and pull --platform all printed it raw, so "linux\x1b[2J\n
// verify: ok" cleared the terminal and forged a line of output. It is
// quoted now, as inspect and images show it.
func TestCLIE2EPlatformIsNotPrintedRaw(t *testing.T) {
	t.Parallel()
	bin := builtCLI(t)
	env := cliEnv(t)
	reg := testregistry.Shared(t)
	evil := "linux\x1b[2j\nverify: ok"
	ref := reg.Host + "/e2e/ctlplatform:v1"
	testimage.PushImage(t, ref, testimage.Image(t, 1, evil, "amd64", ""))
	all := reg.Host + "/e2e/ctlplatform:all"
	idx, _ := testimage.Index(t, testimage.Platform{OS: evil, Arch: "amd64"})
	testimage.PushIndex(t, all, idx)
	for _, args := range [][]string{{"resolve", ref}, {"pull", "--platform", "all", all}} {
		r, err := execCLI(bin, env, args...)
		if err != nil {
			t.Fatal(err)
		}
		out := r.stdout + r.stderr
		if r.code != 0 || strings.ContainsAny(out, "\x1b") || strings.Contains(out, "\nverify: ok") || !strings.Contains(out, `"linux\x1b[2j\nverify: ok/amd64"`) {
			t.Errorf("%v: exit %d, output:\n%q", args, r.code, out)
		}
	}
}
