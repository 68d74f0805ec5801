package fsroot

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/testutil"
)

func wantMountPoint(t *testing.T, err error, path string) {
	t.Helper()
	if !errors.Is(err, ErrMountPoint) || errdefs.KindOf(err) != errdefs.ErrInvalidArgument {
		t.Fatalf("error %v (kind %q), want the mount point error", err, errdefs.KindOf(err))
	}
	if !strings.Contains(err.Error(), `"`+path+`"`) || !strings.Contains(err.Error(), "unmount") {
		t.Errorf("error %q does not name %q and say to unmount it", err, path)
	}
}

// A bind mount inside the root (of a directory of the same file system,
// so that the device numbers agree) is never crossed: RemoveAll of a
// directory holding it stops at it, a file mounted over is not removed
// or renamed, and nothing is created, read or removed below it. Before,
// RemoveAll went down the mount, deleted the mounted directory's files,
// and then failed with EBUSY.
func TestNothingCrossesAMountPoint(t *testing.T) {
	if !testutil.InMountNS(t) {
		return
	}
	modes(t, func(t *testing.T, opts []Option) {
		root, outside := fixture(t)
		plant(t, root, "d/m/", "d/a=a", "f=f")
		testutil.BindMount(t, outside, filepath.Join(root, "d/m"))
		testutil.BindMount(t, filepath.Join(outside, "sentinel"), filepath.Join(root, "f"))
		r := open(t, root, opts)

		wantMountPoint(t, r.RemoveAll("d"), "d/m")
		wantMountPoint(t, r.RemoveAll("d/m"), "d/m")
		wantMountPoint(t, r.RemoveAll("f"), "f")
		wantMountPoint(t, r.Remove("f"), "f")
		wantMountPoint(t, r.Rename("f", "g"), "f")
		if _, err := r.Create("d/m/new", 0644); !errors.Is(err, ErrMountPoint) {
			t.Errorf("Create below the mount point: %v", err)
		}
		if err := r.MkdirAll("d/m/x/y", 0755); !errors.Is(err, ErrMountPoint) {
			t.Errorf("MkdirAll below the mount point: %v", err)
		}
		if _, err := r.OpenFile("d/m/sentinel"); !errors.Is(err, ErrMountPoint) {
			t.Errorf("OpenFile below the mount point: %v", err)
		}
		if _, err := r.ReadDirNames("d/m"); !errors.Is(err, ErrMountPoint) {
			t.Errorf("ReadDirNames of the mount point: %v", err)
		}
		// Through a symbolic link too.
		plant(t, root, "l -> d/m")
		if err := r.RemoveAll("l/sentinel"); !errors.Is(err, ErrMountPoint) {
			t.Errorf("RemoveAll through a link to the mount point: %v", err)
		}
		unix.Unmount(filepath.Join(root, "d/m"), unix.MNT_DETACH)
		unix.Unmount(filepath.Join(root, "f"), unix.MNT_DETACH)
		checkOutside(t, outside)
	})
}
