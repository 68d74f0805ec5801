package testregistry_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"

	"github.com/ocifetch/ocifetch/internal/testutil/testregistry"
)

// registryVersion is what the registry binary says about its version.
func registryVersion(t *testing.T) string {
	t.Helper()
	bin, err := testregistry.Binary()
	if err != nil {
		return ""
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatalf("%s --version: %v", bin, err)
	}
	return string(out)
}

func ref(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func basic(user, pass string) remote.Option {
	return remote.WithAuth(&authn.Basic{Username: user, Password: pass})
}

// push writes a small random image to s and returns it with its digest.
func push(t *testing.T, s string, opts ...remote.Option) (v1.Image, v1.Hash) {
	t.Helper()
	img, err := random.Image(256, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref(t, s), img, opts...); err != nil {
		t.Fatalf("push %s: %v", s, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return img, d
}

// pull fetches the manifest of s and every blob it references, so that a
// pull-through cache has to serve (and fetch) all of them.
func pull(t *testing.T, s string, opts ...remote.Option) (v1.Hash, error) {
	t.Helper()
	img, err := remote.Image(ref(t, s), opts...)
	if err != nil {
		return v1.Hash{}, err
	}
	if _, err := img.RawConfigFile(); err != nil {
		return v1.Hash{}, err
	}
	layers, err := img.Layers()
	if err != nil {
		return v1.Hash{}, err
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return v1.Hash{}, err
		}
		_, err = readAllClose(rc)
		if err != nil {
			return v1.Hash{}, err
		}
	}
	return img.Digest()
}

func readAllClose(rc io.ReadCloser) ([]byte, error) {
	defer rc.Close()
	return io.ReadAll(rc)
}

func mustPull(t *testing.T, s string, want v1.Hash, opts ...remote.Option) {
	t.Helper()
	got, err := pull(t, s, opts...)
	if err != nil {
		t.Fatalf("pull %s: %v", s, err)
	}
	if got != want {
		t.Fatalf("pull %s: digest %s, want %s", s, got, want)
	}
}

// wantStatus checks that err is an HTTP error with one of the codes.
func wantStatus(t *testing.T, what string, err error, codes ...int) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: succeeded, want HTTP %v", what, codes)
	}
	var te *transport.Error
	if !errors.As(err, &te) {
		t.Fatalf("%s: %v (%T), want an HTTP error %v", what, err, err, codes)
	}
	for _, c := range codes {
		if te.StatusCode == c {
			return
		}
	}
	t.Fatalf("%s: HTTP %d (%v), want %v", what, te.StatusCode, err, codes)
}

func TestPlain(t *testing.T) {
	reg := testregistry.Start(t)
	if reg.Host == "" || reg.URL != "http://"+reg.Host || reg.PID <= 0 || reg.TokenURL != "" {
		t.Fatalf("unexpected registry %+v", reg)
	}
	img, d := push(t, reg.Host+"/plain/img:v1")
	mustPull(t, reg.Host+"/plain/img:v1", d)
	mustPull(t, reg.Host+"/plain/img@"+d.String(), d)

	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		ld, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		p := reg.BlobDataPath(digest.Digest(ld.String()))
		want, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		wantBytes, err := readAllClose(want)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("BlobDataPath(%s): %v", ld, err)
		}
		if string(got) != string(wantBytes) {
			t.Fatalf("BlobDataPath(%s) holds %d bytes, not the layer's %d", ld, len(got), len(wantBytes))
		}
		if !strings.HasPrefix(p, reg.StorageDir+string(filepath.Separator)) {
			t.Fatalf("BlobDataPath %s outside storage %s", p, reg.StorageDir)
		}
	}

	// Corrupt content is served as is: the registry does not re-verify.
	cfg, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	p := reg.BlobDataPath(digest.Digest(cfg.String()))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(reg.URL + "/v2/plain/img/blobs/" + cfg.String())
	if err != nil {
		t.Fatal(err)
	}
	got, err := readAllClose(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || string(got) != string(b) {
		t.Fatalf("tampered blob: HTTP %d, %d bytes, err %v; want the tampered bytes", resp.StatusCode, len(got), err)
	}

	if !strings.Contains(reg.Logs(), "testregistry:") {
		t.Fatalf("log lacks the start line:\n%s", reg.Logs())
	}
}

func TestBasicAuth(t *testing.T) {
	reg := testregistry.Start(t, testregistry.WithBasicAuth("alice", "s3cret"))
	_, d := push(t, reg.Host+"/basic/img:v1", basic("alice", "s3cret"))
	mustPull(t, reg.Host+"/basic/img:v1", d, basic("alice", "s3cret"))

	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	err = remote.Write(ref(t, reg.Host+"/basic/img:v2"), img, basic("alice", "wrong"))
	wantStatus(t, "push with a wrong password", err, http.StatusUnauthorized)
	_, err = pull(t, reg.Host+"/basic/img:v1", basic("alice", "wrong"))
	wantStatus(t, "pull with a wrong password", err, http.StatusUnauthorized)
	_, err = pull(t, reg.Host+"/basic/img:v1")
	wantStatus(t, "anonymous pull", err, http.StatusUnauthorized)
}

func TestTokenAuth(t *testing.T) {
	reg := testregistry.Start(t, testregistry.WithTokenAuth("bob", "hunter2"))
	if !strings.HasPrefix(reg.TokenURL, "http://localhost:") || !strings.HasSuffix(reg.TokenURL, "/token") {
		t.Fatalf("TokenURL %q", reg.TokenURL)
	}
	_, d := push(t, reg.Host+"/tok/img:v1", basic("bob", "hunter2"))
	n := reg.TokenRequests()
	if n == 0 {
		t.Fatal("push fetched no token")
	}
	mustPull(t, reg.Host+"/tok/img:v1", d, basic("bob", "hunter2"))
	if reg.TokenRequests() == n {
		t.Fatal("pull fetched no token")
	}
	log := reg.TokenLog()
	last := log[len(log)-1]
	if !last.Credentials || last.User != "bob" || last.Status != http.StatusOK ||
		len(last.Scopes) != 1 || last.Scopes[0] != "repository:tok/img:pull" {
		t.Fatalf("last token request %+v", last)
	}

	// Wrong credentials: the token server says 401.
	n = reg.TokenRequests()
	_, err := pull(t, reg.Host+"/tok/img:v1", basic("bob", "nope"))
	wantStatus(t, "pull with a wrong password", err, http.StatusUnauthorized)
	log = reg.TokenLog()
	if reg.TokenRequests() == n || log[len(log)-1].Status != http.StatusUnauthorized {
		t.Fatalf("wrong password: token log %+v", log[n:])
	}

	// Anonymous: a token that grants nothing, which the registry refuses.
	n = reg.TokenRequests()
	_, err = pull(t, reg.Host+"/tok/img:v1")
	wantStatus(t, "anonymous pull", err, http.StatusUnauthorized)
	log = reg.TokenLog()
	if reg.TokenRequests() == n {
		t.Fatal("anonymous pull fetched no token")
	}
	for _, r := range log[n:] {
		if r.Credentials || r.Status != http.StatusOK {
			t.Fatalf("anonymous token request %+v", r)
		}
	}
}

func TestProxy(t *testing.T) {
	upstream := testregistry.Start(t)
	_, d := push(t, upstream.Host+"/up/img:v1")
	mirror := testregistry.Start(t, testregistry.WithProxy(upstream.URL, "", ""))

	mustPull(t, mirror.Host+"/up/img@"+d.String(), d)
	mustPull(t, mirror.Host+"/up/img:v1", d)
	if _, err := os.Stat(filepath.Join(mirror.StorageDir, "docker", "registry", "v2", "repositories", "up", "img")); err != nil {
		t.Fatalf("the mirror cached nothing: %v", err)
	}

	// A pull-through cache is read-only.
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	err = remote.Write(ref(t, mirror.Host+"/up/img:v2"), img)
	wantStatus(t, "push to the mirror", err, http.StatusMethodNotAllowed)
}

// TestProxyTokenUpstream checks the one way registry 2.8 can log in to its
// remote: credentials sent to the remote's token realm. Distribution v3.1
// sends them only to a realm on the remote's own host:port (or a host
// name of the same registrable domain), which a token server on another
// loopback port never is.
func TestProxyTokenUpstream(t *testing.T) {
	if strings.Contains(registryVersion(t), "/v3") {
		t.Skip("distribution v3 does not send proxy credentials to a token realm on another port")
	}
	upstream := testregistry.Start(t, testregistry.WithTokenAuth("bob", "hunter2"))
	_, d := push(t, upstream.Host+"/up/img:v1", basic("bob", "hunter2"))
	mirror := testregistry.Start(t, testregistry.WithProxy(upstream.URL, "bob", "hunter2"))

	n := upstream.TokenRequests()
	mustPull(t, mirror.Host+"/up/img:v1", d)
	log := upstream.TokenLog()
	if len(log) == int(n) {
		t.Fatal("the mirror fetched no token from the upstream")
	}
	for _, r := range log[n:] {
		if !r.Credentials || r.User != "bob" || r.Status != http.StatusOK {
			t.Fatalf("mirror's token request %+v", r)
		}
	}
}

// TestManifestPutRules pins what the registry accepts on a manifest PUT,
// because tests elsewhere push deliberately broken documents and would
// fail in confusing ways if the registry started refusing them (or
// accepting what they expect it to refuse). Registry 2.8.2 and
// distribution v3.1 agree on all of it.
func TestManifestPutRules(t *testing.T) {
	reg := testregistry.Start(t)
	img, d := push(t, reg.Host+"/rules/img:v1")
	size, err := img.Size()
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	put := func(tag string, v any, mt types.MediaType) int {
		t.Helper()
		body, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		req, err := http.NewRequest(http.MethodPut, reg.URL+"/v2/rules/img/manifests/"+tag, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", string(mt))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	// Manifest bodies are limited to 4 MiB.
	const limit = 4 << 20
	for _, tc := range []struct {
		size int
		want int
	}{{limit - 4096, http.StatusCreated}, {limit + 1, http.StatusBadRequest}} {
		big := m.DeepCopy()
		big.Annotations = map[string]string{"padding": ""}
		base, err := json.Marshal(big)
		if err != nil {
			t.Fatal(err)
		}
		big.Annotations["padding"] = strings.Repeat("x", tc.size-len(base))
		if got := put("big", big, m.MediaType); got != tc.want {
			t.Errorf("manifest of %d bytes: HTTP %d, want %d", tc.size, got, tc.want)
		}
	}

	// Descriptor sizes are not checked.
	wrongSize := m.DeepCopy()
	wrongSize.Config.Size += 7
	if got := put("wrong-size", wrongSize, m.MediaType); got != http.StatusCreated {
		t.Errorf("manifest with a wrong config size: HTTP %d, want 201", got)
	}

	// An index entry's mediaType is not checked against the manifest it
	// points at, but the manifest must exist.
	idx := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{{
		MediaType: "application/x-not-a-manifest", Digest: d, Size: size,
	}}}
	if got := put("idx", idx, types.OCIImageIndex); got != http.StatusCreated {
		t.Errorf("index entry with a wrong mediaType: HTTP %d, want 201", got)
	}
	idx.Manifests[0].Digest = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("0", 64)}
	if got := put("idx-missing", idx, types.OCIImageIndex); got != http.StatusBadRequest {
		t.Errorf("index entry of a missing manifest: HTTP %d, want 400", got)
	}
}

func TestStopKillsAndClosesPort(t *testing.T) {
	reg := testregistry.Start(t)
	pid := reg.PID
	reg.Stop()
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("pid %d after Stop: kill(0) = %v, want ESRCH", pid, err)
	}
	if c, err := net.DialTimeout("tcp", reg.Host, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after Stop", reg.Host)
	}
	reg.Stop() // idempotent
}

func TestRestartKeepsPortAndContent(t *testing.T) {
	reg := testregistry.Start(t)
	_, d := push(t, reg.Host+"/re/img:v1")
	host, pid := reg.Host, reg.PID

	reg.Restart(t)
	if reg.Host != host || reg.PID == pid {
		t.Fatalf("after Restart: host %s pid %d, before %s %d", reg.Host, reg.PID, host, pid)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("old pid %d after Restart: kill(0) = %v, want ESRCH", pid, err)
	}
	mustPull(t, reg.Host+"/re/img:v1", d)

	// Stopped, then restarted: the same.
	reg.Stop()
	reg.Restart(t)
	mustPull(t, reg.Host+"/re/img:v1", d)
	if n := strings.Count(reg.Logs(), "--- testregistry:"); n != 3 {
		t.Fatalf("log has %d start lines, want 3 (logs are kept across restarts)", n)
	}
}

func TestWithStorageDir(t *testing.T) {
	dir := t.TempDir()
	a := testregistry.Start(t, testregistry.WithStorageDir(dir))
	_, d := push(t, a.Host+"/st/img:v1")
	a.Stop()
	b := testregistry.Start(t, testregistry.WithStorageDir(dir))
	if b.StorageDir != dir {
		t.Fatalf("StorageDir %q, want %q", b.StorageDir, dir)
	}
	mustPull(t, b.Host+"/st/img:v1", d)
}

func TestCountingProxy(t *testing.T) {
	reg := testregistry.Start(t)
	p := testregistry.NewCountingProxy(t, reg.URL)
	if p.URL() != "http://"+p.Host() {
		t.Fatalf("URL %q Host %q", p.URL(), p.Host())
	}
	_, d := push(t, p.Host()+"/cp/img:v1")
	mustPull(t, p.Host()+"/cp/img:v1", d)

	if p.Count("/manifests/") == 0 || p.Count("/blobs/") == 0 {
		t.Fatalf("counts: manifests %d blobs %d; requests %+v", p.Count("/manifests/"), p.Count("/blobs/"), p.Requests())
	}
	if p.Count("") != len(p.Requests()) {
		t.Fatalf("Count(\"\") = %d, %d requests", p.Count(""), len(p.Requests()))
	}
	// Uploads stay on the proxy: the registry sees the proxy's Host.
	var puts int
	for _, r := range p.Requests() {
		if r.Method == http.MethodPut && strings.Contains(r.Path, "/blobs/uploads/") {
			puts++
			if !strings.Contains(r.Query, "digest=") || r.Status != http.StatusCreated {
				t.Fatalf("upload PUT %+v", r)
			}
		}
	}
	if puts == 0 {
		t.Fatalf("no upload PUT went through the proxy: %+v", p.Requests())
	}

	p.Reset()
	resp, err := http.Get(p.URL() + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if rs := p.Requests(); len(rs) != 1 || rs[0].Path != "/v2/" || rs[0].HasAuthorization {
		t.Fatalf("after Reset and one GET: %+v", rs)
	}

	p.Close()
	if _, err := http.Get(p.URL() + "/v2/"); err == nil {
		t.Fatal("GET through a closed proxy succeeded")
	}
	p.Close() // idempotent
}

func TestCountingProxyTargetDown(t *testing.T) {
	reg := testregistry.Start(t)
	p := testregistry.NewCountingProxy(t, reg.URL)
	reg.Stop()
	resp, err := http.Get(p.URL() + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("HTTP %d, want 502", resp.StatusCode)
	}
	if rs := p.Requests(); len(rs) != 1 || rs[0].Status != http.StatusBadGateway {
		t.Fatalf("requests %+v", rs)
	}
}

// fakeTB records Fatalf and Skipf and ends the goroutine like testing.T.
type fakeTB struct {
	testing.TB
	fatal, skip string
}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (f *fakeTB) Skipf(format string, args ...any) {
	f.skip = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func startFake(t *testing.T) *fakeTB {
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		testregistry.Start(f)
	}()
	<-done
	return f
}

func TestMissingBinary(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-registry")
	t.Setenv(testregistry.EnvBinary, missing)

	t.Setenv("CI", "")
	f := startFake(t)
	if f.skip == "" || f.fatal != "" || !strings.Contains(f.skip, missing) {
		t.Fatalf("without CI: skip %q, fatal %q; want a skip naming %s", f.skip, f.fatal, missing)
	}

	t.Setenv("CI", "true")
	f = startFake(t)
	if f.fatal == "" || f.skip != "" || !strings.Contains(f.fatal, missing) {
		t.Fatalf("with CI: skip %q, fatal %q; want a failure naming %s", f.skip, f.fatal, missing)
	}
}

func TestBinary(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "registry")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{notExec, dir} {
		t.Setenv(testregistry.EnvBinary, p)
		if got, err := testregistry.Binary(); err == nil {
			t.Errorf("$%s=%s: Binary() = %s, want an error", testregistry.EnvBinary, p, got)
		}
	}
	if err := os.Chmod(notExec, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(testregistry.EnvBinary, notExec)
	if got, err := testregistry.Binary(); err != nil || got != notExec {
		t.Errorf("Binary() = %q, %v; want %s", got, err, notExec)
	}
}
