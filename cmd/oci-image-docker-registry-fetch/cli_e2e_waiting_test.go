package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/ocifetch/ocifetch/internal/testutil/hostile"
	"github.com/ocifetch/ocifetch/internal/testutil/testimage"
)

// syncBuffer is a bytes.Buffer a running process writes to while the
// test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startCLI starts the binary without waiting for it.
func startCLI(t *testing.T, env []string, args ...string) (*exec.Cmd, *syncBuffer, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(builtCLI(t), args...)
	cmd.Env = env
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, &stdout, &stderr
}

// waitFor polls until cond holds, failing the test after 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// gatedRegistry serves an image whose first layer stops halfway until the
// test opens the gate, so that the pull downloading it holds the blob's
// lock and the store's for as long as the test needs.
// heldPull is a pull that is downloading the layer its registry holds
// back until open is called.
type heldPull struct {
	cmd   *exec.Cmd
	env   []string
	store string
	ref   string
	layer digest.Digest
	open  func()
}

// startHeldPull starts a pull from a gatedRegistry into a new store and
// waits until it downloads the held layer.
func startHeldPull(t *testing.T) heldPull {
	t.Helper()
	h := heldPull{env: cliEnv(t), store: filepath.Join(t.TempDir(), "store")}
	h.ref, h.layer, h.open = gatedRegistry(t)
	t.Cleanup(h.open)
	h.cmd, _, _ = startCLI(t, h.env, "pull", "--insecure-policy", "--store", h.store, h.ref)
	waitFor(t, "the pull to start the layer", downloading(h.store, h.layer))
	return h
}

func gatedRegistry(t *testing.T) (ref string, layer digest.Digest, open func()) {
	reg := hostile.New(t)
	img := testimage.Image(t, 2, "linux", "amd64", "")
	ref = reg.PutImage(t, "slow", "v1", img)
	ls, _ := img.Layers()
	d, _ := ls[0].Digest()
	layer = digest.Digest(d.String())
	gate := make(chan struct{})
	var once sync.Once
	reg.Intercept(func(w http.ResponseWriter, r *http.Request, q hostile.Request) bool {
		if q.Kind != hostile.Blob || q.Ref != d.String() || r.Method != http.MethodGet || r.Header.Get("Range") != "" {
			return false
		}
		data := reg.Blob(q.Repo, layer)
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(http.StatusOK)
		w.Write(data[:len(data)/2])
		w.(http.Flusher).Flush()
		select {
		case <-gate:
		case <-r.Context().Done():
			return true
		}
		w.Write(data[len(data)/2:])
		return true
	})
	return ref, layer, func() { once.Do(func() { close(gate) }) }
}

// downloading reports whether a process holds the download of layer in
// store: its lock file names it.
func downloading(store string, layer digest.Digest) func() bool {
	lock := filepath.Join(store, ".ocifetch", "locks", "sha256", layer.Encoded()+".lock")
	return func() bool {
		b, err := os.ReadFile(lock)
		return err == nil && strings.HasPrefix(string(b), "pid ")
	}
}

// A pull that finds another process downloading one of its blobs says
// so, naming the process: "waiting for another process (pid N) to finish
// BLOB", then goes on once the blob is there, without downloading it.
func TestCLIE2EWaitingForAnotherProcess(t *testing.T) {
	t.Parallel()
	h := startHeldPull(t)
	first, env, store, ref, layer, open := h.cmd, h.env, h.store, h.ref, h.layer, h.open

	second, _, stderr := startCLI(t, env, "pull", "--insecure-policy", "--store", store, ref)
	want := fmt.Sprintf("%s waiting 0 B/", short(layer.String()))
	line := regexp.MustCompile(`(?m)^` + short(layer.String()) + ` waiting 0 B/\S+ B: waiting for another process \(pid ` +
		strconv.Itoa(first.Process.Pid) + `\) to finish ` + short(layer.String()) + `$`)
	waitFor(t, "the second pull to say whom it waits for", func() bool { return line.MatchString(stderr.String()) })
	open()
	if err := first.Wait(); err != nil {
		t.Errorf("first pull: %v", err)
	}
	if err := second.Wait(); err != nil {
		t.Errorf("second pull: %v\n%s", err, stderr)
	}
	if s := stderr.String(); !strings.Contains(s, short(layer.String())+" cached ") || !strings.Contains(s, want) {
		t.Errorf("the second pull did not find the layer cached after waiting:\n%s", s)
	}
}

// gc waits for the pulls using the store, and says so on stderr, then
// collects once they are done; the pull it waited for succeeds.
func TestCLIE2EGCSaysItWaits(t *testing.T) {
	t.Parallel()
	h := startHeldPull(t)
	pull, env, store, open := h.cmd, h.env, h.store, h.open

	gc, stdout, stderr := startCLI(t, env, "gc", "--store", store)
	want := "waiting for the pulls and other writers using " + store + " to finish...\n"
	waitFor(t, "gc to say it waits", func() bool { return strings.HasPrefix(stderr.String(), want) })
	time.Sleep(200 * time.Millisecond)
	if gc.ProcessState != nil {
		t.Fatalf("gc did not wait for the pull: %s", stderr)
	}
	open()
	if err := pull.Wait(); err != nil {
		t.Errorf("pull: %v", err)
	}
	if err := gc.Wait(); err != nil {
		t.Errorf("gc: %v\n%s", err, stderr)
	}
	if stdout.String() != "" || !strings.Contains(stderr.String(), "removed 0 blobs") {
		t.Errorf("gc after the pull removed something of it: stdout %q stderr %q", stdout, stderr)
	}
	// And the image it waited for is whole.
	r := mustRun(t, env, "images", "--store", store)
	if !strings.Contains(r.stdout, " blobs\n") {
		t.Errorf("images after gc:\n%s", r.stdout)
	}
}

// unpack and bundle report each layer as it is applied: off a terminal a
// "layer N/M applied: E entries, BYTES in TIME" line per layer, in order;
// on a terminal (tmux, 80x24) an apply line that ends as "applied layer
// M/M" on the final screen.
func TestCLIE2EApplyProgress(t *testing.T) {
	t.Parallel()
	reg := hostile.New(t)
	img := testimage.Image(t, 3, "linux", "amd64", "")
	ref := reg.PutImage(t, "app", "v1", img)
	env := cliEnv(t)
	work := t.TempDir()
	applied := regexp.MustCompile(`^layer (\d)/3 applied: (\d+) entries, \d+(\.\d)? (B|KiB) in \d+(\.\d+)?(µs|ms|s)$`)
	for _, cmd := range []string{"unpack", "bundle"} {
		r := mustRun(t, env, cmd, "--insecure-policy", "--store", filepath.Join(work, cmd+"-store"), ref, filepath.Join(work, cmd))
		var got []string
		for _, l := range lines(r.stderr) {
			if m := applied.FindStringSubmatch(l); m != nil {
				got = append(got, m[1])
				if m[2] == "0" {
					t.Errorf("%s: %q: a layer of files applied no entries", cmd, l)
				}
			}
		}
		if strings.Join(got, ",") != "1,2,3" {
			t.Errorf("%s: applied lines for layers %v, want 1,2,3:\n%s", cmd, got, r.stderr)
		}
	}

	tm := inTmux(t, work, env, [2]int{80, 24}, shellQuote(builtCLI(t))+" unpack --insecure-policy --store "+
		shellQuote(filepath.Join(work, "tty-store"))+" "+ref+" "+shellQuote(filepath.Join(work, "tty")))
	var screen string
	waitFor(t, "the unpack in tmux", func() bool {
		screen = tm("capture-pane", "-p", "-t", "p")
		return strings.Contains(screen, "EXIT=")
	})
	if !strings.Contains(screen, "EXIT=0") || !regexp.MustCompile(`(?m)^applied layer 3/3: \d+ entries, `).MatchString(screen) {
		t.Errorf("the final screen has no apply line for layer 3/3:\n%s", screen)
	}
}
