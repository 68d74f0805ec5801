package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/ocifetch/ocifetch/fetch"
)

// progress renders fetch events: bars redrawn in place on a terminal, one
// plain line per state change otherwise (logs and pipes), nothing when
// quiet. Events arrive one at a time (fetch serializes them), but a ticker
// also redraws, hence the lock.
type progress struct {
	w      io.Writer
	tty    bool
	quiet  bool
	mu     sync.Mutex
	blobs  map[string]*blobLine
	order  []string
	drawn  int // lines on screen from the last redraw
	start  time.Time
	stopCh chan struct{}
	wg     sync.WaitGroup
}

type blobLine struct {
	ev      fetch.Event
	started time.Time
}

func newProgress(w io.Writer, quiet bool) *progress {
	p := &progress{w: w, quiet: quiet, blobs: map[string]*blobLine{}, start: time.Now(), stopCh: make(chan struct{})}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.tty = true
		p.wg.Add(1)
		go p.tick()
	}
	return p
}

func (p *progress) tick() {
	defer p.wg.Done()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.stopCh:
			return
		case <-t.C:
			p.mu.Lock()
			p.redraw()
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
		b = &blobLine{started: time.Now()}
		p.blobs[key] = b
		p.order = append(p.order, key)
	}
	prev := b.ev.State
	b.ev = ev
	if p.tty {
		return // the ticker redraws
	}
	if ev.State != prev {
		line := fmt.Sprintf("%s %s %s/%s", short(key), ev.State, humanBytes(ev.Done), humanBytes(ev.Total))
		if ev.Err != nil {
			line += ": " + oneLine(ev.Err.Error())
		}
		fmt.Fprintln(p.w, line)
	}
}

func (p *progress) redraw() {
	if p.drawn > 0 {
		fmt.Fprintf(p.w, "\x1b[%dA", p.drawn)
	}
	for _, k := range p.order {
		b := p.blobs[k]
		fmt.Fprintf(p.w, "\x1b[2K%s\n", bar(b, time.Since(b.started)))
	}
	p.drawn = len(p.order)
}

// bar draws one blob: digest, state, a bar, bytes, rate and ETA.
func bar(b *blobLine, elapsed time.Duration) string {
	const width = 24
	ev := b.ev
	frac := 0.0
	if ev.Total > 0 {
		frac = float64(ev.Done) / float64(ev.Total)
	}
	filled := int(frac * width)
	s := fmt.Sprintf("%s %-11s [%s%s] %9s / %-9s", short(ev.Digest.String()), ev.State,
		strings.Repeat("=", filled), strings.Repeat(" ", width-filled), humanBytes(ev.Done), humanBytes(ev.Total))
	if ev.State == fetch.StateDownloading && elapsed > 0 && ev.Done > 0 {
		rate := float64(ev.Done) / elapsed.Seconds()
		eta := time.Duration(float64(ev.Total-ev.Done)/rate) * time.Second
		s += fmt.Sprintf(" %s/s ETA %s", humanBytes(int64(rate)), eta.Round(time.Second))
	}
	return s
}

// finish stops redrawing and leaves the final state on screen.
func (p *progress) finish() {
	if p.tty {
		close(p.stopCh)
		p.wg.Wait()
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
