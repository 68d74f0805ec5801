package resolve

import (
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
)

func TestParsePlatform(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want string
	}{
		{"linux/amd64", "linux/amd64"},
		{"linux/arm64", "linux/arm64/v8"},
		{"linux/arm64/v8", "linux/arm64/v8"},
		{"linux/aarch64", "linux/arm64/v8"},
		{"Linux/x86_64", "linux/amd64"},
		{"linux/arm", "linux/arm/v7"},
		{"linux/arm/6", "linux/arm/v6"},
		{"linux/armhf", "linux/arm/v7"},
		{"linux/amd64/v1", "linux/amd64"},
		{"linux/amd64/v3", "linux/amd64/v3"},
		{"windows/amd64", "windows/amd64"},
	}
	for _, tt := range tests {
		p, err := ParsePlatform(tt.in)
		if err != nil {
			t.Errorf("ParsePlatform(%q): %v", tt.in, err)
			continue
		}
		if got := FormatPlatform(p); got != tt.want {
			t.Errorf("ParsePlatform(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	for _, bad := range []string{"", "linux", "linux/", "/amd64", "a/b/c/d",
		"linux/amd64:10.0", "linux/arm64,linux/amd64", "linux/amd 64", "linux/*"} {
		if _, err := ParsePlatform(bad); !errdefs.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ParsePlatform(%q) error = %v, want invalid_argument", bad, err)
		}
	}
}

// TestMatches holds the matcher to containerd's rules, including the
// fallbacks the hand-written matcher lacked (amd64 runs 386, arm64/v9.x
// runs v8.x, arm64 runs 32-bit arm).
func TestMatches(t *testing.T) {
	t.Parallel()
	p := func(os, arch, variant string) ocispec.Platform {
		return ocispec.Platform{OS: os, Architecture: arch, Variant: variant}
	}
	tests := []struct {
		name       string
		want, have ocispec.Platform
		fits       bool
	}{
		{"arm64 picks arm64/v8", p("linux", "arm64", ""), p("linux", "arm64", "v8"), true},
		{"arm64/v8 picks bare arm64", p("linux", "arm64", "v8"), p("linux", "arm64", ""), true},
		{"arm/v7 runs v6", p("linux", "arm", "v7"), p("linux", "arm", "v6"), true},
		{"arm/v6 does not run v7", p("linux", "arm", "v6"), p("linux", "arm", "v7"), false},
		{"amd64 runs baseline", p("linux", "amd64", ""), p("linux", "amd64", ""), true},
		{"amd64/v3 runs v2", p("linux", "amd64", "v3"), p("linux", "amd64", "v2"), true},
		{"amd64 does not run v3", p("linux", "amd64", ""), p("linux", "amd64", "v3"), false},
		{"amd64 runs 386", p("linux", "amd64", ""), p("linux", "386", ""), true},
		{"386 does not run amd64", p("linux", "386", ""), p("linux", "amd64", ""), false},
		{"arm64/v9.2 runs v8.7", p("linux", "arm64", "v9.2"), p("linux", "arm64", "v8.7"), true},
		{"arm64/v8.2 runs v8.1", p("linux", "arm64", "v8.2"), p("linux", "arm64", "v8.1"), true},
		{"arm64/v8.1 does not run v8.2", p("linux", "arm64", "v8.1"), p("linux", "arm64", "v8.2"), false},
		{"arm64 runs arm/v7", p("linux", "arm64", ""), p("linux", "arm", "v7"), true},
		{"os differs", p("linux", "amd64", ""), p("windows", "amd64", ""), false},
		{"arch differs", p("linux", "amd64", ""), p("linux", "arm64", ""), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Matches(tt.want, tt.have); got != tt.fits {
				t.Fatalf("Matches(%v, %v) = %v, want %v", tt.want, tt.have, got, tt.fits)
			}
		})
	}
}

// TestBestMatchWins: among entries that run, the closest wins, whatever
// their order in the index (native before fallback, exact variant before
// an older one, a named variant before an implied one).
func TestBestMatchWins(t *testing.T) {
	t.Parallel()
	p := func(arch, variant string) ocispec.Platform {
		return ocispec.Platform{OS: "linux", Architecture: arch, Variant: variant}
	}
	tests := []struct {
		want       ocispec.Platform
		candidates []ocispec.Platform
		best       int
	}{
		{p("arm", "v7"), []ocispec.Platform{p("arm", "v6"), p("arm", "v7"), p("arm", "v5")}, 1},
		{p("amd64", ""), []ocispec.Platform{p("386", ""), p("amd64", "")}, 1},
		{p("arm64", ""), []ocispec.Platform{p("arm", "v7"), p("arm64", "")}, 1},
		{p("arm64", ""), []ocispec.Platform{p("arm64", ""), p("arm64", "v8")}, 1},
		{p("amd64", "v3"), []ocispec.Platform{p("amd64", ""), p("amd64", "v2"), p("amd64", "v4")}, 1},
	}
	for _, tt := range tests {
		var entries []ocispec.Descriptor
		for _, c := range tt.candidates {
			entries = append(entries, ocispec.Descriptor{Platform: &c})
		}
		best := bestMatch(tt.want, entries, func(ocispec.Descriptor) bool { return true })
		if best != tt.best {
			t.Errorf("want %v among %v: picked %d, want %d", tt.want, tt.candidates, best, tt.best)
		}
	}
}
