package apply

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"unicode/utf8"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/atomicfile"
	"github.com/ocifetch/ocifetch/internal/fsroot"
)

// treeEntry is one line of tree.json.zst, the manifest of the tree as
// Apply left it.
type treeEntry struct {
	Path    string `json:"path,omitempty"`
	PathRaw []byte `json:"path_raw,omitempty"` // instead of Path when not UTF-8
	Type    string `json:"type"`               // file, dir, symlink, fifo, char, block, socket
	Mode    uint32 `json:"mode"`               // permissions with setuid, setgid, sticky
	UID     uint32 `json:"uid"`
	GID     uint32 `json:"gid"`
	Size    int64  `json:"size,omitempty"`   // files
	Digest  string `json:"digest,omitempty"` // files: content digest (State.FileDigest), hex
	Mtime   int64  `json:"mtime,omitempty"`  // files and directories: nanoseconds since the epoch
	// Target of a symbolic link; TargetRaw when not UTF-8.
	Target    string `json:"target,omitempty"`
	TargetRaw []byte `json:"target_raw,omitempty"`
	Rdev      uint64 `json:"rdev,omitempty"` // devices
	// Hardlink is the path of the first entry, in walk order, of the
	// entry's hard-link group (the entries that share its inode), for the
	// entries after the first; HardlinkRaw when not UTF-8.
	Hardlink    string  `json:"hardlink,omitempty"`
	HardlinkRaw []byte  `json:"hardlink_raw,omitempty"`
	Xattrs      []xattr `json:"xattrs,omitempty"` // sorted by name
}

type xattr struct {
	Name    string `json:"name,omitempty"`
	NameRaw []byte `json:"name_raw,omitempty"` // instead of Name when not UTF-8
	Value   []byte `json:"value"`
}

func (x *xattr) name() string {
	if x.NameRaw != nil {
		return string(x.NameRaw)
	}
	return x.Name
}

func (e *treeEntry) path() string {
	if e.PathRaw != nil {
		return string(e.PathRaw)
	}
	return e.Path
}

func (e *treeEntry) target() string {
	if e.TargetRaw != nil {
		return string(e.TargetRaw)
	}
	return e.Target
}

func (e *treeEntry) hardlink() string {
	if e.HardlinkRaw != nil {
		return string(e.HardlinkRaw)
	}
	return e.Hardlink
}

func rawOrString(s string) (string, []byte) {
	if utf8.ValidString(s) {
		return s, nil
	}
	return "", []byte(s)
}

func typeName(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "file"
	case unix.S_IFDIR:
		return "dir"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFCHR:
		return "char"
	case unix.S_IFBLK:
		return "block"
	case unix.S_IFSOCK:
		return "socket"
	}
	return "unknown"
}

// entryReader reads what the manifest records of the walked entries.
type entryScanner struct {
	xr  *fsroot.XattrReader
	buf []byte
	fh  *fileHash
	// links maps the inode of each entry with more than one link to the
	// first path walked that has it.
	links map[devIno]string
}

func newEntryScanner() *entryScanner {
	return &entryScanner{xr: fsroot.NewXattrReader(), buf: make([]byte, 256<<10), fh: newFileHash(), links: map[devIno]string{}}
}

// entryOf describes the walked entry; content gives the digest of a
// regular file.
func (sc *entryScanner) entryOf(path string, st *unix.Stat_t, dirfd int, base string, content func() (sum, error)) (treeEntry, error) {
	e := treeEntry{Type: typeName(st.Mode), Mode: st.Mode & 07777, UID: st.Uid, GID: st.Gid}
	e.Path, e.PathRaw = rawOrString(path)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		e.Size = st.Size
		e.Mtime = st.Mtim.Nano()
		d, err := content()
		if err != nil {
			return e, err
		}
		e.Digest = d.String()
	case unix.S_IFDIR:
		e.Mtime = st.Mtim.Nano()
	case unix.S_IFLNK:
		t, err := readlinkAt(dirfd, base)
		if err != nil {
			return e, walkErr(err, path)
		}
		e.Target, e.TargetRaw = rawOrString(t)
	case unix.S_IFCHR, unix.S_IFBLK:
		e.Rdev = st.Rdev
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR && st.Nlink > 1 {
		k := devIno{st.Dev, st.Ino}
		if first, ok := sc.links[k]; ok {
			e.Hardlink, e.HardlinkRaw = rawOrString(first)
		} else {
			sc.links[k] = path
		}
	}
	attrs, ok, err := sc.xr.ListAt(dirfd, base, st)
	if err != nil {
		return e, walkErr(err, path)
	}
	if ok {
		e.Xattrs = xattrsOf(attrs)
	}
	return e, nil
}

// xattrsOf is the manifest's form of attrs.
func xattrsOf(attrs []fsroot.Xattr) []xattr {
	var xs []xattr
	for _, a := range attrs {
		x := xattr{Value: a.Value}
		x.Name, x.NameRaw = rawOrString(a.Name)
		xs = append(xs, x)
	}
	return xs
}

// rootPath is the path the manifest and Verify give the target directory
// itself, the image's "/": no entry of the tree has it.
const rootPath = "."

// rootEntry describes the target directory, open as fd: its type, mode,
// owner, mtime and xattrs, as for any directory.
func (sc *entryScanner) rootEntry(fd int, st *unix.Stat_t) (treeEntry, error) {
	e := treeEntry{Path: rootPath, Type: typeName(st.Mode), Mode: st.Mode & 07777, UID: st.Uid, GID: st.Gid, Mtime: st.Mtim.Nano()}
	attrs, err := sc.xr.ListFD(fd)
	if err != nil {
		return e, walkErr(err, "")
	}
	e.Xattrs = xattrsOf(attrs)
	return e, nil
}

func readlinkAt(dirfd int, base string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, base, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// fileSum reads the regular file base in dirfd for its content digest.
func (sc *entryScanner) fileSum(dirfd int, base, path string) (sum, error) {
	f, err := openAtOwner(dirfd, base)
	if err != nil {
		return sum{}, walkErr(err, path)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return sum{}, walkErr(err, path)
	}
	sc.fh.Reset()
	if st.Blocks*512 < st.Size {
		// Holes (or compression): read the data regions only.
		if err := sparseRead(f, st.Size, sc.buf, sc.fh.Write, sc.fh.zeros); err != nil {
			return sum{}, walkErr(err, path)
		}
		return sc.fh.Sum(), nil
	}
	if _, err := io.CopyBuffer(sc.fh, f, sc.buf); err != nil {
		return sum{}, walkErr(err, path)
	}
	return sc.fh.Sum(), nil
}

// writeManifest walks the finished tree into tree.json.zst. Contents are
// not read again: the digest of every regular file the layers wrote was
// taken while writing it (found by inode, so hard links share it); only
// files the layers did not write are read.
func (s *stateRec) writeManifest(ctx context.Context, target string, o *options) error {
	f, err := atomicfile.Create(filepath.Join(s.dir, manifestFile), 0o644)
	if err != nil {
		return err
	}
	defer f.Abort()
	bw := bufio.NewWriterSize(f, 64<<10)
	s.zw.Reset(bw)
	s.out = s.out[:0]
	sc := newEntryScanner()
	// The target itself first, as ".": its mode, owner, xattrs and mtime
	// are the image's "/" (a container can chmod 0777 it too).
	root := func(fd int, st *unix.Stat_t) error {
		e, err := sc.rootEntry(fd, st)
		if err != nil {
			return err
		}
		s.out = appendTreeEntry(s.out, &e)
		return s.writeOut(false)
	}
	err = walkTree(ctx, target, o.maxDepth, root, func(path string, st *unix.Stat_t, dirfd int, base string) error {
		e, err := sc.entryOf(path, st, dirfd, base, func() (sum, error) {
			d, ok, err := s.sums.get(st.Dev, st.Ino)
			if err != nil {
				return d, errdefs.Wrap(err, errdefs.ErrInternal, "reading the content digests")
			}
			if ok {
				return d, nil
			}
			return sc.fileSum(dirfd, base, path)
		})
		if err != nil {
			return err
		}
		s.out = appendTreeEntry(s.out, &e)
		return s.writeOut(false)
	})
	if err == nil {
		err = s.writeOut(true)
	}
	if err == nil {
		err = s.zw.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Commit()
	}
	if err != nil {
		if hasKind(err) {
			return err
		}
		return errdefs.Wrap(err, errdefs.ErrInternal, "writing the tree manifest")
	}
	return nil
}

// DriftKind classifies a Drift.
type DriftKind string

// The drift kinds.
const (
	DriftChanged     DriftKind = "changed"     // the path is there, different
	DriftDisappeared DriftKind = "disappeared" // the apply left it, it is gone
	DriftAppeared    DriftKind = "appeared"    // the apply did not leave it
)

// Drift is a path of the tree that differs from what Apply left.
type Drift struct {
	// Path is relative to the target, "." for the target itself. Its JSON
	// form adds pathRaw when it is not valid UTF-8 (see MarshalJSON).
	Path string    `json:"path"`
	Kind DriftKind `json:"kind"`
	// Changes lists what changed, for DriftChanged: "type", "mode",
	// "owner", "size", "content", "mtime", "target", "device", "xattrs",
	// "links".
	Changes []string `json:"changes,omitempty"`
}

// driftJSON is Drift's JSON form.
type driftJSON struct {
	Path    string    `json:"path"`
	PathRaw []byte    `json:"pathRaw,omitempty"`
	Kind    DriftKind `json:"kind"`
	Changes []string  `json:"changes,omitempty"`
}

// MarshalJSON writes the drift as {"path", "pathRaw", "kind", "changes"}.
// A JSON string holds UTF-8 only, and a Linux name is bytes: encoding/json
// writes each invalid byte as U+FFFD, so that \xff\xfe and \xfe\xff both
// came out as "\ufffd\ufffd". When Path is not valid UTF-8, pathRaw holds
// its exact bytes (base64) beside it; path stays for display.
func (d Drift) MarshalJSON() ([]byte, error) {
	j := driftJSON{Path: d.Path, Kind: d.Kind, Changes: d.Changes}
	if !utf8.ValidString(d.Path) {
		j.PathRaw = []byte(d.Path)
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON writes, pathRaw first.
func (d *Drift) UnmarshalJSON(b []byte) error {
	var j driftJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*d = Drift{Path: j.Path, Kind: j.Kind, Changes: j.Changes}
	if j.PathRaw != nil {
		d.Path = string(j.PathRaw)
	}
	return nil
}

// DefaultIgnoredXattrs are the extended attributes Verify does not
// compare unless WithIgnoredXattrs says otherwise: security.selinux is the
// label a host's policy gives files, not content of the image.
var DefaultIgnoredXattrs = []string{"security.selinux"}

// Verify compares the tree at rootfs with the manifest Apply recorded in
// stateDir when it completed: the final state after all layers, for each
// path its type, mode (setuid, setgid, sticky included), owner (as the
// ownership policy in state.json applied it), extended attributes (all
// but those WithIgnoredXattrs names, security.selinux by default),
// hard-link grouping (which paths share an inode), and, by kind, a file's
// size, content (its digest: every file is read; a file with holes by its
// data regions only) and modification time, a link's target, a device's
// numbers, and with WithDirMtimes a directory's modification time. The
// directory rootfs itself, the image's "/", is compared as any directory
// and reported as "." (a manifest written before it was recorded leaves
// it out). A state directory another user could write is refused
// (invalid_argument): it is the reference.
//
// It returns one Drift per path that changed, disappeared or appeared,
// in walk order (the root first, each directory's entries sorted, after
// it); nil when the tree is as applied. Memory stays bounded by the entries of the
// directories on the walked path and a few dozen descriptors, however
// deep the tree: the manifest and the tree are read side by side, as
// streams in the same order. A tree deeper than the state's depth limit
// is too_large. A state that is not complete is invalid_argument, one
// that describes another directory too, and one an unpack holds (through
// whatever name of the directory) is busy.
func Verify(ctx context.Context, stateDir, rootfs string, opts ...Option) ([]Drift, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	st, unlock, err := openComplete(stateDir, rootfs)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return verifyState(ctx, stateDir, rootfs, st, o)
}

// newManifestDecoder reads the zstd stream of tree.json.zst.
func newManifestDecoder(f io.Reader) (*zstd.Decoder, error) {
	zr, err := zstd.NewReader(bufio.NewReaderSize(f, 64<<10), zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
	if err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInternal, "tree manifest")
	}
	return zr, nil
}

// verifyTree compares the tree at rootfs with the manifest read from r.
// emit, when not nil, gets the entry read from the tree for every path the
// manifest has, and for the root. The root is compared when compareRoot
// is set and the manifest records it (manifests written before the root
// was recorded begin with its first entry).
func verifyTree(ctx context.Context, r io.Reader, rootfs string, maxDepth int, o *options, compareRoot bool, emit func(*treeEntry) error) ([]Drift, error) {
	budget := &entryBudget{r: r}
	m := &manifestReader{dec: json.NewDecoder(budget), budget: budget}
	if err := m.advance(); err != nil {
		return nil, err
	}
	var drifts []Drift
	sc := newEntryScanner()
	if maxDepth <= 0 {
		maxDepth = DefaultMaxDepth
	}
	root := func(fd int, st *unix.Stat_t) error {
		var want *treeEntry
		if m.cur != nil && m.cur.path() == rootPath {
			want = m.cur
			if err := m.advance(); err != nil {
				return err
			}
		}
		if want == nil && emit == nil {
			return nil
		}
		got, err := sc.rootEntry(fd, st)
		if err != nil {
			return err
		}
		if want != nil && compareRoot {
			if ch := compareEntries(want, &got, o); len(ch) > 0 {
				drifts = append(drifts, Drift{Path: rootPath, Kind: DriftChanged, Changes: ch})
			}
		}
		if emit != nil {
			return emit(&got)
		}
		return nil
	}
	err := walkTree(ctx, rootfs, maxDepth, root, func(path string, st *unix.Stat_t, dirfd int, base string) error {
		for m.cur != nil && pathLess(m.cur.path(), path) {
			drifts = append(drifts, Drift{Path: m.cur.path(), Kind: DriftDisappeared})
			if err := m.advance(); err != nil {
				return err
			}
		}
		if m.cur == nil || m.cur.path() != path {
			// Entries of the same group that appear later compare with
			// this one: scan it for its links too.
			if _, err := sc.entryOf(path, st, dirfd, base, func() (sum, error) { return sum{}, nil }); err != nil {
				return err
			}
			drifts = append(drifts, Drift{Path: path, Kind: DriftAppeared})
			return nil
		}
		want := m.cur
		got, err := sc.entryOf(path, st, dirfd, base, func() (sum, error) {
			if want.Type != "file" || want.Size != st.Size {
				return sum{}, nil // already different; no need to read
			}
			return sc.fileSum(dirfd, base, path)
		})
		if err != nil {
			return err
		}
		if ch := compareEntries(want, &got, o); len(ch) > 0 {
			drifts = append(drifts, Drift{Path: path, Kind: DriftChanged, Changes: ch})
		}
		if emit != nil {
			if err := emit(&got); err != nil {
				return err
			}
		}
		return m.advance()
	})
	if err != nil {
		return drifts, err
	}
	for m.cur != nil {
		drifts = append(drifts, Drift{Path: m.cur.path(), Kind: DriftDisappeared})
		if err := m.advance(); err != nil {
			return drifts, err
		}
	}
	return drifts, nil
}

type manifestReader struct {
	dec    *json.Decoder
	budget *entryBudget
	cur    *treeEntry
}

// maxManifestEntry bounds the bytes read for one entry of tree.json.zst.
// An entry this program writes holds a path of at most 1 MiB (4096 levels
// of 255 bytes), a link target and the xattrs a tar header carried (at
// most 1 MiB: archive/tar's limit on a PAX header), in base64: well under
// 16 MiB. The state directory is trusted, but a damaged or forged entry
// must not be read whole: one string of 1 GB, 1 MB of zstd, made verify
// hold 2 GB.
const maxManifestEntry = 64 << 20

// entryBudget lets the decoder read at most maxManifestEntry bytes for
// each entry (advance renews it; what the decoder read ahead is carried
// in its buffer).
type entryBudget struct {
	r    io.Reader
	left int
}

func (b *entryBudget) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("an entry longer than %d bytes", maxManifestEntry)
	}
	if len(p) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= n
	return n, err
}

func (m *manifestReader) advance() error {
	var e treeEntry
	m.budget.left = maxManifestEntry
	err := m.dec.Decode(&e)
	if err == io.EOF {
		m.cur = nil
		return nil
	}
	if err != nil {
		return errdefs.Wrap(err, errdefs.ErrInternal, "tree manifest is corrupt")
	}
	m.cur = &e
	return nil
}

func compareEntries(want, got *treeEntry, o *options) []string {
	if want.Type != got.Type {
		return []string{"type"}
	}
	var ch []string
	if want.Mode != got.Mode {
		ch = append(ch, "mode")
	}
	if want.UID != got.UID || want.GID != got.GID {
		ch = append(ch, "owner")
	}
	switch want.Type {
	case "file":
		if want.Size != got.Size {
			ch = append(ch, "size")
		} else if want.Digest != got.Digest {
			ch = append(ch, "content")
		}
		if want.Mtime != got.Mtime {
			ch = append(ch, "mtime")
		}
	case "dir":
		if o.dirMtimes && want.Mtime != got.Mtime {
			ch = append(ch, "mtime")
		}
	case "symlink":
		if want.target() != got.target() {
			ch = append(ch, "target")
		}
	case "char", "block":
		if want.Rdev != got.Rdev {
			ch = append(ch, "device")
		}
	}
	if !sameXattrs(want.Xattrs, got.Xattrs, o.ignoredXattrs()) {
		ch = append(ch, "xattrs")
	}
	if want.hardlink() != got.hardlink() {
		ch = append(ch, "links")
	}
	return ch
}

// sameXattrs compares two sorted lists of attributes, leaving out the
// ignored names.
func sameXattrs(a, b []xattr, ignored []string) bool {
	keep := func(xs []xattr) []xattr {
		var out []xattr
		for _, x := range xs {
			if !slices.Contains(ignored, x.name()) {
				out = append(out, x)
			}
		}
		return out
	}
	a, b = keep(a), keep(b)
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].name() != b[i].name() || !bytes.Equal(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}
