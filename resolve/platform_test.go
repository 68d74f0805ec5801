package resolve

import (
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
)

func TestParsePlatform(t *testing.T) {
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
	for _, bad := range []string{"", "linux", "linux/", "/amd64", "a/b/c/d"} {
		if _, err := ParsePlatform(bad); !errdefs.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ParsePlatform(%q) error = %v, want invalid_argument", bad, err)
		}
	}
}

func TestMatchScore(t *testing.T) {
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
		{"os differs", p("linux", "amd64", ""), p("windows", "amd64", ""), false},
		{"arch differs", p("linux", "amd64", ""), p("linux", "arm64", ""), false},
		{"arm64 does not run arm", p("linux", "arm64", ""), p("linux", "arm", "v7"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := MatchScore(tt.want, tt.have) > 0; got != tt.fits {
				t.Fatalf("MatchScore(%v, %v) fits = %v, want %v", tt.want, tt.have, got, tt.fits)
			}
		})
	}
	// The closest variant wins over an older fallback.
	want := p("linux", "arm", "v7")
	if MatchScore(want, p("linux", "arm", "v7")) <= MatchScore(want, p("linux", "arm", "v6")) {
		t.Fatal("exact variant does not beat a fallback")
	}
}
