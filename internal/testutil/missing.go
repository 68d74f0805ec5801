package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// Missing skips t for a tool or test data this machine lacks, except in
// CI ($CI set), which installs everything: there it fails, so that a
// broken install step cannot pass as a skip.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	why := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatalf("%s (CI is set, so this is a failure, not a skip)", why)
	}
	t.Skipf("%s", why)
}

// Tool finds a peer tool on $PATH, or is Missing.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, "%s not installed: %v", name, err)
	}
	return p
}

// Executable says why p is not a file this process may run, or nil.
func Executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", p)
	}
	return nil
}
