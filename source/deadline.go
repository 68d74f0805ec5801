package source

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ocifetch/ocifetch/errdefs"
)

// Deadlines bound how long a transfer may take without getting anywhere.
// No total deadline applies to a blob: a large layer on a slow but moving
// link is never cut; only a stall is.
type Deadlines struct {
	// Document bounds one attempt at reading an index, manifest or config,
	// request and whole body (default 60 s). An attempt past it fails as
	// a network error and is retried under the RetryPolicy.
	Document time.Duration
	// MinRate and RateWindow define a stalled blob transfer: fewer than
	// MinRate bytes per second arrived over the last RateWindow (default
	// 1 KiB/s over 60 s). A stall fails the attempt, which is retried from
	// where it stopped. MinRate 0 disables the check.
	MinRate    int64
	RateWindow time.Duration
}

// DefaultDeadlines is 60 s per document attempt and a stall below 1 KiB/s
// over 60 s.
func DefaultDeadlines() Deadlines {
	return Deadlines{Document: 60 * time.Second, MinRate: 1024, RateWindow: 60 * time.Second}
}

// Validate reports deadlines that cannot work.
func (d Deadlines) Validate() error {
	if d.Document <= 0 || d.MinRate < 0 || (d.MinRate > 0 && d.RateWindow <= 0) {
		return errdefs.New(errdefs.ErrInvalidArgument, "invalid deadlines %+v", d)
	}
	return nil
}

// ErrStalled marks a transfer that fell below the minimum rate.
var ErrStalled = errors.New("transfer stalled")

// ErrDocumentDeadline marks a document attempt that took longer than the
// per-document deadline.
var ErrDocumentDeadline = errors.New("document deadline passed")

// WatchRate returns rc with the stall rule of d applied: when fewer than
// d.MinRate bytes per second arrive over a window of d.RateWindow, it
// closes rc (so a Read blocked on the network returns) and Read fails
// with a network error that matches ErrStalled, which Retryable calls
// transient. what names the transfer for the message. Closing the
// returned reader stops the watch.
func WatchRate(rc io.ReadCloser, d Deadlines, what string) io.ReadCloser {
	if d.MinRate <= 0 || d.RateWindow <= 0 {
		return rc
	}
	w := &rateWatch{rc: rc, d: d, what: what}
	// minimum bytes per window, without overflow for absurd settings
	secs := d.RateWindow.Seconds()
	w.min = int64(float64(d.MinRate) * secs)
	if w.min < 1 {
		w.min = 1
	}
	w.mu.Lock()
	w.timer = time.AfterFunc(d.RateWindow, w.check)
	w.mu.Unlock()
	return w
}

type rateWatch struct {
	rc      io.ReadCloser
	d       Deadlines
	what    string
	min     int64
	n       atomic.Int64 // bytes in the current window
	stalled atomic.Bool

	mu    sync.Mutex // guards timer and done against the timer's goroutine
	timer *time.Timer
	done  bool

	closeOnce sync.Once
	closeErr  error
}

// check runs at the end of each window, on the timer's goroutine.
func (w *rateWatch) check() {
	defer func() {
		// A Close of somebody else's reader must not take the process
		// down from a timer goroutine.
		if r := recover(); r != nil {
			w.stalled.Store(true)
		}
	}()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return
	}
	if got := w.n.Swap(0); got < w.min {
		w.stalled.Store(true)
		w.done = true
		w.closeRC()
		return
	}
	w.timer.Reset(w.d.RateWindow)
}

func (w *rateWatch) closeRC() error {
	w.closeOnce.Do(func() { w.closeErr = w.rc.Close() })
	return w.closeErr
}

func (w *rateWatch) Read(p []byte) (int, error) {
	if w.stalled.Load() {
		return 0, w.stallError()
	}
	n, err := w.rc.Read(p)
	w.n.Add(int64(n))
	if err != nil && err != io.EOF && w.stalled.Load() {
		return n, w.stallError()
	}
	return n, err
}

func (w *rateWatch) stallError() error {
	return errdefs.Wrap(ErrStalled, errdefs.ErrNetwork, "%s: fewer than %d bytes/s arrived over %s", w.what, w.d.MinRate, w.d.RateWindow)
}

func (w *rateWatch) Close() error {
	w.mu.Lock()
	w.done = true
	w.timer.Stop()
	w.mu.Unlock()
	return w.closeRC()
}
