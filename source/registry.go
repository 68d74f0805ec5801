package source

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
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
	"github.com/ocifetch/ocifetch/mediatype"
)

// manifestAccept lists every manifest type this program reads, plus Docker
// schema 1 so that a registry that only has schema 1 says so instead of
// answering "not found"; resolving then rejects it with a clear message.
var manifestAccept = strings.Join([]string{
	ocispec.MediaTypeImageIndex,
	ocispec.MediaTypeImageManifest,
	mediatype.DockerManifestList,
	mediatype.DockerManifest,
	mediatype.DockerSchema1Signed + ";q=0.1",
}, ", ")

// hostDownFor is how long a host whose connection failed is not asked
// again: long enough that the layers of one pull skip a dead mirror at
// once, short enough that a Source kept by an embedder recovers.
const hostDownFor = 10 * time.Second

// registrySource reads from a registry by name, through its mirrors first.
type registrySource struct {
	ref      string // normalized reference
	repo     string // repository path, e.g. "library/alpine"
	upstream string // registry as named, e.g. "docker.io"
	tag      string // "" when pinned by digest
	pinned   digest.Digest
	all      []*endpoint // mirrors in order, then the upstream
	o        *options
}

// endpoint is one host serving the repository: a mirror or the upstream.
type endpoint struct {
	src      *registrySource
	m        Mirror
	base     *url.URL // m.URL parsed
	isMirror bool
	auth     authn.Resource
	guard    *guard

	mu     sync.Mutex // held while dialing, so concurrent callers dial once
	client *http.Client
	// credsFrom names where the credentials sent to this host came from
	// ("" when none were); lookedIn, where they were looked for. Set
	// while dialing, for the messages of refusals.
	credsFrom string
	lookedIn  []string
	down      error // the last dial failure of the network's, for hostDownFor
	downTime  time.Time

	pmu        sync.Mutex
	prefetched map[digest.Digest][]byte // root documents read and verified while resolving
}

// OpenRegistry returns the Source for a registry reference: "alpine",
// "docker.io/library/alpine:3.20", "host:5000/a/b@sha256:...". Docker's
// naming rules apply (see docs/download-workflow.md). It reads the hosts
// directory, if one was given, and certificate files, but makes no
// request: the first request authenticates.
func OpenRegistry(ref string, opts ...Option) (Source, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	return openRegistry(ref, o)
}

func openRegistry(s string, o *options) (*registrySource, error) {
	ref, err := name.ParseReference(s, name.StrictValidation)
	if err != nil {
		// StrictValidation refuses an implicit ":latest"; retry leniently
		// so that "alpine" works, while keeping the strict error if the
		// lenient parse fails too.
		r2, err2 := name.ParseReference(s)
		if err2 != nil {
			return nil, referenceError(s, err)
		}
		ref = r2
	}
	ctxRepo := ref.Context()
	upstream := canonicalHost(ctxRepo.RegistryStr())
	src := &registrySource{repo: ctxRepo.RepositoryStr(), upstream: upstream, o: o}
	switch r := ref.(type) {
	case name.Digest:
		d, err := digest.Parse(r.DigestStr())
		if err != nil || !d.Algorithm().Available() {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "invalid digest in reference %q", printable(s, 200))
		}
		src.pinned = d
		src.ref = upstream + "/" + src.repo + "@" + d.String()
	case name.Tag:
		src.tag = r.TagStr()
		src.ref = upstream + "/" + src.repo + ":" + src.tag
	}

	hc := &hostsConfig{}
	if o.hostsDir != "" {
		if hc, err = loadHostsDir(o.hostsDir, upstream, o.warn); err != nil {
			return nil, err
		}
	}
	server := hc.server
	if server.URL == "" {
		// The upstream as named: HTTPS, unless it is loopback or was
		// allowed plain HTTP and no TLS settings (ca, client,
		// skip_verify, certs.d files) say it speaks TLS. A server
		// written in hosts.toml keeps the scheme written there.
		api := apiHost(upstream)
		scheme := "https"
		tlsSet := server.SkipVerify || len(server.CAFiles) > 0 || len(server.ClientCerts) > 0
		if !tlsSet && (isLoopbackHost(api) || o.plainHTTPAllowed(api) || o.plainHTTPAllowed(upstream)) {
			scheme = "http"
		}
		server.URL = scheme + "://" + api
	}
	mirrors := append(append([]Mirror(nil), hc.mirrors...), o.mirrors[upstream]...)
	for _, m := range mirrors {
		e, err := newEndpoint(src, m, true)
		if err != nil {
			return nil, err
		}
		src.all = append(src.all, e)
	}
	e, err := newEndpoint(src, server, false)
	if err != nil {
		return nil, err
	}
	src.all = append(src.all, e)
	if o.transport != nil {
		for _, e := range src.all {
			if len(e.m.CAFiles) > 0 || len(e.m.ClientCerts) > 0 || e.m.SkipVerify || e.m.DialTimeout > 0 {
				o.warn("hosts.toml TLS settings and dial_timeout for " + e.String() + " do not apply to a transport given with WithTransport")
			}
		}
	}
	return src, nil
}

func newEndpoint(src *registrySource, m Mirror, isMirror bool) (*endpoint, error) {
	u, err := parseHostURL(m.URL)
	if err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "mirror configuration for %s", src.upstream)
	}
	e := &endpoint{src: src, m: m, base: u, isMirror: isMirror, prefetched: map[digest.Digest][]byte{}}
	// Credentials are looked up for the host the requests go to. Only
	// Docker Hub's own API host uses Hub's historical config key: a
	// mirror, or a hosts.toml server standing in for docker.io, gets the
	// credentials stored for its own name or none.
	authHost := u.Host
	if canonicalHost(u.Hostname()) == "docker.io" && u.Port() == "" {
		authHost = name.DefaultRegistry
	}
	if r, err := name.NewRegistry(authHost, name.WeakValidation); err == nil {
		e.auth = r
	}
	plainOK := u.Scheme == "http" || isLoopbackHost(u.Host) || src.o.plainHTTPAllowed(u.Host)
	hostURL := &url.URL{Scheme: u.Scheme, Host: u.Host}
	if e.guard, err = newGuard(hostURL, m, plainOK, src.o); err != nil {
		return nil, err
	}
	return e, nil
}

// canonicalHost maps the names Docker Hub goes by to "docker.io".
func canonicalHost(h string) string {
	switch strings.ToLower(h) {
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

func (s *registrySource) Reference() string { return s.ref }

func (s *registrySource) network() Network {
	return Network{Retry: s.o.retry, Deadlines: s.o.deadlines, UserAgent: s.o.userAgent, Trace: s.o.trace}
}

// Endpoints returns the hosts that may serve content by digest
// (capability "pull"), mirrors in configured order, then the upstream.
func (s *registrySource) Endpoints() []Source {
	var out []Source
	for _, e := range s.all {
		if e.m.can("pull") {
			out = append(out, e)
		}
	}
	return out
}

// Root asks the hosts that may resolve tags, in order, and returns the
// first answer that holds up: the digest a host gives is read back from
// it and must hash right, be as long as it said and have the media type
// it said, or the next host is asked. A mirror with "resolve" is trusted
// to map the tag to a digest, as in containerd; everything it serves is
// still verified. A pinned digest needs no tag lookup, but its media type
// and size still come from a host that may pull.
func (s *registrySource) Root(ctx context.Context) (ocispec.Descriptor, error) {
	may := func(m Mirror) bool { return m.can("resolve") || s.pinned != "" && m.can("pull") }
	d, ok, err := askHosts(ctx, s, may, func(e *endpoint) (ocispec.Descriptor, bool, error) {
		d, err := e.Root(ctx)
		return d, err == nil, err
	})
	if !ok && err == nil {
		err = errdefs.New(errdefs.ErrInvalidArgument, "%s: no configured host may resolve this reference (capabilities)", s.ref)
	}
	return d, err
}

// askHosts asks the hosts whose configuration may allows, in order, until
// ask keeps an answer (ok). A cancelled ctx ends the search with the
// context's error. Without an answer kept, err is the last host's error,
// or nil when no host failed.
func askHosts[T any](ctx context.Context, s *registrySource, may func(Mirror) bool, ask func(*endpoint) (T, bool, error)) (v T, ok bool, err error) {
	var zero T
	for _, e := range s.all {
		if !may(e.m) {
			continue
		}
		var herr error
		if v, ok, herr = ask(e); ok {
			return v, true, nil
		}
		if herr == nil {
			continue
		}
		if ctx.Err() != nil {
			return zero, false, ContextError(ctx, s.ref, herr)
		}
		err = herr
	}
	return zero, false, err
}

func (s *registrySource) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	rc, _, err := s.fetch(ctx, desc, 0, true)
	return rc, err
}

// FetchAt opens desc from the first host that answers. It does not verify
// content: callers that must fall back on bad bytes use Endpoints.
func (s *registrySource) FetchAt(ctx context.Context, desc ocispec.Descriptor, off int64) (io.ReadCloser, int64, error) {
	return s.fetch(ctx, desc, off, false)
}

func (s *registrySource) fetch(ctx context.Context, desc ocispec.Descriptor, off int64, whole bool) (io.ReadCloser, int64, error) {
	type opened struct {
		rc    io.ReadCloser
		start int64
	}
	may := func(m Mirror) bool { return m.can("pull") }
	o, ok, err := askHosts(ctx, s, may, func(e *endpoint) (o opened, _ bool, err error) {
		if whole {
			o.rc, err = e.Fetch(ctx, desc)
		} else {
			o.rc, o.start, err = e.FetchAt(ctx, desc, off)
		}
		return o, err == nil, err
	})
	if !ok && err == nil {
		err = errdefs.New(errdefs.ErrInvalidArgument, "%s: no configured host may pull content (capabilities)", s.ref)
	}
	return o.rc, o.start, err
}

// --- endpoint: one host -------------------------------------------------

func (e *endpoint) Reference() string { return e.src.ref }

// String names the host for messages: its URL without user info (which is
// refused anyway), query or fragment.
func (e *endpoint) String() string { return Redact(e.base) }

func (e *endpoint) network() Network { return e.src.network() }

// client returns the authenticated client, dialing on first use: ping the
// host, check its token realm, get a token for pulling the repository.
// Success is kept. A failure is not, so a call cancelled while it dialed
// does not poison a Source that is used again; only a host that could not
// be reached is remembered for hostDownFor, so the other layers of a pull
// skip a dead mirror at once.
func (e *endpoint) clientFor(ctx context.Context) (*http.Client, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.client != nil {
		return e.client, nil
	}
	if e.down != nil && time.Since(e.downTime) < hostDownFor {
		return nil, e.down
	}
	c, err := e.dial(ctx)
	if err != nil {
		if ctx.Err() == nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) &&
			errdefs.KindOf(err) == errdefs.ErrNetwork {
			e.down, e.downTime = err, time.Now()
		}
		return nil, err
	}
	e.client, e.down = c, nil
	return c, nil
}

// authenticator finds the credentials for this host and notes where
// they came from (e.credsFrom, e.lookedIn). The caller holds e.mu.
func (e *endpoint) authenticator(ctx context.Context) (authn.Authenticator, error) {
	if e.auth == nil {
		return authn.Anonymous, nil
	}
	kc := e.src.o.keychain
	e.lookedIn = []string{"the keychain given"}
	if e.src.o.authfile != "" {
		kc = fileKeychain{path: e.src.o.authfile}
	} else if kc == nil {
		kc = fileKeychain{}
	}
	if fk, ok := kc.(fileKeychain); ok {
		e.lookedIn = fk.files()
	}
	a, err := authn.Resolve(ctx, kc, e.auth)
	if err != nil {
		// A missing or malformed credentials file is the caller's
		// mistake, not the registry's refusal.
		if errdefs.KindOf(err) == errdefs.ErrInvalidArgument {
			return nil, err
		}
		return nil, errdefs.Wrap(err, errdefs.ErrUnauthorized, "reading credentials for %s", e.base.Host)
	}
	e.credsFrom = ""
	if a != authn.Anonymous {
		e.credsFrom = strings.Join(e.lookedIn, ", ")
	}
	return a, nil
}

// userHost names this host in messages: the registry as the reference
// named it, or the mirror.
func (e *endpoint) userHost() string {
	if e.isMirror {
		return e.base.Host
	}
	return e.src.upstream
}

// credentialsError words a refusal (401, 403) by whether credentials were
// sent, and from where: "no credentials" and "credentials refused" call
// for different fixes. Other errors are returned as they are.
func (e *endpoint) credentialsError(err error) error {
	var he *HTTPError
	if !errdefs.Is(err, errdefs.ErrUnauthorized) || !errors.As(err, &he) {
		return err
	}
	// Written while dialing, before any request can see the client: no
	// lock needed (and dial itself calls this with e.mu held).
	from, looked := e.credsFrom, e.lookedIn
	status := he.Error()
	if from == "" {
		if len(looked) == 0 {
			looked = []string{"no file"}
		}
		return tellFinal(err, errdefs.ErrUnauthorized,
			"no credentials for %s (looked in %s), and it wants them for %s (%s); log in (docker login, podman login) or give --authfile FILE",
			e.userHost(), strings.Join(looked, ", "), e.src.repo, status)
	}
	return tellFinal(err, errdefs.ErrUnauthorized,
		"%s refused the credentials from %s for %s (%s); check or renew them for %s there",
		e.userHost(), from, e.src.repo, status, e.userHost())
}

func (e *endpoint) dial(ctx context.Context) (*http.Client, error) {
	var regOpts []name.Option
	if e.base.Scheme == "http" {
		regOpts = append(regOpts, name.Insecure)
	}
	reg, err := name.NewRegistry(e.base.Host, append(regOpts, name.WeakValidation)...)
	if err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "invalid registry host %q", e.base.Host)
	}
	auth, err := e.authenticator(ctx)
	if err != nil {
		return nil, err
	}
	pc := &pingCache{inner: e.guard, answers: map[string]*http.Response{}, record: true, plain: e.base.Scheme == "http"}
	var rt http.RoundTripper
	err = e.attempts(ctx, "connecting", func(actx context.Context) error {
		pc.reset()
		pr, err := transport.Ping(actx, reg, pc)
		if err != nil {
			return classify(err, "connecting to the registry at "+e.String())
		}
		// The realm is judged here, before go-containerregistry looks
		// at it, so that what is refused is refused with a typed error
		// that says why.
		if strings.EqualFold(pr.Scheme, "bearer") {
			if err := e.checkRealm(pr, auth); err != nil {
				return err
			}
		}
		pc.replay()
		rt, err = transport.NewWithContext(actx, reg, auth, pc, []string{"repository:" + e.src.repo + ":pull"})
		return e.credentialsError(classify(err, "authenticating to "+e.String()))
	})
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: rt, CheckRedirect: checkRedirect(e.src.o)}, nil
}

// checkRealm applies the token realm rules: the registry's own host:port
// is always fine; another host gets credentials only over HTTPS on a
// public address (checked again by the dialer, which sees the address a
// name resolves to) unless the user allowed it. It also refuses, with a
// typed error, what go-containerregistry would refuse untyped: a plain
// HTTP realm for a registry spoken to over HTTPS, a loopback or private
// IP literal on another host:port.
func (e *endpoint) checkRealm(pr *transport.Challenge, auth authn.Authenticator) error {
	raw, ok := pr.Parameters["realm"]
	if !ok {
		return errdefs.New(errdefs.ErrUnauthorized, "%s: its Bearer challenge names no token realm", e)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return errdefs.New(errdefs.ErrUnauthorized, "%s: invalid token realm %q", e, printable(redactString(raw), 200))
	}
	scheme := "https"
	if pr.Insecure {
		scheme = "http"
	}
	if strings.EqualFold(u.Host, e.base.Host) || hostKey(u) == hostKey(&url.URL{Scheme: scheme, Host: e.base.Host}) {
		return nil
	}
	allowed := e.guard.tokenHostAllowed(u)
	creds := auth != authn.Anonymous
	if u.Scheme == "http" && !pr.Insecure {
		return refuse(errdefs.ErrUnauthorized,
			"%s: the token realm %s is plain HTTP for a registry spoken to over HTTPS, which is refused", e, Redact(u))
	}
	if u.Scheme == "http" && creds && !allowed {
		return refuse(errdefs.ErrUnauthorized,
			"refusing to send the credentials for %s to the token server %s over plain HTTP; allow it with --allow-token-host %s",
			e.base.Host, u.Host, u.Host)
	}
	if ip, ok := parseIPLiteral(u.Hostname()); ok {
		if k := nonPublic(ip); k != "" {
			if creds && !allowed {
				return refuse(errdefs.ErrUnauthorized,
					"refusing to send the credentials for %s to the token server %s: it is a %s address; allow it with --allow-token-host %s",
					e.base.Host, u.Host, k, u.Host)
			}
			// go-containerregistry refuses such a realm in every case.
			return refuse(errdefs.ErrUnauthorized,
				"%s: the token realm %s is a %s IP address on another host:port than the registry's, which is refused; name the token server by host name",
				e, Redact(u), k)
		}
	}
	return nil
}

// url builds an API URL on this host. Mirrors that serve several registries
// learn which one is meant from the ns parameter, as containerd sends it.
func (e *endpoint) url(kind, ref string) string {
	base := strings.TrimSuffix(e.m.URL, "/")
	if !e.m.OverridePath && !strings.HasSuffix(base, "/v2") {
		base += "/v2"
	}
	u := base + "/" + e.src.repo + "/" + kind + "/" + ref
	if e.isMirror {
		u += "?ns=" + url.QueryEscape(e.src.upstream)
	}
	return u
}

// request sends one request and turns a failure status into a typed error
// (see getRange).
func (e *endpoint) request(ctx context.Context, method, u, accept string, off, size int64) (*http.Response, int64, error) {
	c, err := e.clientFor(ctx)
	if err != nil {
		// Connecting has retried already; the caller must not multiply
		// those attempts by its own.
		return nil, 0, final{err}
	}
	hdr := http.Header{}
	if accept != "" {
		hdr.Set("Accept", accept)
	}
	resp, start, err := getRange(ctx, c, method, u, method+" "+redactString(u), hdr, off, size)
	return resp, start, e.credentialsError(err)
}

// attempts runs op under the retry policy, each attempt under the
// per-document deadline: for requests whose whole answer is small
// (pings, token exchanges, documents). A refused connection is final at
// once: the host is down, and the caller moves on to the next one.
func (e *endpoint) attempts(ctx context.Context, what string, op func(actx context.Context) error) error {
	return e.attemptsWith(ctx, NewRetrier(e.src.o.retry), what, op)
}

// attemptsWith is attempts on a budget r that the caller may already
// have spent from.
func (e *endpoint) attemptsWith(ctx context.Context, r *Retrier, what string, op func(actx context.Context) error) error {
	for {
		err := e.attempt(ctx, what, op)
		if err == nil {
			return nil
		}
		if _, err := r.Next(ctx, err); err != nil {
			return err
		}
	}
}

// attempt runs op once under the per-document deadline.
func (e *endpoint) attempt(ctx context.Context, what string, op func(actx context.Context) error) error {
	d := e.src.o.deadlines.Document
	actx, cancel := context.WithTimeoutCause(ctx, d, ErrDocumentDeadline)
	defer cancel()
	err := op(actx)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ContextError(ctx, e.String(), err)
	case actx.Err() != nil:
		return errdefs.Wrap(ErrDocumentDeadline, errdefs.ErrNetwork, "%s: %s: no complete answer within %s", e, what, d)
	case errors.Is(err, syscall.ECONNREFUSED):
		return final{err}
	}
	return err
}

// final marks an error that is not worth retrying although its kind
// would be.
type final struct{ error }

func (f final) Unwrap() error                    { return f.error }
func (f final) RetryHint() (time.Duration, bool) { return 0, false }

// document reads a small answer whole (at most limit+1 bytes, so that a
// caller notices one too long), retrying and under the per-document
// deadline.
func (e *endpoint) document(ctx context.Context, u, accept, what string, limit int64) ([]byte, http.Header, error) {
	return e.documentWith(ctx, NewRetrier(e.src.o.retry), u, accept, what, limit)
}

// documentWith is document on a budget r that the caller may already have
// spent from.
func (e *endpoint) documentWith(ctx context.Context, r *Retrier, u, accept, what string, limit int64) ([]byte, http.Header, error) {
	var body []byte
	var hdr http.Header
	err := e.attemptsWith(ctx, r, what, func(actx context.Context) error {
		resp, _, err := e.request(actx, http.MethodGet, u, accept, 0, 0)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
		if err != nil {
			if actx.Err() != nil {
				return err
			}
			return errdefs.Wrap(err, errdefs.ErrNetwork, "%s: reading %s", e, what)
		}
		body, hdr = b, resp.Header
		return nil
	})
	return body, hdr, err
}

// Root learns the descriptor of the reference from this host (HEAD, or a
// GET where HEAD is answered badly) and reads the document back to check
// what the host claimed: it must hash to the digest, be as long as
// Content-Length said, and carry the media type Content-Type said. A host
// whose answer does not hold up fails, and Root of the source asks the
// next.
func (e *endpoint) Root(ctx context.Context) (ocispec.Descriptor, error) {
	ref := e.src.tag
	pinned := e.src.pinned
	if pinned != "" {
		ref = pinned.String()
	}
	return e.lookup(ctx, ref, pinned, true)
}

// errNoHEAD stands for the HEAD lookup skips when its caller reads the
// document anyway.
var errNoHEAD = errors.New("HEAD not asked")

// lookup learns the descriptor of a tag or digest (ref) of the
// repository, as Root describes; pinned, when set, is the digest the
// answer must have. With head, HEAD is asked first; without, the document
// is read at once, which saves a round trip when the caller reads it
// anyway (it is kept for the Fetch that follows).
func (e *endpoint) lookup(ctx context.Context, ref string, pinned digest.Digest, head bool) (ocispec.Descriptor, error) {
	limit := e.src.o.maxDocumentSize
	var desc ocispec.Descriptor
	// HEAD and the GETs after it share one budget. HEAD is asked once
	// and is the document's first attempt: after a failure worth
	// retrying, the GET fallback retries with what is left; after an
	// answer, so does the GET that reads the document back. Retried on
	// their own, a HEAD and then a GET took the budget twice: six
	// attempts (over six minutes against a host that trickles, four
	// promised), and a slow HEAD before three trickled read-backs four.
	r := NewRetrier(e.src.o.retry)
	err := errNoHEAD
	if head {
		err = e.attempt(ctx, "HEAD manifest "+ref, e.headManifest(ref, pinned, &desc))
		if err != nil {
			_, nerr := r.Next(ctx, err)
			switch {
			case ctx.Err() != nil:
				err = nerr
			case nerr != nil && r.Failures() >= e.src.o.retry.MaxAttempts:
				return desc, nerr // the HEAD was the whole budget (MaxAttempts 1)
			}
		}
	}
	var body []byte
	switch {
	case err == nil:
		if err := CheckSize(desc.Size, limit, "manifest "+desc.Digest.String()); err != nil {
			return desc, errdefs.Wrap(err, errdefs.KindOf(err), "%s", e)
		}
		r.failures++ // the HEAD was the first attempt (one GET is always made)
		// Read the document back to check the claims: by digest from a
		// host that may pull, by the reference from one that may only
		// resolve (a GET by tag is a resolve request).
		back := desc.Digest.String()
		if !e.m.can("pull") {
			back = ref
		}
		var gerr error
		body, _, gerr = e.documentWith(ctx, r, e.url("manifests", back), manifestAccept, "manifest "+back, desc.Size)
		if gerr != nil {
			return desc, gerr
		}
		if int64(len(body)) != desc.Size {
			more := ""
			if int64(len(body)) > desc.Size {
				more = " or more"
			}
			return desc, errdefs.New(errdefs.ErrSizeMismatch, "%s: HEAD said manifest %s is %d bytes, it has %d%s", e, desc.Digest, desc.Size, len(body), more)
		}
	case head && (errdefs.Is(err, errdefs.ErrUnauthorized) || ctx.Err() != nil):
		return desc, err
	default:
		// Some registries answer HEAD badly (405, no Docker-Content-Digest):
		// read the manifest instead. A HEAD answered 404 is asked again
		// as a GET too, whose body says whether the tag or the whole
		// repository is missing.
		var hdr http.Header
		var gerr error
		body, hdr, gerr = e.documentWith(ctx, r, e.url("manifests", ref), manifestAccept, "manifest "+ref, limit)
		if gerr != nil {
			return desc, e.notFoundError(gerr, ref, pinned)
		}
		if int64(len(body)) > limit {
			return desc, errdefs.New(errdefs.ErrTooLarge, "%s: manifest %s is over the %d byte limit", e, ref, limit)
		}
		desc = ocispec.Descriptor{MediaType: mediaTypeOf(hdr.Get("Content-Type")), Size: int64(len(body))}
		if pinned != "" {
			desc.Digest = pinned
		} else {
			desc.Digest = digest.FromBytes(body)
			if h := hdr.Get("Docker-Content-Digest"); h != "" && h != desc.Digest.String() {
				return desc, errdefs.New(errdefs.ErrDigestMismatch, "%s: registry says manifest digest %s but the bytes hash to %s", e, printable(h, 100), desc.Digest)
			}
		}
	}
	if got := desc.Digest.Algorithm().FromBytes(body); got != desc.Digest {
		return desc, errdefs.New(errdefs.ErrDigestMismatch, "%s: manifest %s hashes to %s", e, desc.Digest, got)
	}
	if err := checkClaimedType(&desc, body); err != nil {
		return desc, errdefs.Wrap(err, errdefs.KindOf(err), "%s", e)
	}
	e.pmu.Lock()
	e.prefetched[desc.Digest] = body
	e.pmu.Unlock()
	return desc, nil
}

// notFoundError words a 404 for the tag or digest ref the way people
// look for it: "tag nope not found in host/repo", saying so when the
// registry said the whole repository is unknown. Other errors are returned
// as they are.
func (e *endpoint) notFoundError(err error, ref string, pinned digest.Digest) error {
	if !errdefs.Is(err, errdefs.ErrNotFound) {
		return err
	}
	what := "tag " + ref
	if pinned != "" {
		what = "manifest " + pinned.String()
	}
	repo := e.userHost() + "/" + e.src.repo
	var he *HTTPError
	if errors.As(err, &he) && slices.Contains(he.Codes, "NAME_UNKNOWN") {
		return tellFinal(err, errdefs.ErrNotFound, "%s not found in %s: the registry has no such repository; check the name", what, repo)
	}
	return tellFinal(err, errdefs.ErrNotFound, "%s not found in %s", what, repo)
}

// headManifest is one HEAD of a manifest, filling desc from the headers.
func (e *endpoint) headManifest(ref string, pinned digest.Digest, desc *ocispec.Descriptor) func(actx context.Context) error {
	return func(actx context.Context) error {
		resp, _, err := e.request(actx, http.MethodHead, e.url("manifests", ref), manifestAccept, 0, 0)
		if err != nil {
			return err
		}
		resp.Body.Close()
		d, derr := descriptorFromHeaders(resp, pinned)
		if derr != nil {
			return final{derr}
		}
		*desc = d
		return nil
	}
}

// checkClaimedType holds the media type a host claimed (Content-Type)
// against the document: its own mediaType, if any, must agree, and an
// index must have "manifests", a manifest "config". An untyped claim
// takes the document's own type.
func checkClaimedType(desc *ocispec.Descriptor, body []byte) error {
	var h struct {
		MediaType string          `json:"mediaType"`
		Manifests json.RawMessage `json:"manifests"`
		Config    json.RawMessage `json:"config"`
	}
	if json.Unmarshal(body, &h) != nil {
		return nil // not JSON: resolving says so with the document in hand
	}
	if h.MediaType != "" && desc.MediaType != "" && h.MediaType != desc.MediaType {
		return errdefs.New(errdefs.ErrManifestInvalid, "said Content-Type %q, the document says mediaType %q", desc.MediaType, printable(h.MediaType, 100))
	}
	switch {
	case mediatype.IsIndex(desc.MediaType) && h.Manifests == nil:
		return errdefs.New(errdefs.ErrManifestInvalid, "said Content-Type %q, the document is not an index", desc.MediaType)
	case mediatype.IsManifest(desc.MediaType) && h.Config == nil:
		return errdefs.New(errdefs.ErrManifestInvalid, "said Content-Type %q, the document is not a manifest", desc.MediaType)
	}
	if desc.MediaType == "" {
		desc.MediaType = h.MediaType
	}
	return nil
}

func descriptorFromHeaders(resp *http.Response, pinned digest.Digest) (ocispec.Descriptor, error) {
	d := ocispec.Descriptor{MediaType: mediaTypeOf(resp.Header.Get("Content-Type")), Size: resp.ContentLength}
	if h := resp.Header.Get("Docker-Content-Digest"); h != "" {
		dg, err := digest.Parse(h)
		if err != nil || !dg.Algorithm().Available() {
			return d, errdefs.New(errdefs.ErrManifestInvalid, "registry sent an invalid Docker-Content-Digest %q", printable(h, 100))
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

// manifestPath reports whether desc is read from the manifests endpoint:
// indexes and manifests, and untyped documents (a root whose
// Content-Type said nothing), which registries serve there.
func manifestPath(mt string) bool {
	return mt == "" || mediatype.IsIndex(mt) || mediatype.IsManifest(mt)
}

func (e *endpoint) canPull() error {
	if !e.m.can("pull") {
		return errdefs.New(errdefs.ErrInvalidArgument, "%s may not serve content: its capabilities lack \"pull\"", e)
	}
	return nil
}

// Fetch reads an index, manifest or config whole (at most its size plus
// one byte, or the document limit when the size is unknown), retried and
// under the per-document deadline. Larger content streams as FetchAt.
func (e *endpoint) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	if err := e.canPull(); err != nil {
		return nil, err
	}
	if err := CheckDigest(desc.Digest); err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrManifestInvalid, "%s", e.src.ref)
	}
	if body := e.takePrefetched(desc.Digest); body != nil {
		return io.NopCloser(bytes.NewReader(body)), nil
	}
	limit := e.src.o.maxDocumentSize
	if desc.Size > limit && !manifestPath(desc.MediaType) {
		rc, _, err := e.FetchAt(ctx, desc, 0)
		return rc, err
	}
	if desc.Size > 0 && desc.Size < limit {
		limit = desc.Size
	}
	kind, accept := "blobs", ""
	if manifestPath(desc.MediaType) {
		kind, accept = "manifests", manifestAccept
	}
	body, _, err := e.document(ctx, e.url(kind, desc.Digest.String()), accept, "document "+desc.Digest.String(), limit)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(body)), nil
}

func (e *endpoint) takePrefetched(d digest.Digest) []byte {
	e.pmu.Lock()
	defer e.pmu.Unlock()
	body, ok := e.prefetched[d]
	if ok {
		delete(e.prefetched, d)
	}
	return body
}

// FetchAt opens desc's content at off, in one attempt (the fetch stage
// retries and resumes). Manifests and indexes come from the manifests
// endpoint, everything else from blobs.
func (e *endpoint) FetchAt(ctx context.Context, desc ocispec.Descriptor, off int64) (io.ReadCloser, int64, error) {
	if err := e.canPull(); err != nil {
		return nil, 0, err
	}
	if err := CheckDigest(desc.Digest); err != nil {
		return nil, 0, errdefs.Wrap(err, errdefs.ErrManifestInvalid, "%s", e.src.ref)
	}
	if off == 0 {
		if body := e.takePrefetched(desc.Digest); body != nil {
			return io.NopCloser(bytes.NewReader(body)), 0, nil
		}
	}
	kind, accept := "blobs", ""
	if manifestPath(desc.MediaType) {
		kind, accept = "manifests", manifestAccept
	}
	resp, start, err := e.request(ctx, http.MethodGet, e.url(kind, desc.Digest.String()), accept, off, desc.Size)
	if err != nil {
		return nil, 0, err
	}
	return resp.Body, start, nil
}

// pingCache lets go-containerregistry's handshake reuse the answer to the
// ping made here to check the token realm first, so /v2/ is asked once.
//
// For a host spoken to over plain HTTP, it also answers the HTTPS ping
// go-containerregistry sends beside the HTTP one (it tries both for an
// "insecure" registry) with an error, without a connection: every
// request goes to the endpoint's http:// URL anyway, and the attempt
// cost a connection and a TLS failure per ping.
type pingCache struct {
	inner   http.RoundTripper
	mu      sync.Mutex
	record  bool
	plain   bool
	answers map[string]*http.Response // by URL: status and header of a recorded ping
}

// errNotHTTPS answers the HTTPS ping of a plain-HTTP endpoint.
var errNotHTTPS = errors.New("not asked: the registry is spoken to over plain HTTP")

func isPing(req *http.Request) bool {
	return req.Method == http.MethodGet && (req.URL.Path == "/v2/" || req.URL.Path == "/v2")
}

// reset starts recording afresh, for another attempt.
func (p *pingCache) reset() {
	p.mu.Lock()
	p.record = true
	clear(p.answers)
	p.mu.Unlock()
}

// replay switches from recording pings to answering the next one of each
// URL from the record.
func (p *pingCache) replay() {
	p.mu.Lock()
	p.record = false
	p.mu.Unlock()
}

func (p *pingCache) RoundTrip(req *http.Request) (*http.Response, error) {
	if !isPing(req) {
		return p.inner.RoundTrip(req)
	}
	if p.plain && req.URL.Scheme == "https" {
		return nil, errNotHTTPS
	}
	key := req.URL.String()
	p.mu.Lock()
	if r, ok := p.answers[key]; ok && !p.record {
		delete(p.answers, key)
		p.mu.Unlock()
		return &http.Response{Status: r.Status, StatusCode: r.StatusCode, Proto: r.Proto, ProtoMajor: r.ProtoMajor, ProtoMinor: r.ProtoMinor,
			Header: r.Header.Clone(), Body: http.NoBody, ContentLength: 0, Request: req}, nil
	}
	record := p.record
	p.mu.Unlock()
	resp, err := p.inner.RoundTrip(req)
	if err == nil && record && (resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized) {
		p.mu.Lock()
		p.answers[key] = &http.Response{Status: resp.Status, StatusCode: resp.StatusCode, Proto: resp.Proto,
			ProtoMajor: resp.ProtoMajor, ProtoMinor: resp.ProtoMinor, Header: resp.Header.Clone()}
		p.mu.Unlock()
	}
	return resp, err
}
