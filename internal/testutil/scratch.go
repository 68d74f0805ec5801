package testutil

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// shortScratchMin is the free space /dev/shm must have for the short tier
// to keep its scratch there: the largest short-tier package writes a few
// hundred MB, and a container's default /dev/shm of 64 MB would fail
// tests that pass on disk.
const shortScratchMin = 4 << 30

// ShortScratch points TMPDIR, and with it every t.TempDir, BinaryDir, the
// registries' storage and the commands the tests run, at a fresh
// directory on /dev/shm under `go test -short`, and returns what removes
// it. On this project's two-core machine the short tier spent 33-37 s of
// its 130-145 s of CPU in the kernel, most of it ext4 allocating inodes
// and blocks for files the tests delete a moment later; on tmpfs it was
// 23 s, and the tier 60 s instead of 70-76 s (issue #15's budget is
// 60 s). The full run (scripts/test.sh, what CI runs) keeps the default
// TMPDIR, so every test still runs on a disk file system there.
//
// Nothing changes when TMPDIR is set (the developer chose), or when
// /dev/shm does not fit (scratchFits).
// Call it after flag.Parse, once the tier is known.
func ShortScratch() (remove func()) {
	nothing := func() {}
	if !testing.Short() || os.Getenv("TMPDIR") != "" || !scratchFits("/dev/shm") {
		return nothing
	}
	dir, err := os.MkdirTemp("/dev/shm", "ocifetch-test-")
	if err != nil {
		return nothing
	}
	// Traversable, as /tmp is, for the tests that run as another user
	// inside a t.TempDir they opened to it; not listable.
	if err := os.Chmod(dir, 0o711); err != nil {
		os.Remove(dir)
		return nothing
	}
	os.Setenv("TMPDIR", dir)
	return func() {
		os.RemoveAll(dir)
		os.Unsetenv("TMPDIR")
	}
}

// scratchFits says whether dir may hold the short tier's scratch: a tmpfs
// with shortScratchMin free, mounted without noexec or nodev. Hardened
// hosts mount /dev/shm noexec,nodev (CIS benchmark 1.1.8-1.1.10): there
// the commands the tests build into BinaryDir could not run, nor could
// the CLI open the character device a test makes in its t.TempDir, and
// tests that pass on disk would fail.
func scratchFits(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Type == unix.TMPFS_MAGIC &&
		st.Flags&(unix.ST_NOEXEC|unix.ST_NODEV) == 0 &&
		st.Bavail*uint64(st.Bsize) >= shortScratchMin
}
