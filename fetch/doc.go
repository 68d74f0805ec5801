// Package fetch is the second stage of ocifetch (resolve → fetch → apply):
// it brings the blobs of a resolved image into a local store, verified,
// concurrently, resumably, and without ever showing an unverified byte as
// a blob.
//
// # The store
//
// A Store (OpenStore, DefaultStoreDir) is an OCI image layout directory —
// oci-layout, index.json, blobs/<alg>/<hex> — that skopeo ("oci:DIR:NAME"),
// umoci and crane read as-is. Beside it, in the private folder .ocifetch/,
// are partial downloads (partial/<alg>/<hex>, keyed by digest, so an
// interrupted pull resumes where it stopped), lock files (which hold the
// stamps of stored blobs) and temporary files. Nothing there is visible under blobs/.
//
// A blob enters blobs/ only complete and verified: its bytes are written to
// the partial file while its digest and size are computed, then it is
// fsynced, renamed into blobs/ and the directory fsynced. Every digest is
// parsed and validated before it becomes part of a path
// ("sha256:../../x", CVE-2024-3727). Pulls of the same digest share one
// download: in one process through an in-flight table (a singleflight
// group whose download readers can follow), across processes through an
// flock on a per-digest lock file, after which the second finds the blob
// present.
//
// A blob that a download stored is stamped (its size, mtime, ctime and
// inode, written into its lock file). A pull trusts a stored blob as cached
// only while its file matches its stamp; a file changed since (by a
// person, a tool, a restore) is hashed again, stamped anew when it is
// right, and removed and fetched again when it is not: the error of a
// failed fetch names the file. Every read of a stored blob (Store.Open,
// and Session.Layer or OpenLayer of a cached layer) hashes it too, so a
// change that leaves the stamp alone (bit rot) fails that read, naming the
// file, and removes the blob, so that the next pull fetches it again.
// GC with WithVerify hashes the whole store and removes what is corrupt.
//
// # index.json
//
// index.json changes under its own lock and is replaced atomically. An
// image is recorded (Tag, or a pull's WithRefName) under the
// org.opencontainers.image.ref.name annotation, the name skopeo looks up,
// kept exactly as given. Every entry carries its document's media type,
// and an image manifest its platform, read from the document and its
// config where the descriptor lacks them. There is one entry per (name,
// platform): pulling linux/arm64 of a tag after linux/amd64 adds an entry
// beside the first, which keeps its place. A name with several entries is
// resolved by platform as an index would be (Lookup, resolve.OpenLayout
// and "oci:STORE:NAME"). An image index recorded under a name (a pull of
// every platform) replaces every entry of that name, and a manifest it
// lists is not recorded again beside it. Images lists the entries with
// what they weigh and whether every blob is kept; Remove drops the
// entries of a name or a digest, and the next GC their blobs.
//
// # Signatures and other referrers
//
// PutReferrer stores a document about an image manifest (a cosign
// signature image, a sigstore bundle or another OCI 1.1 referrer), with
// the blobs it refers to, and records it in index.json with the
// AnnotationSubject annotation (and, if given, a name such as cosign's
// "repo:sha256-<hex>.sig"). Referrers lists what is recorded for a
// manifest. Such entries are not images: Images and "oci:STORE" without a
// name leave them out.
//
// # GC and the store lock
//
// GC removes the blobs that nothing recorded in index.json reaches. It
// marks through every stored blob that parses as an index or manifest,
// whatever media type the descriptor that led to it gives, keeps the
// indexes an image was resolved through (AnnotationIndexes), and keeps
// referrers for as long as their subject is kept: entries recorded with
// PutReferrer or named with cosign's tags, and stored manifests whose
// subject field names a kept manifest (a signature of an SBOM of an image
// is kept too). Referrer entries whose subject is gone are dropped from
// index.json. GC also removes partial downloads and what crashed writers
// left (temporary files, the lock files of removed blobs).
//
// Every writer of the store holds the store-wide lock shared — pulls,
// FetchBlob, OpenLayer, the downloads they start, WriteBlob, Tag,
// PutReferrer, Remove and OpenStore — and GC holds it exclusively, so it
// never removes a blob between its write and its record, nor a temporary
// file in use. A caller that writes blobs itself and records them later
// holds the store across both with Hold. Writers that come while GC waits
// wait for it, so a stream of pulls cannot keep GC out; GC's WithWaiting
// says when it waits.
//
// # Pulling
//
// Pull (or Start, then Session.Wait) writes the indexes, manifest and
// config that resolving already read and verified from memory, downloads
// the layers at most WithJobs at a time, lowest first, and records the
// image under WithRefName. Layers already in the store are not downloaded.
// FetchBlob does the same for one blob.
//
// Where the bytes come from: the Source's endpoints in order when it is
// resolve.Mirrored (mirrors, then the registry), else the Source. A digest
// mismatch, or more bytes than the size, from one endpoint discards the
// bytes and moves to the next; an endpoint whose content ends early (a
// short body, or nothing past the offset asked for) or that fails for
// other reasons after delivering part of the blob leaves that part for the
// next endpoint to continue from (and if the finished blob then
// mismatches, the bytes of unknown origin are dropped and that endpoint
// starts again from zero). An endpoint that fails in any way is left at
// once when another follows; only the last one gets the retry policy. A
// blob whose bytes hash to the digest but end before the descriptor's size
// is size_mismatch at once: the descriptor lies. Foreign layers
// (descriptor urls) are asked of the registry first, then of the URLs
// whose hosts WithAllowedURLHosts allows, over HTTPS without credentials
// (source.URLClient).
//
// # Faults
//
// A broken connection resumes with Source.FetchAt from the offset the file
// has reached; the hash state continues over the bytes written, so nothing
// is read twice. A host that answers a range with the whole content
// (start 0) restarts cleanly. Retries follow source.RetryPolicy (the
// Source's, unless WithRetryPolicy says otherwise): 429 and 503 wait as
// long as Retry-After asks (capped), other 5xx, resets and stalls back off
// exponentially with jitter, and an endpoint's attempts are only counted
// while no bytes arrive beyond the furthest offset the blob reached. An
// attempt below the minimum rate of source.Deadlines is a stall.
// unauthorized and not_found are never retried. A cancelled or killed pull
// leaves its partial file; the next pull re-hashes it and continues with a
// ranged request. Errors name the layer, counted from 1; a cancellation is
// kind canceled. A panic in a download goroutine becomes an internal
// error instead of ending the program.
//
// # Shared downloads
//
// A download shared by several callers of this process (pulls, sessions,
// FetchBlob, OpenLayer) runs in a goroutine of its own, for as long as any
// of them wants the blob: a caller that is cancelled leaves, and returns
// at once, while the others and the readers following the download carry
// on. The last caller to leave stops the download, and returns once it
// has stopped, its partial file kept for a later resume.
//
// # Streaming
//
// Session.Layer and OpenLayer return readers that are verified as they
// read — a mismatch is an error from Read before io.EOF — and that follow a
// download in progress, reading what has reached the partial file. So the
// apply stage can extract layer 1 as it arrives while layers 2..n download
// into the store, and the bytes cross the network once.
//
// The bytes are hashed once. A reader following a download of this
// process does not hash what it returns: the download hashes every byte it
// writes, and the reader, at the blob's size, waits for its verdict and
// returns io.EOF only once the blob is verified and renamed into blobs/,
// the download's error (digest_mismatch, ...) otherwise. If the download
// restarts from zero (bad content from a mirror, a host that ignores
// ranges) after the reader returned bytes of the discarded attempt, the
// verdict no longer covers them: the reader is then given the hash of what
// it returned, read from the partial file before it is truncated, hashes
// from there on and checks its own digest at the end, so that bytes which
// differ from the rewrite are a digest_mismatch before io.EOF. A download
// by another process is never followed (this process waits on the lock and
// then finds the blob in blobs/), and a partial file left by an earlier run
// is re-hashed by the download before readers see it. A blob that the
// download of this process has just put into blobs/ is read as it is.
//
// A blob that was already in blobs/ when asked for (Store.Open, and
// Session.Layer or OpenLayer of such a blob) is hashed again as it is read.
// blobs/ only ever receives verified content, but a disk or a person can
// change a file later, and nothing else in this package would notice.
// (The apply stage would: its diffID check covers the uncompressed
// content.) Hashing there costs less than the decompression every reader
// of a layer does anyway; it is only paid by warm unpacks.
//
// # Streaming without a store
//
// WithKeepBlobs(false) makes a session keep no layer blob: a layer the
// store does not hold is not downloaded into it, and Session.Layer returns
// a stream read straight from the endpoints. It is verified as it is read
// (digest and size; a mismatch is an error before io.EOF). A connection
// that breaks is continued by the next Read with a ranged request from the
// offset the consumer reached, under the same retry policy as downloads
// (attempts count only while no new bytes arrive), a mirror that fails
// handing over to the next endpoint at the same offset; the consumer, a
// decompressor in front of apply, sees one continuous stream. A host that
// ignores the range sends the prefix again, which is dropped. The layer
// ends, for the session, when its reader reaches the verified end; the
// image is then recorded with its layers missing from blobs/.
//
// # The trees the store relies on
//
// RecordUnpacked records that an image was unpacked into a root
// filesystem (the tree and its state directory); RecordDropped that a
// layer blob is missing from blobs/ because such trees make it again.
// GC's WithUnpacked drops the stored layer blobs a checker vouches for
// (package ocifetch's ConfirmUnpacked, which verifies the tree and
// confirms recipes with package apply); this package never reads a tree.
// Images reports the dropped blobs of each image, and a blob back in
// blobs/ (a pull, or a BlobWriter's Commit) forgets its record.
//
// # Progress
//
// WithProgress receives Events (waiting, downloading, retrying, verifying,
// done, cached, failed) one at a time, with byte progress throttled per
// blob (WithProgressInterval).
//
// # Errors
//
// Errors carry errdefs kinds: digest_mismatch and size_mismatch for bad
// content (after every endpoint was tried), not_found and unauthorized
// from the source, network when retries ran out or the context ended
// (errors.Is(err, context.DeadlineExceeded) still holds), invalid_argument
// for bad digests and options, internal for the local filesystem.
package fetch

import (
	// Digest algorithms must be linked in for go-digest to use them.
	_ "crypto/sha256"
	_ "crypto/sha512"
)
