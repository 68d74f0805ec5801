package apply

import (
	"bytes"
	stdgzip "compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/recipe"
	"github.com/ocifetch/ocifetch/internal/testutil"
	"github.com/ocifetch/ocifetch/mediatype"
)

// Compressed blobs rebuilt from the tree: the recipe recorded while
// applying, confirmed against the manifest's digest, and nothing written
// unless the whole blob matched.

// prose returns n bytes of deterministic, compressible text.
func prose(seed int64, n int) string {
	words := strings.Fields("the quick brown fox jumps over a lazy dog while layers of an image arrive from the registry and land in a root filesystem bit for bit")
	// One draw a word: tests make megabytes of this under the race
	// detector, where every call costs.
	r := rand.New(rand.NewSource(seed))
	b := make([]byte, 0, n+32)
	for len(b) < n {
		x := uint64(r.Int63())
		b = append(b, words[x%uint64(len(words))]...)
		if x>>8%12 == 0 {
			b = append(b, ' ')
			b = strconv.AppendUint(b, x>>12, 10)
			b = append(b, '\n')
		} else {
			b = append(b, ' ')
		}
	}
	return string(b[:n])
}

// stdGzip compresses as Go's compress/gzip at its default level does
// (image builders written in Go; the benchmark generator).
func stdGzip(t testing.TB, b []byte) []byte {
	var out bytes.Buffer
	w := stdgzip.NewWriter(&out)
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// gnuGzip compresses with GNU gzip -9, a compressor no recipe pins.
func gnuGzip(t testing.TB, b []byte) []byte {
	cmd := exec.Command("gzip", "-9", "-c")
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("gzip -9: %v", err)
	}
	return out
}

// klauspostZstd compresses as klauspost's streaming zstd writer does at
// its default level (skopeo, the benchmark generator).
func klauspostZstd(t testing.TB, b []byte) []byte {
	var out bytes.Buffer
	w, err := zstd.NewWriter(&out)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// blobImage applies layers made of tars and their blobs, each blob under
// its digest, and returns the tree.
type blobLayer struct {
	mediaType string
	tar, blob []byte
}

// probePrefix is how much of a layer the probe reads in these tests: its
// default, 1 MiB, in the full run; under -short, 256 KiB (and 4 KiB of
// evidence instead of 16) with layers scaled to match, because
// compressing under the race detector costs about 4 s a MiB.
func probePrefix() int { return testutil.Scale(1<<20, 256<<10) }

func probeScaled() Option {
	if !testing.Short() {
		return withProbe()
	}
	return withProbe(recipe.WithMaxPrefix(probePrefix()), recipe.WithEvidence(4<<10))
}

func applyBlobs(t *testing.T, ls []blobLayer, opts ...Option) applied {
	t.Helper()
	base := t.TempDir()
	a := applied{target: filepath.Join(base, "rootfs")}
	a.state = DefaultStateDir(a.target)
	var layers []Layer
	for _, l := range ls {
		a.tars = append(a.tars, l.tar)
		layers = append(layers, rawBlob(l.mediaType, l.blob, sha(l.tar)))
	}
	if _, err := Apply(context.Background(), a.target, layers, append([]Option{WithStateDir(a.state), probeScaled()}, opts...)...); err != nil {
		t.Fatal(err)
	}
	return a
}

func stateOf(t *testing.T, dir string) *State {
	t.Helper()
	st, err := Status(dir)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// Every kind of layer the media-type table knows is made again, exactly:
// Go's gzip at its default level, klauspost's zstd at its default, and an
// uncompressed tar (which needs no recipe), on layers larger than the
// probe's prefix (candidates, confirmed only by recompressing the whole
// layer) and smaller (confirmed while applying).
func TestRebuildBlob(t *testing.T) {
	t.Parallel()
	// Both big layers pass the probe's prefix (a candidate, not a
	// confirmation, after apply); the short tier only just.
	big := tarOf(t, D("etc", 0755), F("etc/big.txt", prose(1, testutil.Scale(3<<20, probePrefix()*5/4)), 0644), F("etc/small", "x", 0644))
	upper := tarOf(t, F("etc/big.txt", prose(2, testutil.Scale(2<<20, probePrefix()*9/8)), 0600), W("etc", "small"), F("etc/tiny", prose(3, 9000), 0644))
	tiny := tarOf(t, F("etc/motd", "hello\n", 0644))
	plain := tarOf(t, F("etc/issue", "Debian\n", 0644))
	ls := []blobLayer{
		{ocispec.MediaTypeImageLayerGzip, big, stdGzip(t, big)},
		{ocispec.MediaTypeImageLayerZstd, upper, klauspostZstd(t, upper)},
		{mediatype.DockerLayer, tiny, stdGzip(t, tiny)},
		{mediatype.DockerLayerTar, plain, plain},
	}
	a := applyBlobs(t, ls)
	st := stateOf(t, a.state)
	wantRepro := []string{"candidate", "candidate", "confirmed", "tar"}
	for i, l := range st.Layers {
		if got := l.Reproducible(); got != wantRepro[i] {
			t.Errorf("layer %d: reproducible %q after apply, want %q (recipe %+v)", i+1, got, wantRepro[i], l.Recipe)
		}
		if l.Size != int64(len(ls[i].blob)) || l.Digest != sha(ls[i].blob) {
			t.Errorf("layer %d: state records %s, %d bytes; the blob is %s, %d bytes", i+1, l.Digest, l.Size, sha(ls[i].blob), len(ls[i].blob))
		}
	}
	// Rebuilds share the state's lock: the layers' run side by side.
	t.Run("rebuild", func(t *testing.T) {
		for i, l := range ls {
			t.Run(fmt.Sprintf("layer %d", i+1), func(t *testing.T) {
				t.Parallel()
				var out bytes.Buffer
				res, err := RebuildBlob(context.Background(), a.state, a.target, sha(l.tar), &out)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(out.Bytes(), l.blob) || res.Size != int64(len(l.blob)) || res.Digest != sha(l.blob) {
					t.Errorf("rebuilt %d bytes (%s), want the blob, %d bytes (%s)", out.Len(), sha(out.Bytes()), len(l.blob), sha(l.blob))
				}
				if (res.Recipe == nil) != (l.mediaType == mediatype.DockerLayerTar) {
					t.Errorf("recipe %v", res.Recipe)
				}
			})
		}
	})

	c, err := Confirm(context.Background(), a.state, a.target)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Drift) != 0 || len(c.Layers) != len(ls) {
		t.Fatalf("Confirm: %+v", c)
	}
	for i, l := range c.Layers {
		want := "confirmed"
		if i == 3 {
			want = "tar"
		}
		if l.Reproducible != want || l.Err != nil {
			t.Errorf("Confirm layer %d: %q, %v; want %q", i+1, l.Reproducible, l.Err, want)
		}
	}
	for i, l := range stateOf(t, a.state).Layers[:3] {
		if l.Reproducible() != "confirmed" || len(l.Recipe.Candidates) != 1 {
			t.Errorf("layer %d: state after Confirm: %+v", i+1, l.Recipe)
		}
	}
}

// A layer from a compressor no recipe pins (GNU gzip -9: zlib) is
// reported not reproducible, the writer receiving nothing.
func TestRebuildBlobNotReproducible(t *testing.T) {
	t.Parallel()
	testutil.Tool(t, "gzip")
	tb := tarOf(t, F("usr/share/doc/README", prose(4, 1<<20), 0644))
	a := applyBlobs(t, []blobLayer{{ocispec.MediaTypeImageLayerGzip, tb, gnuGzip(t, tb)}})
	l := stateOf(t, a.state).Layers[0]
	if l.Reproducible() != "" || l.Recipe == nil || l.Recipe.Reason == "" {
		t.Fatalf("state: %+v", l.Recipe)
	}
	var out bytes.Buffer
	_, err := RebuildBlob(context.Background(), a.state, a.target, sha(tb), &out)
	wantKind(t, err, errdefs.ErrNotReproducible)
	if out.Len() != 0 {
		t.Errorf("%d bytes written for a layer that is not reproducible", out.Len())
	}
	c, err := Confirm(context.Background(), a.state, a.target)
	if err != nil {
		t.Fatal(err)
	}
	if c.Layers[0].Reproducible != "" || errdefs.KindOf(c.Layers[0].Err) != errdefs.ErrNotReproducible {
		t.Errorf("Confirm: %+v", c.Layers[0])
	}
}

// A recipe that does not make the blob (forged into the state here, as a
// wrong candidate would be) and a tree that changed both end in an
// error, and the writer receives nothing: no wrong blob is ever written.
func TestRebuildBlobNeverWrong(t *testing.T) {
	t.Parallel()
	size := testutil.Scale(2<<20, probePrefix()*5/4)
	tb := tarOf(t, F("etc/app.conf", prose(5, size), 0644))
	gzBlob := stdGzip(t, tb)
	a := applyBlobs(t, []blobLayer{{ocispec.MediaTypeImageLayerGzip, tb, gzBlob}})

	st := stateOf(t, a.state)
	good := st.Layers[0].Recipe.Candidates[0]
	bad := good
	bad.Level = 1
	st.Layers[0].Recipe.Candidates = append(st.Layers[0].Recipe.Candidates[:0], bad)
	if err := writeState(a.state, st); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	_, err := RebuildBlob(context.Background(), a.state, a.target, sha(tb), &out)
	wantKind(t, err, errdefs.ErrNotReproducible)
	if out.Len() != 0 {
		t.Errorf("wrong recipe: %d bytes written", out.Len())
	}

	st.Layers[0].Recipe.Candidates = append(st.Layers[0].Recipe.Candidates[:0], bad, good)
	if err := writeState(a.state, st); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if _, err := RebuildBlob(context.Background(), a.state, a.target, sha(tb), &out); err != nil || !bytes.Equal(out.Bytes(), gzBlob) {
		t.Fatalf("second candidate: %v, %d bytes", err, out.Len())
	}

	if err := os.WriteFile(filepath.Join(a.target, "etc/app.conf"), []byte(prose(6, size)), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	_, err = RebuildBlob(context.Background(), a.state, a.target, sha(tb), &out)
	wantKind(t, err, errdefs.ErrDigestMismatch)
	if out.Len() != 0 {
		t.Errorf("changed tree: %d bytes written", out.Len())
	}
	c, err := Confirm(context.Background(), a.state, a.target)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Drift) == 0 || len(c.Layers) != 0 {
		t.Errorf("Confirm on a changed tree: %+v", c)
	}
}

// The shadow store, packed, still gives every layer back bit for bit; a
// pack that changed is caught like a changed file; an interrupted
// compaction (the files still beside the pack) is read from the files
// and finished by the next one.
func TestCompactShadow(t *testing.T) {
	t.Parallel()
	layers := func(bigSize int) (base, upper []byte) {
		base = tarOf(t, D("srv", 0755),
			F("srv/big", prose(7, bigSize), 0644), // past memCopyMax: a private temporary file
			F("srv/medium", prose(8, 100<<10), 0644),
			F("srv/small", "tiny\n", 0644),
			F("srv/gone", prose(9, 64<<10), 0644),
			F("srv/kept", "not replaced\n", 0644))
		upper = tarOf(t, F("srv/big", "replaced\n", 0644), F("srv/medium", "replaced\n", 0644), F("srv/small", "replaced\n", 0644), W("srv", "gone"))
		return base, upper
	}
	for _, viaApply := range []bool{false, true} {
		t.Run(fmt.Sprintf("apply=%v", viaApply), func(t *testing.T) {
			t.Parallel()
			// Past memCopyMax, compaction copies the payload through a
			// temporary file; the short tier leaves that path to the
			// full run (and to TestRebuildFileRewrittenWhileRead, which
			// takes it in rebuild): each pass over a payload that big
			// costs seconds under the race detector, 3.5 s of CPU here.
			bigSize := testutil.Scale(6<<20, 512<<10)
			var opts []Option
			if viaApply {
				opts = append(opts, WithCompactShadow())
			}
			base, upper := layers(bigSize)
			a := mustApplyRecorded(t, [][]byte{base, upper}, opts...)
			dir := filepath.Join(a.state, shadowDir, layerKey(sha(base)))
			files, _ := os.ReadDir(dir)
			if !viaApply {
				if len(files) != 4 {
					t.Fatalf("shadow store before compaction: %d files", len(files))
				}
				a.checkRebuilds(t)
				rep, err := CompactShadow(context.Background(), a.state)
				if err != nil {
					t.Fatal(err)
				}
				if rep.Files != 4 || rep.After >= rep.Before {
					t.Errorf("compacted %+v", rep)
				}
			}
			if names := testutil.DirNames(t, dir); !slices.Equal(names, []string{packName}) {
				t.Fatalf("shadow store holds %v", names)
			}
			a.checkRebuilds(t)
			a.noDrift(t)

			// A pack whose payload changed.
			p := filepath.Join(dir, packName)
			orig, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			dec, _ := zstd.NewReader(nil)
			plain, err := dec.DecodeAll(orig, nil)
			if err != nil {
				t.Fatal(err)
			}
			plain[len(plain)-100] ^= 1
			enc, _ := zstd.NewWriter(nil)
			if err := os.WriteFile(p, enc.EncodeAll(plain, nil), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err = a.rebuild(t, 0)
			wantKind(t, err, errdefs.ErrDigestMismatch)
			if err := os.WriteFile(p, orig, 0o600); err != nil {
				t.Fatal(err)
			}

			// An interrupted compaction: a file beside the pack.
			pos := firstShadowed(t, a, base)
			payload := prose(7, bigSize)
			if err := os.WriteFile(filepath.Join(dir, strconv.Itoa(pos)), []byte(payload), 0o600); err != nil {
				t.Fatal(err)
			}
			a.checkRebuilds(t)
			if _, err := CompactShadow(context.Background(), a.state); err != nil {
				t.Fatal(err)
			}
			if names := testutil.DirNames(t, dir); !slices.Equal(names, []string{packName}) {
				t.Fatalf("after the second compaction the shadow store holds %v", names)
			}
			a.checkRebuilds(t)
		})
	}
}

// firstShadowed returns the position of srv/big's payload in layer tb.
func firstShadowed(t *testing.T, a applied, tb []byte) int {
	t.Helper()
	f, err := os.Open(filepath.Join(a.state, tarsplitName(sha(tb))))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, _ := zstd.NewReader(f)
	defer zr.Close()
	dec := newEntryReader(zr)
	var e tsEntry
	for {
		if err := dec.next(&e); err != nil {
			t.Fatalf("no srv/big in the tar-split: %v", err)
		}
		if e.GetName() == "srv/big" {
			return e.Position
		}
	}
}

// State files written by this version before recipes existed, and those
// of layers whose recipe was never recorded, are read as they are: their
// compressed blobs are not reproducible, their tar layers are.
func TestStateWithoutRecipes(t *testing.T) {
	t.Parallel()
	tb := tarOf(t, F("a", prose(11, 300<<10), 0644))
	gzb := stdGzip(t, tb)
	a := applyBlobs(t, []blobLayer{{ocispec.MediaTypeImageLayerGzip, tb, gzb}, {ocispec.MediaTypeImageLayer, tb, tb}})
	b, err := os.ReadFile(filepath.Join(a.state, stateFile))
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		t.Fatal(err)
	}
	for _, l := range raw["layers"].([]any) {
		delete(l.(map[string]any), "recipe")
		delete(l.(map[string]any), "size")
	}
	b, _ = json.Marshal(raw)
	if err := os.WriteFile(filepath.Join(a.state, stateFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	_, err = RebuildBlob(context.Background(), a.state, a.target, sha(gzb), &out)
	wantKind(t, err, errdefs.ErrNotReproducible)
	if st := stateOf(t, a.state); st.Layers[1].Reproducible() != "tar" {
		t.Errorf("tar layer: %q", st.Layers[1].Reproducible())
	}
}
