package source

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/ocifetch/ocifetch/errdefs"
)

// HTTPError is a failure status from a registry, a token server or a
// foreign-layer URL: the one HTTP error type of ocifetch. It carries the
// server's Retry-After and the distribution API's error codes, and tells
// Retryable (through RetryHint) whether the status is worth retrying:
// 408, 429 and 5xx are.
type HTTPError struct {
	Code       int
	RetryAfter time.Duration
	// Codes are the distribution API error codes of the body
	// ("MANIFEST_UNKNOWN", "DENIED", ...), if it had any.
	Codes []string
	// Message is the server's own explanation, made safe to print.
	Message string
}

func (e *HTTPError) Error() string {
	s := fmt.Sprintf("HTTP %d %s", e.Code, http.StatusText(e.Code))
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// RetryHint implements RetryHinter.
func (e *HTTPError) RetryHint() (time.Duration, bool) {
	return e.RetryAfter, e.Code == http.StatusTooManyRequests || e.Code == http.StatusRequestTimeout || e.Code >= 500
}

// maxErrorBody bounds how much of an error response is read for its codes.
const maxErrorBody = 64 << 10

// StatusError turns a failed response into an error of the right kind:
// 401 and 403 (or the codes UNAUTHORIZED, DENIED) unauthorized; 404 and 410
// (or MANIFEST_UNKNOWN, BLOB_UNKNOWN, NAME_UNKNOWN) not_found; 413
// too_large; anything else network, with an HTTPError cause that says
// whether to retry. It reads a bounded part of the body; the caller
// closes it. what says what was asked for, for the message.
func StatusError(resp *http.Response, what string) error {
	he := &HTTPError{Code: resp.StatusCode, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	if resp.Body != nil && resp.Request != nil && resp.Request.Method != http.MethodHead {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		he.Codes, he.Message = parseErrorBody(body)
	}
	return classifyStatus(he, what)
}

func classifyStatus(he *HTTPError, what string) error {
	kind := errdefs.ErrNetwork
	hint := ""
	switch {
	case he.Code == http.StatusUnauthorized, he.Code == http.StatusForbidden:
		kind, hint = errdefs.ErrUnauthorized, "; check the credentials, and that the repository exists"
	case he.Code == http.StatusNotFound, he.Code == http.StatusGone:
		kind = errdefs.ErrNotFound
	case he.Code == http.StatusRequestEntityTooLarge:
		kind = errdefs.ErrTooLarge
	case he.Code == http.StatusTooManyRequests:
		hint = "; the registry limits requests, try again later"
	case he.Code >= 500:
		hint = "; the registry failed, try again later"
	}
	if kind == errdefs.ErrNetwork {
		for _, c := range he.Codes {
			switch c {
			case "UNAUTHORIZED", "DENIED":
				kind, hint = errdefs.ErrUnauthorized, ""
			case "MANIFEST_UNKNOWN", "BLOB_UNKNOWN", "NAME_UNKNOWN":
				kind, hint = errdefs.ErrNotFound, ""
			}
		}
	}
	return tell(he, kind, "%s: %s%s", what, he.Error(), hint)
}

// parseErrorBody reads the distribution API's {"errors":[{"code","message"}]}.
func parseErrorBody(body []byte) (codes []string, msg string) {
	var doc struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &doc) != nil {
		return nil, ""
	}
	var msgs []string
	for _, e := range doc.Errors {
		codes = append(codes, e.Code)
		if e.Message != "" {
			msgs = append(msgs, e.Message)
		}
	}
	return codes, printable(strings.Join(msgs, "; "), 200)
}

// printable makes server-chosen text safe for a one-line message: control
// characters become spaces and the length is capped.
func printable(s string, limit int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > limit {
		s = s[:limit] + "…"
	}
	return s
}

// classify gives an error from the HTTP layer (the client, a dial, a
// redirect check, go-containerregistry's token exchange) its kind. An
// error of ours inside (a refusal) is returned as it is; a url.Error is
// unwrapped, since its text repeats the URL with its query, which may
// carry a signed storage token. A cancellation stays reachable, so it is
// kind canceled. what says what was being done, for the message.
func classify(err error, what string) error {
	if err == nil {
		return nil
	}
	var re *refusedError
	if errors.As(err, &re) {
		return re
	}
	var k *errdefs.Error
	if errors.As(err, &k) {
		return k
	}
	var te *transport.Error
	if errors.As(err, &te) {
		// go-containerregistry's status error: its text names its own
		// API ("use GET for details"); the status and codes are ours
		// to word.
		he := &HTTPError{Code: te.StatusCode}
		for _, d := range te.Errors {
			he.Codes = append(he.Codes, string(d.Code))
			if d.Message != "" && he.Message == "" {
				he.Message = printable(d.Message, 200)
			}
		}
		return classifyStatus(he, what)
	}
	host := ""
	var ue *url.Error
	if errors.As(err, &ue) {
		host = hostOfURL(ue.URL)
	}
	if errors.Is(err, context.Canceled) {
		return errdefs.Wrap(err, errdefs.ErrCanceled, "%s", what)
	}
	if host != "" {
		if d := describeTransport(err, host); d != nil {
			return d
		}
	}
	if ue != nil && ue.Err != nil {
		// Its text repeats the URL with its query, which may carry a
		// signed storage token.
		return tell(err, errdefs.ErrNetwork, "%s: %s", what, printable(ue.Err.Error(), 300))
	}
	return tell(err, errdefs.ErrNetwork, "%s: %s", what, printable(err.Error(), 300))
}
