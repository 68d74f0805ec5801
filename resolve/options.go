package resolve

import (
	"net/http"

	"github.com/ocifetch/ocifetch/errdefs"

	"github.com/google/go-containerregistry/pkg/authn"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// DefaultMaxDocumentSize bounds how much of an index, manifest or config is
// read: registries and containerd use the same 4 MiB limit, and real
// documents are a few kilobytes.
const DefaultMaxDocumentSize = 4 << 20

// DefaultMaxDepth bounds how deeply indexes may nest. Real images nest two
// or three levels.
const DefaultMaxDepth = 8

// Option configures Open, Resolve and Validate. An option that is given
// a bad value makes those fail with kind invalid_argument.
type Option func(*options) error

type options struct {
	platform        *ocispec.Platform
	keychain        authn.Keychain
	authfile        string
	insecure        map[string]bool
	hostsDir        string
	mirrors         map[string][]Mirror
	transport       http.RoundTripper
	userAgent       string
	maxDocumentSize int64
	maxDepth        int
}

func makeOptions(opts []Option) (*options, error) {
	o := &options{
		keychain:        authn.DefaultKeychain,
		insecure:        map[string]bool{},
		mirrors:         map[string][]Mirror{},
		maxDocumentSize: DefaultMaxDocumentSize,
		maxDepth:        DefaultMaxDepth,
		userAgent:       "ocifetch",
	}
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// WithPlatform selects the platform to resolve an index to. Without it the
// host's platform is used, and a reference that names a single manifest is
// accepted whatever its platform; with it, such a manifest must match.
func WithPlatform(p ocispec.Platform) Option {
	return func(o *options) error {
		if p.OS == "" || p.Architecture == "" {
			return errdefs.New(errdefs.ErrInvalidArgument, "platform %q has no OS or architecture", FormatPlatform(p))
		}
		n := Normalize(p)
		o.platform = &n
		return nil
	}
}

// WithKeychain sets where credentials come from. The default reads the
// Docker config (~/.docker/config.json, $DOCKER_CONFIG, its credsStore and
// credHelpers) and Podman's auth.json, and falls back to anonymous access.
// Credentials are looked up per host: a mirror never receives the
// upstream's credentials.
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

// WithInsecureRegistry allows plain HTTP to a host ("host" or "host:port").
// Loopback registries are always allowed plain HTTP; everything else needs
// this opt-in.
func WithInsecureRegistry(hosts ...string) Option {
	return func(o *options) error {
		for _, h := range hosts {
			o.insecure[h] = true
		}
		return nil
	}
}

// WithHostsDir reads mirror configuration from a containerd-style hosts
// directory (DIR/HOST/hosts.toml, e.g. /etc/containerd/certs.d). See
// docs/mirrors.md.
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
		o.mirrors[canonicalHost(registry)] = append(o.mirrors[canonicalHost(registry)], mirrors...)
		return nil
	}
}

// WithTransport sets the base HTTP transport. The default is a clone of
// http.DefaultTransport with more idle connections per host, since blobs
// are fetched concurrently.
func WithTransport(rt http.RoundTripper) Option {
	return func(o *options) error {
		o.transport = rt
		return nil
	}
}

// WithUserAgent sets the User-Agent sent to registries.
func WithUserAgent(ua string) Option {
	return func(o *options) error {
		o.userAgent = ua
		return nil
	}
}

// WithMaxDocumentSize changes the size limit for indexes, manifests and
// configs (default DefaultMaxDocumentSize).
func WithMaxDocumentSize(n int64) Option {
	return func(o *options) error {
		if n <= 0 {
			return errdefs.New(errdefs.ErrInvalidArgument, "document size limit must be positive, not %d", n)
		}
		o.maxDocumentSize = n
		return nil
	}
}
