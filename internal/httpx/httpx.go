// Package httpx holds the small HTTP helpers the registry source (resolve)
// and the foreign-layer fetcher (fetch) share.
package httpx

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// ContentRangeStart returns the first byte position of a 206 response's
// Content-Range header, "bytes START-END/TOTAL".
func ContentRangeStart(h string) (int64, error) {
	rest, ok := strings.CutPrefix(h, "bytes ")
	if !ok {
		return 0, fmt.Errorf("bad Content-Range %q", h)
	}
	s, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, fmt.Errorf("bad Content-Range %q", h)
	}
	return strconv.ParseInt(s, 10, 64)
}

// ParseRetryAfter reads a Retry-After header, in seconds or as an HTTP
// date, as a wait from now; 0 when absent, malformed or in the past.
func ParseRetryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(h); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// IsLoopback reports whether a host or host:port names this machine
// (localhost, 127.0.0.0/8, ::1), where plain HTTP is customary.
func IsLoopback(hostport string) bool {
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
	}
	if h == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(strings.Trim(h, "[]"))
	return err == nil && a.IsLoopback()
}
