package errdefs_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"testing"

	"github.com/ocifetch/ocifetch/errdefs"
)

func TestKindOfWrappedError(t *testing.T) {
	cause := fs.ErrNotExist
	err := errdefs.Wrap(cause, errdefs.ErrNotFound, "manifest %s", "sha256:abc")
	outer := fmt.Errorf("resolving alpine: %w", err)

	if got := errdefs.KindOf(outer); got != errdefs.ErrNotFound {
		t.Fatalf("KindOf = %q, want not_found", got)
	}
	if !errors.Is(outer, errdefs.ErrNotFound) {
		t.Fatal("errors.Is(outer, ErrNotFound) = false")
	}
	if !errors.Is(outer, fs.ErrNotExist) {
		t.Fatal("cause is not reachable through errors.Is")
	}
	if errors.Is(outer, errdefs.ErrUnauthorized) {
		t.Fatal("error matches a kind it is not")
	}
	if want := "resolving alpine: manifest sha256:abc: file does not exist"; outer.Error() != want {
		t.Fatalf("message = %q, want %q", outer.Error(), want)
	}
}

func TestKindOfSentinelAndUnknown(t *testing.T) {
	tests := []struct {
		err  error
		want errdefs.Kind
	}{
		{nil, ""},
		{fmt.Errorf("x: %w", errdefs.ErrTooLarge), errdefs.ErrTooLarge},
		{errors.New("boom"), errdefs.ErrInternal},
		{context.Canceled, errdefs.ErrInternal},
		{errdefs.New(errdefs.ErrPathEscape, "entry %q", "../x"), errdefs.ErrPathEscape},
	}
	for _, tt := range tests {
		if got := errdefs.KindOf(tt.err); got != tt.want {
			t.Errorf("KindOf(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestOuterKindWins(t *testing.T) {
	inner := errdefs.New(errdefs.ErrNetwork, "connection reset")
	outer := errdefs.Wrap(inner, errdefs.ErrDigestMismatch, "blob sha256:x")
	if got := errdefs.KindOf(outer); got != errdefs.ErrDigestMismatch {
		t.Fatalf("KindOf = %q, want digest_mismatch", got)
	}
	if !errors.Is(outer, errdefs.ErrNetwork) {
		t.Fatal("inner kind not reachable")
	}
}

func TestKindNamesAreUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, k := range errdefs.Kinds() {
		if seen[string(k)] {
			t.Fatalf("duplicate kind %q", k)
		}
		seen[string(k)] = true
		if k.Error() == "" {
			t.Fatalf("kind %q has an empty message", k)
		}
	}
}

func ExampleKindOf() {
	err := fmt.Errorf("pull: %w", errdefs.New(errdefs.ErrUnauthorized, "registry refused credentials for %s", "example.com"))
	fmt.Println(errdefs.KindOf(err))
	fmt.Println(errors.Is(err, errdefs.ErrUnauthorized))
	// Output:
	// unauthorized
	// true
}
