package source_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/testutil"
	"github.com/ocifetch/ocifetch/internal/testutil/hostile"
	"github.com/ocifetch/ocifetch/internal/testutil/testcerts"
	"github.com/ocifetch/ocifetch/resolve"
	"github.com/ocifetch/ocifetch/source"
)

func localhost(hostport string) string {
	return strings.Replace(hostport, "127.0.0.1", "localhost", 1)
}

// The User-Agent the registry, the token server and the blob storage a
// redirect leads to see: "ocifetch/VERSION" by default, the caller's with
// WithUserAgent, on every request (go-containerregistry's transport used
// to put its own nearest the wire).
func TestUserAgentOnEveryRequest(t *testing.T) {
	t.Parallel()
	if ua := source.DefaultUserAgent(); !regexp.MustCompile(`^ocifetch/\S+$`).MatchString(ua) {
		t.Fatalf("DefaultUserAgent() = %q", ua)
	}
	for _, tc := range []struct {
		name string
		opts []source.Option
		want string
	}{
		{"default", nil, source.DefaultUserAgent()},
		{"WithUserAgent", []source.Option{source.WithUserAgent("engine/1.2 (test)")}, "engine/1.2 (test)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref, reg, tokens, storage := redirectingRegistry(t, "ua/app")

			res := mustResolve(t, ref, tc.opts...)
			if _, err := readLayer(t, res, 1); err != nil {
				t.Fatal(err)
			}
			seen := map[string][]string{}
			for name, reqs := range map[string][]hostile.Request{"registry": reg.Requests(), "token server": tokens.Requests(), "storage": storage.Requests()} {
				if len(reqs) == 0 {
					t.Errorf("the %s saw no request", name)
				}
				for _, q := range reqs {
					if ua := q.Header.Values("User-Agent"); len(ua) != 1 || ua[0] != tc.want {
						seen[name] = append(seen[name], strings.Join(ua, " | "))
					}
				}
			}
			if len(seen) > 0 {
				t.Fatalf("User-Agent other than %q: %v", tc.want, seen)
			}
			// The realm is checked on the answer to the one ping, which
			// go-containerregistry's handshake reuses: /v2/ is asked once.
			if n := reg.Count(hostile.Ping, ""); n != 1 {
				t.Fatalf("%d pings, want 1", n)
			}
		})
	}
}

// A token realm on another host:port than the registry's gets
// credentials only over HTTPS to a public address, or when the user
// allowed the host; the registry here is 127.0.0.1:P1 and the realm
// localhost:P2, a host name (go-containerregistry only refused IP
// literals, so this realm used to receive the credentials).
func TestRealmOnAnotherLoopbackHostGetsNoCredentials(t *testing.T) {
	t.Parallel()
	creds := source.WithKeychain(staticKeychain{"alice", "s3cret"})
	certs := testcerts.New(t, t.TempDir())

	for _, tc := range []struct {
		name    string
		tls     bool
		opts    []source.Option
		ok      bool
		creds   bool // the token server must see them
		message string
	}{
		{name: "plain HTTP realm", opts: []source.Option{creds}, message: "over plain HTTP; allow it with --allow-token-host localhost:"},
		{name: "HTTPS realm on a name for loopback", tls: true, opts: []source.Option{creds}, message: "a loopback address; allow it with --allow-token-host localhost:"},
		{name: "allowed", opts: []source.Option{creds}, ok: true, creds: true},
		{name: "anonymous", opts: nil, ok: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg, ref, _ := image(t, "realm/app")
			var tsOpts []hostile.Option
			if tc.tls {
				tsOpts = append(tsOpts, hostile.WithTLS(certs.ServerConfig(false)))
			}
			tokens := hostile.NewTokenServer(t, tsOpts...)
			realm := tokens.Realm("localhost")
			reg.RequireToken(realm, tokens.Token)
			opts := tc.opts
			if tc.creds {
				opts = append(opts, source.WithAllowTokenHost("localhost:"+tokens.Port))
			}
			hosts := t.TempDir()
			// The CA makes the HTTPS token server trusted, so that only
			// its address can be why credentials are refused.
			testutil.WriteHostsFile(t, hosts, reg.Host, "server = \"http://"+reg.Host+"\"\nca = \""+certs.CAFile+"\"\n")
			opts = append(opts, source.WithHostsDir(hosts), source.WithWarnings(nil))
			_, err := resolveWith(context.Background(), ref, append(quick, opts...)...)
			switch {
			case tc.ok && err != nil:
				t.Fatal(err)
			case !tc.ok:
				wantKind(t, err, errdefs.ErrUnauthorized)
				if !errors.Is(err, source.ErrRefused) || !strings.Contains(err.Error(), tc.message) {
					t.Fatalf("err = %v; want a refusal saying %q", err, tc.message)
				}
			}
			got := authHeaders(tokens.Requests())
			if tc.creds != (len(got) > 0) {
				t.Fatalf("token server saw credentials %v, want them: %v", got, tc.creds)
			}
			if tc.creds && !strings.HasPrefix(tokens.Requests()[0].Header.Get("Authorization"), "Basic ") {
				t.Fatalf("allowed token host got %q", tokens.Requests()[0].Header.Get("Authorization"))
			}
		})
	}
}

// A registry that counts as public (the test-only option stands in for
// one on the internet) may not send the client to a loopback address,
// neither as an anonymous token realm nor as a blob redirect: blind SSRF.
// A registry that is itself on loopback may, and the redirect carries no
// Authorization.
func TestRedirectsAndRealmsToLoopback(t *testing.T) {
	t.Parallel()
	t.Run("blob redirect from a loopback registry is followed without credentials", func(t *testing.T) {
		ref, reg, _, storage := redirectingRegistry(t, "redir/app")
		res := mustResolve(t, ref)
		if _, err := readLayer(t, res, 0); err != nil {
			t.Fatal(err)
		}
		if storage.Count(hostile.Blob, "") == 0 {
			t.Fatal("the redirect was not followed")
		}
		if a := authHeaders(storage.Requests()); len(a) != 0 {
			t.Fatalf("storage got credentials: %v", a)
		}
		if len(authHeaders(reg.Requests())) == 0 {
			t.Fatal("the registry itself got no token: the test proves nothing")
		}
	})
	t.Run("blob redirect to loopback from a public registry is refused", func(t *testing.T) {
		reg, ref, img := image(t, "redir/app")
		storage := hostile.New(t)
		storage.PutImage(t, "redir/app", "v1", img)
		redirectLayers(t, reg, img, "http://"+localhost(storage.Host))
		res := mustResolve(t, ref, source.WithLoopbackAsPublic())
		_, err := readLayer(t, res, 0)
		if !errors.Is(err, source.ErrRefused) || !strings.Contains(err.Error(), "127.0.0.1") || !strings.Contains(err.Error(), "loopback") {
			t.Fatalf("err = %v; want a refusal naming the loopback address", err)
		}
		if n := len(storage.Requests()); n != 0 {
			t.Fatalf("the loopback storage got %d requests", n)
		}
	})
	t.Run("anonymous realm on loopback for a public registry is refused", func(t *testing.T) {
		reg, ref, _ := image(t, "realm/app")
		tokens := hostile.NewTokenServer(t)
		reg.RequireToken(tokens.Realm("localhost"), tokens.Token)
		_, err := resolveWith(context.Background(), ref, append(quick, source.WithLoopbackAsPublic())...)
		if !errors.Is(err, source.ErrRefused) {
			t.Fatalf("err = %v; want a refusal", err)
		}
		if n := len(tokens.Requests()); n != 0 {
			t.Fatalf("the loopback token server got %d requests", n)
		}
	})
}

// Redirects keep the first request's rules: an HTTPS registry cannot send
// a blob GET to plain HTTP on a host that is not itself allowed plain HTTP
// (checked before any connection is made); plain HTTP to loopback is.
func TestHTTPSRedirectIsNotDowngraded(t *testing.T) {
	t.Parallel()
	certs := testcerts.New(t, t.TempDir())
	reg, ref, img := image(t, "tls/app", hostile.WithTLS(certs.ServerConfig(false)))
	hosts := t.TempDir()
	testutil.WriteHostsFile(t, hosts, reg.Host, "server = \"https://"+reg.Host+"\"\nca = \""+certs.CAFile+"\"\n")
	opts := []source.Option{source.WithHostsDir(hosts)}

	redirectLayers(t, reg, img, "http://storage.invalid")
	res := mustResolve(t, ref, opts...)
	_, err := readLayer(t, res, 0)
	if !errors.Is(err, source.ErrRefused) || !strings.Contains(err.Error(), "plain HTTP at storage.invalid") {
		t.Fatalf("err = %v; want the downgrade refused", err)
	}

	storage := hostile.New(t)
	storage.PutImage(t, "tls/app", "v1", img)
	redirectLayers(t, reg, img, "http://"+localhost(storage.Host))
	res = mustResolve(t, ref, opts...)
	if _, err := readLayer(t, res, 0); err != nil {
		t.Fatalf("a redirect to plain HTTP on loopback: %v", err)
	}
}

// A manifest trickled a byte at a time ends in network once every attempt
// ran into the per-document deadline (scaled down here; with the defaults,
// 60 s × 3 attempts plus backoff, see TestDefaultsEndATrickledDocument...).
// The HEAD that answered at once is the first of the three attempts.
func TestTrickledManifestEndsInNetwork(t *testing.T) {
	t.Parallel()
	reg, ref, _ := image(t, "slow/app")
	reg.Intercept(func(w http.ResponseWriter, r *http.Request, q hostile.Request) bool {
		if q.Kind != hostile.Manifest || r.Method != http.MethodGet {
			return false
		}
		w.Header().Set("Content-Length", "2000")
		w.WriteHeader(http.StatusOK)
		for i := 0; i < 2000; i++ {
			if _, err := w.Write([]byte("{")); err != nil {
				return true
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return true
			case <-time.After(50 * time.Millisecond):
			}
		}
		return true
	})
	start := time.Now()
	_, err := resolveWith(context.Background(), ref, append(quick, source.WithDeadlines(source.Deadlines{Document: 300 * time.Millisecond, MinRate: 1024, RateWindow: time.Second}))...)
	elapsed := time.Since(start)
	wantKind(t, err, errdefs.ErrNetwork)
	if !errors.Is(err, source.ErrDocumentDeadline) {
		t.Fatalf("err = %v; want the document deadline", err)
	}
	if n := reg.Count(hostile.Manifest, ""); n != 1+2 { // the HEAD, then two GETs
		t.Errorf("%d manifest requests, want a HEAD and 2 GETs: %+v", n, reg.Requests())
	}
	if elapsed > 5*time.Second {
		t.Errorf("took %v", elapsed)
	}
}

// The config is read while resolving with the same retries as manifests:
// one 503 used to fail the pull.
func TestConfig503IsRetried(t *testing.T) {
	t.Parallel()
	reg, ref, img := image(t, "cfg/app")
	cfg, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	failed := 0
	reg.Intercept(func(w http.ResponseWriter, r *http.Request, q hostile.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		if q.Kind == hostile.Blob && q.Ref == cfg.String() && failed == 0 {
			failed++
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	res := mustResolve(t, ref, quick...)
	if got := res.Config.Descriptor.Digest.String(); got != cfg.String() {
		t.Fatalf("config %s", got)
	}
	if n := reg.Count(hostile.Blob, cfg.String()); n != 2 {
		t.Fatalf("%d config GETs, want the 503 and a retry", n)
	}
}

// A Source whose first call was cancelled while it connected works for
// the next call: the connection failure is not kept.
func TestReusedSourceAfterACancelledCall(t *testing.T) {
	t.Parallel()
	reg, ref, _ := image(t, "reuse/app")
	var mu sync.Mutex
	stall := true
	reg.Intercept(func(w http.ResponseWriter, r *http.Request, q hostile.Request) bool {
		mu.Lock()
		s := stall
		mu.Unlock()
		if q.Kind == hostile.Ping && s {
			<-r.Context().Done()
			return true
		}
		return false
	})
	src, err := source.OpenRegistry(ref, append(quick, anonymous)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	go func() {
		time.Sleep(100 * time.Millisecond)
		cancel()
	}()
	_, err = src.Root(ctx)
	wantKind(t, err, errdefs.ErrCanceled)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v; want it to match context.Canceled", err)
	}
	mu.Lock()
	stall = false
	mu.Unlock()
	if _, err := src.Root(context.Background()); err != nil {
		t.Fatalf("the reused Source: %v", err)
	}
}

// Cancelling while a document is read is kind canceled and matches
// context.Canceled, from resolve as from the source.
func TestCancelDuringResolveIsCanceled(t *testing.T) {
	t.Parallel()
	reg, ref, _ := image(t, "cancel/app")
	entered := make(chan struct{}, 8)
	reg.Intercept(func(w http.ResponseWriter, r *http.Request, q hostile.Request) bool {
		if q.Kind == hostile.Manifest && r.Method == http.MethodGet {
			entered <- struct{}{}
			<-r.Context().Done()
			return true
		}
		return false
	})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-entered
		cancel()
	}()
	_, err := resolveWith(ctx, ref)
	wantKind(t, err, errdefs.ErrCanceled)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

// A credentials file that exists but cannot be parsed is the user's to
// fix: invalid_argument, whether given with --authfile or found in
// $DOCKER_CONFIG.
func TestMalformedCredentialsFileIsInvalidArgument(t *testing.T) {
	reg, ref, _ := image(t, "creds/app")
	bad := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(bad, []byte(`{"auths": {`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := resolve.Resolve(context.Background(), ref, resolve.WithAuthfile(bad))
	wantKind(t, err, errdefs.ErrInvalidArgument)

	t.Setenv("DOCKER_CONFIG", filepath.Dir(bad))
	t.Setenv("HOME", t.TempDir())
	_, err = resolve.Resolve(context.Background(), ref) // the default keychain
	wantKind(t, err, errdefs.ErrInvalidArgument)
	if !strings.Contains(err.Error(), bad) {
		t.Fatalf("err = %v; want it to name %s", err, bad)
	}
	if n := len(reg.Requests()); n != 0 {
		t.Fatalf("%d requests with unreadable credentials", n)
	}
}

// A blob redirect to a URL with user info is refused: Go's client would
// send it as Basic credentials to the new host (and it was reported as a
// token server refusing credentials, suggesting --allow-token-host).
func TestRedirectWithUserInfoIsRefused(t *testing.T) {
	t.Parallel()
	reg, ref, img := image(t, "ui/app")
	storage := hostile.New(t)
	storage.PutImage(t, "ui/app", "v1", img)
	redirectLayers(t, reg, img, "http://user:secret@"+storage.Host)
	res := mustResolve(t, ref)
	_, err := readLayer(t, res, 0)
	if !errors.Is(err, source.ErrRefused) || !strings.Contains(err.Error(), "user info") ||
		strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "allow-token-host") {
		t.Fatalf("err = %v; want the redirect refused, naming no secret and no --allow-token-host", err)
	}
	for _, q := range storage.Requests() {
		if q.Header.Get("Authorization") != "" {
			t.Fatal("the redirect target received credentials")
		}
	}
}
