package source

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

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
	// is used as the API root as it is. A URL with user info is refused:
	// credentials belong in the Docker config.
	URL string

	// Capabilities says what the host may be used for: "pull" (fetch by
	// digest, documents and blobs alike) and "resolve" (turn a tag into a
	// digest); "push" is accepted and unused. Empty means all of them, as
	// in containerd, whether absent or written as [].
	Capabilities []string

	// SkipVerify disables TLS certificate verification for this host.
	SkipVerify bool

	// CAFiles are PEM files with extra roots trusted for this host.
	CAFiles []string

	// ClientCerts are TLS client certificates: {certificate file, key
	// file}, the key file "" when the key is in the certificate's file.
	ClientCerts [][2]string

	// DialTimeout bounds connecting to this host (default 30 s).
	DialTimeout time.Duration

	// Header is sent with every request to this host (never to token
	// servers or redirect targets).
	Header http.Header

	// OverridePath: see URL.
	OverridePath bool
}

func (m Mirror) can(capability string) bool {
	if len(m.Capabilities) == 0 {
		return true
	}
	for _, c := range m.Capabilities {
		if strings.EqualFold(c, capability) {
			return true
		}
	}
	return false
}

func defaultWarn(msg string) { fmt.Fprintf(os.Stderr, "ocifetch: warning: %s\n", msg) }

// hostFields are the keys containerd reads for a host, at the top level
// of hosts.toml (for the server) and in each [host."..."] table.
type hostFields struct {
	Capabilities []string       `toml:"capabilities"`
	SkipVerify   *bool          `toml:"skip_verify"`
	CA           any            `toml:"ca"`
	Client       any            `toml:"client"`
	Header       map[string]any `toml:"header"`
	OverridePath bool           `toml:"override_path"`
	DialTimeout  string         `toml:"dial_timeout"`
}

type hostsFile struct {
	hostFields
	Server string                `toml:"server"`
	Host   map[string]hostFields `toml:"host"`
}

// hostsConfig is what a hosts directory says about one registry: the
// mirrors, in file order, and the upstream (server) entry, whose URL is
// empty when the file does not name one.
type hostsConfig struct {
	mirrors []Mirror
	server  Mirror
	// set reports that the directory said anything about the upstream
	// (a server, its keys, or certs.d files).
	set bool
}

// hostDirs are the directory names containerd and this program look in
// for a registry host, most specific first: "host:port", containerd's
// "host_port_", the older "host_port", Hub's API host for docker.io, and
// "_default" last.
func hostDirs(host string) []string {
	c := []string{host}
	if i := strings.LastIndex(host, ":"); i > 0 {
		c = append(c, host[:i]+"_"+host[i+1:]+"_", host[:i]+"_"+host[i+1:])
	}
	if host == "docker.io" {
		c = append(c, "registry-1.docker.io")
	}
	return append(c, "_default")
}

// loadHostsDir reads the configuration of one registry from a hosts
// directory: DIR/NAME/hosts.toml, or, when a NAME directory has no
// hosts.toml, the certs.d files in it (*.crt CA certificates, *.cert with
// *.key client pairs), as containerd does. Nothing there means no
// configuration.
func loadHostsDir(dir, host string, warn func(string)) (*hostsConfig, error) {
	for _, c := range hostDirs(host) {
		d := filepath.Join(dir, c)
		fi, err := os.Stat(d)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "reading mirror config")
		}
		if !fi.IsDir() {
			continue
		}
		file := filepath.Join(d, "hosts.toml")
		data, err := os.ReadFile(file)
		if errors.Is(err, fs.ErrNotExist) {
			return loadCertFiles(d)
		}
		if err != nil {
			return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "reading mirror config")
		}
		cfg, err := parseHostsFile(data, d, func(msg string) { warn(file + ": " + msg) })
		if err != nil {
			return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "mirror config %s", file)
		}
		return cfg, nil
	}
	return &hostsConfig{}, nil
}

// loadCertFiles is the certs.d fallback: the files apply to the upstream.
func loadCertFiles(dir string) (*hostsConfig, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "reading certificate directory")
	}
	cfg := &hostsConfig{}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		name := e.Name()
		switch {
		case strings.HasSuffix(name, ".crt"):
			cfg.server.CAFiles = append(cfg.server.CAFiles, filepath.Join(dir, name))
		case strings.HasSuffix(name, ".cert"):
			pair := [2]string{filepath.Join(dir, name), ""}
			key := filepath.Join(dir, strings.TrimSuffix(name, ".cert")+".key")
			if _, err := os.Stat(key); err == nil {
				pair[1] = key
			} else if !errors.Is(err, fs.ErrNotExist) {
				return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "client key %s", key)
			}
			cfg.server.ClientCerts = append(cfg.server.ClientCerts, pair)
		}
	}
	cfg.set = len(cfg.server.CAFiles) > 0 || len(cfg.server.ClientCerts) > 0
	return cfg, nil
}

// parseHostsFile parses one hosts.toml with containerd's meaning. Keys it
// does not know are reported through warn, never ignored in silence.
// Relative file paths are relative to the file's directory.
func parseHostsFile(data []byte, base string, warn func(string)) (*hostsConfig, error) {
	var f hostsFile
	md, err := toml.Decode(string(data), &f)
	if err != nil {
		return nil, err
	}
	var unknown []string
	for _, k := range md.Undecoded() {
		unknown = append(unknown, k.String())
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		warn(fmt.Sprintf("unknown key %s ignored (not a containerd hosts.toml key)", printable(k, 200)))
	}
	cfg := &hostsConfig{}
	// The order of [host."..."] tables is the order mirrors are tried, so
	// read it from the file's key order rather than the map.
	seen := map[string]bool{}
	for _, key := range md.Keys() {
		if len(key) < 2 || key[0] != "host" || seen[key[1]] {
			continue
		}
		seen[key[1]] = true
		m, err := makeMirror(key[1], f.Host[key[1]], base, warn)
		if err != nil {
			return nil, err
		}
		cfg.mirrors = append(cfg.mirrors, m)
	}
	top := f.hostFields
	cfg.set = f.Server != "" || md.IsDefined("capabilities") || md.IsDefined("skip_verify") || md.IsDefined("ca") ||
		md.IsDefined("client") || md.IsDefined("header") || md.IsDefined("override_path") || md.IsDefined("dial_timeout")
	m, err := makeMirror(f.Server, top, base, warn)
	if err != nil {
		return nil, err
	}
	cfg.server = m
	return cfg, nil
}

// parseHostURL parses a host URL as containerd does (no scheme means
// https) and refuses user info: containerd ignores it, and a password
// there would end up in messages.
func parseHostURL(raw string) (*url.URL, error) {
	s := raw
	if !strings.HasPrefix(s, "http://") && !strings.HasPrefix(s, "https://") {
		if strings.Contains(s, "://") {
			return nil, fmt.Errorf("host URL %s: scheme must be http or https", redactString(s))
		}
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("invalid host URL %q", printable(redactString(s), 200))
	}
	if u.User != nil {
		return nil, fmt.Errorf("host URL %s has user info: credentials belong in the Docker config or --authfile, never in a host URL", Redact(u))
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("host URL %s has a query or fragment", Redact(u))
	}
	return u, nil
}

// makeMirror turns one host entry into a Mirror. raw is "" for a
// top-level entry without a server key: the URL is then filled in later
// with the registry's default.
func makeMirror(raw string, h hostFields, base string, warn func(string)) (Mirror, error) {
	var m Mirror
	var u *url.URL
	if raw != "" {
		var err error
		if u, err = parseHostURL(raw); err != nil {
			return m, err
		}
		if u.Path != "" {
			u.Path = path.Clean(u.Path)
		}
		m.URL = strings.TrimSuffix(u.String(), "/")
	}
	name := redactString(raw)
	if raw == "" {
		name = "the server"
	}
	for _, c := range h.Capabilities {
		switch strings.ToLower(c) {
		case "pull", "resolve", "push":
		default:
			return m, fmt.Errorf("host %s: unknown capability %q", name, c)
		}
	}
	m.Capabilities = h.Capabilities
	m.OverridePath = h.OverridePath
	if h.SkipVerify != nil {
		m.SkipVerify = *h.SkipVerify
	}
	var err error
	if m.CAFiles, err = pathList(h.CA, base); err != nil {
		return m, fmt.Errorf("host %s: ca: %w", name, err)
	}
	if m.ClientCerts, err = clientPairs(h.Client, base); err != nil {
		return m, fmt.Errorf("host %s: client: %w", name, err)
	}
	if h.DialTimeout != "" {
		d, err := time.ParseDuration(h.DialTimeout)
		if err != nil || d <= 0 {
			return m, fmt.Errorf("host %s: dial_timeout %q is not a positive duration", name, h.DialTimeout)
		}
		m.DialTimeout = d
	}
	if len(h.Header) > 0 {
		m.Header = http.Header{}
		for k, v := range h.Header {
			switch v := v.(type) {
			case string:
				m.Header.Add(k, v)
			case []any:
				for _, x := range v {
					s, ok := x.(string)
					if !ok {
						return m, fmt.Errorf("host %s: header %q must be a string or a list of strings", name, k)
					}
					m.Header.Add(k, s)
				}
			default:
				return m, fmt.Errorf("host %s: header %q must be a string or a list of strings", name, k)
			}
		}
	}
	if u != nil && u.Scheme == "http" && (m.SkipVerify || len(m.CAFiles) > 0 || len(m.ClientCerts) > 0) {
		// containerd tries HTTPS first on such a host; this program
		// speaks plain HTTP to it as written, and the TLS keys apply
		// only to HTTPS token servers and redirect targets.
		warn(fmt.Sprintf("host %s is plain http://: skip_verify, ca and client apply only to HTTPS token servers and redirects, not to it", name))
	}
	return m, nil
}

// pathList reads "ca": a path or a list of paths.
func pathList(v any, base string) ([]string, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		return []string{absPath(v, base)}, nil
	case []any:
		var out []string
		for _, x := range v {
			s, ok := x.(string)
			if !ok {
				return nil, errors.New("want a path or a list of paths")
			}
			out = append(out, absPath(s, base))
		}
		return out, nil
	}
	return nil, errors.New("want a path or a list of paths")
}

// clientPairs reads "client" as containerd does: a file holding
// certificate and key, a list of such files, or a list of
// [certificate, key] pairs.
func clientPairs(v any, base string) ([][2]string, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		return [][2]string{{absPath(v, base), ""}}, nil
	case []any:
		var out [][2]string
		for _, x := range v {
			switch x := x.(type) {
			case string:
				out = append(out, [2]string{absPath(x, base), ""})
			case []any:
				if len(x) != 2 {
					return nil, fmt.Errorf("a pair must be [certificate, key], not %d items", len(x))
				}
				c, ok1 := x[0].(string)
				k, ok2 := x[1].(string)
				if !ok1 || !ok2 {
					return nil, errors.New("a pair must be two paths")
				}
				out = append(out, [2]string{absPath(c, base), absPath(k, base)})
			default:
				return nil, errors.New("want a path, a list of paths or a list of [certificate, key] pairs")
			}
		}
		return out, nil
	}
	return nil, errors.New("want a path, a list of paths or a list of [certificate, key] pairs")
}

func absPath(p, base string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(base, p)
}
