package fetch

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/safego"
	"github.com/ocifetch/ocifetch/resolve"
)

// Result describes a finished pull.
type Result struct {
	// Reference is the resolved reference; Name is what the image was
	// recorded under in index.json ("" when recorded without a name).
	Reference, Name string
	// Manifest is the index.json entry: the manifest's descriptor with
	// its platform and annotations.
	Manifest ocispec.Descriptor
	Config   ocispec.Descriptor
	Layers   []LayerResult
	// Downloaded counts the bytes this pull read from the network,
	// including bytes it threw away (bad mirrors, restarts).
	Downloaded int64
}

// LayerResult is one layer of a pulled image.
type LayerResult struct {
	resolve.Layer
	// Cached is true when this pull did not download the layer: it was
	// already in the store, or another pull (in this process or another)
	// put it there.
	Cached bool
	// Path is the blob's file in the store.
	Path string
}

// Pull stores everything r needs in store and records the image in the
// store's index.json: the indexes, manifest and config from r's memory
// (they are never fetched again), and the layers from r.Source, at most
// WithJobs at a time, each verified against its digest and size before it
// becomes visible. A layer already in the store is not downloaded again.
// It is Start followed by Session.Wait.
func Pull(ctx context.Context, r *resolve.Resolved, store *Store, opts ...Option) (*Result, error) {
	s, err := Start(ctx, r, store, opts...)
	if err != nil {
		return nil, err
	}
	return s.Wait()
}

// Session is a pull in progress. Its layers download in the background,
// lowest first, and each can be streamed with Layer while later layers are
// still downloading: that is how applying layer 1 overlaps the download of
// layers 2..n.
type Session struct {
	r     *resolve.Resolved
	store *Store
	o     *options
	rep   *reporter

	ctx    context.Context
	cancel context.CancelFunc
	gc     *fileLock
	slots  []*slot

	downloaded atomic.Int64
	done       chan struct{}
	res        *Result
	err        error
}

// slot is one layer's download as Layer sees it.
type slot struct {
	ready  chan struct{} // closed once t is known (or the layer ended first)
	once   sync.Once
	mu     sync.Mutex
	t      *transfer // nil when the blob was already in the store
	cached bool
	err    error
}

func (sl *slot) start(t *transfer) {
	sl.mu.Lock()
	sl.t = t
	sl.mu.Unlock()
	sl.once.Do(func() { close(sl.ready) })
}

// Start validates r, writes its documents to the store, and starts
// downloading its layers; it returns without waiting for them. Cancel ctx
// to stop the pull (partial files stay for the next one to resume).
func Start(ctx context.Context, r *resolve.Resolved, store *Store, opts ...Option) (*Session, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	if err := checkResolved(r); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "no store")
	}
	// A shared lock on the store for the whole pull: GC takes it
	// exclusively, so it never deletes blobs of a pull that has written
	// them but not yet recorded the image in index.json.
	gc, err := store.lockGC(ctx, false)
	if err != nil {
		return nil, err
	}
	s := &Session{r: r, store: store, o: o, rep: o.reporter(), gc: gc, done: make(chan struct{})}
	docs := make([]resolve.Blob, 0, len(r.Indexes)+2)
	docs = append(docs, r.Indexes...)
	docs = append(docs, r.Manifest, r.Config)
	for _, b := range docs {
		present := store.has(b.Descriptor)
		if err := store.WriteBlob(ctx, b.Descriptor, b.Data); err != nil {
			gc.unlock()
			return nil, err
		}
		if b.Descriptor.Digest == r.Config.Descriptor.Digest {
			st := StateDone
			if present {
				st = StateCached
			}
			s.rep.blob(b.Descriptor).set(st, b.Descriptor.Size, nil)
		}
	}
	s.ctx, s.cancel = context.WithCancel(ctx)
	s.slots = make([]*slot, len(r.Layers))
	for i := range s.slots {
		s.slots[i] = &slot{ready: make(chan struct{})}
	}
	go s.run()
	return s, nil
}

// checkResolved validates what Pull relies on, digests first: they come
// from the registry and become file names.
func checkResolved(r *resolve.Resolved) error {
	if r == nil || r.Source == nil {
		return errdefs.New(errdefs.ErrInvalidArgument, "nothing to pull: no resolved image or no source")
	}
	if len(r.Manifest.Data) == 0 || len(r.Config.Data) == 0 {
		return errdefs.New(errdefs.ErrInvalidArgument, "resolved image %s lacks its manifest or config bytes", r.Reference)
	}
	for _, b := range r.Indexes {
		if err := checkDescriptor(b.Descriptor); err != nil {
			return err
		}
	}
	for _, d := range []ocispec.Descriptor{r.Manifest.Descriptor, r.Config.Descriptor} {
		if err := checkDescriptor(d); err != nil {
			return err
		}
	}
	for _, l := range r.Layers {
		if err := checkDescriptor(l.Descriptor); err != nil {
			return err
		}
	}
	return nil
}

func (s *Session) run() {
	defer close(s.done)
	defer s.gc.unlock()
	defer s.cancel()
	defer safego.Recover(&s.err, "pulling "+s.r.Reference)
	for _, l := range s.r.Layers {
		s.rep.blob(l.Descriptor).set(StateWaiting, 0, nil)
	}
	g, gctx := errgroup.WithContext(s.ctx)
	// The group's limit is the concurrency bound; layers are handed to it
	// lowest first, so the layer an applier needs first starts first.
	g.SetLimit(s.o.jobs)
	for i := range s.r.Layers {
		g.Go(func() (err error) {
			defer safego.Recover(&err, fmt.Sprintf("fetching layer %d", i+1))
			return s.fetchLayer(gctx, i)
		})
	}
	err := g.Wait()
	for _, sl := range s.slots { // layers that never started
		sl.mu.Lock()
		if sl.err == nil && err != nil {
			sl.err = err
		}
		sl.mu.Unlock()
		sl.once.Do(func() { close(sl.ready) })
	}
	if err != nil {
		s.err = err
		return
	}
	s.res, s.err = s.record()
}

func (s *Session) fetchLayer(ctx context.Context, i int) error {
	sl := s.slots[i]
	desc := s.r.Layers[i].Descriptor
	eps, blocked := endpointsFor(s.r.Source, desc, s.o)
	t, owned, err := s.store.ensure(ctx, desc, eps, s.o, s.rep.blob(desc), sl.start)
	downloaded := owned && !t.cached
	if owned {
		s.downloaded.Add(t.received.Load())
	}
	err = foreignHint(err, desc, blocked)
	if err != nil {
		// Layers are counted from 1, as the CLI shows them.
		err = errdefs.Wrap(err, errdefs.KindOf(err), "layer %d", i+1)
	}
	sl.mu.Lock()
	sl.cached, sl.err = !downloaded, err
	sl.mu.Unlock()
	sl.once.Do(func() { close(sl.ready) })
	return err
}

// record writes the image's entry in index.json.
func (s *Session) record() (*Result, error) {
	r := s.r
	name := DefaultRefName(r.Reference)
	if s.o.refNameSet {
		name = s.o.refName
	}
	desc := r.Manifest.Descriptor
	desc.Annotations = cloneMap(desc.Annotations)
	if desc.Annotations == nil {
		desc.Annotations = map[string]string{}
	}
	if r.Reference != "" {
		desc.Annotations[AnnotationReference] = r.Reference
	}
	if len(r.Indexes) > 0 {
		ds := make([]string, len(r.Indexes))
		for i, b := range r.Indexes {
			ds[i] = b.Descriptor.Digest.String()
		}
		desc.Annotations[AnnotationIndexes] = strings.Join(ds, ",")
	}
	if desc.Platform == nil && r.Platform.OS != "" {
		p := r.Platform
		desc.Platform = &p
	}
	if err := s.store.Tag(s.ctx, name, desc); err != nil {
		return nil, err
	}
	if name != "" {
		desc.Annotations[ocispec.AnnotationRefName] = name
	}
	res := &Result{Reference: r.Reference, Name: name, Manifest: desc, Config: r.Config.Descriptor, Downloaded: s.downloaded.Load()}
	for i, l := range r.Layers {
		res.Layers = append(res.Layers, LayerResult{Layer: l, Cached: s.slots[i].cached, Path: s.store.blobPath(l.Digest)})
	}
	return res, nil
}

// Wait waits for every layer and returns the result, or the first error.
func (s *Session) Wait() (*Result, error) {
	<-s.done
	return s.res, s.err
}

// Done is closed when the pull has finished, successfully or not.
func (s *Session) Done() <-chan struct{} { return s.done }

// Downloaded is how many bytes the pull has read from the network so far
// (complete only for finished layers).
func (s *Session) Downloaded() int64 { return s.downloaded.Load() }

// Layer returns a reader of layer i (0 is the lowest), verified as it is
// read: a mismatch is an error from Read before io.EOF. If the layer is
// still downloading, the reader follows the download and blocks for bytes
// that have not arrived; the download runs in the session either way, so
// closing the reader early does not stop it. ctx bounds the reader's
// waiting.
func (s *Session) Layer(ctx context.Context, i int) (io.ReadCloser, error) {
	if i < 0 || i >= len(s.slots) {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "layer %d out of range (%d layers)", i, len(s.slots))
	}
	sl := s.slots[i]
	desc := s.r.Layers[i].Descriptor
	select {
	case <-sl.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	sl.mu.Lock()
	t, err := sl.t, sl.err
	sl.mu.Unlock()
	if t == nil {
		if err != nil {
			return nil, err
		}
		return s.store.Open(desc)
	}
	return newStreamReader(ctx, s.store, t, desc, nil), nil
}

// FetchBlob makes the blob desc names present in store, downloading it
// from src (its mirrors first when src is resolve.Mirrored) with the same
// verification, retries and resume as Pull. It does not touch index.json,
// so GC will remove the blob unless something recorded there refers to it.
func FetchBlob(ctx context.Context, src resolve.Source, store *Store, desc ocispec.Descriptor, opts ...Option) error {
	o, err := makeOptions(opts)
	if err != nil {
		return err
	}
	if src == nil || store == nil {
		return errdefs.New(errdefs.ErrInvalidArgument, "no source or no store")
	}
	if err := checkDescriptor(desc); err != nil {
		return err
	}
	gc, err := store.lockGC(ctx, false)
	if err != nil {
		return err
	}
	defer gc.unlock()
	eps, blocked := endpointsFor(src, desc, o)
	_, _, err = store.ensure(ctx, desc, eps, o, o.reporter().blob(desc), nil)
	return foreignHint(err, desc, blocked)
}

// refNameRE is image-spec's grammar for org.opencontainers.image.ref.name:
// components of alphanumerics joined by separators, joined by "/". Tools
// that read the store (skopeo's "oci:DIR:NAME") refuse other names.
var refNameRE = regexp.MustCompile(`^[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*(?:/[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*)*$`)

// DefaultRefName is the name a pull records an image under when
// WithRefName does not say: the reference itself
// ("docker.io/library/alpine:3.20") when it is a valid ref.name, else the
// tag or digest it ends with ("latest" for "oci:/some/dir:latest"), else
// "" (recorded without a name).
func DefaultRefName(reference string) string {
	if refNameRE.MatchString(reference) {
		return reference
	}
	for _, sep := range []string{"@", ":"} {
		if i := strings.LastIndex(reference, sep); i >= 0 {
			if tail := reference[i+1:]; refNameRE.MatchString(tail) {
				return tail
			}
		}
	}
	return ""
}
