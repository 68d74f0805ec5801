package main

// End-to-end tests of "pull" and "gc": the built binary, run as a user
// runs it, against a real registry process, with the fault proxy between
// them where a test needs faults or counts.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/internal/testutil"
	"github.com/ocifetch/ocifetch/internal/testutil/faultproxy"
	"github.com/ocifetch/ocifetch/internal/testutil/testimage"
	"github.com/ocifetch/ocifetch/internal/testutil/testregistry"
)

func TestMain(m *testing.M) {
	// The end-to-end tests spend their time waiting for the processes
	// they start (this command, registries, peer tools), not computing:
	// on two cores the short run took 73 s of CPU in 107 s of wall time
	// at -parallel 6. Run 4 at once rather than one per CPU.
	testutil.WaitingParallel(4)
	os.Exit(testregistry.Main(m))
}

// builtCLI builds the command once for the test binary, as a user would
// build it, and returns its path.
// $OCIFETCH_TEST_CLI names a binary to test instead (another version's,
// to see which tests it fails).
func builtCLI(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("OCIFETCH_TEST_CLI"); bin != "" {
		return bin
	}
	return testutil.Build(t, ".", prog)
}

// cliEnv is the environment the binary runs in: no Docker config or cache
// of the developer's.
func cliEnv(t *testing.T) []string {
	t.Helper()
	var env []string
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "DOCKER_CONFIG", "REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME":
		default:
			env = append(env, kv)
		}
	}
	return append(env, "DOCKER_CONFIG="+t.TempDir(), "XDG_RUNTIME_DIR="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir(), "XDG_CACHE_HOME="+t.TempDir())
}

// cliRun is one finished run of the binary.
type cliRun struct {
	code           int
	stdout, stderr string
}

// runBuilt runs the built binary to completion (at most 30 s).
func runBuilt(t *testing.T, env []string, args ...string) cliRun {
	t.Helper()
	res, err := execCLI(builtCLI(t), env, args...)
	if err != nil {
		t.Fatalf("running %v: %v", args, err)
	}
	return res
}

// execCLI runs bin to completion (at most 30 s). It does not touch a
// testing.T, so goroutines may call it; err is only for a binary that
// could not run, an exit status is in the result.
func execCLI(bin string, env []string, args ...string) (cliRun, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := cliRun{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ctx.Err() == nil {
		res.code, err = ee.ExitCode(), nil
	}
	return res, err
}

// mustRun runs the binary and fails the test unless it exits 0.
func mustRun(t *testing.T, env []string, args ...string) cliRun {
	t.Helper()
	r := runBuilt(t, env, args...)
	if r.code != 0 {
		t.Fatalf("%v: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return r
}

// e2eImage is what a test pushed: the exact bytes a store must hold.
type e2eImage struct {
	Manifest, Config []byte
	Layers           [][]byte
}

func (im e2eImage) digest() digest.Digest { return digest.FromBytes(im.Manifest) }

// blobs returns the digests of every blob of the image.
func (im e2eImage) blobs() []digest.Digest {
	out := []digest.Digest{digest.FromBytes(im.Manifest), digest.FromBytes(im.Config)}
	for _, l := range im.Layers {
		out = append(out, digest.FromBytes(l))
	}
	return out
}

func (im e2eImage) layerBytes() (n int64) {
	for _, l := range im.Layers {
		n += int64(len(l))
	}
	return n
}

// pushSized pushes a linux/amd64 OCI image whose gzip layers each hold a
// file of the given size of incompressible, seed-determined bytes.
func pushSized(t *testing.T, ref string, seed uint64, sizes []int, opts ...remote.Option) e2eImage {
	t.Helper()
	var im e2eImage
	for i, size := range sizes {
		data := testutil.RandomBytes(rand.New(rand.NewPCG(seed, uint64(i))), size)
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.NoCompression)
		tw := tar.NewWriter(zw)
		if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("f%d", i), Mode: 0o644, Size: int64(size), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
		tw.Close()
		zw.Close()
		im.Layers = append(im.Layers, buf.Bytes())
	}
	img := testimage.FromLayers(t, im.Layers, "linux", "amd64", "")
	testimage.PushImage(t, ref, img, opts...)
	im.Manifest, _ = img.RawManifest()
	im.Config, _ = img.RawConfigFile()
	return im
}

// writeAuthfile writes a Docker config file with credentials for hosts.
func writeAuthfile(t *testing.T, user, pass string, hosts ...string) string {
	t.Helper()
	auths := map[string]any{}
	for _, h := range hosts {
		auths[h] = map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))}
	}
	b, _ := json.Marshal(map[string]any{"auths": auths})
	p := filepath.Join(t.TempDir(), "auth.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// storeState is what checkStoreValid found.
type storeState struct {
	blobs    map[digest.Digest]bool
	index    *ocispec.Index // nil before the store was initialized
	partials map[digest.Digest]int64
}

// checkStoreValid checks the invariants a store keeps whenever a pull is
// stopped, SIGKILL included: every file under blobs/sha256 hashes to its
// name (no partial blob is ever listed there), oci-layout and index.json
// parse when they exist, index.json exists once anything is in blobs/,
// and everything an index.json entry references (manifest, config,
// layers; for an index, each manifest it lists and theirs) is present,
// every entry typed. It returns what it saw.
func checkStoreValid(t *testing.T, dir string) storeState {
	t.Helper()
	st := storeState{blobs: map[digest.Digest]bool{}, partials: map[digest.Digest]int64{}}
	if b, err := os.ReadFile(filepath.Join(dir, "oci-layout")); err == nil {
		var l ocispec.ImageLayout
		if err := json.Unmarshal(b, &l); err != nil || l.Version != ocispec.ImageLayoutVersion {
			t.Errorf("oci-layout %q: %v", b, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		t.Error(err)
	}
	ents, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", e.Name()))
		if err != nil {
			t.Errorf("blobs/sha256/%s: %v", e.Name(), err)
			continue
		}
		if got := digest.FromBytes(b); got.Encoded() != e.Name() {
			t.Errorf("blobs/sha256/%s holds %d bytes hashing to %s", e.Name(), len(b), got)
		}
		st.blobs[digest.NewDigestFromEncoded(digest.SHA256, e.Name())] = true
	}
	if pents, err := os.ReadDir(filepath.Join(dir, ".ocifetch", "partial", "sha256")); err == nil {
		for _, e := range pents {
			if info, err := e.Info(); err == nil {
				st.partials[digest.NewDigestFromEncoded(digest.SHA256, e.Name())] = info.Size()
			}
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if errors.Is(err, os.ErrNotExist) {
		if len(st.blobs) > 0 {
			t.Errorf("%d blobs but no index.json", len(st.blobs))
		}
		return st
	}
	if err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil || idx.SchemaVersion != 2 {
		t.Errorf("index.json does not parse (%v): %q", err, b)
		return st
	}
	st.index = &idx
	var check func(m ocispec.Descriptor, depth int)
	check = func(m ocispec.Descriptor, depth int) {
		if !st.blobs[m.Digest] {
			t.Errorf("index.json references %s, which is missing", m.Digest)
			return
		}
		if m.MediaType == "" {
			t.Errorf("index.json reaches %s with no media type", m.Digest)
		}
		mb, _ := os.ReadFile(filepath.Join(dir, "blobs", "sha256", m.Digest.Encoded()))
		var doc struct {
			ocispec.Manifest
			Manifests []ocispec.Descriptor `json:"manifests"`
		}
		if err := json.Unmarshal(mb, &doc); err != nil {
			t.Errorf("document %s: %v", m.Digest, err)
			return
		}
		if doc.Manifests != nil && depth < 8 {
			// An index recorded whole: everything it lists is kept.
			for _, c := range doc.Manifests {
				check(c, depth+1)
			}
			return
		}
		for _, d := range append([]ocispec.Descriptor{doc.Config}, doc.Layers...) {
			if !st.blobs[d.Digest] {
				t.Errorf("index.json reaches %s through %s, and it is missing", d.Digest, m.Digest)
			}
		}
	}
	for _, m := range idx.Manifests {
		check(m, 0)
	}
	return st
}

// namedManifest returns the digest index.json records under name.
func namedManifest(st storeState, name string) digest.Digest {
	if st.index == nil {
		return ""
	}
	for _, m := range st.index.Manifests {
		if m.Annotations[ocispec.AnnotationRefName] == name {
			return m.Digest
		}
	}
	return ""
}

func digestSet(ds ...digest.Digest) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.String()
	}
	slices.Sort(out)
	return out
}

// gcOutput is "gc --json".
type gcOutput struct {
	Store    string   `json:"store"`
	Removed  []string `json:"removed"`
	Partials []string `json:"partials"`
	Bytes    int64    `json:"bytes"`
}

func runGC(t *testing.T, env []string, store string) gcOutput {
	t.Helper()
	r := mustRun(t, env, "gc", "--store", store, "--json")
	var out gcOutput
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("gc --json: %v\n%s", err, r.stdout)
	}
	if out.Store != store {
		t.Errorf("gc store %q, want %q", out.Store, store)
	}
	slices.Sort(out.Removed)
	return out
}

// "pull --json" from a token-auth registry, then gc: gc keeps what the
// image needs, and removes what a re-tagged or dropped image leaves behind.
func TestE2EPullJSONThenGC(t *testing.T) {
	t.Parallel()
	const user, pass = "e2e", "pa55w0rd"
	reg := testregistry.Start(t, testregistry.WithTokenAuth(user, pass))
	push := remote.WithAuth(&authn.Basic{Username: user, Password: pass})
	ref := reg.Host + "/e2e/app:v1"
	first := pushSized(t, ref, 10, []int{200_000, 50_000, 120_000}, push)
	env := cliEnv(t)
	authfile := writeAuthfile(t, user, pass, reg.Host)
	store := t.TempDir()

	r := mustRun(t, env, "pull", "--store", store, "--json", "--authfile", authfile, "--allow-token-host", reg.TokenHost, ref)
	if r.stderr != "" {
		t.Errorf("pull --json wrote to stderr: %q", r.stderr)
	}
	var out pullOutput
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("pull --json output: %v\n%s", err, r.stdout)
	}
	if out.Reference != ref || out.Name != ref || out.Store != store || out.Platform != "linux/amd64" ||
		out.Manifest.Digest != first.digest().String() || out.Manifest.Size != int64(len(first.Manifest)) ||
		out.Config.Digest != digest.FromBytes(first.Config).String() || out.Downloaded != first.layerBytes() {
		t.Errorf("pull --json: %s", r.stdout)
	}
	if len(out.Layers) != len(first.Layers) {
		t.Fatalf("%d layers in the output, pushed %d", len(out.Layers), len(first.Layers))
	}
	for i, l := range out.Layers {
		if l.Digest != digest.FromBytes(first.Layers[i]).String() || l.Size != int64(len(first.Layers[i])) || !strings.HasPrefix(l.DiffID, "sha256:") {
			t.Errorf("layer %d: %+v", i, l)
		}
	}
	st := checkStoreValid(t, store)
	if namedManifest(st, ref) != first.digest() || len(st.blobs) != len(first.blobs()) {
		t.Fatalf("store after pull: %d blobs, %s named %s", len(st.blobs), namedManifest(st, ref), ref)
	}
	for i, l := range first.Layers {
		if b, _ := os.ReadFile(filepath.Join(store, "blobs", "sha256", digest.FromBytes(l).Encoded())); !bytes.Equal(b, l) {
			t.Errorf("layer %d differs from what was pushed", i)
		}
	}

	// Everything is reachable: gc removes nothing.
	if g := runGC(t, env, store); len(g.Removed) != 0 || len(g.Partials) != 0 || g.Bytes != 0 {
		t.Fatalf("gc of a fresh store removed %+v", g)
	}
	if st2 := checkStoreValid(t, store); len(st2.blobs) != len(st.blobs) {
		t.Fatalf("gc changed the store: %d blobs, had %d", len(st2.blobs), len(st.blobs))
	}

	// Another image pushed under the tag and pulled over the name: the
	// first image's blobs are unreachable now, and only they go.
	second := pushSized(t, ref, 11, []int{80_000, 90_000}, push)
	r = mustRun(t, env, "pull", "--store", store, "--quiet", "--authfile", authfile, "--allow-token-host", reg.TokenHost, ref)
	if r.stdout != second.digest().String()+"\n" {
		t.Fatalf("second pull printed %q, want %s", r.stdout, second.digest())
	}
	g := runGC(t, env, store)
	if want := digestSet(first.blobs()...); !slices.Equal(g.Removed, want) {
		t.Errorf("gc removed %v, want the first image's %v", g.Removed, want)
	}
	if want := first.layerBytes() + int64(len(first.Manifest)+len(first.Config)); g.Bytes != want {
		t.Errorf("gc freed %d bytes, want %d", g.Bytes, want)
	}
	st = checkStoreValid(t, store)
	if namedManifest(st, ref) != second.digest() || len(st.blobs) != len(second.blobs()) {
		t.Fatalf("store after gc: %d blobs, %s named %s", len(st.blobs), namedManifest(st, ref), ref)
	}

	// index.json rewritten without the image: gc empties blobs/, and
	// prints what it removed, one digest a line.
	empty := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`
	if err := os.WriteFile(filepath.Join(store, "index.json"), []byte(empty), 0o644); err != nil {
		t.Fatal(err)
	}
	r = mustRun(t, env, "gc", "--store", store)
	removed := strings.Fields(r.stdout)
	slices.Sort(removed)
	if want := digestSet(second.blobs()...); !slices.Equal(removed, want) {
		t.Errorf("gc printed %v, want %v", removed, want)
	}
	if !strings.Contains(r.stderr, fmt.Sprintf("removed %d blobs", len(second.blobs()))) {
		t.Errorf("gc summary: %q", r.stderr)
	}
	if st := checkStoreValid(t, store); len(st.blobs) != 0 {
		t.Errorf("%d blobs left after gc of an empty index", len(st.blobs))
	}
}

// SIGKILL at random moments never leaves a store that lies: after every
// kill the store is valid, partial files hold a true prefix of their blob,
// and a pull without faults then succeeds, resuming from those prefixes.
func TestE2EPullSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	reg := testregistry.Shared(t)
	ref0 := reg.Host + "/e2e/killme:v1"
	img := pushSized(t, ref0, 12, []int{300_000, 700_000, 1_100_000})
	p := faultproxy.New(t, reg.URL)
	ref := p.Host() + "/e2e/killme:v1"
	layerByDigest := map[digest.Digest][]byte{}
	for _, l := range img.Layers {
		layerByDigest[digest.FromBytes(l)] = l
	}
	// About 0.8 s per pull: the largest layer at 1.6 MB/s after a short
	// wait for each answer. Kills land within 0.9 s of the start, so most
	// hit a running pull, anywhere from resolving to recording.
	slow := []faultproxy.Rule{
		{Match: faultproxy.BlobGETs, Faults: []faultproxy.Fault{faultproxy.Delay(50 * time.Millisecond), faultproxy.Trickle(16<<10, 10*time.Millisecond)}},
	}
	const maxDelay = 900 * time.Millisecond
	env := cliEnv(t)

	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("OCIFETCH_KILL_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		seed = n
	}
	t.Logf("kill delays from seed %d (set OCIFETCH_KILL_SEED to replay)", seed)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))

	trials := testutil.Scale(15, 3)
	var killed, killedMidRun, resumedBytes int
	for trial := 0; trial < trials; trial++ {
		store := t.TempDir()
		kills := 1 + rng.IntN(2)
		for k := 0; k < kills; k++ {
			killed++
			delay := time.Duration(rng.Int64N(int64(maxDelay)))
			what := fmt.Sprintf("trial %d kill %d after %s (seed %d)", trial, k, delay, seed)
			p.ClearRules()
			for _, rule := range slow {
				p.Add(rule)
			}
			p.ResetStats()
			fire := time.After(delay)
			if trial == 0 && k == kills-1 {
				// This kill waits for layer bytes instead, so that a
				// final pull resumes a partial file however slowly the
				// loaded machine starts the process.
				fire = whenSent(p, 200_000)
				what = fmt.Sprintf("trial %d kill %d after 200000 bytes (seed %d)", trial, k, seed)
			}
			cmd := exec.Command(builtCLI(t), "pull", "--store", store, "--quiet", ref)
			cmd.Env = env
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			select {
			case err := <-exited:
				// The pull finished before its kill: it must have worked.
				if err != nil || stdout.String() != img.digest().String()+"\n" {
					t.Fatalf("%s: the pull ended on its own with %v\nstdout %q\nstderr %q", what, err, stdout.String(), stderr.String())
				}
			case <-fire:
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
					t.Fatal(err)
				}
				err := <-exited
				var ee *exec.ExitError
				if errors.As(err, &ee) && ee.ProcessState.Sys().(syscall.WaitStatus).Signaled() {
					killedMidRun++
				} else if err != nil {
					t.Fatalf("%s: %v\n%s", what, err, stderr.String())
				}
			}
			st := checkStoreValid(t, store)
			if t.Failed() {
				t.Fatalf("%s: the store is not valid", what)
			}
			for d, n := range st.partials {
				l, ok := layerByDigest[d]
				if !ok || n > int64(len(l)) {
					t.Fatalf("%s: partial file %s of %d bytes belongs to no layer", what, d, n)
				}
				b, _ := os.ReadFile(filepath.Join(store, ".ocifetch", "partial", "sha256", d.Encoded()))
				if !bytes.Equal(b, l[:len(b)]) {
					t.Fatalf("%s: partial file of %s is not a prefix of the layer", what, d)
				}
			}
		}

		// The pull without faults resumes what the kills left and
		// downloads exactly the rest.
		p.ClearRules()
		st := checkStoreValid(t, store)
		var want int64
		for d, l := range layerByDigest {
			if !st.blobs[d] {
				want += int64(len(l)) - st.partials[d]
				resumedBytes += int(st.partials[d])
			}
		}
		r := runBuilt(t, env, "pull", "--store", store, "--json", ref)
		what := fmt.Sprintf("trial %d final pull (seed %d)", trial, seed)
		if r.code != 0 {
			t.Fatalf("%s: exit %d\n%s%s", what, r.code, r.stdout, r.stderr)
		}
		var out pullOutput
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
			t.Fatalf("%s: %v\n%s", what, err, r.stdout)
		}
		if out.Manifest.Digest != img.digest().String() || out.Downloaded != want {
			t.Errorf("%s: manifest %s, downloaded %d bytes, want %s and %d", what, out.Manifest.Digest, out.Downloaded, img.digest(), want)
		}
		st = checkStoreValid(t, store)
		if namedManifest(st, ref) != img.digest() || len(st.partials) != 0 {
			t.Errorf("%s: index.json names %s, %d partial files left", what, namedManifest(st, ref), len(st.partials))
		}
		for d, l := range layerByDigest {
			if b, _ := os.ReadFile(filepath.Join(store, "blobs", "sha256", d.Encoded())); !bytes.Equal(b, l) {
				t.Errorf("%s: layer %s differs from what was pushed", what, d)
			}
		}
	}
	t.Logf("%d of %d kills landed while a pull ran; final pulls resumed %d bytes from partial files", killedMidRun, killed, resumedBytes)
	if killedMidRun < killed/2 {
		t.Errorf("only %d kills landed mid-pull: the timing no longer tests anything", killedMidRun)
	}
	if resumedBytes == 0 {
		t.Error("no final pull resumed a partial file")
	}
}

// whenSent fires once p has sent n bytes (or after a minute, when the
// test has failed anyway).
func whenSent(p *faultproxy.Proxy, n int64) <-chan time.Time {
	c := make(chan time.Time, 1)
	go func() {
		for deadline := time.Now().Add(time.Minute); p.BytesSent() < n && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		c <- time.Now()
	}()
	return c
}

// Two processes pulling one image into one store at once both succeed,
// and each layer crosses the network once.
func TestE2ETwoProcessesPullOneStore(t *testing.T) {
	t.Parallel()
	reg := testregistry.Shared(t)
	img := pushSized(t, reg.Host+"/e2e/shared:v1", 13, []int{400_000, 250_000, 600_000})
	p := faultproxy.New(t, reg.URL)
	// Slow enough (~0.3 s for the largest layer) that the two overlap.
	p.Add(faultproxy.Rule{Match: faultproxy.BlobGETs, Faults: []faultproxy.Fault{faultproxy.Trickle(32<<10, 15*time.Millisecond)}})
	ref := p.Host() + "/e2e/shared:v1"
	env := cliEnv(t)
	store := t.TempDir()

	bin := builtCLI(t)
	var wg sync.WaitGroup
	runs := make([]cliRun, 2)
	errs := make([]error, 2)
	for i := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runs[i], errs[i] = execCLI(bin, env, "pull", "--store", store, "--quiet", ref)
		}()
	}
	wg.Wait()
	for i, r := range runs {
		if errs[i] != nil || r.code != 0 || r.stdout != img.digest().String()+"\n" || r.stderr != "" {
			t.Errorf("process %d: %v, exit %d stdout %q stderr %q", i, errs[i], r.code, r.stdout, r.stderr)
		}
	}
	// The processes may be done with a response before the proxy has
	// logged it.
	var log []faultproxy.Entry
	for deadline := time.Now().Add(5 * time.Second); int64(len(log)) != p.Requests(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the proxy logged %d of %d requests", len(log), p.Requests())
		}
		log = p.Log()
	}
	for _, l := range img.Layers {
		d := digest.FromBytes(l)
		var gets []faultproxy.Entry
		for _, e := range log {
			if e.Method == http.MethodGet && strings.HasSuffix(e.Path, "/blobs/"+d.String()) {
				gets = append(gets, e)
			}
		}
		if len(gets) != 1 || gets[0].Status != http.StatusOK || gets[0].Bytes != int64(len(l)) {
			t.Errorf("layer %s was asked of the registry %d times: %+v", d, len(gets), gets)
		}
		if b, _ := os.ReadFile(filepath.Join(store, "blobs", "sha256", d.Encoded())); !bytes.Equal(b, l) {
			t.Errorf("layer %s differs from what was pushed", d)
		}
	}
	st := checkStoreValid(t, store)
	if st.index == nil || len(st.index.Manifests) != 1 || namedManifest(st, ref) != img.digest() {
		t.Errorf("index.json after two pulls: %+v", st.index)
	}
}

// progressLine is one plain progress line: short digest, state, bytes.
// progressExtra matches the other plain progress lines: the summary
// printed every five seconds while transfers run, and one line per layer
// applied.
var progressExtra = regexp.MustCompile(`^(progress: .+|layer \d+/\d+ applied: \d+ entries, .+)$`)

var progressLine = regexp.MustCompile(`^([0-9a-f]{12}) (waiting|downloading|retrying|verifying|done|cached|failed) (\d+(?:\.\d)? (?:B|[KMGTPE]iB))/(\d+(?:\.\d)? (?:B|[KMGTPE]iB))(: .+)?$`)

// Off a terminal, progress is plain lines on stderr, one per state
// change; --quiet prints none; stdout holds only the digest either way.
func TestE2EPullProgressOutput(t *testing.T) {
	t.Parallel()
	reg := testregistry.Shared(t)
	ref := reg.Host + "/e2e/pull-progress:v1"
	img := pushSized(t, ref, 14, []int{300_000, 40_000})
	env := cliEnv(t)
	want := img.digest().String() + "\n"

	// parse checks every line and returns each blob's states in order.
	parse := func(t *testing.T, stderr string) map[string][]string {
		t.Helper()
		if strings.ContainsAny(stderr, "\x1b\r") {
			t.Fatalf("terminal control characters in non-terminal output: %q", stderr)
		}
		lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
		if len(lines) < 2 || !strings.HasPrefix(lines[len(lines)-1], "pulled "+ref+" ("+img.digest().String()+"): 2 layers") {
			t.Fatalf("no summary line at the end:\n%s", stderr)
		}
		states := map[string][]string{}
		for _, line := range lines[:len(lines)-1] {
			if progressExtra.MatchString(line) {
				continue
			}
			m := progressLine.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("not a progress line: %q\n%s", line, stderr)
			}
			short, state := m[1], m[2]
			if s := states[short]; len(s) > 0 && s[len(s)-1] == state {
				t.Errorf("two lines in a row say %s %s: one line per state change", short, state)
			}
			states[short] = append(states[short], state)
			if d := shortOf(t, img, short); d != nil && m[4] != humanBytes(int64(len(d))) {
				t.Errorf("line %q: total %s, want %s", line, m[4], humanBytes(int64(len(d))))
			}
		}
		return states
	}

	store := t.TempDir()
	r := mustRun(t, env, "pull", "--store", store, ref)
	if r.stdout != want {
		t.Fatalf("stdout %q, want only the digest", r.stdout)
	}
	states := parse(t, r.stderr)
	for _, l := range img.Layers {
		s := states[short(digest.FromBytes(l).String())]
		if !slices.Contains(s, "downloading") || s[len(s)-1] != "done" {
			t.Errorf("layer %s went through %v, want downloading … done", digest.FromBytes(l), s)
		}
	}
	if s := states[short(digest.FromBytes(img.Config).String())]; len(s) == 0 || s[len(s)-1] != "done" {
		t.Errorf("config states %v", s)
	}
	if len(states) != 3 {
		t.Errorf("progress for %d blobs, want the config and 2 layers: %v", len(states), states)
	}

	// Pulled again: the layers are cached, and say so.
	r = mustRun(t, env, "pull", "--store", store, ref)
	states = parse(t, r.stderr)
	for _, l := range img.Layers {
		if s := states[short(digest.FromBytes(l).String())]; len(s) == 0 || s[len(s)-1] != "cached" || slices.Contains(s, "downloading") {
			t.Errorf("second pull: layer %s went through %v, want cached", digest.FromBytes(l), s)
		}
	}
	if r.stdout != want {
		t.Fatalf("stdout %q, want only the digest", r.stdout)
	}

	// --quiet, into a new store so there is something to report.
	r = mustRun(t, env, "pull", "--store", t.TempDir(), "--quiet", ref)
	if r.stderr != "" || r.stdout != want {
		t.Errorf("--quiet: stdout %q stderr %q", r.stdout, r.stderr)
	}
}

// shortOf returns the blob of img whose digest starts with short (12 hex).
func shortOf(t *testing.T, img e2eImage, short string) []byte {
	t.Helper()
	for _, b := range append([][]byte{img.Manifest, img.Config}, img.Layers...) {
		if strings.HasPrefix(digest.FromBytes(b).Encoded(), short) {
			return b
		}
	}
	t.Errorf("progress for %s, which is no blob of the image", short)
	return nil
}
