package fetch

import (
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// State is where a blob is in its download.
type State string

// The states a blob goes through. A blob starts waiting (for a download
// slot, or for another pull of the same digest), is downloading (and may
// be retrying, then downloading again), is verifying (re-hashing a partial
// file left by an earlier run, or syncing the finished file), and ends
// done, cached (already in the store, or put there by another pull) or
// failed.
const (
	StateWaiting     State = "waiting"
	StateDownloading State = "downloading"
	StateRetrying    State = "retrying"
	StateVerifying   State = "verifying"
	StateDone        State = "done"
	StateCached      State = "cached"
	StateFailed      State = "failed"
)

// Event reports a blob's progress to the WithProgress callback.
type Event struct {
	Digest    digest.Digest
	MediaType string
	// Reference is the image the blob is fetched for (the resolved
	// reference, or the source's for FetchBlob and OpenLayer); Layer is
	// its position among the image's layers, counting from 1, or 0 for a
	// blob that is not a layer (the config, a document).
	Reference string
	Layer     int
	// Total is the blob's size; Done is how many bytes of it are in the
	// store's partial file (verified as a prefix of the hash so far).
	Total, Done int64
	State       State
	// Holder is the process id of another process that holds the blob's
	// download while this one waits for it (StateWaiting), as it recorded
	// it in the store; 0 when no other process does, or it is not known.
	Holder int
	// Err is why the blob is retrying or failed.
	Err error
}

// reporter delivers events to the callback. Calls are serialized, so the
// callback needs no locking of its own and sees each blob's events in
// order; but it runs on the download's goroutine, so it must be quick.
// Byte progress is throttled per blob to one event per interval; state
// changes are always delivered.
type reporter struct {
	fn       func(Event)
	interval time.Duration
	mu       sync.Mutex
}

func (r *reporter) emit(ev Event) {
	if r == nil || r.fn == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fn(ev)
}

// blobReport is one blob's view of a reporter. It is used by one goroutine
// at a time (the one running or waiting for the download).
type blobReport struct {
	r    *reporter
	ev   Event
	last time.Time
}

// blob returns the view of one blob of the image ref; layer is its
// position among the image's layers, from 1, or 0 for another blob.
func (r *reporter) blob(desc ocispec.Descriptor, ref string, layer int) *blobReport {
	return &blobReport{r: r, ev: Event{Digest: desc.Digest, MediaType: desc.MediaType, Reference: ref, Layer: layer, Total: desc.Size}}
}

// set reports a change of state, always.
func (b *blobReport) set(s State, done int64, err error) {
	if b == nil || b.r == nil || b.r.fn == nil {
		return
	}
	b.ev.State, b.ev.Done, b.ev.Err, b.ev.Holder = s, done, err, 0
	b.last = time.Now()
	b.r.emit(b.ev)
}

// waitFor reports that another process, pid (0: unknown), holds the
// blob's download and this one waits for it.
func (b *blobReport) waitFor(pid int) {
	if b == nil || b.r == nil || b.r.fn == nil {
		return
	}
	b.ev.State, b.ev.Err, b.ev.Holder = StateWaiting, nil, pid
	b.last = time.Now()
	b.r.emit(b.ev)
}

// progress reports bytes, at most once per interval.
func (b *blobReport) progress(done int64) {
	if b == nil || b.r == nil || b.r.fn == nil {
		return
	}
	b.ev.Done = done
	if b.ev.State == StateDownloading && time.Since(b.last) < b.r.interval {
		return
	}
	b.ev.State, b.ev.Err = StateDownloading, nil
	b.last = time.Now()
	b.r.emit(b.ev)
}
