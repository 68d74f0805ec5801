package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ocifetch/ocifetch/internal/testutil/testregistry"
)

// readmeBlocks returns the shell blocks of README.md marked
// "<!-- readme-test: NAME -->", each as its commands (continuation lines
// joined).
func readmeBlocks(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)<!-- readme-test: ([a-z]+) -->\\s*```sh\\n(.*?)```")
	out := map[string][]string{}
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		var cmds []string
		for _, l := range strings.Split(strings.ReplaceAll(m[2], "\\\n", " "), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				cmds = append(cmds, l)
			}
		}
		out[m[1]] = cmds
	}
	return out
}

// runShell runs one command line of the README as a shell runs it, in
// dir, with the binary on PATH under its name.
func runShell(t *testing.T, env []string, dir, line string) cliRun {
	t.Helper()
	cmd := exec.Command("sh", "-c", line)
	cmd.Env, cmd.Dir = env, dir
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := cliRun{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

// The README's copy-paste sessions work as printed, run by a shell as a
// new user would, with the binary installed under its name: the offline
// session on the repository's layout, and the store walkthrough (pull,
// images, unpack --pull never with the registry stopped, verify, rm, gc)
// against a registry standing in for docker.io.
func TestREADMESessions(t *testing.T) {
	t.Parallel()
	blocks := readmeBlocks(t)
	if len(blocks["layout"]) < 4 || len(blocks["store"]) != 6 {
		t.Fatalf("README blocks: %q", blocks)
	}
	binDir := t.TempDir()
	if err := os.Symlink(builtCLI(t), filepath.Join(binDir, prog)); err != nil {
		t.Fatal(err)
	}
	env := []string{}
	for _, kv := range cliEnv(t) {
		if k, v, _ := strings.Cut(kv, "="); k == "PATH" {
			kv = "PATH=" + binDir + ":" + v
		}
		env = append(env, kv)
	}
	env = append(env, "HOME="+t.TempDir())

	t.Run("layout", func(t *testing.T) {
		dir := t.TempDir()
		repo, _ := filepath.Abs("../..")
		if err := os.Symlink(filepath.Join(repo, "testdata"), filepath.Join(dir, "testdata")); err != nil {
			t.Fatal(err)
		}
		var all string
		for _, line := range blocks["layout"] {
			r := runShell(t, env, dir, line)
			if r.code != 0 {
				t.Fatalf("%s: exit %d\n%s%s", line, r.code, r.stdout, r.stderr)
			}
			all += r.stdout
		}
		if !strings.Contains(all, "built for arm64") {
			t.Errorf("the session did not show the arm64 motd:\n%s", all)
		}
	})

	t.Run("store", func(t *testing.T) {
		reg := testregistry.Start(t)
		ref := reg.Host + "/library/alpine:3.20"
		pushDemo(t, ref)
		dir := t.TempDir()
		for i, line := range blocks["store"] {
			line = strings.ReplaceAll(line, "docker.io/library/alpine:3.20", ref)
			if strings.Contains(line, "--pull never") {
				reg.Stop() // from here on, no registry
			}
			r := runShell(t, env, dir, line)
			if r.code != 0 {
				t.Fatalf("%s: exit %d\n%s%s", line, r.code, r.stdout, r.stderr)
			}
			switch i {
			case 1:
				if !strings.Contains(r.stdout, ref) || !strings.Contains(r.stdout, "linux/arm64/v8") {
					t.Errorf("images after the pull:\n%s", r.stdout)
				}
			case 3:
				if r.stdout != "" {
					t.Errorf("verify of the fresh unpack: %q", r.stdout)
				}
			case 5:
				if !strings.Contains(r.stderr, "removed ") || len(lines(r.stdout)) < 4 {
					t.Errorf("gc after rm removed nothing: %q %q", r.stdout, r.stderr)
				}
			}
		}
		if b, err := os.ReadFile(filepath.Join(dir, "alpine-rootfs", "etc", "motd")); err != nil || string(b) != "built for arm64\n" {
			t.Errorf("the offline unpack: %q %v", b, err)
		}
		if r := runShell(t, env, dir, prog+" images"); len(lines(r.stdout)) != 1 {
			t.Errorf("images after rm and gc:\n%s", r.stdout)
		}
	})
}
