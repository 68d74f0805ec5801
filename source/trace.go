package source

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"time"
)

// Trace is one HTTP request as WithTrace reports it, once it is over: when
// its body was read to the end or closed, or when it failed.
type Trace struct {
	// Method and URL of the request; the URL without user info, query or
	// fragment, which can carry tokens (see Redact).
	Method, URL string
	// Status is the response's status code, 0 when there was none.
	Status int
	// Err is why the request failed, nil when a response came.
	Err error
	// Header is the time until the response's headers; Duration until
	// the end of its body (or the failure).
	Header, Duration time.Duration
	// Bytes counts the body bytes read.
	Bytes int64
	// Remote is the address that answered (ip:port), empty when a proxy
	// or a transport of the caller's connected.
	Remote string
	// Reused says the connection carried an earlier request; TLS that it
	// is encrypted.
	Reused, TLS bool
}

// WithTrace calls fn for every HTTP request a registry source makes: the
// ping, token exchanges, manifests, blobs, each redirect hop, and the
// foreign-layer URLs the fetch stage follows for it. It is what the CLI's
// --debug prints. fn may be called from several goroutines at once and
// must be quick; it must not keep the Trace's Err beyond the call if it
// does not own it.
func WithTrace(fn func(Trace)) Option {
	return func(o *options) error {
		o.trace = fn
		return nil
	}
}

// traced sends req through rt and reports it to fn once it is over. It
// sits nearest the wire (in the guard), so it sees every request and every
// redirect hop, including those go-containerregistry makes.
func traced(fn func(Trace), rt http.RoundTripper, req *http.Request) (*http.Response, error) {
	if fn == nil {
		return rt.RoundTrip(req)
	}
	t := &traceBody{fn: fn, start: time.Now(), tr: Trace{Method: req.Method, URL: Redact(req.URL)}}
	ct := &httptrace.ClientTrace{
		// A connection made for the request: its address even if TLS
		// then fails on it.
		ConnectDone: func(_, addr string, err error) {
			if err == nil {
				t.mu.Lock()
				if t.tr.Remote == "" {
					t.tr.Remote = addr
				}
				t.mu.Unlock()
			}
		},
		GotConn: func(ci httptrace.GotConnInfo) {
			if ci.Conn != nil && ci.Conn.RemoteAddr() != nil {
				t.mu.Lock()
				t.tr.Remote, t.tr.Reused = ci.Conn.RemoteAddr().String(), ci.Reused
				_, t.tr.TLS = ci.Conn.(*tls.Conn)
				t.mu.Unlock()
			}
		},
	}
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), ct))
	resp, err := rt.RoundTrip(req)
	t.mu.Lock()
	t.tr.Header = time.Since(t.start)
	t.mu.Unlock()
	if err != nil {
		t.tr.Err = err
		t.report()
		return nil, err
	}
	t.tr.Status = resp.StatusCode
	if resp.Body == nil || resp.Body == http.NoBody {
		t.report()
		return resp, nil
	}
	t.body = resp.Body
	resp.Body = t
	return resp, nil
}

// traceBody counts a response body and reports the request when the body
// ends or is closed, whichever comes first.
type traceBody struct {
	fn    func(Trace)
	start time.Time
	body  io.ReadCloser
	n     atomic.Int64
	once  sync.Once
	mu    sync.Mutex // guards tr against the GotConn callback
	tr    Trace
}

func (t *traceBody) Read(p []byte) (int, error) {
	n, err := t.body.Read(p)
	t.n.Add(int64(n))
	if err == io.EOF {
		t.report()
	}
	return n, err
}

func (t *traceBody) Close() error {
	err := t.body.Close()
	t.report()
	return err
}

func (t *traceBody) report() {
	t.once.Do(func() {
		t.mu.Lock()
		tr := t.tr
		t.mu.Unlock()
		tr.Duration, tr.Bytes = time.Since(t.start), t.n.Load()
		t.fn(tr)
	})
}
