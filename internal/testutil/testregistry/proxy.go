package testregistry

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// RecordedRequest is one request that went through a CountingProxy.
type RecordedRequest struct {
	Method string
	Path   string
	// Query is the raw query string, without "?".
	Query string
	// HasAuthorization is true when the request carried an Authorization
	// header.
	HasAuthorization bool
	// Status is the status of the answer (502 when the target was down).
	Status int
}

// CountingProxy is a loopback reverse proxy in front of a URL that records
// every request, so tests can assert which host a client asked and for
// what, and that can be closed to simulate a host that is down.
//
// It keeps the client's Host header, so a registry behind it builds its
// upload Location URLs with the proxy's address and the client stays on the
// proxy for the whole push.
type CountingProxy struct {
	srv *httptest.Server

	mu   sync.Mutex
	reqs []RecordedRequest
}

// NewCountingProxy starts a proxy in front of target (e.g. Registry.URL)
// and registers t.Cleanup to close it.
func NewCountingProxy(t testing.TB, target string) *CountingProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatalf("testregistry: proxy target: %v", err)
		return nil
	}
	p := &CountingProxy{}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host
		},
		// Quietly: a target that is down is what some tests are about.
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			http.Error(w, "testregistry proxy: "+err.Error(), http.StatusBadGateway)
		},
	}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		rp.ServeHTTP(sw, r)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		p.mu.Lock()
		p.reqs = append(p.reqs, RecordedRequest{
			Method:           r.Method,
			Path:             r.URL.Path,
			Query:            r.URL.RawQuery,
			HasAuthorization: r.Header.Get("Authorization") != "",
			Status:           sw.status,
		})
		p.mu.Unlock()
	}))
	t.Cleanup(p.Close)
	return p
}

// URL returns "http://127.0.0.1:PORT".
func (p *CountingProxy) URL() string { return p.srv.URL }

// Host returns "127.0.0.1:PORT".
func (p *CountingProxy) Host() string { return p.srv.Listener.Addr().String() }

// Count returns how many requests had a path containing pathSubstring
// ("" counts all).
func (p *CountingProxy) Count(pathSubstring string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, r := range p.reqs {
		if strings.Contains(r.Path, pathSubstring) {
			n++
		}
	}
	return n
}

// Requests returns the requests so far, in the order they completed.
func (p *CountingProxy) Requests() []RecordedRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]RecordedRequest(nil), p.reqs...)
}

// Reset forgets the requests so far.
func (p *CountingProxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reqs = nil
}

// Close stops the proxy and drops open connections; afterwards its port
// refuses connections like a host that is down. It may be called more
// than once.
func (p *CountingProxy) Close() {
	p.srv.CloseClientConnections()
	p.srv.Close()
}

// statusWriter remembers the status code written through it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 { // not an informational 1xx
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController (used by ReverseProxy to flush)
// reach the real writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
