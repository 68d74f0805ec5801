// Package testregistry runs a real Docker distribution registry process for
// integration tests, so that clients are exercised against the server that
// users actually talk to rather than against a hand-written fake whose
// quirks match our own assumptions.
//
// Each registry listens on a free loopback port, stores blobs under a temp
// directory, never touches the network beyond loopback, and dies with the
// test: it is stopped in t.Cleanup and, should the test binary itself die,
// killed by the kernel (PR_SET_PDEATHSIG).
//
//	reg := testregistry.Start(t, testregistry.WithBasicAuth("alice", "s3cret"))
//	ref := reg.Host + "/test/img:v1"
//
// Tests that only push and pull share one plain registry per test binary
// (Shared, with Main in the package's TestMain) instead of a process
// each, each keeping to repositories of its own.
//
// The binary is found by Binary. Without one, Start skips the test, except
// when $CI is set: CI must never pass by silently skipping.
//
// Registry 2.8 (Debian's docker-registry) and distribution v3 (`go install
// github.com/distribution/distribution/v3/cmd/registry@v3.1.2`) both
// accept the configuration written here. What they do that a test author
// may not expect (checked against 2.8.2+ds1 and v3.1.2):
//
//   - a manifest PUT body larger than 4 MiB (4<<20 bytes) is refused with
//     400 MANIFEST_INVALID "http: request body too large"; a test that
//     needs an oversized manifest must serve it some other way;
//   - an image manifest with a "manifests" field, or whose mediaType does
//     not match the Content-Type of the PUT, is refused (400);
//   - descriptor sizes are not checked, nor is an index entry's mediaType
//     against the manifest it points at; an index PUT only checks that
//     each referenced manifest exists in the repository;
//   - GET of an OCI manifest by tag without an Accept header answers 404;
//     2.8 also converts a Docker schema 2 manifest to schema 1 then;
//   - a pull-through cache (WithProxy) refuses pushes (405 UNSUPPORTED)
//     and asks the remote's /v2/ at startup, panicking if the remote is
//     down. 2.8 sends its credentials only to the token realms it saw then,
//     never as HTTP basic auth, so a basic-auth remote cannot be proxied,
//     and fetches a new token for every request it forwards; v3.1 does
//     basic auth but sends credentials to a token realm only when it is on
//     the remote's own host:port, which a WithTokenAuth remote's is not.
package testregistry

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/crypto/bcrypt"

	"github.com/ocifetch/ocifetch/internal/testutil"
)

// EnvBinary names the environment variable that overrides the registry
// binary. When it is set, nothing else is tried, so that a misconfigured CI
// fails instead of quietly testing against some other registry.
const EnvBinary = "OCIFETCH_REGISTRY_BIN"

// Timeouts. Readiness is generous because a loaded CI machine with -race
// can be slow to exec; the stop grace is short because nothing a test
// registry holds is worth waiting for.
const (
	readyTimeout = 15 * time.Second
	stopGrace    = 2 * time.Second
	killTimeout  = 10 * time.Second
	portAttempts = 5
)

// Binary finds the registry binary: $OCIFETCH_REGISTRY_BIN, then
// docker-registry and registry on $PATH, then /usr/bin/docker-registry,
// then registry in $(go env GOBIN) or $(go env GOPATH)/bin, which is where
// `go install github.com/distribution/distribution/v3/cmd/registry@v3.1.2`
// puts it. The error names every place it looked.
func Binary() (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		if err := testutil.Executable(p); err != nil {
			return "", fmt.Errorf("registry binary from $%s: %w", EnvBinary, err)
		}
		return p, nil
	}
	looked := []string{"$" + EnvBinary + " (unset)"}
	for _, name := range []string{"docker-registry", "registry"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
		looked = append(looked, name+" on $PATH")
	}
	candidates := []string{"/usr/bin/docker-registry"}
	if dirs := goInstallDirs(); len(dirs) > 0 {
		candidates = append(candidates, dirs...)
	} else {
		looked = append(looked, "$(go env GOPATH)/bin/registry (`go env` failed)")
	}
	for _, p := range candidates {
		if testutil.Executable(p) == nil {
			return p, nil
		}
		looked = append(looked, p)
	}
	return "", fmt.Errorf("no registry binary found; looked at %s (install Debian's docker-registry or `go install github.com/distribution/distribution/v3/cmd/registry@v3.1.2`, or set $%s)",
		strings.Join(looked, ", "), EnvBinary)
}

// goInstallDirs returns where `go install` would have put a registry
// binary. It asks the go command because GOPATH and GOBIN may be set with
// `go env -w`, which no environment variable reflects.
func goInstallDirs() []string {
	out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output()
	if err != nil {
		return nil
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	var dirs []string
	if len(lines) > 0 && lines[0] != "" {
		dirs = append(dirs, filepath.Join(lines[0], "registry"))
	}
	if len(lines) > 1 {
		for _, gp := range filepath.SplitList(lines[1]) {
			if gp != "" {
				dirs = append(dirs, filepath.Join(gp, "bin", "registry"))
			}
		}
	}
	return dirs
}

// config collects what the options ask for.
type config struct {
	basicUser, basicPass string
	basic                bool
	tokenUser, tokenPass string
	token                bool
	proxyURL             string
	proxyUser, proxyPass string
	storageDir           string
}

// An Option configures Start.
type Option func(*config)

// WithBasicAuth protects the registry with HTTP basic auth for one user
// (htpasswd with a bcrypt entry, the only kind the registry accepts).
func WithBasicAuth(user, password string) Option {
	return func(c *config) { c.basic, c.basicUser, c.basicPass = true, user, password }
}

// WithTokenAuth protects the registry with Docker token auth backed by an
// in-process token server (see Registry.TokenURL): user/password get a
// token for what they ask, anonymous clients get a token for nothing, and
// wrong credentials get 401 from the token server.
func WithTokenAuth(user, password string) Option {
	return func(c *config) { c.token, c.tokenUser, c.tokenPass = true, user, password }
}

// WithProxy makes the registry a pull-through cache of remoteURL. user and
// password may be empty. The remote must be up when the registry starts
// (2.8 asks its /v2/ at startup) and the cache refuses pushes; with 2.8,
// credentials only work against a token-auth remote (see the package doc).
func WithProxy(remoteURL, user, password string) Option {
	return func(c *config) { c.proxyURL, c.proxyUser, c.proxyPass = remoteURL, user, password }
}

// WithStorageDir stores content in dir instead of a fresh t.TempDir(), for
// example to start a second registry on content a first one wrote.
func WithStorageDir(dir string) Option {
	return func(c *config) { c.storageDir = dir }
}

// Registry is a running registry process.
type Registry struct {
	// Host is "127.0.0.1:PORT", for image references.
	Host string
	// URL is "http://127.0.0.1:PORT".
	URL string
	// PID is the process id of the registry; Restart changes it.
	PID int
	// StorageDir is the filesystem storage root.
	StorageDir string
	// TokenURL is the token realm ("http://localhost:PORT/token") with
	// WithTokenAuth, else empty. The token server listens on 127.0.0.1;
	// the URL says localhost because go-containerregistry refuses realms
	// that are loopback IP literals.
	TokenURL string
	// TokenHost is the token realm's "localhost:PORT", which a client
	// must be told to trust with credentials (--allow-token-host): a
	// token server on a loopback address other than the registry's own
	// host:port gets none by default.
	TokenHost string

	bin        string
	configPath string
	logPath    string
	instance   string // sent back in every response, see waitReady
	token      *tokenServer

	shared bool // Shared's: Stop panics

	mu   sync.Mutex
	proc *process // nil once stopped
}

// process is one run of the registry binary.
type process struct {
	pid  int
	os   *os.Process
	done chan struct{} // closed once the process has been reaped
	err  error         // the result of Wait; set before done is closed
}

// Start starts a registry and registers t.Cleanup to stop it. When no
// binary is found it skips the test, or fails it if $CI is set.
func Start(t testing.TB, opts ...Option) *Registry {
	t.Helper()
	bin := binaryFor(t)
	if bin == "" {
		return nil // only reached with a testing.TB whose Fatalf/Skipf return
	}
	r, err := start(bin, t.TempDir, t.Cleanup, opts...)
	if err != nil {
		t.Fatalf("testregistry: %v", err)
		return nil
	}
	return r
}

// binaryFor returns the registry binary, or skips t without one (fails
// it if $CI is set) and returns "".
func binaryFor(t testing.TB) string {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		testutil.Missing(t, "testregistry: %v", err)
		return ""
	}
	return bin
}

// start starts a registry of bin, its directories from tempDir and its
// stop handed to cleanup (which runs what it is given last in, first
// out: the process dies before its directories are removed).
func start(bin string, tempDir func() string, cleanup func(func()), opts ...Option) (*Registry, error) {
	var c config
	for _, o := range opts {
		o(&c)
	}
	if c.basic && c.token {
		return nil, errors.New("WithBasicAuth and WithTokenAuth exclude each other")
	}

	// Everything but the storage lives in a private directory: config,
	// logs, htpasswd and the token root certificate.
	dir := tempDir()
	r := &Registry{
		bin:        bin,
		StorageDir: c.storageDir,
		configPath: filepath.Join(dir, "config.yml"),
		logPath:    filepath.Join(dir, "registry.log"),
	}
	if r.StorageDir == "" {
		r.StorageDir = tempDir()
	}

	var auth string
	switch {
	case c.basic:
		p, err := writeHtpasswd(dir, c.basicUser, c.basicPass)
		if err != nil {
			return nil, err
		}
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: %s\n    path: %s\n", q("testregistry"), q(p))
	case c.token:
		ts, err := newTokenServer(dir, c.tokenUser, c.tokenPass)
		if err != nil {
			return nil, err
		}
		cleanup(ts.close) // runs after the registry's cleanup below
		r.token, r.TokenURL = ts, ts.realm()
		r.TokenHost = strings.TrimSuffix(strings.TrimPrefix(r.TokenURL, "http://"), "/token")
		auth = fmt.Sprintf("auth:\n  token:\n    realm: %s\n    service: %s\n    issuer: %s\n    rootcertbundle: %s\n",
			q(r.TokenURL), q(TokenService), q(TokenIssuer), q(ts.rootPath))
	}
	var proxy string
	if c.proxyURL != "" {
		proxy = fmt.Sprintf("proxy:\n  remoteurl: %s\n  username: %s\n  password: %s\n",
			q(c.proxyURL), q(c.proxyUser), q(c.proxyPass))
	}

	cleanup(r.stop)
	var lastErr error
	for range portAttempts {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		if err := r.writeConfig(port, auth, proxy); err != nil {
			return nil, err
		}
		r.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		r.URL = "http://" + r.Host
		lastErr = r.run()
		if lastErr == nil {
			return r, nil
		}
		if !errors.Is(lastErr, errPortTaken) {
			break
		}
	}
	return nil, fmt.Errorf("%v\n%s", lastErr, r.logTail())
}

// shared is the registry Shared starts, one per test binary.
var shared struct {
	mu       sync.Mutex
	main     bool // Main runs the tests
	reg      *Registry
	err      error
	cleanups []func()
}

// Main runs a test package's tests through testutil.Main and then stops
// the registry Shared started, if any; a package whose tests call Shared
// calls it from its TestMain: os.Exit(testregistry.Main(m)).
func Main(m *testing.M) int {
	shared.mu.Lock()
	shared.main = true
	shared.mu.Unlock()
	return testutil.Main(m, func() {
		shared.mu.Lock()
		defer shared.mu.Unlock()
		for i := len(shared.cleanups) - 1; i >= 0; i-- {
			shared.cleanups[i]()
		}
	})
}

// Shared returns the test package's one plain registry (no auth, no
// proxy), started by the first test that asks for it, so that tests that
// only push and pull do not each start a process. Its tests must keep to
// repositories of their own; a test that stops, restarts, counts or
// corrupts its registry, or needs options, starts its own with Start
// (Stop and Restart panic on the shared one). The package's TestMain must
// run its tests through Main.
func Shared(t testing.TB) *Registry {
	t.Helper()
	bin := binaryFor(t)
	if bin == "" {
		return nil
	}
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.main {
		t.Fatalf("testregistry: Shared needs the package's TestMain to run its tests through testregistry.Main")
		return nil
	}
	if shared.reg == nil && shared.err == nil {
		tempDir := func() string {
			dir, err := os.MkdirTemp("", "testregistry-")
			if err != nil {
				panic(err) // no temporary directory: nothing can run
			}
			shared.cleanups = append(shared.cleanups, func() { os.RemoveAll(dir) })
			return dir
		}
		cleanup := func(f func()) { shared.cleanups = append(shared.cleanups, f) }
		shared.reg, shared.err = start(bin, tempDir, cleanup)
		if shared.reg != nil {
			shared.reg.shared = true
		}
	}
	if shared.err != nil {
		t.Fatalf("testregistry: the shared registry: %v", shared.err)
		return nil
	}
	return shared.reg
}

// Restart stops the registry and starts it again on the same port and
// storage, e.g. to test a client against a mirror that goes down and comes
// back. It fails t if the registry does not come back.
func (r *Registry) Restart(t testing.TB) {
	t.Helper()
	r.Stop()
	// The port was free a moment ago, but anyone may take it while the
	// registry is down; a brief retry covers a socket still being torn down.
	var err error
	for range portAttempts {
		if err = r.run(); !errors.Is(err, errPortTaken) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("testregistry: restart: %v\n%s", err, r.logTail())
	}
}

// instanceHeader is set by the registry (http.headers) on every response
// to a value unique to one Registry.
const instanceHeader = "X-Testregistry-Instance"

// errPortTaken reports a lost race for a port between freePort and the
// registry's own listen.
var errPortTaken = errors.New("port already in use")

// run starts the process with the current configuration and waits until
// it answers. On failure the process is stopped.
func (r *Registry) run() error {
	logFile, err := os.OpenFile(r.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	var logStart int64
	if fi, err := logFile.Stat(); err == nil {
		logStart = fi.Size()
	}
	fmt.Fprintf(logFile, "--- testregistry: %s serve %s (%s)\n", r.bin, r.configPath, r.Host)
	p, err := spawn(r.bin, []string{"serve", r.configPath}, logFile)
	if err != nil {
		return fmt.Errorf("starting %s: %w", r.bin, err)
	}
	r.mu.Lock()
	r.proc, r.PID = p, p.pid
	r.mu.Unlock()
	if err := r.waitReady(p); err != nil {
		r.stop()
		if logs := r.Logs(); int64(len(logs)) >= logStart && strings.Contains(logs[logStart:], "address already in use") {
			return fmt.Errorf("%s: %w", r.Host, errPortTaken)
		}
		return err
	}
	return nil
}

// spawn starts bin with its output appended to logFile, which it closes.
//
// The child gets its own process group, so that a ^C on the terminal is
// delivered to the test binary only and the registry is stopped through
// the ordinary path, and PR_SET_PDEATHSIG, so that the kernel kills it if
// the test binary dies without running cleanups (timeout, crash, kill -9).
// The death signal fires when the *thread* that forked the child exits,
// not the process, and the Go runtime does end threads, so the fork
// happens on a goroutine locked to its thread until the child is reaped.
func spawn(bin string, args []string, logFile *os.File) (*process, error) {
	p := &process{done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// Never unlocked: the thread ends with this goroutine, after the
		// child has been reaped.
		runtime.LockOSThread()
		defer close(p.done)
		cmd := exec.Command(bin, args...)
		cmd.Env = childEnv()
		cmd.Stdout, cmd.Stderr = logFile, logFile
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		err := cmd.Start()
		logFile.Close() // the child has its own descriptor
		if err != nil {
			p.err = err
			started <- err
			return
		}
		p.pid, p.os = cmd.Process.Pid, cmd.Process
		started <- nil
		p.err = cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return p, nil
}

// childEnv is the test's environment without the variables that would
// change what the registry does behind the config file's back: REGISTRY_*
// override configuration keys, and distribution v3 exports OpenTelemetry
// traces to localhost unless told not to.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "REGISTRY_") || strings.HasPrefix(kv, "OTEL_") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "OTEL_TRACES_EXPORTER=none", "OTEL_SDK_DISABLED=true")
	// The registry is a fixture whose memory no test measures: with its
	// garbage collector at 400 instead of 100 it took 2 s less CPU over
	// the CLI package's short tier (3,700 samples at 499 Hz against
	// 2,570-2,790, two runs each), for a peak RSS of 94 MB. A GOGC the
	// developer exported is kept.
	if _, ok := os.LookupEnv("GOGC"); !ok {
		env = append(env, "GOGC=400")
	}
	return env
}

// waitReady polls GET /v2/ until the registry answers 200 (open) or 401
// (auth required), the process exits, or readyTimeout passes.
//
// The answer must carry this registry's instance header: when two tests
// race for one port, the registry that lost would otherwise take the
// winner's answer for its own and its test would talk to the wrong one.
func (r *Registry) waitReady(p *process) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(readyTimeout)
	for {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.URL+"/v2/", nil)
		resp, err := client.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			switch {
			case resp.Header.Get(instanceHeader) != r.instance:
				err = fmt.Errorf("GET /v2/: answered by another server (%s %q)", instanceHeader, resp.Header.Get(instanceHeader))
			case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized:
				return nil
			default:
				err = fmt.Errorf("GET /v2/: %s", resp.Status)
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("registry (pid %d) exited during startup: %v", p.pid, p.err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("registry (pid %d) not ready at %s after %s: %v", p.pid, r.URL, readyTimeout, err)
		}
	}
}

// Stop stops the registry: SIGTERM, then SIGKILL after a short grace, and
// waits for the process to be reaped. It may be called more than once.
// It panics on the shared registry, which other tests are using.
func (r *Registry) Stop() {
	if r.shared {
		panic("testregistry: a test stopped the shared registry; start one of its own with Start")
	}
	r.stop()
}

func (r *Registry) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.proc
	if p == nil {
		return
	}
	r.proc = nil
	// os.Process signals through a pidfd, so a process that has already
	// exited is never confused with a new one that got its PID.
	_ = p.os.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(stopGrace):
	}
	_ = p.os.Kill()
	select {
	case <-p.done:
	case <-time.After(killTimeout):
		// Unkillable (stuck in the kernel); nothing more can be done here.
	}
}

// BlobDataPath returns where the filesystem driver keeps the content of
// blob d: <storage>/docker/registry/v2/blobs/<alg>/<first 2 hex>/<hex>/data.
// Tests overwrite it to make the registry serve corrupt content.
func (r *Registry) BlobDataPath(d digest.Digest) string {
	enc := d.Encoded()
	return filepath.Join(r.StorageDir, "docker", "registry", "v2", "blobs",
		d.Algorithm().String(), enc[:min(2, len(enc))], enc, "data")
}

// Logs returns what the registry process has written to stdout and
// stderr so far, across restarts.
func (r *Registry) Logs() string {
	b, err := os.ReadFile(r.logPath)
	if err != nil {
		return fmt.Sprintf("(no registry log: %v)", err)
	}
	return string(b)
}

// logTail is the end of the log, for failure messages.
func (r *Registry) logTail() string {
	const maxLines, maxBytes = 30, 8 << 10
	s := strings.TrimRight(r.Logs(), "\n")
	if len(s) > maxBytes {
		s = s[len(s)-maxBytes:]
	}
	lines := strings.Split(s, "\n")
	if len(lines) > maxLines {
		lines = lines[len(lines)-maxLines:]
	}
	return "registry log (tail):\n\t" + strings.Join(lines, "\n\t")
}

// TokenRequests returns how many requests the token server has answered
// (0 without WithTokenAuth), so tests can assert that a client fetched a
// token rather than, say, sending basic auth to the registry.
func (r *Registry) TokenRequests() int64 {
	if r.token == nil {
		return 0
	}
	return r.token.count.Load()
}

// TokenLog returns the token requests so far, oldest first (nil without
// WithTokenAuth).
func (r *Registry) TokenLog() []TokenRequest {
	if r.token == nil {
		return nil
	}
	return r.token.requests()
}

// writeConfig writes the registry configuration for port. The log level is
// warn, with the access log on: one line per request plus whatever went
// wrong is what a failure message wants; info doubles every request with a
// long "response completed" line. Storage caching
// is left off so that tampering with BlobDataPath (or deleting it) is seen
// by the next request; notifications, redis, the debug server and the
// storage health check are left out so that nothing but the listener and,
// for a pull-through cache, the remote, is touched.
func (r *Registry) writeConfig(port int, auth, proxy string) error {
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	instance := make([]byte, 8)
	if _, err := rand.Read(instance); err != nil {
		return err
	}
	r.instance = hex.EncodeToString(instance)
	var b bytes.Buffer
	fmt.Fprintf(&b, `version: 0.1
log:
  level: warn
  formatter: text
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
  secret: %s
  headers:
    X-Content-Type-Options: [nosniff]
    %s: [%s]
health:
  storagedriver:
    enabled: false
`, q(r.StorageDir), q(net.JoinHostPort("127.0.0.1", strconv.Itoa(port))), q(hex.EncodeToString(secret)),
		instanceHeader, q(r.instance))
	b.WriteString(auth)
	b.WriteString(proxy)
	return os.WriteFile(r.configPath, b.Bytes(), 0o600)
}

// q quotes s as a YAML double-quoted scalar; JSON strings are a subset.
func q(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// freePort returns a loopback port that was free a moment ago. The
// registry has to bind it itself, so a race is possible; Start retries.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// writeHtpasswd writes an htpasswd file with a bcrypt entry. MinCost keeps
// startup and every authenticated request fast; it protects nothing.
func writeHtpasswd(dir, user, password string) (string, error) {
	if user == "" || strings.ContainsAny(user, ":\n") {
		return "", fmt.Errorf("htpasswd user %q must be non-empty and contain neither ':' nor a newline", user)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, "htpasswd")
	return p, os.WriteFile(p, []byte(user+":"+string(h)+"\n"), 0o600)
}
