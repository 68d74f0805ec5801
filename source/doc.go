// Package source owns every byte ocifetch reads from outside: the Source
// interface (the seam between resolving and fetching), the registry
// source with its endpoints (mirrors from a containerd hosts directory,
// then the upstream), authentication, foreign-layer URLs, and the rules
// all of them follow. The resolve stage walks and verifies what a Source
// serves; the fetch stage stores and transfers it. Layouts and archives
// are Sources of package resolve.
//
// # One set of rules
//
//   - One ranged GET: a 206 must start where it was asked to, a 200 means
//     the host ignored the range, a 416 means the content is shorter than
//     its descriptor.
//   - One classifier from HTTP status to error kind (StatusError,
//     HTTPError): 401/403 unauthorized, 404/410 not_found, 413 too_large,
//     the rest network, with 408, 429 and 5xx worth retrying.
//   - One retry policy (RetryPolicy, Retrier), for documents and blobs,
//     with Retry-After honoured up to a cap. Attempts count only while
//     they make no progress, and MaxAttempts of them end the transfer at
//     that host: never endless.
//   - Deadlines (Deadlines): each attempt at a document has 60 s; a blob
//     has no total deadline but must keep above 1 KiB/s over any 60 s, or
//     the attempt is a stall and is retried from where it stopped.
//   - Sizes: no descriptor may claim more than MaxBlobSize (1 TiB) or less
//     than 0 bytes (CheckSize), so no offset arithmetic can overflow.
//   - Addresses: credentials go to a token server on another host only
//     over HTTPS to a public address unless allowed (WithAllowTokenHost);
//     redirects go to loopback, link-local or private addresses only when
//     the registry itself is on one; HTTPS is never downgraded to plain
//     HTTP for a host not allowed it. These are checked on the address
//     actually dialed (see docs/security.md).
//   - The User-Agent, "ocifetch/VERSION" unless WithUserAgent says
//     otherwise, is set on every request, nearest the wire.
//
// # Errors
//
// Every error carries an errdefs kind. A cancellation is kind canceled
// and matches context.Canceled; a refusal by the rules above matches
// ErrRefused, a stall ErrStalled, a document past its deadline
// ErrDocumentDeadline.
package source
