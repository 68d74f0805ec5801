package apply

import (
	"context"
	_ "crypto/sha256" // digest.SHA256
	"errors"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"github.com/vbatts/tar-split/archive/tar"
	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/fsroot"
)

const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."      // AUFS metadata, never content
	opaqueMarker   = ".wh..wh..opq"  // the directory is opaque
	implicitPerm   = 0755            // parents missing from the tar
	maxID          = 1<<32 - 2       // (uid_t)-1 means "unchanged" to chown
	bufSize        = 256 << 10       // payload copy buffer
	xattrPrefix    = "SCHILY.xattr." // PAX records carrying xattrs
	ctxCheckEvery  = 64              // payload reads between ctx checks
	ownerRWX       = 0700            // what the owner needs to populate a directory
	specialBits    = unix.S_ISUID | unix.S_ISGID
	errTruncFormat = "entry %q: payload cut short after %d of %d bytes"
)

// applier applies layers to one root. It is used for one Apply call and
// keeps what may be reused across entries and layers: the copy buffer,
// the read-ahead ring, the zstd decoder and the root's cached parent
// directories.
type applier struct {
	ctx  context.Context
	root *fsroot.Root
	o    *options
	rec  recorder // nopRecorder without a state directory
	buf  []byte
	ring []byte        // the read-ahead's buffer, kept for the next layer
	zr   *zstd.Decoder // for zstd layers, made by the first
	euid int
	egid int
	keys pathHasher
	crc  *crcHash  // for the recorder's payload CRCs, nil when not kept
	fh   *fileHash // for the recorder's content digests, nil when not kept
	// total counts the uncompressed bytes of the layers before this one,
	// for WithMaxTotalBytes.
	total int64

	// per layer
	rep *LayerReport
	// upper holds every name this layer wrote and all their parents: the
	// layer's own entries, which its whiteouts must not remove whatever
	// the order of the tar (as umoci's upperPaths). Canonical names, as
	// keys.
	upper map[pathKey]struct{}
	// dirs holds the final mode and times of the directories this layer
	// lists, by canonical name, set once all their children are in (mode
	// last, so that a mode-000 directory can be populated even when
	// unprivileged).
	dirs map[string]dirMeta
	// kept holds the times of the directories this layer changes (an
	// entry added or removed) without listing them, by canonical name:
	// they get them back when the layer ends, so that a directory's mtime
	// is a function of the image, not of when it was unpacked.
	kept map[string]dirMeta
	// opened holds the modes of lower directories that were opened up for
	// their owner to write into them (not root), restored with dirs.
	opened map[string]uint32

	// ownTree is set when the target was empty as the apply began: every
	// symbolic link in it is then one the apply made. links holds the
	// canonical names of those links (and of hard links to them); names
	// are never taken out, so a parent once a link is always looked up.
	ownTree bool
	links   map[string]struct{}

	// skipped holds the device nodes DevicesSkip left out, in any layer,
	// so that hard links to them are left out too rather than failing.
	skipped map[string]struct{}

	// prog is the layer WithProgress reports on.
	prog progressState
}

type dirMeta struct {
	mode         uint32
	atime, mtime time.Time
}

func newApplier(ctx context.Context, root *fsroot.Root, o *options, rec recorder) *applier {
	a := &applier{ctx: ctx, root: root, o: o, rec: rec, buf: make([]byte, bufSize), euid: os.Geteuid(), egid: os.Getegid(),
		keys: newPathHasher(), skipped: make(map[string]struct{}), links: make(map[string]struct{})}
	if rec.wantDigests() {
		a.crc, a.fh = newCRC(), newFileHash()
	}
	empty, err := root.Empty("")
	a.ownTree = err == nil && empty
	return a
}

// close releases what the applier kept across layers.
func (a *applier) close() {
	if a.zr != nil {
		a.zr.Close()
	}
}

// applyTar applies one uncompressed tar stream, checking its digest
// against diffID when given. On failure it aborts the recorder. The stream
// is read ahead and hashed in a goroutine of its own (see readAhead) and
// parsed once, by tar-split's reader; tarReader sorts every byte for the
// recorder (see tarReader). stopSource, when not nil, unblocks a read of r
// in progress; it is called when the layer fails before r is used up.
// readFailed tells whether r itself failed (see readAhead.failed), so
// that the caller can tell a broken source from a broken layer.
// sourceVerified says that r is itself verified against diffID (it fails
// before io.EOF on a mismatch): the stream is then not hashed again.
func (a *applier) applyTar(r io.Reader, diffID digest.Digest, stopSource func(), tap io.Writer, sourceVerified bool) (rep LayerReport, readFailed bool, err error) {
	a.rep = &LayerReport{}
	a.upper = make(map[pathKey]struct{})
	a.dirs = make(map[string]dirMeta)
	a.kept = make(map[string]dirMeta)
	a.opened = make(map[string]uint32)
	defer func() { a.rep, a.upper, a.dirs, a.kept, a.opened = nil, nil, nil, nil, nil }()
	defer func() {
		if err != nil {
			a.rec.abortLayer()
		}
	}()

	alg := digest.SHA256
	if diffID != "" {
		alg = diffID.Algorithm()
	}
	h := alg.Hash()
	var hw io.Writer = h
	switch {
	case sourceVerified:
		hw = tap // nil, or the recorder's alone
	case tap != nil:
		hw = io.MultiWriter(h, tap)
	}
	ra := startReadAhead(r, hw, a.ring)
	a.ring = ra.buf
	tr := &tarReader{r: ra, capture: true}
	tr.max, tr.totalMax = a.o.maxLayerBytes, a.o.maxTotalBytes > 0
	if tr.totalMax {
		left := max(a.o.maxTotalBytes-a.total, 0)
		if tr.max == 0 || left < tr.max {
			tr.max = left
		} else {
			tr.totalMax = false
		}
		if left == 0 {
			tr.max = -1 // nothing more may be read
		}
	}
	if _, nop := a.rec.(nopRecorder); !nop {
		tr.sink = a.rec.segment
	}
	err = a.entries(tr)
	if err == nil {
		err = a.finishDirs()
	}
	if err != nil && stopSource != nil {
		stopSource()
	}
	// On success the goroutine already read to the end; on failure this
	// waits for its read in progress, after which r is the caller's again.
	ra.close()
	readFailed = ra.failed
	rep = *a.rep
	rep.TarBytes = tr.n
	a.total += tr.n
	rep.DiffID = digest.NewDigest(alg, h)
	if sourceVerified {
		// The source ended cleanly only because its bytes hash to diffID.
		rep.DiffID = diffID
	}
	if err != nil {
		return rep, readFailed, err
	}
	if diffID != "" && rep.DiffID != diffID {
		return rep, readFailed, errdefs.New(errdefs.ErrDigestMismatch, "uncompressed layer digest is %s, want diffID %s", rep.DiffID, diffID)
	}
	// The caller ends the recording (rec.endLayer) once everything else
	// about the layer was verified too, or aborts it.
	return rep, readFailed, nil
}

// emptyCRC is the CRC-64 of no bytes, recorded for entries whose payload,
// if any, went into a segment.
var emptyCRC = newCRC().Sum(nil)

// entries is the one loop over the tar stream.
func (a *applier) entries(tr *tarReader) error {
	rec := a.rec
	// fail prefers the recorder's own error (a full disk under the state
	// directory) to what the tar reader made of it.
	fail := func(err error) error {
		if tr.err != nil {
			return tr.err
		}
		return err
	}
	t := tar.NewReader(tr)
	var fr fileRecord
	var d sum
	for {
		if err := a.ctx.Err(); err != nil {
			return errdefs.Wrap(err, errdefs.ErrCanceled, "applying layer")
		}
		hdr, err := t.Next()
		if err == io.EOF {
			// A tar may end without its end-of-archive blocks or even
			// without its last padding; both are accepted, as by Go's and
			// GNU's readers. What was read is pending.
			break
		}
		if err != nil {
			return fail(errdefs.Wrap(err, errdefs.ErrLayerInvalid, "reading tar header after %d entries", a.rep.Entries))
		}
		if err := tr.flush(); err != nil {
			return err
		}
		a.rep.Entries++
		if max := a.o.maxEntries; max > 0 && int64(a.rep.Entries) > max {
			return errdefs.New(errdefs.ErrTooLarge, "layer has more than the limit of %d entries; if you trust the image, raise the limit (--max-layer-entries, WithMaxEntries)", max)
		}
		p := payload{r: t, t: t, crc: a.crc, fh: a.fh, tr: tr}
		if a.crc != nil {
			a.crc.Reset()
			a.fh.Reset()
		}
		if err := a.entry(hdr, &p); err != nil {
			return fail(err)
		}
		// Whatever the entry did not read must still pass through the
		// recorder (and must not be skipped by the tar reader).
		if err := p.drain(a); err != nil {
			return fail(errdefs.Wrap(err, errdefs.ErrLayerInvalid, errTruncFormat, hdr.Name, p.n, hdr.Size))
		}
		tr.capture = true
		if err := tr.flush(); err != nil {
			return err
		}
		fr = fileRecord{name: hdr.Name}
		if a.crc != nil {
			fr.crc = emptyCRC
		}
		if p.tree {
			if read := tr.n - p.start; read != p.n {
				return errdefs.New(errdefs.ErrInternal, "entry %q: %d payload bytes came from %d bytes of the stream", hdr.Name, p.n, read)
			}
			fr.size = p.n
			if a.crc != nil && p.n > 0 {
				fr.crc = a.crc.Sum(nil)
				d = p.sum
				fr.sum, fr.at, fr.renamed = &d, p.name, p.renamed
			}
		}
		if err := rec.file(&fr); err != nil {
			return err
		}
		a.tick(0)
	}
	// Drain what follows the end-of-archive marker through the hasher:
	// the diffID covers the whole stream, and so does the recorder.
	for {
		_, err := tr.Read(a.buf)
		if err == io.EOF {
			return tr.flush()
		}
		if err != nil {
			return fail(errdefs.Wrap(err, errdefs.ErrLayerInvalid, "reading after the end of the tar"))
		}
	}
}

// payload is the body of the current entry.
type payload struct {
	r     io.Reader
	t     *tar.Reader // r itself, for sparse entries
	crc   *crcHash    // nil when no recorder wants it
	fh    *fileHash   // the content digest, nil when no recorder wants it
	n     int64
	reads int
	tr    *tarReader
	// tree is set when the payload becomes the content of the regular file
	// name (canonical, the shadow index's key) in the tree, which rebuild
	// reads back; start is where it began in the stream, sum its digest
	// once written.
	tree    bool
	name    string
	renamed bool // name is not the entry's cleaned name
	start   int64
	sum     sum
}

// toTree marks the payload, not yet read, as the content of the regular
// file name: the recorder gets its size, CRC and digest instead of its
// bytes.
func (p *payload) toTree(name string, renamed bool) {
	p.tree, p.name, p.renamed, p.start = true, name, renamed, p.tr.n
	p.tr.capture = false
}

func (p *payload) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.n += int64(n)
		if p.crc != nil {
			p.crc.Write(b[:n])
			p.fh.Write(b[:n])
		}
	}
	return n, err
}

// copyTo streams the payload to w with the applier's buffer.
func (p *payload) copyTo(a *applier, w io.Writer) (written int64, readErr, writeErr error) {
	for {
		n, err := p.Read(a.buf)
		if n > 0 {
			if _, werr := w.Write(a.buf[:n]); werr != nil {
				return written, nil, werr
			}
			written += int64(n)
		}
		if err == io.EOF {
			return written, nil, nil
		}
		if err != nil {
			return written, err, nil
		}
		if p.reads++; p.reads%ctxCheckEvery == 0 {
			if err := a.ctx.Err(); err != nil {
				return written, nil, err
			}
			a.tick(written) // a large file: its bytes so far
		}
	}
}

func (p *payload) drain(a *applier) error {
	_, rerr, _ := p.copyTo(a, io.Discard)
	return rerr
}

// entry applies one tar entry.
func (a *applier) entry(hdr *tar.Header, p *payload) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil // PAX global defaults; nothing to create
	}
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if depth(name) > a.o.maxDepth {
		return errdefs.New(errdefs.ErrTooLarge, "entry %q is deeper than the limit of %d levels", shortName(hdr.Name), a.o.maxDepth)
	}
	dir, base := splitName(name)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return a.whiteout(dir, base)
	}
	if strings.Contains("/"+dir, "/"+whiteoutMeta) {
		// Inside an AUFS metadata directory such as .wh..wh.plnk.
		a.rep.warn(name, WarnAUFSMetadata, "AUFS metadata entry ignored")
		return nil
	}
	if hdr.Uid < 0 || int64(hdr.Uid) > maxID || hdr.Gid < 0 || int64(hdr.Gid) > maxID {
		return errdefs.New(errdefs.ErrLayerInvalid, "entry %q: owner %d:%d out of range", hdr.Name, hdr.Uid, hdr.Gid)
	}
	if name == "" && hdr.Typeflag != tar.TypeDir {
		// Replacing the root with a file or link would redirect every
		// later entry (umoci CVE-2021-29136).
		return errdefs.New(errdefs.ErrPathEscape, "entry %q (type %q) would replace the root", hdr.Name, hdr.Typeflag)
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA, tar.TypeCont, tar.TypeGNUSparse:
		err = a.regular(name, hdr, p)
	case tar.TypeDir:
		err = a.directory(name, hdr)
	case tar.TypeSymlink:
		err = a.symlink(name, hdr)
	case tar.TypeLink:
		err = a.hardlink(name, hdr)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		err = a.special(name, hdr)
	default:
		return errdefs.New(errdefs.ErrLayerInvalid, "entry %q: unsupported type %q", hdr.Name, hdr.Typeflag)
	}
	if err != nil {
		return err
	}
	c := a.canon(name)
	if c != name && depth(c) > a.o.maxDepth {
		// Through symbolic links among its parents, deeper than its name.
		return errdefs.New(errdefs.ErrTooLarge, "entry %q lands deeper than the limit of %d levels", shortName(hdr.Name), a.o.maxDepth)
	}
	a.touch(c)
	return nil
}

// canon returns the key of name in upper and in the shadow index: the
// name with the symbolic links among its parents resolved (a/x with
// a -> b is b/x), so that a path is recognised whichever way an entry
// reaches it; the name itself when that cannot be told (a parent missing,
// no /proc), consistently for a whole apply when /proc is missing.
//
// In a tree this apply made from nothing (ownTree), a name none of whose
// parents is one of the links it made resolves to itself: that answer
// needs no readlink of /proc, which cost a tenth of the applier's time.
func (a *applier) canon(name string) string {
	if a.ownTree && !a.underLink(name) {
		return name
	}
	if c, ok := a.root.Canonical(name); ok {
		return c
	}
	return name
}

// underLink tells whether a parent of name is, or once was, a link this
// apply made.
func (a *applier) underLink(name string) bool {
	if len(a.links) == 0 {
		return false
	}
	for i := 0; i < len(name); i++ {
		if name[i] == '/' {
			if _, ok := a.links[name[:i]]; ok {
				return true
			}
		}
	}
	return false
}

// touch records name, a canonical name, and its parents as written by
// this layer.
func (a *applier) touch(name string) {
	for name != "" {
		k := a.keys.key(name)
		if _, ok := a.upper[k]; ok {
			return
		}
		a.upper[k] = struct{}{}
		name, _ = splitName(name)
	}
}

// canonDir returns the canonical name of the directory dir, every
// component followed; ok is false when it is not a directory of the tree
// (missing, or not a directory).
func (a *applier) canonDir(dir string) (string, bool) {
	if a.ownTree && !a.underLink(dir) {
		if _, link := a.links[dir]; !link {
			return dir, true
		}
	}
	return a.root.CanonicalDir(dir)
}

// modifies is called before an entry is added to or removed from the
// directory dir (a name as the layer has it): a directory this layer does
// not list keeps the times it had, given back when the layer ends. The
// root and directories created implicitly are outside the rule.
func (a *applier) modifies(dir string) {
	if dir == "" {
		return
	}
	if _, ok := a.dirs[dir]; ok {
		return
	}
	c, ok := a.canonDir(dir)
	if !ok || c == "" {
		return
	}
	if _, ok := a.dirs[c]; ok {
		return
	}
	if _, ok := a.kept[c]; ok {
		return
	}
	st, err := a.root.Lstat(c)
	if err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return
	}
	a.kept[c] = dirMeta{atime: time.Unix(st.Atim.Unix()), mtime: time.Unix(st.Mtim.Unix())}
}

// modifiesAncestor is modifies for the deepest existing directory above
// name, which creating name's missing parents changes.
func (a *applier) modifiesAncestor(name string) {
	for name != "" {
		name, _ = splitName(name)
		if st, err := a.root.Lstat(name); err == nil {
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				a.modifies(name)
			}
			return
		}
	}
}

func times(hdr *tar.Header) (atime, mtime time.Time) {
	atime, mtime = hdr.AccessTime, hdr.ModTime
	if atime.IsZero() {
		atime = mtime
	}
	return atime, mtime
}

// regular writes a regular file: created with O_EXCL and its mode, filled,
// then owner, mode (setuid and setgid survive only a chmod after chown and
// after an unprivileged write), xattrs (a chown drops
// security.capability) and times, all through the open descriptor.
func (a *applier) regular(name string, hdr *tar.Header, p *payload) error {
	mode := uint32(hdr.Mode) & 07777
	var f *fsroot.File
	_, err := a.create(name, false, func() error {
		var err error
		f, err = a.root.Create(name, mode)
		return err
	})
	if err != nil {
		return err
	}
	defer f.Close()
	var (
		n          int64
		rerr, werr error
	)
	if isSparse(hdr) {
		// A sparse entry's payload as archived differs from the file's
		// content: it stays verbatim in the recorder's segments, and the
		// file is written with its holes as holes.
		n, rerr, werr = a.writeSparse(f, p)
	} else {
		c := a.canon(name)
		p.toTree(c, c != name)
		n, rerr, werr = p.copyTo(a, f)
	}
	if rerr != nil {
		return errdefs.Wrap(rerr, errdefs.ErrLayerInvalid, errTruncFormat, hdr.Name, n, hdr.Size)
	}
	if werr != nil {
		return fsError(werr, "writing %q", name)
	}
	st, err := f.Stat()
	if err != nil {
		return fsError(err, "%q", name)
	}
	if p.fh != nil {
		p.sum = p.fh.Sum()
		if err := a.rec.written(st.Dev, st.Ino, &p.sum); err != nil {
			return err
		}
	}
	chowned := false
	if a.o.ownership != OwnershipCaller && (st.Uid != uint32(hdr.Uid) || st.Gid != uint32(hdr.Gid)) {
		if err := a.chown(name, hdr, func() error { return f.Chown(hdr.Uid, hdr.Gid) }); err != nil {
			return err
		}
		chowned = true
	}
	if st.Mode&07777 != mode || (chowned && mode&specialBits != 0) {
		if err := f.Chmod(mode); err != nil {
			return fsError(err, "%q", name)
		}
	}
	if err := a.xattrs(name, hdr, f.Setxattr); err != nil {
		return err
	}
	if err := f.SetTimes(times(hdr)); err != nil {
		return fsError(err, "%q", name)
	}
	if err := f.Close(); err != nil {
		return fsError(err, "%q", name)
	}
	a.rep.Files++
	a.rep.Bytes += n
	return nil
}

// directory applies a directory entry. A new directory is made with its
// owner able to fill it; an existing one keeps its children. Owner and
// xattrs are set now, mode and times when the layer ends.
func (a *applier) directory(name string, hdr *tar.Header) error {
	mode := uint32(hdr.Mode) & 07777
	var existing *unix.Stat_t
	if name != "" {
		var err error
		existing, err = a.create(name, true, func() error { return a.root.Mkdir(name, mode|ownerRWX) })
		if err != nil {
			return err
		}
		if existing != nil && existing.Mode&ownerRWX != ownerRWX && a.euid != 0 {
			if err := a.root.Lchmod(name, existing.Mode&07777|ownerRWX); err != nil {
				return fsError(err, "%q", name)
			}
		}
	}
	// A directory an earlier layer made already has its owner more often
	// than not; a new one is chowned whatever its owner, since a setgid
	// parent may have given it another group.
	owned := existing != nil && existing.Uid == uint32(hdr.Uid) && existing.Gid == uint32(hdr.Gid)
	if a.o.ownership != OwnershipCaller && !owned {
		if err := a.chown(name, hdr, func() error { return a.root.Lchown(name, hdr.Uid, hdr.Gid) }); err != nil {
			return err
		}
	}
	if err := a.xattrs(name, hdr, a.lsetxattr(name)); err != nil {
		return err
	}
	atime, mtime := times(hdr)
	c := a.canon(name)
	a.dirs[c] = dirMeta{mode: mode, atime: atime, mtime: mtime}
	delete(a.kept, c)
	delete(a.opened, name)
	delete(a.opened, c)
	a.rep.Dirs++
	return nil
}

func (a *applier) symlink(name string, hdr *tar.Header) error {
	if _, err := a.create(name, false, func() error { return a.root.Symlink(hdr.Linkname, name) }); err != nil {
		return err
	}
	a.links[a.canon(name)] = struct{}{}
	if err := a.metadata(name, hdr, false); err != nil {
		return err
	}
	a.rep.Symlinks++
	return nil
}

// hardlink links name to an entry already in the tree, from this layer or
// a lower one. The target is resolved inside the root like any name (a
// symlinked parent is followed but confined); a target that climbs above
// the root is refused, and a symbolic link as target is linked itself. The
// link shares its target's inode, so the header's metadata is not applied:
// it belongs to the target's own entry.
func (a *applier) hardlink(name string, hdr *tar.Header) error {
	target, err := cleanName(hdr.Linkname)
	if err != nil {
		return errdefs.Wrap(err, errdefs.ErrPathEscape, "hard link %q", hdr.Name)
	}
	if target == "" {
		return errdefs.New(errdefs.ErrPathEscape, "hard link %q to the root", hdr.Name)
	}
	if target == name {
		return nil
	}
	if _, ok := a.skipped[target]; ok {
		a.rep.warn(name, WarnDeviceSkipped, "hard link to device node "+target+" not created")
		a.skipped[name] = struct{}{}
		return a.clear(name)
	}
	st, err := a.root.Lstat(target)
	if err != nil && a.openUp(target, err) {
		st, err = a.root.Lstat(target)
	}
	if err != nil {
		return errdefs.Wrap(err, errdefs.ErrLayerInvalid, "hard link %q to %q", hdr.Name, hdr.Linkname)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return errdefs.New(errdefs.ErrLayerInvalid, "hard link %q to directory %q", hdr.Name, hdr.Linkname)
	}
	if _, err := a.create(name, false, func() error { return a.root.Link(target, name) }); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		a.links[a.canon(name)] = struct{}{} // another name of a symbolic link
	}
	a.rep.Hardlinks++
	return nil
}

// special creates a device node or FIFO.
func (a *applier) special(name string, hdr *tar.Header) error {
	mode := uint32(hdr.Mode) & 07777
	if hdr.Typeflag == tar.TypeFifo {
		mode |= unix.S_IFIFO
	} else {
		if hdr.Devmajor < 0 || hdr.Devmajor > fsroot.MaxDevMajor || hdr.Devminor < 0 || hdr.Devminor > fsroot.MaxDevMinor {
			return errdefs.New(errdefs.ErrLayerInvalid, "entry %q: device %d:%d does not fit the kernel's device numbers", hdr.Name, hdr.Devmajor, hdr.Devminor)
		}
		switch a.o.devices {
		case DevicesSkip:
			a.rep.warn(name, WarnDeviceSkipped, "device node not created")
			a.skipped[name] = struct{}{}
			return a.clear(name)
		case DevicesFail:
			return errdefs.New(errdefs.ErrInternal, "entry %q is a device node and devices are not allowed", hdr.Name)
		}
		mode |= unix.S_IFCHR
		if hdr.Typeflag == tar.TypeBlock {
			mode = mode&^unix.S_IFMT | unix.S_IFBLK
		}
	}
	if _, err := a.create(name, false, func() error { return a.root.Mknod(name, mode, hdr.Devmajor, hdr.Devminor) }); err != nil {
		return err
	}
	if err := a.metadata(name, hdr, true); err != nil {
		return err
	}
	a.rep.Specials++
	return nil
}

// metadata sets owner, mode (unless a symlink), xattrs and times of name
// by name, never following a final symlink. The owner is set even when
// the header names the caller: a new entry takes the group of a setgid
// parent, not the caller's.
func (a *applier) metadata(name string, hdr *tar.Header, chmod bool) error {
	if a.o.ownership != OwnershipCaller {
		if err := a.chown(name, hdr, func() error { return a.root.Lchown(name, hdr.Uid, hdr.Gid) }); err != nil {
			return err
		}
	}
	if chmod {
		if err := a.root.Lchmod(name, uint32(hdr.Mode)); err != nil {
			return fsError(err, "%q", name)
		}
	}
	if err := a.xattrs(name, hdr, a.lsetxattr(name)); err != nil {
		return err
	}
	atime, mtime := times(hdr)
	return fsError(a.root.Lutimes(name, atime, mtime), "%q", name)
}

// chown runs do, which changes the owner of name, under the ownership
// policy.
func (a *applier) chown(name string, hdr *tar.Header, do func() error) error {
	err := do()
	if err == nil {
		return nil
	}
	if (errors.Is(err, unix.EPERM) || errors.Is(err, unix.EINVAL)) && a.o.ownership == OwnershipPreserve {
		a.rep.warn(name, WarnOwnerKept, "owner "+strconv.Itoa(hdr.Uid)+":"+strconv.Itoa(hdr.Gid)+" not set: "+err.Error())
		return nil
	}
	return errdefs.Wrap(err, errdefs.ErrInternal, "cannot give %q its owner %d:%d", name, hdr.Uid, hdr.Gid)
}

func (a *applier) lsetxattr(name string) func(string, []byte) error {
	return func(attr string, value []byte) error { return a.root.Lsetxattr(name, attr, value) }
}

// xattrs sets the PAX SCHILY.xattr.* records of hdr. An attribute the
// kernel or file system refuses (security.* or trusted.* when not root, no
// xattr support) is left out with a warning.
func (a *applier) xattrs(name string, hdr *tar.Header, set func(string, []byte) error) error {
	for k, v := range hdr.PAXRecords {
		attr, ok := strings.CutPrefix(k, xattrPrefix)
		if !ok {
			continue
		}
		err := set(attr, []byte(v))
		switch {
		case err == nil:
		case errors.Is(err, unix.EPERM), errors.Is(err, unix.ENOTSUP), errors.Is(err, unix.EACCES), errors.Is(err, unix.EINVAL):
			a.rep.warn(name, WarnXattrSkipped, "xattr "+attr+" not set: "+err.Error())
		default:
			return fsError(err, "xattr %s of %q", attr, name)
		}
	}
	return nil
}

// create runs mk, which creates name, and deals with what stands in the
// way: an existing entry is removed first (a directory with everything
// below it; a symbolic link itself, never its target), missing parents are
// created, and a lower directory that denies its owner access is opened
// up. When dir is set and a directory already exists, it is kept and its
// status returned.
func (a *applier) create(name string, dir bool, mk func() error) (existing *unix.Stat_t, err error) {
	parent, _ := splitName(name)
	a.modifies(parent)
	for attempt := 0; ; attempt++ {
		err := mk()
		if err == nil {
			return nil, nil
		}
		if attempt == 3 {
			return nil, fsError(err, "creating %q", name)
		}
		switch {
		case errors.Is(err, unix.EEXIST):
			st, lerr := a.root.Lstat(name)
			if lerr != nil {
				return nil, fsError(lerr, "%q", name)
			}
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				if dir {
					return &st, nil
				}
				if err := a.displaceTree(name); err != nil {
					return nil, err
				}
				err = a.root.RemoveAll(name)
				a.forgetDirs(name)
			} else {
				moved, derr := a.displace(name, &st)
				if derr != nil {
					return nil, derr
				}
				if !moved {
					err = a.root.Remove(name)
				} else {
					err = nil
				}
			}
			if err != nil && !a.openUp(name, err) {
				return nil, fsError(err, "replacing %q", name)
			}
		case errors.Is(err, unix.ENOENT):
			a.modifiesAncestor(parent)
			if err := a.root.MkdirAll(parent, implicitPerm); err != nil && !a.openUp(parent, err) {
				return nil, fsError(err, "creating the parents of %q", name)
			}
		case a.openUp(name, err):
		default:
			return nil, fsError(err, "creating %q", name)
		}
	}
}

// clear makes way for an entry that is left out (a device node under
// DevicesSkip, a hard link to one): the layer still replaces what lower
// layers left at name, so that is removed as create would remove it (its
// recorded payload displaced), and missing parents are created; nothing
// new is made at name.
func (a *applier) clear(name string) error {
	_, err := a.create(name, false, func() error {
		_, err := a.root.Lstat(name)
		switch {
		case err == nil:
			return unix.EEXIST // removed by create, then checked again
		case errors.Is(err, unix.ENOENT):
			parent, _ := splitName(name)
			_, err = a.root.Lstat(parent) // ENOENT: create makes the parents
		}
		return err
	})
	return err
}

// forgetDirs drops the pending metadata of name and of everything below
// it, which were just removed.
func (a *applier) forgetDirs(name string) {
	prefix := name + "/"
	if c, ok := a.root.Canonical(name); ok && c != name {
		a.forgetDirs(c)
	}
	for d := range a.dirs {
		if d == name || strings.HasPrefix(d, prefix) {
			delete(a.dirs, d)
		}
	}
	for d := range a.kept {
		if d == name || strings.HasPrefix(d, prefix) {
			delete(a.kept, d)
		}
	}
	for d := range a.opened {
		if d == name || strings.HasPrefix(d, prefix) {
			delete(a.opened, d)
		}
	}
}

// openUp handles err, the failure of an operation on name: when it is
// EACCES and this process is not root, the directories leading to name
// that belong to the caller but deny it access (a lower layer's mode-000
// or 0555 directory) get rwx for their owner until the end of the layer.
// It reports whether anything changed, that is whether a retry may help.
func (a *applier) openUp(name string, err error) bool {
	if a.euid == 0 || !errors.Is(err, unix.EACCES) {
		return false
	}
	parent, _ := splitName(name)
	changed := false
	prefix := ""
	rest := parent
	for {
		st, err := a.root.Lstat(prefix)
		if err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return changed
		}
		if int(st.Uid) == a.euid && st.Mode&ownerRWX != ownerRWX {
			if a.root.Lchmod(prefix, st.Mode&07777|ownerRWX) != nil {
				return changed
			}
			if _, pending := a.dirs[prefix]; !pending {
				if _, seen := a.opened[prefix]; !seen {
					a.opened[prefix] = st.Mode & 07777
				}
			}
			changed = true
		}
		if rest == "" {
			return changed
		}
		var comp string
		comp, rest, _ = strings.Cut(rest, "/")
		prefix = joinName(prefix, comp)
	}
}

// whiteout applies DIR/.wh.NAME (remove NAME of the lower layers) and
// DIR/.wh..wh..opq (remove every child of DIR of the lower layers). DIR is
// resolved once, symbolic links included, and everything is then done by
// canonical names under it: through a link that points at its own
// directory (s -> .), removing the link as one of the children must not
// cut the way to the others, whatever order readdir gives them in.
func (a *applier) whiteout(dir, base string) error {
	a.rep.Whiteouts++
	if strings.HasPrefix(base, whiteoutMeta) && base != opaqueMarker {
		a.rep.Whiteouts--
		a.rep.warn(joinName(dir, base), WarnAUFSMetadata, "AUFS metadata entry ignored")
		return nil
	}
	var victim string
	if base != opaqueMarker {
		victim = base[len(whiteoutPrefix):]
		switch victim {
		case "":
			return errdefs.New(errdefs.ErrLayerInvalid, "whiteout %q names nothing", joinName(dir, base))
		case ".", "..":
			// Not a single path element: it would remove DIR itself or its parent.
			return errdefs.New(errdefs.ErrPathEscape, "whiteout %q names %q, not an entry of its directory", joinName(dir, base), victim)
		}
	}
	cdir, ok := a.canonDir(dir)
	if base == opaqueMarker {
		if !ok {
			a.touch(dir)
			return nil // nothing below to hide
		}
		a.touch(cdir)
		return a.removeLowerChildren(cdir)
	}
	if !ok {
		return nil
	}
	return a.removeLower(joinName(cdir, victim))
}

// removeLower removes name, a canonical name, as far as it comes from
// lower layers: what this layer wrote stays, and a directory this layer
// wrote into keeps those entries while losing the rest.
func (a *applier) removeLower(name string) error {
	if _, mine := a.upper[a.keys.key(name)]; !mine {
		st, err := a.root.Lstat(name)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return nil
		}
		parent, _ := splitName(name)
		a.modifies(parent)
		if err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			moved, err := a.displace(name, &st)
			if err != nil || moved {
				return err
			}
		} else if err := a.displaceTree(name); err != nil {
			return err
		}
		err = a.root.RemoveAll(name)
		if err != nil && a.openUp(name, err) {
			err = a.root.RemoveAll(name)
		}
		a.forgetDirs(name)
		return fsError(err, "whiteout of %q", name)
	}
	st, err := a.root.Lstat(name)
	if errors.Is(err, unix.ENOENT) {
		return nil // this layer wrote it and then replaced a parent
	}
	if err != nil {
		return fsError(err, "whiteout of %q", name)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	return a.removeLowerChildren(name)
}

// removeLowerChildren removes the children of the directory dir, a
// canonical name, that come from lower layers.
func (a *applier) removeLowerChildren(dir string) error {
	names, err := a.root.ReadDirNames(dir)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil // nothing below to hide
	}
	if err != nil && a.openUp(joinName(dir, "x"), err) {
		names, err = a.root.ReadDirNames(dir)
	}
	if err != nil {
		return fsError(err, "opaque directory %q", dir)
	}
	for _, n := range names {
		if err := a.removeLower(joinName(dir, n)); err != nil {
			return err
		}
	}
	return nil
}

// finishDirs sets the mode and times of the directories this layer
// touched and restores those opened up, deepest first: a parent's final
// mode may deny the access its children's updates need, and setting a
// child's times or mode never changes its parent's.
func (a *applier) finishDirs() error {
	type fix struct {
		name  string
		meta  dirMeta
		only  bool // restore the mode only
		times bool // restore the times only
	}
	fixes := make([]fix, 0, len(a.dirs)+len(a.kept)+len(a.opened))
	for n, m := range a.dirs {
		fixes = append(fixes, fix{name: n, meta: m})
	}
	for n, m := range a.kept {
		fixes = append(fixes, fix{name: n, meta: m, times: true})
	}
	for n, mode := range a.opened {
		fixes = append(fixes, fix{name: n, meta: dirMeta{mode: mode}, only: true})
	}
	sort.Slice(fixes, func(i, j int) bool {
		di, dj := depth(fixes[i].name), depth(fixes[j].name)
		if di != dj {
			return di > dj
		}
		return fixes[i].name < fixes[j].name
	})
	for _, f := range fixes {
		if !f.times {
			if err := a.root.Lchmod(f.name, f.meta.mode); err != nil {
				return fsError(err, "directory %q", f.name)
			}
		}
		if f.only {
			continue
		}
		if err := a.root.Lutimes(f.name, f.meta.atime, f.meta.mtime); err != nil {
			return fsError(err, "directory %q", f.name)
		}
	}
	return nil
}

// fsError classifies a failed filesystem operation: errors that already
// have a kind keep it; errors the layer's content causes (a file where a
// directory is needed, a loop of links, a name too long, a missing hard
// link target) are layer_invalid; the rest (no space, I/O, permissions)
// internal.
func fsError(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	if hasKind(err) {
		return errdefs.Wrap(err, errdefs.KindOf(err), format, args...)
	}
	for _, e := range []error{unix.ENOTDIR, unix.ELOOP, unix.ENAMETOOLONG, unix.EEXIST, unix.ENOENT, unix.EINVAL, unix.ERANGE, unix.EMLINK, unix.EISDIR, unix.ENOTEMPTY, unix.EXDEV} {
		if errors.Is(err, e) {
			return errdefs.Wrap(err, errdefs.ErrLayerInvalid, format, args...)
		}
	}
	return errdefs.Wrap(err, errdefs.ErrInternal, format, args...)
}

// hasKind reports whether err carries an errdefs kind.
func hasKind(err error) bool {
	var e *errdefs.Error
	return errors.As(err, &e)
}
