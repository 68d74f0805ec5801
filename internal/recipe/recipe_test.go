package recipe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/ocifetch/ocifetch/errdefs"
)

func goRecipe(level int) Recipe {
	return Recipe{Format: FormatGzip, Encoder: EncoderGoFlate, Version: "go1.26.8", Level: level, Gzip: &GzipHeader{OS: 255}}
}

// The JSON form is a stored format: its field names do not change.
func TestRecipeJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		r    Recipe
		json string
	}{
		{goRecipe(1), `{"format":"gzip","encoder":"go-flate","version":"go1.26.8","level":1,"gzip":{"flags":0,"mtime":0,"xfl":0,"os":255}}`},
		{
			Recipe{Format: FormatGzip, Encoder: EncoderKlauspostFlate, Version: "v1.15.12", Level: 5, BlockSize: 262144,
				Gzip: &GzipHeader{Flags: gzipFName | gzipFComment | gzipFExtra | gzipFHCRC, MTime: pgzipZeroMTime, OS: 255, Extra: []byte{0, 1}, Name: "é.tar", Comment: "c"}},
			`{"format":"gzip","encoder":"klauspost-flate","version":"v1.15.12","level":5,"blockSize":262144,"gzip":{"flags":30,"mtime":2288912640,"xfl":0,"os":255,"extra":"AAE=","name":"é.tar","comment":"c"}}`,
		},
		{
			Recipe{Format: FormatZstd, Encoder: EncoderKlauspostZstd, Version: "v1.15.12", Level: 2, Zstd: &ZstdParams{Checksum: true, Window: 1 << 20}},
			`{"format":"zstd","encoder":"klauspost-zstd","version":"v1.15.12","level":2,"zstd":{"checksum":true,"window":1048576}}`,
		},
	} {
		b, err := json.Marshal(tc.r)
		if err != nil || string(b) != tc.json {
			t.Errorf("Marshal = %s, %v\nwant %s", b, err, tc.json)
		}
		var back Recipe
		if err := json.Unmarshal([]byte(tc.json), &back); err != nil {
			t.Fatal(err)
		}
		if back.String() != tc.r.String() || back.Validate() != nil {
			t.Errorf("round trip: %s (%v), want %s", back, back.Validate(), tc.r)
		}
		// The header survives too, byte for byte.
		if tc.r.Gzip != nil && !bytes.Equal(appendGzipHeader(nil, back.Gzip), appendGzipHeader(nil, tc.r.Gzip)) {
			t.Errorf("header changed in the round trip")
		}
	}
}

func TestRecipeValidate(t *testing.T) {
	t.Parallel()
	mod := func(f func(*Recipe)) Recipe {
		r := goRecipe(6)
		h := *r.Gzip
		r.Gzip = &h
		f(&r)
		return r
	}
	for _, tc := range []struct {
		name string
		r    Recipe
		kind errdefs.Kind
	}{
		{"unknown format", mod(func(r *Recipe) { r.Format = "xz" }), errdefs.ErrInvalidArgument},
		{"unknown release", mod(func(r *Recipe) { r.Version = "go1.8" }), errdefs.ErrNotReproducible},
		{"unknown encoder", mod(func(r *Recipe) { r.Encoder = "zlib" }), errdefs.ErrNotReproducible},
		{"level", mod(func(r *Recipe) { r.Level = 10 }), errdefs.ErrInvalidArgument},
		{"no header", mod(func(r *Recipe) { r.Gzip = nil }), errdefs.ErrInvalidArgument},
		{"zstd settings on gzip", mod(func(r *Recipe) { r.Zstd = &ZstdParams{} }), errdefs.ErrInvalidArgument},
		{"block size", mod(func(r *Recipe) { r.BlockSize = pgzipTailSize }), errdefs.ErrInvalidArgument},
		{"reserved flag", mod(func(r *Recipe) { r.Gzip.Flags = 0x20 }), errdefs.ErrInvalidArgument},
		{"name without flag", mod(func(r *Recipe) { r.Gzip.Name = "x" }), errdefs.ErrInvalidArgument},
		{"NUL in name", mod(func(r *Recipe) { r.Gzip.Flags, r.Gzip.Name = gzipFName, "a\x00b" }), errdefs.ErrInvalidArgument},
		{"not Latin-1", mod(func(r *Recipe) { r.Gzip.Flags, r.Gzip.Comment = gzipFComment, "€" }), errdefs.ErrInvalidArgument},
		{"extra without flag", mod(func(r *Recipe) { r.Gzip.Extra = []byte{1} }), errdefs.ErrInvalidArgument},
		{"zstd window", Recipe{Format: FormatZstd, Encoder: EncoderKlauspostZstd, Version: klauspostModuleVersion, Level: 2, Zstd: &ZstdParams{Window: 3 << 20}}, errdefs.ErrInvalidArgument},
		{"zstd level", Recipe{Format: FormatZstd, Encoder: EncoderKlauspostZstd, Version: klauspostModuleVersion, Level: 5, Zstd: &ZstdParams{}}, errdefs.ErrInvalidArgument},
		{"zstd without settings", Recipe{Format: FormatZstd, Encoder: EncoderKlauspostZstd, Version: klauspostModuleVersion, Level: 2}, errdefs.ErrInvalidArgument},
	} {
		err := tc.r.Validate()
		if errdefs.KindOf(err) != tc.kind {
			t.Errorf("%s: Validate() = %v, want kind %s", tc.name, err, tc.kind)
		}
		// Recompress refuses what Validate refuses, before writing.
		var out bytes.Buffer
		if err := Recompress(context.Background(), tc.r, strings.NewReader("x"), &out); errdefs.KindOf(err) != tc.kind || out.Len() != 0 {
			t.Errorf("%s: Recompress = %v after %d bytes", tc.name, err, out.Len())
		}
	}
	for _, impl := range Implementations() {
		for _, l := range impl.Levels {
			r := Recipe{Format: impl.Format, Encoder: impl.Encoder, Version: impl.Version, Level: l}
			if impl.Format == FormatGzip {
				r.Gzip = &GzipHeader{OS: 255}
			} else {
				r.Zstd = &ZstdParams{Checksum: true}
			}
			if err := r.Validate(); err != nil {
				t.Errorf("%s level %d: %v", impl, l, err)
			}
		}
	}
}

// Headers parse back to what wrote them, every field and flag included.
func TestGzipHeaderRoundTrip(t *testing.T) {
	t.Parallel()
	for _, h := range []GzipHeader{
		{OS: 255},
		{Flags: gzipFText, MTime: 1700000000, XFL: 2, OS: 3},
		{Flags: gzipFExtra, OS: 255, Extra: []byte{}},
		{Flags: gzipFExtra | gzipFName | gzipFComment | gzipFHCRC, MTime: pgzipZeroMTime, XFL: 4, OS: 255, Extra: []byte("AB\x02\x00hi"), Name: "layer.tar", Comment: "ÿ latin"},
		{Flags: gzipFName, OS: 255},
	} {
		b := appendGzipHeader(nil, &h)
		got, n, err := parseGzipHeader(append(b, 0xaa, 0xbb))
		if err != nil || n != len(b) {
			t.Fatalf("%+v: parse = %v, %d of %d bytes", h, err, n, len(b))
		}
		if !bytes.Equal(appendGzipHeader(nil, got), b) {
			t.Errorf("%+v: parsed back as %+v", h, got)
		}
		for i := range b {
			if _, _, err := parseGzipHeader(b[:i]); !errors.Is(err, errShortHeader) {
				t.Errorf("%+v cut at %d: %v, want a short header", h, i, err)
			}
		}
	}
	if _, _, err := parseGzipHeader([]byte{0x1f, 0x8b, 8, 0x40, 0, 0, 0, 0, 0, 255}); err == nil || errors.Is(err, errShortHeader) {
		t.Errorf("reserved flag: %v", err)
	}
}

func TestZstdFrameHeader(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		b    []byte
		want zstdFrameHeader
	}{
		{[]byte{0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x68}, zstdFrameHeader{checksum: true, window: 8 << 20, length: 6}},
		{[]byte{0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x58}, zstdFrameHeader{checksum: true, window: 2 << 20, length: 6}},
		{[]byte{0x28, 0xb5, 0x2f, 0xfd, 0x24, 0x7f}, zstdFrameHeader{singleSegment: true, checksum: true, hasSize: true, size: 0x7f, length: 6}},
		{[]byte{0x28, 0xb5, 0x2f, 0xfd, 0x64, 0x00, 0x01}, zstdFrameHeader{singleSegment: true, checksum: true, hasSize: true, size: 256 + 256, length: 7}},
		{[]byte{0x28, 0xb5, 0x2f, 0xfd, 0x81, 0x61, 7, 1, 2, 3, 4}, zstdFrameHeader{window: 1<<22 + 1<<19, dictID: 7, hasSize: true, size: 0x04030201, length: 11}},
	} {
		got, err := parseZstdFrameHeader(tc.b)
		if err != nil || *got != tc.want {
			t.Errorf("% x: %+v, %v; want %+v", tc.b, got, err, tc.want)
		}
		if _, err := parseZstdFrameHeader(tc.b[:len(tc.b)-1]); !errors.Is(err, errShortHeader) {
			t.Errorf("% x cut: %v", tc.b, err)
		}
	}
}

// Recompress honours its context and returns the streams' errors as they
// are.
func TestRecompressErrors(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Recompress(ctx, goRecipe(6), strings.NewReader("x"), io.Discard); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: %v", err)
	}
	boom := errors.New("boom")
	if err := Recompress(context.Background(), goRecipe(6), io.MultiReader(strings.NewReader("x"), errReader{boom}), io.Discard); !errors.Is(err, boom) {
		t.Errorf("read error: %v", err)
	}
	if err := Recompress(context.Background(), goRecipe(6), strings.NewReader("x"), errWriter{boom}); !errors.Is(err, boom) {
		t.Errorf("write error: %v", err)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

type errWriter struct{ err error }

func (e errWriter) Write([]byte) (int, error) { return 0, e.err }

func TestConfirm(t *testing.T) {
	t.Parallel()
	layer := corpus(300 << 10)
	r6, r1 := goRecipe(6), goRecipe(1)
	blob := recompressed(t, r6, layer)
	opens := 0
	open := func() (io.ReadCloser, error) { opens++; return io.NopCloser(bytes.NewReader(layer)), nil }
	ctx := context.Background()

	got, err := Confirm(ctx, []Recipe{r1, r6}, open, digest.FromBytes(blob), int64(len(blob)))
	if err != nil || got.Level != 6 || opens != 2 {
		t.Errorf("Confirm = %s, %v after %d opens; want level 6 on the second", got, err, opens)
	}
	// The right size with another digest, and a shorter size, are both
	// refused; the first stops as soon as the output is too long.
	for _, tc := range []struct {
		d    digest.Digest
		size int64
	}{{digest.FromString("other"), int64(len(blob))}, {digest.FromBytes(blob), int64(len(blob)) - 1}} {
		_, err := Confirm(ctx, []Recipe{r6}, open, tc.d, tc.size)
		if errdefs.KindOf(err) != errdefs.ErrNotReproducible || !strings.Contains(err.Error(), "level 6") {
			t.Errorf("%s %d: %v", tc.d, tc.size, err)
		}
	}
	if _, err := Confirm(ctx, nil, open, digest.FromBytes(blob), int64(len(blob))); errdefs.KindOf(err) != errdefs.ErrNotReproducible {
		t.Errorf("no candidates: %v", err)
	}
	if _, err := Confirm(ctx, []Recipe{r6}, open, "sha256:nothex", 1); errdefs.KindOf(err) != errdefs.ErrInvalidArgument {
		t.Errorf("bad digest: %v", err)
	}
	boom := errors.New("boom")
	if _, err := Confirm(ctx, []Recipe{r6}, func() (io.ReadCloser, error) { return nil, boom }, digest.FromBytes(blob), 1); !errors.Is(err, boom) {
		t.Errorf("open error: %v", err)
	}
}
