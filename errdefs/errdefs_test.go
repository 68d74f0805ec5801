package errdefs_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"strconv"
	"syscall"
	"testing"

	"github.com/ocifetch/ocifetch/errdefs"
)

func TestKindOfWrappedError(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
	tests := []struct {
		err  error
		want errdefs.Kind
	}{
		{nil, ""},
		{fmt.Errorf("x: %w", errdefs.ErrTooLarge), errdefs.ErrTooLarge},
		{errors.New("boom"), errdefs.ErrInternal},
		{context.Canceled, errdefs.ErrCanceled},
		{fmt.Errorf("apply: %w", errdefs.Wrap(context.Canceled, errdefs.ErrNetwork, "layer 2")), errdefs.ErrCanceled},
		{errdefs.Wrap(&fs.PathError{Op: "write", Path: "f", Err: syscall.ENOSPC}, errdefs.ErrLayerInvalid, "layer 1"), errdefs.ErrNoSpace},
		{&fs.PathError{Op: "write", Path: "f", Err: syscall.EDQUOT}, errdefs.ErrNoSpace},
		{&fs.PathError{Op: "open", Path: "f", Err: syscall.EACCES}, errdefs.ErrPermissionDenied},
		{errdefs.Wrap(&fs.PathError{Op: "open", Path: "f", Err: syscall.EPERM}, errdefs.ErrInternal, "x"), errdefs.ErrPermissionDenied},
		// A stage that knew better keeps its kind over a permission cause.
		{errdefs.Wrap(&fs.PathError{Op: "open", Path: "f", Err: syscall.EACCES}, errdefs.ErrUnauthorized, "x"), errdefs.ErrUnauthorized},
		{errdefs.Wrap(errdefs.New(errdefs.ErrNetwork, "reset"), errdefs.ErrInternal, "x"), errdefs.ErrNetwork},
		{errdefs.New(errdefs.ErrPathEscape, "entry %q", "../x"), errdefs.ErrPathEscape},
	}
	for _, tt := range tests {
		if got := errdefs.KindOf(tt.err); got != tt.want {
			t.Errorf("KindOf(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestOuterKindWins(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
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

func TestExitCodes(t *testing.T) {
	t.Parallel()
	want := map[errdefs.Kind]int{
		errdefs.ErrInvalidArgument: 2, errdefs.ErrNotFound: 3, errdefs.ErrUnauthorized: 3,
		errdefs.ErrPlatformNotFound: 3, errdefs.ErrDigestMismatch: 4, errdefs.ErrSizeMismatch: 4,
		errdefs.ErrManifestInvalid: 4, errdefs.ErrUnsupportedMediaType: 4, errdefs.ErrTooLarge: 4,
		errdefs.ErrLayerInvalid: 4, errdefs.ErrNotReproducible: 4, errdefs.ErrPathEscape: 5,
		errdefs.ErrNetwork: 6, errdefs.ErrBusy: 7, errdefs.ErrUntrusted: 8, errdefs.ErrCanceled: 130,
		errdefs.ErrNoSpace: 1, errdefs.ErrPermissionDenied: 1, errdefs.ErrInternal: 1,
	}
	if len(errdefs.Kinds()) != len(want) {
		t.Fatalf("%d kinds, the contract lists %d", len(errdefs.Kinds()), len(want))
	}
	for k, code := range want {
		if got := errdefs.ExitCode(k); got != code {
			t.Errorf("ExitCode(%s) = %d, want %d", k, got, code)
		}
	}
	if got := errdefs.ExitCode(""); got != 0 {
		t.Errorf("ExitCode(\"\") = %d, want 0", got)
	}
	if got := errdefs.ExitCode("no_such_kind"); got != 1 {
		t.Errorf("ExitCode(unknown) = %d, want 1", got)
	}
}

// TestDocsListEveryKind holds docs/cli.md to the table: every kind is a
// row with its exit code, and the document lists no kind that is not one.
func TestDocsListEveryKind(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\| [^|]+ \\| ([0-9]+) \\|$")
	documented := map[string]int{}
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		code, _ := strconv.Atoi(m[2])
		documented[m[1]] = code
	}
	for _, r := range errdefs.Table() {
		code, ok := documented[string(r.Kind)]
		if !ok {
			t.Errorf("docs/cli.md has no row for kind %s", r.Kind)
			continue
		}
		if code != r.ExitCode {
			t.Errorf("docs/cli.md gives %s exit %d, the table %d", r.Kind, code, r.ExitCode)
		}
		delete(documented, string(r.Kind))
	}
	for k := range documented {
		t.Errorf("docs/cli.md lists kind %s, which errdefs does not define", k)
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
