package testutil

import (
	"os"
	"path/filepath"
	"strings"
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
// Nothing changes when TMPDIR or GOTMPDIR is set (the developer chose;
// t.TempDir goes to GOTMPDIR if set, and half the scratch on /dev/shm
// would be neither choice), or when /dev/shm does not fit (scratchFits).
// Call it after flag.Parse, once the tier is known.
//
// A test binary that panics, times out (-test.timeout panics) or is
// killed never removes its scratch, and /dev/shm is memory that lasts
// until the next boot: the binary holds an flock on its directory while
// it runs, and each ShortScratch first removes the directories whose
// lock nobody holds (sweepScratch).
func ShortScratch() (remove func()) {
	nothing := func() {}
	if !testing.Short() || os.Getenv("TMPDIR") != "" || os.Getenv("GOTMPDIR") != "" || !scratchFits("/dev/shm") {
		return nothing
	}
	sweepScratch("/dev/shm")
	dir, lock := lockedScratch("/dev/shm")
	if lock == nil {
		return nothing
	}
	if !takesUserXattrs(dir) {
		os.RemoveAll(dir)
		lock.Close()
		return nothing
	}
	os.Setenv("TMPDIR", dir)
	return func() {
		os.RemoveAll(dir)
		os.Unsetenv("TMPDIR")
		lock.Close()
	}
}

// scratchPrefix names the scratch directories. It is not BinaryDir's
// "ocifetch-test-", which a run with TMPDIR=/dev/shm puts there unlocked.
const scratchPrefix = "ocifetch-scratch-"

// lockedScratch makes a scratch directory in parent and returns it with
// the open directory that holds its flock (nil if none could be made).
func lockedScratch(parent string) (string, *os.File) {
	for range 3 {
		dir, err := os.MkdirTemp(parent, scratchPrefix)
		if err != nil {
			return "", nil
		}
		// Traversable, as /tmp is, for the tests that run as another
		// user inside a t.TempDir they opened to it; not listable.
		if err := os.Chmod(dir, 0o711); err != nil {
			os.Remove(dir)
			return "", nil
		}
		lock, err := os.Open(dir)
		if err != nil {
			os.Remove(dir)
			return "", nil
		}
		// Blocking: another binary's sweep may have locked the new
		// directory, unlocked until now, and be removing it; then it is
		// gone when the lock comes, and another is made.
		var held, named unix.Stat_t
		if unix.Flock(int(lock.Fd()), unix.LOCK_EX) == nil && unix.Fstat(int(lock.Fd()), &held) == nil &&
			unix.Lstat(dir, &named) == nil && held.Dev == named.Dev && held.Ino == named.Ino {
			return dir, lock
		}
		lock.Close()
	}
	return "", nil
}

// sweepScratch removes the scratch directories in parent whose flock
// nobody holds: their test binary died before removing them. The lock
// goes with the process however it ends, and whatever pid namespace it
// ran in; a directory another user's binary made cannot be opened (mode
// 0711) and is left to that user.
func sweepScratch(parent string) {
	ents, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), scratchPrefix) {
			continue
		}
		p := filepath.Join(parent, e.Name())
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			os.RemoveAll(p)
		}
		f.Close()
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

// takesUserXattrs says whether dir takes user.* extended attributes:
// tmpfs does only since Linux 6.6, and the apply tests write layers that
// carry them, which pass on ext4.
func takesUserXattrs(dir string) bool {
	const name = "user.ocifetch.scratch-probe"
	if unix.Setxattr(dir, name, []byte("1"), 0) != nil {
		return false
	}
	unix.Removexattr(dir, name)
	return true
}
