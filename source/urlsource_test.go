package source_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocifetch/ocifetch/source"
)

// A caller's client given for foreign layers may carry a cookie jar: its
// cookies must not reach the URL host any more than credentials do
// (CVE-2020-15157), on the first request or after a redirect.
func TestForeignURLsCarryNoCookiesFromTheCallersJar(t *testing.T) {
	body := []byte("foreign layer")
	var cookies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cookies = append(cookies, r.Header.Values("Cookie")...)
		if r.URL.Path == "/first" {
			http.Redirect(w, r, "/blob", http.StatusFound)
			return
		}
		w.Write(body)
	}))
	defer srv.Close()
	u, err := url.Parse(srv.URL + "/first")
	if err != nil {
		t.Fatal(err)
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	jar.SetCookies(u, []*http.Cookie{{Name: "session", Value: "secret", Path: "/"}})
	c := source.NewURLClient(&http.Client{Jar: jar}, map[string]bool{u.Host: true}, 1, source.NetworkOf(nil))
	desc := ocispec.Descriptor{Digest: digest.FromBytes(body), Size: int64(len(body))}
	rc, err := c.Source(u).Fetch(context.Background(), desc)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(got) != string(body) {
		t.Fatalf("read %q, %v; want %q", got, err, body)
	}
	if len(cookies) != 0 {
		t.Fatalf("the URL host received cookies %q", cookies)
	}
}
