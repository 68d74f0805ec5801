package recipe

import (
	"bytes"
	"context"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// threadCPU is the CPU time the calling thread has used: what a probe
// costs, whatever else the machine runs.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkProbe is the cost of identifying one layer: feeding the Prober
// both streams (the copies into its buffers) and its Result, in CPU time
// of the thread that does it (cpu-ms/op: the figure that holds on a
// shared machine; ns/op is wall time). The layers
// are a tar of real files (GOROOT/src/net), compressed as the producers
// named do it; "zlib" is GNU gzip's output with its OS byte forged to 255,
// so that every candidate runs: the worst case.
func BenchmarkProbe(b *testing.B) {
	t := &testing.T{}
	layer := goSrcTar(t, "net")
	kp15 := func(bs int) Recipe {
		return Recipe{Format: FormatGzip, Encoder: EncoderKlauspostFlate, Version: "v1.15.12", Level: 5, BlockSize: bs, Gzip: &GzipHeader{OS: 255, MTime: pgzipZeroMTime}}
	}
	cases := []struct {
		name string
		blob []byte
	}{
		{"go-gzip-default", recompressed(t, goRecipe(6), layer)},
		{"go-gzip-1", recompressed(t, Recipe{Format: FormatGzip, Encoder: EncoderGoFlate, Version: "go1.26.8", Level: 1, Gzip: &GzipHeader{OS: 255, XFL: 4}}, layer)},
		{"umoci-pgzip", recompressed(t, kp15(256<<10), layer)},
		{"skopeo-pgzip", recompressed(t, kp15(1<<20), layer)},
		{"skopeo-zstd", recompressed(t, Recipe{Format: FormatZstd, Encoder: EncoderKlauspostZstd, Version: "v1.15.12", Level: 2, Zstd: &ZstdParams{Checksum: true}}, layer)},
		{"zstd-default", recompressed(t, Recipe{Format: FormatZstd, Encoder: EncoderKlauspostZstd, Version: klauspostModuleVersion, Level: 2, Zstd: &ZstdParams{Checksum: true}}, layer)},
	}
	if gz, err := exec.LookPath("gzip"); err == nil {
		cmd := exec.Command(gz, "-6", "-n", "-c")
		cmd.Stdin = bytes.NewReader(layer)
		if blob, err := cmd.Output(); err == nil {
			blob[9] = 255
			cases = append(cases, struct {
				name string
				blob []byte
			}{"zlib", blob})
		}
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var res Result
			var cpu time.Duration
			for b.Loop() {
				start := threadCPU()
				p, _ := NewProber()
				for off := 0; off < max(len(c.blob), len(layer)); off += 32 << 10 {
					p.Compressed().Write(c.blob[min(off, len(c.blob)):min(off+32<<10, len(c.blob))])
					p.Uncompressed().Write(layer[min(off, len(layer)):min(off+32<<10, len(layer))])
				}
				p.Close()
				var err error
				if res, err = p.Result(context.Background()); err != nil {
					b.Fatal(err)
				}
				cpu += threadCPU() - start
			}
			if c.name != "zlib" && len(res.Candidates) == 0 {
				b.Fatalf("no candidate: %s", res.Reason)
			}
			b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/op")
			b.ReportMetric(float64(res.Work)/(1<<10), "KiB-compressed/op")
			b.ReportMetric(float64(res.Tried), "tried/op")
		})
	}
}
