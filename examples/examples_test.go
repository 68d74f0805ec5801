// Package examples holds runnable programs that embed ocifetch; this test
// builds each and runs it against a real registry, as a user would.
package examples

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocifetch/ocifetch/internal/testutil"
	"github.com/ocifetch/ocifetch/internal/testutil/testimage"
	"github.com/ocifetch/ocifetch/internal/testutil/testregistry"
)

// Both tests share one registry process.
func TestMain(m *testing.M) {
	os.Exit(testregistry.Main(m))
}

func build(t *testing.T, pkg string) string {
	t.Helper()
	return testutil.Build(t, "./"+pkg, filepath.Base(pkg))
}

func TestEmbedPull(t *testing.T) {
	t.Parallel()
	reg := testregistry.Shared(t)
	idx, _ := testimage.Index(t,
		testimage.Platform{OS: "linux", Arch: "amd64"},
		testimage.Platform{OS: "linux", Arch: "arm64", Variant: "v8"})
	testimage.PushIndex(t, reg.Host+"/examples/app:1", idx)
	bin := build(t, "embed-pull")

	dir := filepath.Join(t.TempDir(), "rootfs")
	cmd := exec.Command(bin, "-platform", "linux/arm64", "-store", t.TempDir(), reg.Host+"/examples/app:1", dir)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("embed-pull: %v\n%s", err, out)
	}
	for _, want := range []string{"resolved ", "linux/arm64/v8", "layer 1:", "layer 2:", "rootfs ready"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) == 0 {
		t.Fatalf("rootfs is empty: %v", err)
	}

	// A platform the image lacks: the example's own exit status.
	cmd = exec.Command(bin, "-platform", "linux/s390x", "-store", t.TempDir(), reg.Host+"/examples/app:1", filepath.Join(t.TempDir(), "x"))
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+t.TempDir())
	out, err = cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 || !strings.Contains(string(out), "linux/arm64/v8") {
		t.Fatalf("s390x: %v\n%s", err, out)
	}
}

func TestRebuildLayer(t *testing.T) {
	t.Parallel()
	reg := testregistry.Shared(t)
	idx, _ := testimage.Index(t, testimage.Platform{OS: "linux", Arch: "amd64"})
	testimage.PushIndex(t, reg.Host+"/examples/repro:1", idx)
	pull, rebuild := build(t, "embed-pull"), build(t, "rebuild-layer")

	work := t.TempDir()
	rootfs, store := filepath.Join(work, "rootfs"), filepath.Join(work, "store")
	cmd := exec.Command(pull, "-platform", "linux/amd64", "-store", store, reg.Host+"/examples/repro:1", rootfs)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("embed-pull: %v\n%s", err, out)
	}
	os.RemoveAll(store) // rebuilding needs only the tree and its metadata

	out, err := exec.Command(rebuild, rootfs).CombinedOutput()
	if err != nil || strings.Count(string(out), "reproducible, sha256:") != 2 {
		t.Fatalf("rebuild-layer: %v\n%s", err, out)
	}

	// Change one file: the tool reports it and fails.
	var victim string
	filepath.WalkDir(rootfs, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && victim == "" {
			victim = p
		}
		return nil
	})
	if victim == "" {
		t.Fatal("no regular file in the rootfs")
	}
	if err := os.WriteFile(victim, []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(rebuild, rootfs).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "NOT reproducible") || !strings.Contains(string(out), "drift: changed") {
		t.Fatalf("after tampering: %v\n%s", err, out)
	}
}
