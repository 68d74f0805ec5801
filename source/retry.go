package source

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ocifetch/ocifetch/errdefs"
)

// RetryPolicy is the one retry policy of ocifetch, for documents
// (indexes, manifests, configs) and blobs alike: how long to wait between
// attempts and when to give up on a host.
//
// Attempts are counted only while they make no progress. For a blob,
// progress means bytes beyond the furthest offset this blob has reached
// (a host that ignores Range and sends the same prefix again makes
// none), so a large layer on a connection that breaks every few megabytes
// keeps its whole budget. A document is read whole in each attempt, so
// every failed attempt counts. The budget is never endless: MaxAttempts
// attempts in a row without progress end the transfer from that host.
type RetryPolicy struct {
	// MaxAttempts is how many attempts in a row without progress a host
	// gets before the transfer moves to the next host (or fails with the
	// last error).
	MaxAttempts int
	// BaseDelay is the wait after the first failure; it doubles with each
	// further failure up to MaxDelay. Waits are jittered.
	BaseDelay time.Duration
	MaxDelay  time.Duration
	// MaxRetryAfter caps how long a server's Retry-After (429, 503) may
	// make a transfer wait: a registry asking for an hour should fail the
	// pull, not hang it.
	MaxRetryAfter time.Duration
}

// DefaultRetryPolicy is three attempts without progress, 1 s doubling up to
// 15 s between them, and Retry-After honoured up to 30 s. With the
// default per-document deadline of 60 s, a host that trickles a manifest
// fails within 3 × 60 s plus at most 3 s of backoff, well inside four
// minutes.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{MaxAttempts: 3, BaseDelay: time.Second, MaxDelay: 15 * time.Second, MaxRetryAfter: 30 * time.Second}
}

// Validate reports a policy that cannot work: no attempts, negative or
// inverted delays.
func (p RetryPolicy) Validate() error {
	if p.MaxAttempts < 1 || p.BaseDelay < 0 || p.MaxDelay < p.BaseDelay || p.MaxRetryAfter < 0 {
		return errdefs.New(errdefs.ErrInvalidArgument, "invalid retry policy %+v", p)
	}
	return nil
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
// Source of another package can return such errors to have its 429 and 503
// answers honoured.
type RetryHinter interface {
	RetryHint() (wait time.Duration, transient bool)
}

// ErrShortBody marks a response that ended cleanly before the content's
// size: worth resuming, and a sign of a bad mirror if it does not get
// better.
var ErrShortBody = errors.New("response ended early")

// ErrRefused marks a request ocifetch refused to make: plain HTTP where it
// was not allowed, a redirect or token realm to an address the rules
// forbid. Asking again will not change the answer.
var ErrRefused = errors.New("refused")

// refusedError is a refusal: an errdefs error of its kind that also
// matches ErrRefused, without ErrRefused in its text.
type refusedError struct{ err *errdefs.Error }

func (r *refusedError) Error() string   { return r.err.Error() }
func (r *refusedError) Unwrap() []error { return []error{r.err, ErrRefused} }

func refuse(kind errdefs.Kind, format string, args ...any) error {
	return &refusedError{&errdefs.Error{Kind: kind, Message: fmt.Sprintf(format, args...)}}
}

// Retryable reports whether a transfer that failed with err is worth
// trying again, and how long the server asked to wait (0 if it did not
// say). Missing or forbidden content, bad content, refusals and
// cancellation are final; network failures, stalls, per-attempt
// deadlines, 408, 429, 5xx and short bodies are transient.
func Retryable(err error) (wait time.Duration, ok bool) {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrRefused) {
		return 0, false
	}
	if errors.Is(err, ErrShortBody) {
		return 0, true
	}
	for _, k := range finalKinds {
		if errors.Is(err, k) {
			return 0, false
		}
	}
	var h RetryHinter
	if errors.As(err, &h) {
		return h.RetryHint()
	}
	if errdefs.KindOf(err) != errdefs.ErrNetwork {
		return 0, false
	}
	return 0, true
}

// finalKinds are failures that asking again cannot fix, wherever they sit
// in an error's chain.
var finalKinds = []errdefs.Kind{
	errdefs.ErrNotFound, errdefs.ErrUnauthorized, errdefs.ErrDigestMismatch, errdefs.ErrSizeMismatch,
	errdefs.ErrInvalidArgument, errdefs.ErrTooLarge, errdefs.ErrUnsupportedMediaType,
	errdefs.ErrManifestInvalid, errdefs.ErrInternal, errdefs.ErrCanceled,
}

// A Retrier applies a RetryPolicy to the attempts of one transfer at one
// host. Call Progress when an attempt moved the transfer forward, Next
// after each failure.
type Retrier struct {
	policy   RetryPolicy
	failures int
	// clock and randomness, replaceable by tests
	sleep  func(ctx context.Context, d time.Duration) error
	jitter func() float64
}

// NewRetrier returns a Retrier with a full budget.
func NewRetrier(p RetryPolicy) *Retrier {
	return &Retrier{policy: p, sleep: sleepCtx, jitter: rand.Float64}
}

// Progress resets the budget: the transfer got further than ever before.
func (r *Retrier) Progress() { r.failures = 0 }

// Failures is how many attempts in a row have failed without progress.
func (r *Retrier) Failures() int { return r.failures }

// Next decides what to do after err. It waits and returns a nil error when
// the caller should try again (with the wait it chose); otherwise it
// returns the error to stop with: err itself when it is final, err wrapped
// with the attempt count when the budget ran out, or the context's error
// (kind canceled for a cancellation) if ctx ended while waiting.
func (r *Retrier) Next(ctx context.Context, err error) (time.Duration, error) {
	if ctx.Err() != nil {
		return 0, ContextError(ctx, "", err)
	}
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
		return 0, tell(err, k, "%s (gave up after %d attempts without progress)", err.Error(), r.failures)
	}
	d := r.policy.Backoff(r.failures, wait, r.jitter())
	if serr := r.sleep(ctx, d); serr != nil {
		return d, ContextError(ctx, "", err)
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

// ContextError is the error of work that stopped because ctx ended. A
// cancellation is kind canceled and still matches context.Canceled; a
// deadline of the caller's is kind network and matches
// context.DeadlineExceeded; a context cancelled with another cause (an
// errgroup whose other member failed) reports that cause with its own
// kind, since that failure, not this work, is what the caller must see.
// what names the work; last, if not nil, is the error the work itself
// saw, kept in the message.
func ContextError(ctx context.Context, what string, last error) error {
	cause := context.Cause(ctx)
	if cause == nil {
		cause = ctx.Err()
	}
	if cause == nil {
		return last
	}
	prefix := what
	if prefix != "" {
		prefix += ": "
	}
	switch {
	case errors.Is(cause, context.Canceled):
		return errdefs.Wrap(cause, errdefs.ErrCanceled, "%scanceled", prefix)
	case errors.Is(cause, context.DeadlineExceeded):
		if last != nil && !errors.Is(last, context.DeadlineExceeded) {
			return errdefs.Wrap(cause, errdefs.ErrNetwork, "%s%v", prefix, last)
		}
		return errdefs.Wrap(cause, errdefs.ErrNetwork, "%sdeadline exceeded", prefix)
	default:
		if what == "" {
			return cause
		}
		return errdefs.Wrap(cause, errdefs.KindOf(cause), "%s stopped by another failure", what)
	}
}

// parseRetryAfter reads a Retry-After header, in seconds or as an HTTP
// date, as a wait from now; 0 when absent, malformed or in the past.
func parseRetryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	if s, err := strconv.ParseInt(h, 10, 64); err == nil && s >= 0 {
		if s > int64(24*time.Hour/time.Second) {
			s = int64(24 * time.Hour / time.Second) // no overflow; the policy caps it anyway
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
