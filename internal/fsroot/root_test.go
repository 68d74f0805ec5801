package fsroot

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ocifetch/ocifetch/errdefs"
)

// modes runs f once with openat2 and once with the fallback walk.
func modes(t *testing.T, f func(t *testing.T, opts []Option)) {
	t.Run("openat2", func(t *testing.T) {
		if !openat2Works(unix.AT_FDCWD) {
			t.Skip("openat2 unavailable")
		}
		f(t, nil)
	})
	t.Run("fallback", func(t *testing.T) { f(t, []Option{WithFallback()}) })
}

// rooted runs f in both modes on a fresh fixture's root, opened.
func rooted(t *testing.T, f func(t *testing.T, root string, r *Root)) {
	modes(t, func(t *testing.T, opts []Option) {
		root, _ := fixture(t)
		f(t, root, open(t, root, opts))
	})
}

// confined runs f in both modes on a fresh fixture, and checks after
// it that nothing outside the root changed.
func confined(t *testing.T, f func(t *testing.T, root, outside string, opts []Option)) {
	modes(t, func(t *testing.T, opts []Option) {
		root, outside := fixture(t)
		f(t, root, outside, opts)
		checkOutside(t, outside)
	})
}

// fixture makes a root directory and, beside it, an outside directory with
// a sentinel file, and returns both paths.
func fixture(t *testing.T) (root, outside string) {
	t.Helper()
	base := t.TempDir()
	root = filepath.Join(base, "root")
	outside = filepath.Join(base, "outside")
	for _, d := range []string{root, outside} {
		if err := os.Mkdir(d, 0755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "sentinel"), []byte("keep"), 0640); err != nil {
		t.Fatal(err)
	}
	old := time.Unix(1000000000, 0)
	if err := os.Chtimes(filepath.Join(outside, "sentinel"), old, old); err != nil {
		t.Fatal(err)
	}
	return root, outside
}

// plant makes entries under root for a test, in order, failing it on any
// error: "d/" is a directory (with its parents), "l -> target" a symbolic
// link, "f=content" a file holding content and any other name an empty
// file, both mode 0644.
func plant(t *testing.T, root string, entries ...string) {
	t.Helper()
	for _, e := range entries {
		var err error
		if name, target, ok := strings.Cut(e, " -> "); ok {
			err = os.Symlink(target, filepath.Join(root, name))
		} else if name, ok := strings.CutSuffix(e, "/"); ok {
			err = os.MkdirAll(filepath.Join(root, name), 0755)
		} else {
			name, content, _ := strings.Cut(e, "=")
			err = os.WriteFile(filepath.Join(root, name), []byte(content), 0644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// checkOutside fails when the sentinel changed or anything else appeared
// outside the root.
func checkOutside(t *testing.T, outside string) {
	t.Helper()
	ents, err := os.ReadDir(outside)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != "sentinel" {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("outside directory now holds %v", names)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(outside, "sentinel"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&07777 != 0640 || st.Mtim.Sec != 1000000000 || st.Uid != uint32(os.Getuid()) || st.Size != 4 {
		t.Errorf("sentinel changed: mode %o mtime %d uid %d size %d", st.Mode&07777, st.Mtim.Sec, st.Uid, st.Size)
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "sentinel")); string(b) != "keep" {
		t.Errorf("sentinel content %q", b)
	}
	if ents, _ := os.ReadDir(filepath.Dir(outside)); len(ents) != 2 {
		t.Errorf("%d entries beside root and outside", len(ents)-2)
	}
}

func open(t *testing.T, dir string, opts []Option) *Root {
	t.Helper()
	r, err := Open(dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestConfinedResolution(t *testing.T) {
	t.Parallel()
	modes(t, func(t *testing.T, opts []Option) {
		cases := []struct {
			name   string
			setup  func(root, outside string) error
			create string // file created through the Root
			want   string // where it must land, relative to root
		}{
			{"dotdot climbs stop at root", nil, "../../x", "x"},
			{"absolute name is relative", nil, "/abs/../x", "x"},
			{"symlink to slash", func(root, _ string) error { return os.Symlink("/", filepath.Join(root, "a")) }, "a/x", "x"},
			{"symlink with dotdots", func(root, _ string) error { return os.Symlink("../../..", filepath.Join(root, "a")) }, "a/x", "x"},
			{"symlink to outside absolute path", func(root, outside string) error {
				if err := os.MkdirAll(filepath.Join(root, outside), 0755); err != nil {
					return err
				}
				return os.Symlink(outside, filepath.Join(root, "a"))
			}, "a/sentinel", "$OUT/sentinel"},
			{"relative symlink to outside", func(root, outside string) error {
				if err := os.Mkdir(filepath.Join(root, "outside"), 0755); err != nil {
					return err
				}
				return os.Symlink("../outside", filepath.Join(root, "a"))
			}, "a/sentinel", "outside/sentinel"},
			{"chain of links", func(root, _ string) error {
				if err := os.MkdirAll(filepath.Join(root, "usr/lib"), 0755); err != nil {
					return err
				}
				if err := os.Symlink("/usr/lib", filepath.Join(root, "lib")); err != nil {
					return err
				}
				return os.Symlink("lib/../../../lib", filepath.Join(root, "l2"))
			}, "l2/x", "usr/lib/x"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				root, outside := fixture(t)
				if c.setup != nil {
					if err := c.setup(root, outside); err != nil {
						t.Fatal(err)
					}
				}
				r := open(t, root, opts)
				f, err := r.Create(c.create, 0644)
				if err != nil {
					t.Fatalf("create: %v", err)
				}
				f.Write([]byte("new"))
				f.Close()
				want := strings.ReplaceAll(c.want, "$OUT", outside[1:])
				b, err := os.ReadFile(filepath.Join(root, want))
				if err != nil || string(b) != "new" {
					t.Errorf("%s: %q %v", want, b, err)
				}
				checkOutside(t, outside)
			})
		}
	})
}

func TestRootIsNeverReplaced(t *testing.T) {
	t.Parallel()
	confined(t, func(t *testing.T, root, outside string, opts []Option) {
		r := open(t, root, opts)
		for _, name := range []string{"", ".", "/", "./", "a/..", "../.."} {
			checks := map[string]error{
				"remove":    r.Remove(name),
				"removeall": r.RemoveAll(name),
				"rename":    r.Rename(name, "x"),
				"renameTo":  r.Rename("x", name),
				"symlink":   r.Symlink("/", name),
				"link":      r.Link("x", name),
				"mknod":     r.Mknod(name, unix.S_IFIFO|0644, 0, 0),
			}
			_, checks["create"] = r.Create(name, 0644)
			for op, err := range checks {
				if !errors.Is(err, errdefs.ErrPathEscape) {
					t.Errorf("%s %q: %v, want path_escape", op, name, err)
				}
			}
		}
		if _, err := os.Stat(root); err != nil {
			t.Fatal(err)
		}
	})
}

func TestMetadataCallsDoNotFollowSymlinks(t *testing.T) {
	t.Parallel()
	// containerd CVE-2021-32760: a chmod through a symlink changed a host
	// file's mode.
	confined(t, func(t *testing.T, root, outside string, opts []Option) {
		sentinel := filepath.Join(outside, "sentinel")
		if err := os.Symlink(sentinel, filepath.Join(root, "link")); err != nil {
			t.Fatal(err)
		}
		r := open(t, root, opts)
		if err := r.Lchmod("link", 04777); err != nil {
			t.Errorf("chmod: %v", err)
		}
		if err := r.Lchown("link", 12345, 12345); err != nil {
			t.Errorf("chown: %v", err)
		}
		if err := r.Lutimes("link", time.Unix(5, 0), time.Unix(7, 0)); err != nil {
			t.Errorf("utimes: %v", err)
		}
		// user.* attributes are not allowed on links: the call must fail
		// rather than set it on the target.
		if err := r.Lsetxattr("link", "user.x", []byte("y")); err == nil {
			t.Errorf("setxattr on a link succeeded")
		}
		var st unix.Stat_t
		unix.Lstat(filepath.Join(root, "link"), &st)
		if st.Uid != 12345 || st.Mtim.Sec != 7 {
			t.Errorf("link itself not changed: uid %d mtime %d", st.Uid, st.Mtim.Sec)
		}
	})
}

func TestCreateNeverWritesThroughALink(t *testing.T) {
	t.Parallel()
	confined(t, func(t *testing.T, root, outside string, opts []Option) {
		plant(t, root, "f -> "+filepath.Join(outside, "sentinel"))
		r := open(t, root, opts)
		if _, err := r.Create("f", 0644); !errors.Is(err, unix.EEXIST) {
			t.Errorf("create over link: %v, want EEXIST", err)
		}
		if err := r.Remove("f"); err != nil {
			t.Fatal(err)
		}
		f, err := r.Create("f", 0644)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	})
}

func TestRemoveAllNeverFollows(t *testing.T) {
	t.Parallel()
	confined(t, func(t *testing.T, root, outside string, opts []Option) {
		plant(t, root, "d/sub/", "d/sub/out -> "+outside, "top -> "+outside, "d/locked/inner/")
		os.WriteFile(filepath.Join(root, "d/locked/inner/f"), nil, 0)
		os.Chmod(filepath.Join(root, "d/locked/inner"), 0)
		os.Chmod(filepath.Join(root, "d/locked"), 0)
		r := open(t, root, opts)
		if err := r.RemoveAll("top"); err != nil {
			t.Fatal(err)
		}
		if err := r.RemoveAll("d"); err != nil {
			t.Fatal(err)
		}
		if err := r.RemoveAll("missing/x"); err != nil {
			t.Errorf("missing: %v", err)
		}
		if ents, _ := os.ReadDir(root); len(ents) != 0 {
			t.Errorf("root not empty: %v", ents)
		}
	})
}

func TestLinkLinksTheSymlinkItself(t *testing.T) {
	t.Parallel()
	confined(t, func(t *testing.T, root, outside string, opts []Option) {
		plant(t, root, "s -> "+filepath.Join(outside, "sentinel"))
		r := open(t, root, opts)
		if err := r.Link("s", "h"); err != nil {
			t.Fatal(err)
		}
		var a, b unix.Stat_t
		unix.Lstat(filepath.Join(root, "s"), &a)
		unix.Lstat(filepath.Join(root, "h"), &b)
		if a.Ino != b.Ino || b.Mode&unix.S_IFMT != unix.S_IFLNK {
			t.Errorf("h is not a hard link of the symlink s")
		}
		// A link through a symlinked directory lands inside the root.
		plant(t, root, "real/", "real/f=in", "viaabs -> /real")
		if err := r.Link("viaabs/f", "h2"); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(filepath.Join(root, "h2")); string(b) != "in" {
			t.Errorf("h2 = %q", b)
		}
	})
}

func TestOpenFileRefusesNonRegular(t *testing.T) {
	t.Parallel()
	confined(t, func(t *testing.T, root, outside string, opts []Option) {
		plant(t, root, "passwd=root:x:0:0", "link -> "+filepath.Join(outside, "sentinel"), "dir/")
		if err := unix.Mkfifo(filepath.Join(root, "fifo"), 0644); err != nil {
			t.Fatal(err)
		}
		r := open(t, root, opts)
		f, err := r.OpenFile("/passwd")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(f)
		f.Close()
		if string(b) != "root:x:0:0" {
			t.Errorf("read %q", b)
		}
		for _, name := range []string{"fifo", "dir", ""} {
			if _, err := r.OpenFile(name); !errors.Is(err, ErrNotRegular) {
				t.Errorf("%q: %v, want ErrNotRegular", name, err)
			}
		}
		if _, err := r.OpenFile("link"); !errors.Is(err, unix.ELOOP) && !errors.Is(err, ErrNotRegular) {
			t.Errorf("link: %v", err)
		}
	})
}

func TestMknodRefusesOversizedDevices(t *testing.T) {
	t.Parallel()
	rooted(t, func(t *testing.T, _ string, r *Root) {
		for _, d := range [][2]int64{{1 << 12, 0}, {0, 1 << 20}, {-1, 0}, {1 << 32, 1}} {
			if err := r.Mknod("dev", unix.S_IFCHR|0600, d[0], d[1]); !errors.Is(err, unix.ERANGE) {
				t.Errorf("%v: %v, want ERANGE", d, err)
			}
		}
	})
}

func TestMkdirAllThroughDanglingLink(t *testing.T) {
	t.Parallel()
	confined(t, func(t *testing.T, root, outside string, opts []Option) {
		plant(t, root, "d -> "+outside+"/made")
		r := open(t, root, opts)
		if err := r.MkdirAll("d/x/y", 0755); err != nil {
			t.Fatal(err)
		}
		if st, err := os.Stat(filepath.Join(root, outside, "made/x/y")); err != nil || !st.IsDir() {
			t.Errorf("not created inside the root: %v", err)
		}
		plant(t, root, "file")
		if err := r.MkdirAll("file/x", 0755); !errors.Is(err, unix.ENOTDIR) {
			t.Errorf("through a file: %v, want ENOTDIR", err)
		}
	})
}

func TestSymlinkLoop(t *testing.T) {
	t.Parallel()
	modes(t, func(t *testing.T, opts []Option) {
		root, _ := fixture(t)
		plant(t, root, "l1 -> l2", "l2 -> /l1")
		r := open(t, root, opts)
		if _, err := r.Create("l1/x", 0644); !errors.Is(err, unix.ELOOP) {
			t.Errorf("create: %v, want ELOOP", err)
		}
	})
}

func TestParentCacheFollowsReplacement(t *testing.T) {
	t.Parallel()
	rooted(t, func(t *testing.T, root string, r *Root) {
		for _, step := range []func() error{
			func() error { return r.Mkdir("a", 0755) },
			func() error { f, err := r.Create("a/f1", 0644); f.Close(); return err },
			func() error { return r.RemoveAll("a") },
			func() error { return r.Mkdir("b", 0755) },
			func() error { return r.Symlink("b", "a") },
			func() error { f, err := r.Create("a/f2", 0644); f.Close(); return err },
		} {
			if err := step(); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := os.Lstat(filepath.Join(root, "b/f2")); err != nil {
			t.Errorf("a/f2 did not go through the new link: %v", err)
		}
	})
}

func TestChmodKeepsSpecialBits(t *testing.T) {
	t.Parallel()
	rooted(t, func(t *testing.T, _ string, r *Root) {
		r.Mkdir("d", 0755)
		f, _ := r.Create("d/f", 0644)
		f.Close()
		for name, mode := range map[string]uint32{"d": 01777, "d/f": 06755, "": 0750} {
			if err := r.Lchmod(name, mode); err != nil {
				t.Fatal(err)
			}
			st, err := r.Lstat(name)
			if err != nil || st.Mode&07777 != mode {
				t.Errorf("%q: mode %o, want %o (%v)", name, st.Mode&07777, mode, err)
			}
		}
	})
}

func TestFallbackMatchesOpenat2(t *testing.T) {
	t.Parallel()
	if !openat2Works(unix.AT_FDCWD) {
		t.Skip("openat2 unavailable")
	}
	root, _ := fixture(t)
	plant(t, root, "usr/lib/x/", "etc/", "a/b/c/",
		"lib -> /usr/lib", "rel -> usr/../etc", "up -> ../../../..", "abs -> /a/b/../b/c",
		"chain -> lib/x/../../../etc", "self -> .", "deep -> a/b/c/../../../lib/x")
	a, b := open(t, root, nil), open(t, root, []Option{WithFallback()})
	for _, name := range []string{"lib", "rel", "up", "abs", "chain", "self", "deep", "lib/x", "up/usr/lib", "self/self/lib"} {
		fa, erra := a.openDir(name)
		fb, errb := b.openDir(name)
		if erra != nil || errb != nil {
			t.Errorf("%s: %v / %v", name, erra, errb)
			continue
		}
		var sa, sb unix.Stat_t
		unix.Fstat(fa, &sa)
		unix.Fstat(fb, &sb)
		unix.Close(fa)
		unix.Close(fb)
		if sa.Ino != sb.Ino {
			t.Errorf("%s: openat2 and the walk reach different directories", name)
		}
	}
}

// MoveOut moves the final component itself, never what a symbolic link
// there points to, out of the root.
func TestMoveOut(t *testing.T) {
	t.Parallel()
	for _, fallback := range []bool{false, true} {
		base := t.TempDir()
		root, out := filepath.Join(base, "root"), filepath.Join(base, "out")
		plant(t, base, "root/d/", "out/", "root/d/f=f", "victim=v", "root/d/l -> ../../victim")
		var opts []Option
		if fallback {
			opts = append(opts, WithFallback())
		}
		r, err := Open(root, opts...)
		if err != nil {
			t.Fatal(err)
		}
		dfd, err := os.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.MoveOut("d/f", int(dfd.Fd()), "1"); err != nil {
			t.Fatal(err)
		}
		if err := r.MoveOut("/d/l", int(dfd.Fd()), "2"); err != nil {
			t.Fatal(err)
		}
		if err := r.MoveOut("/", int(dfd.Fd()), "3"); !errors.Is(err, ErrRoot) {
			t.Errorf("moving the root: %v", err)
		}
		if b, _ := os.ReadFile(filepath.Join(out, "1")); string(b) != "f" {
			t.Errorf("moved file holds %q", b)
		}
		if l, _ := os.Readlink(filepath.Join(out, "2")); l != "../../victim" {
			t.Errorf("moved link points to %q", l)
		}
		if b, _ := os.ReadFile(filepath.Join(base, "victim")); string(b) != "v" {
			t.Error("the link's target was touched")
		}
		if ents, _ := os.ReadDir(filepath.Join(root, "d")); len(ents) != 0 {
			t.Errorf("left in the root: %v", ents)
		}
		dfd.Close()
		r.Close()
	}
}

// WriteAt past the end and Truncate leave holes: the file has its logical
// size and content, and takes a few blocks, not its size.
func TestWriteAtLeavesHoles(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	r := open(t, root, nil)
	f, err := r.Create("sparse", 0644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const gib = 1 << 30
	if _, err := f.WriteAt([]byte("middle"), gib); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(4 * gib); err != nil {
		t.Fatal(err)
	}
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if st.Size != 4*gib {
		t.Errorf("size %d, want %d", st.Size, 4*gib)
	}
	if used := st.Blocks * 512; used > 1<<20 {
		t.Errorf("%d bytes on disk for a file of one written block", used)
	}
	g, err := os.Open(filepath.Join(root, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	b := make([]byte, 8)
	if _, err := g.ReadAt(b, gib-1); err != nil || string(b) != "\x00middle\x00" {
		t.Errorf("content around the write: %q, %v", b, err)
	}
}

func TestCanonical(t *testing.T) {
	t.Parallel()
	modes(t, func(t *testing.T, opts []Option) {
		root, _ := fixture(t)
		plant(t, root, "b/c/", "a -> b", "abs -> /b/c", "b/c/up -> ../../../b", "top -> /", "file")
		r := open(t, root, opts)
		for _, c := range []struct {
			name, want string
			dir, ok    bool
		}{
			{"x", "x", false, true},
			{"", "", false, true},
			{"a", "a", false, true},
			{"a/x", "b/x", false, true},
			{"/a/./c/x", "b/c/x", false, true},
			{"abs/x", "b/c/x", false, true},
			{"b/c/up/x", "b/x", false, true},
			{"top/a/x", "b/x", false, true},
			{"top/x", "x", false, true},
			{"a", "b", true, true},
			{"abs", "b/c", true, true},
			{"top", "", true, true},
			{"missing/x", "", false, false},
			{"file/x", "", false, false},
			{"a/x", "b/x", false, true}, // again, from the cache
		} {
			got, ok := r.Canonical(c.name)
			if c.dir {
				got, ok = r.CanonicalDir(c.name)
			}
			if got != c.want || ok != c.ok {
				t.Errorf("Canonical(%q, dir %v) = %q, %v; want %q, %v", c.name, c.dir, got, ok, c.want, c.ok)
			}
		}
	})
}

// The parent cache holds several directories: entries land in the right
// one however the names alternate, a directory replaced while it is not
// the most recent one is not used through its old descriptor, and the
// cache leaks no descriptor.
func TestParentCacheManyDirectories(t *testing.T) {
	// Not parallel: it counts the process's open descriptors.
	confined(t, func(t *testing.T, root, outside string, opts []Option) {
		before := openFDs(t)
		r, err := Open(root, opts...)
		if err != nil {
			t.Fatal(err)
		}
		const n = 3 * dirCacheSize
		dir := func(i int) string {
			return "d" + strings.Repeat("x", i%3) + "/" + string(rune('a'+i%26)) + strconv.Itoa(i)
		}
		for i := range n {
			if err := r.MkdirAll(dir(i), 0755); err != nil {
				t.Fatal(err)
			}
		}
		// Two passes in different orders: the second comes back to
		// directories long evicted.
		for pass, step := range []int{1, 7} {
			for k := range n {
				i := k * step % n
				f, err := r.Create(dir(i)+"/f"+strconv.Itoa(pass), 0644)
				if err != nil {
					t.Fatal(err)
				}
				f.Write([]byte(dir(i)))
				f.Close()
			}
		}
		for i := range n {
			for pass := range 2 {
				b, err := os.ReadFile(filepath.Join(root, dir(i), "f"+strconv.Itoa(pass)))
				if err != nil || string(b) != dir(i) {
					t.Fatalf("%s/f%d: %q, %v", dir(i), pass, b, err)
				}
			}
		}
		create := func(name string) func() error {
			return func() error {
				f, err := r.Create(name, 0644)
				if err != nil {
					return err
				}
				return f.Close()
			}
		}
		// Replace x while y is the most recent parent, then write through
		// the new x.
		for _, step := range []func() error{
			func() error { return r.MkdirAll("x/in", 0755) },
			func() error { return r.Mkdir("y", 0755) },
			create("x/in/old"),
			create("y/f"),
			func() error { return r.RemoveAll("x") },
			func() error { return r.MkdirAll("z/in", 0755) },
			func() error { return r.Symlink("z", "x") },
			create("x/in/new"),
			create("y/g"),
			func() error { return r.Rename("y", "w") },
			func() error { return r.Mkdir("y", 0755) },
			create("y/h"),
		} {
			if err := step(); err != nil {
				t.Fatal(err)
			}
		}
		for _, p := range []string{"z/in/new", "w/f", "w/g", "y/h"} {
			if _, err := os.Lstat(filepath.Join(root, p)); err != nil {
				t.Errorf("%s: %v", p, err)
			}
		}
		if _, err := os.Lstat(filepath.Join(root, "y/g")); err == nil {
			t.Error("y/g exists: written through a stale descriptor")
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if after := openFDs(t); after != before {
			t.Errorf("%d descriptors open before, %d after Close", before, after)
		}
	})
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// allModes runs f with every combination of the kernel's features and
// /proc: openat2 or the walk, with /proc or without.
func allModes(t *testing.T, f func(t *testing.T, opts []Option)) {
	modes(t, func(t *testing.T, opts []Option) {
		t.Run("proc", func(t *testing.T) { f(t, opts) })
		t.Run("noproc", func(t *testing.T) { f(t, append(opts[:len(opts):len(opts)], WithoutProc())) })
	})
}

// Canonical names are the same without /proc: they come from the walk.
func TestCanonicalWithoutProc(t *testing.T) {
	t.Parallel()
	allModes(t, func(t *testing.T, opts []Option) {
		root, _ := fixture(t)
		plant(t, root, "b/c/", "a -> b", "self -> .", "b/c/up -> ../../../b")
		r := open(t, root, opts)
		for name, want := range map[string]string{
			"a/x": "b/x", "self/self/a/c/x": "b/c/x", "b/c/up/c/x": "b/c/x", "self/x": "x", "x": "x",
		} {
			if got, ok := r.Canonical(name); !ok || got != want {
				t.Errorf("Canonical(%q) = %q, %v; want %q", name, got, ok, want)
			}
		}
		if got, ok := r.CanonicalDir("self"); !ok || got != "" {
			t.Errorf("CanonicalDir(self) = %q, %v; want the root", got, ok)
		}
	})
}

// Xattrs are set on directories, files, FIFOs and (where the file system
// allows) symbolic links without following a final link and without
// /proc; XattrReader reads them back the same ways.
func TestXattrsWithoutProc(t *testing.T) {
	t.Parallel()
	allModes(t, func(t *testing.T, opts []Option) {
		root, outside := fixture(t)
		plant(t, root, "d/", "f", "l -> ../outside/sentinel")
		r := open(t, root, opts)
		for _, name := range []string{"d", "f"} {
			if err := r.Lsetxattr(name, "user.k", []byte("v-"+name)); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		// user.* is not allowed on symbolic links; the call must fail
		// without touching the link's target.
		if err := r.Lsetxattr("l", "user.k", []byte("x")); err == nil {
			t.Error("user.k set on a symbolic link")
		}
		if os.Geteuid() == 0 {
			if err := r.Lsetxattr("l", "trusted.k", []byte("t")); err != nil && !errors.Is(err, unix.EOPNOTSUPP) {
				t.Errorf("trusted.k on a link: %v", err)
			}
		}
		x := NewXattrReader(opts...)
		dfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(dfd)
		for _, name := range []string{"d", "f"} {
			var st unix.Stat_t
			unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
			got, ok, err := x.ListAt(dfd, name, &st)
			if err != nil || !ok || len(got) != 1 || got[0].Name != "user.k" || string(got[0].Value) != "v-"+name {
				t.Errorf("%s: %+v %v %v", name, got, ok, err)
			}
		}
		checkOutside(t, outside)
	})
}
