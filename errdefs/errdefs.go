// Package errdefs defines the error kinds shared by every stage of ocifetch
// and the exit status the CLI gives for each.
//
// Each failure returned by the resolve, fetch and apply packages wraps one of
// the sentinel errors below, so a caller can test it with errors.Is:
//
//	if errors.Is(err, errdefs.ErrNotFound) { ... }
//
// and a program can report it with a stable, machine-readable name:
//
//	errdefs.KindOf(err) // "not_found"
//
// The kinds, their names and their exit codes are a contract: the CLI prints
// the names in its JSON error output and exits with ExitCode, and scripts
// match on both. Table lists them; docs/cli.md prints the same table.
package errdefs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"syscall"
)

// Kind is the stable name of a class of failure. A Kind is itself an error
// so that it can serve as the sentinel that errors.Is matches.
type Kind string

// Error returns the kind's name, so that a kind prints as itself whether
// it is formatted as an error or as a string.
func (k Kind) Error() string { return string(k) }

// The kinds. Compare with errors.Is(err, errdefs.ErrX).
const (
	ErrNotFound             Kind = "not_found"
	ErrUnauthorized         Kind = "unauthorized"
	ErrDigestMismatch       Kind = "digest_mismatch"
	ErrSizeMismatch         Kind = "size_mismatch"
	ErrPlatformNotFound     Kind = "platform_not_found"
	ErrUnsupportedMediaType Kind = "unsupported_media_type"
	ErrManifestInvalid      Kind = "manifest_invalid"
	ErrTooLarge             Kind = "too_large"
	ErrNetwork              Kind = "network"
	ErrLayerInvalid         Kind = "layer_invalid"
	ErrPathEscape           Kind = "path_escape"
	ErrInvalidArgument      Kind = "invalid_argument"
	ErrNotReproducible      Kind = "not_reproducible"
	ErrBusy                 Kind = "busy"
	ErrUntrusted            Kind = "untrusted"
	ErrCanceled             Kind = "canceled"
	ErrNoSpace              Kind = "no_space"
	ErrPermissionDenied     Kind = "permission_denied"
	ErrInternal             Kind = "internal"
)

// Exit statuses of the CLI. Codes 0 to 6 are the original contract; the
// later ones were added without moving any of them.
const (
	ExitOK           = 0
	ExitFailure      = 1 // internal, no_space, permission_denied: the machine, not the image
	ExitUsage        = 2 // the caller's input is malformed
	ExitNotFound     = 3 // nothing to fetch for this reference, or no right to it
	ExitVerification = 4 // content failed verification, is malformed or cannot be reproduced
	ExitUnsafe       = 5 // content tried to escape the target
	ExitNetwork      = 6 // the registry could not be reached or kept failing
	ExitBusy         = 7 // another process holds the target
	ExitUntrusted    = 8 // a trust policy refused the image
	ExitSIGINT       = 130
	ExitSIGTERM      = 143
)

// KindInfo is one row of Table: a kind, what it means to a person, and the
// status the CLI exits with.
type KindInfo struct {
	Kind     Kind
	Meaning  string
	ExitCode int
}

// table is the single source of the kinds, in the order KindOf tries the
// sentinels and docs/cli.md lists them. Canceled's exit code is the one
// for SIGINT; the CLI gives 143 when SIGTERM canceled the work.
var table = []KindInfo{
	{ErrInvalidArgument, "bad flag, argument, reference, platform or option", ExitUsage},
	{ErrNotFound, "no such repository, tag, manifest, blob or file", ExitNotFound},
	{ErrUnauthorized, "credentials missing or refused", ExitNotFound},
	{ErrPlatformNotFound, "no image for the platform; the message lists those available", ExitNotFound},
	{ErrDigestMismatch, "content does not hash to the digest that names it", ExitVerification},
	{ErrSizeMismatch, "content length differs from its descriptor", ExitVerification},
	{ErrManifestInvalid, "malformed, ambiguous, mislabelled or too deeply nested document", ExitVerification},
	{ErrUnsupportedMediaType, "Docker schema 1, an artifact, an unknown document or layer type", ExitVerification},
	{ErrTooLarge, "a document, layer or store past a size or entry limit", ExitVerification},
	{ErrLayerInvalid, "a layer stream is malformed, truncated or mislabelled", ExitVerification},
	{ErrNotReproducible, "a layer or blob cannot be rebuilt exactly from what is kept", ExitVerification},
	{ErrPathEscape, "a layer entry tried to reach outside the target", ExitUnsafe},
	{ErrNetwork, "the registry could not be reached or kept failing", ExitNetwork},
	{ErrBusy, "another process is unpacking into the same target", ExitBusy},
	{ErrUntrusted, "the trust policy refused the image", ExitUntrusted},
	{ErrCanceled, "interrupted: canceled by the caller or a signal (SIGTERM exits 143)", ExitSIGINT},
	{ErrNoSpace, "the disk or quota is full", ExitFailure},
	{ErrPermissionDenied, "the operating system refused access to a file or directory", ExitFailure},
	{ErrInternal, "anything else", ExitFailure},
}

// Table returns every kind with its meaning and exit code.
func Table() []KindInfo { return append([]KindInfo(nil), table...) }

// Kinds returns every kind this package defines.
func Kinds() []Kind {
	ks := make([]Kind, len(table))
	for i, r := range table {
		ks[i] = r.Kind
	}
	return ks
}

// ExitCode is the CLI's exit status for a failure of kind k: ExitOK for
// the empty kind (no error), ExitFailure for a kind it does not know.
func ExitCode(k Kind) int {
	if k == "" {
		return ExitOK
	}
	for _, r := range table {
		if r.Kind == k {
			return r.ExitCode
		}
	}
	return ExitFailure
}

// Error is a failure of a known kind with a message for people. Its cause,
// if any, stays reachable through errors.Is and errors.As.
type Error struct {
	Kind    Kind
	Message string
	Cause   error
}

// Error returns the message, followed by the cause when there is one.
func (e *Error) Error() string {
	switch {
	case e.Cause == nil:
		return e.Message
	case e.Message == "":
		return e.Cause.Error()
	default:
		return e.Message + ": " + e.Cause.Error()
	}
}

// Unwrap exposes both the kind and the cause to errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	if e.Cause == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Cause}
}

// New returns an error of kind k with a formatted message.
func New(k Kind, format string, args ...any) error {
	return &Error{Kind: k, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an error of kind k whose message is the formatted text and
// whose cause is err. It returns nil when err is nil.
func Wrap(err error, k Kind, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return &Error{Kind: k, Message: fmt.Sprintf(format, args...), Cause: err}
}

// KindOf reports the kind of err. A nil error has no kind and yields "".
//
// Causes that come from the caller or the machine rather than the image
// win over whatever kind a stage wrapped them in, so that a caller never
// retries a cancellation as a network error or reports a full disk as a
// bad layer: context.Canceled anywhere in the chain is canceled, ENOSPC
// and EDQUOT are no_space. Otherwise the outermost *Error's kind counts;
// where that is internal (or there is none) a permission error from the
// operating system is permission_denied, then the first sentinel err
// matches, then internal.
func KindOf(err error) Kind {
	if err == nil {
		return ""
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, ErrCanceled) {
		return ErrCanceled
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, ErrNoSpace) {
		return ErrNoSpace
	}
	var e *Error
	if errors.As(err, &e) && e.Kind != ErrInternal {
		return e.Kind
	}
	if errors.Is(err, fs.ErrPermission) {
		return ErrPermissionDenied
	}
	for _, r := range table {
		if errors.Is(err, r.Kind) {
			return r.Kind
		}
	}
	return ErrInternal
}

// Is reports whether err is of kind k. It is errors.Is spelled for kinds.
func Is(err error, k Kind) bool { return errors.Is(err, k) }
