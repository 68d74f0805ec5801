package fetch_test

import (
	"context"
	"testing"

	"github.com/ocifetch/ocifetch/fetch"
)

// A warm pull: every layer is in the store. What the store rules add to
// this path is one read of each layer's stamp.
func BenchmarkWarmPull(b *testing.B) {
	var layers [][]byte
	for i := 0; i < 20; i++ {
		layers = append(layers, randomBytes(4096, uint64(100+i)))
	}
	r := testImage(b, newMemSource(layers...), layers...)
	s := openStore(b)
	ctx := context.Background()
	if _, err := fetch.Pull(ctx, r, s); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := fetch.Pull(ctx, r, s); err != nil {
			b.Fatal(err)
		}
	}
}

// A cold pull of small blobs, where the per-blob costs (the stamp written
// after each blob is stored) weigh most.
func BenchmarkColdPullSmallBlobs(b *testing.B) {
	var layers [][]byte
	for i := 0; i < 20; i++ {
		layers = append(layers, randomBytes(4096, uint64(200+i)))
	}
	r := testImage(b, newMemSource(layers...), layers...)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s := openStore(b)
		b.StartTimer()
		if _, err := fetch.Pull(ctx, r, s); err != nil {
			b.Fatal(err)
		}
	}
}
