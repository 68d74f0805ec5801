package apply

import (
	"hash/maphash"
	"strings"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/fsroot"
)

// cleanName turns an entry name into a clean slash-separated name relative
// to the root ("" is the root itself). A leading "/" is dropped: absolute
// names are read relative to the target, as every tar implementation does.
// "." components vanish and ".." ones are resolved lexically; a ".." that
// would climb above the root is refused, not clamped: no honest layer
// contains one, and the moby breakouts (CVE-2014-6407 and kin) did.
func cleanName(name string) (string, error) {
	for {
		switch {
		case strings.HasPrefix(name, "/"):
			name = name[1:]
		case strings.HasPrefix(name, "./"):
			name = name[2:]
		default:
			goto trimmed
		}
	}
trimmed:
	name = strings.TrimSuffix(name, "/")
	if fsroot.IsClean(name) {
		return name, nil
	}
	var out []string
	for _, c := range strings.Split(name, "/") {
		switch c {
		case "", ".":
		case "..":
			if len(out) == 0 {
				return "", errdefs.New(errdefs.ErrPathEscape, "entry %q climbs above the root", name)
			}
			out = out[:len(out)-1]
		default:
			out = append(out, c)
		}
	}
	return strings.Join(out, "/"), nil
}

// splitName splits a clean name into its directory and final component.
func splitName(name string) (dir, base string) {
	i := strings.LastIndexByte(name, '/')
	if i < 0 {
		return "", name
	}
	return name[:i], name[i+1:]
}

func joinName(dir, base string) string {
	if dir == "" {
		return base
	}
	return dir + "/" + base
}

// depth counts the components of a clean name.
func depth(name string) int {
	if name == "" {
		return 0
	}
	return strings.Count(name, "/") + 1
}

// pathKey stands for a path in the sets and indexes the applier keeps per
// entry: two 64-bit hashes with random seeds instead of the string,
// which keeps memory per entry small and fixed (a path of a layer of a
// million entries would otherwise be kept as a string until the apply
// ends). The seeds are this process's, so a layer cannot be crafted to
// make two of its paths collide; a collision by chance, about 2^-128 per
// pair, could at worst move a payload aside that was still in place, which
// rebuild would then report as changed, never reproduce wrongly.
type pathKey [2]uint64

type pathHasher struct{ s1, s2 maphash.Seed }

func newPathHasher() pathHasher {
	return pathHasher{s1: maphash.MakeSeed(), s2: maphash.MakeSeed()}
}

func (h pathHasher) key(name string) pathKey {
	return pathKey{maphash.String(h.s1, name), maphash.String(h.s2, name)}
}

// shortName cuts a long name for a message: a name thousands of levels
// deep would otherwise be the whole message.
func shortName(name string) string {
	const keep = 120
	if len(name) <= keep {
		return name
	}
	return name[:keep/2] + "..." + name[len(name)-keep/2:]
}
