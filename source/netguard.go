package source

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ocifetch/ocifetch/errdefs"
)

// Where a request may go, and with what, is decided by the address the
// connection is actually made to, not by the name in the URL: a dialer
// check sees through DNS names and through a name that resolves to a
// public address once and to 127.0.0.1 the next time (DNS rebinding).
//
//   - The registry's own host:port: anything (it is the user's choice).
//   - Another host with credentials (a token realm: Authorization, or the
//     OAuth POST): only https and a public address, unless the user named
//     the host with WithAllowTokenHost (--allow-token-host).
//   - Another host without credentials (a blob redirect to storage, a
//     token realm for anonymous access): a public address, or any address
//     when the registry itself is on a loopback, link-local or private
//     one (a registry on the local network may well redirect within it).
//
// These rules stop blind SSRF through a realm or a redirect (a registry
// making this machine fetch http://169.254.169.254/... or a service on
// localhost) and credentials going to a host the user did not mean.
//
// Behind HTTPS_PROXY/HTTP_PROXY the proxy dials, so this process never
// sees the address: then the name is resolved here and every address it
// resolves to must pass, which a rebinding DNS server can still defeat
// between this lookup and the proxy's. The same holds with a transport of
// the caller's (WithTransport).

// nonPublic names the kind of a loopback, link-local, private or otherwise
// non-public address, and returns "" for a public one.
func nonPublic(a netip.Addr) string {
	a = a.WithZone("").Unmap()
	switch {
	case a.IsLoopback():
		return "loopback"
	case a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast():
		return "link-local"
	case a.IsPrivate():
		return "private"
	case a.IsUnspecified():
		return "unspecified"
	case a.IsMulticast(), a.IsInterfaceLocalMulticast():
		return "multicast"
	case cgnat.Contains(a):
		return "shared (carrier-grade NAT)"
	case a.Is4() && a.As4()[0] == 0:
		return "this-network"
	}
	return ""
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// isLoopbackHost reports whether a host or host:port names this machine
// (localhost, 127.0.0.0/8, ::1), where plain HTTP is customary.
func isLoopbackHost(hostport string) bool {
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
	}
	h = strings.ToLower(strings.Trim(h, "[]"))
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.Unmap().IsLoopback()
}

// hostKey is host:port in lower case with the scheme's default port.
func hostKey(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "443"
		if u.Scheme == "http" {
			port = "80"
		}
	}
	return net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// guard is the transport beneath authentication for one endpoint: every
// request of the endpoint, the token exchange and every redirect hop
// passes through it. It sets the User-Agent (nearest the wire, so nothing
// above can replace it), refuses plain HTTP to the registry unless
// allowed, adds the hosts.toml headers to the registry's requests only,
// and sends each request through the transport whose dialer enforces the
// address rule for it.
type guard struct {
	regURL  *url.URL // scheme://host[:port] of the endpoint
	plainOK bool
	header  http.Header
	ua      string
	o       *options

	custom                  http.RoundTripper // WithTransport: no dialer of ours
	direct, strict, foreign *http.Transport

	mu       sync.Mutex
	regClass string // nonPublic of the registry's dialed address; "?" until known
	proxies  map[string]bool
}

func newGuard(regURL *url.URL, m Mirror, plainOK bool, o *options) (*guard, error) {
	g := &guard{regURL: regURL, plainOK: plainOK, header: m.Header, ua: o.userAgent, o: o, regClass: "?", proxies: map[string]bool{}}
	if o.transport != nil {
		g.custom = o.transport
		return g, nil
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	// Blobs are fetched concurrently: Go keeps only two idle connections
	// per host by default.
	base.MaxIdleConnsPerHost = 32
	base.MaxIdleConns = 128
	base.ResponseHeaderTimeout = 60 * time.Second
	base.Proxy = g.proxy
	tlsCfg, err := tlsConfig(m)
	if err != nil {
		return nil, err
	}
	if tlsCfg != nil {
		base.TLSClientConfig = tlsCfg
	}
	dialTimeout := 30 * time.Second
	if m.DialTimeout > 0 {
		dialTimeout = m.DialTimeout
	}
	mk := func(rule func(name, addr string) error, record bool) *http.Transport {
		t := base.Clone()
		t.DialContext = g.dialer(dialTimeout, rule, record)
		return t
	}
	g.direct = mk(nil, true)
	g.strict = mk(g.credentialRule, false)
	g.foreign = mk(g.anonymousRule, false)
	if tlsCfg != nil {
		// skip_verify and client certificates are for the host they were
		// configured for: another host (a token server, blob storage) is
		// verified, against the system roots and the configured CAs, and
		// gets no client certificate.
		other := &tls.Config{RootCAs: tlsCfg.RootCAs}
		g.strict.TLSClientConfig = other
		g.foreign.TLSClientConfig = other.Clone()
	}
	return g, nil
}

// tlsConfig builds the TLS settings hosts.toml asks for (skip_verify, ca,
// client), or nil for Go's defaults.
func tlsConfig(m Mirror) (*tls.Config, error) {
	if !m.SkipVerify && len(m.CAFiles) == 0 && len(m.ClientCerts) == 0 {
		return nil, nil
	}
	cfg := &tls.Config{InsecureSkipVerify: m.SkipVerify} //nolint:gosec // the user asked for it in hosts.toml
	if len(m.CAFiles) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		for _, f := range m.CAFiles {
			pem, err := os.ReadFile(f)
			if err != nil {
				return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "CA file for %s", redactString(m.URL))
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, errdefs.New(errdefs.ErrInvalidArgument, "CA file %s for %s holds no certificate", f, redactString(m.URL))
			}
		}
		cfg.RootCAs = pool
	}
	for _, pair := range m.ClientCerts {
		certPEM, err := os.ReadFile(pair[0])
		if err != nil {
			return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "client certificate for %s", redactString(m.URL))
		}
		keyPEM := certPEM // a key in the certificate's own file, as containerd allows
		if pair[1] != "" {
			if keyPEM, err = os.ReadFile(pair[1]); err != nil {
				return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "client key for %s", redactString(m.URL))
			}
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "client certificate %s for %s", pair[0], redactString(m.URL))
		}
		cfg.Certificates = append(cfg.Certificates, cert)
	}
	return cfg, nil
}

// proxy is http.ProxyFromEnvironment, remembering which addresses are
// proxies: the dialer must not judge a proxy's address as if it were the
// destination's.
func (g *guard) proxy(req *http.Request) (*url.URL, error) {
	u, err := http.ProxyFromEnvironment(req)
	if u != nil {
		g.mu.Lock()
		g.proxies[hostKey(u)] = true
		g.mu.Unlock()
	}
	return u, err
}

func (g *guard) isProxy(addr string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.proxies[strings.ToLower(addr)]
}

// dialer returns a DialContext that applies rule to every address it
// connects to (except a proxy's), and with record set notes the class of
// the registry's own address.
func (g *guard) dialer(timeout time.Duration, rule func(name, addr string) error, record bool) func(context.Context, string, string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
		proxied := g.isProxy(addr)
		if rule != nil && !proxied {
			d.Control = func(_, address string, _ syscall.RawConn) error { return rule(addr, address) }
		}
		conn, err := d.DialContext(ctx, network, addr)
		if err == nil && record && !proxied {
			if h, _, _ := net.SplitHostPort(addr); strings.EqualFold(h, g.regURL.Hostname()) {
				if ap, perr := netip.ParseAddrPort(conn.RemoteAddr().String()); perr == nil {
					g.mu.Lock()
					g.regClass = nonPublic(ap.Addr())
					g.mu.Unlock()
				}
			}
		}
		return conn, err
	}
}

// credentialRule: credentials leave for another host only to a public
// address.
func (g *guard) credentialRule(name, address string) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return err
	}
	if k := nonPublic(ap.Addr()); k != "" {
		return refuse(errdefs.ErrUnauthorized,
			"refusing to send the credentials for %s to the token server %s: it is at %s, a %s address; allow it with --allow-token-host %s",
			g.regURL.Host, name, ap.Addr(), k, name)
	}
	return nil
}

// anonymousRule: other hosts must be public unless the registry is not.
func (g *guard) anonymousRule(name, address string) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return err
	}
	k := nonPublic(ap.Addr())
	if k == "" {
		return nil
	}
	if rk := g.registryClass(context.Background()); rk != "" {
		return nil
	}
	return refuse(errdefs.ErrNetwork,
		"refusing to follow %s to %s: it is at %s, a %s address, and the registry is not on such an address",
		g.regURL.Host, name, ap.Addr(), k)
}

// registryClass is nonPublic of the registry's address: the one dialed,
// or, when a proxy or a caller's transport dials, the ones its name
// resolves to here (non-public only if all are).
func (g *guard) registryClass(ctx context.Context) string {
	g.mu.Lock()
	k := g.regClass
	g.mu.Unlock()
	if k == "?" {
		k = ""
		addrs, err := lookup(ctx, g.regURL.Hostname())
		if err == nil && len(addrs) > 0 {
			k = nonPublic(addrs[0])
			for _, a := range addrs[1:] {
				if nonPublic(a) == "" {
					k = ""
				}
			}
		}
	}
	if k == "loopback" && g.o.loopbackPublic {
		return "" // test-only: a loopback registry stands in for a public one
	}
	return k
}

func lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, ok := parseIPLiteral(host); ok {
		return []netip.Addr{a}, nil
	}
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// parseIPLiteral parses an IP literal in every form a resolver accepts:
// IPv6 (with brackets or a zone), dotted IPv4, and the inet_aton forms
// ("127.1", "0x7f000001", "2130706433", octal parts) that name loopback
// without looking like it.
func parseIPLiteral(host string) (netip.Addr, bool) {
	host = strings.Trim(host, "[]")
	if i := strings.IndexByte(host, '%'); i >= 0 {
		host = host[:i]
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap(), true
	}
	parts := strings.Split(host, ".")
	if len(parts) == 0 || len(parts) > 4 {
		return netip.Addr{}, false
	}
	var vals []uint64
	for _, p := range parts {
		base := 10
		switch {
		case strings.HasPrefix(p, "0x") || strings.HasPrefix(p, "0X"):
			base, p = 16, p[2:]
		case len(p) > 1 && p[0] == '0':
			base, p = 8, p[1:]
		}
		if p == "" {
			return netip.Addr{}, false
		}
		v, err := strconv.ParseUint(p, base, 32)
		if err != nil {
			return netip.Addr{}, false
		}
		vals = append(vals, v)
	}
	var ip uint64
	for i, v := range vals[:len(vals)-1] {
		if v > 255 {
			return netip.Addr{}, false
		}
		ip |= v << (24 - 8*i)
	}
	last := vals[len(vals)-1]
	if last >= 1<<(8*(5-len(vals))) {
		return netip.Addr{}, false
	}
	ip |= last
	return netip.AddrFrom4([4]byte{byte(ip >> 24), byte(ip >> 16), byte(ip >> 8), byte(ip)}), true
}

// tokenHostAllowed reports whether the user named u's host with
// WithAllowTokenHost ("host" or "host:port").
func (g *guard) tokenHostAllowed(u *url.URL) bool {
	return g.o.tokenHosts[strings.ToLower(u.Host)] || g.o.tokenHosts[strings.ToLower(u.Hostname())] || g.o.tokenHosts[hostKey(u)]
}

func (g *guard) isRegistry(u *url.URL) bool {
	return strings.EqualFold(u.Host, g.regURL.Host) || hostKey(u) == hostKey(g.regURL)
}

// RoundTrip implements http.RoundTripper.
func (g *guard) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("User-Agent", g.ua)
	if g.isRegistry(req.URL) {
		if req.URL.Scheme == "http" && !g.plainOK {
			return nil, refuse(errdefs.ErrInvalidArgument,
				"refusing plain HTTP to %s: allow it with --insecure-registry %s", g.regURL.Host, g.regURL.Host)
		}
		for k, v := range g.header {
			req.Header[k] = append([]string(nil), v...)
		}
		return g.send(req, g.direct, nil)
	}
	creds := req.Header.Get("Authorization") != "" || req.Method == http.MethodPost
	switch {
	case creds && g.tokenHostAllowed(req.URL):
		return g.send(req, g.direct, nil)
	case creds && req.URL.Scheme != "https":
		return nil, refuse(errdefs.ErrUnauthorized,
			"refusing to send the credentials for %s to the token server %s over plain HTTP; allow it with --allow-token-host %s",
			g.regURL.Host, req.URL.Host, req.URL.Host)
	case creds:
		return g.send(req, g.strict, g.credentialRule)
	default:
		return g.send(req, g.foreign, g.anonymousRule)
	}
}

// send uses t, or the caller's transport. When this process will not dial
// the destination itself (a proxy, a caller's transport), rule is applied
// to what the name resolves to here instead.
func (g *guard) send(req *http.Request, t *http.Transport, rule func(name, addr string) error) (*http.Response, error) {
	rt := http.RoundTripper(t)
	indirect := g.custom != nil
	if indirect {
		rt = g.custom
	} else if u, _ := t.Proxy(req); u != nil {
		indirect = true
	}
	if indirect && rule != nil {
		addrs, err := lookup(req.Context(), req.URL.Hostname())
		if err != nil {
			return nil, errdefs.Wrap(err, errdefs.ErrNetwork, "looking up %s", req.URL.Hostname())
		}
		for _, a := range addrs {
			if err := rule(req.URL.Host, netip.AddrPortFrom(a, 0).String()); err != nil {
				return nil, err
			}
		}
	}
	return traced(g.o.trace, rt, req)
}

// checkRedirect keeps redirects to the first request's rules: at most 10,
// no user info in the new URL, and no step from https down to plain http unless the new host is itself
// allowed plain HTTP (loopback, or named with --insecure-registry). Where
// a redirect may connect is then the dialer's decision (see guard).
func checkRedirect(o *options) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errdefs.New(errdefs.ErrNetwork, "stopped after 10 redirects")
		}
		if req.URL.User != nil {
			// Go's client would send the user info as Basic credentials:
			// a redirect never chooses what credentials are sent.
			return refuse(errdefs.ErrNetwork,
				"refusing a redirect from %s to a URL with user info at %s: credentials are never taken from a redirect",
				via[0].URL.Host, req.URL.Host)
		}
		if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" && !plainAllowed(o, req.URL) {
			return refuse(errdefs.ErrNetwork,
				"refusing a redirect from %s to plain HTTP at %s: HTTPS requests are not downgraded to hosts not allowed plain HTTP (--insecure-registry)",
				via[0].URL.Host, req.URL.Host)
		}
		return nil
	}
}

func plainAllowed(o *options, u *url.URL) bool {
	return isLoopbackHost(u.Host) || o.plainHTTPAllowed(u.Host)
}
