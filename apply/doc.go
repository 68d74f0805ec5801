// Package apply unpacks image layers into a root filesystem directory,
// safely: nothing a layer contains can make it write, change or read
// outside the target.
//
// # Streams
//
// Apply takes layers as the registry stores them. The media type decides
// the decompression (OCI tar, tar+gzip, tar+zstd and their
// non-distributable variants; Docker's rootfs.diff.tar.gzip and its foreign
// variant); anything else is unsupported_media_type, before anything is
// written. The first bytes of the blob must agree (gzip 1f 8b, zstd
// 28 b5 2f fd, a plain tar anything else): a disagreement is layer_invalid
// and names both. While the layer is applied, in one pass, the blob is
// hashed and counted for its digest and size, and the uncompressed stream,
// everything after the tar's end-of-archive marker included, for its
// diffID (digest_mismatch, size_mismatch). Three goroutines share the
// work through one 1 MiB ring buffer: one reads (decompresses) the blob
// ahead of the applier, one hashes the uncompressed stream as it arrives,
// and the applier parses the tar (tar-split's reader) and writes the
// files, so that the three overlap (Rebuild likewise hashes the stream it
// writes in a goroutine of its own, internal/asynchash). A payload shorter
// than its header says is layer_invalid; a tar that ends without its
// end-of-archive blocks, or even without the padding of its last entry, is
// accepted as Go and GNU tar accept it. Payloads are streamed through one
// reused buffer: memory does not grow with file sizes. What a failed
// Apply leaves is the subject of "The failure rule" below.
//
// Limits: WithMaxLayerBytes bounds the uncompressed stream (everything the
// diffID covers), WithMaxTotalBytes the streams of all layers together,
// and WithMaxEntries the number of tar entries of a layer; past any, the
// layer fails with too_large as soon as the byte or entry over the limit
// is read, having written nothing beyond it. They default to no limit: an
// OCI descriptor gives only the compressed size, so there is no claimed
// uncompressed size to hold the stream to, and legitimate layers are many
// GiB uncompressed (the CLI sets 64 GiB, 256 GiB and 4,000,000). A
// payload longer than the stream holds fails as truncated once the stream
// ends, without a limit too. WithMaxDepth (default DefaultMaxDepth, 4096)
// bounds how deep an entry may lie, by its name or through the symbolic
// links among its parents; Verify and Rebuild enforce the limit the apply
// recorded. Memory never depends on sizes; the per-layer sets of names
// written and directories touched grow with the entries (WithMaxEntries
// bounds them), and what is kept from one layer to the next is a few
// dozen bytes per entry (two hashes of the path and an inode, never the
// names), about 120 over a layer of a million files.
//
// # Layer semantics (image-spec layer.md)
//
//   - DIR/.wh.NAME removes NAME, and everything below it, as the lower
//     layers left it; DIR/.wh..wh..opq removes every child of DIR the lower
//     layers left. Entries of the same layer stay, before or after the
//     marker in the tar: the applier records what the layer wrote (as umoci
//     does), by canonical path, the symbolic links among the parents
//     resolved inside the root (a/x written with a -> b is b/x to a
//     whiteout b/.wh.x, and the reverse). Whiteout files never appear in
//     the tree; other .wh..wh.* entries are AUFS metadata, ignored with a
//     warning.
//   - A non-directory replacing a directory, or the reverse, removes the
//     old entry (with everything below it) first; a directory over a
//     directory keeps the children and takes the new metadata. Any other
//     entry replaces what is there by unlink and create, so that other hard
//     links to an old file keep their content.
//   - Hard links refer to an entry of this or a lower layer. Symbolic links
//     are created as they are and never followed while extracting.
//   - Parents missing from the tar are created (0755, owned by the caller).
//   - Sparse entries (old GNU 'S', PAX GNU.sparse 0.0, 0.1 and 1.0) are
//     written sparsely: each data fragment at its offset (pwrite), the
//     holes skipped, the size set by ftruncate, so a layer of a few KiB
//     holding a 60 GB sparse file leaves a 60 GB file of a few blocks, on
//     file systems with holes. The sparse map is the tar reader's, reached
//     through its hole-skipping writer (an unexported field, by
//     reflection); were that ever out of reach, the entry would be written
//     densely, zeros included. Only sparse entries are treated so: regular
//     files are never scanned for zeros.
//   - Mode bits (setuid, setgid, sticky included), owners, PAX
//     SCHILY.xattr.* attributes, device nodes, FIFOs, and access and
//     modification times to the nanosecond. The modes and times of the
//     directories a layer lists are set when the layer ends, deepest
//     first, after all their children were written: a mode-000 directory
//     is populated with rwx for its owner first, which is also what lets
//     an unprivileged apply fill it. A directory a layer changes (an entry
//     added or removed) without listing it gets back the times it had: a
//     tree's directory times are a function of the image, not of when it
//     was unpacked (as umoci makes them). Directories no layer lists
//     (parents made implicitly) and the target itself are outside this
//     rule.
//   - Whiteouts resolve their directory once, symbolic links included,
//     and act on canonical names under it, on every entry whatever order
//     readdir gives them in: through s -> ., an opaque marker removes s
//     with the rest without losing its way.
//
// # Confinement: refused or confined
//
// Every filesystem call goes through one root handle (internal/fsroot),
// which resolves names inside the target as if it were "/" (openat2
// RESOLVE_IN_ROOT, or an equivalent walk) and acts on a final component
// without ever following it. On top of that, per case:
//
//   - an entry name whose ".." would climb above the root (../x, a/../../x)
//     is refused (path_escape);
//   - an absolute name (/x) is read relative to the target (confined);
//   - a symbolic link among the parents of an entry, from this layer or a
//     lower one (lib -> /usr/lib, a -> /, a -> ../../..), is followed but
//     confined: real images rely on it, and it cannot lead out;
//   - an entry whose final name is a symbolic link replaces the link; it
//     never writes, chmods, chowns or sets times or xattrs through it
//     (containerd CVE-2021-32760);
//   - a hard link target that climbs above the root is refused
//     (path_escape); one reached through a symbolic link is confined, and a
//     symbolic link as target is linked itself;
//   - a whiteout or opaque marker reached through a symbolic link is
//     confined; a whiteout name that does not strip to one path element
//     (.wh., .wh.., .wh...) is refused;
//   - an entry that would replace or remove the root itself (".", "./", "/"
//     as a file, link, device, whiteout or hard link) is refused
//     (path_escape; umoci CVE-2021-29136). A directory entry for the root
//     applies its metadata to the target;
//   - device numbers that do not fit the kernel's dev_t are refused
//     (layer_invalid), never truncated.
//
// # The failure rule
//
// With WithStateDir, an Apply follows one rule for what a failed or
// interrupted apply leaves, which ocifetch.Unpack and Bundle (and the CLI)
// share:
//
//   - One Apply per target: an exclusive flock(2) on the target directory
//     itself, taken before anything else, whatever name reaches it (a
//     symbolic link, another state directory: the kernel keeps flock per
//     inode), and one on the state directory's lock file. A second Apply
//     fails at once with kind busy and touches nothing, not even its
//     state directory; CheckTarget tells without holding a lock
//     (ocifetch.Unpack asks it before it resolves). Verify, Rebuild,
//     Check and Upgrade take both locks shared.
//   - Nothing is created before Apply is called; a failure before its
//     first byte leaves the target as it was, not made if it did not
//     exist (Apply makes a missing target, with its parents).
//   - A failure the process catches after the first byte (a digest, a
//     limit, a cancelled context) empties the target's contents and
//     removes the state (and what Apply made) before Apply returns.
//   - A crash leaves state.json saying "applying"; the next Apply into the
//     target empties its contents, removes the state and starts over. It
//     never removes or replaces the target directory itself, nor a
//     symbolic link given as the target: it is followed. Emptying never
//     crosses a mount point inside the target: one stops it with
//     invalid_argument naming it (fsroot.ErrMountPoint), nothing under it
//     touched, the state left "applying" for the rerun once unmounted.
//   - The state records the target's identity (device, inode and birth
//     time from statx: TargetID), nothing inside the tree, where a
//     container could forge it. A state whose identity does not match the
//     directory, or that cannot be read, or of another format, never
//     leads to deleting anything: the error names the state directory to
//     remove. A target holding a complete unpack is refused.
//
// Without a state directory, Apply applies onto whatever the target holds
// (as a snapshotter layers onto a copy) and a failure leaves the partly
// applied tree to the caller, removing only a target Apply made.
//
// # Recording, rebuild and verify
//
// With WithStateDir, Apply records into a state directory what it takes to
// give every layer back bit for bit from the tree alone (Rebuild,
// RebuildAll, Check) and to tell whether the tree still is as applied
// (Verify). The state directory lies outside the tree, on the same file
// system: DefaultStateDir(target) is the sibling <parent>/.<base>.ocifetch
// of the target's absolute path. It must stay out of reach of whatever
// runs in the tree: rebuild and verify trust it. So it is trusted only
// when it belongs to the caller or root and is not writable by group or
// others, and so is everything read from it (tarsplit/, shadow/<layer>/,
// state.json, tree.json.zst, the tar-split files, the lock), checked on
// the descriptor then read, never opened through a symbolic link (a
// symbolic link to the state directory must be the caller's or root's);
// otherwise invalid_argument names it. Apply makes it mode 0700. Its
// layout (version 2):
//
//	lock                          flock(2): exclusive for Apply, shared for
//	                              Verify, Rebuild, Check; holds the pid
//	state.json                    what was applied and whether it completed
//	tarsplit/<alg>-<hex>.json.zst one per layer diffID (layers with the same
//	                              diffID share it): tar-split metadata
//	shadow/<alg>-<hex>/<pos>      payload of entry <pos> of that layer, moved
//	                              aside when a later entry replaced it
//	shadow/<alg>-<hex>/<pos>.dropped
//	                              the same, given up (WithoutShadow)
//	shadow/<alg>-<hex>/pack.zst   those payloads packed (CompactShadow)
//	tree.json.zst                 manifest of the tree when Apply completed
//
// state.json holds version (2), status ("applying", then "complete"),
// reference and manifest (WithImage), layers (diffID, digest, mediaType,
// tarSplit, the metadata's path, size, the blob's, and recipe, how the
// compressed blob is made again from the tar: candidates, confirmed,
// reason; lowest first), ownership and devices
// (the policies used: "preserve", "caller", "fail"; "create", "skip",
// "fail"), uid and gid (the applying process's), shadow (whether replaced
// payloads were kept), target (dev, ino, btime: the target's identity),
// fileDigest ("blake3-64k", the content digest below), maxDepth (the
// depth limit), started and completed (RFC 3339). It is written with
// status "applying" before the first layer and replaced, atomically
// (temporary file, fsync, rename, fsync of the directory), with
// "complete" after the last one and the manifest.
//
// Content digests: every regular file the applier writes, and every
// payload, is hashed while written, with BLAKE3 over 64 KiB blocks: a
// file of one block or less is H(0x00 || content), a larger one
// H(0x01 || h0 || h1 || ... || length), h0 being H(0x00 || block 0) and
// hi H(block i). A hole contributes a constant block digest without being
// read, so sparse files cost as little as their data. CRC-64, which eight
// chosen bytes forge, stays only in the tar-split entries, where stock
// tar-split checks it.
//
// A tar-split file is a zstd stream of JSON lines in tar-split's own
// format (github.com/vbatts/tar-split/tar/storage.Entry, one per line):
// {"type":2,"payload":BASE64,"position":N} is a segment, bytes of the
// stream given verbatim; {"type":1,"name":NAME,"name_raw":BASE64,
// "size":N,"payload":CRC,"position":N,"digest":HEX,"at":PATH} is the
// payload of the entry whose header carried NAME (name_raw instead when it
// is not UTF-8), size bytes with the big-endian CRC-64/ISO payload, their
// content digest, and, when it differs from NAME cleaned (a symbolic link
// among its parents), the path the applier wrote them to (at_raw when not
// UTF-8). Stock tar-split ignores the two added fields. Concatenating the
// segments and, for each file entry of size > 0, its payload gives the
// stream back, all of it: headers, padding, the end-of-archive blocks and
// whatever follows them, or their absence. Positions count segments and
// files together from 0. Only the payloads of entries that the applier
// wrote as regular files have size > 0; everything else (the payloads of
// whiteouts, of AUFS metadata, of header-only types, and the data of
// sparse entries as archived, sparse map included: old GNU 'S' and PAX
// 0.0, 0.1 and 1.0) is in the segments, verbatim, with a file entry of
// size 0. The metadata is written to a temporary file and renamed into
// place, synced, only once the layer's diffID, blob digest and size
// matched; a failed layer leaves none. Unlike stock tar-split, a layer
// may name the same path any number of times: payloads are looked up by
// position, never by name.
//
// Stock tar-split reads this metadata as it is: asm.WriteOutputTarStream
// over storage.NewJSONUnpacker, with storage.NewPathFileGetter on the
// tree, gives a layer back bit for bit (TestRebuildTestdata holds it to
// that over every archive of Go's and tar-split's testdata that applies,
// TestStockTarSplitReassembles over layers of its own). It reads each payload by its entry's name from the tree
// as it now is, so it cannot give back a layer that names a path twice
// (it finds the later payload where the earlier one was, a checksum
// failure, or its unpacker refuses the second name, ErrDuplicatePath), a
// lower layer whose files a later one replaced (this package's shadow
// store holds them), or one whose payload was written through a symbolic
// link among its parents that a later layer retargeted ("at" says where);
// Rebuild gives back all three.
//
// Payloads are read back from where the apply wrote them, through the
// confined root handle (never through a final symbolic link, regular
// files only), so a later layer that removes, replaces or retargets a
// symbolic link among their parents does not lose them. Before the
// applier removes or replaces a regular file that holds a recorded
// payload (an overwrite by a later layer or by a later entry of the same
// layer, a whiteout, an opaque directory, a type change, the removal of a
// directory above it), the recorder moves that file by rename(2) into
// shadow/<layer>/<position> (a copy when the state directory is on
// another file system); an in-memory index of which (layer, position)
// each path holds makes this a map lookup. The index knows paths by
// canonical name (symbolic links among the parents resolved, by reading
// /proc/self/fd/N of the parent directory the root handle resolved, or
// by a walk that records the names it passes when /proc is missing), so
// a payload written as a/x with a -> b and replaced as b/x, or the
// reverse, is moved aside.
//
// A pack is one zstd stream: "ocifetch shadow pack 1\n", the number of
// payloads and, for each, its position (as the difference from the one
// before) and size, all uvarints, then the payloads one after the other,
// in position order, which is the order a rebuild reads them in.
//
// While a compressed layer is applied, its blob and tar are teed into an
// internal/recipe Prober; once the layer verified, its candidate recipes
// are recorded in state.json (confirmed at once when the whole layer fit
// in the probe). RebuildBlob makes the blob again from the tree with
// them, into a private spool, writing it only once it hashed to the
// manifest's digest; Confirm verifies the tree and confirms them on the
// whole layer. See docs/reproducibility.md.
//
// Rebuild never hands an unverified byte to its writer: each payload is
// copied privately (into memory up to 4 MiB, beyond that into an
// anonymous temporary file in the state directory, by reflink where the
// file system has them), its size and digest compared with the recorded
// ones, and only then written; the tree may change while it is read, and
// what was checked is what is written. The stream is hashed as it is
// written and its last 1024 bytes are withheld until the digest equals
// the diffID. A wrong rebuild therefore ends in an error, never in a
// clean EOF, and what the writer received is a prefix of the layer: a
// *PayloadError of kind digest_mismatch "changed" names the file,
// not_found "missing" or "not kept" (WithoutShadow); digest_mismatch for
// the stream. Check, whose output goes nowhere, hashes each payload as
// it reads it.
//
// tree.json.zst is a zstd stream of JSON lines, one per object of the tree,
// in walk order: the target directory itself first, as path "." (a
// manifest written before the root was recorded lacks that line, and its
// root is not compared), then depth first, each directory's entries
// sorted by name, a directory before them: {"path", "path_raw" (not
// UTF-8), "type" (file, dir, symlink, fifo, char, block, socket), "mode"
// (permissions with setuid, setgid, sticky), "uid", "gid", and by type
// "size", "digest" (the content digest, taken while the file was
// written), "mtime" (files and directories, ns), "target"/"target_raw",
// "rdev", "hardlink"/"hardlink_raw" (the first path, in walk order, of
// the entry's hard-link group, for the others), "xattrs" ([{"name" or
// "name_raw", "value"}], sorted)}. Verify walks the tree in the same
// order beside it and reports each path that changed (and what: type,
// mode, owner, size, content, mtime, target, device, xattrs, links),
// disappeared or appeared. Extended attributes are compared but for
// WithIgnoredXattrs (security.selinux by default); directory times only
// WithDirMtimes. The root is compared as any directory, reported as ".".
// A regular file is opened only through a descriptor whose type was
// checked (fsroot.OpenRegularAt): a file swapped for a device node after
// the walk's lstat is never opened. A file that takes less space than its size (st_blocks)
// is read by its data regions (SEEK_DATA, SEEK_HOLE), its holes accounted
// for without reading them. The walk holds at most 32 directory
// descriptors however deep the tree (a level closed meanwhile is opened
// again by name from the nearest open ancestor and must be the same
// directory) and memory linear in the entries of the directories on its
// path; a tree deeper than the recorded limit is too_large.
//
// A state directory of format 1 (no digests, no identity) is refused
// with ErrStateVersion. Upgrade brings a complete one to format 2 without
// blobs: it rebuilds every layer from the tree as format 1 reads it,
// applies the rebuilt layers afresh into a scratch directory inside the
// state directory (each checked against its diffID), compares the tree
// with that fresh apply, and only then replaces the metadata, writing the
// manifest from the very walk that compared. A tree that is not exactly
// what its layers make is refused (not_reproducible) and left as it was.
//
// Reading a tree unprivileged: root reads everything. A caller that is not
// root can rebuild and verify trees it owns (an unprivileged apply makes
// everything the caller's) even with mode-000 files and directories: the
// owner's read (and, for directories, search) permission is added for as
// long as one open(2) or one directory walk takes and restored at once, in
// a defer; the ctime of those inodes changes, nothing else. Files of other
// owners that deny reading cannot be rebuilt unprivileged.
//
// # Privileges
//
// As root, owners are preserved and device nodes created. Otherwise the
// defaults are OwnershipCaller (everything owned by the caller) and
// DevicesSkip (device nodes left out, each with a warning); OwnershipFail
// and DevicesFail make those cases errors instead. A device node left out
// (or a hard link to one) still replaces what the lower layers had at its
// path: that entry is removed and missing parents are created, as if the
// node had been made. When owners are preserved, every entry gets its
// header's owner even when it names the caller: an entry created in a
// setgid directory does not keep the directory's group. Attributes the
// file system or the kernel refuses (security.*, trusted.* when
// unprivileged) are left out with a warning.
package apply
