package safego

import (
	"strings"
	"testing"

	"github.com/ocifetch/ocifetch/errdefs"
)

func TestRecoverTurnsAPanicIntoAnInternalError(t *testing.T) {
	t.Parallel()
	done := make(chan error)
	go func() {
		var err error
		defer func() { done <- err }()
		defer Recover(&err, "fetching layer 2")
		var s []byte
		_ = s[int64(len(s))-1<<62] // an index that overflowed, as a huge size once did
	}()
	err := <-done
	if errdefs.KindOf(err) != errdefs.ErrInternal || !strings.Contains(err.Error(), "fetching layer 2: panic: ") ||
		!strings.Contains(err.Error(), "safego_test.go:") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("err = %q (kind %s)", err, errdefs.KindOf(err))
	}
}

func TestRecoverLeavesNormalReturnsAlone(t *testing.T) {
	t.Parallel()
	f := func() (err error) {
		defer Recover(&err, "x")
		return errdefs.New(errdefs.ErrNotFound, "gone")
	}
	if err := f(); errdefs.KindOf(err) != errdefs.ErrNotFound {
		t.Fatalf("err = %v", err)
	}
}
