package resolve_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/testutil/testimage"
	"github.com/ocifetch/ocifetch/resolve"
)

func TestResolveOCIArchive(t *testing.T) {
	t.Parallel()
	idx, imgs := amd64AndArm64(t)
	dir := layoutOf(t, map[string]v1.ImageIndex{"v1": idx})
	archive := filepath.Join(t.TempDir(), "image.tar")
	testimage.TarDir(t, dir, archive, "./")

	res := mustResolve(t, "oci-archive:"+archive+":v1", resolve.WithPlatform(ocispec.Platform{OS: "linux", Architecture: "arm64"}))
	checkImage(t, res, imgs[1])
	res = mustResolve(t, "oci-archive:"+archive, resolve.WithPlatform(ocispec.Platform{OS: "linux", Architecture: "amd64"}))
	checkImage(t, res, imgs[0])

	// Layers are read in place from the archive, verified by the caller.
	layers, _ := imgs[0].Layers()
	want, _ := layers[1].Compressed()
	wantBytes, _ := io.ReadAll(want)
	rc, err := res.Source.Fetch(context.Background(), res.Layers[1].Descriptor)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != string(wantBytes) {
		t.Fatal("layer bytes from the archive differ")
	}
	rc, start, err := res.Source.FetchAt(context.Background(), res.Layers[1].Descriptor, 10)
	if err != nil || start != 10 {
		t.Fatalf("FetchAt: start %d, %v", start, err)
	}
	got, _ = io.ReadAll(rc)
	if string(got) != string(wantBytes[10:]) {
		t.Fatal("ranged read from the archive differs")
	}

	resolveFails(t, errdefs.ErrNotFound, "oci-archive:"+archive+":nope")
	resolveFails(t, errdefs.ErrNotFound, "oci-archive:"+filepath.Join(t.TempDir(), "missing.tar"))

	// The user's own symlink to the archive is followed, as skopeo
	// follows it; one to a FIFO is still refused.
	link := filepath.Join(t.TempDir(), "link.tar")
	if err := os.Symlink(archive, link); err != nil {
		t.Fatal(err)
	}
	checkImage(t, mustResolve(t, "oci-archive:"+link+":v1", resolve.WithPlatform(ocispec.Platform{OS: "linux", Architecture: "arm64"})), imgs[1])
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	fifoLink := filepath.Join(t.TempDir(), "fifo.tar")
	os.Symlink(fifo, fifoLink)
	resolveFails(t, errdefs.ErrInvalidArgument, "oci-archive:"+fifoLink)
}

func TestResolveDockerArchive(t *testing.T) {
	t.Parallel()
	a := testimage.Image(t, 2, "linux", "amd64", "")
	b := testimage.Image(t, 3, "linux", "arm64", "v8")
	ta, _ := name.NewTag("example.com/app:a")
	tb, _ := name.NewTag("example.com/app:b")
	archive := filepath.Join(t.TempDir(), "save.tar")
	if err := tarball.MultiWriteToFile(archive, map[name.Tag]v1.Image{ta: a, tb: b}); err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		ref  string
		want v1.Image
	}{
		{"docker-archive:" + archive + ":example.com/app:a", a},
		{"docker-archive:" + archive + ":example.com/app:b", b},
	} {
		res := mustResolve(t, tt.ref)
		cfgWant, _ := tt.want.RawConfigFile()
		if string(res.Config.Data) != string(cfgWant) {
			t.Fatalf("%s: config differs", tt.ref)
		}
		layers, _ := tt.want.Layers()
		if len(res.Layers) != len(layers) {
			t.Fatalf("%s: %d layers, want %d", tt.ref, len(res.Layers), len(layers))
		}
		for i, l := range layers {
			diff, _ := l.DiffID()
			if res.Layers[i].DiffID.String() != diff.String() {
				t.Fatalf("%s: layer %d diffID %s, want %s", tt.ref, i, res.Layers[i].DiffID, diff)
			}
			// The layer the archive holds hashes to the descriptor.
			rc, err := res.Source.Fetch(context.Background(), res.Layers[i].Descriptor)
			if err != nil {
				t.Fatal(err)
			}
			d, n, _ := v1.SHA256(rc)
			rc.Close()
			if d.String() != res.Layers[i].Digest.String() || n != res.Layers[i].Size {
				t.Fatalf("layer %d: %s/%d, descriptor %s/%d", i, d, n, res.Layers[i].Digest, res.Layers[i].Size)
			}
		}
	}
	_, err := resolve.Resolve(context.Background(), "docker-archive:"+archive)
	wantKind(t, err, errdefs.ErrInvalidArgument) // two images: which one?
	mustResolve(t, "docker-archive:"+archive+"@1")
	// skopeo's spelling of the index.
	res := mustResolve(t, "docker-archive:"+archive+":@1")
	if res.Reference != "docker-archive:"+archive+":@1" {
		t.Errorf("reference %q", res.Reference)
	}
	for _, ref := range []string{"docker-archive:" + archive + ":@x", "docker-archive:" + archive + ":@-1", "docker-archive:" + archive + ":"} {
		resolveFails(t, errdefs.ErrInvalidArgument, ref)
	}
	resolveFails(t, errdefs.ErrNotFound, "docker-archive:"+archive+":example.com/app:c")
}
