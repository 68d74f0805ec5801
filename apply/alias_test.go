package apply

import (
	"testing"
)

// A path this layer wrote through a symbolic link among its parents is
// its own whichever way a whiteout or opaque marker names it, and a
// payload replaced under another name than the one that wrote it is still
// moved aside for rebuild.
func TestAliasedPaths(t *testing.T) {
	t.Parallel()
	base := []e{D("b", 0755), S("a", "b"), F("b/old", "old", 0644), F("a/lower", "v0", 0644), S("top", "/")}
	cases := []struct {
		name   string
		layers [][]e
		want   string
	}{
		{"whiteout by the real name of a file written through a link", [][]e{base,
			{F("a/x", "mine", 0644), W("b", "x")},
		}, `
			file b/x content=mine
			file b/lower content=v0
			file b/old content=old
		`},
		{"whiteout by the real name of a file written through a hard link to a link", [][]e{
			append(append([]e{}, base...), H("h", "a")),
			{F("h/x", "mine", 0644), W("b", "x")},
		}, `
			symlink h target=b link=a
			file b/x content=mine
			file b/lower content=v0
			file b/old content=old
		`},
		{"whiteout through a link of a file written by its real name", [][]e{base,
			{F("b/y", "mine", 0644), W("a", "y")},
		}, `
			file b/y content=mine
			file b/lower content=v0
			file b/old content=old
		`},
		{"whiteout through an absolute link", [][]e{base,
			{F("top/b/z", "mine", 0644), W("a", "z")},
		}, `
			file b/z content=mine
			file b/lower content=v0
			file b/old content=old
		`},
		{"opaque by the real name keeps entries written through a link", [][]e{base,
			{F("a/new", "mine", 0644), O("b")},
		}, `
			file b/new content=mine
		`},
		{"opaque through a link keeps entries written by the real name", [][]e{base,
			{F("b/new", "mine", 0644), O("a")},
		}, `
			file b/new content=mine
		`},
		{"a lower payload replaced under its real name", [][]e{base,
			{F("b/lower", "v1", 0644)},
		}, `
			file b/lower content=v1
			file b/old content=old
		`},
		{"a lower payload removed by a whiteout under its real name", [][]e{base,
			{W("b", "lower")},
		}, `
			file b/old content=old
		`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			modes(t, func(t *testing.T, opts []Option) {
				var tars [][]byte
				for _, l := range c.layers {
					tars = append(tars, tarOf(t, l...))
				}
				a, err := applyRecorded(t, tars, append(opts, WithOwnership(OwnershipCaller))...)
				if err != nil {
					t.Fatal(err)
				}
				want := `
					symlink a target=b
					dir b 0755
					symlink top target=/
				` + c.want
				checkTree(t, a.target, want)
				a.checkRebuilds(t)
				a.noDrift(t)
			})
		})
	}
}
