package source

import (
	"strings"
	"testing"

	"github.com/ocifetch/ocifetch/errdefs"
)

// --insecure-registry HOST covers every port of HOST, HOST:PORT that port
// only; a URL is refused, saying what to write, instead of being accepted
// and never matching.
func TestInsecureRegistryHosts(t *testing.T) {
	for _, tc := range []struct {
		allow []string
		ref   string
		plain bool
	}{
		{[]string{"reg.example"}, "reg.example:5000/a:1", true},
		{[]string{"reg.example"}, "reg.example/a:1", true},
		{[]string{"REG.example"}, "reg.example:443/a:1", true},
		{[]string{"reg.example:5000"}, "reg.example:5000/a:1", true},
		{[]string{"reg.example:5000"}, "reg.example:5001/a:1", false},
		{[]string{"reg.example:5000"}, "reg.example/a:1", false},
		{[]string{"other.example"}, "reg.example:5000/a:1", false},
		{[]string{"[fd00::2]:5000"}, "[fd00::2]:5000/a:1", true},
		{[]string{"fd00::2"}, "[fd00::2]:5000/a:1", true},
		{nil, "reg.example:5000/a:1", false},
	} {
		o, err := makeOptions([]Option{WithInsecureRegistry(tc.allow...)})
		if err != nil {
			t.Fatalf("%v: %v", tc.allow, err)
		}
		src, err := openRegistry(tc.ref, o)
		if err != nil {
			t.Fatalf("%s: %v", tc.ref, err)
		}
		up := src.all[len(src.all)-1]
		if got := up.base.Scheme == "http"; got != tc.plain {
			t.Errorf("allow %v, %s: scheme %s, want plain HTTP %v", tc.allow, tc.ref, up.base.Scheme, tc.plain)
		}
	}

	for in, want := range map[string]string{
		"http://reg.example:5000": `"http://reg.example:5000" is a URL: give the host without http://, as reg.example (every port) or reg.example:5000`,
		"https://reg.example/v2/": `"https://reg.example/v2/" is a URL: give the host without https://, as reg.example (every port) or reg.example`,
		"reg.example/path":        `invalid host "reg.example/path": give HOST (every port) or HOST:PORT`,
		"user@reg.example":        `invalid host "user@reg.example": give HOST (every port) or HOST:PORT`,
		"reg.example:":            `invalid host "reg.example:": give HOST (every port) or HOST:PORT`,
		"reg.example:http":        `invalid host "reg.example:http": give HOST (every port) or HOST:PORT`,
		"":                        `invalid host "": give HOST (every port) or HOST:PORT`,
	} {
		_, err := ParseHost(in)
		if err == nil || err.Error() != want || !errdefs.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ParseHost(%q) = %v, want %q", in, err, want)
		}
		if _, err := makeOptions([]Option{WithInsecureRegistry(in)}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("WithInsecureRegistry(%q) = %v", in, err)
		}
	}
	for in, want := range map[string]string{"Reg.Example": "reg.example", "reg.example:5000": "reg.example:5000", "[FD00::2]:80": "[fd00::2]:80", "[fd00::2]": "fd00::2", "10.0.0.1": "10.0.0.1"} {
		if got, err := ParseHost(in); err != nil || got != want {
			t.Errorf("ParseHost(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
