package fetch

import (
	"context"
	"errors"
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
	"github.com/ocifetch/ocifetch/internal/httpx"
	"github.com/ocifetch/ocifetch/resolve"
)

// endpointsFor lists where desc may be fetched from, in order: the
// source's endpoints (mirrors first, then the registry, when the source is
// Mirrored), then the descriptor's URLs whose hosts the caller allowed. A
// foreign layer is asked of the registry first because many registries
// serve them anyway. blocked lists the hosts of URLs that were not allowed,
// for the error message when nothing else has the blob.
func endpointsFor(src resolve.Source, desc ocispec.Descriptor, o *options) (eps []resolve.Source, blocked []string) {
	if m, ok := src.(resolve.Mirrored); ok {
		eps = m.Endpoints()
	}
	if len(eps) == 0 {
		eps = []resolve.Source{src}
	}
	for _, raw := range desc.URLs {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			blocked = append(blocked, fmt.Sprintf("%q (not a URL)", raw))
			continue
		}
		host := strings.ToLower(u.Host)
		if o.allowedHosts[host] || o.allowedHosts[strings.ToLower(u.Hostname())] {
			eps = append(eps, &urlSource{u: u, client: o.foreignClient()})
		} else {
			blocked = append(blocked, host)
		}
	}
	return eps, blocked
}

// foreignHint explains a foreign layer that neither the registry nor an
// allowed URL served.
func foreignHint(err error, desc ocispec.Descriptor, blocked []string) error {
	if err == nil || len(blocked) == 0 || !errors.Is(err, errdefs.ErrNotFound) {
		return err
	}
	return errdefs.Wrap(err, errdefs.ErrNotFound,
		"layer %s is a foreign layer the registry does not serve; its URLs point to %s, which are not followed unless allowed (WithAllowedURLHosts(%q))",
		desc.Digest, strings.Join(blocked, ", "), blocked[0])
}

// foreignClient is the HTTP client for foreign-layer URLs: the caller's,
// or one with enough idle connections for concurrent downloads. Either way
// its redirects must obey the same rules as the first request, and it
// never dials link-local addresses (cloud metadata services): a URL in a
// manifest is chosen by whoever pushed the image.
func (o *options) foreignClient() *http.Client {
	var c http.Client
	if o.httpClient != nil {
		c = *o.httpClient
	} else {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = max(o.jobs, 2)
		d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: refuseLinkLocal}
		tr.DialContext = d.DialContext
		c.Transport = tr
	}
	next := c.CheckRedirect
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		if err := checkForeignURL(req.URL); err != nil {
			return err
		}
		req.Header.Del("Authorization")
		req.Header.Del("Cookie")
		if next != nil {
			return next(req, via)
		}
		return nil
	}
	return &c
}

func refuseLinkLocal(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	if a, err := netip.ParseAddr(host); err == nil && (a.IsLinkLocalUnicast() || a.IsUnspecified() || a.IsMulticast()) {
		return fmt.Errorf("refusing to connect to %s", address)
	}
	return nil
}

// checkForeignURL allows https, and plain http only to loopback hosts
// (test servers, local caches).
func checkForeignURL(u *url.URL) error {
	switch {
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && httpx.IsLoopback(u.Hostname()):
		return nil
	}
	return errdefs.New(errdefs.ErrInvalidArgument, "foreign layer URL %s must use https", redact(u))
}

func redact(u *url.URL) string {
	c := *u
	c.User, c.RawQuery, c.Fragment = nil, "", ""
	return c.String()
}

// urlSource fetches a foreign layer from one of its descriptor's URLs with
// plain net/http: no registry credentials, no cookies.
type urlSource struct {
	u      *url.URL
	client *http.Client
}

func (s *urlSource) Reference() string { return redact(s.u) }
func (s *urlSource) String() string    { return redact(s.u) }

func (s *urlSource) Root(context.Context) (ocispec.Descriptor, error) {
	return ocispec.Descriptor{}, errdefs.New(errdefs.ErrInvalidArgument, "a foreign layer URL has no root")
}

func (s *urlSource) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	rc, _, err := s.FetchAt(ctx, desc, 0)
	return rc, err
}

func (s *urlSource) FetchAt(ctx context.Context, desc ocispec.Descriptor, off int64) (io.ReadCloser, int64, error) {
	if err := checkForeignURL(s.u); err != nil {
		return nil, 0, err
	}
	return httpGetRange(ctx, s.client, s.u.String(), redact(s.u), desc, off)
}

// httpGetRange GETs u from off. The range names both ends
// ("bytes=N-END"): the size is known, and some servers (go-containerregistry's
// test registry among them) reject the open-ended form. A 200 answer means
// the server ignored the range; a 206 must start at off.
func httpGetRange(ctx context.Context, c *http.Client, u, name string, desc ocispec.Descriptor, off int64) (io.ReadCloser, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "bad URL %s", name)
	}
	if off > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, desc.Size-1))
	}
	resp, err := c.Do(req)
	if err != nil {
		var k *errdefs.Error
		if errors.As(err, &k) {
			return nil, 0, err
		}
		return nil, 0, errdefs.Wrap(err, errdefs.ErrNetwork, "GET %s", name)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return resp.Body, 0, nil
	case http.StatusPartialContent:
		start, err := httpx.ContentRangeStart(resp.Header.Get("Content-Range"))
		if err != nil || start != off {
			resp.Body.Close()
			return nil, 0, errdefs.New(errdefs.ErrNetwork, "%s answered range %d- with Content-Range %q", name, off, resp.Header.Get("Content-Range"))
		}
		return resp.Body, off, nil
	}
	resp.Body.Close()
	return nil, 0, StatusError(resp, name)
}

// HTTPError is an HTTP failure status. It carries the server's
// Retry-After, and tells Retryable (through RetryHint) whether the status
// is worth retrying: 408, 429 and 5xx are.
type HTTPError struct {
	Code       int
	RetryAfter time.Duration
}

func (e *HTTPError) Error() string { return fmt.Sprintf("HTTP %d %s", e.Code, http.StatusText(e.Code)) }

// RetryHint implements RetryHinter.
func (e *HTTPError) RetryHint() (time.Duration, bool) {
	return e.RetryAfter, e.Code == http.StatusTooManyRequests || e.Code == http.StatusRequestTimeout || e.Code >= 500
}

// StatusError turns a failed response into an error of the right kind:
// 401/403 unauthorized, 404/410 not_found, anything else network (with an
// HTTPError cause that says whether to retry). name says what was asked
// for, for the message.
func StatusError(resp *http.Response, name string) error {
	he := &HTTPError{Code: resp.StatusCode, RetryAfter: httpx.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	kind := errdefs.ErrNetwork
	switch resp.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden:
		kind = errdefs.ErrUnauthorized
	case http.StatusNotFound, http.StatusGone:
		kind = errdefs.ErrNotFound
	}
	return errdefs.Wrap(he, kind, "GET %s", name)
}
