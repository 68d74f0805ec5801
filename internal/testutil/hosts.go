package testutil

import (
	"os"
	"path/filepath"
	"testing"
)

// WriteHostsFile writes body to DIR/HOST/hosts.toml, the layout of a
// containerd certs.d directory (what --hosts-dir names).
func WriteHostsFile(t testing.TB, dir, host, body string) {
	t.Helper()
	d := filepath.Join(dir, host)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}
