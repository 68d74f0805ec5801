package source

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
)

// URLClient fetches foreign layers from the URLs of their descriptors,
// from hosts the user allowed and nowhere else. Following a descriptor's
// URLs by default leaked credentials in the past (CVE-2020-15157): these
// requests never carry credentials or cookies, use https (plain http only
// to loopback hosts), never dial link-local, unspecified or multicast
// addresses (cloud metadata services), and every redirect keeps to the
// same rules, its target host on the allow list included.
type URLClient struct {
	client  *http.Client
	allowed map[string]bool
}

// NewURLClient returns a client for foreign-layer URLs on the allowed
// hosts ("host" or "host:port", in lower case). base, if not nil, is the
// caller's client, whose redirect policy is wrapped and whose cookie
// jar is not used; otherwise one with conns idle connections per host
// is made. n's User-Agent is sent, and n's Trace told of every request.
func NewURLClient(base *http.Client, allowed map[string]bool, conns int, n Network) *URLClient {
	c := &URLClient{allowed: allowed}
	var hc http.Client
	var inner http.RoundTripper
	if base != nil {
		hc = *base
		inner = hc.Transport
		if inner == nil {
			inner = http.DefaultTransport
		}
	} else {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = max(conns, 2)
		d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: refuseMetadata}
		tr.DialContext = d.DialContext
		tr.ResponseHeaderTimeout = 60 * time.Second
		inner = tr
	}
	// A caller's jar would add its cookies to every request, redirects
	// included, after CheckRedirect strips them.
	hc.Jar = nil
	hc.Transport = uaTransport{inner: inner, ua: n.UserAgent, trace: n.Trace}
	next := hc.CheckRedirect
	hc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errdefs.New(errdefs.ErrNetwork, "stopped after 10 redirects")
		}
		if err := c.check(req.URL); err != nil {
			return err
		}
		req.Header.Del("Authorization")
		req.Header.Del("Cookie")
		if next != nil {
			return next(req, via)
		}
		return nil
	}
	c.client = &hc
	return c
}

// Allowed reports whether u's host is on the allow list.
func (c *URLClient) Allowed(u *url.URL) bool {
	return c.allowed[strings.ToLower(u.Host)] || c.allowed[strings.ToLower(u.Hostname())]
}

// check applies the rules to a URL about to be requested.
func (c *URLClient) check(u *url.URL) error {
	switch {
	case u.User != nil:
		return refuse(errdefs.ErrInvalidArgument, "foreign layer URL %s has user info, which is refused", Redact(u))
	case !c.Allowed(u):
		return refuse(errdefs.ErrNetwork,
			"refusing to fetch a foreign layer from %s: its host is not among the allowed ones (--allow-foreign-host)", Redact(u))
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopbackHost(u.Host):
		return nil
	}
	return refuse(errdefs.ErrInvalidArgument, "foreign layer URL %s must use https", Redact(u))
}

// Source returns the Source of one URL.
func (c *URLClient) Source(u *url.URL) Source { return &urlSource{u: u, c: c} }

type uaTransport struct {
	inner http.RoundTripper
	ua    string
	trace func(Trace)
}

func (t uaTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("User-Agent", t.ua)
	return traced(t.trace, t.inner, req)
}

// refuseMetadata refuses link-local, unspecified and multicast addresses:
// a URL in a manifest is chosen by whoever pushed the image, and
// 169.254.169.254 is where clouds keep instance credentials.
func refuseMetadata(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return err
	}
	a := ap.Addr().Unmap()
	if a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsUnspecified() || a.IsMulticast() {
		return refuse(errdefs.ErrNetwork, "refusing to connect to %s for a foreign layer", address)
	}
	return nil
}

// urlSource fetches a foreign layer from one of its descriptor's URLs.
type urlSource struct {
	u *url.URL
	c *URLClient
}

func (s *urlSource) Reference() string { return Redact(s.u) }
func (s *urlSource) String() string    { return Redact(s.u) }

func (s *urlSource) Root(context.Context) (ocispec.Descriptor, error) {
	return ocispec.Descriptor{}, errdefs.New(errdefs.ErrInvalidArgument, "a foreign layer URL has no root")
}

func (s *urlSource) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	rc, _, err := s.FetchAt(ctx, desc, 0)
	return rc, err
}

func (s *urlSource) FetchAt(ctx context.Context, desc ocispec.Descriptor, off int64) (io.ReadCloser, int64, error) {
	if err := s.c.check(s.u); err != nil {
		return nil, 0, err
	}
	resp, start, err := getRange(ctx, s.c.client, http.MethodGet, s.u.String(), fmt.Sprintf("GET %s", Redact(s.u)), nil, off, desc.Size)
	if err != nil {
		return nil, 0, err
	}
	return resp.Body, start, nil
}
