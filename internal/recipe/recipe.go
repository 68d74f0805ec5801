package recipe

import (
	"fmt"
	"strings"

	"github.com/ocifetch/ocifetch/errdefs"
)

// Formats (Recipe.Format).
const (
	FormatGzip = "gzip" // RFC 1952 around one deflate stream (RFC 1951)
	FormatZstd = "zstd" // one Zstandard frame (RFC 8878)
)

// A Recipe pins exactly one way to turn a layer's uncompressed tar into its
// compressed blob: which implementation, which release of it, which level
// and every other setting that changes the bytes. Recipes are stored as
// JSON; the field names below are a stable format.
//
//	{"format":"gzip","encoder":"go-flate","version":"go1.26.8","level":1,
//	 "gzip":{"flags":0,"mtime":0,"xfl":4,"os":255}}
//	{"format":"gzip","encoder":"klauspost-flate","version":"v1.15.12","level":5,
//	 "blockSize":262144,"gzip":{"flags":0,"mtime":2288912640,"xfl":0,"os":255}}
//	{"format":"zstd","encoder":"klauspost-zstd","version":"v1.15.12","level":2,
//	 "zstd":{"checksum":true}}
type Recipe struct {
	// Format is FormatGzip or FormatZstd.
	Format string `json:"format"`
	// Encoder names the implementation: EncoderGoFlate,
	// EncoderKlauspostFlate (gzip) or EncoderKlauspostZstd (zstd).
	Encoder string `json:"encoder"`
	// Version is the implementation's release whose code this package
	// carries: "go1.26.8" or "go1.27.3" for Go's compress/flate (Go 1.19
	// to 1.26 write the same bytes; 1.27 changed them), "v1.15.12" or
	// "v1.20.4" for klauspost/compress. Implementations lists them.
	Version string `json:"version"`
	// Level is the level as the implementation numbers it, after mapping
	// its "default": flate 0 (store) to 9 and -2 (Huffman only; Go's
	// default is 6, klauspost's 5); zstd 1 (fastest) to 4 (best), the
	// klauspost EncoderLevel values (its default is 2).
	Level int `json:"level"`
	// BlockSize, for gzip, is github.com/klauspost/pgzip's block size
	// (SetConcurrency's first argument): the input is cut into blocks of
	// that many bytes, each deflated on its own with the previous block's
	// last 16 KiB as dictionary and ended with a sync flush, as pgzip
	// v1.2.5 to v1.3.0 write it. 0 is one plain deflate stream, as Go's
	// and klauspost's compress/gzip write it. pgzip's block count (the
	// other argument) does not change the bytes.
	BlockSize int `json:"blockSize,omitempty"`
	// Gzip is the gzip header, written as recorded. Required for gzip.
	Gzip *GzipHeader `json:"gzip,omitempty"`
	// Zstd holds the zstd encoder settings. Required for zstd.
	Zstd *ZstdParams `json:"zstd,omitempty"`
}

// GzipHeader is a gzip member header (RFC 1952 section 2.3), field by field.
type GzipHeader struct {
	// Flags is FLG: FTEXT 1, FHCRC 2, FEXTRA 4, FNAME 8, FCOMMENT 16.
	// The fields below are written exactly when their flag is set.
	Flags uint8 `json:"flags"`
	// MTime is MTIME. Go's compress/gzip writes 0 for a zero ModTime;
	// pgzip and Go before 1.9 wrote 2288912640 (0x886e0900, the zero
	// time.Time truncated to 32 bits).
	MTime uint32 `json:"mtime"`
	// XFL is the extra flags byte: Go and klauspost write 2 at level 9,
	// 4 at level 1 and 0 otherwise.
	XFL uint8 `json:"xfl"`
	// OS is the OS byte: 255 (unknown) for every Go writer.
	OS uint8 `json:"os"`
	// Extra is the FEXTRA payload.
	Extra []byte `json:"extra,omitempty"`
	// Name and Comment are FNAME and FCOMMENT, Latin-1 text decoded one
	// byte to one rune (so any byte but NUL survives JSON).
	Name    string `json:"name,omitempty"`
	Comment string `json:"comment,omitempty"`
}

// Gzip header flags.
const (
	gzipFText    = 1 << 0
	gzipFHCRC    = 1 << 1
	gzipFExtra   = 1 << 2
	gzipFName    = 1 << 3
	gzipFComment = 1 << 4
)

// ZstdParams are the klauspost zstd encoder settings that change its
// bytes, beyond the level. The encoder decides the rest from them:
// content size (written only when the whole input fits in one block at
// Close), block size (the level's), entropy coding. Its concurrency does
// not change the bytes.
type ZstdParams struct {
	// Checksum is WithEncoderCRC: the frame ends with a content checksum
	// (klauspost's default, true).
	Checksum bool `json:"checksum"`
	// Window is WithWindowSize, applied after the level, in bytes; 0 keeps
	// the level's default (the usual case).
	Window int `json:"window,omitempty"`
}

// Validate reports whether r names a pinned implementation with settings
// it accepts and a header that can be written. Its error is of kind
// not_reproducible (a recipe this build cannot follow) or
// invalid_argument (a malformed recipe).
func (r Recipe) Validate() error {
	switch r.Format {
	case FormatGzip:
		if err := r.validatePinned(); err != nil {
			return err
		}
		if r.BlockSize != 0 && r.BlockSize <= pgzipTailSize {
			return errdefs.New(errdefs.ErrInvalidArgument, "recipe: pgzip block size %d is not above %d", r.BlockSize, pgzipTailSize)
		}
		if r.Gzip == nil || r.Zstd != nil {
			return errdefs.New(errdefs.ErrInvalidArgument, "recipe: a gzip recipe needs a gzip header and no zstd settings")
		}
		return r.Gzip.validate()
	case FormatZstd:
		if err := r.validatePinned(); err != nil {
			return err
		}
		if r.Zstd == nil || r.Gzip != nil || r.BlockSize != 0 {
			return errdefs.New(errdefs.ErrInvalidArgument, "recipe: a zstd recipe needs zstd settings and no gzip ones")
		}
		if w := r.Zstd.Window; w != 0 && (w < 1<<10 || w > 1<<29 || w&(w-1) != 0) {
			return errdefs.New(errdefs.ErrInvalidArgument, "recipe: zstd window %d is not a power of two from 1 KiB to 512 MiB", w)
		}
		return nil
	default:
		return errdefs.New(errdefs.ErrInvalidArgument, "recipe: unknown format %q", r.Format)
	}
}

// validatePinned checks that this build has the compressor r names, of
// r.Format, and that it takes r.Level.
func (r Recipe) validatePinned() error {
	var levels []int
	found := false
	switch r.Format {
	case FormatGzip:
		if d := findDeflater(r.Encoder, r.Version); d != nil {
			levels, found = d.levels, true
		}
	case FormatZstd:
		if z := findZstdEncoder(r.Encoder, r.Version); z != nil {
			levels, found = z.levels, true
		}
	}
	if !found {
		return errdefs.New(errdefs.ErrNotReproducible, "recipe: no pinned %s compressor %s %s in this build", r.Format, r.Encoder, r.Version)
	}
	if !hasLevel(levels, r.Level) {
		return errdefs.New(errdefs.ErrInvalidArgument, "recipe: %s %s has no level %d", r.Encoder, r.Version, r.Level)
	}
	return nil
}

func (h *GzipHeader) validate() error {
	if h.Flags&^(gzipFText|gzipFHCRC|gzipFExtra|gzipFName|gzipFComment) != 0 {
		return errdefs.New(errdefs.ErrInvalidArgument, "recipe: gzip flags %#x set reserved bits", h.Flags)
	}
	if h.Flags&gzipFExtra == 0 && len(h.Extra) > 0 || len(h.Extra) > 0xffff {
		return errdefs.New(errdefs.ErrInvalidArgument, "recipe: gzip extra field of %d bytes does not fit the flags %#x", len(h.Extra), h.Flags)
	}
	for _, f := range []struct {
		flag uint8
		what string
		s    string
	}{{gzipFName, "name", h.Name}, {gzipFComment, "comment", h.Comment}} {
		if h.Flags&f.flag == 0 && f.s != "" {
			return errdefs.New(errdefs.ErrInvalidArgument, "recipe: gzip %s without its flag", f.what)
		}
		for _, c := range f.s {
			if c == 0 || c > 0xff {
				return errdefs.New(errdefs.ErrInvalidArgument, "recipe: gzip %s holds %U, not a Latin-1 character other than NUL", f.what, c)
			}
		}
	}
	return nil
}

// String is a short description for people, e.g.
// "gzip go-flate go1.26.8 level 1 (mtime 0, os 255)".
func (r Recipe) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s level %d", r.Format, r.Encoder, r.Version, r.Level)
	if r.BlockSize != 0 {
		fmt.Fprintf(&b, " pgzip blocks of %d", r.BlockSize)
	}
	if h := r.Gzip; h != nil {
		fmt.Fprintf(&b, " (mtime %d, os %d", h.MTime, h.OS)
		if h.Flags&gzipFName != 0 {
			fmt.Fprintf(&b, ", name %q", h.Name)
		}
		b.WriteString(")")
	}
	if z := r.Zstd; z != nil {
		fmt.Fprintf(&b, " (checksum %t", z.Checksum)
		if z.Window != 0 {
			fmt.Fprintf(&b, ", window %d", z.Window)
		}
		b.WriteString(")")
	}
	return b.String()
}
