package resolve

import (
	"runtime"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
)

// ParsePlatform parses "os/arch[/variant]" (for example "linux/arm64/v8")
// into a normalized platform. Common aliases are accepted: "x86_64" means
// amd64, "aarch64" means arm64, "armhf" means arm/v7.
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
	p := ocispec.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return Normalize(p), nil
}

// HostPlatform is the platform this program runs on.
func HostPlatform() ocispec.Platform {
	return Normalize(ocispec.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH})
}

// FormatPlatform renders p as "os/arch[/variant]".
func FormatPlatform(p ocispec.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// Normalize lower-cases p, maps architecture aliases to their Go names and
// gives the architecture's default variant explicitly (arm64 → v8, arm →
// v7), so that "linux/arm64" and "linux/arm64/v8" compare equal.
func Normalize(p ocispec.Platform) ocispec.Platform {
	p.OS = strings.ToLower(p.OS)
	if p.OS == "macos" {
		p.OS = "darwin"
	}
	arch, variant := strings.ToLower(p.Architecture), strings.ToLower(p.Variant)
	switch arch {
	case "x86_64", "x86-64", "x64":
		arch = "amd64"
	case "i386", "i686", "x86":
		arch = "386"
	case "aarch64", "arm64":
		arch = "arm64"
		if variant == "8" {
			variant = "v8"
		}
	case "armhf":
		arch, variant = "arm", "v7"
	case "armel":
		arch, variant = "arm", "v6"
	case "amd64":
		if variant == "v1" {
			variant = "" // the baseline; images leave it unnamed
		}
	case "arm":
		if len(variant) == 1 && variant[0] >= '5' && variant[0] <= '8' {
			variant = "v" + variant
		}
	}
	if variant == "" {
		variant = defaultVariant(arch)
	}
	p.Architecture, p.Variant = arch, variant
	return p
}

func defaultVariant(arch string) string {
	switch arch {
	case "arm64":
		return "v8"
	case "arm":
		return "v7"
	}
	return ""
}

// fallbackVariants lists, best first, the variants a machine of the given
// architecture and variant can run. An arm/v7 machine runs v6 and v5 code; an
// amd64/v3 machine runs v2 and baseline code (whose variant is left empty).
func fallbackVariants(arch, variant string) []string {
	var ladder []string
	switch arch {
	case "arm":
		ladder = []string{"v8", "v7", "v6", "v5"}
	case "amd64":
		ladder = []string{"v4", "v3", "v2", ""}
	case "arm64":
		ladder = []string{"v9", "v8"}
	}
	for i, v := range ladder {
		if v == variant {
			return ladder[i:]
		}
	}
	return []string{variant}
}

// MatchScore reports how well an index entry's platform suits a wanted
// platform: 0 when it cannot run there, higher is better. Both are
// normalized first. os.version breaks ties for Windows images.
func MatchScore(want, have ocispec.Platform) int {
	want, have = Normalize(want), Normalize(have)
	if want.OS != have.OS || want.Architecture != have.Architecture {
		return 0
	}
	ladder := fallbackVariants(want.Architecture, want.Variant)
	score := 0
	for i, v := range ladder {
		if v == have.Variant {
			score = 1000 - 10*i
			break
		}
	}
	if score == 0 {
		return 0
	}
	if want.OSVersion != "" && have.OSVersion != "" {
		if want.OSVersion == have.OSVersion {
			score += 5
		} else if majorMinorBuild(want.OSVersion) == majorMinorBuild(have.OSVersion) {
			score += 3
		}
	}
	return score
}

func majorMinorBuild(v string) string {
	parts := strings.SplitN(v, ".", 4)
	if len(parts) > 3 {
		parts = parts[:3]
	}
	return strings.Join(parts, ".")
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
