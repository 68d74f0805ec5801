// Package treecmp records a directory tree, everything an image layer can
// set included, and compares it with another tree or with an expected
// listing, reporting every difference precisely. It is for tests.
//
// A listing has one entry per line:
//
//	TYPE PATH [MODE] [key=value ...]
//
// TYPE is dir, file, symlink, fifo, char or block; MODE is octal with the
// setuid, setgid and sticky bits (04755). Keys: owner=UID:GID, content=TEXT
// (Go-quoted when it has spaces), size=N, sha256=HEX, target=LINK-TARGET,
// link=PATH (a hard link of PATH, the first name of its inode in walk
// order: depth first, each directory sorted), mtime=SEC[.NSEC], dev=MAJOR:MINOR, xattr.NAME=VALUE. A field an
// expected entry leaves out is not compared, except link, target and
// xattrs: leaving them out means "none". Lines starting with # are comments.
package treecmp

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Entry is one object of a tree.
type Entry struct {
	Path   string // slash-separated, relative; the root is "."
	Type   string // dir, file, symlink, fifo, char, block, socket
	Mode   uint32 // permission, setuid, setgid and sticky bits
	UID    uint32
	GID    uint32
	Size   int64
	SHA256 string            // files
	Target string            // symlinks
	Link   string            // hard link of this earlier path
	Mtime  int64             // nanoseconds since the epoch
	Dev    string            // "major:minor" of devices
	Xattrs map[string]string // user.* and trusted.* attributes

	has fields
}

type fields uint16

const (
	hasMode fields = 1 << iota
	hasOwner
	hasSize
	hasSHA
	hasMtime
	hasDev
	hasAll fields = 1<<16 - 1
)

// String prints e as a listing line.
func (e Entry) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", e.Type, e.Path)
	if e.has&hasMode != 0 {
		fmt.Fprintf(&b, " %04o", e.Mode)
	}
	if e.has&hasOwner != 0 {
		fmt.Fprintf(&b, " owner=%d:%d", e.UID, e.GID)
	}
	if e.Type == "file" && e.has&hasSize != 0 {
		fmt.Fprintf(&b, " size=%d", e.Size)
	}
	if e.has&hasSHA != 0 && e.SHA256 != "" {
		fmt.Fprintf(&b, " sha256=%.12s", e.SHA256)
	}
	if e.Target != "" {
		fmt.Fprintf(&b, " target=%s", strconv.Quote(e.Target))
	}
	if e.Link != "" {
		fmt.Fprintf(&b, " link=%s", e.Link)
	}
	if e.has&hasMtime != 0 {
		fmt.Fprintf(&b, " mtime=%d.%09d", e.Mtime/1e9, e.Mtime%1e9)
	}
	if e.has&hasDev != 0 && e.Dev != "" {
		fmt.Fprintf(&b, " dev=%s", e.Dev)
	}
	keys := make([]string, 0, len(e.Xattrs))
	for k := range e.Xattrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, " xattr.%s=%s", k, strconv.Quote(e.Xattrs[k]))
	}
	return b.String()
}

// Walk records the tree at root, root included as ".".
func Walk(root string) ([]Entry, error) {
	var out []Entry
	inodes := map[[2]uint64]string{}
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		e := Entry{Path: filepath.ToSlash(rel), has: hasAll}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		e.Mode = st.Mode & 07777
		e.UID, e.GID = st.Uid, st.Gid
		e.Mtime = st.Mtim.Nano()
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			e.Type = "dir"
		case unix.S_IFREG:
			e.Type = "file"
			e.Size = st.Size
			if e.SHA256, err = hashFile(p); err != nil {
				return err
			}
		case unix.S_IFLNK:
			e.Type = "symlink"
			if e.Target, err = os.Readlink(p); err != nil {
				return err
			}
		case unix.S_IFIFO:
			e.Type = "fifo"
		case unix.S_IFCHR, unix.S_IFBLK:
			e.Type = "char"
			if st.Mode&unix.S_IFMT == unix.S_IFBLK {
				e.Type = "block"
			}
			e.Dev = fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		default:
			e.Type = "socket"
		}
		if e.Type != "dir" && st.Nlink > 1 {
			// A group is named after its first member in walk order
			// (depth first, each directory in lexical order).
			key := [2]uint64{st.Dev, st.Ino}
			if first, ok := inodes[key]; ok {
				e.Link = first
			} else {
				inodes[key] = e.Path
			}
		}
		if e.Xattrs, err = xattrs(p); err != nil {
			return err
		}
		out = append(out, e)
		return nil
	})
	return out, err
}

func hashFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func xattrs(p string) (map[string]string, error) {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err == unix.ENOTSUP {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listxattr %s: %w", p, err)
	}
	var m map[string]string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if !strings.HasPrefix(name, "user.") && !strings.HasPrefix(name, "trusted.") {
			continue
		}
		v := make([]byte, 64<<10)
		vn, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			return nil, fmt.Errorf("getxattr %s %s: %w", p, name, err)
		}
		if m == nil {
			m = map[string]string{}
		}
		m[name] = string(v[:vn])
	}
	return m, nil
}

// Parse reads a listing (see the package documentation).
func Parse(listing string) ([]Entry, error) {
	var out []Entry
	for i, line := range strings.Split(listing, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		toks, err := tokens(line)
		if err != nil || len(toks) < 2 {
			return nil, fmt.Errorf("line %d: %q: malformed", i+1, line)
		}
		e := Entry{Type: toks[0], Path: toks[1]}
		for _, t := range toks[2:] {
			if m, err := strconv.ParseUint(t, 8, 32); err == nil && strings.HasPrefix(t, "0") {
				e.Mode, e.has = uint32(m), e.has|hasMode
				continue
			}
			k, v, ok := strings.Cut(t, "=")
			if !ok {
				return nil, fmt.Errorf("line %d: %q: bad field %q", i+1, line, t)
			}
			if err := e.set(k, v); err != nil {
				return nil, fmt.Errorf("line %d: %q: %v", i+1, line, err)
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// MustParse is Parse that panics, for listings written in tests.
func MustParse(listing string) []Entry {
	e, err := Parse(listing)
	if err != nil {
		panic(err)
	}
	return e
}

func (e *Entry) set(k, v string) error {
	var err error
	switch {
	case k == "owner":
		u, g, _ := strings.Cut(v, ":")
		var a, b uint64
		if a, err = strconv.ParseUint(u, 10, 32); err == nil {
			b, err = strconv.ParseUint(g, 10, 32)
		}
		e.UID, e.GID, e.has = uint32(a), uint32(b), e.has|hasOwner
	case k == "content":
		sum := sha256.Sum256([]byte(v))
		e.SHA256, e.Size, e.has = hex.EncodeToString(sum[:]), int64(len(v)), e.has|hasSHA|hasSize
	case k == "sha256":
		e.SHA256, e.has = v, e.has|hasSHA
	case k == "size":
		e.Size, err = strconv.ParseInt(v, 10, 64)
		e.has |= hasSize
	case k == "target":
		e.Target = v
	case k == "link":
		e.Link = v
	case k == "mtime":
		sec, nsec, _ := strings.Cut(v, ".")
		var s, n int64
		if s, err = strconv.ParseInt(sec, 10, 64); err == nil && nsec != "" {
			nsec = (nsec + "000000000")[:9]
			n, err = strconv.ParseInt(nsec, 10, 64)
		}
		e.Mtime, e.has = s*1e9+n, e.has|hasMtime
	case k == "dev":
		e.Dev, e.has = v, e.has|hasDev
	case strings.HasPrefix(k, "xattr."):
		if e.Xattrs == nil {
			e.Xattrs = map[string]string{}
		}
		e.Xattrs[strings.TrimPrefix(k, "xattr.")] = v
	default:
		return fmt.Errorf("unknown key %q", k)
	}
	return err
}

// tokens splits a line at spaces, keeping Go-quoted values together.
func tokens(line string) ([]string, error) {
	var out []string
	for line = strings.TrimSpace(line); line != ""; line = strings.TrimSpace(line) {
		end := strings.IndexByte(line, ' ')
		if end < 0 {
			end = len(line)
		}
		if q := strings.Index(line[:end], `="`); q >= 0 {
			rest := line[q+1:]
			quoted, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return nil, err
			}
			v, _ := strconv.Unquote(quoted)
			out = append(out, line[:q+1]+v)
			line = rest[len(quoted):]
			continue
		}
		out = append(out, line[:end])
		line = line[end:]
	}
	return out, nil
}

// Options relax a comparison.
type Options struct {
	// IgnoreRoot leaves the root entry "." out, on both sides.
	IgnoreRoot bool
	// Owner, when set, is the owner expected of entries that name none.
	Owner *[2]uint32
	// Fields to ignore even when both sides have them.
	IgnoreOwner, IgnoreMtime, IgnoreDirMtime bool
}

// Diff compares got with want and returns one line per difference, empty
// when they match. Entries of want compare only the fields they set (all,
// for entries from Walk).
func Diff(got, want []Entry, o Options) []string {
	var diffs []string
	g := map[string]Entry{}
	for _, e := range got {
		if o.IgnoreRoot && e.Path == "." {
			continue
		}
		g[e.Path] = e
	}
	seen := map[string]bool{}
	for _, w := range want {
		if o.IgnoreRoot && w.Path == "." {
			continue
		}
		seen[w.Path] = true
		e, ok := g[w.Path]
		if !ok {
			diffs = append(diffs, "missing:    "+w.String())
			continue
		}
		var d []string
		add := func(field string, got, want any) {
			d = append(d, fmt.Sprintf("%s %v, want %v", field, got, want))
		}
		if e.Type != w.Type {
			add("type", e.Type, w.Type)
		}
		if w.has&hasMode != 0 && e.Mode != w.Mode {
			add("mode", fmt.Sprintf("%04o", e.Mode), fmt.Sprintf("%04o", w.Mode))
		}
		wu, wg, checkOwner := w.UID, w.GID, w.has&hasOwner != 0
		if !checkOwner && o.Owner != nil {
			wu, wg, checkOwner = o.Owner[0], o.Owner[1], true
		}
		if checkOwner && !o.IgnoreOwner && (e.UID != wu || e.GID != wg) {
			add("owner", fmt.Sprintf("%d:%d", e.UID, e.GID), fmt.Sprintf("%d:%d", wu, wg))
		}
		if w.has&hasSize != 0 && e.Size != w.Size {
			add("size", e.Size, w.Size)
		}
		if w.has&hasSHA != 0 && e.SHA256 != w.SHA256 {
			add("sha256", short(e.SHA256), short(w.SHA256))
		}
		if e.Target != w.Target {
			add("target", strconv.Quote(e.Target), strconv.Quote(w.Target))
		}
		if e.Link != w.Link {
			add("hard link of", strconv.Quote(e.Link), strconv.Quote(w.Link))
		}
		if w.has&hasMtime != 0 && !o.IgnoreMtime && !(o.IgnoreDirMtime && e.Type == "dir") && e.Mtime != w.Mtime {
			add("mtime", e.Mtime, w.Mtime)
		}
		if w.has&hasDev != 0 && e.Dev != w.Dev {
			add("dev", e.Dev, w.Dev)
		}
		if fmt.Sprint(e.Xattrs) != fmt.Sprint(w.Xattrs) && len(e.Xattrs)+len(w.Xattrs) > 0 {
			add("xattrs", e.Xattrs, w.Xattrs)
		}
		if len(d) > 0 {
			diffs = append(diffs, fmt.Sprintf("differs:    %s: %s", w.Path, strings.Join(d, "; ")))
		}
	}
	var extra []string
	for p, e := range g {
		if !seen[p] {
			extra = append(extra, "unexpected: "+e.String())
		}
	}
	sort.Strings(extra)
	return append(diffs, extra...)
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}
