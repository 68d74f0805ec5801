package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/internal/testutil/testregistry"
)

// rebuild --compressed --layer N -o FILE takes FILE as plain rebuild does
// (TestCLIE2ERebuildOutputKinds): a FIFO or a character device is written
// through, a symbolic link followed, "-" is standard output. Before, the
// blob was renamed over whatever FILE was: a FIFO became a regular file
// (its reader hung for ever), as root -o /dev/null replaced the device
// with a regular file, and -o - made a file named "-".
func TestCLIE2ERebuildCompressedOutputKinds(t *testing.T) {
	u := unpackLayers(t, layerOf(t, efile("etc/motd", "hello\n", 0o644), efile("bin/app", "app app app\n", 0o755)))
	blob, err := os.ReadFile(blobFile(u.store, layerDigests(t, u.rootfs)[0].Digest))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rebuildTo := func(out string) cliRun {
		t.Helper()
		return runBuilt(t, u.env, "rebuild", "--compressed", "--layer", "1", "-o", out, u.rootfs)
	}
	typeOf := func(p string) uint32 {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		return st.Mode & unix.S_IFMT
	}
	t.Run("FIFO", func(t *testing.T) {
		fifo := filepath.Join(dir, "fifo")
		if err := unix.Mkfifo(fifo, 0o600); err != nil {
			t.Fatal(err)
		}
		got := make(chan []byte, 1)
		go func() {
			f, err := os.Open(fifo)
			if err != nil {
				got <- nil
				return
			}
			b, _ := io.ReadAll(f)
			f.Close()
			got <- b
		}()
		if r := rebuildTo(fifo); r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		if typeOf(fifo) != unix.S_IFIFO {
			// (The reader waits for ever on the FIFO that was replaced.)
			t.Fatal("the FIFO was replaced by a regular file")
		}
		if b := receive(t, got); !bytes.Equal(b, blob) {
			t.Errorf("the reader got %d bytes, not the blob's %d", len(b), len(blob))
		}
	})
	t.Run("character device", func(t *testing.T) {
		requireRootCLI(t)
		dev := filepath.Join(dir, "null")
		if err := unix.Mknod(dev, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatal(err)
		}
		if r := rebuildTo(dev); r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		var st unix.Stat_t
		unix.Lstat(dev, &st)
		if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) {
			t.Errorf("the device is now mode %o rdev %x", st.Mode, st.Rdev)
		}
	})
	t.Run("symbolic link", func(t *testing.T) {
		file := filepath.Join(dir, "out.tar.gz")
		os.WriteFile(file, []byte("old"), 0o600)
		os.Symlink("out.tar.gz", filepath.Join(dir, "link"))
		if r := rebuildTo(filepath.Join(dir, "link")); r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		if b, _ := os.ReadFile(file); !bytes.Equal(b, blob) || typeOf(filepath.Join(dir, "link")) != unix.S_IFLNK {
			t.Errorf("through a link to a file: %d bytes", len(b))
		}
	})
	t.Run("standard output", func(t *testing.T) {
		cwd := t.TempDir()
		cmd := exec.Command(builtCLI(t), "rebuild", "--compressed", "--layer", "1", "-o", "-", u.rootfs)
		cmd.Env, cmd.Dir = u.env, cwd
		out, err := cmd.Output()
		if err != nil || !bytes.Equal(out, blob) {
			t.Errorf("-o -: %v, %d bytes on standard output, want the blob's %d", err, len(out), len(blob))
		}
		if names := dirEntries(cwd); len(names) != 0 {
			t.Errorf("-o - wrote files %q", names)
		}
	})
}

// A layer whose start a candidate recipe reproduces, but not the whole
// (here two gzip members, each Go's default: the first member matches
// Go's level 6), unpacked with --keep-blobs=false: its blob relies on
// the candidate. Before, images said "kept: recipe" for ever, even
// after gc --unpacked, while no tree could make the blob (rebuild
// --compressed: not_reproducible): the image was lost without anything
// saying so. gc --unpacked now confirms the candidates of blobs it did
// not keep, and images counts a tree only for the layers its state can
// still make: the image is "incomplete". The other layer, whose
// candidate is right, is recorded as confirmed.
func TestCLIE2EUnconfirmedCandidateIsNotKept(t *testing.T) {
	t.Parallel()
	reg := testregistry.Start(t)
	src := filepath.Join(goroot(t), "src")
	tarA := treeTarFile(t, filepath.Join(src, "encoding"), "usr/local/go/src/encoding", "")
	tarB := treeTarFile(t, filepath.Join(src, "regexp"), "usr/local/go/src/regexp", "")
	half := len(tarA) / 2 / 512 * 512
	twoMembers := append(gzipBytes(t, tarA[:half]), gzipBytes(t, tarA[half:])...)
	repo := reg.Host + "/multi/member"
	pushRawImage(t, repo, "1", "", []rawLayer{
		{data: twoMembers, mediaType: ocispec.MediaTypeImageLayerGzip, diffID: digest.FromBytes(tarA)},
		{data: gzipBytes(t, tarB), mediaType: ocispec.MediaTypeImageLayerGzip},
	}, nil)
	env := cliEnv(t)
	work := t.TempDir()
	store, rootfs := filepath.Join(work, "store"), filepath.Join(work, "rootfs")
	mustRun(t, env, "unpack", "--quiet", "--keep-blobs=false", "--store", store, repo+":1", rootfs)
	layers := layerDigests(t, rootfs)
	if r := runBuilt(t, env, "rebuild", "--compressed", "--check", "--all", rootfs); r.code != exitVerification {
		t.Fatalf("rebuild --compressed of the two-member layer: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
	mustRun(t, env, "gc", "--unpacked", "--store", store)
	if im := imagesKept(t, env, store); im.Kept != "incomplete" {
		t.Errorf("images after gc --unpacked says kept %q, want incomplete: no tree makes layer 1 (%+v)", im.Kept, im.Rootfs)
	}
	confirmed := func(d digest.Digest) bool {
		b, err := os.ReadFile(filepath.Join(store, ".ocifetch", "dropped", d.Algorithm().String(), d.Encoded()+".json"))
		if err != nil {
			t.Fatal(err)
		}
		var rec struct{ Confirmed bool }
		if err := json.Unmarshal(b, &rec); err != nil {
			t.Fatal(err)
		}
		return rec.Confirmed
	}
	if !confirmed(layers[1].Digest) || confirmed(layers[0].Digest) {
		t.Errorf("dropped records: layer 1 confirmed %t, layer 2 %t; want false, true", confirmed(layers[0].Digest), confirmed(layers[1].Digest))
	}
}

// gc --unpacked drops a blob only once the tree makes it again. A layer
// whose recipe was confirmed at unpack (the whole blob fit in the probe)
// was dropped on the strength of verify alone, which reads the tree as
// it is now, not the state's shadow store or tar-split that rebuilding a
// lower layer needs: with a shadowed payload damaged (a disk, a bad
// restore), the blob was dropped, images said "recipe", and no tree
// could make it. Its tar is now rebuilt against its diffID first, and
// the blob kept when it does not.
func TestCLIE2EGCUnpackedRebuildsBeforeDropping(t *testing.T) {
	old := "the first version of the file, long enough to tell apart\n"
	u := unpackLayers(t,
		layerOf(t, edir("etc", layerTime), efile("etc/conf", old, 0o644), efile("etc/motd", "hello\n", 0o644)),
		layerOf(t, efile("etc/conf", "replaced\n", 0o644)))
	layers := layerDigests(t, u.rootfs)
	if layers[0].Reproducible() != "confirmed" {
		t.Fatalf("layer 1 is %q, want confirmed at unpack", layers[0].Reproducible())
	}
	var shadowed []string
	filepath.WalkDir(filepath.Join(u.work, ".rootfs.ocifetch", "shadow"), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			shadowed = append(shadowed, p)
		}
		return nil
	})
	if len(shadowed) != 1 {
		t.Fatalf("shadow store: %q", shadowed)
	}
	if err := os.WriteFile(shadowed[0], bytes.Repeat([]byte("x"), len(old)), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, u.env, "verify", u.rootfs) // the tree itself is clean
	mustRun(t, u.env, "gc", "--unpacked", "--store", u.store)
	if _, err := os.Stat(blobFile(u.store, layers[0].Digest)); err != nil {
		t.Errorf("layer 1's blob was dropped though the tree cannot make it: %v", err)
	}
	if _, err := os.Stat(blobFile(u.store, layers[1].Digest)); err == nil {
		t.Errorf("layer 2's blob was kept")
	}
	if im := imagesKept(t, u.env, u.store); im.Kept != "recipe" {
		t.Errorf("images: kept %q", im.Kept)
	}
}
