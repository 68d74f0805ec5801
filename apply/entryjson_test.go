package apply

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"

	"github.com/vbatts/tar-split/tar/storage"
)

// appendEntry must write exactly what json.Encoder writes, so that the
// metadata reads back the same with tar-split's own unpacker.
func TestAppendEntryMatchesEncodingJSON(t *testing.T) {
	names := []string{
		"usr/bin/env", "a b", "quote\"d", `back\slash`, "<html>&amp;", "tab\there", "nl\nx",
		"ctl\x01\x1f", "del\x7f", "é-ü", "日本語", "\u2028line\u2029sep", "bad\xffutf8", "\xc3", "",
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		b := make([]byte, rng.IntN(12))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		names = append(names, string(b))
	}
	var entries []storage.Entry
	for i, n := range names {
		f := storage.Entry{Type: storage.FileType, Size: int64(i * 1000), Payload: []byte{1, 2, 3, 4, 5, 6, 7, byte(i)}, Position: i}
		f.SetName(n)
		entries = append(entries, f,
			storage.Entry{Type: storage.SegmentType, Payload: []byte(n), Position: i + 1},
			storage.Entry{Type: storage.FileType, Name: n, Position: 1 << 30},
			storage.Entry{Type: storage.SegmentType, Payload: []byte{}, Position: 0})
	}
	var want bytes.Buffer
	enc := json.NewEncoder(&want)
	var got []byte
	for i := range entries {
		if err := enc.Encode(&entries[i]); err != nil {
			t.Fatal(err)
		}
		got = appendEntry(got, &entries[i])
	}
	if !bytes.Equal(got, want.Bytes()) {
		gl, wl := bytes.Split(got, []byte("\n")), bytes.Split(want.Bytes(), []byte("\n"))
		for i := range min(len(gl), len(wl)) {
			if !bytes.Equal(gl[i], wl[i]) {
				t.Fatalf("line %d:\n got %s\nwant %s", i, gl[i], wl[i])
			}
		}
		t.Fatalf("got %d lines, want %d", len(gl), len(wl))
	}
}
