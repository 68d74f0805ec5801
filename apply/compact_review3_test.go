package apply

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// A forged pack whose header claims 1<<26 payloads (14 KB of zstd) made
// rebuild hold 4.1 GB for two minutes before it found the pack short:
// the header is read whole. It is refused now at once, with little
// memory; a header within the bound still reads.
func TestForgedPackHeaderIsBounded(t *testing.T) {
	pairs := bytes.Repeat([]byte{1, 0}, 1<<16)
	forge := func(n uint64) string {
		b := zstdRepeated(t, binary.AppendUvarint([]byte(packMagic), n), pairs, int(n>>16))
		p := filepath.Join(t.TempDir(), packName)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	open := func(p string) (*packReader, uint64, error) {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		var pr *packReader
		alloc := allocatedBy(func() { pr, err = openPack(f) })
		if err != nil {
			f.Close()
		}
		return pr, alloc, err
	}
	if _, alloc, err := open(forge(1 << 26)); err == nil || alloc > 256<<20 {
		t.Errorf("a header of 1<<26 payloads: err %v, %d MB allocated", err, alloc>>20)
	}
	pr, _, err := open(forge(1 << 16))
	if err != nil {
		t.Fatalf("a header of 1<<16 payloads: %v", err)
	}
	defer pr.close()
	if len(pr.pos) != 1<<16 || pr.pos[len(pr.pos)-1] != 1<<16 {
		t.Errorf("%d positions, the last %d", len(pr.pos), pr.pos[len(pr.pos)-1])
	}
}
