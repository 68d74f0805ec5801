package faultproxy_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/ocifetch/ocifetch/internal/testutil/faultproxy"
)

const blobPath = "/v2/test/blobs/sha256:0123"

// upstream serves one blob of size n with Range support.
func upstream(t *testing.T, n int) ([]byte, *httptest.Server) {
	t.Helper()
	data := make([]byte, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != blobPath {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	}))
	t.Cleanup(srv.Close)
	return data, srv
}

func get(t *testing.T, url, rangeHdr string, hdr ...string) (*http.Response, []byte, error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if rangeHdr != "" {
		req.Header.Set("Range", rangeHdr)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func TestPassThroughCountsBytesAndKeepsRanges(t *testing.T) {
	t.Parallel()
	data, up := upstream(t, 100_000)
	p := faultproxy.New(t, up.URL)
	resp, b, err := get(t, p.URL+blobPath, "")
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(b, data) {
		t.Fatalf("plain GET: status %v err %v equal %v", resp.StatusCode, err, bytes.Equal(b, data))
	}
	resp, b, err = get(t, p.URL+blobPath, "bytes=1000-")
	if err != nil || resp.StatusCode != http.StatusPartialContent || !bytes.Equal(b, data[1000:]) {
		t.Fatalf("ranged GET: status %v err %v", resp.StatusCode, err)
	}
	if got, want := p.BytesSent(), int64(2*len(data)-1000); got != want {
		t.Errorf("BytesSent = %d, want %d", got, want)
	}
	if p.Requests() != 2 || len(p.Log()) != 2 || p.Log()[1].Range != "bytes=1000-" {
		t.Errorf("requests %d log %+v", p.Requests(), p.Log())
	}
}

func TestCutAfterDropsTheConnection(t *testing.T) {
	t.Parallel()
	data, up := upstream(t, 100_000)
	p := faultproxy.New(t, up.URL)
	p.Add(faultproxy.Rule{Match: faultproxy.BlobGETs, Times: 1, Faults: []faultproxy.Fault{faultproxy.CutAfter(40_000)}})
	_, b, err := get(t, p.URL+blobPath, "")
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v, want unexpected EOF", err)
	}
	if len(b) != 40_000 || !bytes.Equal(b, data[:40_000]) {
		t.Fatalf("got %d bytes before the cut, want the first 40000", len(b))
	}
	// Times: 1, so the next request is clean.
	if _, b, err := get(t, p.URL+blobPath, ""); err != nil || len(b) != len(data) {
		t.Fatalf("second GET: %d bytes, %v", len(b), err)
	}
}

func TestTruncateEndsCleanlyButShort(t *testing.T) {
	t.Parallel()
	data, up := upstream(t, 100_000)
	p := faultproxy.New(t, up.URL)
	p.Add(faultproxy.Rule{Faults: []faultproxy.Fault{faultproxy.Truncate(1234)}})
	resp, b, err := get(t, p.URL+blobPath, "")
	if err != nil || resp.ContentLength != 1234 || !bytes.Equal(b, data[:1234]) {
		t.Fatalf("err %v, content-length %d, %d bytes", err, resp.ContentLength, len(b))
	}
}

func TestFlipByteCountsFromTheStartOfTheResource(t *testing.T) {
	t.Parallel()
	data, up := upstream(t, 100_000)
	p := faultproxy.New(t, up.URL)
	p.Add(faultproxy.Rule{Faults: []faultproxy.Fault{faultproxy.FlipByte(50_000)}})
	for _, tc := range []struct {
		rng   string
		start int
	}{{"", 0}, {"bytes=40000-", 40_000}, {"bytes=60000-", 60_000}} {
		_, b, err := get(t, p.URL+blobPath, tc.rng)
		if err != nil {
			t.Fatal(err)
		}
		want := bytes.Clone(data[tc.start:])
		if tc.start <= 50_000 {
			want[50_000-tc.start] ^= 0xff
		}
		if !bytes.Equal(b, want) {
			t.Errorf("range %q: body differs from the expected flip", tc.rng)
		}
	}
}

func TestStatusWithRetryAfterThenRecovers(t *testing.T) {
	t.Parallel()
	data, up := upstream(t, 1000)
	p := faultproxy.New(t, up.URL)
	p.Add(faultproxy.Rule{Match: faultproxy.BlobGETs, Times: 2, Faults: []faultproxy.Fault{faultproxy.Status(http.StatusTooManyRequests, "1")}})
	for i := 0; i < 2; i++ {
		resp, _, err := get(t, p.URL+blobPath, "")
		if err != nil || resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" {
			t.Fatalf("try %d: %v %v %q", i, resp.StatusCode, err, resp.Header.Get("Retry-After"))
		}
	}
	resp, b, err := get(t, p.URL+blobPath, "")
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(b, data) {
		t.Fatalf("after the burst: %v %v", resp.StatusCode, err)
	}
}

func TestTrickleIsSlow(t *testing.T) {
	t.Parallel()
	_, up := upstream(t, 10_000)
	p := faultproxy.New(t, up.URL)
	p.Add(faultproxy.Rule{Faults: []faultproxy.Fault{faultproxy.Trickle(1000, 10*time.Millisecond)}})
	start := time.Now()
	if _, b, err := get(t, p.URL+blobPath, ""); err != nil || len(b) != 10_000 {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 90*time.Millisecond {
		t.Errorf("10 chunks 10ms apart took only %v", d)
	}
}

func TestRedirectGoesToAnotherHostThatRecordsAuthorization(t *testing.T) {
	t.Parallel()
	data, up := upstream(t, 5000)
	storage := faultproxy.New(t, up.URL)
	p := faultproxy.New(t, up.URL)
	p.Add(faultproxy.Rule{Match: faultproxy.BlobGETs, Faults: []faultproxy.Fault{faultproxy.Redirect(storage)}})

	resp, b, err := get(t, p.URL+blobPath, "", "Authorization", "Bearer secret")
	if err != nil || !bytes.Equal(b, data) {
		t.Fatalf("redirected GET: %v", err)
	}
	if resp.Request.URL.Host == p.Host() {
		t.Fatalf("not redirected")
	}
	// Go's client drops Authorization when the host name changes; the
	// storage proxy sees that.
	if p.AuthorizationsSeen() != 1 || storage.AuthorizationsSeen() != 0 {
		t.Errorf("authorizations: registry %d, storage %d", p.AuthorizationsSeen(), storage.AuthorizationsSeen())
	}
	if storage.BytesSent() != int64(len(data)) || p.BytesSent() == int64(len(data)) {
		t.Errorf("bytes: registry %d storage %d", p.BytesSent(), storage.BytesSent())
	}
}

func TestMaxInFlightCountsConcurrentRequests(t *testing.T) {
	t.Parallel()
	_, up := upstream(t, 1000)
	p := faultproxy.New(t, up.URL)
	p.Add(faultproxy.Rule{Faults: []faultproxy.Fault{faultproxy.Delay(100 * time.Millisecond)}})
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := get(t, p.URL+blobPath, ""); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if got := p.MaxInFlight(); got != 3 {
		t.Errorf("MaxInFlight = %d, want 3", got)
	}
	if p.InFlight() != 0 {
		t.Errorf("InFlight = %d after all finished", p.InFlight())
	}
	p.ResetStats()
	if p.MaxInFlight() != 0 || p.Requests() != 0 || p.BytesSent() != 0 {
		t.Errorf("ResetStats left %d %d %d", p.MaxInFlight(), p.Requests(), p.BytesSent())
	}
}

func TestRulesCombineAndMatchSelectively(t *testing.T) {
	t.Parallel()
	data, up := upstream(t, 10_000)
	p := faultproxy.New(t, up.URL)
	p.Add(faultproxy.Rule{Match: faultproxy.PathSuffix("nomatch"), Faults: []faultproxy.Fault{faultproxy.Status(500, "")}})
	p.Add(faultproxy.Rule{Faults: []faultproxy.Fault{faultproxy.FlipByte(0)}})
	p.Add(faultproxy.Rule{Faults: []faultproxy.Fault{faultproxy.CutAfter(10)}})
	_, b, err := get(t, p.URL+blobPath, "")
	if !errors.Is(err, io.ErrUnexpectedEOF) || len(b) != 10 || b[0] != data[0]^0xff || !bytes.Equal(b[1:], data[1:10]) {
		t.Fatalf("combined faults: %v, %s", err, fmt.Sprint(b))
	}
}
