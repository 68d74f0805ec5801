package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/ocifetch/ocifetch/apply"
	"github.com/ocifetch/ocifetch/fetch"
)

// plainInterval is how often a non-terminal run prints a summary line
// while transfers are under way, so that a log shows the command is alive.
const plainInterval = 5 * time.Second

// progress renders fetch events (and apply progress, when the command
// applies layers).
//
// On a terminal it redraws one screen in place: a line per blob, a total
// line and an apply line, each cut to the terminal's width so that no
// line wraps (a wrapped line would break the redraw's cursor arithmetic
// and leave copies in the scrollback), and never more lines than the
// terminal has rows: finished blobs collapse into one summary line first,
// then waiting ones. Off a terminal (logs, pipes) it prints one plain line
// per blob state change and a summary every five seconds. Quiet prints
// nothing.
//
// Events arrive one at a time (fetch serializes them), but a ticker also
// redraws, hence the lock.
type progress struct {
	w     io.Writer
	fd    int // the terminal's descriptor, or -1
	quiet bool
	// size reports the terminal's columns and rows; tests replace it,
	// and now.
	size func() (int, int)
	now  func() time.Time

	mu    sync.Mutex
	blobs map[string]*blobLine
	order []string
	apply applyState
	drawn int // lines on screen from the last redraw

	stopCh chan struct{}
	wg     sync.WaitGroup
}

// blobLine is one blob's latest event and when its transfer started.
type blobLine struct {
	ev fetch.Event
	// holder is the pid of another process downloading the blob while
	// this one waits for it (0: none known).
	holder int
	// started is when the blob first moved to downloading, and from is
	// how many bytes it had then (a resumed download counts only what it
	// transfers): rate and ETA are measured from there, not from when the
	// blob was queued.
	started time.Time
	from    int64
}

// applyState is what the apply line shows.
type applyState struct {
	layer, layers int
	entries       int64
	bytes         int64
	done          bool // the layer is applied
}

func newProgress(w io.Writer, quiet bool) *progress {
	p := &progress{w: w, fd: -1, quiet: quiet, blobs: map[string]*blobLine{}, now: time.Now, stopCh: make(chan struct{})}
	if quiet {
		return p
	}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.fd = int(f.Fd())
		p.size = func() (int, int) {
			c, r, err := term.GetSize(p.fd)
			if err != nil || c <= 0 || r <= 0 {
				return 80, 24
			}
			return c, r
		}
	}
	p.wg.Add(1)
	go p.tick()
	return p
}

func (p *progress) tty() bool { return p.size != nil }

func (p *progress) tick() {
	defer p.wg.Done()
	every := plainInterval
	if p.tty() {
		every = 200 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.stopCh:
			return
		case <-t.C:
			p.mu.Lock()
			if p.tty() {
				p.redraw()
			} else {
				p.plainSummary()
			}
			p.mu.Unlock()
		}
	}
}

// event is the fetch.WithProgress callback.
func (p *progress) event(ev fetch.Event) {
	if p.quiet {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	key := ev.Digest.String()
	b, ok := p.blobs[key]
	if !ok {
		b = &blobLine{}
		p.blobs[key] = b
		p.order = append(p.order, key)
	}
	prev, prevHolder := b.ev.State, b.holder
	if ev.State == fetch.StateDownloading && b.started.IsZero() {
		// What an earlier run left (re-hashed while verifying) is not
		// part of this transfer's rate.
		b.started, b.from = p.now(), b.ev.Done
	}
	b.ev, b.holder = ev, ev.Holder
	if p.tty() || (ev.State == prev && b.holder == prevHolder) {
		return // the ticker redraws
	}
	line := fmt.Sprintf("%s %s %s/%s", short(key), ev.State, humanBytes(ev.Done), humanBytes(ev.Total))
	switch {
	case ev.Err != nil:
		line += ": " + oneLine(ev.Err.Error())
	case b.holder != 0:
		line += ": " + waitingFor(b.holder, key)
	}
	fmt.Fprintln(p.w, line)
}

// waitingFor says that another process holds a blob's download.
func waitingFor(pid int, blob string) string {
	return fmt.Sprintf("waiting for another process (pid %d) to finish %s", pid, short(blob))
}

// layer is the apply.WithProgress callback.
func (p *progress) layer(ap apply.Progress) {
	p.applied(ap.Layer, ap.Layers, int64(ap.Entries), ap.Bytes, ap.Done, ap.Elapsed)
}

// applied reports that layer (1-based) of layers is being applied, with
// entries and bytes written so far; done says the layer is finished.
func (p *progress) applied(layer, layers int, entries, bytes int64, done bool, took time.Duration) {
	if p.quiet {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.apply = applyState{layer: layer, layers: layers, entries: entries, bytes: bytes, done: done}
	if !p.tty() && done {
		fmt.Fprintf(p.w, "layer %d/%d applied: %d entries, %s in %s\n", layer, layers, entries, humanBytes(bytes), took.Round(time.Millisecond))
	}
}

// totals sums the blobs: how many are finished, bytes present and
// expected, and the bytes transferred since the first transfer started.
func (p *progress) totals() (finished int, done, total, moved int64, since time.Time) {
	for _, k := range p.order {
		b := p.blobs[k]
		done += b.ev.Done
		total += b.ev.Total
		switch b.ev.State {
		case fetch.StateDone, fetch.StateCached:
			finished++
		}
		if !b.started.IsZero() {
			moved += b.ev.Done - b.from
			if since.IsZero() || b.started.Before(since) {
				since = b.started
			}
		}
	}
	return
}

// totalLine is the summary of every blob: count, bytes, rate and ETA.
func (p *progress) totalLine() string {
	finished, done, total, moved, since := p.totals()
	s := fmt.Sprintf("total %d/%d blobs %s / %s", finished, len(p.order), humanBytes(done), humanBytes(total))
	if !since.IsZero() && moved > 0 && finished < len(p.order) {
		s += rateETA(moved, total-done, p.now().Sub(since))
	}
	return s
}

// plainSummary prints the periodic line of a non-terminal run while
// blobs are still moving or layers being applied.
func (p *progress) plainSummary() {
	finished, _, _, _, _ := p.totals()
	if finished < len(p.order) {
		fmt.Fprintln(p.w, "progress: "+p.totalLine())
	}
	if a := p.apply; a.layer > 0 && !a.done {
		fmt.Fprintf(p.w, "progress: applying layer %d/%d: %d entries, %s\n", a.layer, a.layers, a.entries, humanBytes(a.bytes))
	}
}

// screen returns the lines of one redraw for a terminal of cols×rows.
func (p *progress) screen(cols, rows int) []string {
	var active, finished []*blobLine
	for _, k := range p.order {
		b := p.blobs[k]
		switch b.ev.State {
		case fetch.StateDone, fetch.StateCached:
			finished = append(finished, b)
		default:
			active = append(active, b)
		}
	}
	var tail []string
	if len(p.order) > 1 {
		tail = append(tail, p.totalLine())
	}
	if a := p.apply; a.layer > 0 {
		what := "applying"
		if a.done {
			what = "applied"
		}
		tail = append(tail, fmt.Sprintf("%s layer %d/%d: %d entries, %s", what, a.layer, a.layers, a.entries, humanBytes(a.bytes)))
	}
	// One row stays free for the cursor: writing the last row's newline
	// would scroll the screen.
	room := rows - 1 - len(tail)
	var lines []string
	if len(active)+len(finished) <= room {
		for _, k := range p.order {
			lines = append(lines, p.bar(p.blobs[k]))
		}
	} else {
		if len(finished) > 0 {
			var n int64
			for _, b := range finished {
				n += b.ev.Total
			}
			lines = append(lines, fmt.Sprintf("%d blobs done, %s", len(finished), humanBytes(n)))
			room--
		}
		shown := active
		if len(shown) > room {
			// Keep a row to say how many are not shown.
			shown = shown[:max(room-1, 0)]
		}
		for _, b := range shown {
			lines = append(lines, p.bar(b))
		}
		if len(shown) < len(active) {
			lines = append(lines, fmt.Sprintf("%d more blobs waiting", len(active)-len(shown)))
		}
	}
	lines = append(lines, tail...)
	if len(lines) > rows-1 {
		lines = lines[len(lines)-(rows-1):]
	}
	for i, l := range lines {
		lines[i] = clip(l, cols-1)
	}
	return lines
}

func (p *progress) redraw() {
	cols, rows := p.size()
	if rows < 2 {
		return
	}
	lines := p.screen(cols, rows)
	var sb strings.Builder
	if p.drawn > 0 {
		fmt.Fprintf(&sb, "\r\x1b[%dA", p.drawn)
	}
	for _, l := range lines {
		sb.WriteString("\x1b[2K")
		sb.WriteString(l)
		sb.WriteString("\n")
	}
	sb.WriteString("\x1b[J") // whatever the last redraw left below
	io.WriteString(p.w, sb.String())
	p.drawn = len(lines)
}

// bar draws one blob: digest, state, a bar, bytes, and while it moves
// its rate and ETA.
func (p *progress) bar(b *blobLine) string {
	const width = 20
	ev := b.ev
	if ev.State == fetch.StateWaiting && b.holder != 0 {
		return waitingFor(b.holder, ev.Digest.String())
	}
	frac := 0.0
	if ev.Total > 0 {
		frac = min(float64(ev.Done)/float64(ev.Total), 1)
	}
	filled := int(frac * width)
	s := fmt.Sprintf("%s %-11s [%s%s] %s / %s", short(ev.Digest.String()), ev.State,
		strings.Repeat("=", filled), strings.Repeat(" ", width-filled), humanBytes(ev.Done), humanBytes(ev.Total))
	if ev.State == fetch.StateDownloading && !b.started.IsZero() {
		s += rateETA(ev.Done-b.from, ev.Total-ev.Done, p.now().Sub(b.started))
	}
	return s
}

// rateETA renders " RATE/s ETA D" for moved bytes over elapsed time with
// left bytes to go, or "" before there is anything to measure.
func rateETA(moved, left int64, elapsed time.Duration) string {
	if moved <= 0 || elapsed < 100*time.Millisecond {
		return ""
	}
	rate := float64(moved) / elapsed.Seconds()
	eta := time.Duration(float64(left) / rate * float64(time.Second))
	return fmt.Sprintf(" %s/s ETA %s", humanBytes(int64(rate)), eta.Round(time.Second))
}

// clip cuts s to at most n columns. Progress lines are ASCII (digests,
// states, numbers), so bytes are columns.
func clip(s string, n int) string {
	if n < 1 {
		return ""
	}
	if len(s) > n {
		return s[:n]
	}
	return s
}

// finish stops the ticker and leaves the final state on screen.
func (p *progress) finish() {
	if p.quiet {
		return
	}
	close(p.stopCh)
	p.wg.Wait()
	if p.tty() {
		p.mu.Lock()
		p.redraw()
		p.mu.Unlock()
	}
}

func short(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		return d[:12]
	}
	return d
}
