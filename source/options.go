package source

import (
	"net"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/ocifetch/ocifetch/errdefs"
)

// DefaultMaxDocumentSize bounds how much of an index, manifest or config is
// read: registries and containerd use the same 4 MiB limit, and real
// documents are a few kilobytes.
const DefaultMaxDocumentSize = 4 << 20

// Option configures a registry source (OpenRegistry). An option given a
// bad value makes OpenRegistry fail with kind invalid_argument.
type Option func(*options) error

type options struct {
	keychain        authn.Keychain // nil: the Docker config, see defaultKeychain
	authfile        string
	insecure        map[string]bool
	hostsDir        string
	mirrors         map[string][]Mirror
	transport       http.RoundTripper
	userAgent       string
	maxDocumentSize int64
	retry           RetryPolicy
	deadlines       Deadlines
	tokenHosts      map[string]bool
	warn            func(string)
	trace           func(Trace)

	// loopbackPublic makes a registry on a loopback address count as
	// public for the redirect rule; only tests set it (export_test.go).
	loopbackPublic bool
}

func makeOptions(opts []Option) (*options, error) {
	o := &options{
		insecure:        map[string]bool{},
		mirrors:         map[string][]Mirror{},
		userAgent:       DefaultUserAgent(),
		maxDocumentSize: DefaultMaxDocumentSize,
		retry:           DefaultRetryPolicy(),
		deadlines:       DefaultDeadlines(),
		tokenHosts:      map[string]bool{},
		warn:            defaultWarn,
	}
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// WithKeychain sets where credentials come from. The default reads the
// Docker config (~/.docker/config.json, $DOCKER_CONFIG, its credsStore and
// credHelpers) or Podman's auth.json, and falls back to anonymous access;
// a malformed file is an invalid_argument error. Credentials are looked up
// for the host each request goes to: a mirror or a hosts.toml server never
// receives the upstream's.
func WithKeychain(kc authn.Keychain) Option {
	return func(o *options) error {
		o.keychain = kc
		return nil
	}
}

// WithAuthfile reads credentials from a Docker-config-format file (the
// format of ~/.docker/config.json and Podman's auth.json) instead of the
// default locations.
func WithAuthfile(path string) Option {
	return func(o *options) error {
		o.authfile = path
		return nil
	}
}

// WithInsecureRegistry allows plain HTTP to hosts: "host" allows every
// port of it, "host:port" that port only. A URL ("http://host:5000") is
// refused with kind invalid_argument: it would look allowed and match
// nothing. Loopback registries are always allowed plain HTTP; everything
// else needs this opt-in.
func WithInsecureRegistry(hosts ...string) Option {
	return func(o *options) error {
		for _, h := range hosts {
			k, err := ParseHost(h)
			if err != nil {
				return err
			}
			o.insecure[k] = true
		}
		return nil
	}
}

// ParseHost reads a host as WithInsecureRegistry takes it: "host" or
// "host:port" (an IPv6 address in brackets when it has a port), and
// returns it in lower case. A scheme, path, user info or empty port is an
// invalid_argument error that says what to write instead.
func ParseHost(s string) (string, error) {
	h := strings.ToLower(strings.TrimSpace(s))
	if scheme, rest, ok := strings.Cut(h, "://"); ok {
		rest, _, _ = strings.Cut(rest, "/")
		return "", errdefs.New(errdefs.ErrInvalidArgument, "%q is a URL: give the host without %s://, as %s (every port) or %s", printable(s, 100), printable(scheme, 20), printable(hostOnly(rest), 100), printable(rest, 100))
	}
	if h == "" || strings.ContainsAny(h, "/@?# \t") {
		return "", errdefs.New(errdefs.ErrInvalidArgument, "invalid host %q: give HOST (every port) or HOST:PORT", printable(s, 100))
	}
	if host, port, err := net.SplitHostPort(h); err == nil {
		if host == "" || port == "" || strings.Trim(port, "0123456789") != "" {
			return "", errdefs.New(errdefs.ErrInvalidArgument, "invalid host %q: give HOST (every port) or HOST:PORT", printable(s, 100))
		}
		return net.JoinHostPort(host, port), nil
	}
	h = strings.Trim(h, "[]")
	if strings.Count(h, ":") == 1 {
		return "", errdefs.New(errdefs.ErrInvalidArgument, "invalid host %q: give HOST (every port) or HOST:PORT", printable(s, 100))
	}
	return h, nil
}

// hostOnly is the host of a host[:port].
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.Trim(hostport, "[]")
}

// plainHTTPAllowed reports whether hostport was allowed plain HTTP by
// WithInsecureRegistry, by host and port or by host alone.
func (o *options) plainHTTPAllowed(hostport string) bool {
	h := strings.ToLower(hostport)
	return o.insecure[h] || o.insecure[hostOnly(h)]
}

// WithHostsDir reads mirror configuration from a containerd-style hosts
// directory (DIR/HOST/hosts.toml, or the certs.d files, e.g.
// /etc/containerd/certs.d). See docs/mirrors.md.
func WithHostsDir(dir string) Option {
	return func(o *options) error {
		o.hostsDir = dir
		return nil
	}
}

// WithMirrors adds mirrors for a registry host ("docker.io",
// "example.com:5000"), tried in order before the upstream.
func WithMirrors(registry string, mirrors ...Mirror) Option {
	return func(o *options) error {
		if registry == "" {
			return errdefs.New(errdefs.ErrInvalidArgument, "mirrors for an empty registry name")
		}
		for _, m := range mirrors {
			if _, err := parseHostURL(m.URL); err != nil {
				return errdefs.Wrap(err, errdefs.ErrInvalidArgument, "mirror for %s", registry)
			}
		}
		h := canonicalHost(registry)
		o.mirrors[h] = append(o.mirrors[h], mirrors...)
		return nil
	}
}

// WithTransport sets the base HTTP transport. The default is a clone of
// http.DefaultTransport with more idle connections per host, since blobs
// are fetched concurrently. With a transport of the caller's, ocifetch
// does not dial: the address rules for token realms and redirects are
// then checked against what the host name resolves to here, and
// hosts.toml TLS settings do not apply.
func WithTransport(rt http.RoundTripper) Option {
	return func(o *options) error {
		o.transport = rt
		return nil
	}
}

// WithUserAgent sets the User-Agent of every request: to registries,
// token servers and redirect targets (default DefaultUserAgent()).
func WithUserAgent(ua string) Option {
	return func(o *options) error {
		if ua == "" || strings.ContainsAny(ua, "\r\n") {
			return errdefs.New(errdefs.ErrInvalidArgument, "invalid user agent %q", ua)
		}
		o.userAgent = ua
		return nil
	}
}

// WithMaxDocumentSize changes the size limit for indexes, manifests and
// configs (default DefaultMaxDocumentSize).
func WithMaxDocumentSize(n int64) Option {
	return func(o *options) error {
		if n <= 0 || n > MaxBlobSize {
			return errdefs.New(errdefs.ErrInvalidArgument, "document size limit must be between 1 and %d, not %d", MaxBlobSize, n)
		}
		o.maxDocumentSize = n
		return nil
	}
}

// WithRetryPolicy replaces DefaultRetryPolicy for documents, and for blobs
// unless the fetch stage is given its own.
func WithRetryPolicy(p RetryPolicy) Option {
	return func(o *options) error {
		if err := p.Validate(); err != nil {
			return err
		}
		o.retry = p
		return nil
	}
}

// WithDeadlines replaces DefaultDeadlines.
func WithDeadlines(d Deadlines) Option {
	return func(o *options) error {
		if err := d.Validate(); err != nil {
			return err
		}
		o.deadlines = d
		return nil
	}
}

// WithAllowTokenHost lets credentials go to a token server ("host" or
// "host:port") that the address rules would refuse: one on a loopback,
// link-local or private address other than the registry's own host:port,
// or one spoken to over plain HTTP. The CLI's --allow-token-host.
func WithAllowTokenHost(hosts ...string) Option {
	return func(o *options) error {
		for _, h := range hosts {
			h = strings.ToLower(strings.TrimSpace(h))
			if h == "" || strings.ContainsAny(h, "/@ ") {
				return errdefs.New(errdefs.ErrInvalidArgument, "invalid token host %q: want HOST or HOST:PORT", h)
			}
			o.tokenHosts[h] = true
		}
		return nil
	}
}

// WithWarnings sets where warnings go: hosts.toml keys that are unknown or
// have no effect. The default writes each as one line to standard error;
// nil discards them.
func WithWarnings(fn func(msg string)) Option {
	return func(o *options) error {
		if fn == nil {
			fn = func(string) {}
		}
		o.warn = fn
		return nil
	}
}
