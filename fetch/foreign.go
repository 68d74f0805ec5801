package fetch

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/resolve"
	"github.com/ocifetch/ocifetch/source"
)

// endpointsFor lists where desc may be fetched from, in order: the
// source's endpoints (mirrors first, then the registry, when the source is
// Mirrored; only those that may pull), then the descriptor's URLs whose
// hosts the caller allowed. A foreign layer is asked of the registry first
// because many registries serve them anyway. blocked lists the hosts of
// URLs that were not allowed, for the error message when nothing else has
// the blob.
func endpointsFor(src resolve.Source, desc ocispec.Descriptor, o *options) (eps []resolve.Source, blocked []string) {
	if m, ok := src.(resolve.Mirrored); ok {
		eps = m.Endpoints()
	} else {
		eps = []resolve.Source{src}
	}
	for _, raw := range desc.URLs {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			blocked = append(blocked, fmt.Sprintf("%q (not a URL)", printableURL(raw)))
			continue
		}
		c := o.urlClient(src)
		if c.Allowed(u) {
			eps = append(eps, c.Source(u))
		} else {
			blocked = append(blocked, strings.ToLower(u.Host))
		}
	}
	return eps, blocked
}

// printableURL shortens text from a manifest for a message.
func printableURL(s string) string {
	if len(s) > 100 {
		s = s[:100] + "…"
	}
	return s
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

// urlClient is the client for foreign-layer URLs, made once per options
// (see source.URLClient for its rules).
func (o *options) urlClient(src resolve.Source) *source.URLClient {
	o.urlOnce.Do(func() {
		o.urls = source.NewURLClient(o.httpClient, o.allowedHosts, o.jobs, source.NetworkOf(src))
	})
	return o.urls
}
