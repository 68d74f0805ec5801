//go:build !linux

package fsroot

// This module uses Linux system calls (openat2, O_TMPFILE, linkat with
// AT_EMPTY_PATH, statx) to keep every write confined and atomic; on other
// systems the build stops here with this name in the error.
var _ = ocifetch_builds_on_linux_only
