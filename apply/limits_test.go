package apply

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/testutil"
)

func TestMaxLayerBytes(t *testing.T) {
	t.Parallel()
	tb := tarOf(t, D("d", 0755), F("d/f", strings.Repeat("x", testutil.Scale(1<<20, 64<<10)), 0644))
	// 16 MiB of zeros (2 in the short tier): a gzip blob of about 16 KiB.
	bomb := tarOf(t, F("zeros", string(make([]byte, testutil.Scale(16<<20, 2<<20))), 0644))
	trailing := append(append([]byte{}, tb...), make([]byte, 4096)...)
	cases := []struct {
		name  string
		layer Layer
		limit int64
		kind  errdefs.Kind // "" for success
	}{
		{"no limit", blob(t, mtGzip, tb), 0, ""},
		{"exactly the limit", blob(t, mtGzip, tb), int64(len(tb)), ""},
		{"one byte over", blob(t, mtGzip, tb), int64(len(tb)) - 1, errdefs.ErrTooLarge},
		{"decompression bomb", blob(t, mtGzip, bomb), 1 << 20, errdefs.ErrTooLarge},
		{"zstd bomb", blob(t, mtZstd, bomb), 1 << 20, errdefs.ErrTooLarge},
		{"past the end-of-archive blocks", blob(t, mtTar, trailing), int64(len(tb)), errdefs.ErrTooLarge},
		{"in a header", blob(t, mtTar, tb), 100, errdefs.ErrTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			target := filepath.Join(dir, "rootfs")
			os.Mkdir(target, 0755)
			state := filepath.Join(dir, "state")
			rep, err := Apply(context.Background(), target, []Layer{c.layer}, WithMaxLayerBytes(c.limit), WithStateDir(state))
			if c.kind == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantKind(t, err, c.kind)
			if !strings.Contains(err.Error(), "limit of") {
				t.Errorf("error %q does not name the limit", err)
			}
			if got := rep.Layers[0].TarBytes; got > c.limit {
				t.Errorf("%d bytes read, limit %d", got, c.limit)
			}
			// The failed-unpack rule: the target is as it was (empty),
			// the state it made is gone.
			if ents, err := os.ReadDir(target); err != nil || len(ents) != 0 {
				t.Errorf("target after the failure: %v, %v", ents, err)
			}
			if _, err := os.Lstat(state); !os.IsNotExist(err) {
				t.Errorf("state directory left behind: %v", err)
			}
		})
	}
	t.Run("total", func(t *testing.T) {
		t.Parallel()
		l1, l2 := blob(t, mtGzip, tb), blob(t, mtZstd, bomb)
		for _, c := range []struct {
			limit int64
			kind  errdefs.Kind
		}{
			{int64(len(tb) + len(bomb)), ""},
			{int64(len(tb) + len(bomb) - 1), errdefs.ErrTooLarge},
			{int64(len(tb)), errdefs.ErrTooLarge},
			{int64(len(tb)) - 1, errdefs.ErrTooLarge},
		} {
			dir := t.TempDir()
			target := filepath.Join(dir, "rootfs")
			rep, err := Apply(context.Background(), target, []Layer{l1, l2}, WithMaxTotalBytes(c.limit), WithStateDir(filepath.Join(dir, "state")))
			if c.kind == "" {
				if err != nil {
					t.Fatalf("limit %d: %v", c.limit, err)
				}
				continue
			}
			wantKind(t, err, c.kind)
			var read int64
			for _, l := range rep.Layers {
				read += l.TarBytes
			}
			if read > c.limit || !strings.Contains(err.Error(), "limit") {
				t.Errorf("limit %d: %d bytes read, %v", c.limit, read, err)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("limit %d: left behind %v", c.limit, ents)
			}
		}
		_, err := Apply(context.Background(), t.TempDir(), nil, WithMaxTotalBytes(-1))
		wantKind(t, err, errdefs.ErrInvalidArgument)
	})
	t.Run("ApplyLayer", func(t *testing.T) {
		_, err := ApplyLayer(context.Background(), t.TempDir(), bytes.NewReader(bomb), WithMaxLayerBytes(1<<20))
		wantKind(t, err, errdefs.ErrTooLarge)
	})
	t.Run("negative", func(t *testing.T) {
		_, err := Apply(context.Background(), t.TempDir(), nil, WithMaxLayerBytes(-1))
		wantKind(t, err, errdefs.ErrInvalidArgument)
	})
}

func TestMaxEntries(t *testing.T) {
	t.Parallel()
	tb := tarOf(t, D("d", 0755), F("d/f", "f", 0644), S("d/l", "f"), W("", "gone"))
	for _, c := range []struct {
		limit int64
		kind  errdefs.Kind
	}{{0, ""}, {4, ""}, {100, ""}, {3, errdefs.ErrTooLarge}, {1, errdefs.ErrTooLarge}} {
		rep, err := ApplyLayer(context.Background(), t.TempDir(), bytes.NewReader(tb), WithMaxEntries(c.limit))
		if c.kind == "" {
			if err != nil || rep.Entries != 4 {
				t.Errorf("limit %d: %v, %+v", c.limit, err, rep)
			}
			continue
		}
		wantKind(t, err, c.kind)
		if !strings.Contains(err.Error(), "limit of") {
			t.Errorf("error %q does not name the limit", err)
		}
		if rep.Entries != int(c.limit)+1 {
			t.Errorf("limit %d: stopped after %d entries", c.limit, rep.Entries)
		}
	}
	_, err := ApplyLayer(context.Background(), t.TempDir(), bytes.NewReader(tb), WithMaxEntries(-1))
	wantKind(t, err, errdefs.ErrInvalidArgument)
}

// A limit's error says what to do: which flag (and option) raises it.
func TestLimitErrorsNameTheirFlag(t *testing.T) {
	t.Parallel()
	tb := tarOf(t, D("d", 0755), F("d/f", strings.Repeat("x", 4096), 0644))
	ctx := context.Background()
	_, err := ApplyLayer(ctx, t.TempDir(), bytes.NewReader(tb), WithMaxLayerBytes(1024))
	wantKind(t, err, errdefs.ErrTooLarge)
	if !strings.Contains(err.Error(), "--max-layer-bytes") {
		t.Errorf("layer bytes: %q names no flag", err)
	}
	_, err = ApplyLayer(ctx, t.TempDir(), bytes.NewReader(tb), WithMaxEntries(1))
	wantKind(t, err, errdefs.ErrTooLarge)
	if !strings.Contains(err.Error(), "--max-layer-entries") {
		t.Errorf("entries: %q names no flag", err)
	}
	dir := t.TempDir()
	_, err = Apply(ctx, filepath.Join(dir, "rootfs"), []Layer{blob(t, mtGzip, tb), blob(t, mtGzip, tb)},
		WithMaxTotalBytes(int64(len(tb))+1024), WithStateDir(filepath.Join(dir, "state")))
	wantKind(t, err, errdefs.ErrTooLarge)
	if !strings.Contains(err.Error(), "--max-total-bytes") {
		t.Errorf("total: %q names no flag", err)
	}
}
