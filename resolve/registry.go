package resolve

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/httpx"
)

// manifestAccept lists every manifest type this program reads, plus Docker
// schema 1 so that a registry that only has schema 1 says so instead of
// answering "not found"; resolving then rejects it with a clear message.
var manifestAccept = strings.Join([]string{
	ocispec.MediaTypeImageIndex,
	ocispec.MediaTypeImageManifest,
	MediaTypeDockerManifestList,
	MediaTypeDockerManifest,
	MediaTypeDockerSchema1Signed + ";q=0.1",
}, ", ")

// registrySource reads from a registry by name, through its mirrors first.
type registrySource struct {
	ref       string // normalized reference
	repo      string // repository path, e.g. "library/alpine"
	upstream  string // registry as named, e.g. "docker.io"
	tag       string // "" when pinned by digest
	pinned    digest.Digest
	endpoints []*endpoint
}

// endpoint is one host serving the repository: a mirror or the upstream.
type endpoint struct {
	src      *registrySource
	mirror   Mirror
	host     string // host[:port] of mirror.URL
	isMirror bool
	opts     *options
	auth     authn.Resource

	once   sync.Once
	client *http.Client
	err    error

	mu         sync.Mutex
	prefetched map[digest.Digest][]byte // bodies read while resolving a tag without HEAD
}

func openRegistry(s string, o *options) (*registrySource, error) {
	ref, err := name.ParseReference(s, name.StrictValidation)
	if err != nil {
		// StrictValidation refuses an implicit ":latest"; retry leniently
		// so that "alpine" works, while keeping the strict error if the
		// lenient parse fails too.
		r2, err2 := name.ParseReference(s)
		if err2 != nil {
			return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "invalid image reference %q", s)
		}
		ref = r2
	}
	ctxRepo := ref.Context()
	upstream := canonicalHost(ctxRepo.RegistryStr())
	src := &registrySource{repo: ctxRepo.RepositoryStr(), upstream: upstream}
	switch r := ref.(type) {
	case name.Digest:
		d, err := parseDigest(r.DigestStr())
		if err != nil {
			return nil, err
		}
		src.pinned = d
		src.ref = upstream + "/" + src.repo + "@" + d.String()
	case name.Tag:
		src.tag = r.TagStr()
		src.ref = upstream + "/" + src.repo + ":" + src.tag
	}

	var mirrors []Mirror
	server := Mirror{URL: "https://" + apiHost(upstream)}
	if o.hostsDir != "" {
		hc, err := loadHostsDir(o.hostsDir, upstream)
		if err != nil {
			return nil, err
		}
		mirrors = append(mirrors, hc.mirrors...)
		if hc.server != nil {
			server = *hc.server
		}
	}
	mirrors = append(mirrors, o.mirrors[upstream]...)
	upHost := hostOf(server.URL)
	if httpx.IsLoopback(upHost) || o.insecure[upHost] || o.insecure[upstream] {
		server.URL = "http" + strings.TrimPrefix(server.URL, "https")
	}
	for _, m := range mirrors {
		src.endpoints = append(src.endpoints, newEndpoint(src, m, true, o))
	}
	src.endpoints = append(src.endpoints, newEndpoint(src, server, false, o))
	return src, nil
}

func newEndpoint(src *registrySource, m Mirror, isMirror bool, o *options) *endpoint {
	e := &endpoint{src: src, mirror: m, host: hostOf(m.URL), isMirror: isMirror, opts: o,
		prefetched: map[digest.Digest][]byte{}}
	// Credentials are looked up by the host they will be sent to, so a
	// mirror never receives the upstream's credentials.
	authHost := e.host
	if !isMirror && src.upstream == "docker.io" {
		authHost = name.DefaultRegistry // the key Docker's config uses for Hub
	}
	if r, err := name.NewRegistry(authHost, name.WeakValidation); err == nil {
		e.auth = r
	}
	return e
}

// canonicalHost maps the names Docker Hub goes by to "docker.io".
func canonicalHost(h string) string {
	switch h {
	case "index.docker.io", "registry-1.docker.io", "docker.io", "registry.hub.docker.com":
		return "docker.io"
	}
	return h
}

// apiHost is where a registry's API is served.
func apiHost(h string) string {
	if h == "docker.io" {
		return "registry-1.docker.io"
	}
	return h
}

func hostOf(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	return u.Host
}

func (s *registrySource) Reference() string { return s.ref }

// Endpoints returns the mirrors in configured order, then the upstream.
func (s *registrySource) Endpoints() []Source {
	out := make([]Source, len(s.endpoints))
	for i, e := range s.endpoints {
		out[i] = e
	}
	return out
}

// Root asks the hosts that may resolve tags, in order, and returns the first
// answer. A pinned digest needs no tag lookup but its media type and size
// still come from the registry.
func (s *registrySource) Root(ctx context.Context) (ocispec.Descriptor, error) {
	var errs []error
	for _, e := range s.endpoints {
		if !e.mirror.can("resolve") && !(s.pinned != "" && e.mirror.can("pull")) {
			continue
		}
		d, err := e.Root(ctx)
		if err == nil {
			return d, nil
		}
		if ctx.Err() != nil {
			return ocispec.Descriptor{}, err
		}
		errs = append(errs, err)
	}
	return ocispec.Descriptor{}, lastError(errs, s.ref)
}

func (s *registrySource) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	rc, _, err := s.FetchAt(ctx, desc, 0)
	return rc, err
}

// FetchAt opens desc from the first host that answers. It does not verify
// content: callers that must fall back on bad bytes use Endpoints.
func (s *registrySource) FetchAt(ctx context.Context, desc ocispec.Descriptor, off int64) (io.ReadCloser, int64, error) {
	var errs []error
	for _, e := range s.endpoints {
		if !e.mirror.can("pull") {
			continue
		}
		rc, start, err := e.FetchAt(ctx, desc, off)
		if err == nil {
			return rc, start, nil
		}
		if ctx.Err() != nil {
			return nil, 0, err
		}
		errs = append(errs, err)
	}
	return nil, 0, lastError(errs, s.ref)
}

// lastError prefers the upstream's error, which is the last one, since a
// mirror's failure is only interesting when nothing else worked.
func lastError(errs []error, ref string) error {
	if len(errs) == 0 {
		return errdefs.New(errdefs.ErrInvalidArgument, "%s: no configured host may serve this request", ref)
	}
	return errs[len(errs)-1]
}

// --- endpoint: one host -------------------------------------------------

func (e *endpoint) Reference() string { return e.src.ref }

func (e *endpoint) String() string { return e.mirror.URL }

// init builds the authenticated client on first use: ping the host, learn
// its auth scheme, get a token for pulling the repository.
func (e *endpoint) init(ctx context.Context) (*http.Client, error) {
	e.once.Do(func() {
		e.client, e.err = e.dial(ctx)
	})
	return e.client, e.err
}

func (e *endpoint) dial(ctx context.Context) (*http.Client, error) {
	base, err := e.baseTransport()
	if err != nil {
		return nil, err
	}
	var regOpts []name.Option
	plain := strings.HasPrefix(e.mirror.URL, "http://")
	if plain {
		regOpts = append(regOpts, name.Insecure)
	}
	reg, err := name.NewRegistry(e.host, append(regOpts, name.WeakValidation)...)
	if err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "invalid registry host %q", e.host)
	}
	auth := authn.Anonymous
	if e.auth != nil {
		kc := e.opts.keychain
		if e.opts.authfile != "" {
			kc = authfileKeychain{path: e.opts.authfile}
		}
		a, err := authn.Resolve(ctx, kc, e.auth)
		if err != nil {
			// A missing or malformed auth file is the caller's mistake,
			// not the registry's refusal.
			kind := errdefs.ErrUnauthorized
			if errdefs.KindOf(err) == errdefs.ErrInvalidArgument {
				kind = errdefs.ErrInvalidArgument
			}
			return nil, errdefs.Wrap(err, kind, "reading credentials for %s", e.host)
		}
		auth = a
	}
	scope := "repository:" + e.src.repo + ":pull"
	var rt http.RoundTripper
	err = retry(ctx, func() error {
		var err error
		rt, err = transport.NewWithContext(ctx, reg, auth, base, []string{scope})
		return classify(err, e.host, "connecting to registry")
	})
	if err != nil {
		return nil, err
	}
	rt = transport.NewUserAgent(rt, e.opts.userAgent)
	return &http.Client{Transport: rt}, nil
}

// baseTransport is the plain transport beneath authentication: TLS settings
// from the mirror config, more idle connections than Go's default of two
// (blobs are fetched concurrently), and a guard against plain HTTP where it
// was not allowed.
func (e *endpoint) baseTransport() (http.RoundTripper, error) {
	var rt http.RoundTripper
	if e.opts.transport != nil {
		rt = e.opts.transport
	} else {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 32
		t.MaxIdleConns = 128
		t.ResponseHeaderTimeout = 60 * time.Second
		if e.mirror.SkipVerify || len(e.mirror.CAFiles) > 0 {
			cfg := &tls.Config{InsecureSkipVerify: e.mirror.SkipVerify} //nolint:gosec // the user asked for it in hosts.toml
			if len(e.mirror.CAFiles) > 0 {
				pool, err := x509.SystemCertPool()
				if err != nil {
					pool = x509.NewCertPool()
				}
				for _, f := range e.mirror.CAFiles {
					pem, err := os.ReadFile(f)
					if err != nil {
						return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "CA file for %s", e.host)
					}
					if !pool.AppendCertsFromPEM(pem) {
						return nil, errdefs.New(errdefs.ErrInvalidArgument, "CA file %s for %s holds no certificate", f, e.host)
					}
				}
				cfg.RootCAs = pool
			}
			t.TLSClientConfig = cfg
		}
		rt = t
	}
	return &guardTransport{inner: rt, host: e.host, header: e.mirror.Header,
		plainOK: strings.HasPrefix(e.mirror.URL, "http://") || httpx.IsLoopback(e.host) || e.opts.insecure[e.host]}, nil
}

// guardTransport refuses plain HTTP to the registry host unless it was
// allowed, and adds the host's configured headers. Other hosts (token
// realms, blob storage after a redirect) are checked by go-containerregistry
// and never receive the registry's Authorization header.
type guardTransport struct {
	inner   http.RoundTripper
	host    string
	header  http.Header
	plainOK bool
}

func (g *guardTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host == g.host {
		if req.URL.Scheme == "http" && !g.plainOK {
			return nil, errdefs.New(errdefs.ErrInvalidArgument,
				"refusing plain HTTP to %s: allow it with --insecure-registry %s", g.host, g.host)
		}
		if len(g.header) > 0 {
			req = req.Clone(req.Context())
			for k, v := range g.header {
				req.Header[k] = append([]string(nil), v...)
			}
		}
	}
	return g.inner.RoundTrip(req)
}

// url builds an API URL on this host. Mirrors that serve several registries
// learn which one is meant from the ns parameter, as containerd sends it.
func (e *endpoint) url(kind, ref string) string {
	base := e.mirror.URL
	if !e.mirror.OverridePath && !strings.HasSuffix(base, "/v2") {
		base += "/v2"
	}
	u := base + "/" + e.src.repo + "/" + kind + "/" + ref
	if e.isMirror {
		u += "?ns=" + url.QueryEscape(e.src.upstream)
	}
	return u
}

// Root learns the descriptor of the reference: HEAD first, which costs no
// body, and GET when the registry will not say the digest on HEAD.
func (e *endpoint) Root(ctx context.Context) (ocispec.Descriptor, error) {
	ref := e.src.tag
	if e.src.pinned != "" {
		ref = e.src.pinned.String()
	}
	return e.lookup(ctx, ref, e.src.pinned, true)
}

// lookup learns the descriptor of a tag or digest (ref) of the repository;
// pinned, when set, is the digest the answer must have. With head, HEAD
// is asked first; without, the document is read at once and kept for the
// Fetch that follows, which saves a round trip when the caller reads it
// anyway.
func (e *endpoint) lookup(ctx context.Context, ref string, pinned digest.Digest, head bool) (ocispec.Descriptor, error) {
	var desc ocispec.Descriptor
	err := errdefs.New(errdefs.ErrNetwork, "HEAD not asked")
	if head {
		err = retry(ctx, func() error {
			resp, err := e.do(ctx, http.MethodHead, e.url("manifests", ref), manifestAccept, 0, 0)
			if err != nil {
				return err
			}
			resp.Body.Close()
			d, derr := descriptorFromHeaders(resp, pinned)
			if derr != nil {
				return derr
			}
			desc = d
			return nil
		})
	}
	if err == nil {
		if desc.Size > e.opts.maxDocumentSize {
			return desc, errdefs.New(errdefs.ErrTooLarge, "manifest %s is %d bytes, over the %d byte limit", desc.Digest, desc.Size, e.opts.maxDocumentSize)
		}
		return desc, nil
	}
	if errdefs.Is(err, errdefs.ErrUnauthorized) || errdefs.Is(err, errdefs.ErrNotFound) || ctx.Err() != nil {
		return desc, err
	}
	// Some registries answer HEAD badly (405, no Docker-Content-Digest):
	// read the manifest instead and keep its bytes for the Fetch that
	// follows, so it is not downloaded twice.
	var body []byte
	var resp *http.Response
	err = retry(ctx, func() error {
		var err error
		resp, err = e.do(ctx, http.MethodGet, e.url("manifests", ref), manifestAccept, 0, 0)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err = readCapped(resp.Body, e.opts.maxDocumentSize, "manifest "+ref)
		return err
	})
	if err != nil {
		return desc, err
	}
	desc = ocispec.Descriptor{
		MediaType: mediaTypeOf(resp.Header.Get("Content-Type")),
		Digest:    digest.FromBytes(body),
		Size:      int64(len(body)),
	}
	if h := resp.Header.Get("Docker-Content-Digest"); h != "" && h != desc.Digest.String() {
		return desc, errdefs.New(errdefs.ErrDigestMismatch, "%s: registry says manifest digest %s but the bytes hash to %s", e.host, h, desc.Digest)
	}
	if pinned != "" && pinned != desc.Digest {
		return desc, errdefs.New(errdefs.ErrDigestMismatch, "%s: manifest %s hashes to %s", e.host, pinned, desc.Digest)
	}
	e.mu.Lock()
	e.prefetched[desc.Digest] = body
	e.mu.Unlock()
	return desc, nil
}

func descriptorFromHeaders(resp *http.Response, pinned digest.Digest) (ocispec.Descriptor, error) {
	d := ocispec.Descriptor{MediaType: mediaTypeOf(resp.Header.Get("Content-Type")), Size: resp.ContentLength}
	if h := resp.Header.Get("Docker-Content-Digest"); h != "" {
		dg, err := parseDigest(h)
		if err != nil {
			return d, err
		}
		d.Digest = dg
	}
	if pinned != "" {
		if d.Digest != "" && d.Digest != pinned {
			return d, errdefs.New(errdefs.ErrDigestMismatch, "registry answered digest %s for pinned %s", d.Digest, pinned)
		}
		d.Digest = pinned
	}
	if d.Digest == "" || d.Size < 0 {
		return d, errdefs.New(errdefs.ErrNetwork, "registry did not report the manifest's digest and size on HEAD")
	}
	return d, nil
}

func mediaTypeOf(contentType string) string {
	mt, _, _ := strings.Cut(contentType, ";")
	mt = strings.TrimSpace(mt)
	switch mt {
	case "application/json", "text/plain", "application/octet-stream":
		return "" // not a statement about the document
	}
	return mt
}

func (e *endpoint) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	rc, _, err := e.FetchAt(ctx, desc, 0)
	return rc, err
}

// FetchAt opens desc's content at off. Manifests and indexes come from the
// manifests endpoint, everything else from blobs. A 206 must start where it
// was asked to; a 200 means the host ignored the range and the stream
// starts at 0.
func (e *endpoint) FetchAt(ctx context.Context, desc ocispec.Descriptor, off int64) (io.ReadCloser, int64, error) {
	if err := desc.Digest.Validate(); err != nil {
		return nil, 0, errdefs.Wrap(err, errdefs.ErrManifestInvalid, "invalid digest %q", desc.Digest)
	}
	if off == 0 {
		e.mu.Lock()
		body, ok := e.prefetched[desc.Digest]
		delete(e.prefetched, desc.Digest)
		e.mu.Unlock()
		if ok {
			return io.NopCloser(bytes.NewReader(body)), 0, nil
		}
	}
	kind, accept := "blobs", ""
	if isManifestType(desc.MediaType) || isIndexType(desc.MediaType) {
		kind, accept = "manifests", manifestAccept
	}
	// Documents are retried here; blob downloads are retried by the fetch
	// stage, which resumes from what it has and would otherwise multiply
	// its attempts by these.
	get := func() (*http.Response, error) {
		return e.do(ctx, http.MethodGet, e.url(kind, desc.Digest.String()), accept, off, desc.Size)
	}
	var resp *http.Response
	var err error
	if kind == "manifests" {
		err = retry(ctx, func() error {
			var err error
			resp, err = get()
			return err
		})
	} else {
		resp, err = get()
	}
	if err != nil {
		return nil, 0, err
	}
	if resp.StatusCode == http.StatusPartialContent {
		start, err := httpx.ContentRangeStart(resp.Header.Get("Content-Range"))
		if err != nil || start != off {
			resp.Body.Close()
			return nil, 0, errdefs.New(errdefs.ErrNetwork, "%s answered range %d- with Content-Range %q", e.host, off, resp.Header.Get("Content-Range"))
		}
		return resp.Body, off, nil
	}
	return resp.Body, 0, nil
}

// do sends one request and turns a failure status into a typed error. off
// > 0 asks for the content from off on; size, when known, closes the range,
// since some registries refuse the open form "bytes=N-".
func (e *endpoint) do(ctx context.Context, method, u, accept string, off, size int64) (*http.Response, error) {
	client, err := e.init(ctx)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "building request")
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	switch {
	case off > 0 && size > off:
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, size-1))
	case off > 0:
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, classify(err, e.host, method+" "+redactURL(u))
	}
	switch resp.StatusCode {
	case http.StatusOK, http.StatusPartialContent:
		return resp, nil
	case http.StatusRequestedRangeNotSatisfiable:
		if off > 0 {
			// The content ends before off: shorter than its descriptor
			// says, which asking again will not change. It is the same
			// finding as a body that ends early, so it has the same
			// cause, io.ErrUnexpectedEOF: the fetch stage keeps the bytes
			// so far for the next host to continue from, and the final
			// digest check decides. The body is not read: registry 2.8
			// sends this answer with the blob's Content-Length and a
			// short error text, which read as a broken connection.
			resp.Body.Close()
			return nil, errdefs.Wrap(io.ErrUnexpectedEOF, errdefs.ErrSizeMismatch, "%s: %s %s has nothing from byte %d on (416): the content is shorter than its descriptor says",
				e.host, method, redactURL(u), off)
		}
	}
	defer resp.Body.Close()
	herr := transport.CheckError(resp, http.StatusOK)
	return nil, withRetryAfter(classify(herr, e.host, method+" "+redactURL(u)), resp)
}

func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	p.RawQuery = ""
	return p.String()
}

// classify gives an error from the HTTP layer its kind.
func classify(err error, host, what string) error {
	if err == nil {
		return nil
	}
	var k *errdefs.Error
	if errors.As(err, &k) {
		return err
	}
	var te *transport.Error
	if errors.As(err, &te) {
		msg := fmt.Sprintf("%s: %s", host, te.Error())
		if te.Request == nil {
			msg = fmt.Sprintf("%s: %s: %s", host, what, te.Error())
		}
		switch {
		case te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden:
			return &errdefs.Error{Kind: errdefs.ErrUnauthorized, Message: msg + " (missing or wrong credentials, or the repository does not exist)"}
		case te.StatusCode == http.StatusNotFound:
			return &errdefs.Error{Kind: errdefs.ErrNotFound, Message: msg}
		case te.StatusCode == http.StatusRequestEntityTooLarge:
			return &errdefs.Error{Kind: errdefs.ErrTooLarge, Message: msg}
		default:
			for _, d := range te.Errors {
				switch d.Code {
				case transport.UnauthorizedErrorCode, transport.DeniedErrorCode:
					return &errdefs.Error{Kind: errdefs.ErrUnauthorized, Message: msg}
				case transport.ManifestUnknownErrorCode, transport.BlobUnknownErrorCode, transport.NameUnknownErrorCode:
					return &errdefs.Error{Kind: errdefs.ErrNotFound, Message: msg}
				}
			}
			return &errdefs.Error{Kind: errdefs.ErrNetwork, Message: msg, Cause: &statusError{code: te.StatusCode}}
		}
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	if strings.Contains(err.Error(), "realm") {
		// go-containerregistry refuses token realms that point at private
		// addresses or use plain HTTP for an HTTPS registry.
		return errdefs.Wrap(err, errdefs.ErrUnauthorized, "%s: %s", host, what)
	}
	return errdefs.Wrap(err, errdefs.ErrNetwork, "%s: %s", host, what)
}

// statusError keeps the HTTP status of a failure for the retry decision.
type statusError struct {
	code       int
	retryAfter time.Duration
}

func (s *statusError) Error() string { return fmt.Sprintf("HTTP %d", s.code) }

func withRetryAfter(err error, resp *http.Response) error {
	var se *statusError
	if errors.As(err, &se) {
		se.retryAfter = httpx.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	return err
}

// RetryAfter reports whether err is worth retrying and how long the server
// asked to wait (0 when it did not say). Network failures, 429 and 5xx are
// transient; unauthorized, not found and verification failures are not.
func RetryAfter(err error) (wait time.Duration, transient bool) {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return 0, false
	}
	var se *statusError
	if errors.As(err, &se) {
		switch {
		case se.code == http.StatusTooManyRequests, se.code == http.StatusRequestTimeout, se.code >= 500:
			return se.retryAfter, true
		default:
			return 0, false
		}
	}
	if errdefs.KindOf(err) != errdefs.ErrNetwork {
		return 0, false
	}
	return 0, true
}

// retry runs op up to three times while it fails transiently, waiting with
// jittered exponential backoff or as long as the server asked (capped).
// Documents are small, so a short budget is enough; blob downloads have
// their own, progress-aware policy in the fetch stage.
func retry(ctx context.Context, op func() error) error {
	const attempts = 3
	var err error
	for i := 0; i < attempts; i++ {
		if err = op(); err == nil {
			return nil
		}
		wait, transient := RetryAfter(err)
		if !transient || i == attempts-1 || isRefused(err) {
			return err
		}
		if wait == 0 {
			base := 100 * time.Millisecond << i
			wait = base/2 + rand.N(base)
		}
		wait = min(wait, 5*time.Second)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
	return err
}

// isRefused reports a connection refused: the host is down, and trying it
// again at once will not help; the caller moves on to the next host.
func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }
