package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ocifetch/ocifetch/internal/testutil/hostile"
	"github.com/ocifetch/ocifetch/internal/testutil/testimage"
)

// TestSignalExitStatus: a command stopped by SIGINT exits 130 and by
// SIGTERM 143, with kind canceled, whether it is waiting for a blob
// (pull, unpack) or a manifest (resolve). It used to exit 6 during pull
// and 1 during unpack.
func TestSignalExitStatus(t *testing.T) {
	t.Parallel()
	reg := hostile.New(t)
	img := testimage.Image(t, 2, "linux", "amd64", "")
	cfg, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	// Each run pulls from a repository of its own and waits for a blob
	// request of that repository: a request the run before left in
	// flight (another layer) must not count, or the signal lands before
	// the command has installed its handler.
	reached := make(chan string, 16)
	reg.Intercept(func(w http.ResponseWriter, r *http.Request, q hostile.Request) bool {
		if q.Kind != hostile.Blob || q.Ref == cfg.String() {
			return false
		}
		// Send part of the body, then hold the connection until the
		// client goes away.
		w.Header().Set("Content-Length", "100000")
		w.WriteHeader(http.StatusOK)
		w.Write(make([]byte, 10))
		w.(http.Flusher).Flush()
		select {
		case reached <- q.Repo:
		default:
		}
		<-r.Context().Done()
		return true
	})
	bin := builtCLI(t)
	for i, tc := range []struct {
		cmd  string
		sig  syscall.Signal
		want int
	}{
		{"pull", syscall.SIGINT, 130},
		{"pull", syscall.SIGTERM, 143},
		{"unpack", syscall.SIGINT, 130},
		{"unpack", syscall.SIGTERM, 143},
	} {
		t.Run(tc.cmd+"/"+tc.sig.String(), func(t *testing.T) {
			repo := fmt.Sprintf("app%d", i)
			ref := reg.PutImage(t, repo, "v1", img)
			dir := t.TempDir()
			args := []string{tc.cmd, "--json", "--store", filepath.Join(dir, "store"), ref}
			if tc.cmd == "unpack" {
				args = append(args, filepath.Join(dir, "rootfs"))
			}
			cmd := exec.Command(bin, args...)
			cmd.Env = cliEnv(t)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			timeout := time.After(30 * time.Second)
			for asked := ""; asked != repo; {
				select {
				case asked = <-reached:
				case <-timeout:
					t.Fatal("the command never asked for a blob")
				}
			}
			if err := cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Fatalf("%s did not stop within 20 s of %v", tc.cmd, tc.sig)
			}
			if code := cmd.ProcessState.ExitCode(); code != tc.want {
				t.Errorf("exit status %d, want %d\nstdout: %s\nstderr: %s", code, tc.want, stdout.String(), stderr.String())
			}
			if k, _ := exactJSONError(t, stdout.String()); k != "canceled" {
				t.Errorf("kind %q, want canceled", k)
			}
			if tc.cmd == "unpack" {
				// Nothing half-made stays behind under the target's name.
				if _, err := os.Stat(filepath.Join(dir, "rootfs", "state.json")); err == nil {
					t.Error("state inside the target")
				}
			}
		})
	}
}
