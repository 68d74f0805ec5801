// Package errdefs defines the error kinds shared by every stage of ocifetch.
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
// The kinds and their names are a contract: the CLI prints them in its JSON
// error output and maps them to exit codes, and scripts match on them.
//
//	not_found               the name, tag, manifest or blob does not exist
//	unauthorized            credentials are missing, wrong, or lack permission
//	digest_mismatch         content does not hash to the digest that named it
//	size_mismatch           content length differs from its descriptor
//	platform_not_found      no manifest for the requested platform
//	unsupported_media_type  a media type this program does not handle
//	manifest_invalid        an index, manifest or config that is malformed or ambiguous
//	too_large               a document or stream exceeds a safety limit
//	network                 the registry could not be reached or kept failing
//	layer_invalid           a layer stream is malformed, truncated or mislabelled
//	path_escape             a layer entry tried to reach outside the target
//	invalid_argument        the caller's input (reference, platform, option) is malformed
//	internal                anything else
package errdefs

import (
	"errors"
	"fmt"
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
	ErrInternal             Kind = "internal"
)

// kinds lists every kind in the order KindOf tries them.
var kinds = []Kind{
	ErrNotFound, ErrUnauthorized, ErrDigestMismatch, ErrSizeMismatch,
	ErrPlatformNotFound, ErrUnsupportedMediaType, ErrManifestInvalid,
	ErrTooLarge, ErrNetwork, ErrLayerInvalid, ErrPathEscape,
	ErrInvalidArgument, ErrInternal,
}

// Kinds returns every kind this package defines.
func Kinds() []Kind { return append([]Kind(nil), kinds...) }

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

// KindOf reports the kind of err: the outermost *Error's kind if there is
// one, else the first sentinel err matches, else ErrInternal. A nil error has
// no kind and yields "".
func KindOf(err error) Kind {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	for _, k := range kinds {
		if errors.Is(err, k) {
			return k
		}
	}
	return ErrInternal
}

// Is reports whether err is of kind k. It is errors.Is spelled for kinds.
func Is(err error, k Kind) bool { return errors.Is(err, k) }
