package fetch

import (
	"context"
	"path/filepath"
	"testing"
)

// BenchmarkWriteHolder is what recording the downloading process's pid
// in a blob's lock file costs per blob downloaded (a pwrite and an
// ftruncate of the open lock file).
func BenchmarkWriteHolder(b *testing.B) {
	lk, err := lockFile(context.Background(), filepath.Join(b.TempDir(), "x.lock"), true)
	if err != nil {
		b.Fatal(err)
	}
	defer lk.unlock()
	for b.Loop() {
		lk.writeHolder()
	}
}
