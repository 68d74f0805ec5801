package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/ocifetch/ocifetch/errdefs"
)

func TestBackoffDoublesUpToTheCapWithJitter(t *testing.T) {
	t.Parallel()
	p := RetryPolicy{MaxAttempts: 10, BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second, MaxRetryAfter: 5 * time.Second}
	for _, tc := range []struct {
		failures   int
		retryAfter time.Duration
		jitter     float64
		want       time.Duration
	}{
		{1, 0, 0, 50 * time.Millisecond},                     // half of the base, no jitter
		{1, 0, 0.999999, 100 * time.Millisecond},             // up to the base with full jitter
		{2, 0, 0, 100 * time.Millisecond},                    // doubled
		{3, 0, 0.5, 300 * time.Millisecond},                  // 400 ms: 200 + 0.5*200
		{5, 0, 0, 500 * time.Millisecond},                    // 1600 ms capped at 1 s
		{50, 0, 0, 500 * time.Millisecond},                   // no overflow
		{1, 2 * time.Second, 0.7, 2 * time.Second},           // Retry-After wins over backoff
		{1, time.Hour, 0, 5 * time.Second},                   // and is capped
		{4, 10 * time.Millisecond, 0, 10 * time.Millisecond}, // even when shorter
	} {
		got := p.Backoff(tc.failures, tc.retryAfter, tc.jitter)
		if d := got - tc.want; d < -time.Millisecond || d > time.Millisecond {
			t.Errorf("Backoff(%d, %v, %v) = %v, want %v", tc.failures, tc.retryAfter, tc.jitter, got, tc.want)
		}
	}
}

func TestRetryableClassifiesErrors(t *testing.T) {
	t.Parallel()
	status := func(code int, after string) error {
		h := http.Header{}
		if after != "" {
			h.Set("Retry-After", after)
		}
		return StatusError(&http.Response{StatusCode: code, Header: h}, "blob")
	}
	for _, tc := range []struct {
		name string
		err  error
		ok   bool
		wait time.Duration
	}{
		{"429 with Retry-After", status(429, "3"), true, 3 * time.Second},
		{"503", status(503, ""), true, 0},
		{"500", status(500, ""), true, 0},
		{"408", status(408, ""), true, 0},
		{"416", status(416, ""), false, 0},
		{"401", status(401, ""), false, 0},
		{"403", status(403, ""), false, 0},
		{"404", status(404, ""), false, 0},
		{"reset", errdefs.Wrap(errors.New("connection reset by peer"), errdefs.ErrNetwork, "GET"), true, 0},
		{"short body", errdefs.Wrap(ErrShortBody, errdefs.ErrSizeMismatch, "short"), true, 0},
		{"too long", errdefs.New(errdefs.ErrSizeMismatch, "long"), false, 0},
		{"digest mismatch", errdefs.New(errdefs.ErrDigestMismatch, "bad"), false, 0},
		{"unauthorized source error", errdefs.New(errdefs.ErrUnauthorized, "no"), false, 0},
		{"not found wrapped in network", errdefs.Wrap(errdefs.New(errdefs.ErrNotFound, "gone"), errdefs.ErrNetwork, "read"), false, 0},
		{"canceled", context.Canceled, false, 0},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), false, 0},
		{"unexpected EOF of no kind", io.ErrUnexpectedEOF, false, 0},
		{"stall", errdefs.Wrap(ErrStalled, errdefs.ErrNetwork, "slow"), true, 0},
		{"document deadline", errdefs.Wrap(ErrDocumentDeadline, errdefs.ErrNetwork, "slow"), true, 0},
		{"refused redirect", refuse(errdefs.ErrNetwork, "no"), false, 0},
		{"refused connection to the last host", errdefs.Wrap(syscall.ECONNREFUSED, errdefs.ErrNetwork, "down"), true, 0},
		{"marked final", final{errdefs.Wrap(syscall.ECONNREFUSED, errdefs.ErrNetwork, "down")}, false, 0},
	} {
		wait, ok := Retryable(tc.err)
		if ok != tc.ok || wait != tc.wait {
			t.Errorf("%s: Retryable = %v, %v; want %v, %v", tc.name, wait, ok, tc.wait, tc.ok)
		}
	}
}

// fakeClock records the waits a retrier asks for instead of sleeping.
type fakeClock struct{ waits []time.Duration }

func (c *fakeClock) sleep(_ context.Context, d time.Duration) error {
	c.waits = append(c.waits, d)
	return nil
}

func TestRetrierGivesUpAfterMaxAttemptsWithoutProgress(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{}
	r := &Retrier{policy: RetryPolicy{MaxAttempts: 4, BaseDelay: 10 * time.Millisecond, MaxDelay: 25 * time.Millisecond, MaxRetryAfter: time.Second}, sleep: clock.sleep, jitter: func() float64 { return 0 }}
	transient := errdefs.Wrap(errors.New("reset"), errdefs.ErrNetwork, "GET")
	for i := 0; i < 3; i++ {
		if _, err := r.Next(context.Background(), transient); err != nil {
			t.Fatalf("attempt %d: gave up early: %v", i+1, err)
		}
	}
	_, err := r.Next(context.Background(), transient)
	if err == nil || errdefs.KindOf(err) != errdefs.ErrNetwork || !errors.Is(err, transient) {
		t.Fatalf("4th failure: %v", err)
	}
	want := []time.Duration{5 * time.Millisecond, 10 * time.Millisecond, 12500 * time.Microsecond}
	if fmt.Sprint(clock.waits) != fmt.Sprint(want) {
		t.Errorf("waits %v, want %v", clock.waits, want)
	}
}

func TestRetrierKeepsItsBudgetWhileBytesArrive(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{}
	r := &Retrier{policy: RetryPolicy{MaxAttempts: 2, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond, MaxRetryAfter: time.Second}, sleep: clock.sleep, jitter: func() float64 { return 0 }}
	transient := errdefs.Wrap(errors.New("reset"), errdefs.ErrNetwork, "GET")
	// A connection that breaks a hundred times, but each time after
	// delivering something, never exhausts two attempts.
	for i := 0; i < 100; i++ {
		r.Progress()
		if _, err := r.Next(context.Background(), transient); err != nil {
			t.Fatalf("break %d: %v", i, err)
		}
	}
	if _, err := r.Next(context.Background(), transient); err == nil {
		t.Fatal("two failures in a row without progress should give up")
	}
}

func TestRetrierStopsAtOnceOnFinalErrors(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{}
	r := &Retrier{policy: DefaultRetryPolicy(), sleep: clock.sleep, jitter: func() float64 { return 0 }}
	final := errdefs.New(errdefs.ErrUnauthorized, "denied")
	if _, err := r.Next(context.Background(), final); err != final {
		t.Fatalf("err = %v", err)
	}
	if len(clock.waits) != 0 {
		t.Errorf("waited %v before a final error", clock.waits)
	}
}

func TestRetrierHonoursRetryAfterWithTinyCap(t *testing.T) {
	t.Parallel()
	r := NewRetrier(RetryPolicy{MaxAttempts: 3, BaseDelay: time.Hour, MaxDelay: time.Hour, MaxRetryAfter: 5 * time.Millisecond})
	start := time.Now()
	d, err := r.Next(context.Background(), &HTTPError{Code: 429, RetryAfter: time.Minute})
	if err != nil || d != 5*time.Millisecond || time.Since(start) > time.Second {
		t.Fatalf("waited %v (%v), err %v", d, time.Since(start), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r = NewRetrier(RetryPolicy{MaxAttempts: 3, BaseDelay: time.Hour, MaxDelay: time.Hour, MaxRetryAfter: time.Hour})
	if _, err := r.Next(ctx, errdefs.Wrap(errors.New("reset"), errdefs.ErrNetwork, "")); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", err)
	}
}

// The defaults end a host that trickles a manifest (a byte every 30 s, so
// each attempt runs into the per-document deadline) within four minutes:
// every attempt of a document counts, and the waits between them are
// bounded by the backoff's maxima.
func TestDefaultsEndATrickledDocumentWithinFourMinutes(t *testing.T) {
	t.Parallel()
	p, d := DefaultRetryPolicy(), DefaultDeadlines()
	if p.MaxAttempts != 3 || p.BaseDelay != time.Second || p.MaxDelay != 15*time.Second || p.MaxRetryAfter != 30*time.Second {
		t.Fatalf("DefaultRetryPolicy() = %+v", p)
	}
	if d.Document != 60*time.Second || d.MinRate != 1024 || d.RateWindow != 60*time.Second {
		t.Fatalf("DefaultDeadlines() = %+v", d)
	}
	worst := time.Duration(p.MaxAttempts) * d.Document
	for f := 1; f < p.MaxAttempts; f++ {
		worst += p.Backoff(f, 0, 0.999999)
	}
	if worst >= 4*time.Minute {
		t.Fatalf("a trickled manifest may take %v with the defaults, want under 4 minutes", worst)
	}
	t.Logf("worst case with the defaults: %v", worst)
}

func TestContextErrorKinds(t *testing.T) {
	t.Parallel()
	last := errdefs.New(errdefs.ErrNetwork, "HTTP 503")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := ContextError(ctx, "fetching", last)
	if errdefs.KindOf(err) != errdefs.ErrCanceled || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v (kind %s)", err, errdefs.KindOf(err))
	}

	ctx, cancel = context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	err = ContextError(ctx, "fetching", last)
	if errdefs.KindOf(err) != errdefs.ErrNetwork || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("deadline: %v (kind %s)", err, errdefs.KindOf(err))
	}

	// An errgroup whose other member failed cancels with that failure as
	// the cause: the caller must see it, with its kind, not "canceled".
	cause := errdefs.New(errdefs.ErrDigestMismatch, "layer 2: blob x hashes to y")
	cctx, ccancel := context.WithCancelCause(context.Background())
	ccancel(cause)
	err = ContextError(cctx, "fetching blob z", last)
	if errdefs.KindOf(err) != errdefs.ErrDigestMismatch || !errors.Is(err, cause) || errors.Is(err, context.Canceled) {
		t.Errorf("cause: %v (kind %s)", err, errdefs.KindOf(err))
	}

	// A retrier waiting when the context ends reports the cancellation,
	// not the last transient error.
	ctx, cancel = context.WithCancel(context.Background())
	r := NewRetrier(DefaultRetryPolicy())
	r.sleep = func(context.Context, time.Duration) error { cancel(); return context.Canceled }
	if _, err := r.Next(ctx, last); errdefs.KindOf(err) != errdefs.ErrCanceled || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled while waiting: %v (kind %s)", err, errdefs.KindOf(err))
	}
}
