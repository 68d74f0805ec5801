package resolve

import (
	"strings"

	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
)

// ParsePlatform parses "os/arch[/variant]" (for example "linux/arm64/v8")
// into a normalized platform, with containerd's parser and aliases
// ("x86_64" is amd64, "aarch64" arm64, "armhf" arm/v7). Anything else,
// such as "linux/amd64:10.0" or a list "linux/arm64,linux/amd64", is an
// invalid_argument error.
func ParsePlatform(s string) (ocispec.Platform, error) {
	parts := strings.Split(strings.TrimSpace(s), "/")
	if len(parts) < 2 || len(parts) > 3 {
		return ocispec.Platform{}, errdefs.New(errdefs.ErrInvalidArgument,
			"invalid platform %q: want OS/ARCH or OS/ARCH/VARIANT, e.g. linux/arm64", s)
	}
	for _, p := range parts {
		if p == "" {
			return ocispec.Platform{}, errdefs.New(errdefs.ErrInvalidArgument,
				"invalid platform %q: empty component", s)
		}
	}
	p, err := platforms.Parse(strings.TrimSpace(s))
	if err != nil {
		return ocispec.Platform{}, errdefs.New(errdefs.ErrInvalidArgument,
			"invalid platform %q: want OS/ARCH or OS/ARCH/VARIANT of letters, digits, '.', '_' and '-', e.g. linux/arm64", s)
	}
	return Normalize(p), nil
}

// HostPlatform is the platform this program runs on (on arm, with the
// variant the CPU reports).
func HostPlatform() ocispec.Platform {
	return Normalize(platforms.DefaultSpec())
}

// FormatPlatform renders p as "os/arch[/variant]".
func FormatPlatform(p ocispec.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// Normalize is containerd's normalization (lower case, architecture
// aliases, arm's default variant v7, amd64's v1 left unnamed), except that
// arm64 names its default variant v8 explicitly, as Docker prints it, so
// that "linux/arm64" and "linux/arm64/v8" both display as the latter.
func Normalize(p ocispec.Platform) ocispec.Platform {
	p = platforms.Normalize(p)
	if p.Architecture == "arm64" && p.Variant == "" {
		p.Variant = "v8"
	}
	return p
}

// Matches reports whether an image of platform have runs on want, by
// containerd's rules: older variants run on newer ones (arm/v7 runs v6 and
// v5, amd64/v3 runs v2 and baseline, arm64/v9.x runs v8.x), amd64 runs
// 386, arm64 runs arm up to v8, and Windows images need a compatible
// os.version.
func Matches(want, have ocispec.Platform) bool {
	return platforms.Only(want).Match(have)
}

// bestMatch returns the position of the entry of entries that best suits
// want (see better), among those with a platform that consider accepts,
// or -1 when none runs on want.
func bestMatch(want ocispec.Platform, entries []ocispec.Descriptor, consider func(ocispec.Descriptor) bool) int {
	m := platforms.Only(want)
	best := -1
	for i, e := range entries {
		if e.Platform == nil || !consider(e) || !m.Match(*e.Platform) {
			continue
		}
		if best < 0 || better(m, *e.Platform, *entries[best].Platform) {
			best = i
		}
	}
	return best
}

// better reports whether index entry a suits want better than entry b
// (both match): containerd's preference order first (the closest variant,
// native before fallback architectures), then an entry that names its
// variant over one that leaves it implied.
func better(m platforms.MatchComparer, a, b ocispec.Platform) bool {
	if m.Less(a, b) {
		return true
	}
	if m.Less(b, a) {
		return false
	}
	return a.Variant != "" && b.Variant == ""
}

// platformList renders platforms for an error message, in their order,
// without repeats.
func platformList(ps []ocispec.Platform) string {
	seen := map[string]bool{}
	var out []string
	for _, p := range ps {
		s := FormatPlatform(p)
		if p.OSVersion != "" {
			s += " (" + p.OSVersion + ")"
		}
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}
