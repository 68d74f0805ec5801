package main

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
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

// Image e is image a with plain tar layers: each blob is its layer's tar,
// byte for byte, under the uncompressed media type.
func TestUncompressedImage(t *testing.T) {
	tree := t.TempDir()
	for d := 0; d < 4; d++ {
		dir := filepath.Join(tree, fmt.Sprintf("pkg%d", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for f := 0; f < 30; f++ {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%02d.go", f)), []byte("package x\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	defer func(p string) { treePrefix = p }(treePrefix)
	out := filepath.Join(t.TempDir(), "e")
	if err := imagesCmd([]string{"-image", "e", "-tree", tree, "-out", out}); err != nil {
		t.Fatal(err)
	}
	tsv, err := os.ReadFile(filepath.Join(out, "layers.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(tsv)), "\n")
	if len(lines) != 3 {
		t.Fatalf("layers.tsv has %d lines, want 3", len(lines))
	}
	for _, l := range lines {
		fl := strings.Split(l, "\t")
		if fl[0] != "application/vnd.oci.image.layer.v1.tar" || fl[1] != fl[3] || fl[2] != fl[4] {
			t.Errorf("layer %q: want the tar's media type, digest and size", l)
		}
		blob, _ := os.ReadFile(filepath.Join(out, fl[5]))
		tarData, _ := os.ReadFile(filepath.Join(out, fl[6]))
		if len(blob) == 0 || string(blob) != string(tarData) {
			t.Errorf("layer %s: the blob is not the tar", fl[1])
		}
	}
	if _, comp, _, _, err := layoutSizes(out); err != nil || comp != "none" {
		t.Errorf("layoutSizes: %q, %v; want none", comp, err)
	}
}

// Image f's second layer deletes the manual pages and message catalogs
// of a root filesystem and adds its five largest libraries again; its
// paths have no prefix.
func TestDebianLikeImage(t *testing.T) {
	tree := t.TempDir()
	files := map[string]int{"etc/passwd": 10, "usr/share/man/man1/ls.1.gz": 100, "usr/share/locale/de/LC_MESSAGES/x.mo": 100, "usr/bin/ls": 50}
	for i := 0; i < 7; i++ {
		files[fmt.Sprintf("usr/lib/x86_64-linux-gnu/lib%d.so.1", i)] = 1000 * (i + 1)
	}
	for p, n := range files {
		if err := os.MkdirAll(filepath.Join(tree, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tree, p), []byte(strings.Repeat("x", n)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	defer func(p string) { treePrefix = p }(treePrefix)
	out := filepath.Join(t.TempDir(), "f")
	if err := imagesCmd([]string{"-image", "f", "-tree", tree, "-out", out}); err != nil {
		t.Fatal(err)
	}
	names := func(i int) []string {
		f, err := os.Open(filepath.Join(out, "tars", fmt.Sprintf("%02d.tar", i)))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var ns []string
		tr := tar.NewReader(f)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				return ns
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Typeflag == tar.TypeReg {
				ns = append(ns, h.Name)
			}
		}
	}
	if got := names(1); len(got) != len(files) || !slices.Contains(got, "etc/passwd") {
		t.Errorf("layer 1: %q", got)
	}
	want := []string{"usr/lib/x86_64-linux-gnu/lib2.so.1", "usr/lib/x86_64-linux-gnu/lib3.so.1", "usr/lib/x86_64-linux-gnu/lib4.so.1",
		"usr/lib/x86_64-linux-gnu/lib5.so.1", "usr/lib/x86_64-linux-gnu/lib6.so.1", "usr/share/.wh.locale", "usr/share/.wh.man"}
	if got := names(2); !slices.Equal(got, want) {
		t.Errorf("layer 2: %q, want %q", got, want)
	}
}
