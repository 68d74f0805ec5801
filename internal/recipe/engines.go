package recipe

import (
	"fmt"
	"io"

	kpflate "github.com/klauspost/compress/flate"
	kpzstd "github.com/klauspost/compress/zstd"

	goflate126 "github.com/ocifetch/ocifetch/internal/recipe/third_party/go1.26/flate"
	goflate127 "github.com/ocifetch/ocifetch/internal/recipe/third_party/go1.27/flate"
	kpflate11512 "github.com/ocifetch/ocifetch/internal/recipe/third_party/klauspost1.15.12/flate"
	kpzstd11512 "github.com/ocifetch/ocifetch/internal/recipe/third_party/klauspost1.15.12/zstd"
)

// Encoder names (Recipe.Encoder).
const (
	// EncoderGoFlate is Go's compress/flate, the compressor behind Go's
	// compress/gzip (go-containerregistry and crane).
	EncoderGoFlate = "go-flate"
	// EncoderKlauspostFlate is github.com/klauspost/compress/flate, behind
	// klauspost/compress/gzip and github.com/klauspost/pgzip (umoci,
	// containers/image: skopeo, podman, buildah).
	EncoderKlauspostFlate = "klauspost-flate"
	// EncoderKlauspostZstd is github.com/klauspost/compress/zstd (skopeo,
	// go-containerregistry).
	EncoderKlauspostZstd = "klauspost-zstd"
)

// klauspostModuleVersion is the github.com/klauspost/compress release that
// go.mod pins, which recipes naming it are made with. TestGoMod holds it to
// go.mod and TestGoldenDigests to its output: a bump that changes the
// output must vendor the old release first (third_party/README.md).
const klauspostModuleVersion = "v1.20.4"

// flateWriter is one deflate stream being written.
type flateWriter interface {
	io.Writer
	Flush() error
	Close() error
}

// deflater is one pinned deflate implementation.
type deflater struct {
	encoder, version string
	// levels are the levels it accepts, the default one first.
	levels []int
	// defaultLevel is what DefaultCompression (-1) means to it.
	defaultLevel int
	// newWriter starts a stream at level, primed with dict (may be nil).
	newWriter func(w io.Writer, level int, dict []byte) (flateWriter, error)
}

// zstdEncoder is one pinned zstd implementation.
type zstdEncoder struct {
	encoder, version string
	levels           []int // the default one first
	newWriter        func(w io.Writer, level int, p ZstdParams) (io.WriteCloser, error)
}

// The pinned implementations. Nothing here may use the toolchain's own
// compress/flate: its output changes between Go releases.
var (
	deflaters = []*deflater{
		{
			encoder: EncoderGoFlate, version: "go1.26.8",
			levels: []int{6, 1, 9, 5, 4, 7, 3, 2, 8, 0, -2}, defaultLevel: 6,
			newWriter: func(w io.Writer, level int, dict []byte) (flateWriter, error) {
				if dict != nil {
					return goflate126.NewWriterDict(w, level, dict)
				}
				return goflate126.NewWriter(w, level)
			},
		},
		{
			encoder: EncoderGoFlate, version: "go1.27.3",
			levels: []int{6, 1, 9, 5, 4, 7, 3, 2, 8, 0, -2}, defaultLevel: 6,
			newWriter: func(w io.Writer, level int, dict []byte) (flateWriter, error) {
				if dict != nil {
					return goflate127.NewWriterDict(w, level, dict)
				}
				return goflate127.NewWriter(w, level)
			},
		},
		{
			encoder: EncoderKlauspostFlate, version: "v1.15.12",
			levels: []int{5, 1, 9, 6, 4, 7, 3, 2, 8, 0, -2}, defaultLevel: 5,
			newWriter: func(w io.Writer, level int, dict []byte) (flateWriter, error) {
				return kpflate11512.NewWriterDict(w, level, dict)
			},
		},
		{
			encoder: EncoderKlauspostFlate, version: klauspostModuleVersion,
			levels: []int{5, 1, 9, 6, 4, 7, 3, 2, 8, 0, -2}, defaultLevel: 5,
			newWriter: func(w io.Writer, level int, dict []byte) (flateWriter, error) {
				return kpflate.NewWriterDict(w, level, dict)
			},
		},
	}

	zstdEncoders = []*zstdEncoder{
		{
			encoder: EncoderKlauspostZstd, version: "v1.15.12",
			levels: []int{2, 1, 3, 4},
			newWriter: func(w io.Writer, level int, p ZstdParams) (io.WriteCloser, error) {
				// The level before the window: WithWindowSize after it
				// keeps the block size the level chose.
				opts := []kpzstd11512.EOption{
					kpzstd11512.WithEncoderLevel(kpzstd11512.EncoderLevel(level)),
					kpzstd11512.WithEncoderCRC(p.Checksum),
					// One goroutine: the output is the same at any
					// concurrency (TestZstdConcurrency).
					kpzstd11512.WithEncoderConcurrency(1),
				}
				if p.Window != 0 {
					opts = append(opts, kpzstd11512.WithWindowSize(p.Window))
				}
				return kpzstd11512.NewWriter(w, opts...)
			},
		},
		{
			encoder: EncoderKlauspostZstd, version: klauspostModuleVersion,
			levels: []int{2, 1, 3, 4},
			newWriter: func(w io.Writer, level int, p ZstdParams) (io.WriteCloser, error) {
				opts := []kpzstd.EOption{
					kpzstd.WithEncoderLevel(kpzstd.EncoderLevel(level)),
					kpzstd.WithEncoderCRC(p.Checksum),
					kpzstd.WithEncoderConcurrency(1),
				}
				if p.Window != 0 {
					opts = append(opts, kpzstd.WithWindowSize(p.Window))
				}
				return kpzstd.NewWriter(w, opts...)
			},
		},
	}
)

func findDeflater(encoder, version string) *deflater {
	for _, d := range deflaters {
		if d.encoder == encoder && d.version == version {
			return d
		}
	}
	return nil
}

func findZstdEncoder(encoder, version string) *zstdEncoder {
	for _, z := range zstdEncoders {
		if z.encoder == encoder && z.version == version {
			return z
		}
	}
	return nil
}

func hasLevel(levels []int, l int) bool {
	for _, x := range levels {
		if x == l {
			return true
		}
	}
	return false
}

// Implementation is one pinned compressor a recipe can name.
type Implementation struct {
	Format  string // FormatGzip or FormatZstd
	Encoder string
	Version string
	Levels  []int // the levels recipes may name, the default first
}

// Implementations lists every pinned compressor, for documentation and
// `inspect`-like output.
func Implementations() []Implementation {
	var out []Implementation
	for _, d := range deflaters {
		out = append(out, Implementation{FormatGzip, d.encoder, d.version, append([]int(nil), d.levels...)})
	}
	for _, z := range zstdEncoders {
		out = append(out, Implementation{FormatZstd, z.encoder, z.version, append([]int(nil), z.levels...)})
	}
	return out
}

func (i Implementation) String() string {
	return fmt.Sprintf("%s %s %s", i.Format, i.Encoder, i.Version)
}
