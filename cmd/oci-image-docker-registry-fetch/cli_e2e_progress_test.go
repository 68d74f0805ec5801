package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/ocifetch/ocifetch/internal/testutil/hostile"
	"github.com/ocifetch/ocifetch/internal/testutil/testimage"
)

// Off a terminal, "unpack" and "bundle" report progress as plain lines on
// stderr (no terminal control characters), one per blob state change,
// ending with a summary line; --quiet silences stderr; stdout holds only
// the manifest digest either way.
func TestCLIE2EUnpackBundleProgress(t *testing.T) {
	t.Parallel()
	demo, env := sharedDemo(t, "/e2e/progress:v1")
	want := demo.facts(t, "linux/amd64")
	digestLine := want.manifest.String() + "\n"
	blobs := map[string]bool{short(want.config.String()): true}
	for _, l := range want.layers {
		blobs[short(l.String())] = true
	}

	unpackSummary := regexp.MustCompile(`^unpacked ` + regexp.QuoteMeta(demo.ref) + ` \(` + want.manifest.String() + `\): 2 layers, \d+ files, \d+(\.\d)? (B|KiB) in \S+ into (.+)$`)
	bundleSummary := regexp.MustCompile(`^bundled ` + regexp.QuoteMeta(demo.ref) + ` \(` + want.manifest.String() + `\): 2 layers, \d+ files, \d+(\.\d)? (B|KiB) in \S+ into (.+)$`)
	for _, tc := range []struct {
		cmd     string
		summary *regexp.Regexp
	}{{"unpack", unpackSummary}, {"bundle", bundleSummary}} {
		t.Run(tc.cmd, func(t *testing.T) {
			work := t.TempDir()
			store := filepath.Join(work, "store")
			target := filepath.Join(work, "target")
			r := mustRun(t, env, tc.cmd, "--store", store, "--platform", "linux/amd64", demo.ref, target)
			if r.stdout != digestLine {
				t.Errorf("%s: stdout %q, want only the digest", tc.cmd, r.stdout)
			}
			if strings.ContainsAny(r.stderr, "\x1b\r") {
				t.Errorf("%s: terminal control characters in non-terminal output: %q", tc.cmd, r.stderr)
			}
			ls := lines(r.stderr)
			if len(ls) < 2 {
				t.Fatalf("%s: stderr %q, want progress lines and a summary", tc.cmd, r.stderr)
			}
			if m := tc.summary.FindStringSubmatch(ls[len(ls)-1]); m == nil || m[len(m)-1] != target {
				t.Errorf("%s: the last line %q is not the summary for %s", tc.cmd, ls[len(ls)-1], target)
			}
			states := map[string][]string{}
			for _, l := range ls[:len(ls)-1] {
				if progressExtra.MatchString(l) {
					continue
				}
				m := progressLine.FindStringSubmatch(l)
				if m == nil {
					t.Errorf("%s: not a progress line: %q", tc.cmd, l)
					continue
				}
				if !blobs[m[1]] {
					t.Errorf("%s: progress for %s, which is not a blob of the image", tc.cmd, m[1])
				}
				if s := states[m[1]]; len(s) > 0 && s[len(s)-1] == m[2] {
					t.Errorf("%s: two lines in a row say %s %s", tc.cmd, m[1], m[2])
				}
				states[m[1]] = append(states[m[1]], m[2])
			}
			for b := range blobs {
				s := states[b]
				if len(s) == 0 || s[len(s)-1] != "done" {
					t.Errorf("%s: blob %s went through %v, want … done", tc.cmd, b, s)
				}
			}
			for _, l := range want.layers {
				if s := states[short(l.String())]; !strings.Contains(strings.Join(s, " "), "downloading") {
					t.Errorf("%s: layer %s went through %v, want downloading", tc.cmd, l, s)
				}
			}

			// --quiet, into a fresh store and target: only the digest.
			r = mustRun(t, env, tc.cmd, "--quiet", "--store", filepath.Join(work, "store2"), "--platform", "linux/amd64", demo.ref, target+"2")
			if r.stdout != digestLine || r.stderr != "" {
				t.Errorf("%s --quiet: stdout %q stderr %q", tc.cmd, r.stdout, r.stderr)
			}
		})
	}
}

// TestCLIE2EProgressTerminal runs "pull" of 31 blobs in a real terminal
// (tmux) at 80x24 and 200x50. The redraw must fit the screen: no line
// longer than the terminal is wide (a wrapped line breaks the cursor
// arithmetic and leaves copies behind), never more lines than rows, so
// the scrollback stays under 60 lines; and the final screen shows the
// total. Before, 3 blobs on 80 columns left 119 rows of scrollback and 31
// blobs on 24 rows 546 lines.
func TestCLIE2EProgressTerminal(t *testing.T) {
	t.Parallel()
	reg := hostile.New(t)
	img := testimage.Image(t, 30, "linux", "amd64", "")
	ref := reg.PutImage(t, "app", "v1", img)
	// Each blob arrives in pieces over about a second, so the display
	// redraws many times while all of them are in flight.
	reg.Intercept(func(w http.ResponseWriter, r *http.Request, q hostile.Request) bool {
		if q.Kind != hostile.Blob || r.Method != http.MethodGet {
			return false
		}
		data := reg.Blob(q.Repo, digest.Digest(q.Ref))
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(http.StatusOK)
		for i := 0; i < len(data); i += 100 {
			w.Write(data[i:min(i+100, len(data))])
			w.(http.Flusher).Flush()
			time.Sleep(80 * time.Millisecond)
		}
		return true
	})
	bin := builtCLI(t)
	for _, size := range [][2]int{{80, 24}, {200, 50}} {
		t.Run(fmt.Sprintf("%dx%d", size[0], size[1]), func(t *testing.T) {
			t.Parallel()
			work := t.TempDir()
			tm := inTmux(t, work, cliEnv(t), size, shellQuote(bin)+" pull --jobs 8 --store "+shellQuote(filepath.Join(work, "store"))+" "+ref)
			deadline := time.Now().Add(60 * time.Second)
			var screen string
			for {
				screen = tm("capture-pane", "-p", "-t", "p")
				if strings.Contains(screen, "EXIT=") || time.Now().After(deadline) {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if !strings.Contains(screen, "EXIT=0") {
				t.Fatalf("pull did not finish with status 0:\n%s", screen)
			}
			history, _ := strconv.Atoi(strings.TrimSpace(tm("display-message", "-p", "-t", "p", "#{history_size}")))
			all := tm("capture-pane", "-p", "-t", "p", "-S", "-", "-E", "-")
			used := len(lines(strings.TrimRight(all, "\n")))
			if history+size[1] > 60+size[1] || used > 60 {
				t.Errorf("%d lines of scrollback, %d lines in all; want under 60:\n%s", history, used, all)
			}
			if !strings.Contains(screen, "total 31/31 blobs") {
				t.Errorf("the final screen has no total line for 31 blobs:\n%s", screen)
			}
			if size[1] >= 50 && strings.Count(screen, " done ") < 31 {
				t.Errorf("on %d rows every blob should have its own line:\n%s", size[1], screen)
			}
			// The pane is as wide as the terminal: a line that wrapped
			// would show up as a continuation, which tmux marks when
			// asked to join (-J) wrapped lines.
			// Only the progress display counts: the summary line after it
			// names a path and may wrap like any message.
			progressPart := func(s string) int {
				s, _, _ = strings.Cut(s, "pulled ")
				return len(lines(s))
			}
			joined := tm("capture-pane", "-p", "-J", "-t", "p", "-S", "-", "-E", "-")
			if a, j := progressPart(all), progressPart(joined); a != j {
				t.Errorf("%d progress lines wrapped at %d columns:\n%s", a-j, size[0], all)
			}
		})
	}
}

// inTmux runs the shell command line in a tmux session of size[0]
// columns and size[1] rows, with the environment's PATH, HOME, XDG_* and
// DOCKER_CONFIG; "EXIT=status" follows its output. It returns a function
// that runs a tmux command against that session's server, which ends
// with the test.
func inTmux(t *testing.T, work string, env []string, size [2]int, cmdline string) func(args ...string) string {
	t.Helper()
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		t.Fatal("tmux is needed to test the terminal progress display (apt-get install tmux)")
	}
	sock := filepath.Join(work, "tmux.sock")
	tm := func(args ...string) string {
		out, err := exec.Command(tmux, append([]string{"-S", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	var envs strings.Builder
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k == "PATH" || strings.HasPrefix(k, "XDG_") || k == "DOCKER_CONFIG" || k == "HOME" {
			fmt.Fprintf(&envs, "export %s\n", shellQuote(kv))
		}
	}
	script := filepath.Join(work, "run.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"+envs.String()+cmdline+"\necho EXIT=$?\nsleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tm("new-session", "-d", "-x", strconv.Itoa(size[0]), "-y", strconv.Itoa(size[1]), "-s", "p", script)
	t.Cleanup(func() { exec.Command(tmux, "-S", sock, "kill-server").Run() })
	return tm
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
