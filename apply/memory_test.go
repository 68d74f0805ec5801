package apply

import (
	gotar "archive/tar"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/internal/testutil"
)

// manyFiles writes a tar of dirs directories of files one-byte files
// each to w.
func manyFiles(w io.Writer, dirs, files int) error {
	tw := gotar.NewWriter(w)
	for d := range dirs {
		dn := fmt.Sprintf("dir%04d", d)
		if err := tw.WriteHeader(&gotar.Header{Typeflag: gotar.TypeDir, Name: dn, Mode: 0755, ModTime: epoch}); err != nil {
			return err
		}
		for f := range files {
			h := &gotar.Header{Typeflag: gotar.TypeReg, Name: fmt.Sprintf("%s/a-file-name-of-some-length-%06d", dn, f), Mode: 0644, Size: 1, ModTime: epoch}
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if _, err := tw.Write([]byte{byte(f)}); err != nil {
				return err
			}
		}
	}
	return tw.Close()
}

// streamLayer is a layer generated as it is read.
func streamLayer(gen func(io.Writer) error) Layer {
	h := sha256.New()
	gen(h)
	return Layer{
		MediaType: ocispec.MediaTypeImageLayer,
		DiffID:    digest.NewDigest(digest.SHA256, h),
		Open: func(context.Context) (io.ReadCloser, error) {
			r, w := io.Pipe()
			go func() { w.CloseWithError(gen(w)) }()
			return r, nil
		},
	}
}

func heapAlloc() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// The memory an apply keeps from one layer to the next, per entry, for a
// layer of a million files: at most 200 bytes (the shadow index keys
// paths by hash, content digests wait on disk). Before, the index kept
// every path as a string and a CRC per inode: 126 MB for 400,000
// entries.
func TestMemoryPerEntry(t *testing.T) {
	testutil.Full(t, "a million files")
	if raceDetector {
		// Fifteen minutes with the detector: .ci/run runs this test
		// without it, right after the suite.
		t.Skip("a million files: run without -race (.ci/run does)")
	}
	const dirs, files = 1000, 1000
	big := streamLayer(func(w io.Writer) error { return manyFiles(w, dirs, files) })
	small := blob(t, mtTar, tarOf(t, F("last", "x", 0644)))
	var kept uint64
	open := small.Open
	base := heapAlloc()
	small.Open = func(ctx context.Context) (io.ReadCloser, error) {
		// The first layer is done: what is allocated now is what the
		// apply keeps across layers.
		kept = heapAlloc() - base
		return open(ctx)
	}
	// On a tmpfs where there is one: a million files on disk take
	// minutes to write and to remove.
	dir, err := os.MkdirTemp("/dev/shm", "ocifetch-memory-")
	if err != nil {
		dir = t.TempDir()
	}
	defer os.RemoveAll(dir)
	target := filepath.Join(dir, "rootfs")
	if _, err := Apply(context.Background(), target, []Layer{big, small}, WithStateDir(filepath.Join(dir, "state"))); err != nil {
		t.Fatal(err)
	}
	per := float64(kept) / (dirs * files)
	t.Logf("kept across layers: %d bytes, %.1f per entry", kept, per)
	if per > 200 {
		t.Errorf("%.1f bytes kept per entry, want at most 200", per)
	}
	if ents, _ := os.ReadDir(filepath.Join(target, "dir0999")); len(ents) != files {
		t.Errorf("%d files in the last directory", len(ents))
	}
}
