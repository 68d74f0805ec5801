package source

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/ocifetch/ocifetch/errdefs"
)

// getRange is the one ranged GET of ocifetch, for registries and
// foreign-layer URLs alike. It asks for u from off and returns the body
// and where it really starts: off for a 206 whose Content-Range starts
// there, 0 for a 200 (the server ignored the range; the caller starts
// over). The range names both ends ("bytes=N-END") when the size is
// known, since some registries refuse the open form. A 416 for off > 0
// means the content ends before off: shorter than its descriptor says,
// which asking again will not change; it is size_mismatch with the cause
// io.ErrUnexpectedEOF, the same finding as a body that ends early. name
// is what messages call the request (never a URL with user info or query).
func getRange(ctx context.Context, c *http.Client, method, u, name string, hdr http.Header, off, size int64) (*http.Response, int64, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, 0, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "bad URL %s", name)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	switch {
	case off > 0 && size > off:
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, size-1))
	case off > 0:
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
	}
	resp, err := c.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, 0, ContextError(ctx, name, err)
		}
		return nil, 0, classify(err, name)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return resp, 0, nil
	case http.StatusPartialContent:
		if off == 0 {
			return resp, 0, nil
		}
		start, err := contentRangeStart(resp.Header.Get("Content-Range"))
		if err != nil || start != off {
			resp.Body.Close()
			return nil, 0, errdefs.New(errdefs.ErrNetwork, "%s answered a request from byte %d with Content-Range %q",
				name, off, printable(resp.Header.Get("Content-Range"), 80))
		}
		return resp, off, nil
	case http.StatusRequestedRangeNotSatisfiable:
		if off > 0 {
			// The body is not read: registry 2.8 sends this answer with
			// the blob's Content-Length and a short error text, which
			// reads as a broken connection.
			resp.Body.Close()
			return nil, 0, errdefs.Wrap(io.ErrUnexpectedEOF, errdefs.ErrSizeMismatch,
				"%s has nothing from byte %d on (416): the content is shorter than its descriptor says", name, off)
		}
	}
	defer resp.Body.Close()
	return nil, 0, StatusError(resp, name)
}

// contentRangeStart returns the first byte position of a 206 response's
// Content-Range header, "bytes START-END/TOTAL".
func contentRangeStart(h string) (int64, error) {
	rest, ok := strings.CutPrefix(h, "bytes ")
	if !ok {
		return 0, fmt.Errorf("bad Content-Range %q", h)
	}
	s, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, fmt.Errorf("bad Content-Range %q", h)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad Content-Range %q", h)
	}
	return n, nil
}

// Redact returns u as it may be printed: without user info, query or
// fragment (which can carry tokens).
func Redact(u *url.URL) string {
	c := *u
	c.User, c.RawQuery, c.ForceQuery, c.Fragment, c.RawFragment = nil, "", false, "", ""
	return c.String()
}

// redactString is Redact for a URL still in text.
func redactString(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(an unparsable URL)"
	}
	return Redact(u)
}
