package apply

import (
	gotar "archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vbatts/tar-split/archive/tar"
	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/testutil"
)

// A hole accounted for by zeros gives the digest of the zeros written,
// wherever it starts and however long it is.
func TestFileHashZeros(t *testing.T) {
	t.Parallel()
	for _, prefix := range []string{"", "a", strings.Repeat("x", digestBlock-1), strings.Repeat("y", digestBlock+5)} {
		for _, n := range []int64{0, 1, 2, 7, 4096, digestBlock - 1, digestBlock, 3*digestBlock + 17, (zeroRun+3)*digestBlock + 1} {
			h := newFileHash()
			h.Write([]byte(prefix))
			h.zeros(n)
			h.Write([]byte("tail"))
			want := digestOf(append(append([]byte(prefix), make([]byte, n)...), "tail"...))
			if got := h.Sum(); got != want {
				t.Errorf("%d bytes + %d zeros: %s, want %s", len(prefix), n, got, want)
			}
		}
	}
	// Written in pieces of any size, the same.
	b := bytes.Repeat([]byte("0123456789abcdef"), 3*digestBlock/16+7)
	h := newFileHash()
	for i := 0; i < len(b); i += 1000 {
		h.Write(b[i:min(i+1000, len(b))])
	}
	if h.Sum() != digestOf(b) {
		t.Error("digest depends on how the content was written")
	}
}

// testdataTar reads one of Go's archive/tar test archives.
func testdataTar(t *testing.T, name string) []byte {
	t.Helper()
	b, _, err := decodeTar(filepath.Join(goroot(), "src/archive/tar/testdata", name))
	if err != nil {
		testutil.Missing(t, "Go's tar testdata: %v", err)
	}
	return b
}

// The 60 GB files of Go's big sparse archives (6 fragments of 100 bytes,
// each after a hole of almost 1e10 bytes) are written as holes: the
// content is right, the disk usage a few blocks, and the layer rebuilds and
// verifies. Written densely, each would need 60 GB and minutes.
func TestSparseEntriesStaySparse(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"gnu-sparse-big.tar.base64", "pax-sparse-big.tar.base64"} {
		t.Run(name, func(t *testing.T) {
			b := testdataTar(t, name)
			// Without the sparse path, the apply would write 60 GB.
			requireSparseSource(t, b)
			a := mustApplyRecorded(t, [][]byte{b})
			names, err := os.ReadDir(a.target)
			if err != nil || len(names) != 1 {
				t.Fatalf("tree: %v, %v", names, err)
			}
			p := filepath.Join(a.target, names[0].Name())
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				t.Fatal(err)
			}
			if st.Size != 6e10 {
				t.Errorf("size %d, want 6e10", st.Size)
			}
			if used := st.Blocks * 512; used > 1<<20 {
				t.Errorf("%d bytes on disk for 600 bytes of data", used)
			}
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			frag := make([]byte, 200)
			want := strings.Repeat("\x00", 100) + strings.Repeat("0123456789", 10)
			for k := int64(1); k <= 6; k++ {
				if _, err := f.ReadAt(frag, k*1e10-200); err != nil && err != io.EOF {
					t.Fatal(err)
				}
				if string(frag) != want {
					t.Errorf("fragment %d: %q", k, frag)
				}
			}
			a.checkRebuilds(t)
			a.noDrift(t)
			// Verify reads the file's data regions only, and still sees a
			// change in them.
			g, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			g.WriteAt([]byte("X"), 3e10-50)
			g.Close()
			unix.UtimesNano(p, []unix.Timespec{st.Atim, st.Mtim})
			d, err := Verify(t.Context(), a.state, a.target)
			if err != nil || len(d) != 1 || d[0].Kind != DriftChanged || strings.Join(d[0].Changes, ",") != "content" {
				t.Errorf("Verify after one byte changed: %+v, %v", d, err)
			}
		})
	}
}

// The small sparse files of Go's testdata (old GNU, PAX 0.0, 0.1, 1.0,
// holes at the start, the middle and the end, files that are all hole)
// have the content Go's reader gives them.
func TestSparseContent(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"sparse-formats.tar", "gnu-nil-sparse-data.tar", "gnu-nil-sparse-hole.tar", "pax-nil-sparse-data.tar", "pax-nil-sparse-hole.tar"} {
		t.Run(name, func(t *testing.T) {
			b := testdataTar(t, name)
			a := mustApplyRecorded(t, [][]byte{b})
			sparse := 0
			for h, tr := range testutil.TarEntries(t, bytes.NewReader(b)) {
				if h.Typeflag != gotar.TypeReg && h.Typeflag != gotar.TypeGNUSparse {
					continue
				}
				want, err := io.ReadAll(tr)
				if err != nil {
					t.Fatal(err)
				}
				got, err := os.ReadFile(filepath.Join(a.target, h.Name))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s: %d bytes, want %d (Go's reader)", h.Name, len(got), len(want))
				}
				if isSparseGo(h) {
					sparse++
				}
			}
			if sparse == 0 {
				t.Errorf("no sparse entry in %s", name)
			}
			a.checkRebuilds(t)
			a.noDrift(t)
		})
	}
}

func isSparseGo(h *gotar.Header) bool {
	if h.Typeflag == gotar.TypeGNUSparse {
		return true
	}
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// requireSparseSource fails unless the applier can reach the tar reader's
// hole-skipping writer for the first entry of b, which must be sparse.
func requireSparseSource(t *testing.T, b []byte) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	h, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	if !isSparse(h) {
		t.Fatalf("%s is not sparse", h.Name)
	}
	if sparseSource(tr) == nil {
		t.Fatal("the tar reader's sparse writer is out of reach: sparse entries would be written densely")
	}
}

// Only sparse entries get the sparse writer.
func TestSparseSourceOnlyForSparse(t *testing.T) {
	t.Parallel()
	tr := tar.NewReader(bytes.NewReader(tarOf(t, F("a", "aaa", 0644))))
	if _, err := tr.Next(); err != nil {
		t.Fatal(err)
	}
	if sparseSource(tr) != nil {
		t.Error("sparse writer for a regular entry")
	}
	requireSparseSource(t, testdataTar(t, "pax-nil-sparse-hole.tar"))
}

// A sparse entry whose data the stream cuts short is layer_invalid, as a
// regular file's.
func TestSparseTruncated(t *testing.T) {
	t.Parallel()
	b := testdataTar(t, "pax-sparse-big.tar.base64")
	// Cut inside the 600 bytes of data fragments.
	data := bytes.Index(b, []byte("0123456789"))
	for _, cut := range []int{data + 10, data + 300, data + 599} {
		_, err := ApplyLayer(t.Context(), t.TempDir(), bytes.NewReader(b[:cut]))
		wantKind(t, err, errdefs.ErrLayerInvalid)
		if !strings.Contains(err.Error(), "cut short") {
			t.Errorf("cut at %d: %v", cut, err)
		}
	}
}
