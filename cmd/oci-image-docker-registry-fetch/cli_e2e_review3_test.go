package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/internal/testutil"
	"github.com/ocifetch/ocifetch/internal/testutil/testregistry"
)

// rebuild --compressed --layer N -o FILE takes FILE as plain rebuild does
// (TestCLIE2ERebuildOutputKinds, checkOutputKinds): a FIFO, a socket or a
// character device is written through, a symbolic link followed, "-" is
// standard output. Before, the
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
	checkOutputKinds(t, dir, blob, rebuildTo)
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
	testutil.Full(t, "its first gzip member must outgrow the probe's 1 MiB prefix, several MiB compressed under the race detector")
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

// images counts a dropped blob as kept by a tree only when that tree
// verified clean just now. A tree that an unpack or gc --unpacked holds
// cannot be read, and images said "recipe" for it all the same,
// vouching for bytes it had not checked. It says "busy" (the tree's
// status too) until the holder is done.
func TestCLIE2EImagesDoesNotVouchForABusyTree(t *testing.T) {
	t.Parallel()
	u := unpackLayers(t, layerOf(t, edir("etc", layerTime), efile("etc/motd", "hello\n", 0o644)))
	mustRun(t, u.env, "gc", "--unpacked", "--store", u.store)
	if im := imagesKept(t, u.env, u.store); im.Kept != "recipe" || len(im.Rootfs) != 1 || im.Rootfs[0].Status != "clean" {
		t.Fatalf("images after gc --unpacked: kept %q, trees %+v; want recipe, one clean tree", im.Kept, im.Rootfs)
	}
	// The lock an unpack of the tree takes, under any name (apply's
	// target lock: an exclusive flock on the directory).
	fd, err := unix.Open(u.rootfs, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	if im := imagesKept(t, u.env, u.store); im.Kept != "busy" || len(im.Rootfs) != 1 || im.Rootfs[0].Status != "busy" {
		t.Errorf("images while the tree is held: kept %q, trees %+v; want busy, one busy tree", im.Kept, im.Rootfs)
	}
	if err := unix.Flock(fd, unix.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	if im := imagesKept(t, u.env, u.store); im.Kept != "recipe" {
		t.Errorf("images once the tree is free again: kept %q, want recipe", im.Kept)
	}
}
