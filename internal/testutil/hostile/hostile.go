// Package hostile is an in-process registry for fault tests: it serves the
// distribution API's read side (ping, manifests by tag and digest, blobs
// with Range, referrers, tags) from memory, and lets a test take over any
// request to misbehave in ways a real registry process never would: lying
// sizes, trickled or stalled bodies, redirects, wrong headers.
//
//	reg := hostile.New(t)
//	ref := reg.PutImage(t, "app", "v1", testimage.Image(t, 2, "linux", "amd64", ""))
//	reg.Intercept(func(w http.ResponseWriter, r *http.Request, q hostile.Request) bool {
//		if q.Kind == hostile.Blob { /* stall */ <-r.Context().Done(); return true }
//		return false
//	})
//
// It listens on 127.0.0.1 (or an address of a network namespace the test
// made, WithAddr), over plain HTTP or TLS (WithTLS), and stops with the
// test. RequireToken and TokenServer add the Docker token protocol,
// ChallengeBasic a Basic challenge, so that a test can see which
// credentials reach which host.
package hostile

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"
)

// Kind is what a request asks for.
type Kind string

// The kinds of request the registry tells apart.
const (
	Ping      Kind = "ping"
	Manifest  Kind = "manifest"
	Blob      Kind = "blob"
	Referrers Kind = "referrers"
	Tags      Kind = "tags"
	Other     Kind = "other"
)

// Request is a parsed request, as handed to an interceptor and logged.
type Request struct {
	Method string
	Kind   Kind
	Repo   string // "" for Ping
	Ref    string // tag or digest for Manifest and Referrers, digest for Blob
	Header http.Header
	// ClientCert reports a TLS client certificate presented with it.
	ClientCert bool
}

// Interceptor may answer a request itself (returning true) or leave it to
// the registry's normal handling (false).
type Interceptor func(w http.ResponseWriter, r *http.Request, q Request) bool

type content struct {
	mediaType string
	body      []byte
}

// Registry is the in-process registry. Its methods are safe for
// concurrent use.
type Registry struct {
	// Host is "127.0.0.1:PORT".
	Host string
	// URL is "http://127.0.0.1:PORT".
	URL string

	srv *httptest.Server

	mu          sync.Mutex
	manifests   map[string]content // "repo@ref" → document
	blobs       map[string]content // "repo@digest" → blob
	interceptor Interceptor
	log         []Request
	token       string // with RequireToken: the token every request needs
	realm       string
	basic       bool // ChallengeBasic
}

// Option configures New.
type Option func(*config)

type config struct {
	tls  *tls.Config
	addr string
}

// WithTLS serves HTTPS with this configuration (its certificates, and
// client authentication if it asks for it).
func WithTLS(c *tls.Config) Option { return func(cf *config) { cf.tls = c } }

// WithAddr listens on addr ("IP:PORT", port 0 for a free one) instead of
// 127.0.0.1: an address of a network namespace the test made.
func WithAddr(addr string) Option { return func(cf *config) { cf.addr = addr } }

// New starts a registry on a free loopback port, stopped when the test
// ends.
func New(t testing.TB, opts ...Option) *Registry {
	t.Helper()
	r := &Registry{manifests: map[string]content{}, blobs: map[string]content{}}
	r.srv = startServer(t, http.HandlerFunc(r.serve), opts)
	r.URL = r.srv.URL
	r.Host = r.srv.Listener.Addr().String()
	return r
}

func startServer(t testing.TB, h http.Handler, opts []Option) *httptest.Server {
	t.Helper()
	var cf config
	for _, o := range opts {
		o(&cf)
	}
	srv := httptest.NewUnstartedServer(h)
	if cf.addr != "" {
		l, err := net.Listen("tcp", cf.addr)
		if err != nil {
			t.Fatalf("hostile: listening on %s: %v", cf.addr, err)
		}
		srv.Listener.Close()
		srv.Listener = l
	}
	if cf.tls != nil {
		srv.TLS = cf.tls
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv
}

// RequireToken makes the registry answer every request that lacks
// "Authorization: Bearer TOKEN" with 401 and a Bearer challenge naming
// realm, as a registry with token authentication does.
func (r *Registry) RequireToken(realm, token string) {
	r.mu.Lock()
	r.realm, r.token = realm, token
	r.mu.Unlock()
}

// ChallengeBasic makes the registry answer its ping (GET /v2/) with 401
// and a Basic challenge, as a registry that wants credentials does, while
// it serves everything else to anyone: a client that holds credentials
// for this host sends them, and Requests shows it.
func (r *Registry) ChallengeBasic() {
	r.mu.Lock()
	r.basic = true
	r.mu.Unlock()
}

// TokenServer is an in-process token endpoint of the Docker token
// protocol: GET /token answers {"token": Token} to anyone, and every
// request is logged with its headers, so a test sees whether credentials
// reached it.
type TokenServer struct {
	// URL is "http://127.0.0.1:PORT" (or the WithAddr address).
	URL string
	// Port is the port it listens on.
	Port string
	// Token is the token it hands out.
	Token string

	srv *httptest.Server
	mu  sync.Mutex
	log []Request
}

// NewTokenServer starts a token server, stopped when the test ends.
func NewTokenServer(t testing.TB, opts ...Option) *TokenServer {
	t.Helper()
	ts := &TokenServer{Token: "hostile-token"}
	ts.srv = startServer(t, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		ts.mu.Lock()
		ts.log = append(ts.log, Request{Method: req.Method, Kind: Other, Header: req.Header.Clone(),
			ClientCert: req.TLS != nil && len(req.TLS.PeerCertificates) > 0})
		ts.mu.Unlock()
		if req.URL.Path != "/token" {
			http.NotFound(w, req)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"token": ts.Token, "expires_in": 300})
	}), opts)
	ts.URL = ts.srv.URL
	_, ts.Port, _ = net.SplitHostPort(ts.srv.Listener.Addr().String())
	return ts
}

// Realm is the token URL with the given host name ("localhost", an IP
// address, a name the test's hosts file resolves).
func (ts *TokenServer) Realm(hostname string) string {
	scheme := "http"
	if ts.srv.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(hostname, ts.Port) + "/token"
}

// Requests returns the requests served so far, in order.
func (ts *TokenServer) Requests() []Request {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]Request(nil), ts.log...)
}

// Close stops the server before the test ends (a registry that went away).
func (r *Registry) Close() { r.srv.Close() }

// Intercept sets the interceptor (nil removes it).
func (r *Registry) Intercept(fn Interceptor) {
	r.mu.Lock()
	r.interceptor = fn
	r.mu.Unlock()
}

// Requests returns the requests served so far, in order.
func (r *Registry) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Request(nil), r.log...)
}

// Count returns how many requests of kind k for ref ("" for any) were made.
func (r *Registry) Count(k Kind, ref string) int {
	n := 0
	for _, q := range r.Requests() {
		if q.Kind == k && (ref == "" || q.Ref == ref) {
			n++
		}
	}
	return n
}

// PutBlob stores data as a blob of repo and returns its digest.
func (r *Registry) PutBlob(repo string, data []byte) digest.Digest {
	d := digest.FromBytes(data)
	r.mu.Lock()
	r.blobs[repo+"@"+d.String()] = content{body: data}
	r.mu.Unlock()
	return d
}

// PutManifest stores a document of repo under its digest and, when tag is
// not empty, under tag, and returns its digest.
func (r *Registry) PutManifest(repo, tag, mediaType string, body []byte) digest.Digest {
	d := digest.FromBytes(body)
	c := content{mediaType: mediaType, body: body}
	r.mu.Lock()
	r.manifests[repo+"@"+d.String()] = c
	if tag != "" {
		r.manifests[repo+"@"+tag] = c
	}
	r.mu.Unlock()
	return d
}

// PutImage stores img (manifest, config and layers) as repo:tag and
// returns the reference "HOST/repo:tag".
func (r *Registry) PutImage(t testing.TB, repo, tag string, img v1.Image) string {
	t.Helper()
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	mt, err := img.MediaType()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	r.PutBlob(repo, cfg)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(rc); err != nil {
			t.Fatal(err)
		}
		rc.Close()
		r.PutBlob(repo, buf.Bytes())
	}
	r.PutManifest(repo, tag, string(mt), raw)
	return r.Host + "/" + repo + ":" + tag
}

// Blob returns a stored blob's bytes.
func (r *Registry) Blob(repo string, d digest.Digest) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.blobs[repo+"@"+d.String()].body
}

// parse splits a /v2/ path into its request kind, repository and reference.
func parse(method, path string) Request {
	q := Request{Method: method, Kind: Other}
	if path == "/v2/" || path == "/v2" {
		q.Kind = Ping
		return q
	}
	p := strings.TrimPrefix(path, "/v2/")
	for _, k := range []struct {
		sep  string
		kind Kind
	}{{"/manifests/", Manifest}, {"/blobs/", Blob}, {"/referrers/", Referrers}} {
		if i := strings.LastIndex(p, k.sep); i > 0 {
			q.Kind, q.Repo, q.Ref = k.kind, p[:i], p[i+len(k.sep):]
			return q
		}
	}
	if strings.HasSuffix(p, "/tags/list") {
		q.Kind, q.Repo = Tags, strings.TrimSuffix(p, "/tags/list")
	}
	return q
}

func (r *Registry) serve(w http.ResponseWriter, req *http.Request) {
	q := parse(req.Method, req.URL.Path)
	q.Header = req.Header.Clone()
	q.ClientCert = req.TLS != nil && len(req.TLS.PeerCertificates) > 0
	r.mu.Lock()
	r.log = append(r.log, q)
	fn := r.interceptor
	token, realm, basic := r.token, r.realm, r.basic
	r.mu.Unlock()
	if fn != nil && fn(w, req, q) {
		return
	}
	switch {
	case token != "" && req.Header.Get("Authorization") != "Bearer "+token:
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q,service="hostile",scope="repository:%s:pull"`, realm, q.Repo))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"token required"}]}`)
		return
	case basic && q.Kind == Ping:
		w.Header().Set("WWW-Authenticate", `Basic realm="hostile"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	r.ServeDefault(w, req, q)
}

// serveContent serves q's document or blob from m, with its media type
// (a blob's is application/octet-stream) and dgst (when empty, the
// digest of the bytes), or the distribution API's error code unknown.
func (r *Registry) serveContent(w http.ResponseWriter, req *http.Request, m map[string]content, q Request, unknown, dgst string) {
	r.mu.Lock()
	c, ok := m[q.Repo+"@"+q.Ref]
	r.mu.Unlock()
	if !ok {
		notFound(w, unknown)
		return
	}
	mediaType := c.mediaType
	if mediaType == "" {
		mediaType = "application/octet-stream"
	}
	if dgst == "" {
		dgst = digest.FromBytes(c.body).String()
	}
	w.Header().Set("Content-Type", mediaType)
	w.Header().Set("Docker-Content-Digest", dgst)
	http.ServeContent(w, req, "", time.Time{}, bytes.NewReader(c.body))
}

// ServeDefault answers q as an honest registry would; interceptors call it
// to pass a request through after looking at it or changing w.
func (r *Registry) ServeDefault(w http.ResponseWriter, req *http.Request, q Request) {
	switch q.Kind {
	case Ping:
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		w.WriteHeader(http.StatusOK)
	case Manifest:
		r.serveContent(w, req, r.manifests, q, "MANIFEST_UNKNOWN", "")
	case Blob:
		// The digest asked for, whatever a test did to the bytes.
		r.serveContent(w, req, r.blobs, q, "BLOB_UNKNOWN", q.Ref)
	case Referrers:
		w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
		fmt.Fprint(w, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`)
	case Tags:
		var tags []string
		r.mu.Lock()
		for k := range r.manifests {
			if repo, ref, _ := strings.Cut(k, "@"); repo == q.Repo && !strings.Contains(ref, ":") {
				tags = append(tags, ref)
			}
		}
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"name": q.Repo, "tags": tags})
	default:
		notFound(w, "UNSUPPORTED")
	}
}

func notFound(w http.ResponseWriter, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNotFound)
	fmt.Fprintf(w, `{"errors":[{"code":%q,"message":"not here"}]}`, code)
}
