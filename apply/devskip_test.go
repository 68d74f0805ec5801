package apply

import (
	gotar "archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// A device node left out under DevicesSkip (or a hard link to one) still
// replaces what the lower layers had at its path: the lower entry, file or
// directory, is gone, missing parents are created, and a warning says
// what was left out. The lower layer still rebuilds: its payload was moved
// aside like any replaced file's.
func TestSkippedDeviceReplacesLowerEntry(t *testing.T) {
	t.Parallel()
	lower := tarOf(t, D("dev", 0755), F("dev/null", "a file", 0644), D("dev/sub", 0755), F("dev/sub/f", "f", 0644), F("dev/hl", "h", 0644))
	upper := tarOf(t, Dev(gotar.TypeChar, "dev/null", 0666, 1, 3), Dev(gotar.TypeBlock, "dev/sub", 0660, 7, 0),
		Dev(gotar.TypeChar, "new/dir/zero", 0666, 1, 5), H("dev/hl", "dev/null"))
	a, err := applyRecorded(t, [][]byte{lower, upper}, WithDevices(DevicesSkip), WithOwnership(OwnershipCaller))
	if err != nil {
		t.Fatal(err)
	}
	checkTree(t, a.target, `
		dir dev 0755
		dir new 0755
		dir new/dir 0755
	`)
	a.checkRebuilds(t)
	a.noDrift(t)
	rep, err := ApplyLayer(context.Background(), a.target, bytes.NewReader(upper), WithDevices(DevicesSkip))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, w := range rep.Warnings {
		if w.Kind == WarnDeviceSkipped {
			n++
		}
	}
	if n != 4 {
		t.Errorf("%d device warnings, want 4: %+v", n, rep.Warnings)
	}
	if _, err := os.Lstat(filepath.Join(a.target, "dev/null")); !os.IsNotExist(err) {
		t.Errorf("dev/null: %v", err)
	}
}
