package fetch

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestUnlockDespiteDescriptorCopies: a child process forked by another
// goroutine holds a copy of every descriptor until it execs; unlock must
// release the lock even then, not only when the last copy closes.
func TestUnlockDespiteDescriptorCopies(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "blob.lock")
	l, err := lockFile(context.Background(), path, true)
	if err != nil {
		t.Fatal(err)
	}
	dup, err := unix.Dup(int(l.f.Fd())) // what a forked child holds
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dup)
	l.unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	again, err := lockFile(ctx, path, true)
	if err != nil {
		t.Fatalf("locking again after unlock: %v", err)
	}
	again.unlock()
}
