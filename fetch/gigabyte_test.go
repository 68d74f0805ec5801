package fetch_test

import (
	"context"
	"io"
	"runtime"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/fetch"
	"github.com/ocifetch/ocifetch/internal/testutil"
)

// patternSource serves one blob of n bytes made by repeating a block,
// generated as it is read: the test itself never holds the blob.
type patternSource struct {
	block []byte
	n     int64
	desc  ocispec.Descriptor
}

type patternReader struct {
	block []byte
	off   int64
	n     int64
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	if rest := r.n - r.off; int64(len(p)) > rest {
		p = p[:rest]
	}
	done := 0
	for done < len(p) {
		i := int((r.off + int64(done)) % int64(len(r.block)))
		done += copy(p[done:], r.block[i:])
	}
	r.off += int64(done)
	return done, nil
}

func newPatternSource(n int64) *patternSource {
	s := &patternSource{block: randomBytes(1<<20+17, 99), n: n}
	d := digest.SHA256.Digester()
	io.Copy(d.Hash(), &patternReader{block: s.block, n: n})
	s.desc = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: d.Digest(), Size: n}
	return s
}

func (s *patternSource) Reference() string                                { return "pattern" }
func (s *patternSource) Root(context.Context) (ocispec.Descriptor, error) { return noRoot() }
func (s *patternSource) Fetch(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	return fromStart(ctx, s, d)
}
func (s *patternSource) FetchAt(_ context.Context, _ ocispec.Descriptor, off int64) (io.ReadCloser, int64, error) {
	return io.NopCloser(&patternReader{block: s.block, off: off, n: s.n}), off, nil
}

// A 1 GiB layer is fetched, verified and stored with a bounded buffer: the
// bytes allocated do not come near the layer's size, and the heap in use
// at the end is small.
func TestOneGiBLayerWithBoundedMemory(t *testing.T) {
	testutil.Full(t, "writes 1 GiB")
	src := newPatternSource(1 << 30)
	s := openStore(t)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if err := fetch.FetchBlob(context.Background(), src, s, src.desc); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("fetching 1 GiB allocated %d KiB; heap in use %d KiB", alloc>>10, after.HeapInuse>>10)
	if alloc > 16<<20 {
		t.Fatalf("fetching 1 GiB allocated %d bytes: the buffer is not bounded", alloc)
	}
	if ok, err := s.Has(src.desc); err != nil || !ok {
		t.Fatalf("blob not in the store: %v", err)
	}
}
