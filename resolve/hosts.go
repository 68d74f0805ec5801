package resolve

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/ocifetch/ocifetch/errdefs"
)

// Mirror is one host that serves a registry's content: a pull-through cache
// or mirror tried before the upstream, or the upstream itself. Mirrors are
// configured in containerd's hosts.toml format (see docs/mirrors.md) or with
// WithMirrors.
type Mirror struct {
	// URL is scheme://host[:port][/path]. The distribution API lives under
	// URL's path + "/v2" unless OverridePath is set, in which case URL's path
	// is used as the API root as it is.
	URL string

	// Capabilities says what the host may be used for: "pull" (fetch by
	// digest) and "resolve" (turn a tag into a digest). Empty means both.
	Capabilities []string

	// SkipVerify disables TLS certificate verification for this host.
	SkipVerify bool

	// CAFiles are PEM files with extra roots trusted for this host.
	CAFiles []string

	// Header is sent with every request to this host.
	Header http.Header

	// OverridePath: see URL.
	OverridePath bool
}

func (m Mirror) can(capability string) bool {
	if len(m.Capabilities) == 0 {
		return true
	}
	for _, c := range m.Capabilities {
		if c == capability {
			return true
		}
	}
	return false
}

// hostsFile is the part of containerd's hosts.toml this program reads.
type hostsFile struct {
	Server       string              `toml:"server"`
	Capabilities []string            `toml:"capabilities"`
	SkipVerify   *bool               `toml:"skip_verify"`
	CA           any                 `toml:"ca"`
	Header       map[string]any      `toml:"header"`
	OverridePath bool                `toml:"override_path"`
	Host         map[string]hostsRow `toml:"host"`
}

type hostsRow struct {
	Capabilities []string       `toml:"capabilities"`
	SkipVerify   *bool          `toml:"skip_verify"`
	CA           any            `toml:"ca"`
	Header       map[string]any `toml:"header"`
	OverridePath bool           `toml:"override_path"`
}

// hostsConfig is what a hosts directory says about one registry: the
// mirrors, in file order, and the upstream (server) entry.
type hostsConfig struct {
	mirrors []Mirror
	server  *Mirror
}

// loadHostsDir reads DIR/HOST/hosts.toml for a registry host, as containerd
// does: the directory is named "host:port" (or "host_port"), and
// DIR/_default/hosts.toml applies to registries without their own. A missing
// file means no configuration.
func loadHostsDir(dir, host string) (*hostsConfig, error) {
	candidates := []string{host}
	if strings.Contains(host, ":") {
		candidates = append(candidates, strings.ReplaceAll(host, ":", "_"))
	}
	if host == "docker.io" {
		candidates = append(candidates, "registry-1.docker.io")
	}
	candidates = append(candidates, "_default")
	for _, c := range candidates {
		path := filepath.Join(dir, c, "hosts.toml")
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "reading mirror config")
		}
		cfg, err := parseHostsFile(data, filepath.Dir(path))
		if err != nil {
			return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "mirror config %s", path)
		}
		return cfg, nil
	}
	return &hostsConfig{}, nil
}

// parseHostsFile parses one hosts.toml. Relative CA paths are relative to
// the file's directory, as in containerd.
func parseHostsFile(data []byte, base string) (*hostsConfig, error) {
	var f hostsFile
	md, err := toml.Decode(string(data), &f)
	if err != nil {
		return nil, err
	}
	cfg := &hostsConfig{}
	// The order of [host."..."] tables is the order mirrors are tried, so
	// read it from the file's key order rather than the map.
	seen := map[string]bool{}
	for _, key := range md.Keys() {
		if len(key) != 2 || key[0] != "host" || seen[key[1]] {
			continue
		}
		seen[key[1]] = true
		row := f.Host[key[1]]
		m, err := makeMirror(key[1], row.Capabilities, row.SkipVerify, row.CA, row.Header, row.OverridePath, base)
		if err != nil {
			return nil, err
		}
		cfg.mirrors = append(cfg.mirrors, m)
	}
	if f.Server != "" {
		m, err := makeMirror(f.Server, f.Capabilities, f.SkipVerify, f.CA, f.Header, f.OverridePath, base)
		if err != nil {
			return nil, err
		}
		cfg.server = &m
	}
	return cfg, nil
}

func makeMirror(raw string, caps []string, skip *bool, ca any, header map[string]any, override bool, base string) (Mirror, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		if !strings.Contains(raw, "://") {
			u, err = url.Parse("https://" + raw)
		}
		if err != nil || u.Host == "" {
			return Mirror{}, fmt.Errorf("invalid host URL %q", raw)
		}
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return Mirror{}, fmt.Errorf("host URL %q: scheme must be http or https", raw)
	}
	for _, c := range caps {
		if c != "pull" && c != "resolve" && c != "push" {
			return Mirror{}, fmt.Errorf("host %q: unknown capability %q", raw, c)
		}
	}
	m := Mirror{
		URL:          strings.TrimSuffix(u.String(), "/"),
		Capabilities: caps,
		OverridePath: override,
	}
	if caps != nil && len(caps) == 0 {
		m.Capabilities = []string{"none"} // an explicit empty list disables the host
	}
	if skip != nil {
		m.SkipVerify = *skip
	}
	switch v := ca.(type) {
	case nil:
	case string:
		m.CAFiles = []string{v}
	case []any:
		for _, x := range v {
			s, ok := x.(string)
			if !ok {
				return Mirror{}, fmt.Errorf("host %q: ca must be a path or a list of paths", raw)
			}
			m.CAFiles = append(m.CAFiles, s)
		}
	default:
		return Mirror{}, fmt.Errorf("host %q: ca must be a path or a list of paths", raw)
	}
	for i, p := range m.CAFiles {
		if !filepath.IsAbs(p) {
			m.CAFiles[i] = filepath.Join(base, p)
		}
	}
	if len(header) > 0 {
		m.Header = http.Header{}
		for k, v := range header {
			switch v := v.(type) {
			case string:
				m.Header.Add(k, v)
			case []any:
				for _, x := range v {
					m.Header.Add(k, fmt.Sprint(x))
				}
			default:
				return Mirror{}, fmt.Errorf("host %q: header %q must be a string or list", raw, k)
			}
		}
	}
	return m, nil
}
