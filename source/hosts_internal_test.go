package source

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// The keys of containerd's hosts.toml, read with containerd's meaning.
func TestParseHostsFile(t *testing.T) {
	t.Parallel()
	var warnings []string
	cfg, err := parseHostsFile([]byte(`
server = "registry.example.com"
dial_timeout = "3s"
ca = ["a.pem", "/etc/b.pem"]
client = "both.pem"

[host."https://m1.example.com/path/"]
  capabilities = []
  client = [["c.pem", "k.pem"], "both.pem"]
  skip_verify = true
  override_path = true
  [host."https://m1.example.com/path/".header]
    x-one = "1"
    x-two = ["2", "3"]

[host."m2.example.com:5000"]
  capabilities = ["pull"]
`), "/certs/reg", func(m string) { warnings = append(warnings, m) })
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings: %q", warnings)
	}
	s := cfg.server
	if s.URL != "https://registry.example.com" || s.DialTimeout != 3*time.Second ||
		!reflect.DeepEqual(s.CAFiles, []string{"/certs/reg/a.pem", "/etc/b.pem"}) ||
		!reflect.DeepEqual(s.ClientCerts, [][2]string{{"/certs/reg/both.pem", ""}}) {
		t.Errorf("server %+v", s)
	}
	if len(cfg.mirrors) != 2 {
		t.Fatalf("%d mirrors", len(cfg.mirrors))
	}
	m1, m2 := cfg.mirrors[0], cfg.mirrors[1]
	if m1.URL != "https://m1.example.com/path" || !m1.SkipVerify || !m1.OverridePath ||
		!reflect.DeepEqual(m1.ClientCerts, [][2]string{{"/certs/reg/c.pem", "/certs/reg/k.pem"}, {"/certs/reg/both.pem", ""}}) ||
		m1.Header.Get("x-one") != "1" || !reflect.DeepEqual(m1.Header.Values("x-two"), []string{"2", "3"}) {
		t.Errorf("m1 %+v", m1)
	}
	// [] means every capability, as absent does (containerd).
	for _, c := range []string{"pull", "resolve", "push"} {
		if !m1.can(c) || !s.can(c) {
			t.Errorf("capability %s missing", c)
		}
	}
	if m2.URL != "https://m2.example.com:5000" || !m2.can("pull") || m2.can("resolve") {
		t.Errorf("m2 %+v", m2)
	}

	for _, bad := range []string{
		`dial_timeout = "soon"`,
		`dial_timeout = "-1s"`,
		`capabilities = ["pull", "fly"]`,
		`client = [["only-one.pem"]]`,
		`client = 5`,
		`ca = [1]`,
		"[host.\"ftp://m\"]\n",
		"[host.\"https://u:p@m\"]\n",
		"[host.\"https://m\".header]\n  x = 1\n",
	} {
		if _, err := parseHostsFile([]byte(bad), "/d", func(string) {}); err == nil {
			t.Errorf("%q: no error", bad)
		} else if strings.Contains(err.Error(), ":p@") {
			t.Errorf("%q: the error shows the password: %v", bad, err)
		}
	}
}
