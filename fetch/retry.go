package fetch

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/resolve"
)

// RetryPolicy decides how long a blob download waits between attempts and
// when it gives up on an endpoint. Attempts are counted per endpoint and
// only while nothing arrives: a transfer that keeps making progress (a
// connection that breaks every few megabytes, a mirror that trickles)
// keeps its whole budget, because each resume costs only the request, and
// giving up on a large layer that is 90% done would waste far more.
// Overall time is bounded by the caller's context.
type RetryPolicy struct {
	// MaxAttempts is how many consecutive failures without progress an
	// endpoint may have before the download moves to the next endpoint
	// (or fails with the last error).
	MaxAttempts int
	// BaseDelay is the wait after the first failure; it doubles with each
	// further failure up to MaxDelay.
	BaseDelay time.Duration
	MaxDelay  time.Duration
	// MaxRetryAfter caps how long a server's Retry-After (429, 503) may
	// make the download wait: a registry asking for an hour should fail
	// the pull, not hang it.
	MaxRetryAfter time.Duration
}

// DefaultRetryPolicy is five attempts, 250 ms doubling up to 10 s, and
// Retry-After honoured up to 30 s: about half a minute of patience with a
// host that returns nothing before moving on.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{MaxAttempts: 5, BaseDelay: 250 * time.Millisecond, MaxDelay: 10 * time.Second, MaxRetryAfter: 30 * time.Second}
}

// Backoff returns how long to wait after failures consecutive failures
// (1 for the first). A server's retryAfter (0 when it gave none) is used
// instead, capped at MaxRetryAfter. jitter, in [0, 1), spreads out clients
// that failed together: the wait is half fixed and half random ("equal
// jitter"), so it never collapses to zero.
func (p RetryPolicy) Backoff(failures int, retryAfter time.Duration, jitter float64) time.Duration {
	if retryAfter > 0 {
		return min(retryAfter, p.MaxRetryAfter)
	}
	d := p.BaseDelay
	for i := 1; i < failures && d < p.MaxDelay; i++ {
		d *= 2
	}
	d = min(d, p.MaxDelay)
	return d/2 + time.Duration(jitter*float64(d/2))
}

// RetryHinter is implemented by errors that know whether the failed
// request is worth repeating and how long the server asked to wait. A
// Source outside the resolve package can return such errors to have its
// 429 and 503 answers honoured; errors of the resolve package are
// understood through resolve.RetryAfter.
type RetryHinter interface {
	RetryHint() (wait time.Duration, transient bool)
}

// errShortBody marks a response that ended cleanly before the blob's size:
// worth resuming, and a sign of a bad mirror if it does not get better.
var errShortBody = errors.New("response ended early")

// Retryable reports whether a download that failed with err is worth
// trying again, and how long the server asked to wait (0 if it did not
// say). Missing or forbidden content, bad content and cancellation are
// final; network failures, 429, 5xx and short bodies are transient.
func Retryable(err error) (wait time.Duration, ok bool) {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return 0, false
	}
	for _, k := range []errdefs.Kind{
		errdefs.ErrNotFound, errdefs.ErrUnauthorized, errdefs.ErrDigestMismatch,
		errdefs.ErrInvalidArgument, errdefs.ErrTooLarge, errdefs.ErrUnsupportedMediaType,
		errdefs.ErrManifestInvalid, errdefs.ErrInternal,
	} {
		if errors.Is(err, k) {
			return 0, false
		}
	}
	if errors.Is(err, errShortBody) {
		return 0, true
	}
	if errors.Is(err, errdefs.ErrSizeMismatch) {
		return 0, false
	}
	var h RetryHinter
	if errors.As(err, &h) {
		return h.RetryHint()
	}
	// The resolve package's view: network errors are transient unless
	// they carry a 4xx status other than 408 and 429.
	return resolve.RetryAfter(err)
}

// retrier applies a RetryPolicy to one endpoint of one download. Its clock
// and randomness are fields so tests can replace them.
type retrier struct {
	policy   RetryPolicy
	failures int
	sleep    func(ctx context.Context, d time.Duration) error
	jitter   func() float64
}

func newRetrier(p RetryPolicy) *retrier {
	return &retrier{policy: p, sleep: sleepCtx, jitter: rand.Float64}
}

// progressed resets the budget: bytes arrived since the last failure.
func (r *retrier) progressed() { r.failures = 0 }

// next decides what to do after err. It waits and returns a nil error when
// the caller should try again (with the wait it chose), or returns the
// error to stop with: err itself when it is final, err wrapped with the
// attempt count when the budget ran out, or ctx's error if ctx ended while
// waiting.
func (r *retrier) next(ctx context.Context, err error) (time.Duration, error) {
	wait, ok := Retryable(err)
	if !ok {
		return 0, err
	}
	r.failures++
	if r.failures >= r.policy.MaxAttempts {
		k := errdefs.KindOf(err)
		if k == errdefs.ErrInternal { // a transient error of no kind: the network's
			k = errdefs.ErrNetwork
		}
		return 0, errdefs.Wrap(err, k, "giving up after %d attempts", r.failures)
	}
	d := r.policy.Backoff(r.failures, wait, r.jitter())
	if err := r.sleep(ctx, d); err != nil {
		return d, err
	}
	return d, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
