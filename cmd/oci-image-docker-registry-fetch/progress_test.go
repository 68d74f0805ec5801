package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/ocifetch/ocifetch/apply"
	"github.com/ocifetch/ocifetch/fetch"
)

// fakeClock is a settable now for the progress display.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func testProgress(cols, rows int) (*progress, *fakeClock, *bytes.Buffer) {
	var buf bytes.Buffer
	c := &fakeClock{t: time.Unix(1_000_000, 0)}
	p := &progress{w: &buf, fd: -1, blobs: map[string]*blobLine{}, now: c.now, stopCh: make(chan struct{})}
	p.size = func() (int, int) { return cols, rows }
	return p, c, &buf
}

// TestProgressRateFromTransferStart: rate and ETA count from when the
// blob started moving, not from when it was queued (a blob queued 10 s
// behind others showed 52.7 KiB/s for ~1.6 MiB/s).
func TestProgressRateFromTransferStart(t *testing.T) {
	t.Parallel()
	p, clock, _ := testProgress(200, 50)
	d := digest.FromString("blob")
	ev := fetch.Event{Digest: d, Total: 4 << 20, State: fetch.StateWaiting}
	p.event(ev)
	clock.t = clock.t.Add(10 * time.Second)
	ev.State = fetch.StateDownloading
	p.event(ev)
	clock.t = clock.t.Add(time.Second)
	ev.Done = 1 << 20
	p.event(ev)
	line := p.bar(p.blobs[d.String()])
	if !strings.Contains(line, " 1.0 MiB/s ETA 3s") {
		t.Fatalf("bar %q, want 1.0 MiB/s and ETA 3s", line)
	}
	if got := p.totalLine(); !strings.Contains(got, "1.0 MiB/s ETA 3s") {
		t.Fatalf("total %q, want the same rate", got)
	}
}

// TestProgressScreenFits: whatever the number of blobs, a redraw has at
// most rows-1 lines of at most cols-1 columns, finished blobs collapse
// first, and the total line is always there.
func TestProgressScreenFits(t *testing.T) {
	t.Parallel()
	for _, size := range [][2]int{{80, 24}, {40, 10}, {200, 50}, {20, 3}} {
		for _, n := range []int{1, 3, 31, 200} {
			p, clock, _ := testProgress(size[0], size[1])
			for i := 0; i < n; i++ {
				ev := fetch.Event{Digest: digest.FromString(fmt.Sprint(i)), Total: 1 << 30, State: fetch.StateWaiting}
				switch i % 3 {
				case 0:
					ev.State, ev.Done = fetch.StateDone, ev.Total
				case 1:
					ev.State, ev.Done = fetch.StateDownloading, 1<<29
				}
				p.event(ev)
			}
			p.applied(2, 3, 1234, 5<<20, false, 0)
			clock.t = clock.t.Add(time.Second)
			lines := p.screen(size[0], size[1])
			if len(lines) > size[1]-1 {
				t.Errorf("%dx%d, %d blobs: %d lines", size[0], size[1], n, len(lines))
			}
			for _, l := range lines {
				if len(l) > size[0]-1 {
					t.Errorf("%dx%d, %d blobs: line of %d columns: %q", size[0], size[1], n, len(l), l)
				}
			}
			if n > 1 && size[1] > 4 && !strings.HasPrefix(lines[len(lines)-2], "total ") {
				t.Errorf("%dx%d, %d blobs: no total line before the apply line: %q", size[0], size[1], n, lines)
			}
			if n+3 > size[1] && size[1] > 4 && n > 3 && !strings.Contains(strings.Join(lines, "\n"), "blobs done") {
				t.Errorf("%dx%d, %d blobs: finished blobs not collapsed: %q", size[0], size[1], n, lines)
			}
		}
	}
}

// TestProgressPlainSummary: off a terminal, the periodic line says how
// far the whole pull is, and applied layers get a line each.
func TestProgressPlainSummary(t *testing.T) {
	t.Parallel()
	p, clock, buf := testProgress(0, 0)
	p.size = nil
	d := digest.FromString("x")
	p.event(fetch.Event{Digest: d, Total: 2 << 20, State: fetch.StateDownloading})
	clock.t = clock.t.Add(2 * time.Second)
	p.event(fetch.Event{Digest: d, Total: 2 << 20, Done: 1 << 20, State: fetch.StateDownloading})
	p.plainSummary()
	p.applied(1, 2, 10, 100, true, 1500*time.Millisecond)
	out := buf.String()
	for _, w := range []string{
		short(d.String()) + " downloading 0 B/2.0 MiB\n",
		"progress: total 0/1 blobs 1.0 MiB / 2.0 MiB 512.0 KiB/s ETA 2s\n",
		"layer 1/2 applied: 10 entries, 100 B in 1.5s\n",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

// TestProgressWaitingForAnotherProcess: a blob another process downloads
// says whom it waits for, on its bar and as a plain line; the apply line
// says "applying" then "applied".
func TestProgressWaitingForAnotherProcess(t *testing.T) {
	d := digest.FromString("held")
	want := "waiting for another process (pid 4242) to finish " + short(d.String())

	p, _, _ := testProgress(80, 24)
	p.event(fetch.Event{Digest: d, Total: 100, State: fetch.StateWaiting})
	p.event(fetch.Event{Digest: d, Total: 100, State: fetch.StateWaiting, Holder: 4242})
	if got := p.bar(p.blobs[d.String()]); got != want {
		t.Errorf("bar %q, want %q", got, want)
	}
	p.layer(apply.Progress{Layer: 1, Layers: 2, Entries: 3, Bytes: 10})
	if l := p.screen(80, 24); l[len(l)-1] != "applying layer 1/2: 3 entries, 10 B" {
		t.Errorf("screen %q", l)
	}
	p.layer(apply.Progress{Layer: 1, Layers: 2, Entries: 5, Bytes: 20, Done: true})
	if l := p.screen(80, 24); l[len(l)-1] != "applied layer 1/2: 5 entries, 20 B" {
		t.Errorf("screen %q", l)
	}

	p, _, buf := testProgress(0, 0)
	p.size = nil
	p.event(fetch.Event{Digest: d, Total: 100, State: fetch.StateWaiting})
	p.event(fetch.Event{Digest: d, Total: 100, State: fetch.StateWaiting, Holder: 4242})
	p.event(fetch.Event{Digest: d, Total: 100, Done: 100, State: fetch.StateCached})
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 3 || lines[1] != short(d.String())+" waiting 0 B/100 B: "+want || lines[2] != short(d.String())+" cached 100 B/100 B" {
		t.Errorf("plain lines %q", lines)
	}
}
