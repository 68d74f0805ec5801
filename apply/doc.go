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
// diffID (digest_mismatch, size_mismatch). A payload shorter than its
// header says is layer_invalid; a tar that ends without its end-of-archive
// blocks, or even without the padding of its last entry, is accepted as Go
// and GNU tar accept it. Payloads are streamed through one reused buffer:
// memory does not grow with file sizes. A failed Apply leaves a partly
// applied tree, which the caller must discard.
//
// # Layer semantics (image-spec layer.md)
//
//   - DIR/.wh.NAME removes NAME, and everything below it, as the lower
//     layers left it; DIR/.wh..wh..opq removes every child of DIR the lower
//     layers left. Entries of the same layer stay, before or after the
//     marker in the tar: the applier records what the layer wrote (as umoci
//     does). Whiteout files never appear in the tree; other .wh..wh.*
//     entries are AUFS metadata, ignored with a warning.
//   - A non-directory replacing a directory, or the reverse, removes the
//     old entry (with everything below it) first; a directory over a
//     directory keeps the children and takes the new metadata. Any other
//     entry replaces what is there by unlink and create, so that other hard
//     links to an old file keep their content.
//   - Hard links refer to an entry of this or a lower layer. Symbolic links
//     are created as they are and never followed while extracting.
//   - Parents missing from the tar are created (0755, owned by the caller).
//   - Mode bits (setuid, setgid, sticky included), owners, PAX
//     SCHILY.xattr.* attributes, device nodes, FIFOs, and access and
//     modification times to the nanosecond. Directory modes and times are
//     set when the layer ends, deepest first, after all their children were
//     written: a mode-000 directory is populated with rwx for its owner
//     first, which is also what lets an unprivileged apply fill it.
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
// # Privileges
//
// As root, owners are preserved and device nodes created. Otherwise the
// defaults are OwnershipCaller (everything owned by the caller) and
// DevicesSkip (device nodes left out, each with a warning); OwnershipFail
// and DevicesFail make those cases errors instead. Attributes the file
// system or the kernel refuses (security.*, trusted.* when unprivileged)
// are left out with a warning.
package apply
