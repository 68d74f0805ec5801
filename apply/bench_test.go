package apply

import (
	gotar "archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/zeebo/blake3"
	"golang.org/x/sys/unix"
)

// benchLayer writes a tar to a file in dir, hashing it for its diffID.
func benchLayer(b *testing.B, dir string, write func(tw *gotar.Writer) error) Layer {
	p := filepath.Join(dir, "layer.tar")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	h := sha256.New()
	tw := gotar.NewWriter(io.MultiWriter(f, h))
	if err := write(tw); err != nil {
		b.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		b.Fatal(err)
	}
	st, _ := f.Stat()
	f.Close()
	return Layer{
		MediaType: mtTar,
		Size:      st.Size(),
		DiffID:    digest.NewDigest(digest.SHA256, h),
		Open:      func(context.Context) (io.ReadCloser, error) { return os.Open(p) },
	}
}

// benchDir is where a benchmark writes its trees: b.TempDir(), or a
// directory in $OCIFETCH_BENCH_DIR, to measure on another file system
// (a tmpfs takes the disk out of the figures).
func benchDir(b *testing.B) string {
	d := os.Getenv("OCIFETCH_BENCH_DIR")
	if d == "" {
		return b.TempDir()
	}
	base, err := os.MkdirTemp(d, "bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(base) })
	return base
}

func runApplyBench(b *testing.B, l Layer, files int) { runApplyBenchOpts(b, l, files, false) }

// runApplyBenchOpts measures Apply; with record, into a state directory
// beside each target (tar-split, manifest, state.json).
func runApplyBenchOpts(b *testing.B, l Layer, files int, record bool) {
	b.SetBytes(l.Size)
	base := benchDir(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		target := filepath.Join(base, fmt.Sprint(i))
		if err := os.Mkdir(target, 0755); err != nil {
			b.Fatal(err)
		}
		var opts []Option
		if record {
			opts = append(opts, WithStateDir(DefaultStateDir(target)))
		}
		b.StartTimer()
		if _, err := Apply(context.Background(), target, []Layer{l}, opts...); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(target)
		os.RemoveAll(DefaultStateDir(target))
		b.StartTimer()
	}
	b.ReportMetric(float64(files*b.N)/b.Elapsed().Seconds(), "files/s")
}

// 5000 small files in 50 directories, as in a distribution's /usr.
func BenchmarkApplySmallFiles(b *testing.B) {
	runApplyBench(b, smallFilesLayer(b), 5000)
}

// BenchmarkApplySmallFiles with tar-split recording: the overhead of a
// state directory.
func BenchmarkApplySmallFilesRecording(b *testing.B) {
	runApplyBenchOpts(b, smallFilesLayer(b), 5000, true)
}

func smallFilesLayer(b *testing.B) Layer {
	return benchLayer(b, b.TempDir(), func(tw *gotar.Writer) error {
		body := make([]byte, 2048)
		for d := 0; d < 50; d++ {
			dir := fmt.Sprintf("usr/share/d%02d", d)
			if err := tw.WriteHeader(&gotar.Header{Typeflag: gotar.TypeDir, Name: dir + "/", Mode: 0755}); err != nil {
				return err
			}
			for f := 0; f < 100; f++ {
				n := 512 + (d*100+f)%1536
				if err := tw.WriteHeader(&gotar.Header{Typeflag: gotar.TypeReg, Name: fmt.Sprintf("%s/f%03d", dir, f), Mode: 0644, Size: int64(n)}); err != nil {
					return err
				}
				if _, err := tw.Write(body[:n]); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// One 256 MiB file of pseudo-random bytes.
func BenchmarkApplyLargeFile(b *testing.B) {
	runApplyBench(b, largeFileLayer(b), 1)
}

// BenchmarkApplyLargeFile with tar-split recording.
func BenchmarkApplyLargeFileRecording(b *testing.B) {
	runApplyBenchOpts(b, largeFileLayer(b), 1, true)
}

func largeFileLayer(b *testing.B) Layer {
	const size = 256 << 20
	return benchLayer(b, b.TempDir(), func(tw *gotar.Writer) error {
		if err := tw.WriteHeader(&gotar.Header{Typeflag: gotar.TypeReg, Name: "big", Mode: 0644, Size: size}); err != nil {
			return err
		}
		rng := rand.NewChaCha8([32]byte{1})
		_, err := io.CopyN(tw, rng, size)
		return err
	})
}

// runRebuildBench applies l once with a state directory and measures
// Rebuild of it into io.Discard.
func runRebuildBench(b *testing.B, l Layer, files int) {
	base := benchDir(b)
	target := filepath.Join(base, "rootfs")
	if err := os.Mkdir(target, 0755); err != nil {
		b.Fatal(err)
	}
	state := DefaultStateDir(target)
	if _, err := Apply(context.Background(), target, []Layer{l}, WithStateDir(state)); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(l.Size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := Rebuild(context.Background(), state, target, l.DiffID, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(files*b.N)/b.Elapsed().Seconds(), "files/s")
}

func BenchmarkRebuildSmallFiles(b *testing.B) { runRebuildBench(b, smallFilesLayer(b), 5000) }
func BenchmarkRebuildLargeFile(b *testing.B)  { runRebuildBench(b, largeFileLayer(b), 1) }

// BenchmarkFileDigest hashes the files of $GOROOT (the benchmark's image
// a: 15,000 files, 232 MB, most under 64 KiB) with the content digest's
// construction over BLAKE3 and over SHA-256, in 256 KiB writes as the
// applier hands them: the measurement behind newBlockHash.
func BenchmarkFileDigest(b *testing.B) {
	var files [][]byte
	var total int64
	filepath.WalkDir(goroot(), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if c, err := os.ReadFile(p); err == nil {
				files = append(files, c)
				total += int64(len(c))
			}
		}
		return nil
	})
	if len(files) == 0 {
		b.Skip("no GOROOT")
	}
	for _, c := range []struct {
		name string
		h    func() hash.Hash
	}{{"blake3", func() hash.Hash { return blake3.New() }}, {"sha256", sha256.New}} {
		b.Run(c.name, func(b *testing.B) {
			fh := newFileHashOf(c.h)
			b.SetBytes(total)
			for b.Loop() {
				for _, f := range files {
					fh.Reset()
					for len(f) > 0 {
						n := min(len(f), bufSize)
						fh.Write(f[:n])
						f = f[n:]
					}
					fh.Sum()
				}
			}
		})
	}
}

// BenchmarkVerifySmallFiles verifies the 5000-file tree: every file is
// opened (O_PATH, checked, reopened) and hashed, every entry compared.
func BenchmarkVerifySmallFiles(b *testing.B) {
	l := smallFilesLayer(b)
	base := benchDir(b)
	target := filepath.Join(base, "rootfs")
	state := DefaultStateDir(target)
	if _, err := Apply(context.Background(), target, []Layer{l}, WithStateDir(state)); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if d, err := Verify(context.Background(), state, target); err != nil || len(d) > 0 {
			b.Fatal(d, err)
		}
	}
	b.ReportMetric(float64(5000*b.N)/b.Elapsed().Seconds(), "files/s")
}

// BenchmarkRecipeProbe measures what identifying recipes adds to an apply
// with a state directory: the same layers applied with the probe and
// without (run them alternately, one -bench pattern at a time: -count
// repeats one before the other), reporting the
// CPU time of the whole process per apply (getrusage: every goroutine,
// the background Result included). The layers are benchmark image a's
// (OCIFETCH_BENCH_IMAGE: an image directory bench/benchtool made, with
// its layers.tsv), or without it one gzip layer of GOROOT/src/net.
func BenchmarkRecipeProbe(b *testing.B) {
	layers := probeBenchLayers(b)
	for _, tc := range []struct {
		name string
		opts []Option
	}{{"probe", nil}, {"without", []Option{withoutRecipes()}}} {
		b.Run(tc.name, func(b *testing.B) {
			base := benchDir(b)
			var cpu time.Duration
			for i := 0; i < b.N; i++ {
				target := filepath.Join(base, fmt.Sprint(i))
				before := cpuTime()
				if _, err := Apply(context.Background(), target, layers, append([]Option{WithStateDir(DefaultStateDir(target))}, tc.opts...)...); err != nil {
					b.Fatal(err)
				}
				cpu += cpuTime() - before
				b.StopTimer()
				os.RemoveAll(target)
				os.RemoveAll(DefaultStateDir(target))
				b.StartTimer()
			}
			b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op")
		})
	}
}

// cpuTime is the user and system CPU time of this process so far.
func cpuTime() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func probeBenchLayers(b *testing.B) []Layer {
	if dir := os.Getenv("OCIFETCH_BENCH_IMAGE"); dir != "" {
		tsv, err := os.ReadFile(filepath.Join(dir, "layers.tsv"))
		if err != nil {
			b.Fatal(err)
		}
		var out []Layer
		for _, line := range strings.Split(strings.TrimSpace(string(tsv)), "\n") {
			f := strings.Split(line, "\t")
			size, _ := strconv.ParseInt(f[2], 10, 64)
			p := filepath.Join(dir, f[5])
			out = append(out, Layer{MediaType: f[0], Digest: digest.Digest(f[1]), Size: size, DiffID: digest.Digest(f[3]),
				Open: func(context.Context) (io.ReadCloser, error) { return os.Open(p) }})
		}
		return out
	}
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		b.Fatal(err)
	}
	root := filepath.Join(strings.TrimSpace(string(goroot)), "src", "net")
	var tb bytes.Buffer
	tw := gotar.NewWriter(&tb)
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		tw.WriteHeader(&gotar.Header{Name: rel, Mode: 0o644, Size: int64(len(data)), Typeflag: gotar.TypeReg})
		_, err = tw.Write(data)
		return err
	})
	tw.Close()
	gz := stdGzip(b, tb.Bytes())
	return []Layer{rawBlob(mtGzip, gz, sha(tb.Bytes()))}
}
