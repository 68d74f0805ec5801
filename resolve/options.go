package resolve

import (
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/source"
)

// DefaultMaxDocumentSize bounds how much of an index, manifest or config is
// read: registries and containerd use the same 4 MiB limit, and real
// documents are a few kilobytes.
const DefaultMaxDocumentSize = source.DefaultMaxDocumentSize

// DefaultMaxDepth bounds how deeply indexes may nest. Real images nest two
// or three levels.
const DefaultMaxDepth = 8

// Option configures Open, Resolve and Validate. An option that is given
// a bad value makes those fail with kind invalid_argument.
type Option func(*options) error

type options struct {
	platform        *ocispec.Platform
	maxDocumentSize int64
	maxDepth        int
	// source are the options of the registry source (package source);
	// the registry options below are forwarded to it.
	source []source.Option
}

func makeOptions(opts []Option) (*options, error) {
	o := &options{
		maxDocumentSize: DefaultMaxDocumentSize,
		maxDepth:        DefaultMaxDepth,
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

// WithSourceOptions passes options to the registry source: retry policy,
// deadlines, token hosts, warnings and everything else of package source.
func WithSourceOptions(opts ...source.Option) Option {
	return func(o *options) error {
		o.source = append(o.source, opts...)
		return nil
	}
}

// forward wraps a source option as a resolve option.
func forward(opt source.Option) Option { return WithSourceOptions(opt) }

// WithKeychain sets where credentials come from (source.WithKeychain).
// The default reads the Docker config (~/.docker/config.json,
// $DOCKER_CONFIG, its credsStore and credHelpers) or Podman's auth.json,
// and falls back to anonymous access. Credentials are looked up for the
// host a request goes to: a mirror never receives the upstream's.
func WithKeychain(kc authn.Keychain) Option { return forward(source.WithKeychain(kc)) }

// WithAuthfile reads credentials from a Docker-config-format file instead
// of the default locations (source.WithAuthfile).
func WithAuthfile(path string) Option { return forward(source.WithAuthfile(path)) }

// WithInsecureRegistry allows plain HTTP to a host ("host" or "host:port")
// (source.WithInsecureRegistry). Loopback registries are always allowed
// plain HTTP; everything else needs this opt-in.
func WithInsecureRegistry(hosts ...string) Option {
	return forward(source.WithInsecureRegistry(hosts...))
}

// WithHostsDir reads mirror configuration from a containerd-style hosts
// directory (source.WithHostsDir; see docs/mirrors.md).
func WithHostsDir(dir string) Option { return forward(source.WithHostsDir(dir)) }

// WithMirrors adds mirrors for a registry host ("docker.io",
// "example.com:5000"), tried in order before the upstream
// (source.WithMirrors).
func WithMirrors(registry string, mirrors ...Mirror) Option {
	return forward(source.WithMirrors(registry, mirrors...))
}

// WithTransport sets the base HTTP transport (source.WithTransport).
func WithTransport(rt http.RoundTripper) Option { return forward(source.WithTransport(rt)) }

// WithUserAgent sets the User-Agent of every request (source.WithUserAgent;
// the default is source.DefaultUserAgent(), "ocifetch/VERSION").
func WithUserAgent(ua string) Option { return forward(source.WithUserAgent(ua)) }

// WithMaxDocumentSize changes the size limit for indexes, manifests and
// configs (default DefaultMaxDocumentSize).
func WithMaxDocumentSize(n int64) Option {
	return func(o *options) error {
		if n <= 0 || n > source.MaxBlobSize {
			return errdefs.New(errdefs.ErrInvalidArgument, "document size limit must be between 1 and %d, not %d", source.MaxBlobSize, n)
		}
		o.maxDocumentSize = n
		o.source = append(o.source, source.WithMaxDocumentSize(n))
		return nil
	}
}
