package source_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/ocifetch/ocifetch/fetch"
	"github.com/ocifetch/ocifetch/internal/testutil/hostile"
	"github.com/ocifetch/ocifetch/source"
)

// WithTrace sees every request a pull makes, nearest the wire: the ping,
// the manifest lookup and reads, the config and each layer, with the
// status, the body's size, the address that answered, and URLs without
// their query (a storage redirect's token).
func TestTraceSeesEveryRequest(t *testing.T) {
	t.Parallel()
	reg, ref, img := image(t, "trace")
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	// Layer 1 is redirected to a URL whose query holds a secret.
	reg.Intercept(func(w http.ResponseWriter, r *http.Request, q hostile.Request) bool {
		if q.Kind == hostile.Blob && q.Ref == ld.String() && r.URL.Query().Get("token") == "" {
			http.Redirect(w, r, r.URL.Path+"?token=s3cret", http.StatusTemporaryRedirect)
			return true
		}
		return false
	})
	var mu sync.Mutex
	var traces []source.Trace
	res := mustResolve(t, ref, source.WithTrace(func(tr source.Trace) {
		mu.Lock()
		traces = append(traces, tr)
		mu.Unlock()
	}))
	store, err := fetch.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fetch.Pull(context.Background(), res, store); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	seen := map[string]source.Trace{}
	for _, tr := range traces {
		if strings.Contains(tr.URL, "s3cret") || strings.Contains(tr.URL, "?") {
			t.Errorf("a trace shows the query: %+v", tr)
		}
		if tr.Remote != reg.Host && (tr.Err == nil || tr.Remote != "") {
			t.Errorf("%s %s answered by %q, want %s", tr.Method, tr.URL, tr.Remote, reg.Host)
		}
		if tr.Duration < tr.Header || tr.Duration <= 0 {
			t.Errorf("%s %s: header after %v, end after %v", tr.Method, tr.URL, tr.Header, tr.Duration)
		}
		seen[tr.Method+" "+strings.TrimPrefix(tr.URL, reg.URL)+" "+http.StatusText(tr.Status)] = tr
	}
	cfg, _ := img.ConfigName()
	want := []string{
		"GET /v2/ OK",
		"HEAD /v2/trace/manifests/v1 OK",
		"GET /v2/trace/blobs/" + cfg.String() + " OK",
		"GET /v2/trace/blobs/" + ld.String() + " Temporary Redirect",
		"GET /v2/trace/blobs/" + ld.String() + " OK",
	}
	for _, w := range want {
		if _, ok := seen[w]; !ok {
			t.Errorf("no trace of %q; traces: %v", w, keys(seen))
		}
	}
	if tr := seen["GET /v2/trace/blobs/"+ld.String()+" OK"]; tr.Bytes != mustSize(t, layers[0]) || tr.Err != nil {
		t.Errorf("layer 1: %d bytes, err %v; want %d", tr.Bytes, tr.Err, mustSize(t, layers[0]))
	}

	// A request that fails is traced with its error.
	reg.Close()
	var failed []source.Trace
	_, err = resolveWith(context.Background(), ref, append(quick, source.WithTrace(func(tr source.Trace) { failed = append(failed, tr) }))...)
	if err == nil || len(failed) == 0 || failed[0].Err == nil || failed[0].Status != 0 {
		t.Errorf("a registry that is down: err %v, traces %+v", err, failed)
	}
}

func keys(m map[string]source.Trace) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func mustSize(t *testing.T, l interface{ Size() (int64, error) }) int64 {
	t.Helper()
	n, err := l.Size()
	if err != nil {
		t.Fatal(err)
	}
	return n
}
