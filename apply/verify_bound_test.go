package apply

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/testutil"
)

// A tree manifest whose entry holds one string of 512 MiB (a few hundred
// KB of zstd) was read whole before it was found corrupt (a 1 GB string:
// 2 GB resident). The entry is refused once past maxManifestEntry (64
// MiB), having allocated about 260 MiB whatever its length; the tree
// still verifies clean from a sound manifest.
func TestForgedTreeManifestEntryIsBounded(t *testing.T) {
	testutil.Full(t, "reaching the 64 MiB bound is 64 MiB through encoding/json under the race detector, 4 s of CPU; TestForgedTarSplitLineIsBounded covers the same kind of bound on rebuild's metadata")
	a := mustApplyRecorded(t, [][]byte{tarOf(t, F("a", "aaa", 0o644))})
	restore := forgeFile(t, filepath.Join(a.state, manifestFile), zstdRepeated(t, []byte(`{"path":"`), bytes.Repeat([]byte{'a'}, 1<<20), 512))
	var err error
	alloc := allocatedBy(func() { _, err = Verify(context.Background(), a.state, a.target) })
	wantKind(t, err, errdefs.ErrInternal)
	if !strings.Contains(err.Error(), "is corrupt") {
		t.Errorf("error %q does not say the manifest is corrupt", err)
	}
	if alloc > 512<<20 {
		t.Errorf("a forged 512 MiB entry: %d MiB allocated", alloc>>20)
	}

	restore()
	if drift, err := Verify(context.Background(), a.state, a.target); err != nil || len(drift) != 0 {
		t.Fatalf("sound manifest: %v, drift %v", err, drift)
	}
}
