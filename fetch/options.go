package fetch

import (
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/resolve"
	"github.com/ocifetch/ocifetch/source"
)

// DefaultJobs is how many blobs download at once unless WithJobs says
// otherwise. Most images have fewer than ten layers of very different
// sizes, so a few parallel streams already fill a link while the large
// layer dominates; more streams mostly add connections that registries
// (Docker Hub in particular) rate-limit, and each costs a buffer and a file
// descriptor. Docker and containerd use 3; 4 keeps one more stream busy
// while another is between retries.
const DefaultJobs = 4

// DefaultProgressInterval is the least time between two byte-progress
// events of one blob.
const DefaultProgressInterval = 100 * time.Millisecond

// copyBufferSize is the one buffer each running download reads into:
// large enough that syscalls and hashing calls are few, small enough that
// memory stays bounded by jobs × 256 KiB whatever the layer sizes.
const copyBufferSize = 256 << 10

// Option configures Pull, Start, FetchBlob and OpenLayer.
type Option func(*options) error

type options struct {
	jobs             int
	refName          string
	refNameSet       bool
	progress         func(Event)
	progressInterval time.Duration
	retry            *RetryPolicy      // nil: the Source's (source.NetworkOf)
	deadlines        *source.Deadlines // nil: the Source's
	allowedHosts     map[string]bool
	httpClient       *http.Client
	noKeep           bool // WithKeepBlobs(false)

	urlOnce sync.Once
	urls    *source.URLClient
}

// RetryPolicy is source.RetryPolicy, the one retry policy of ocifetch
// for documents and blobs. See there for what counts as progress.
type RetryPolicy = source.RetryPolicy

// DefaultRetryPolicy is source.DefaultRetryPolicy.
func DefaultRetryPolicy() RetryPolicy { return source.DefaultRetryPolicy() }

// network returns the retry policy and deadlines for blobs of src: this
// stage's options where given, else those src was opened with.
func (o *options) network(src resolve.Source) (RetryPolicy, source.Deadlines) {
	n := source.NetworkOf(src)
	if o.retry != nil {
		n.Retry = *o.retry
	}
	if o.deadlines != nil {
		n.Deadlines = *o.deadlines
	}
	return n.Retry, n.Deadlines
}

func makeOptions(opts []Option) (*options, error) {
	o := &options{
		jobs:             DefaultJobs,
		progressInterval: DefaultProgressInterval,
		allowedHosts:     map[string]bool{},
	}
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	return o, nil
}

func (o *options) reporter() *reporter {
	if o.progress == nil {
		return nil
	}
	return &reporter{fn: o.progress, interval: o.progressInterval}
}

// WithJobs sets how many blobs download at once (default DefaultJobs).
func WithJobs(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return errdefs.New(errdefs.ErrInvalidArgument, "jobs must be at least 1, not %d", n)
		}
		o.jobs = n
		return nil
	}
}

// WithKeepBlobs(false) makes Start keep no layer blob: a layer the store
// does not hold is not downloaded into it but streamed from its endpoints
// to the reader Session.Layer returns, verified as it is read and resumed
// with ranged requests when a connection breaks (see the package
// documentation, Streaming without a store). The indexes, manifest and
// config are stored and the image recorded as with any pull; its layers
// are then missing from the store until pulled again (or rebuilt from a
// root filesystem: apply.RebuildBlob). Layers already in the store are
// read from it. It has no effect on Pull, FetchBlob and OpenLayer, whose
// purpose is the store. The default is true.
func WithKeepBlobs(keep bool) Option {
	return func(o *options) error {
		o.noKeep = !keep
		return nil
	}
}

// WithRefName sets the name the image is recorded under in the store's
// index.json (the org.opencontainers.image.ref.name annotation, which
// "skopeo inspect oci:DIR:NAME" looks up). The default is
// DefaultRefName of the resolved reference; an empty name records the
// image without a name.
func WithRefName(name string) Option {
	return func(o *options) error {
		o.refName, o.refNameSet = name, true
		return nil
	}
}

// WithProgress sets a callback for progress events. Calls are serialized
// and byte progress is throttled (see WithProgressInterval); the callback
// runs on a download's goroutine and should return quickly.
func WithProgress(fn func(Event)) Option {
	return func(o *options) error {
		o.progress = fn
		return nil
	}
}

// WithProgressInterval sets the least time between byte-progress events of
// one blob (default DefaultProgressInterval). State changes are always
// reported.
func WithProgressInterval(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return errdefs.New(errdefs.ErrInvalidArgument, "negative progress interval")
		}
		o.progressInterval = d
		return nil
	}
}

// WithRetryPolicy sets the retry policy for blobs. The default is the one
// the Source was opened with (source.WithRetryPolicy), else
// source.DefaultRetryPolicy.
func WithRetryPolicy(p RetryPolicy) Option {
	return func(o *options) error {
		if err := p.Validate(); err != nil {
			return err
		}
		o.retry = &p
		return nil
	}
}

// WithDeadlines sets the stall rule for blobs (source.Deadlines: a
// transfer below MinRate over RateWindow is retried from where it
// stopped). The default is the one the Source was opened with, else
// source.DefaultDeadlines.
func WithDeadlines(d source.Deadlines) Option {
	return func(o *options) error {
		if err := d.Validate(); err != nil {
			return err
		}
		o.deadlines = &d
		return nil
	}
}

// WithAllowedURLHosts allows foreign layers (descriptors with urls, such
// as Windows base layers) to be downloaded from these hosts ("host" or
// "host:port") when the registry does not serve them. Following a
// descriptor's URLs by default leaked credentials in the past
// (CVE-2020-15157), so it is off unless a host is named here; even then the
// request carries no credentials, must use https (plain http only for
// loopback hosts), every redirect must land on an allowed host too, and
// the content is verified like any other.
func WithAllowedURLHosts(hosts ...string) Option {
	return func(o *options) error {
		for _, h := range hosts {
			h = strings.ToLower(strings.TrimSpace(h))
			if h == "" || strings.ContainsAny(h, "/@ ") {
				return errdefs.New(errdefs.ErrInvalidArgument, "invalid URL host %q", h)
			}
			o.allowedHosts[h] = true
		}
		return nil
	}
}

// WithHTTPClient sets the client used for foreign-layer URLs (not for the
// registry, which the Source talks to). Its redirect policy is wrapped so
// that redirects keep to the same rules as the first request.
func WithHTTPClient(c *http.Client) Option {
	return func(o *options) error {
		o.httpClient = c
		return nil
	}
}
