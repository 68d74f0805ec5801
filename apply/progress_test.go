package apply

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	gotar "archive/tar"

	"github.com/opencontainers/go-digest"

	"github.com/ocifetch/ocifetch/errdefs"
)

// WithProgress: each layer reports its start (nothing applied yet), its
// progress with counts that never go back, and, once verified, one Done
// event whose counts are the layer report's; a layer that fails gets no
// Done. The report keeps each layer's duration.
func TestProgressEvents(t *testing.T) {
	mk := func(n int, size int) (Layer, []byte) {
		var buf bytes.Buffer
		tw := gotar.NewWriter(&buf)
		for i := 0; i < n; i++ {
			tw.WriteHeader(&gotar.Header{Typeflag: gotar.TypeReg, Name: fmt.Sprintf("f%04d", i), Mode: 0o644, Size: int64(size)})
			tw.Write(make([]byte, size))
		}
		tw.Close()
		data := buf.Bytes()
		return Layer{MediaType: mtTar, DiffID: digest.FromBytes(data),
			Open: func(context.Context) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }}, data
	}
	l1, _ := mk(3000, 10)
	l2, _ := mk(2, 100)
	var events []Progress
	target := t.TempDir()
	rep, err := Apply(context.Background(), target, []Layer{l1, l2}, WithImage("reg.test/app:1", ""), WithProgress(func(p Progress) { events = append(events, p) }))
	if err != nil {
		t.Fatal(err)
	}
	var done []Progress
	last := map[int]Progress{}
	for _, p := range events {
		if p.Reference != "reg.test/app:1" || p.Layers != 2 || p.Layer < 1 || p.Layer > 2 {
			t.Errorf("event %+v", p)
		}
		if prev, ok := last[p.Layer]; !ok {
			if p.Entries != 0 || p.Bytes != 0 || p.Done {
				t.Errorf("the first event of layer %d is not its start: %+v", p.Layer, p)
			}
		} else if prev.Done || p.Entries < prev.Entries || p.Bytes < prev.Bytes || p.Elapsed < prev.Elapsed {
			t.Errorf("layer %d went back or went on after Done: %+v then %+v", p.Layer, prev, p)
		}
		last[p.Layer] = p
		if p.Done {
			done = append(done, p)
		}
	}
	if len(done) != 2 {
		t.Fatalf("%d Done events, want one per layer: %+v", len(done), events)
	}
	for i, p := range done {
		lr := rep.Layers[i]
		if p.Layer != i+1 || p.Entries != lr.Entries || p.Bytes != lr.Bytes || p.Elapsed != lr.Duration || lr.Duration <= 0 {
			t.Errorf("layer %d: Done %+v, report %d entries %d bytes in %v", i+1, p, lr.Entries, lr.Bytes, lr.Duration)
		}
	}
	if rep.Layers[0].Entries != 3000 || rep.Layers[1].Bytes != 200 {
		t.Errorf("report %+v", rep.Layers)
	}

	// A layer whose diffID does not match: started, never Done.
	bad, _ := mk(5, 1)
	bad.DiffID = digest.FromString("something else")
	events = nil
	_, err = Apply(context.Background(), filepath.Join(t.TempDir(), "t"), []Layer{l2, bad}, WithProgress(func(p Progress) { events = append(events, p) }))
	if !errors.Is(err, errdefs.ErrDigestMismatch) {
		t.Fatalf("err %v", err)
	}
	for _, p := range events {
		if p.Layer == 2 && p.Done {
			t.Errorf("the failed layer reported Done: %+v", p)
		}
	}
	if len(events) < 3 || !events[1].Done || events[len(events)-1].Layer != 2 {
		t.Errorf("events of a failed apply: %+v", events)
	}
}

// BenchmarkApplySmallFilesProgress is BenchmarkApplySmallFiles with a
// progress callback: the cost of reporting (a clock read per entry).
func BenchmarkApplySmallFilesProgress(b *testing.B) {
	l := smallFilesLayer(b)
	base := benchDir(b)
	var n int
	b.SetBytes(l.Size)
	for i := 0; b.Loop(); i++ {
		target := filepath.Join(base, fmt.Sprint(i))
		if _, err := Apply(context.Background(), target, []Layer{l}, WithProgress(func(Progress) { n++ })); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(target)
		b.StartTimer()
	}
}
