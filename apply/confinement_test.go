package apply

import (
	gotar "archive/tar"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/ocifetch/ocifetch/errdefs"
)

// Every attack of REFERENCE.md "Confinement", with a sentinel file beside
// the target that must stay as it was, and nothing new outside. $OUT in a
// test stands for the outside directory's absolute path and $OUTREL for it
// relative to the target's parent's parent (so that enough ".." from the
// target's top reach it).
func TestConfinement(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		layers [][]e
		kind   errdefs.Kind // "" when the apply succeeds (confined)
		want   string       // the target's tree when it succeeds; "-" to skip
	}{
		{"dotdot name is refused", [][]e{{F("../x", "x", 0644)}}, errdefs.ErrPathEscape, ""},
		{"dotdot to the sentinel is refused", [][]e{{F("../outside/sentinel", "x", 0644)}}, errdefs.ErrPathEscape, ""},
		{"absolute name is confined", [][]e{{F("/abs/x", "x", 0644), F("$OUT/sentinel", "x", 0644)}}, "", `
			dir abs 0755
			file abs/x content=x
			-
		`},
		{"dotdot inside the name climbing out is refused", [][]e{{F("a/../../x", "x", 0644)}}, errdefs.ErrPathEscape, ""},
		{"dotdot inside the name staying in is fine", [][]e{{F("a/../x", "x", 0644)}}, "", `file x content=x`},
		{"symlink to slash then an entry below it, same layer", [][]e{{S("a", "/"), F("a/x", "x", 0644)}}, "", `
			symlink a target=/
			file x content=x
		`},
		{"symlink to dotdots then an entry below it, same layer", [][]e{{S("a", "../../.."), F("a/x", "x", 0644)}}, "", `
			symlink a target=../../..
			file x content=x
		`},
		{"symlink to slash then an entry below it, later layer", [][]e{{S("a", "/")}, {F("a/x", "x", 0644)}}, "", `
			symlink a target=/
			file x content=x
		`},
		{"symlink to dotdots then an entry below it, later layer", [][]e{{S("a", "../../..")}, {F("a/outside/sentinel", "x", 0644)}}, "", `
			symlink a target=../../..
			dir outside 0755
			file outside/sentinel content=x
		`},
		{"symlink to the outside directory then a file through it", [][]e{{S("a", "$OUT")}, {F("a/sentinel", "x", 0644)}}, "", `
			symlink a target=$OUT
			-
		`},
		{"symlink to the sentinel then a file of the same name", [][]e{{S("a", "$OUT/sentinel")}, {F("a", "replaced", 0644)}}, "", `
			file a content=replaced
		`},
		{"symlink to the sentinel then a file of the same name, same layer", [][]e{{S("a", "$OUT/sentinel"), F("a", "replaced", 04755)}}, "", `
			file a 04755 content=replaced
		`},
		{"symlink to the outside then a directory of the same name", [][]e{{S("a", "$OUT")}, {D("a", 0700), F("a/sentinel", "x", 0644)}}, "", `
			dir a 0700
			file a/sentinel content=x
		`},
		{"hard link to dotdot is refused", [][]e{{H("h", "../outside/sentinel")}}, errdefs.ErrPathEscape, ""},
		{"hard link to an absolute host path is confined", [][]e{{H("h", "$OUT/sentinel")}}, errdefs.ErrLayerInvalid, ""},
		{"hard link through a symlinked directory is confined", [][]e{{S("d", "$OUT")}, {H("h", "d/sentinel")}}, errdefs.ErrLayerInvalid, ""},
		{"hard link through a relative symlink is confined", [][]e{
			{S("d", "../../../../../../../../outside"), D("outside", 0755), F("outside/sentinel", "in", 0644)},
			{H("h", "d/sentinel")},
		}, "", `
			symlink d target=../../../../../../../../outside
			dir outside 0755
			file outside/sentinel content=in link=h
			file h content=in
		`},
		{"hard link to a symlink to the sentinel links the symlink", [][]e{{S("s", "$OUT/sentinel"), H("h", "s")}}, "", `
			symlink h target=$OUT/sentinel
			symlink s target=$OUT/sentinel link=h
		`},
		{"whiteout reached through a symlink is confined", [][]e{{S("d", "$OUT")}, {W("d", "sentinel")}}, "", `symlink d target=$OUT`},
		{"opaque marker reached through a symlink is confined", [][]e{{S("d", "$OUT")}, {O("d")}}, "", `symlink d target=$OUT`},
		{"opaque marker through a dotdot symlink is confined", [][]e{{S("d", "../..")}, {O("d")}}, "", ``},
		{"whiteout of dotdot is refused", [][]e{{F("d/x", "", 0644)}, {F("d/.wh...", "", 0644)}}, errdefs.ErrPathEscape, ""},
		{"whiteout of dot is refused", [][]e{{F("d/x", "", 0644)}, {F("d/.wh..", "", 0644)}}, errdefs.ErrPathEscape, ""},
		{"empty whiteout is refused", [][]e{{F(".wh.", "", 0644)}}, errdefs.ErrLayerInvalid, ""},
		{"root replaced by a symlink (.)", [][]e{{S(".", "$OUT")}, {F("sentinel", "x", 0644)}}, errdefs.ErrPathEscape, ""},
		{"root replaced by a symlink (./)", [][]e{{S("./", "$OUT"), F("sentinel", "x", 0644)}}, errdefs.ErrPathEscape, ""},
		{"root replaced by a symlink (/)", [][]e{{S("/", "$OUT"), F("sentinel", "x", 0644)}}, errdefs.ErrPathEscape, ""},
		{"root replaced by a file", [][]e{{F(".", "x", 0644)}}, errdefs.ErrPathEscape, ""},
		{"root replaced by a hard link", [][]e{{F("f", "", 0644), H(".", "f")}}, errdefs.ErrPathEscape, ""},
		{"hard link to the root", [][]e{{H("h", ".")}}, errdefs.ErrPathEscape, ""},
		{"metadata of a symlink to the sentinel stays on the link (CVE-2021-32760)", [][]e{{
			S("s", "$OUT/sentinel").owner(1234, 1234).xattr("trusted.x", "y").xattr("user.x", "y").with(func(h *gotar.Header) { h.Mode = 04777 }),
		}}, "", `symlink s target=$OUT/sentinel owner=1234:1234 xattr.trusted.x=y`},
		{"device with a major too large", [][]e{{Dev(gotar.TypeChar, "d", 0600, 1<<12, 0)}}, errdefs.ErrLayerInvalid, ""},
		{"device with a minor too large", [][]e{{Dev(gotar.TypeBlock, "d", 0600, 8, 1<<20)}}, errdefs.ErrLayerInvalid, ""},
		{"device with huge numbers", [][]e{{Dev(gotar.TypeChar, "d", 0600, 1<<40, 1<<40).with(func(h *gotar.Header) { h.Format = gotar.FormatGNU })}}, errdefs.ErrLayerInvalid, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			modes(t, func(t *testing.T, opts []Option) {
				if strings.Contains(c.name, "CVE-2021-32760") || strings.Contains(c.want, "owner=") {
					requireRoot(t)
				}
				s := newSandbox(t)
				subst := func(v string) string { return strings.ReplaceAll(v, "$OUT", s.outside) }
				var ls [][]e
				for _, l := range c.layers {
					var nl []e
					for _, x := range l {
						x.hdr.Name, x.hdr.Linkname = subst(x.hdr.Name), subst(x.hdr.Linkname)
						nl = append(nl, x)
					}
					ls = append(ls, nl)
				}
				_, err := Apply(context.Background(), s.target, layers(t, ls...), opts...)
				if c.kind != "" {
					wantKind(t, err, c.kind)
				} else if err != nil {
					t.Fatal(err)
				} else if want, partial := strings.CutSuffix(strings.TrimSpace(subst(c.want)), "-"); !partial {
					checkTree(t, s.target, want)
				} else if want != "" {
					// Only the listed entries are checked.
					checkSome(t, s.target, want)
				}
				s.checkOutside(t)
			})
		})
	}
}

func checkSome(t *testing.T, dir, listing string) {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSpace(listing), "\n") {
		f := strings.Fields(line)
		if _, err := os.Lstat(dir + "/" + f[1]); err != nil {
			t.Errorf("%s: %v", f[1], err)
		}
	}
}
