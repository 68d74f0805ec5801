package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/ocifetch/ocifetch/internal/testutil/testimage"
	"github.com/ocifetch/ocifetch/internal/testutil/testregistry"
)

func TestE2EResolveMultiPlatformFromRegistry(t *testing.T) {
	t.Parallel()
	reg := testregistry.Shared(t)
	idx, imgs := testimage.Index(t,
		testimage.Platform{OS: "linux", Arch: "amd64"},
		testimage.Platform{OS: "linux", Arch: "arm64", IndexVariant: "-"},
		testimage.Platform{OS: "linux", Arch: "arm64", Variant: "v8"},
		testimage.Platform{OS: "linux", Arch: "arm", Variant: "v7"})
	testimage.PushIndex(t, reg.Host+"/e2e/multi:1", idx)
	v8, _ := imgs[2].Digest()
	bin := builtCLI(t)

	cmd := exec.Command(bin, "resolve", "--platform", "linux/arm64", "--json", reg.Host+"/e2e/multi:1")
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+t.TempDir())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("resolve: %v\n%s", err, out)
	}
	var got resolveOutput
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got.Manifest.Digest != v8.String() || got.Platform != "linux/arm64/v8" {
		t.Fatalf("manifest %s (%s), want the arm64/v8 entry %s", got.Manifest.Digest, got.Platform, v8)
	}

	// A failure with --json: one object on stdout, the exit status for
	// "not found".
	cmd = exec.Command(bin, "resolve", "--json", reg.Host+"/e2e/missing:1")
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+t.TempDir())
	out, err = cmd.Output()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != exitNotFound {
		t.Fatalf("exit %v, want %d", err, exitNotFound)
	}
	kind, msg := jsonError(t, string(out))
	if kind != "not_found" || !strings.Contains(msg, "e2e/missing") {
		t.Fatalf("kind %s message %q", kind, msg)
	}
}
