package apply

import (
	gotar "archive/tar"
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// FuzzApplyLayer applies arbitrary streams: whatever they contain, nothing
// may panic and nothing outside the target may change. The seeds are the
// attacks of TestConfinement; `go test -fuzz FuzzApplyLayer ./apply` looks
// for more.
func FuzzApplyLayer(f *testing.F) {
	seeds := [][]e{
		{F("../x", "x", 0644)},
		{S("a", "/"), F("a/x", "x", 0644)},
		{S("a", "../../.."), F("a/x", "x", 0644)},
		{S("a", "../outside/sentinel"), F("a", "x", 0644)},
		{H("h", "../outside/sentinel")},
		{S("d", "../outside"), W("d", "sentinel"), O("d")},
		{S(".", "../outside"), F("sentinel", "x", 0644)},
		{D("d", 0), F("d/f", "", 0), F("d/.wh...", "", 0644)},
		{Dev(gotar.TypeChar, "c", 0600, 1, 3), Fifo("p", 0600), H("h", "c")},
	}
	for _, s := range seeds {
		var b bytes.Buffer
		tw := gotar.NewWriter(&b)
		for _, x := range s {
			h := x.hdr
			tw.WriteHeader(&h)
			tw.Write([]byte(x.body))
		}
		tw.Close()
		f.Add(b.Bytes())
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := newSandbox(t)
		ApplyLayer(context.Background(), s.target, bytes.NewReader(data), WithDevices(DevicesSkip))
		s.checkOutside(t)
	})
}

// FuzzRebuild applies arbitrary streams with a state directory: whenever
// the apply succeeds, the layer must rebuild to exactly the bytes given and
// the tree must verify clean.
func FuzzRebuild(f *testing.F) {
	f.Add(sampleTar(f))
	f.Add(tarOf(f, F("x", "one", 0644), F("x", "two", 0644), H("h", "x"), F("x", "three", 0644)))
	f.Add(tarOf(f, D("d", 0755), F("d/f", "f", 0644), F("d", "file now", 0600), W("", "nothing")))
	f.Add(tarOf(f, F("a", "aaa", 0644))[:512+3])
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := applyRecorded(t, [][]byte{data}, WithDevices(DevicesSkip))
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := Rebuild(context.Background(), a.state, a.target, sha(data), &out); err != nil {
			t.Fatalf("rebuild: %v", err)
		}
		if !bytes.Equal(out.Bytes(), data) {
			t.Fatalf("rebuilt %d bytes, want %d", out.Len(), len(data))
		}
		if d, err := Verify(context.Background(), a.state, a.target); err != nil || len(d) != 0 {
			t.Fatalf("verify: %v %v", d, err)
		}
	})
}

// mutatedLayers are the layers FuzzRebuildMutated applies: files big and
// small, hard links, a symbolic link among parents that a later layer
// changes, a whiteout, an opaque directory and a file replaced twice.
func mutatedLayers(t testing.TB) [][]byte {
	big := strings.Repeat("0123456789abcdef", 8<<10) // 128 KiB
	return [][]byte{
		tarOf(t, D("usr", 0755), D("usr/bin", 0755), S("bin", "usr/bin"), F("usr/bin/app", big, 0755),
			F("etc/passwd", "root:x:0:0\n", 0644), H("etc/passwd-", "etc/passwd"), D("opq", 0755), F("opq/old", "old", 0644),
			F("f", "one", 0644)),
		tarOf(t, F("bin/sh", "#!shell\n", 0755), F("etc/passwd", "root:x:0:0\nuser:x:1:1\n", 0644), W("", "f"),
			O("opq"), F("opq/new", "new", 0644), F("g", strings.Repeat("g", 5000), 0600)),
		tarOf(t, D("bin", 0755), F("bin/tool", "tool", 0755), F("g", "g v3", 0600)),
	}
}

// FuzzRebuildMutated changes an applied tree the way a container could
// (overwrite, truncate, remove, replace by a link, rename, chmod, add)
// and rebuilds every layer: whatever the change, what a consumer receives
// is a prefix of the layer, and the whole layer only when the rebuild
// succeeds; a tree that verifies clean rebuilds every layer. Nothing may
// panic.
func FuzzRebuildMutated(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 10, 'X'})           // overwrite a byte of the first file
	f.Add([]byte{1, 1, 3})                 // truncate
	f.Add([]byte{2, 2, 0})                 // remove
	f.Add([]byte{3, 1, 2})                 // replace by a symbolic link
	f.Add([]byte{4, 0, 3})                 // rename over another
	f.Add([]byte{5, 3, 0o7})               // chmod
	f.Add([]byte{6, 0, 'n', 'e', 'w'})     // add a file
	f.Add([]byte{7, 0, 0, 0, 1, 5, 0})     // remove and make again, same content
	f.Add([]byte{0, 4, 200, 'Y', 1, 4, 9}) // two changes
	tars := mutatedLayers(f)
	f.Fuzz(func(t *testing.T, ops []byte) {
		a := mustApplyRecorded(t, tars)
		mutate(t, a.target, ops)
		drift, verr := Verify(context.Background(), a.state, a.target)
		clean := verr == nil && len(drift) == 0
		for i, want := range a.tars {
			var out bytes.Buffer
			err := Rebuild(context.Background(), a.state, a.target, sha(want), &out)
			got := out.Bytes()
			if len(got) > len(want) || !bytes.Equal(got, want[:len(got)]) {
				t.Fatalf("layer %d: the consumer received %d bytes that are not a prefix of the layer (ops %v)", i, len(got), ops)
			}
			if err == nil && len(got) != len(want) {
				t.Fatalf("layer %d: a clean end after %d of %d bytes", i, len(got), len(want))
			}
			if clean && err != nil {
				t.Fatalf("layer %d: the tree verifies clean but does not rebuild: %v (ops %v)", i, err, ops)
			}
		}
	})
}

// mutate applies ops to the tree: each op is a code, an index into the
// tree's paths (sorted) and arguments.
func mutate(t *testing.T, root string, ops []byte) {
	var paths []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != root {
			paths = append(paths, p)
		}
		return nil
	})
	if len(paths) == 0 {
		return
	}
	arg := func(i int) byte {
		if i < len(ops) {
			return ops[i]
		}
		return 0
	}
	for i := 0; i+1 < len(ops); i += 3 {
		p := paths[int(ops[i+1])%len(paths)]
		q := paths[int(arg(i+2))%len(paths)]
		switch ops[i] % 8 {
		case 0:
			if f, err := os.OpenFile(p, os.O_WRONLY|unix.O_NOFOLLOW, 0); err == nil {
				f.WriteAt([]byte{arg(i + 3)}, int64(arg(i+2))*37)
				f.Close()
			}
		case 1:
			os.Truncate(p, int64(arg(i+2)))
		case 2:
			os.RemoveAll(p)
		case 3:
			os.RemoveAll(p)
			os.Symlink(q, p)
		case 4:
			os.Rename(p, q)
		case 5:
			os.Chmod(p, fs.FileMode(arg(i+2))&0777)
		case 6:
			os.WriteFile(filepath.Join(filepath.Dir(p), "new"+string(rune('a'+arg(i+2)%26))), []byte{arg(i + 2)}, 0644)
		case 7:
			// Remove and make again with the same content, mode and times:
			// another inode, the same file.
			var st unix.Stat_t
			if unix.Lstat(p, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
				b, _ := os.ReadFile(p)
				os.Remove(p)
				os.WriteFile(p, b, fs.FileMode(st.Mode&0777))
				unix.UtimesNano(p, []unix.Timespec{st.Atim, st.Mtim})
			}
		}
	}
}
