package apply

import (
	gotar "archive/tar"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The rules of image-spec layer.md, each checked by applying 1 to 4 layers
// and comparing the whole resulting tree.
func TestLayerSemantics(t *testing.T) {
	t.Parallel()
	requireRoot(t) // owners and devices; the unprivileged run has its own test
	ns := time.Unix(1600000000, 123456789)
	cases := []struct {
		name   string
		layers [][]e
		want   string
	}{
		{"every entry type in one layer", [][]e{{
			D("etc", 0755), F("etc/passwd", "root:x:0:0", 0644), S("etc/link", "passwd"),
			H("etc/hard", "etc/passwd"), Fifo("etc/fifo", 0600), D("dev", 0755),
			Dev(gotar.TypeChar, "dev/null", 0666, 1, 3), Dev(gotar.TypeBlock, "dev/blk", 0660, 7, 0),
		}}, `
			dir etc 0755
			file etc/passwd 0644 content=root:x:0:0 link=etc/hard
			file etc/hard 0644 content=root:x:0:0
			symlink etc/link target=passwd
			fifo etc/fifo 0600
			dir dev 0755
			char dev/null 0666 dev=1:3
			block dev/blk 0660 dev=7:0
		`},
		{"absolute and dotted names are relative", [][]e{{
			F("/abs", "a", 0644), F("./dot", "b", 0644), F("x/./y/../z", "c", 0644),
		}}, `
			file abs content=a
			file dot content=b
			dir x 0755
			file x/z content=c
		`},
		{"implicit parents are created 0755 root-owned", [][]e{{F("a/b/c/f", "x", 0600)}}, `
			dir a 0755 owner=0:0
			dir a/b 0755
			dir a/b/c 0755
			file a/b/c/f 0600 content=x
		`},
		{"whiteout removes a lower file", [][]e{
			{F("keep", "k", 0644), F("gone", "g", 0644)},
			{W("", "gone")},
		}, `file keep content=k`},
		{"whiteout removes a lower directory and all below", [][]e{
			{D("d", 0755), D("d/sub", 0755), F("d/sub/f", "", 0644), F("d/g", "", 0644)},
			{W("", "d")},
		}, ``},
		{"whiteout after an entry of the same layer keeps it", [][]e{
			{F("x", "lower", 0644)},
			{F("x", "upper", 0644), W("", "x")},
		}, `file x content=upper`},
		{"whiteout before an entry of the same layer", [][]e{
			{D("x", 0755), F("x/old", "", 0644)},
			{W("", "x"), F("x", "upper", 0644)},
		}, `file x content=upper`},
		{"whiteout of a missing name does nothing", [][]e{
			{F("a", "", 0644)},
			{W("", "nothing"), W("nodir", "x")},
		}, `file a`},
		{"whiteout of a directory this layer writes into keeps its entries", [][]e{
			{D("d", 0755), F("d/old", "", 0644)},
			{F("d/new", "n", 0644), W("", "d")},
		}, `
			dir d
			file d/new content=n
		`},
		{"opaque marker before the layer's entries", [][]e{
			{D("d", 0755), F("d/a", "", 0644), D("d/sub", 0755), F("d/sub/c", "", 0644), F("e", "", 0644)},
			{D("d", 0750), O("d"), F("d/n", "n", 0644)},
		}, `
			dir d 0750
			file d/n content=n
			file e
		`},
		{"opaque marker after the layer's entries", [][]e{
			{D("d", 0755), F("d/a", "", 0644), D("d/sub", 0755), F("d/sub/c", "", 0644)},
			{D("d", 0755), F("d/n", "n", 0644), D("d/sub", 0700), F("d/sub/m", "m", 0644), O("d")},
		}, `
			dir d 0755
			file d/n content=n
			dir d/sub 0700
			file d/sub/m content=m
		`},
		{"opaque marker hides only lower layers over several layers", [][]e{
			{F("d/l1", "", 0644)},
			{F("d/l2", "", 0644)},
			{O("d"), F("d/l3", "", 0644)},
			{F("d/l4", "", 0644)},
		}, `
			dir d 0755
			file d/l3
			file d/l4
		`},
		{"file replaces a directory", [][]e{
			{D("d", 0755), F("d/x", "", 0644)},
			{F("d", "file", 0644)},
		}, `file d content=file`},
		{"directory replaces a file", [][]e{
			{F("d", "file", 0644)},
			{D("d", 0711), F("d/y", "y", 0644)},
		}, `
			dir d 0711
			file d/y content=y
		`},
		{"directory replaces a symlink to a directory", [][]e{
			{D("real", 0755), F("real/keep", "", 0644), S("d", "real")},
			{D("d", 0755), F("d/y", "", 0644)},
		}, `
			dir real
			file real/keep
			dir d
			file d/y
		`},
		{"entries after a directory became a symlink follow the link", [][]e{{
			D("a", 0755), F("a/x", "", 0644), S("a", "b"), F("a/y", "y", 0644),
		}}, `
			symlink a target=b
			dir b 0755
			file b/y content=y
		`},
		{"symlink replaces a directory", [][]e{
			{D("d", 0755), F("d/x", "", 0644)},
			{S("d", "/elsewhere")},
		}, `symlink d target=/elsewhere`},
		{"directory over directory keeps children and takes new metadata", [][]e{
			{D("d", 0755), F("d/x", "x", 0644)},
			{D("d", 0700).owner(5, 6).mtime(ns)},
		}, `
			dir d 0700 owner=5:6 mtime=1600000000.123456789
			file d/x content=x
		`},
		{"file replaces a file, hard links to the old one keep it", [][]e{
			{F("f", "old", 0644)},
			{H("h", "f")},
			{F("f", "new", 0600)},
		}, `
			file f 0600 content=new
			file h 0644 content=old
		`},
		{"hard links to the same and a lower layer", [][]e{
			{F("lower", "L", 0644)},
			{F("same", "S", 0644), H("h1", "same"), H("h2", "/lower"), H("d/h3", "lower")},
		}, `
			dir d 0755
			file d/h3 content=L
			file h1 content=S
			file h2 link=d/h3 content=L
			file lower link=d/h3 content=L
			file same link=h1 content=S
		`},
		{"hard link to a symlink links the symlink", [][]e{
			{S("s", "/nowhere"), H("h", "s")},
		}, `
			symlink h target=/nowhere
			symlink s target=/nowhere link=h
		`},
		{"mode bits survive, special ones included", [][]e{{
			F("suid", "", 04755), F("sgid", "", 02711).owner(0, 42), F("none", "", 0), F("both", "b", 06755).owner(5, 6),
			D("tmp", 01777), D("sgiddir", 02775), F("sgiddir/child", "", 0644), D("world", 0777), F("world/w", "", 0666),
		}}, `
			file suid 04755
			file sgid 02711 owner=0:42
			file both 06755 owner=5:6
			file none 0000
			dir tmp 01777
			dir sgiddir 02775
			file sgiddir/child 0644 owner=0:0
			dir world 0777
			file world/w 0666
		`},
		{"owners are preserved", [][]e{{
			D("home", 0755), D("home/u", 0700).owner(1000, 1000), F("home/u/f", "", 0600).owner(1000, 100),
			S("home/u/l", "f").owner(1000, 1000), Fifo("home/u/p", 0600).owner(7, 8),
		}}, `
			dir home 0755
			dir home/u 0700 owner=1000:1000
			file home/u/f 0600 owner=1000:100
			symlink home/u/l target=f owner=1000:1000
			fifo home/u/p owner=7:8
		`},
		{"entries in a setgid directory get the header's group, not the directory's", [][]e{
			{D("g", 02775).owner(0, 42)},
			{F("g/f", "", 0644), S("g/l", "f"), Fifo("g/p", 0600), Dev(gotar.TypeChar, "g/c", 0600, 1, 3), D("g/d", 0755)},
		}, `
			dir g 02775 owner=0:42
			file g/f 0644 owner=0:0
			symlink g/l target=f owner=0:0
			fifo g/p 0600 owner=0:0
			char g/c 0600 dev=1:3 owner=0:0
			dir g/d 0755 owner=0:0
		`},
		{"mode-000 directory with children", [][]e{{
			D("locked", 0), F("locked/f", "x", 0), D("locked/sub", 0), F("locked/sub/g", "", 0644),
		}}, `
			dir locked 0000
			file locked/f 0000 content=x
			dir locked/sub 0000
			file locked/sub/g 0644
		`},
		{"xattrs on files, directories and links", [][]e{{
			F("f", "", 0644).xattr("user.a", "1").xattr("trusted.t", "2"),
			D("d", 0755).xattr("user.b", "x y"),
			S("l", "f").xattr("trusted.l", "3"),
		}}, `
			file f xattr.user.a=1 xattr.trusted.t=2
			dir d xattr.user.b="x y"
			symlink l target=f xattr.trusted.l=3
		`},
		{"times to the nanosecond, directories after their children", [][]e{{
			D("d", 0755).mtime(ns), F("d/f", "", 0644).mtime(ns.Add(1)), D("d/e", 0755).mtime(ns.Add(2)),
			F("d/e/g", "", 0644), S("d/l", "f").mtime(ns.Add(3)),
		}}, `
			dir d 0755 mtime=1600000000.123456789
			file d/f mtime=1600000000.12345679
			dir d/e mtime=1600000000.123456791
			file d/e/g mtime=1700000000
			symlink d/l target=f mtime=1600000000.123456792
		`},
		{"four layers", [][]e{
			{D("usr", 0755), D("usr/lib", 0755), S("lib", "usr/lib"), F("usr/lib/a.so", "a1", 0755), F("etc/os", "1", 0644)},
			{F("lib/b.so", "b", 0755), F("etc/os", "2", 0644)},
			{W("usr/lib", "a.so"), H("etc/os-link", "etc/os")},
			{O("etc"), F("etc/new", "n", 0600)},
		}, `
			dir usr 0755
			dir usr/lib 0755
			file usr/lib/b.so 0755 content=b
			symlink lib target=usr/lib
			dir etc 0755
			file etc/new 0600 content=n
		`},
		{"AUFS metadata is ignored", [][]e{{
			D(".wh..wh.plnk", 0700), F(".wh..wh.plnk/1.2", "", 0644), F("f", "", 0644),
		}}, `file f`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			modes(t, func(t *testing.T, opts []Option) {
				dir := t.TempDir()
				rep, err := Apply(context.Background(), dir, layers(t, c.layers...), opts...)
				if err != nil {
					t.Fatal(err)
				}
				if len(rep.Layers) != len(c.layers) {
					t.Errorf("%d layer reports", len(rep.Layers))
				}
				checkTree(t, dir, c.want)
			})
		})
	}
}

func TestRootDirectoryEntryAppliesMetadata(t *testing.T) {
	t.Parallel()
	modes(t, func(t *testing.T, opts []Option) {
		dir := t.TempDir()
		mt := time.Unix(1500000000, 5)
		_, err := Apply(context.Background(), dir, layers(t, []e{D("./", 0750).mtime(mt), F("f", "", 0644)}), opts...)
		if err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0750 || !st.ModTime().Equal(mt) {
			t.Errorf("root mode %v mtime %v", st.Mode(), st.ModTime())
		}
	})
}

func TestReportCounts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rep, err := Apply(context.Background(), dir, layers(t,
		[]e{D("d", 0755), F("d/a", "12345", 0644), F("d/b", "67", 0644), S("s", "d"), H("h", "d/a"), Fifo("p", 0600)},
		[]e{W("", "p"), O("d"), F(".wh..wh.aufs", "", 0644)},
	), WithDevices(DevicesSkip))
	if err != nil {
		t.Fatal(err)
	}
	l0, l1 := rep.Layers[0], rep.Layers[1]
	if l0.Files != 2 || l0.Bytes != 7 || l0.Dirs != 1 || l0.Symlinks != 1 || l0.Hardlinks != 1 || l0.Specials != 1 || l0.Entries != 6 {
		t.Errorf("layer 0: %+v", l0)
	}
	if l1.Whiteouts != 2 || len(l1.Warnings) != 1 || l1.Warnings[0].Kind != WarnAUFSMetadata {
		t.Errorf("layer 1: %+v", l1)
	}
	if l0.DiffID == "" || l0.TarBytes == 0 {
		t.Errorf("no diffID or size: %+v", l0)
	}
	_ = filepath.Join
}
