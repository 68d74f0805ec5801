package main

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	flag "github.com/spf13/pflag"

	"github.com/ocifetch/ocifetch/apply"
	"github.com/ocifetch/ocifetch/fetch"
	"github.com/ocifetch/ocifetch/source"
)

// debugLog prints what -v/--debug asks for on standard error: every HTTP
// request (method, URL without user info or query, status, time, bytes,
// the address that answered) and the time each stage took (resolve, each
// blob, each layer applied). Lines start with "debug: ", so that they can
// be told from progress and filtered out. A nil *debugLog prints nothing.
type debugLog struct {
	w     io.Writer
	start time.Time

	mu    sync.Mutex
	blobs map[string]time.Time // when each blob's first event came
}

// registerDebug adds -v/--debug to fs; the returned function gives the
// log once the flags are parsed (nil when not asked for).
func registerDebug(fs *flag.FlagSet) func(e *env) *debugLog {
	var on bool
	fs.BoolVarP(&on, "debug", "v", false, "print each HTTP request and the time each step took on stderr, as \"debug: \" lines")
	return func(e *env) *debugLog {
		if !on {
			return nil
		}
		return &debugLog{w: e.stderr, start: time.Now(), blobs: map[string]time.Time{}}
	}
}

func (d *debugLog) printf(format string, args ...any) {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.w, "debug: "+format+"\n", args...)
}

// sourceOptions are the source options that report requests.
func (d *debugLog) sourceOptions() []source.Option {
	if d == nil {
		return nil
	}
	return []source.Option{source.WithTrace(d.request)}
}

// request prints one traced HTTP request.
func (d *debugLog) request(tr source.Trace) {
	from := ""
	if tr.Remote != "" {
		from = " from " + tr.Remote
		if tr.TLS {
			from += " (TLS)"
		}
		if tr.Reused {
			from += " (reused connection)"
		}
	}
	if tr.Err != nil {
		d.printf("%s %s failed after %s%s: %s", tr.Method, tr.URL, ms(tr.Duration), from, oneLine(tr.Err.Error()))
		return
	}
	d.printf("%s %s %d %s, headers %s, %s in %s%s", tr.Method, tr.URL, tr.Status, http.StatusText(tr.Status),
		ms(tr.Header), humanBytes(tr.Bytes), ms(tr.Duration), from)
}

// elapsed is the time since the command started (0 without the log).
func (d *debugLog) elapsed() time.Duration {
	if d == nil {
		return 0
	}
	return time.Since(d.start)
}

// resolved prints how long resolving took, from the start of the command.
func (d *debugLog) resolved(ref, digest string) {
	if d == nil {
		return
	}
	d.printf("resolved %s to %s in %s", ref, digest, ms(time.Since(d.start)))
}

// blob prints a blob's timing when it is finished (done, cached, failed).
func (d *debugLog) blob(ev fetch.Event) {
	if d == nil {
		return
	}
	key := ev.Digest.String()
	d.mu.Lock()
	first, ok := d.blobs[key]
	if !ok {
		first = time.Now()
		d.blobs[key] = first
	}
	d.mu.Unlock()
	what := "blob " + key
	if ev.Layer > 0 {
		what = fmt.Sprintf("layer %d blob %s", ev.Layer, key)
	}
	switch ev.State {
	case fetch.StateDone, fetch.StateCached:
		d.printf("%s %s: %s in %s", what, ev.State, humanBytes(ev.Total), ms(time.Since(first)))
	case fetch.StateFailed:
		d.printf("%s failed after %s: %v", what, ms(time.Since(first)), oneLine(fmt.Sprint(ev.Err)))
	}
}

// applied prints a layer's timing once it is applied.
func (d *debugLog) applied(p apply.Progress) {
	if d == nil || !p.Done {
		return
	}
	d.printf("layer %d/%d applied (%s): %d entries, %s in %s", p.Layer, p.Layers, p.DiffID, p.Entries, humanBytes(p.Bytes), ms(p.Elapsed))
}

// ms rounds a duration for people: to the millisecond, or the
// microsecond below one.
func ms(t time.Duration) string {
	if t < time.Millisecond {
		return t.Round(time.Microsecond).String()
	}
	return t.Round(time.Millisecond).String()
}
