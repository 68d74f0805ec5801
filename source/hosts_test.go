package source_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/testutil"
	"github.com/ocifetch/ocifetch/internal/testutil/hostile"
	"github.com/ocifetch/ocifetch/internal/testutil/testcerts"
	"github.com/ocifetch/ocifetch/internal/testutil/testimage"
	"github.com/ocifetch/ocifetch/resolve"
	"github.com/ocifetch/ocifetch/source"
)

// Docker Hub's credentials live under the config key
// "https://index.docker.io/v1/". A hosts.toml for docker.io (or
// _default) that names another server must not make them go there: the
// endpoint used to keep docker.io as its credential host.
func TestHubCredentialsNeverReachAServerHost(t *testing.T) {
	t.Parallel()
	for _, dir := range []string{"docker.io", "_default"} {
		t.Run(dir, func(t *testing.T) {
			reg := hostile.New(t)
			reg.ChallengeBasic() // a client with credentials for it sends them
			reg.PutImage(t, "library/app", "v1", testimage.Image(t, 1, "linux", "amd64", ""))
			hosts := t.TempDir()
			testutil.WriteHostsFile(t, hosts, dir, "server = \"http://"+reg.Host+"\"\n")
			authfile := writeAuthfile(t, "https://index.docker.io/v1/", "hubuser", "HUBSECRET")
			res, err := resolve.Resolve(context.Background(), "docker.io/library/app:v1", resolve.WithAuthfile(authfile), resolve.WithHostsDir(hosts))
			if err != nil {
				t.Fatal(err)
			}
			if res.Manifest.From != "http://"+reg.Host {
				t.Fatalf("manifest served by %q", res.Manifest.From)
			}
			if got := authHeaders(reg.Requests()); len(got) != 0 {
				t.Fatalf("the server = host received credentials: %v", got)
			}
			// The control: credentials stored for the server's own name
			// do go to it, so the check above can see them.
			own := writeAuthfile(t, reg.Host, "mirroruser", "pw")
			if _, err := resolve.Resolve(context.Background(), "docker.io/library/app:v1", resolve.WithAuthfile(own), resolve.WithHostsDir(hosts)); err != nil {
				t.Fatal(err)
			}
			if got := authHeaders(reg.Requests()); len(got) == 0 {
				t.Fatal("the server's own credentials were not sent either: the test proves nothing")
			}
		})
	}
}

// capabilities apply to every request: a ["resolve"] mirror answers tag
// lookups only, never a GET by digest (documents or blobs); [] and absent
// mean every capability, as in containerd.
func TestMirrorCapabilities(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, caps           string
		mirrorPulls, tagsOK  bool
		upstreamServesBlobs  bool
		upstreamResolvesTags bool
	}{
		{name: "resolve only", caps: `capabilities = ["resolve"]`, tagsOK: true, upstreamServesBlobs: true},
		{name: "pull only", caps: `capabilities = ["pull"]`, mirrorPulls: true, upstreamResolvesTags: true},
		{name: "empty list means all", caps: `capabilities = []`, mirrorPulls: true, tagsOK: true},
		{name: "absent means all", caps: ``, mirrorPulls: true, tagsOK: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			upstream, ref, img := image(t, "caps/app")
			mirror := hostile.New(t)
			mirror.PutImage(t, "caps/app", "v1", img)
			hosts := t.TempDir()
			testutil.WriteHostsFile(t, hosts, upstream.Host, "[host.\"http://"+mirror.Host+"\"]\n  "+tc.caps+"\n")
			res := mustResolve(t, ref, source.WithHostsDir(hosts))
			for i := range res.Layers {
				if _, err := readLayer(t, res, i); err != nil {
					t.Fatal(err)
				}
			}
			var byDigest, byTag int
			for _, q := range mirror.Requests() {
				switch {
				case q.Kind == hostile.Blob || (q.Kind == hostile.Manifest && strings.HasPrefix(q.Ref, "sha256:")):
					byDigest++
				case q.Kind == hostile.Manifest:
					byTag++
				}
			}
			if (byDigest > 0) != tc.mirrorPulls {
				t.Errorf("the mirror got %d requests by digest; want some: %v", byDigest, tc.mirrorPulls)
			}
			if (byTag > 0) != tc.tagsOK {
				t.Errorf("the mirror got %d tag requests; want some: %v", byTag, tc.tagsOK)
			}
			if got := upstream.Count(hostile.Blob, "") > 0; got != tc.upstreamServesBlobs {
				t.Errorf("upstream served blobs: %v, want %v", got, tc.upstreamServesBlobs)
			}
			var upTags int
			for _, q := range upstream.Requests() {
				if q.Kind == hostile.Manifest && q.Ref == "v1" {
					upTags++
				}
			}
			if (upTags > 0) != tc.upstreamResolvesTags {
				t.Errorf("upstream got %d tag requests; want some: %v", upTags, tc.upstreamResolvesTags)
			}
		})
	}
}

// A mirror whose HEAD answer does not hold up (wrong Content-Type, wrong
// Content-Length) is skipped for that document and the upstream is asked,
// for a tag and for a pinned digest alike; it used to fail the resolve.
func TestWrongHEADFromAMirrorFallsBack(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		lie   func(h http.Header, body []byte)
		pin   bool
		wrong string
	}{
		{"wrong Content-Type, tag", func(h http.Header, _ []byte) { h.Set("Content-Type", "application/vnd.oci.image.index.v1+json") }, false, ""},
		{"wrong Content-Type, pinned", func(h http.Header, _ []byte) { h.Set("Content-Type", "application/vnd.oci.image.index.v1+json") }, true, ""},
		{"wrong Content-Length, tag", func(h http.Header, b []byte) { h.Set("Content-Length", "7") }, false, ""},
		{"wrong Content-Length, pinned", func(h http.Header, b []byte) { h.Set("Content-Length", "123456") }, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			upstream, ref, img := image(t, "head/app")
			raw, _ := img.RawManifest()
			d, _ := img.Digest()
			if tc.pin {
				ref = upstream.Host + "/head/app@" + d.String()
			}
			mirror := hostile.New(t)
			mirror.PutImage(t, "head/app", "v1", img)
			mirror.Intercept(func(w http.ResponseWriter, r *http.Request, q hostile.Request) bool {
				if q.Kind != hostile.Manifest || r.Method != http.MethodHead {
					return false
				}
				w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
				w.Header().Set("Docker-Content-Digest", d.String())
				w.Header().Set("Content-Length", strconv.Itoa(len(raw)))
				tc.lie(w.Header(), raw)
				w.WriteHeader(http.StatusOK)
				return true
			})
			hosts := t.TempDir()
			testutil.WriteHostsFile(t, hosts, upstream.Host, "[host.\"http://"+mirror.Host+"\"]\n")
			res := mustResolve(t, ref, source.WithHostsDir(hosts))
			if res.Manifest.Descriptor.Digest.String() != d.String() || res.Manifest.Descriptor.Size != int64(len(raw)) {
				t.Fatalf("resolved %+v", res.Manifest.Descriptor)
			}
			if upstream.Count(hostile.Manifest, "") == 0 {
				t.Fatal("the upstream was not asked")
			}
		})
	}
}

// HEAD and the GET it falls back to share one document's budget: a host
// that answers every manifest request 500 gets one HEAD and then GETs,
// MaxAttempts requests in all (it got a HEAD budget and then a GET
// budget, six requests and, with the default deadlines, over six minutes
// against a host that trickles). A HEAD that fails for good (405) leaves
// the GET its whole budget; with a budget of one, the HEAD is all. A HEAD
// that answered is the first attempt of the GET that reads the document
// back (a slow HEAD and three trickled read-backs took over four
// minutes).
func TestHEADAndGETShareOneBudget(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name              string
		attempts          int
		headStatus        int
		wantHEAD, wantGET int
	}{
		{"HEAD 500, GET 500", 3, http.StatusInternalServerError, 1, 2},
		{"HEAD 405, GET 500", 3, http.StatusMethodNotAllowed, 1, 3},
		{"one attempt, HEAD 500", 1, http.StatusInternalServerError, 1, 0},
		{"HEAD answers, the read-back GET 500", 3, http.StatusOK, 1, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reg, ref, _ := image(t, "budget/app")
			reg.Intercept(func(w http.ResponseWriter, r *http.Request, q hostile.Request) bool {
				if q.Kind != hostile.Manifest {
					return false
				}
				if r.Method == http.MethodHead {
					if tc.headStatus == http.StatusOK {
						return false // the registry's own answer
					}
					w.WriteHeader(tc.headStatus)
					return true
				}
				http.Error(w, "boom", http.StatusInternalServerError)
				return true
			})
			policy := source.RetryPolicy{MaxAttempts: tc.attempts, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}
			_, err := resolveWith(context.Background(), ref, source.WithRetryPolicy(policy))
			wantKind(t, err, errdefs.ErrNetwork)
			if want := fmt.Sprintf("gave up after %d attempts", tc.attempts); !strings.Contains(err.Error(), want) {
				t.Errorf("err = %v; want it to say %q", err, want)
			}
			heads, gets := 0, 0
			for _, q := range reg.Requests() {
				switch {
				case q.Kind != hostile.Manifest:
				case q.Method == http.MethodHead:
					heads++
				default:
					gets++
				}
			}
			if heads != tc.wantHEAD || gets != tc.wantGET {
				t.Fatalf("%d HEAD and %d GET requests for the manifest, want %d and %d (%v)", heads, gets, tc.wantHEAD, tc.wantGET, err)
			}
		})
	}
}

// A password in a hosts.toml URL is refused (containerd ignores user
// info; it used to be sent as Basic auth and printed in messages), and no
// message repeats it.
func TestUserinfoInHostURLsIsRefusedAndNeverPrinted(t *testing.T) {
	t.Parallel()
	reg, ref, _ := image(t, "ui/app")
	for name, body := range map[string]string{
		"mirror":    "[host.\"http://mirroruser:SECRETPW@" + reg.Host + "\"]\n",
		"server":    "server = \"http://serveruser:SECRETPW@" + reg.Host + "\"\n",
		"no scheme": "server = \"u:SECRETPW@" + reg.Host + "\"\n",
	} {
		t.Run(name, func(t *testing.T) {
			hosts := t.TempDir()
			testutil.WriteHostsFile(t, hosts, reg.Host, body)
			_, err := resolveWith(context.Background(), ref, source.WithHostsDir(hosts))
			wantKind(t, err, errdefs.ErrInvalidArgument)
			if strings.Contains(err.Error(), "SECRETPW") || !strings.Contains(err.Error(), "user info") {
				t.Fatalf("err = %q", err)
			}
		})
	}
	_, err := resolveWith(context.Background(), ref, source.WithMirrors(reg.Host, source.Mirror{URL: "http://u:SECRETPW@" + reg.Host}))
	wantKind(t, err, errdefs.ErrInvalidArgument)
	if strings.Contains(err.Error(), "SECRETPW") {
		t.Fatalf("err = %q", err)
	}
	if n := len(reg.Requests()); n != 0 {
		t.Fatalf("%d requests with a refused configuration", n)
	}
}

// server = "http://..." is used as written (it became "httphttp://...",
// which worked only because go-containerregistry rewrites the scheme).
func TestServerWithPlainHTTP(t *testing.T) {
	t.Parallel()
	reg, ref, _ := image(t, "srv/app")
	hosts := t.TempDir()
	server := "http://" + localhost(reg.Host)
	testutil.WriteHostsFile(t, hosts, reg.Host, "server = \""+server+"\"\n")
	res := mustResolve(t, ref, source.WithHostsDir(hosts))
	for _, b := range []resolve.Blob{res.Manifest, res.Config} {
		if b.From != server {
			t.Fatalf("%s served by %q, want %q", b.Descriptor.Digest, b.From, server)
		}
	}
}

// Keys containerd does not have are reported, never ignored in silence.
func TestUnknownHostsKeysAreReported(t *testing.T) {
	t.Parallel()
	reg, ref, _ := image(t, "keys/app")
	hosts := t.TempDir()
	testutil.WriteHostsFile(t, hosts, reg.Host, "proxy = \"http://proxy.example\"\n\n[host.\"http://"+reg.Host+"\"]\n  cabilities = [\"pull\"]\n")
	var mu sync.Mutex
	var warnings []string
	mustResolve(t, ref, source.WithHostsDir(hosts), source.WithWarnings(func(m string) {
		mu.Lock()
		warnings = append(warnings, m)
		mu.Unlock()
	}))
	want := []string{`unknown key proxy ignored`, `unknown key host."http://` + reg.Host + `".cabilities ignored`}
	for _, w := range want {
		if !slices.ContainsFunc(warnings, func(s string) bool { return strings.Contains(s, w) }) {
			t.Errorf("no warning with %s in %q", w, warnings)
		}
	}
	for _, w := range warnings {
		if !strings.Contains(w, filepath.Join(hosts, reg.Host, "hosts.toml")) {
			t.Errorf("warning %q does not name the file", w)
		}
	}
}

// TLS from hosts.toml: ca and client (mutual TLS) with certificates the
// test makes, and the certs.d fallback (*.crt, *.cert/*.key in the host's
// directory, no hosts.toml).
func TestHostsTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certs := testcerts.New(t, dir)
	reg, ref, _ := image(t, "tls/app", hostile.WithTLS(certs.ServerConfig(true)))
	copyFile := func(from, to string) {
		t.Helper()
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("ca and client pair", func(t *testing.T) {
		hosts := t.TempDir()
		copyFile(certs.CAFile, filepath.Join(hosts, reg.Host, "ca.pem"))
		copyFile(certs.ClientCertFile, filepath.Join(hosts, reg.Host, "client.pem"))
		copyFile(certs.ClientKeyFile, filepath.Join(hosts, reg.Host, "client.key"))
		testutil.WriteHostsFile(t, hosts, reg.Host, "server = \"https://"+reg.Host+"\"\nca = \"ca.pem\"\nclient = [[\"client.pem\", \"client.key\"]]\n")
		mustResolve(t, ref, source.WithHostsDir(hosts))
	})
	t.Run("without a client certificate", func(t *testing.T) {
		hosts := t.TempDir()
		testutil.WriteHostsFile(t, hosts, reg.Host, "server = \"https://"+reg.Host+"\"\nca = \""+certs.CAFile+"\"\n")
		_, err := resolveWith(context.Background(), ref, append(quick, source.WithHostsDir(hosts))...)
		wantKind(t, err, errdefs.ErrNetwork)
	})
	t.Run("without the CA", func(t *testing.T) {
		hosts := t.TempDir()
		testutil.WriteHostsFile(t, hosts, reg.Host, "server = \"https://"+reg.Host+"\"\nclient = \""+certs.ClientCertFile+"\"\n")
		_, err := resolveWith(context.Background(), ref, append(quick, source.WithHostsDir(hosts))...)
		if err == nil {
			t.Fatal("a server certificate from an unknown CA was accepted")
		}
	})
	t.Run("certs.d files", func(t *testing.T) {
		for _, name := range []string{reg.Host, strings.Replace(reg.Host, ":", "_", 1) + "_"} {
			hosts := t.TempDir()
			copyFile(certs.CAFile, filepath.Join(hosts, name, "ca.crt"))
			copyFile(certs.ClientCertFile, filepath.Join(hosts, name, "client.cert"))
			copyFile(certs.ClientKeyFile, filepath.Join(hosts, name, "client.key"))
			res := mustResolve(t, ref, source.WithHostsDir(hosts))
			if res.Manifest.From != "https://"+reg.Host {
				t.Fatalf("%s: served by %s", name, res.Manifest.From)
			}
		}
	})
	t.Run("a missing CA file is invalid_argument", func(t *testing.T) {
		hosts := t.TempDir()
		testutil.WriteHostsFile(t, hosts, reg.Host, "server = \"https://"+reg.Host+"\"\nca = \"nope.pem\"\n")
		_, err := resolveWith(context.Background(), ref, source.WithHostsDir(hosts))
		wantKind(t, err, errdefs.ErrInvalidArgument)
		if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("err = %v", err)
		}
	})
}

// skip_verify and client certificates stay with the host they were
// configured for: the registry's token server is verified and gets no
// client certificate.
func TestTLSSettingsStayWithTheirHost(t *testing.T) {
	t.Parallel()
	certs := testcerts.New(t, t.TempDir())
	reg, ref, _ := image(t, "tlshost/app", hostile.WithTLS(certs.ServerConfig(true)))
	asking := certs.ServerConfig(false)
	asking.ClientAuth = tls.RequestClientCert
	tokens := hostile.NewTokenServer(t, hostile.WithTLS(asking))
	reg.RequireToken(tokens.Realm("localhost"), tokens.Token)
	hosts := t.TempDir()
	client := "client = [[\"" + certs.ClientCertFile + "\", \"" + certs.ClientKeyFile + "\"]]\n"

	testutil.WriteHostsFile(t, hosts, reg.Host, "server = \"https://"+reg.Host+"\"\nca = \""+certs.CAFile+"\"\n"+client)
	mustResolve(t, ref, source.WithHostsDir(hosts))
	if !reg.Requests()[0].ClientCert {
		t.Fatal("the registry got no client certificate: the test proves nothing")
	}
	for _, q := range tokens.Requests() {
		if q.ClientCert {
			t.Fatal("the token server got the registry's client certificate")
		}
	}

	// With skip_verify and no ca, the registry's certificate is accepted
	// but the token server's, from the same unknown CA, is not.
	n := len(tokens.Requests())
	testutil.WriteHostsFile(t, hosts, reg.Host, "server = \"https://"+reg.Host+"\"\nskip_verify = true\n"+client)
	_, err := resolveWith(context.Background(), ref, append(quick, source.WithHostsDir(hosts))...)
	if err == nil || len(tokens.Requests()) != n {
		t.Fatalf("err = %v, %d token requests: skip_verify reached the token server", err, len(tokens.Requests())-n)
	}
}
