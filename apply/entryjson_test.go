package apply

import (
	"bytes"
	"encoding/json"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/vbatts/tar-split/tar/storage"
)

// appendEntry must write exactly what json.Encoder writes, so that the
// metadata reads back the same with tar-split's own unpacker.
func TestAppendEntryMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	entries := awkwardEntries()
	js := make([]tsEntryJSON, len(entries))
	for i := range entries {
		js[i] = entries[i].json()
	}
	i := 0
	sameAsEncoder(t, js, func(b []byte, _ *tsEntryJSON) []byte {
		b = appendEntry(b, &entries[i])
		i++
		return b
	})
}

// sameAsEncoder checks that appending each entry with appendFn gives the
// bytes json.Encoder writes for it.
func sameAsEncoder[T any](t *testing.T, entries []T, appendFn func([]byte, *T) []byte) {
	t.Helper()
	var want bytes.Buffer
	enc := json.NewEncoder(&want)
	var got []byte
	for i := range entries {
		if err := enc.Encode(&entries[i]); err != nil {
			t.Fatal(err)
		}
		got = appendFn(got, &entries[i])
	}
	gl, wl := bytes.Split(got, []byte("\n")), bytes.Split(want.Bytes(), []byte("\n"))
	for i := range min(len(gl), len(wl)) {
		if !bytes.Equal(gl[i], wl[i]) {
			t.Fatalf("line %d:\n got %s\nwant %s", i, gl[i], wl[i])
		}
	}
	if len(gl) != len(wl) {
		t.Fatalf("got %d lines, want %d", len(gl), len(wl))
	}
}

// entryReader reads back what appendEntry wrote, and anything else
// json.Decoder reads line by line, as json.Decoder does.
func TestEntryReaderMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	entries := awkwardEntries()
	var fast []byte
	for i := range entries {
		fast = appendEntry(fast, &entries[i])
	}
	// Other shapes a packer could have written: keys in another order,
	// escapes where appendEntry writes bytes, spaces, no final newline.
	other := []byte(`{"position":3,"payload":"AAE=","size":7,"name":"x\/y","type":1}` + "\n" +
		`{ "type": 2, "payload": "aGk=", "position": 4 }` + "\n" +
		`{"type":1,"name":"caf\u00e9","size":2,"payload":null,"position":5}` + "\n" +
		`{"at":"u\u00e9","digest":"` + digestOf([]byte("x")).String() + `","type":1,"name":"x","size":1,"payload":"AA==","position":7}` + "\n" +
		`{"type":2,"payload":"","position":6}`)
	for _, stream := range [][]byte{fast, other} {
		want := json.NewDecoder(bytes.NewReader(stream))
		got := newEntryReader(bytes.NewReader(stream))
		var g tsEntry
		for i := 0; ; i++ {
			var wj tsEntryJSON
			var w tsEntry
			werr := want.Decode(&wj)
			if werr == nil && !w.fromJSON(&wj) {
				t.Fatalf("entry %d: bad digest %q", i, wj.Digest)
			}
			gerr := got.next(&g)
			if werr == io.EOF || gerr == io.EOF {
				if werr != gerr {
					t.Fatalf("entry %d: json says %v, entryReader %v", i, werr, gerr)
				}
				break
			}
			if werr != nil || gerr != nil {
				t.Fatalf("entry %d: %v, %v", i, werr, gerr)
			}
			if g.Type != w.Type || g.Name != w.Name || !bytes.Equal(g.NameRaw, w.NameRaw) || g.Size != w.Size ||
				!bytes.Equal(g.Payload, w.Payload) || (g.Payload == nil) != (w.Payload == nil) || g.Position != w.Position ||
				g.hasSum != w.hasSum || g.sum != w.sum || g.at != w.at {
				t.Fatalf("entry %d: got %+v, want %+v", i, g, w)
			}
		}
	}
}

// awkwardEntries are tar-split entries with names that need escaping or
// are not UTF-8, empty payloads and large positions.
func awkwardEntries() []tsEntry {
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
	var entries []tsEntry
	for i, n := range names {
		f := tsEntry{Entry: storage.Entry{Type: storage.FileType, Size: int64(i * 1000), Payload: []byte{1, 2, 3, 4, 5, 6, 7, byte(i)}, Position: i}}
		f.SetName(n)
		if i%2 == 0 {
			f.sum, f.hasSum = digestOf([]byte(n)), true
		}
		if i%3 == 0 {
			f.at = "at/" + n
		}
		entries = append(entries, f,
			tsEntry{Entry: storage.Entry{Type: storage.SegmentType, Payload: []byte(n), Position: i + 1}},
			tsEntry{Entry: storage.Entry{Type: storage.FileType, Name: n, Position: 1 << 30}},
			tsEntry{Entry: storage.Entry{Type: storage.SegmentType, Payload: []byte{}, Position: 0}})
	}
	return entries
}

func TestAppendTreeEntryMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	var entries []treeEntry
	for i, se := range awkwardEntries() {
		n := se.GetName()
		e := treeEntry{Type: []string{"file", "dir", "symlink", "char"}[i%4], Mode: uint32(i % 07777), UID: uint32(i * 7), GID: uint32(i % 3)}
		if i%5 == 0 {
			e.PathRaw = []byte(n)
		} else {
			e.Path = n
		}
		switch e.Type {
		case "file":
			e.Size, e.Digest, e.Mtime = int64(i*100), digestOf([]byte(n)).String(), int64(i)*1_000_000_007-5e17
			if i%7 == 0 {
				e.Hardlink = n + "/first"
				if i%2 == 0 {
					e.Hardlink, e.HardlinkRaw = "", []byte(n+"\xfe")
				}
			}
		case "dir":
			e.Mtime = int64(i) * 3
		case "symlink":
			e.Target = n + "/../t"
			if i%3 == 0 {
				e.Target, e.TargetRaw = "", []byte(n+"\xff")
			}
		case "char":
			e.Rdev = uint64(i) << 8
		}
		if i%4 == 1 {
			e.Xattrs = []xattr{{Name: "user.a", Value: []byte{}}, {NameRaw: []byte("user.\xff"), Value: []byte(n)}, {Name: "security." + n, Value: []byte{0, 1}}}
		}
		entries = append(entries, e)
	}
	sameAsEncoder(t, entries, appendTreeEntry)
}
