package fetch_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/fetch"
	"github.com/ocifetch/ocifetch/internal/testutil"
	"github.com/ocifetch/ocifetch/internal/testutil/testregistry"
)

// The test binary doubles as the second process of the cross-process
// tests: with childEnv set it fetches one blob and exits.
const childEnv = "OCIFETCH_FETCH_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(childFetch())
	}
	os.Exit(testregistry.Main(m))
}

func childFetch() int {
	var desc ocispec.Descriptor
	if err := json.Unmarshal([]byte(os.Getenv("CHILD_DESC")), &desc); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	s, err := fetch.OpenStore(os.Getenv("CHILD_STORE"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := fetch.FetchBlob(ctx, newHTTPSource(os.Getenv("CHILD_URL")), s, desc); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Print("ok")
	return 0
}

// childCommand is the test binary run as childFetch, to fetch desc from
// url into s.
func childCommand(s *fetch.Store, url string, desc ocispec.Descriptor) *exec.Cmd {
	descJSON, _ := json.Marshal(desc)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = testutil.ChildEnv(childEnv+"=1", "CHILD_STORE="+s.Dir(), "CHILD_URL="+url, "CHILD_DESC="+string(descJSON))
	return cmd
}

// Two processes (and a goroutine of this one) pulling the same digest into
// one store download it once, and all succeed.
func TestTwoProcessesShareOneDownload(t *testing.T) {
	blob := randomBytes(2<<20, 60)
	// ~600 ms of download: longer than the children take to start.
	srv, p := tricklingServer(t, blob, 64<<10, 20*time.Millisecond)
	s := openStore(t)
	desc := layerDesc(blob)

	var wg sync.WaitGroup
	outs := make([]string, 2)
	errs := make([]error, 3)
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := childCommand(s, p.URL, desc)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			errs[i] = cmd.Run()
			outs[i] = stdout.String() + stderr.String()
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		errs[2] = fetch.FetchBlob(context.Background(), newHTTPSource(p.URL), s, desc)
	}()
	wg.Wait()
	for i, err := range errs {
		if err != nil || (i < 2 && outs[i] != "ok") {
			t.Errorf("contender %d: %v %s", i, err, outs[min(i, 1)])
		}
	}
	assertBlob(t, s, blob)
	if srv.gets.Load() != 1 || p.BytesSent() != int64(len(blob)) {
		t.Errorf("%d GETs, %d bytes sent: want exactly one download", srv.gets.Load(), p.BytesSent())
	}
}

// The download path holds one fixed buffer per transfer, never the blob.
func TestMemoryDoesNotGrowWithLayerSize(t *testing.T) {
	measure := func(n int) uint64 {
		blob := randomBytes(n, uint64(n))
		src := newMemSource(blob)
		s := openStore(t)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		if err := fetch.FetchBlob(context.Background(), src, s, layerDesc(blob)); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	small, large := measure(1<<20), measure(32<<20)
	t.Logf("allocated %d bytes for 1 MiB, %d for 32 MiB", small, large)
	if large > small+2<<20 {
		t.Errorf("allocation grows with the layer: %d bytes for 1 MiB, %d for 32 MiB", small, large)
	}
}

// BenchmarkPull fetches a four-layer image from a loopback HTTP server
// into a fresh store; MB/s counts layer bytes.
func BenchmarkPull(b *testing.B) {
	for _, size := range []int{8 << 20, 32 << 20} {
		b.Run(fmt.Sprintf("4x%dMiB", size>>20), func(b *testing.B) {
			var layers [][]byte
			var total int64
			for i := 0; i < 4; i++ {
				layers = append(layers, randomBytes(size, uint64(200+i)))
				total += int64(size)
			}
			srv := newBlobServer(b, layers...)
			r := testImage(b, newHTTPSource(srv.URL), layers...)
			b.SetBytes(total)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				dir, err := os.MkdirTemp("", "bench-store-")
				if err != nil {
					b.Fatal(err)
				}
				s, err := fetch.OpenStore(dir)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if _, err := fetch.Pull(context.Background(), r, s); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				os.RemoveAll(dir)
				b.StartTimer()
			}
		})
	}
}

// A pull that finds another process downloading one of its blobs says
// whom it waits for: the waiting event carries that process's pid, which
// the download recorded where it took the blob's lock. Every event names
// the image and the blob's place in it (layers from 1, 0 for the config).
func TestWaitingNamesTheOtherProcess(t *testing.T) {
	blob := randomBytes(1<<20, 61)
	// About two seconds of download, so the child holds the lock while
	// this process comes to it.
	srv, p := tricklingServer(t, blob, 32<<10, 60*time.Millisecond)
	s := openStore(t)
	desc := layerDesc(blob)
	cmd := childCommand(s, p.URL, desc)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The child holds the lock once its partial file has bytes.
	partial := filepath.Join(s.Dir(), ".ocifetch", "partial", "sha256", desc.Digest.Encoded())
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if fi, err := os.Stat(partial); err == nil && fi.Size() > 0 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the child never started its download: %s", out.String())
		}
	}
	other := randomBytes(4096, 62)
	srv.add(other)
	r := testImage(t, newHTTPSource(p.URL), other, blob)
	var mu sync.Mutex
	var events []fetch.Event
	_, err := fetch.Pull(context.Background(), r, s, fetch.WithProgress(func(ev fetch.Event) {
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
	}))
	if werr := cmd.Wait(); werr != nil || out.String() != "ok" {
		t.Errorf("child: %v %s", werr, out.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	var waited bool
	for _, ev := range events {
		if ev.Reference != r.Reference {
			t.Errorf("event for %s names %q, want %q", ev.Digest, ev.Reference, r.Reference)
		}
		want := map[string]int{r.Config.Descriptor.Digest.String(): 0, layerDesc(other).Digest.String(): 1, desc.Digest.String(): 2}[ev.Digest.String()]
		if ev.Layer != want {
			t.Errorf("event for %s says layer %d, want %d", ev.Digest, ev.Layer, want)
		}
		if ev.Holder != 0 {
			if ev.State != fetch.StateWaiting || ev.Digest != desc.Digest || ev.Holder != cmd.Process.Pid {
				t.Errorf("event %+v names holder %d; the child is %d", ev, ev.Holder, cmd.Process.Pid)
			}
			waited = true
		}
	}
	if !waited {
		t.Errorf("no waiting event named the child (pid %d): %+v", cmd.Process.Pid, events)
	}
}
