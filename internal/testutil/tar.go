package testutil

import (
	"archive/tar"
	"io"
	"iter"
	"testing"
)

// TarEntries yields each header of the tar stream r with the reader of
// its payload (valid until the next entry), failing t on a stream Go's
// reader refuses.
func TarEntries(t testing.TB, r io.Reader) iter.Seq2[*tar.Header, *tar.Reader] {
	return func(yield func(*tar.Header, *tar.Reader) bool) {
		tr := tar.NewReader(r)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !yield(h, tr) {
				return
			}
		}
	}
}
