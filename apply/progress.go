package apply

import (
	"time"

	"github.com/opencontainers/go-digest"
)

// Progress is what Apply tells the WithProgress callback while it applies
// a layer.
type Progress struct {
	// Reference is the image's reference as WithImage gave it ("" without).
	Reference string
	// Layer is the layer being applied, counting from 1; Layers how many
	// the call applies.
	Layer, Layers int
	// DiffID is the layer's diffID as the caller gave it.
	DiffID digest.Digest
	// Entries and Bytes count the tar entries applied so far and the
	// content of regular files written (as LayerReport counts them).
	Entries int
	Bytes   int64
	// Elapsed is the time since the layer started (its blob opened).
	Elapsed time.Duration
	// Done is set on the last event of a layer, once it was applied and
	// verified; its counts are the LayerReport's.
	Done bool
}

// DefaultProgressInterval is the least time between two progress events
// of one layer, besides its first and its last.
const DefaultProgressInterval = 100 * time.Millisecond

// WithProgress makes Apply call fn as it applies each layer: once when
// the layer starts, at most every DefaultProgressInterval while it runs,
// and once, with Done set, when it was applied and verified (a layer that
// fails gets no Done event). Calls come from the goroutine that applies,
// one at a time; fn must be quick.
func WithProgress(fn func(Progress)) Option {
	return func(opts *options) error {
		opts.progress = fn
		return nil
	}
}

// progressState is the applier's view of the layer being reported.
type progressState struct {
	ev    Progress
	start time.Time
	last  time.Time
}

// beginProgress starts reporting layer i (from 0) of n.
func (a *applier) beginProgress(i, n int, diffID digest.Digest) {
	if a.o.progress == nil {
		return
	}
	now := time.Now()
	a.prog = progressState{ev: Progress{Reference: a.o.imageRef, Layer: i + 1, Layers: n, DiffID: diffID}, start: now, last: now}
	a.o.progress(a.prog.ev)
}

// tick reports the layer's counts, plus extra bytes of a file being
// written, at most once per interval.
func (a *applier) tick(extra int64) {
	if a.o.progress == nil || a.rep == nil || a.prog.ev.Layer == 0 {
		return
	}
	now := time.Now()
	if now.Sub(a.prog.last) < DefaultProgressInterval {
		return
	}
	a.prog.last = now
	ev := a.prog.ev
	ev.Entries, ev.Bytes, ev.Elapsed = a.rep.Entries, a.rep.Bytes+extra, now.Sub(a.prog.start)
	a.o.progress(ev)
}

// endProgress reports the layer done, with its report's counts.
func (a *applier) endProgress(lr *LayerReport) {
	if a.o.progress == nil {
		return
	}
	ev := a.prog.ev
	ev.Entries, ev.Bytes, ev.Elapsed, ev.Done = lr.Entries, lr.Bytes, lr.Duration, true
	a.o.progress(ev)
	a.prog = progressState{}
}
