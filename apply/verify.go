package apply

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"unicode/utf8"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/atomicfile"
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
	Size    int64  `json:"size,omitempty"`  // files
	CRC     uint64 `json:"crc,omitempty"`   // files: CRC-64/ISO of the content
	Mtime   int64  `json:"mtime,omitempty"` // files: nanoseconds since the epoch
	// Target of a symbolic link; TargetRaw when not UTF-8.
	Target    string `json:"target,omitempty"`
	TargetRaw []byte `json:"target_raw,omitempty"`
	Rdev      uint64 `json:"rdev,omitempty"` // devices
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

// entryOf describes the walked entry; crc gives the content CRC of a
// regular file.
func entryOf(path string, st *unix.Stat_t, dirfd int, base string, crc func() (uint64, error)) (treeEntry, error) {
	e := treeEntry{Type: typeName(st.Mode), Mode: st.Mode & 07777, UID: st.Uid, GID: st.Gid}
	if utf8.ValidString(path) {
		e.Path = path
	} else {
		e.PathRaw = []byte(path)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		e.Size = st.Size
		e.Mtime = st.Mtim.Nano()
		c, err := crc()
		if err != nil {
			return e, err
		}
		e.CRC = c
	case unix.S_IFLNK:
		t, err := readlinkAt(dirfd, base)
		if err != nil {
			return e, walkErr(err, path)
		}
		if utf8.ValidString(t) {
			e.Target = t
		} else {
			e.TargetRaw = []byte(t)
		}
	case unix.S_IFCHR, unix.S_IFBLK:
		e.Rdev = st.Rdev
	}
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

// fileCRC reads the regular file base in dirfd for its CRC-64.
func fileCRC(dirfd int, base, path string, buf []byte) (uint64, error) {
	f, err := openAtOwner(dirfd, base)
	if err != nil {
		return 0, walkErr(err, path)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return 0, walkErr(err, path)
	}
	if st.Blocks*512 < st.Size {
		// Holes (or compression): read the data regions only.
		c, err := sparseCRC(f, st.Size, buf)
		if err != nil {
			return 0, walkErr(err, path)
		}
		return c, nil
	}
	h := newCRC()
	if _, err := io.CopyBuffer(h, f, buf); err != nil {
		return 0, walkErr(err, path)
	}
	return h.Sum64(), nil
}

// writeManifest walks the finished tree into tree.json.zst. Contents are
// not read again: the CRC of every regular file the layers wrote was taken
// while writing it (found by inode, so hard links share it); only files
// the layers did not write (the target was not empty) are read.
func (s *stateRec) writeManifest(ctx context.Context, target string) error {
	f, err := atomicfile.Create(filepath.Join(s.dir, treeFile), 0o644)
	if err != nil {
		return err
	}
	defer f.Abort()
	bw := bufio.NewWriterSize(f, 64<<10)
	s.zw.Reset(bw)
	s.out = s.out[:0]
	buf := make([]byte, 64<<10)
	err = walkTree(ctx, target, func(path string, st *unix.Stat_t, dirfd int, base string) error {
		e, err := entryOf(path, st, dirfd, base, func() (uint64, error) {
			if c, ok := s.crcs[devIno{st.Dev, st.Ino}]; ok {
				return c, nil
			}
			return fileCRC(dirfd, base, path, buf)
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
	Path string    `json:"path"`
	Kind DriftKind `json:"kind"`
	// Changes lists what changed, for DriftChanged: "type", "mode",
	// "owner", "size", "content", "mtime", "target", "device".
	Changes []string `json:"changes,omitempty"`
}

// Verify compares the tree at rootfs with the manifest Apply recorded in
// stateDir when it completed: the final state after all layers, for each
// path its type, mode (setuid, setgid, sticky included), owner (as the
// ownership policy in state.json applied it), and, by kind, a file's size,
// content (CRC-64, every file is read; a file with holes by its
// data regions only) and modification time, a link's
// target, a device's numbers. It returns one Drift per path that changed,
// disappeared or appeared, in walk order (each directory's entries sorted,
// after it); nil when the tree is as applied. Directory times are not
// compared: adding an entry changes them. Memory stays bounded: the
// manifest and the tree are read side by side, as streams in the same
// order. A state that is not complete is invalid_argument.
func Verify(ctx context.Context, stateDir, rootfs string) ([]Drift, error) {
	st, err := Status(stateDir)
	if err != nil {
		return nil, err
	}
	if st.Status != StatusComplete {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "the apply into %s did not complete (status %q): nothing to verify against", rootfs, st.Status)
	}
	mf, err := os.Open(filepath.Join(stateDir, treeFile))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errdefs.Wrap(err, errdefs.ErrNotFound, "tree manifest")
		}
		return nil, errdefs.Wrap(err, errdefs.ErrInternal, "tree manifest")
	}
	defer mf.Close()
	zr, err := zstd.NewReader(bufio.NewReaderSize(mf, 64<<10), zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
	if err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInternal, "tree manifest")
	}
	defer zr.Close()
	m := &manifestReader{dec: json.NewDecoder(zr)}
	if err := m.advance(); err != nil {
		return nil, err
	}
	var drifts []Drift
	buf := make([]byte, 64<<10)
	err = walkTree(ctx, rootfs, func(path string, st *unix.Stat_t, dirfd int, base string) error {
		for m.cur != nil && pathLess(m.cur.path(), path) {
			drifts = append(drifts, Drift{Path: m.cur.path(), Kind: DriftDisappeared})
			if err := m.advance(); err != nil {
				return err
			}
		}
		if m.cur == nil || m.cur.path() != path {
			drifts = append(drifts, Drift{Path: path, Kind: DriftAppeared})
			return nil
		}
		want := m.cur
		got, err := entryOf(path, st, dirfd, base, func() (uint64, error) {
			if want.Type != "file" || want.Size != st.Size {
				return 0, nil // already different; no need to read
			}
			return fileCRC(dirfd, base, path, buf)
		})
		if err != nil {
			return err
		}
		if ch := compareEntries(want, &got); len(ch) > 0 {
			drifts = append(drifts, Drift{Path: path, Kind: DriftChanged, Changes: ch})
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
	dec *json.Decoder
	cur *treeEntry
}

func (m *manifestReader) advance() error {
	var e treeEntry
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

func compareEntries(want, got *treeEntry) []string {
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
		} else if want.CRC != got.CRC {
			ch = append(ch, "content")
		}
		if want.Mtime != got.Mtime {
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
	return ch
}
