package apply

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/ocifetch/ocifetch/errdefs"
)

// A tar-split file whose one line is 512 MiB of one byte (a few hundred
// KB of zstd) was read whole before it was found corrupt: 2.7 GB
// allocated (a 1 GB line: 4.2 GB resident). The line is refused once past
// maxEntryLine (64 MiB), having allocated about 120 MiB whatever the
// line's length; the layer still rebuilds from sound metadata.
func TestForgedTarSplitLineIsBounded(t *testing.T) {
	l := tarOf(t, F("a", "aaa", 0o644))
	a := mustApplyRecorded(t, [][]byte{l})
	restore := forgeFile(t, filepath.Join(a.state, tarsplitName(sha(l))), zstdRepeated(t, nil, bytes.Repeat([]byte{'a'}, 1<<20), 512))
	var err error
	alloc := allocatedBy(func() { _, err = a.rebuild(t, 0) })
	wantKind(t, err, errdefs.ErrInternal)
	if !strings.Contains(err.Error(), "is corrupt") {
		t.Errorf("error %q does not say the metadata is corrupt", err)
	}
	if alloc > 256<<20 {
		t.Errorf("a forged 512 MiB line: %d MiB allocated", alloc>>20)
	}

	restore()
	if got, err := a.rebuild(t, 0); err != nil || !bytes.Equal(got, l) {
		t.Fatalf("sound metadata: %v", err)
	}
}

// zstdRepeated is head followed by n copies of chunk, compressed with
// zstd cheaply: chunk is compressed once and its frame repeated, which a
// zstd reader takes as one stream. Compressing hundreds of MiB under the
// race detector took seconds of CPU for each forged file.
func zstdRepeated(t *testing.T, head, chunk []byte, n int) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	b := enc.EncodeAll(head, nil)
	frame := enc.EncodeAll(chunk, nil)
	for range n {
		b = append(b, frame...)
	}
	return b
}

// forgeFile puts forged in place of the file at p and returns what puts
// the file's own bytes back.
func forgeFile(t *testing.T, p string, forged []byte) (restore func()) {
	t.Helper()
	sound, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, forged, 0o600); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.WriteFile(p, sound, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// allocatedBy is what the heap allocated while fn ran.
func allocatedBy(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
