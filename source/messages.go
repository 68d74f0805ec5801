package source

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"

	"github.com/ocifetch/ocifetch/errdefs"
)

// Errors that reach people say, on one line, what failed and what to do,
// in this package's words: the text of net/http, crypto/tls and
// go-containerregistry describes their internals ("dial tcp: lookup x on
// 10.0.0.53:53", "http: server gave HTTP response to HTTPS client",
// "use name.Insecure") and stays reachable as the cause, for errors.Is
// and errors.As, but out of the message.

// userError is an error whose message replaces its cause's text.
type userError struct {
	e     *errdefs.Error // kind and message, without a cause
	cause error
}

func (u *userError) Error() string { return u.e.Message }

func (u *userError) Unwrap() []error {
	if u.cause == nil {
		return []error{u.e}
	}
	return []error{u.e, u.cause}
}

// tell returns an error of kind k whose message is the formatted text
// alone; cause stays reachable.
func tell(cause error, k errdefs.Kind, format string, args ...any) error {
	return &userError{e: &errdefs.Error{Kind: k, Message: fmt.Sprintf(format, args...)}, cause: cause}
}

// tellFinal is tell for a failure that asking again will not change.
func tellFinal(cause error, k errdefs.Kind, format string, args ...any) error {
	return final{tell(cause, k, format, args...)}
}

// describeTransport turns a failure below HTTP (name lookup, connection,
// TLS) of a request to host (host[:port]) into an error people can act
// on, or returns nil when err is none of those.
func describeTransport(err error, host string) error {
	name := hostOnly(host)
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		if dnsErr.IsNotFound {
			// "no such host" is the resolver's final answer: retrying
			// only delays the message.
			return tellFinal(err, errdefs.ErrNetwork, "cannot find the host %s: no such host; check the registry's name", printable(dnsErr.Name, 100))
		}
		what := "the lookup failed"
		if dnsErr.IsTimeout {
			what = "the lookup timed out"
		}
		return tell(err, errdefs.ErrNetwork, "cannot find the host %s: %s; check the network and its DNS servers", printable(dnsErr.Name, 100), what)
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return tellFinal(err, errdefs.ErrNetwork, "cannot connect to %s: connection refused; check that the registry runs and the port is right", host)
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return tell(err, errdefs.ErrNetwork, "cannot connect to %s: no route to the host; check the network", host)
	case plainHTTPAnswer(err):
		// Go's client reports a plain-HTTP answer to a TLS hello this
		// way; the fix is the user's, and asking again changes nothing.
		return tellFinal(err, errdefs.ErrNetwork, "%s answered in plain HTTP, not HTTPS: if plain HTTP to it is what you want, allow it with --insecure-registry %s", host, name)
	}
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	var cv *tls.CertificateVerificationError
	switch {
	case errors.As(err, &ua):
		return tellFinal(err, errdefs.ErrNetwork, "the TLS certificate of %s is signed by an authority this machine does not trust; add the CA to the system's trust store or give it in a hosts directory (--hosts-dir, ca = ...)", host)
	case errors.As(err, &he):
		return tellFinal(err, errdefs.ErrNetwork, "the TLS certificate of %s is not valid for %s (%s); use the name the certificate was made for", host, name, printable(he.Error(), 200))
	case errors.As(err, &ci):
		return tellFinal(err, errdefs.ErrNetwork, "the TLS certificate of %s is not valid (%s)", host, printable(ci.Error(), 200))
	case errors.As(err, &cv):
		return tellFinal(err, errdefs.ErrNetwork, "the TLS certificate of %s could not be verified (%s)", host, printable(cv.Err.Error(), 200))
	}
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.EPIPE):
		return tell(err, errdefs.ErrNetwork, "the connection to %s broke; check the network, or try again", host)
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return tell(err, errdefs.ErrNetwork, "%s did not answer in time; check the network, or try again", host)
	}
	return nil
}

// plainHTTPAnswer reports the failure of a TLS handshake with a server
// that speaks plain HTTP.
func plainHTTPAnswer(err error) bool {
	var rh tls.RecordHeaderError
	// net/http turns the RecordHeaderError of an answer that looks like
	// HTTP into its sentinel ErrSchemeMismatch.
	return errors.As(err, &rh) || errors.Is(err, http.ErrSchemeMismatch)
}

// hostOfURL is the host[:port] of a URL in text, or "" for none.
func hostOfURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Host
}

// referenceError explains why s is not a registry reference, in place of
// go-containerregistry's parser text (which names its own API: "use
// name.Insecure").
func referenceError(s string, cause error) error {
	q := printable(s, 200)
	if scheme, rest, ok := strings.Cut(s, "://"); ok {
		host, _, _ := strings.Cut(rest, "/")
		hint := ""
		if strings.EqualFold(scheme, "http") {
			hint = fmt.Sprintf("; for plain HTTP, add --insecure-registry %s", printable(hostOnly(host), 100))
		}
		return tell(cause, errdefs.ErrInvalidArgument, "invalid image reference %q: a reference has no scheme, write %s%s", q, printable(rest, 200), hint)
	}
	return tell(cause, errdefs.ErrInvalidArgument,
		"invalid image reference %q: want [HOST[:PORT]/]PATH[:TAG][@DIGEST], PATH in lower case, e.g. docker.io/library/alpine:3.20", q)
}
