package main

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocifetch/ocifetch/internal/testutil"
)

// TestManyFilesImageHasWhiteoutsAndOpaqueDirs builds image a from a small
// synthetic tree and checks what the benchmark relies on: the upper
// layers modify files, whiteout files and a directory, and replace a
// directory (opaque), and every whiteout names something that exists.
func TestManyFilesImageHasWhiteoutsAndOpaqueDirs(t *testing.T) {
	t.Parallel()
	tree := t.TempDir()
	for d := 0; d < 8; d++ {
		for s := 0; s < 3; s++ {
			dir := filepath.Join(tree, fmt.Sprintf("pkg%d", d), fmt.Sprintf("sub%d", s))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for f := 0; f < 20; f++ {
				if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%02d.go", f)), []byte("package x\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := os.Symlink("pkg0/sub0/f00.go", filepath.Join(tree, "link")); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "a")
	if err := imagesCmd([]string{"-image", "a", "-tree", tree, "-out", out}); err != nil {
		t.Fatal(err)
	}

	exists := map[string]bool{} // the tree as the layers so far make it
	var whiteouts, opaques, modified int
	for i := 1; i <= 3; i++ {
		f, err := os.Open(filepath.Join(out, "tars", fmt.Sprintf("%02d.tar", i)))
		if err != nil {
			t.Fatal(err)
		}
		for h, tr := range testutil.TarEntries(t, f) {
			name := strings.TrimSuffix(h.Name, "/")
			if parent := path.Dir(name); parent != "." && !exists[parent] && !strings.HasPrefix(treePrefix, parent) {
				t.Errorf("layer %d: %s comes before its parent", i, name)
			}
			base := path.Base(name)
			switch {
			case base == ".wh..wh..opq":
				opaques++
				dir := path.Dir(name)
				for p := range exists {
					if strings.HasPrefix(p, dir+"/") {
						delete(exists, p)
					}
				}
			case strings.HasPrefix(base, ".wh."):
				whiteouts++
				victim := path.Join(path.Dir(name), strings.TrimPrefix(base, ".wh."))
				if !exists[victim] {
					t.Errorf("layer %d: whiteout of %s, which does not exist", i, victim)
				}
				for p := range exists {
					if p == victim || strings.HasPrefix(p, victim+"/") {
						delete(exists, p)
					}
				}
			default:
				if i > 1 && h.Typeflag == tar.TypeReg && exists[name] {
					b, _ := io.ReadAll(tr)
					if strings.Contains(string(b), "modified by the ocifetch benchmark") {
						modified++
					}
				}
				exists[name] = true
			}
		}
		f.Close()
	}
	if whiteouts < 4 || opaques != 2 || modified < 10 {
		t.Errorf("upper layers: %d whiteouts, %d opaque directories, %d modified files; want at least 4, 2, 10", whiteouts, opaques, modified)
	}
	tsv, err := os.ReadFile(filepath.Join(out, "layers.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(tsv), "\n"); n != 3 {
		t.Errorf("layers.tsv has %d lines, want 3", n)
	}
}

func TestMedian(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}
