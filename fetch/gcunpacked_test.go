package fetch_test

import (
	"context"
	"testing"

	"github.com/ocifetch/ocifetch/fetch"
)

// A tree that vouches again for a blob already dropped in its name must
// not be listed again: each gc --unpacked added it once more to the
// record, which grew with every run (and, past the record limit, would
// read as no record at all, the blob then missing).
func TestGCUnpackedListsATreeOnce(t *testing.T) {
	ctx := context.Background()
	a, b := randomBytes(1024, 91), randomBytes(1024, 92)
	src := newMemSource(a, b)
	r := testImage(t, src, a, b)
	s := openStore(t)
	if _, err := fetch.Pull(ctx, r, s); err != nil {
		t.Fatal(err)
	}
	u := fetch.Unpacked{Rootfs: "/rootfs", StateDir: t.TempDir(), Manifest: r.Manifest.Descriptor.Digest}
	for _, l := range r.Layers {
		u.Layers = append(u.Layers, l.Descriptor)
	}
	if err := s.RecordUnpacked(ctx, u); err != nil {
		t.Fatal(err)
	}
	// The tree makes layer a again, never layer b, which stays stored
	// and so has GC ask the checker on every run.
	check := func(context.Context, fetch.Unpacked) ([]fetch.LayerVerdict, error) {
		return []fetch.LayerVerdict{
			{Digest: r.Layers[0].Digest, Reproducible: true},
			{Digest: r.Layers[1].Digest, Reason: "no recipe"},
		}, nil
	}
	for run := 1; run <= 3; run++ {
		if _, err := s.GC(ctx, fetch.WithUnpacked(check)); err != nil {
			t.Fatal(err)
		}
		rec, ok, err := s.DroppedBlob(r.Layers[0].Digest)
		if err != nil || !ok {
			t.Fatalf("run %d: no record of the dropped blob (%v)", run, err)
		}
		want := fetch.Reliance{Rootfs: u.Rootfs, StateDir: u.StateDir}
		if len(rec.ReliesOn) != 1 || rec.ReliesOn[0] != want || !rec.Confirmed {
			t.Fatalf("run %d: the record relies on %v (confirmed %v), want [%v] confirmed", run, rec.ReliesOn, rec.Confirmed, want)
		}
	}
}
