package main

// What a failed, interrupted or repeated unpack or bundle leaves, and the
// limits, with the built binary.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ocifetch/ocifetch/apply"
	"github.com/ocifetch/ocifetch/internal/testutil"
	"github.com/ocifetch/ocifetch/internal/testutil/hostile"
	"github.com/ocifetch/ocifetch/internal/testutil/testimage"
)

// A gzip bomb and a zstd bomb (small blobs of a 512 MiB file of zeros)
// stop at --max-layer-bytes with too_large, and leave no partial tree and
// no state. Before, there was no such flag and no default limit: a 65 KB
// zstd blob became 2 GiB on disk.
func TestCLIE2EDecompressionBombs(t *testing.T) {
	t.Parallel()
	for _, mt := range []string{ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerZstd} {
		t.Run(mt, func(t *testing.T) {
			// The short tier's bomb is smaller, and so is its limit:
			// four times the limit is over it as surely as 32 times,
			// and compressing the zeros under the race detector is
			// what the test spends its time on.
			limit := testutil.Scale[int64](16<<20, 1<<20)
			ref, _ := ociLayoutBlobs(t, ocispec.ImageConfig{}, bombBlob(t, mt, testutil.Scale[int64](32, 4)*limit))
			work := t.TempDir()
			r := runBuilt(t, cliEnv(t), "unpack", "--json", "--max-layer-bytes", fmt.Sprintf("%dMiB", limit>>20), "--store", filepath.Join(work, "store"), ref, filepath.Join(work, "rootfs"))
			k, msg := exactJSONError(t, r.stdout)
			if r.code != exitVerification || k != "too_large" || !strings.Contains(msg, fmt.Sprintf("limit of %d bytes", limit)) {
				t.Errorf("exit %d kind %q %q", r.code, k, msg)
			}
			if names := dirEntries(work); strings.Join(names, ",") != "store" {
				t.Errorf("left behind: %v", names)
			}
		})
	}
	// The defaults, in the help every user sees.
	r := mustRun(t, cliEnv(t), "unpack", "--help")
	for _, want := range []string{"--max-layer-bytes SIZE", "(default 64GiB)", "--max-total-bytes SIZE", "(default 256GiB)", "--max-layer-entries N", "(default 4000000)", "--state DIR"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("unpack --help lacks %q", want)
		}
	}
}

// bombBlob is a compressed layer of one file of size zeros, streamed
// through the compressor.
func bombBlob(t *testing.T, mediaType string, size int64) layoutBlob {
	t.Helper()
	var blob bytes.Buffer
	var zw io.WriteCloser
	if mediaType == ocispec.MediaTypeImageLayerZstd {
		w, err := zstd.NewWriter(&blob, zstd.WithEncoderLevel(zstd.SpeedFastest))
		if err != nil {
			t.Fatal(err)
		}
		zw = w
	} else {
		w, _ := gzip.NewWriterLevel(&blob, gzip.BestSpeed)
		zw = w
	}
	h := sha256.New()
	tw := tar.NewWriter(io.MultiWriter(zw, h))
	hdr := efile("zeros", "", 0o644).h
	hdr.Size = size
	if err := tw.WriteHeader(&hdr); err != nil {
		t.Fatal(err)
	}
	zero := make([]byte, 1<<20)
	for n := int64(0); n < size; n += int64(len(zero)) {
		tw.Write(zero[:min(int64(len(zero)), size-n)])
	}
	tw.Close()
	zw.Close()
	return layoutBlob{mediaType: mediaType, data: blob.Bytes(), diffID: digest.NewDigest(digest.SHA256, h)}
}

// unpack REF . unpacks into the working directory, its state beside it
// (the parent's .NAME.ocifetch); --state puts it elsewhere, for unpack,
// verify and rebuild alike. Before, "." was refused: its state would have
// been inside it.
func TestCLIE2EUnpackDotAndState(t *testing.T) {
	t.Parallel()
	ref, env, work := oneFileLayout(t, "etc/motd", "hi\n")
	here := filepath.Join(work, "here")
	os.Mkdir(here, 0o755)
	cmd := exec.Command(builtCLI(t), "unpack", "--quiet", "--store", filepath.Join(work, "store"), ref, ".")
	cmd.Env, cmd.Dir = env, here
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("unpack REF .: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(work, ".here.ocifetch", "state.json")); err != nil {
		t.Errorf("state beside .: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(here, "etc/motd")); string(b) != "hi\n" {
		t.Errorf("etc/motd: %q", b)
	}
	cmd = exec.Command(builtCLI(t), "verify", ".")
	cmd.Env, cmd.Dir = env, here
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("verify .: %v\n%s", err, out)
	}

	state := filepath.Join(work, "elsewhere", "state")
	os.MkdirAll(filepath.Dir(state), 0o755)
	rootfs := filepath.Join(work, "rootfs")
	mustRun(t, env, "unpack", "--quiet", "--state", state, "--store", filepath.Join(work, "store"), ref, rootfs)
	if _, err := os.Stat(filepath.Join(work, ".rootfs.ocifetch")); !os.IsNotExist(err) {
		t.Errorf("the default state directory was made too: %v", err)
	}
	mustRun(t, env, "verify", "--state", state, rootfs)
	mustRun(t, env, "rebuild", "--all", "--check", "--state", state, rootfs)
	if r := runBuilt(t, env, "verify", "--json", rootfs); r.code != exitNotFound {
		t.Errorf("verify without --state: exit %d", r.code)
	}
	bundleDir := filepath.Join(work, "bundle")
	bstate := filepath.Join(work, "bstate")
	mustRun(t, env, "bundle", "--quiet", "--state", bstate, "--store", filepath.Join(work, "store"), ref, bundleDir)
	if names := dirEntries(bundleDir); strings.Join(names, ",") != "config.json,rootfs" {
		t.Errorf("bundle with --state holds %v", names)
	}
	mustRun(t, env, "verify", "--state", bstate, filepath.Join(bundleDir, "rootfs"))
}

// A failure before the first byte (resolve, here) creates nothing: no
// target, no state. Before, an empty target directory stayed.
func TestCLIE2EFailedResolveCreatesNothing(t *testing.T) {
	t.Parallel()
	_, layout := ociLayout(t, ocispec.ImageConfig{}, layerOf(t, efile("a", "a", 0o644)))
	work := t.TempDir()
	r := runBuilt(t, cliEnv(t), "unpack", "--json", "--store", filepath.Join(work, "store"), "oci:"+layout+":no-such-tag", filepath.Join(work, "rootfs"))
	if k, _ := exactJSONError(t, r.stdout); k != "not_found" {
		t.Errorf("kind %q", k)
	}
	for _, n := range dirEntries(work) {
		if n != "store" {
			t.Errorf("left behind: %s", n)
		}
	}
	r = runBuilt(t, cliEnv(t), "bundle", "--json", "--store", filepath.Join(work, "store"), "oci:"+layout+":no-such-tag", filepath.Join(work, "bundle"))
	if _, err := os.Lstat(filepath.Join(work, "bundle")); !os.IsNotExist(err) {
		t.Errorf("bundle made its directory: %v", err)
	}
}

// heldRegistry serves an image whose second layer waits until released.
func heldRegistry(t *testing.T) (ref string, reached <-chan struct{}, release func()) {
	reg := hostile.New(t)
	img := testimage.Image(t, 2, "linux", "amd64", "")
	ref = reg.PutImage(t, "app", "v1", img)
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	held, _ := ls[1].Digest()
	r, rel := make(chan struct{}, 1), make(chan struct{})
	var once bool
	reg.Intercept(func(w http.ResponseWriter, req *http.Request, q hostile.Request) bool {
		if q.Kind != hostile.Blob || q.Ref != held.String() {
			return false
		}
		select {
		case r <- struct{}{}:
		default:
		}
		select {
		case <-rel:
		case <-req.Context().Done():
			return true
		}
		return false
	})
	return ref, r, func() {
		if !once {
			once = true
			close(rel)
		}
	}
}

// startHeld starts an unpack that the registry holds in its second layer.
func startHeld(t *testing.T, env []string, reached <-chan struct{}, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(builtCLI(t), args...)
	cmd.Env = env
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	select {
	case <-reached:
	case <-time.After(30 * time.Second):
		t.Fatal("the unpack never asked for layer 2")
	}
	time.Sleep(300 * time.Millisecond) // layer 1 applied, layer 2 waiting
	return cmd
}

// SIGINT mid-unpack: exit 130, kind canceled, and the target is as it was
// (it did not exist: it does not), the state gone. Before, the target
// stayed with its state saying "applying".
func TestCLIE2EInterruptedUnpackLeavesNothing(t *testing.T) {
	t.Parallel()
	ref, reached, release := heldRegistry(t)
	defer release()
	env := cliEnv(t)
	work := t.TempDir()
	cmd := startHeld(t, env, reached, "unpack", "--quiet", "--store", filepath.Join(work, "store"), ref, filepath.Join(work, "rootfs"))
	cmd.Process.Signal(syscall.SIGINT)
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 130 {
		t.Errorf("exit %d, want 130", code)
	}
	if names := dirEntries(work); strings.Join(names, ",") != "store" {
		t.Errorf("after SIGINT: %v", names)
	}
}

// SIGKILL mid-unpack into a target given as a symbolic link: the rerun
// empties the directory behind the link (the link stays a link) and
// completes. Before, the rerun replaced the link by a real directory,
// orphaning what was behind it.
func TestCLIE2EKilledUnpackRerunThroughLink(t *testing.T) {
	t.Parallel()
	ref, reached, release := heldRegistry(t)
	env := cliEnv(t)
	work := t.TempDir()
	real, link := filepath.Join(work, "real"), filepath.Join(work, "link")
	os.Mkdir(real, 0o755)
	os.Symlink("real", link)
	cmd := startHeld(t, env, reached, "unpack", "--quiet", "--store", filepath.Join(work, "store"), ref, link)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	st, err := apply.Status(apply.DefaultStateDir(link))
	if err != nil || st.Status != apply.StatusApplying {
		t.Fatalf("after SIGKILL: %+v %v", st, err)
	}
	os.WriteFile(filepath.Join(real, "left-over"), nil, 0o644)
	release()
	mustRun(t, env, "unpack", "--quiet", "--store", filepath.Join(work, "store"), ref, link)
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the target link is no longer a link: %v %v", fi, err)
	}
	if _, err := os.Lstat(filepath.Join(real, "left-over")); !os.IsNotExist(err) {
		t.Errorf("the rerun did not empty the target: %v", err)
	}
	mustRun(t, env, "verify", link)
	mustRun(t, env, "rebuild", "--all", "--check", link)
}

// A bundle whose image user is missing from its /etc/passwd fails and
// says how to finish it; once the user is added, running bundle again
// writes config.json without unpacking again. Before, the rerun was
// refused: the rootfs held a complete unpack.
func TestCLIE2EBundleRerunFinishes(t *testing.T) {
	t.Parallel()
	ref, _ := ociLayout(t, ocispec.ImageConfig{User: "ghost", Cmd: []string{"/bin/app"}},
		layerOf(t, efile("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644), efile("etc/group", "root:x:0:\n", 0o644)))
	env := cliEnv(t)
	work := t.TempDir()
	dir := filepath.Join(work, "bundle")
	r := runBuilt(t, env, "bundle", "--json", "--store", filepath.Join(work, "store"), ref, dir)
	k, msg := exactJSONError(t, r.stdout)
	if k != "not_found" || !strings.Contains(msg, "ghost") || !strings.Contains(msg, "run bundle again") {
		t.Errorf("bundle with a missing user: kind %q %q", k, msg)
	}
	f, _ := os.OpenFile(filepath.Join(dir, "rootfs/etc/passwd"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("ghost:x:4242:4242::/:/bin/sh\n")
	f.Close()
	mustRun(t, env, "bundle", "--quiet", "--store", filepath.Join(work, "store"), ref, dir)
	var spec rspec.Spec
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil || json.Unmarshal(b, &spec) != nil || spec.Process == nil || spec.Process.User.UID != 4242 {
		t.Fatalf("config.json after the rerun: %v\n%s", err, b)
	}
	// A third run has nothing to finish.
	r = runBuilt(t, env, "bundle", "--json", "--store", filepath.Join(work, "store"), ref, dir)
	if k, msg := exactJSONError(t, r.stdout); k != "invalid_argument" || !strings.Contains(msg, "complete bundle") {
		t.Errorf("bundle of a finished bundle: %q %q", k, msg)
	}
}

// A bundle cut short is finished by running the same command again, DIR
// given relative. Before, the rerun refused DIR as not empty: its own
// state directory, compared relative with the absolute default path, was
// taken for foreign content.
func TestCLIE2EBundleRerunRelativeDir(t *testing.T) {
	t.Parallel()
	ref, env, work := oneFileLayout(t, "etc/motd", "hi\n")
	store := filepath.Join(work, "store")
	if r := runIn(t, env, work, "bundle", "--quiet", "--store", store, ref, "b"); r.code != 0 {
		t.Fatalf("bundle: exit %d %s", r.code, r.stderr)
	}
	// What a SIGKILL during the apply leaves: the state says applying,
	// the rootfs is half written, no config.json.
	statePath := filepath.Join(work, "b", ".rootfs.ocifetch", "state.json")
	b, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(statePath, []byte(strings.Replace(string(b), `"complete"`, `"applying"`, 1)), 0o644)
	os.WriteFile(filepath.Join(work, "b", "rootfs", "half-written"), []byte("x"), 0o644)
	os.Remove(filepath.Join(work, "b", "config.json"))
	if r := runIn(t, env, work, "bundle", "--quiet", "--store", store, ref, "b"); r.code != 0 {
		t.Fatalf("bundle rerun: exit %d %s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(work, "b", "config.json")); err != nil {
		t.Errorf("config.json after the rerun: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(work, "b", "rootfs", "half-written")); !os.IsNotExist(err) {
		t.Errorf("the rerun did not empty the rootfs: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(work, "b", "rootfs", "etc", "motd")); string(got) != "hi\n" {
		t.Errorf("etc/motd: %q", got)
	}
}

// A tree unpacked by the previous state format: verify says to upgrade,
// verify --upgrade does it from the layers the tree rebuilds, and the tree
// then verifies and rebuilds. Before, the old state was trusted as it
// was.
func TestCLIE2EVerifyUpgradesFormat1(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../apply/testdata/state-v1.tar.gz")
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "v1")
	os.Mkdir(dir, 0o755)
	if _, err := apply.ApplyLayer(t.Context(), dir, zr); err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(dir, "rootfs")
	env := cliEnv(t)
	r := runBuilt(t, env, "verify", "--json", rootfs)
	if k, msg := exactJSONError(t, r.stdout); k != "invalid_argument" || !strings.Contains(msg, "--upgrade") {
		t.Errorf("verify of a format 1 tree: exit %d %q %q", r.code, k, msg)
	}
	r = mustRun(t, env, "verify", "--upgrade", rootfs)
	if !strings.Contains(r.stderr, "upgraded") || r.stdout != "" {
		t.Errorf("verify --upgrade: %q %q", r.stdout, r.stderr)
	}
	r = mustRun(t, env, "rebuild", "--all", "--check", rootfs)
	if strings.Count(r.stdout, " ok ") != 2 {
		t.Errorf("rebuild after the upgrade:\n%s", r.stdout)
	}
	for i, n := range []string{"1.tar", "2.tar"} {
		want, _ := os.ReadFile(filepath.Join(dir, "layers", n))
		out := filepath.Join(dir, "out-"+n)
		mustRun(t, env, "rebuild", "--layer", string(rune('1'+i)), "-o", out, rootfs)
		if got, _ := os.ReadFile(out); !bytes.Equal(got, want) {
			t.Errorf("layer %d rebuilt differently", i+1)
		}
	}
}
