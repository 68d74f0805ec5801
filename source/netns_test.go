package source_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/internal/testutil"
	"github.com/ocifetch/ocifetch/internal/testutil/hostile"
	"github.com/ocifetch/ocifetch/internal/testutil/netns"
	"github.com/ocifetch/ocifetch/internal/testutil/testcerts"
	"github.com/ocifetch/ocifetch/source"
)

// The address rules against real connections to non-loopback addresses,
// in a network namespace the test makes (203.0.113.x counts as public,
// 10.77.0.x is private), with token servers named through the
// namespace's own hosts file: what is judged is the address a name
// resolves to and the connection goes to, not the name.
func TestAddressRulesInANetworkNamespace(t *testing.T) {
	t.Parallel()
	if !netns.Run(t, map[string]string{
		"tokens-private.test": netns.Private2,
		"tokens-public.test":  netns.Public2,
	}) {
		return
	}
	certs := testcerts.New(t, t.TempDir(), "tokens-private.test", "tokens-public.test")
	creds := source.WithKeychain(staticKeychain{"alice", "s3cret"})

	// registry serves an image on addr over plain HTTP (allowed for it),
	// with hosts.toml trusting the test CA for token servers.
	registry := func(t *testing.T, addr string) (*hostile.Registry, string, v1.Image, []source.Option) {
		reg, ref, img := image(t, "ns/app", hostile.WithAddr(addr+":0"))
		hosts := t.TempDir()
		testutil.WriteHostsFile(t, hosts, reg.Host, "server = \"http://"+reg.Host+"\"\nca = \""+certs.CAFile+"\"\n")
		return reg, ref, img, append([]source.Option{source.WithInsecureRegistry(reg.Host), source.WithHostsDir(hosts), source.WithWarnings(nil)}, quick...)
	}

	for _, tc := range []struct {
		name      string
		registry  string
		storage   string
		followed  bool
		addrInErr string
	}{
		{"public registry, redirect to a private address", netns.Public1, netns.Private2, false, netns.Private2},
		{"public registry, redirect to loopback", netns.Public1, "127.0.0.1", false, "127.0.0.1"},
		{"public registry, redirect to a public address", netns.Public1, netns.Public2, true, ""},
		{"private registry, redirect to a private address", netns.Private1, netns.Private2, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg, ref, img, opts := registry(t, tc.registry)
			storage := hostile.New(t, hostile.WithAddr(tc.storage+":0"))
			storage.PutImage(t, "ns/app", "v1", img)
			redirectLayers(t, reg, img, "http://"+storage.Host)
			res := mustResolve(t, ref, opts...)
			_, err := readLayer(t, res, 0)
			if tc.followed {
				if err != nil {
					t.Fatal(err)
				}
				if storage.Count(hostile.Blob, "") == 0 {
					t.Fatal("the redirect was not followed")
				}
				return
			}
			if !errors.Is(err, source.ErrRefused) || !strings.Contains(err.Error(), tc.addrInErr) {
				t.Fatalf("err = %v; want a refusal naming %s", err, tc.addrInErr)
			}
			if n := len(storage.Requests()); n != 0 {
				t.Fatalf("the storage host got %d requests", n)
			}
		})
	}

	for _, tc := range []struct {
		name, realmHost string
		tls, ok         bool
		message         string
	}{
		{"credentials to a token server whose name resolves to a private address", "tokens-private.test", true, false, "a private address"},
		{"credentials to a token server on a public address over HTTPS", "tokens-public.test", true, true, ""},
		{"credentials to a public token server over plain HTTP", "tokens-public.test", false, false, "over plain HTTP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg, ref, _, opts := registry(t, netns.Public1)
			addr := netns.Public2
			if tc.realmHost == "tokens-private.test" {
				addr = netns.Private2
			}
			tsOpts := []hostile.Option{hostile.WithAddr(addr + ":0")}
			if tc.tls {
				tsOpts = append(tsOpts, hostile.WithTLS(certs.ServerConfig(false)))
			}
			tokens := hostile.NewTokenServer(t, tsOpts...)
			reg.RequireToken(tokens.Realm(tc.realmHost), tokens.Token)
			_, err := resolveWith(context.Background(), ref, append(opts, creds)...)
			got := authHeaders(tokens.Requests())
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				if len(got) == 0 {
					t.Fatal("the public token server got no credentials")
				}
				return
			}
			wantKind(t, err, errdefs.ErrUnauthorized)
			if !errors.Is(err, source.ErrRefused) || !strings.Contains(err.Error(), tc.message) ||
				!strings.Contains(err.Error(), "--allow-token-host "+net.JoinHostPort(tc.realmHost, tokens.Port)) {
				t.Fatalf("err = %v; want a refusal saying %q and naming the flag", err, tc.message)
			}
			if len(got) != 0 {
				t.Fatalf("the token server got credentials: %v", got)
			}
		})
	}
}

// Behind HTTP_PROXY the proxy dials, so the rules apply to what the host
// name resolves to here: a redirect to a private address is still refused
// (before the proxy is asked), one to a public address goes through the
// proxy, and the proxy's own private address is not held against it.
func TestAddressRulesBehindAProxy(t *testing.T) {
	if !netns.Run(t, map[string]string{"storage-private.test": netns.Private2, "storage-public.test": netns.Public2}) {
		return
	}
	var mu sync.Mutex
	var proxied []string
	proxy := &http.Server{Handler: &httputil.ReverseProxy{
		Transport: &http.Transport{}, // no proxy of its own: that would be itself
		Rewrite: func(r *httputil.ProxyRequest) {
			mu.Lock()
			proxied = append(proxied, r.In.URL.Host)
			mu.Unlock()
			r.SetURL(&url.URL{Scheme: "http", Host: r.In.URL.Host})
			r.Out.URL.Path, r.Out.URL.RawQuery = r.In.URL.Path, r.In.URL.RawQuery
		},
	}}
	l, err := net.Listen("tcp", netns.Private1+":0")
	if err != nil {
		t.Fatal(err)
	}
	go proxy.Serve(l)
	defer proxy.Close()
	// ProxyFromEnvironment reads the environment once per process; this
	// process runs only this test.
	t.Setenv("HTTP_PROXY", "http://"+l.Addr().String())

	reg, ref, img := image(t, "px/app", hostile.WithAddr(netns.Public1+":0"))
	opts := append([]source.Option{source.WithInsecureRegistry(reg.Host)}, quick...)
	for _, tc := range []struct {
		storageAddr, name string
		followed          bool
	}{
		{netns.Private2, "storage-private.test", false},
		{netns.Public2, "storage-public.test", true},
	} {
		storage := hostile.New(t, hostile.WithAddr(tc.storageAddr+":0"))
		storage.PutImage(t, "px/app", "v1", img)
		_, port, _ := net.SplitHostPort(storage.Host)
		redirectLayers(t, reg, img, "http://"+net.JoinHostPort(tc.name, port))
		res := mustResolve(t, ref, opts...)
		_, err := readLayer(t, res, 0)
		if tc.followed {
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			continue
		}
		if !errors.Is(err, source.ErrRefused) || !strings.Contains(err.Error(), tc.storageAddr) {
			t.Fatalf("%s: err = %v; want a refusal naming %s", tc.name, err, tc.storageAddr)
		}
		if n := len(storage.Requests()); n != 0 {
			t.Fatalf("%s got %d requests", tc.name, n)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(proxied, reg.Host) || slices.ContainsFunc(proxied, func(h string) bool { return strings.HasPrefix(h, "storage-private.test") }) {
		t.Fatalf("requests through the proxy: %v", proxied)
	}
}
