package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ocifetch/ocifetch/internal/testutil/testregistry"
)

// Off a terminal, "unpack" and "bundle" report progress as plain lines on
// stderr (no terminal control characters), one per blob state change,
// ending with a summary line; --quiet silences stderr; stdout holds only
// the manifest digest either way.
func TestCLIE2EUnpackBundleProgress(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	demo := pushDemo(t, reg.Host+"/e2e/progress:v1")
	want := demo.facts(t, "linux/amd64")
	env := cliEnv(t)
	digestLine := want.manifest.String() + "\n"
	blobs := map[string]bool{short(want.config.String()): true}
	for _, l := range want.layers {
		blobs[short(l.String())] = true
	}

	unpackSummary := regexp.MustCompile(`^unpacked ` + regexp.QuoteMeta(demo.ref) + ` \(` + want.manifest.String() + `\): 2 layers, \d+ files, \d+(\.\d)? (B|KiB) in \S+ into (.+)$`)
	bundleSummary := regexp.MustCompile(`^bundle (.+) ready in \S+ \(` + regexp.QuoteMeta(demo.ref) + `\)$`)
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
