package testregistry

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The token auth names the registry is configured with: the token's "aud"
// must be TokenService and its "iss" TokenIssuer.
const (
	TokenService = "testregistry"
	TokenIssuer  = "testregistry-issuer"
	tokenTTL     = 300 * time.Second
)

// TokenRequest is one request to the token server.
type TokenRequest struct {
	// Method is GET (the Docker token protocol) or POST (OAuth2 password
	// grant).
	Method string
	// Credentials is true when the request carried a user name and
	// password, right or wrong.
	Credentials bool
	// User is the user name given, if any.
	User string
	// Scopes are the requested scopes, e.g. "repository:foo/bar:pull,push".
	Scopes []string
	// Status is the HTTP status the token server answered with.
	Status int
}

// tokenServer implements the Docker token protocol
// (https://distribution.github.io/distribution/spec/auth/token/) for one
// user. It signs its tokens with a fresh ES256 key whose self-signed
// certificate is both the registry's rootcertbundle and the token's x5c
// header: registry 2.8 takes the signing key from the first of x5c, jwk
// or kid it finds in the header and, for x5c, verifies the chain against
// rootcertbundle, so no key id has to be computed the libtrust way.
type tokenServer struct {
	srv      *httptest.Server
	key      *ecdsa.PrivateKey
	x5c      string // base64 (standard, padded) DER of the certificate
	rootPath string // PEM of the certificate, for auth.token.rootcertbundle
	user     string
	pass     string

	count atomic.Int64
	mu    sync.Mutex
	log   []TokenRequest
}

func newTokenServer(dir, user, pass string) (*tokenServer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "testregistry token signer"},
		NotBefore:             now.Add(-time.Hour), // tolerate clock skew
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("token signing certificate: %w", err)
	}
	ts := &tokenServer{
		key:      key,
		x5c:      base64.StdEncoding.EncodeToString(der),
		rootPath: filepath.Join(dir, "token-root.pem"),
		user:     user,
		pass:     pass,
	}
	if err := os.WriteFile(ts.rootPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	ts.srv = httptest.NewServer(http.HandlerFunc(ts.serveHTTP))
	return ts, nil
}

// realm is the token URL the registry sends clients to. It names the host
// "localhost", not 127.0.0.1: go-containerregistry (v0.22 and later)
// refuses a realm that is a loopback or private IP literal on another port
// than the registry's own, as an SSRF guard, but lets host names through.
func (ts *tokenServer) realm() string {
	return "http://localhost:" + ts.srv.URL[strings.LastIndex(ts.srv.URL, ":")+1:] + "/token"
}

func (ts *tokenServer) close() { ts.srv.Close() }

func (ts *tokenServer) requests() []TokenRequest {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	out := make([]TokenRequest, len(ts.log))
	for i, r := range ts.log {
		r.Scopes = append([]string(nil), r.Scopes...)
		out[i] = r
	}
	return out
}

func (ts *tokenServer) serveHTTP(w http.ResponseWriter, r *http.Request) {
	ts.count.Add(1)
	rec := TokenRequest{Method: r.Method}
	rec.Status = ts.answer(w, r, &rec)
	ts.mu.Lock()
	ts.log = append(ts.log, rec)
	ts.mu.Unlock()
}

// answer handles one token request, fills in rec and returns the status
// it answered with.
func (ts *tokenServer) answer(w http.ResponseWriter, r *http.Request, rec *TokenRequest) int {
	if r.URL.Path != "/token" {
		http.NotFound(w, r)
		return http.StatusNotFound
	}
	var (
		user, pass, service string
		hasCreds            bool
		scopes              []string
	)
	switch r.Method {
	case http.MethodGet:
		// Docker token protocol: credentials, if any, as HTTP basic auth;
		// one scope parameter per scope.
		user, pass, hasCreds = r.BasicAuth()
		q := r.URL.Query()
		service = q.Get("service")
		for _, s := range q["scope"] {
			scopes = append(scopes, strings.Fields(s)...)
		}
	case http.MethodPost:
		// OAuth2 (what Docker uses with identity tokens): only the password
		// grant, as no refresh tokens are handed out.
		if err := r.ParseForm(); err != nil {
			return oauthError(w, http.StatusBadRequest, "invalid_request", err.Error())
		}
		if gt := r.PostForm.Get("grant_type"); gt != "password" {
			return oauthError(w, http.StatusBadRequest, "unsupported_grant_type", fmt.Sprintf("grant_type %q", gt))
		}
		user, pass, hasCreds = r.PostForm.Get("username"), r.PostForm.Get("password"), true
		service = r.PostForm.Get("service")
		scopes = strings.Fields(r.PostForm.Get("scope"))
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return http.StatusMethodNotAllowed
	}
	rec.Credentials, rec.User, rec.Scopes = hasCreds, user, scopes

	if service != "" && service != TokenService {
		return oauthError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("unknown service %q", service))
	}
	if hasCreds && (user != ts.user || pass != ts.pass) {
		w.Header().Set("WWW-Authenticate", `Basic realm="testregistry-token"`)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintln(w, `{"errors":[{"code":"UNAUTHORIZED","message":"invalid username or password"}]}`)
		return http.StatusUnauthorized
	}

	// Anonymous clients get a valid token that grants nothing, as Docker
	// Hub-style servers do; the registry then refuses the request itself.
	access := []resourceActions{}
	if hasCreds {
		for _, s := range scopes {
			ra, err := parseScope(s)
			if err != nil {
				return oauthError(w, http.StatusBadRequest, "invalid_scope", err.Error())
			}
			access = append(access, ra)
		}
	}
	now := time.Now()
	tok, err := ts.sign(user, access, now)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"token":        tok,
		"access_token": tok,
		"expires_in":   int(tokenTTL / time.Second),
		"issued_at":    now.UTC().Format(time.RFC3339),
	})
	return http.StatusOK
}

func oauthError(w http.ResponseWriter, status int, code, desc string) int {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
	return status
}

// resourceActions is one entry of the token's "access" claim.
type resourceActions struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// parseScope parses "TYPE:NAME:ACTION[,ACTION...]". NAME may contain
// colons (a registry host with a port), so the actions follow the last one.
func parseScope(s string) (resourceActions, error) {
	i, j := strings.Index(s, ":"), strings.LastIndex(s, ":")
	if i <= 0 || j == i || j == len(s)-1 {
		return resourceActions{}, fmt.Errorf("malformed scope %q", s)
	}
	return resourceActions{Type: s[:i], Name: s[i+1 : j], Actions: strings.Split(s[j+1:], ",")}, nil
}

// sign returns a compact JWS token. Registry 2.8 wants "aud" as a single
// string (a list does not parse) and checks exp and nbf with a minute of
// leeway; ES256 signatures are r||s, 32 bytes each, not ASN.1.
func (ts *tokenServer) sign(subject string, access []resourceActions, now time.Time) (string, error) {
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", err
	}
	header, err := json.Marshal(map[string]any{
		"typ": "JWT",
		"alg": "ES256",
		"x5c": []string{ts.x5c},
	})
	if err != nil {
		return "", err
	}
	claims, err := json.Marshal(struct {
		Issuer     string            `json:"iss"`
		Subject    string            `json:"sub"`
		Audience   string            `json:"aud"`
		Expiration int64             `json:"exp"`
		NotBefore  int64             `json:"nbf"`
		IssuedAt   int64             `json:"iat"`
		JWTID      string            `json:"jti"`
		Access     []resourceActions `json:"access"`
	}{
		Issuer:     TokenIssuer,
		Subject:    subject,
		Audience:   TokenService,
		Expiration: now.Add(tokenTTL).Unix(),
		NotBefore:  now.Add(-10 * time.Second).Unix(),
		IssuedAt:   now.Unix(),
		JWTID:      hex.EncodeToString(jti),
		Access:     access,
	})
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	input := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
	digest := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, ts.key, digest[:])
	if err != nil {
		return "", err
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + enc.EncodeToString(sig), nil
}
