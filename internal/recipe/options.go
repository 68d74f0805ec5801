package recipe

import "github.com/ocifetch/ocifetch/errdefs"

// Option configures a Prober.
type Option func(*options) error

type options struct {
	evidence  int          // compressed bytes past the header a candidate must match
	maxPrefix int          // uncompressed bytes kept, and fed to a candidate at most
	whole     int          // a complete layer up to this size is run to its end
	work      int64        // uncompressed bytes compressed over all candidates
	pool      *EncoderPool // WithEncoderPool; nil: a new encoder per candidate
}

// The defaults keep the probe of each layer of the GOROOT benchmark image
// within its budget (docs/reproducibility.md has the figures).
const (
	defaultEvidence  = 16 << 10
	defaultMaxPrefix = 1 << 20
	defaultWhole     = 256 << 10
	defaultWork      = 6 << 20
)

func makeOptions(opts []Option) (options, error) {
	o := options{evidence: defaultEvidence, maxPrefix: defaultMaxPrefix, whole: defaultWhole, work: defaultWork}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return o, err
		}
	}
	o.whole = min(o.whole, o.maxPrefix)
	return o, nil
}

// WithEvidence sets how many bytes of compressed data past the stream's
// header a candidate must reproduce to count (default 16 KiB: one deflate
// or zstd block or two). A candidate stops there, unless another one
// reproduced the same bytes: then both run on, up to the maximum prefix,
// until one differs.
func WithEvidence(n int) Option {
	return func(o *options) error {
		if n <= 0 || n > 64<<20 {
			return errdefs.New(errdefs.ErrInvalidArgument, "recipe: evidence of %d bytes must be positive and at most 64 MiB", n)
		}
		o.evidence = n
		return nil
	}
}

// WithMaxPrefix sets how much of each stream a Prober keeps (default
// 1 MiB of the uncompressed one, a little more of the compressed one),
// which is as far as a candidate can run.
func WithMaxPrefix(n int) Option {
	return func(o *options) error {
		if n <= 0 || n > 64<<20 {
			return errdefs.New(errdefs.ErrInvalidArgument, "recipe: prefix of %d bytes must be positive and at most 64 MiB", n)
		}
		o.maxPrefix = n
		return nil
	}
}

// WithWorkLimit bounds how many uncompressed bytes the probe compresses
// over all the candidates it tries, which bounds what a layer costs when
// no candidate reproduces it (default 6 MiB; trying every candidate on
// such a layer takes less, about 3.5 MiB).
func WithWorkLimit(n int64) Option {
	return func(o *options) error {
		if n <= 0 {
			return errdefs.New(errdefs.ErrInvalidArgument, "recipe: work limit %d must be positive", n)
		}
		o.work = n
		return nil
	}
}

// WithEncoderPool makes the Prober take its zstd candidates' encoders
// from pool and give them back when it is done (see EncoderPool).
func WithEncoderPool(pool *EncoderPool) Option {
	return func(o *options) error {
		o.pool = pool
		return nil
	}
}
