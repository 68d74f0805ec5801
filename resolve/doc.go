// Package resolve turns an image reference into the manifest for one
// platform, verifying every document on the way. It is the first stage of
// ocifetch: resolve → fetch → apply.
//
// # References and sources
//
// Open parses a reference into a Source, the seam between resolving and
// fetching. Registry names follow Docker's rules: "alpine" is
// docker.io/library/alpine:latest, the first path component is a registry
// only if it contains "." or ":" or is "localhost", and "name:tag@digest"
// pins the digest (the tag is then informational). "oci:DIR[:TAG|@DIGEST]"
// reads an OCI image layout.
//
// # Verification
//
// Every index, manifest and config is read with a size cap
// (DefaultMaxDocumentSize), must be exactly as long as its descriptor says,
// and must hash to its digest. A document's own mediaType must agree with
// the descriptor or response that led to it, and a document that has both
// "manifests" and "layers" is refused as ambiguous (CVE-2021-41190). Digests
// are parsed and validated before they are used in a URL or a path. Indexes
// may nest up to DefaultMaxDepth levels. Docker schema 1 manifests are
// refused, as are artifacts whose config is not an image config.
//
// # Platforms
//
// An index resolves to the entry that best fits the wanted platform
// (WithPlatform; by default the host's). Variants are normalized, so
// linux/arm64 and linux/arm64/v8 are the same platform, and a machine's
// older variants are acceptable fallbacks (arm/v7 runs v6; amd64/v3 runs
// v2). An entry that names the variant beats one that leaves it implied.
// When nothing fits, the error lists the platforms the index offers.
//
// # Registries, auth and mirrors
//
// Registry access is package source (see its documentation for the
// rules): credentials from the Docker config looked up for the host each
// request goes to, token realms and redirects checked on the address
// dialed, plain HTTP only for loopback registries and hosts allowed with
// WithInsecureRegistry, one retry policy and per-document deadlines. The
// registry options here forward to it; WithSourceOptions passes any other.
//
// Mirrors come from a containerd-style hosts directory (WithHostsDir) or
// WithMirrors. They are tried in order before the upstream; content from a
// mirror is verified like any other, and a mirror that fails or serves bad
// bytes is skipped. Resolved records which host served each document
// (Blob.From).
//
// # Errors
//
// Every error carries an errdefs kind, testable with errors.Is:
//
//	not_found               no such repository, tag, manifest or blob
//	unauthorized            credentials missing, wrong or insufficient (401/403)
//	digest_mismatch         bytes do not hash to the digest that named them
//	size_mismatch           a body's length differs from its descriptor's size
//	platform_not_found      no manifest fits the wanted platform (the message lists those offered)
//	unsupported_media_type  schema 1, artifacts, unknown document or layer types
//	manifest_invalid        malformed, ambiguous, mislabelled or too deeply nested documents
//	too_large               a document over the size cap
//	network                 the registry could not be reached, or kept failing (429, 5xx)
//	invalid_argument        a malformed reference, platform or option
package resolve
