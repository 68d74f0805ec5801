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
	p := filepath.Join(a.state, tarsplitName(sha(l)))
	sound, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}

	var b bytes.Buffer
	enc, err := zstd.NewWriter(&b, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte{'a'}, 1<<20)
	for range 512 {
		enc.Write(chunk)
	}
	enc.Close()
	if err := os.WriteFile(p, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = a.rebuild(t, 0)
	runtime.ReadMemStats(&after)
	wantKind(t, err, errdefs.ErrInternal)
	if !strings.Contains(err.Error(), "is corrupt") {
		t.Errorf("error %q does not say the metadata is corrupt", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 256<<20 {
		t.Errorf("a forged 512 MiB line: %d MiB allocated", alloc>>20)
	}

	if err := os.WriteFile(p, sound, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := a.rebuild(t, 0); err != nil || !bytes.Equal(got, l) {
		t.Fatalf("sound metadata: %v", err)
	}
}
