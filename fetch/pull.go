package fetch

import (
	"context"
	"fmt"
	"io"
	"maps"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/safego"
	"github.com/ocifetch/ocifetch/resolve"
	"github.com/ocifetch/ocifetch/source"
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
	gc     *gcHold
	slots  []*slot

	noRecord   bool
	downloaded atomic.Int64
	done       chan struct{}
	res        *Result
	err        error
}

// slot is one blob's download as readers see it: which transfer to follow,
// and how the download ended.
type slot struct {
	ready   chan struct{} // closed once t is known (or the download ended first)
	once    sync.Once
	mu      sync.Mutex
	t       *transfer // nil when the blob was already in the store
	cached  bool
	err     error
	ended   bool
	changed chan struct{} // closed and replaced when t changes or the download ends
	// stream is set when the layer is read from the network by the
	// session's reader, not downloaded into the store (WithKeepBlobs):
	// streamEnd receives how that reader ended.
	stream    bool
	streamEnd chan error
}

func newSlot() *slot { return &slot{ready: make(chan struct{}), changed: make(chan struct{})} }

// start is ensure's onStart: the transfer to follow now.
func (sl *slot) start(t *transfer) {
	sl.mu.Lock()
	sl.t = t
	close(sl.changed)
	sl.changed = make(chan struct{})
	sl.mu.Unlock()
	sl.once.Do(func() { close(sl.ready) })
}

// end records how the download ended; an error already recorded stays.
func (sl *slot) end(cached bool, err error) {
	sl.mu.Lock()
	if !sl.ended {
		sl.cached, sl.err, sl.ended = cached, err, true
		close(sl.changed)
		sl.changed = make(chan struct{})
	}
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
	return start(ctx, r, store, o, true)
}

// start is Start; record says whether the session records the image in
// index.json when it is done (PullAll records the index instead).
func start(ctx context.Context, r *resolve.Resolved, store *Store, o *options, record bool) (*Session, error) {
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
	s := &Session{r: r, store: store, o: o, rep: o.reporter(), gc: gc, done: make(chan struct{}), noRecord: !record}
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
			s.rep.blob(b.Descriptor, r.Reference, 0).set(st, b.Descriptor.Size, nil)
		}
	}
	s.ctx, s.cancel = context.WithCancel(ctx)
	s.slots = make([]*slot, len(r.Layers))
	for i := range s.slots {
		s.slots[i] = newSlot()
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
	for i, l := range s.r.Layers {
		s.rep.blob(l.Descriptor, s.r.Reference, i+1).set(StateWaiting, 0, nil)
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
		sl.end(false, err)
	}
	if err != nil {
		s.err = err
		return
	}
	if s.noRecord {
		s.res = s.result("", s.r.Manifest.Descriptor)
		return
	}
	s.res, s.err = s.record()
}

func (s *Session) fetchLayer(ctx context.Context, i int) error {
	if s.o.noKeep {
		return s.streamLayer(ctx, i)
	}
	sl := s.slots[i]
	desc := s.r.Layers[i].Descriptor
	eps, blocked := endpointsFor(s.r.Source, desc, s.o)
	t, owned, err := s.store.ensure(ctx, desc, eps, s.o, s.rep.blob(desc, s.r.Reference, i+1), sl.start)
	downloaded := err == nil && owned && !t.wasCached()
	if owned {
		s.downloaded.Add(t.received.Load())
	}
	err = foreignHint(err, desc, blocked)
	if err != nil {
		// Layers are counted from 1, as the CLI shows them.
		err = errdefs.Wrap(err, errdefs.KindOf(err), "layer %d", i+1)
	}
	sl.end(!downloaded, err)
	return err
}

// streamLayer is fetchLayer when blobs are not kept: a layer the store
// holds is read from it; any other is left for Session.Layer's reader to
// stream from the network, and this waits for that reader to end.
func (s *Session) streamLayer(ctx context.Context, i int) error {
	sl := s.slots[i]
	desc := s.r.Layers[i].Descriptor
	st, err := s.store.present(ctx, desc)
	if err == nil && st == blobPresent {
		s.rep.blob(desc, s.r.Reference, i+1).set(StateCached, desc.Size, nil)
		sl.end(true, nil)
		return nil
	}
	if err == nil {
		sl.mu.Lock()
		sl.stream, sl.streamEnd = true, make(chan error, 1)
		sl.mu.Unlock()
		sl.once.Do(func() { close(sl.ready) })
		select {
		case err = <-sl.streamEnd:
		case <-ctx.Done():
			err = stoppedError{source.ContextError(ctx, "fetching blob "+desc.Digest.String(), nil)}
		}
	}
	if err != nil {
		err = errdefs.Wrap(err, errdefs.KindOf(err), "layer %d", i+1)
	}
	sl.end(false, err)
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
	desc.Annotations = maps.Clone(desc.Annotations)
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
	return s.result(name, desc), nil
}

// result describes the finished pull.
func (s *Session) result(name string, desc ocispec.Descriptor) *Result {
	r := s.r
	res := &Result{Reference: r.Reference, Name: name, Manifest: desc, Config: r.Config.Descriptor, Downloaded: s.downloaded.Load()}
	for i, l := range r.Layers {
		res.Layers = append(res.Layers, LayerResult{Layer: l, Cached: s.slots[i].cached, Path: s.store.blobPath(l.Digest)})
	}
	return res
}

// wasCached reports whether the transfer found its blob in the store.
func (t *transfer) wasCached() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cached
}

// AllResult describes a pull of every platform (PullAll).
type AllResult struct {
	// Reference is the resolved reference; Name is what the index was
	// recorded under in index.json.
	Reference, Name string
	// Entry is the index.json entry: the index, or for a single-platform
	// image its manifest.
	Entry ocispec.Descriptor
	// Images are the pulls of each image, in index order; their Name is
	// empty, since the image is recorded through the index.
	Images []*Result
	// Downloaded counts the bytes read from the network for the images'
	// layers.
	Downloaded int64
}

// PullAll stores everything r holds — every index, every image of every
// platform, and the other manifests the index lists (attestations) with
// their blobs — and records the index in index.json as one entry under
// WithRefName (default: DefaultRefName of the reference), which covers
// every platform and replaces the entries of that name. A single-platform
// image is pulled as Pull pulls it.
func PullAll(ctx context.Context, r *resolve.ResolvedAll, store *Store, opts ...Option) (*AllResult, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	if r == nil || len(r.Images) == 0 || r.Source == nil || store == nil {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "nothing to pull: no resolved images, source or store")
	}
	name := DefaultRefName(r.Reference)
	if o.refNameSet {
		name = o.refName
	}
	out := &AllResult{Reference: r.Reference, Name: name}
	if len(r.Indexes) == 0 {
		res, err := Pull(ctx, r.Images[0], store, opts...)
		if err != nil {
			return nil, err
		}
		out.Name, out.Entry, out.Images, out.Downloaded = res.Name, res.Manifest, []*Result{res}, res.Downloaded
		return out, nil
	}
	for _, b := range r.Indexes {
		if err := checkDescriptor(b.Descriptor); err != nil {
			return nil, err
		}
	}
	gc, err := store.lockGC(ctx, false)
	if err != nil {
		return nil, err
	}
	defer gc.unlock()
	for _, b := range r.Indexes {
		if err := store.WriteBlob(ctx, b.Descriptor, b.Data); err != nil {
			return nil, err
		}
	}
	for _, im := range r.Images {
		s, err := start(ctx, im, store, o, false)
		if err != nil {
			return nil, err
		}
		res, err := s.Wait()
		if err != nil {
			return nil, err
		}
		out.Images = append(out.Images, res)
		out.Downloaded += res.Downloaded
	}
	for _, a := range r.Artifacts {
		if err := checkDescriptor(a.Manifest.Descriptor); err != nil {
			return nil, err
		}
		if a.Manifest.Data != nil {
			err = store.WriteBlob(ctx, a.Manifest.Descriptor, a.Manifest.Data)
		} else {
			err = FetchBlob(ctx, r.Source, store, a.Manifest.Descriptor, opts...)
		}
		if err != nil {
			return nil, err
		}
		for _, b := range a.Blobs {
			if err := FetchBlob(ctx, r.Source, store, b, opts...); err != nil {
				return nil, err
			}
		}
	}
	entry := r.Root.Descriptor
	entry.Annotations = maps.Clone(entry.Annotations)
	if entry.Annotations == nil {
		entry.Annotations = map[string]string{}
	}
	entry.Annotations[AnnotationReference] = r.Reference
	entry.Platform = nil
	if err := store.Tag(ctx, name, entry); err != nil {
		return nil, err
	}
	if name != "" {
		entry.Annotations[ocispec.AnnotationRefName] = name
	}
	out.Entry = entry
	return out, nil
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
// closing the reader early does not stop it. A download this session
// shares with another goes on while either wants it, so cancelling the
// other session does not stop this reader. ctx bounds the reader's
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
	t, err, stream := sl.t, sl.err, sl.stream
	sl.mu.Unlock()
	if stream {
		return newNetStream(ctx, desc, s.r.Source, s.o, s.rep.blob(desc, s.r.Reference, i+1), &s.downloaded, func(_ bool, err error) {
			select {
			case sl.streamEnd <- err:
			default: // a reader before this one ended the layer
			}
		}), nil
	}
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
	_, _, err = store.ensure(ctx, desc, eps, o, o.reporter().blob(desc, src.Reference(), 0), nil)
	return foreignHint(err, desc, blocked)
}

// refNameRE is image-spec's grammar for org.opencontainers.image.ref.name:
// components of alphanumerics joined by separators, joined by "/". Tools
// that read the store (skopeo's "oci:DIR:NAME") refuse other names.
var refNameRE = regexp.MustCompile(`^[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*(?:/[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*)*$`)

// DefaultRefName is the name a pull records an image under when
// WithRefName does not say: the reference itself
// ("docker.io/library/alpine:3.20") when it is a valid ref.name; for a
// layout or archive reference the name it gives inside the layout
// ("127.0.0.1:5000/repo:1" for "oci:/store:127.0.0.1:5000/repo:1", so that
// unpacking an image of a store into that store records it under its own
// name), else the digest it is pinned to; otherwise the tag or digest the
// reference ends with ("latest" for "oci:/some/dir:latest"), else ""
// (recorded without a name).
func DefaultRefName(reference string) string {
	if refNameRE.MatchString(reference) {
		return reference
	}
	for _, scheme := range []string{"oci:", "oci-archive:", "docker-archive:"} {
		rest, ok := strings.CutPrefix(reference, scheme)
		if !ok {
			continue
		}
		var pinned string
		if i := strings.LastIndex(rest, "@"); i >= 0 && strings.Contains(rest[i+1:], ":") {
			rest, pinned = rest[:i], rest[i+1:]
		}
		if _, name, ok := strings.Cut(rest, ":"); ok && refNameRE.MatchString(name) {
			return name
		}
		if refNameRE.MatchString(pinned) {
			return pinned
		}
		return ""
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
