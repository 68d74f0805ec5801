// Package faultproxy is a loopback HTTP reverse proxy for tests that puts
// programmable faults between a client and a registry (or any HTTP server):
// connections cut after N body bytes, a flipped byte, short bodies, 429 and
// 503 answers with Retry-After, slow trickles, delays and redirects of blob
// GETs to another loopback host. It counts what it forwards — requests,
// body bytes, concurrent requests — so a test can assert how much a client
// transferred and how much it overlapped, not only whether it succeeded.
//
// Faults are attached with rules:
//
//	p := faultproxy.New(t, registry.URL)
//	p.Add(faultproxy.Rule{Match: faultproxy.BlobGETs, Times: 3, Faults: []faultproxy.Fault{faultproxy.CutAfter(1 << 20)}})
//
// Every rule that matches a request and has uses left contributes its
// faults to that request. Answers that replace the upstream's (Status,
// Redirect) win over body faults; body faults combine.
package faultproxy

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A Fault is one misbehaviour applied to a request. Build them with the
// functions of this package.
type Fault interface{ apply(*plan) }

// plan collects the faults that apply to one request.
type plan struct {
	status     int
	retryAfter string
	redirect   *Proxy
	delay      time.Duration
	cutAfter   int64 // -1: off
	truncate   int64 // -1: off
	flipAt     int64 // -1: off; absolute offset in the resource
	chunk      int
	interval   time.Duration
}

type faultFunc func(*plan)

func (f faultFunc) apply(p *plan) { f(p) }

// Status answers with code (and a Retry-After header when retryAfter is not
// empty, e.g. "1" or an HTTP date) without contacting the upstream.
func Status(code int, retryAfter string) Fault {
	return faultFunc(func(p *plan) { p.status, p.retryAfter = code, retryAfter })
}

// CutAfter forwards n bytes of the response body, then drops the
// connection, so the client sees an unexpected EOF.
func CutAfter(n int64) Fault { return faultFunc(func(p *plan) { p.cutAfter = n }) }

// Truncate sends only the first n bytes of the body with a Content-Length
// that agrees, so the response ends cleanly but short: the behaviour of a
// broken mirror rather than of a broken network.
func Truncate(n int64) Fault { return faultFunc(func(p *plan) { p.truncate = n }) }

// FlipByte inverts the bits of the byte at offset k of the resource. The
// offset counts from the start of the resource, so a ranged response that
// starts after k is left alone.
func FlipByte(k int64) Fault { return faultFunc(func(p *plan) { p.flipAt = k }) }

// Trickle sends the body in pieces of chunk bytes, pausing interval between
// them.
func Trickle(chunk int, interval time.Duration) Fault {
	return faultFunc(func(p *plan) { p.chunk, p.interval = chunk, interval })
}

// Delay waits d before answering (the wait ends early if the client goes
// away).
func Delay(d time.Duration) Fault { return faultFunc(func(p *plan) { p.delay = d }) }

// Redirect answers 307 with the same path and query on another proxy,
// which serves it from its own upstream. The other proxy records whether
// the client sent it an Authorization header (see AuthorizationsSeen).
//
// The Location names the other proxy as "localhost:PORT" rather than
// "127.0.0.1:PORT" so that the redirect crosses to another host name, as a
// registry's redirect to blob storage does: Go's HTTP client decides
// whether to forward Authorization by host name, not by port.
func Redirect(to *Proxy) Fault { return faultFunc(func(p *plan) { p.redirect = to }) }

// A Rule attaches faults to the requests it matches.
type Rule struct {
	// Match selects requests; nil matches every request.
	Match func(*http.Request) bool
	// Times is how many matching requests the rule applies to; 0 means
	// every one.
	Times int
	// Faults are applied together to each matching request.
	Faults []Fault

	used int
}

// BlobGETs matches GET requests for registry blobs (/v2/NAME/blobs/DIGEST).
func BlobGETs(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/")
}

// PathSuffix matches requests whose path ends with s, e.g. a digest.
func PathSuffix(s string) func(*http.Request) bool {
	return func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, s) }
}

// Entry is one request the proxy handled.
type Entry struct {
	Method, Path, Range string
	Status              int
	Bytes               int64 // body bytes sent to the client
}

// Proxy is a running fault proxy. Its methods are safe for concurrent use.
type Proxy struct {
	// URL is the proxy's base URL, e.g. "http://127.0.0.1:41234".
	URL string

	srv       *httptest.Server
	target    *url.URL
	transport *http.Transport

	mu    sync.Mutex
	rules []*Rule
	log   []Entry

	requests    atomic.Int64
	bytes       atomic.Int64
	inFlight    atomic.Int64
	maxInFlight atomic.Int64
	auths       atomic.Int64
}

// New starts a proxy in front of target (a base URL such as an httptest
// server's) and stops it when the test ends.
func New(tb testing.TB, target string) *Proxy {
	tb.Helper()
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		tb.Fatalf("faultproxy: bad target %q: %v", target, err)
	}
	p := &Proxy{
		target: u,
		// Many idle connections per host: the clients under test fetch
		// concurrently, and the default of 2 would serialize the upstream
		// side and hide overlap.
		transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true},
	}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	p.URL = p.srv.URL
	tb.Cleanup(p.Close)
	return p
}

// Close stops the proxy and drops its connections.
func (p *Proxy) Close() {
	p.srv.CloseClientConnections()
	p.srv.Close()
	p.transport.CloseIdleConnections()
}

// OtherHostURL is the proxy's base URL spelled with the host name
// "localhost" instead of its IP address: the same server under another
// host name.
func (p *Proxy) OtherHostURL() string {
	return strings.Replace(p.URL, "127.0.0.1", "localhost", 1)
}

// Host returns the proxy's host:port.
func (p *Proxy) Host() string { return strings.TrimPrefix(p.URL, "http://") }

// Add appends a rule.
func (p *Proxy) Add(r Rule) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = append(p.rules, &r)
}

// ClearRules removes every rule.
func (p *Proxy) ClearRules() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = nil
}

// Requests is the number of requests handled.
func (p *Proxy) Requests() int64 { return p.requests.Load() }

// BytesSent is the number of response body bytes sent to clients.
func (p *Proxy) BytesSent() int64 { return p.bytes.Load() }

// InFlight is the number of requests being handled now.
func (p *Proxy) InFlight() int64 { return p.inFlight.Load() }

// MaxInFlight is the largest number of requests handled at once.
func (p *Proxy) MaxInFlight() int64 { return p.maxInFlight.Load() }

// AuthorizationsSeen is the number of requests that arrived with an
// Authorization header.
func (p *Proxy) AuthorizationsSeen() int64 { return p.auths.Load() }

// Log returns the requests handled so far, in the order they finished.
func (p *Proxy) Log() []Entry {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Entry(nil), p.log...)
}

// ResetStats zeroes the counters and the log (rules stay).
func (p *Proxy) ResetStats() {
	p.mu.Lock()
	p.log = nil
	p.mu.Unlock()
	p.requests.Store(0)
	p.bytes.Store(0)
	p.maxInFlight.Store(p.inFlight.Load())
	p.auths.Store(0)
}

// planFor gathers the faults of the matching rules and uses them up.
func (p *Proxy) planFor(r *http.Request) plan {
	pl := plan{cutAfter: -1, truncate: -1, flipAt: -1}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, rule := range p.rules {
		if rule.Times > 0 && rule.used >= rule.Times {
			continue
		}
		if rule.Match != nil && !rule.Match(r) {
			continue
		}
		rule.used++
		for _, f := range rule.Faults {
			f.apply(&pl)
		}
	}
	return pl
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	n := p.inFlight.Add(1)
	for {
		m := p.maxInFlight.Load()
		if n <= m || p.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	if r.Header.Get("Authorization") != "" {
		p.auths.Add(1)
	}
	e := Entry{Method: r.Method, Path: r.URL.Path, Range: r.Header.Get("Range")}
	defer func() {
		p.inFlight.Add(-1)
		p.mu.Lock()
		p.log = append(p.log, e)
		p.mu.Unlock()
	}()

	pl := p.planFor(r)
	if pl.delay > 0 {
		select {
		case <-time.After(pl.delay):
		case <-r.Context().Done():
			e.Status = -1
			return
		}
	}
	switch {
	case pl.status != 0:
		if pl.retryAfter != "" {
			w.Header().Set("Retry-After", pl.retryAfter)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(pl.status)
		body := fmt.Sprintf(`{"errors":[{"code":%q,"message":"injected %d"}]}`, errorCode(pl.status), pl.status)
		io.WriteString(w, body)
		e.Status = pl.status
		return
	case pl.redirect != nil:
		loc := pl.redirect.OtherHostURL() + r.URL.RequestURI()
		http.Redirect(w, r, loc, http.StatusTemporaryRedirect)
		e.Status = http.StatusTemporaryRedirect
		return
	}

	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL.Scheme, out.URL.Host = p.target.Scheme, p.target.Host
	out.Host = p.target.Host
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	resp, err := p.transport.RoundTrip(out)
	if err != nil {
		e.Status = http.StatusBadGateway
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		if isHop(k) {
			continue
		}
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	base := int64(0)
	if resp.StatusCode == http.StatusPartialContent {
		base = rangeStart(resp.Header.Get("Content-Range"))
	}
	if pl.truncate >= 0 && (resp.ContentLength < 0 || pl.truncate < resp.ContentLength) {
		w.Header().Set("Content-Length", strconv.FormatInt(pl.truncate, 10))
	}
	e.Status = resp.StatusCode
	w.WriteHeader(resp.StatusCode)

	cut := p.copyBody(w, r, resp.Body, pl, base, &e.Bytes)
	if cut {
		// Flush what was written, then abort: the server closes the
		// connection without finishing the body, as a network failure
		// would.
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		panic(http.ErrAbortHandler)
	}
}

// copyBody streams body to w through the body faults. It reports whether
// the connection must be cut.
func (p *Proxy) copyBody(w http.ResponseWriter, r *http.Request, body io.Reader, pl plan, base int64, sent *int64) (cut bool) {
	chunk := 32 << 10
	if pl.chunk > 0 {
		chunk = pl.chunk
	}
	buf := make([]byte, chunk)
	flusher, _ := w.(http.Flusher)
	var off int64 // body bytes sent so far
	for {
		want := int64(len(buf))
		if pl.cutAfter >= 0 {
			if off >= pl.cutAfter {
				return true
			}
			want = min(want, pl.cutAfter-off)
		}
		if pl.truncate >= 0 {
			if off >= pl.truncate {
				return false
			}
			want = min(want, pl.truncate-off)
		}
		n, rerr := io.ReadFull(body, buf[:want])
		if n > 0 {
			b := buf[:n]
			if k := pl.flipAt - base - off; pl.flipAt >= 0 && k >= 0 && k < int64(n) {
				b[k] ^= 0xff
			}
			wn, werr := w.Write(b)
			off += int64(wn)
			*sent += int64(wn)
			p.bytes.Add(int64(wn))
			if werr != nil {
				return false
			}
			if pl.interval > 0 {
				if flusher != nil {
					flusher.Flush()
				}
				select {
				case <-time.After(pl.interval):
				case <-r.Context().Done():
					return false
				}
			}
		}
		if rerr != nil {
			return false
		}
	}
}

// errorCode is the distribution-spec error code a registry would send with
// status, so clients that parse error bodies classify injected failures as
// they would real ones.
func errorCode(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "UNAUTHORIZED"
	case http.StatusForbidden:
		return "DENIED"
	case http.StatusNotFound:
		return "BLOB_UNKNOWN"
	case http.StatusTooManyRequests:
		return "TOOMANYREQUESTS"
	}
	return "UNAVAILABLE"
}

var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func isHop(k string) bool {
	for _, h := range hopHeaders {
		if http.CanonicalHeaderKey(k) == h {
			return true
		}
	}
	return false
}

// rangeStart parses the start of "bytes START-END/TOTAL"; 0 if malformed.
func rangeStart(h string) int64 {
	rest, ok := strings.CutPrefix(h, "bytes ")
	if !ok {
		return 0
	}
	s, _, _ := strings.Cut(rest, "-")
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0
	}
	return n
}
