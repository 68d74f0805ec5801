// Package testcerts makes a throwaway certificate authority for tests: a
// CA, a server certificate for the loopback names and addresses (plus any
// the test adds), and a client certificate for mutual TLS, written as PEM
// files the way hosts.toml and certs.d expect them.
package testcerts

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Set is a CA with one server and one client certificate.
type Set struct {
	// CAFile is the CA certificate (PEM); CA holds it as a pool.
	CAFile string
	CA     *x509.CertPool
	// ServerCert and ClientCert are ready for tls.Config.
	ServerCert, ClientCert tls.Certificate
	// ClientCertFile and ClientKeyFile are the client pair as files.
	ClientCertFile, ClientKeyFile string
}

// New makes a Set in dir. The server certificate names localhost,
// 127.0.0.1 and ::1, and the extra names given (IP addresses or host
// names).
func New(t testing.TB, dir string, names ...string) *Set {
	t.Helper()
	caKey := key(t)
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: serial(t), Subject: pkix.Name{CommonName: "ocifetch test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	s := &Set{CAFile: filepath.Join(dir, "ca.pem"), CA: x509.NewCertPool()}
	s.CA.AddCert(caCert)
	write(t, s.CAFile, "CERTIFICATE", caDER)

	leaf := func(name string, usage x509.ExtKeyUsage, ips []net.IP, dns []string) (tls.Certificate, []byte, []byte) {
		k := key(t)
		tmpl := &x509.Certificate{
			SerialNumber: serial(t), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: ips, DNSNames: dns,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
		c, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return c, certPEM, keyPEM
	}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	dns := []string{"localhost"}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, n)
		}
	}
	s.ServerCert, _, _ = leaf("server", x509.ExtKeyUsageServerAuth, ips, dns)
	var certPEM, keyPEM []byte
	s.ClientCert, certPEM, keyPEM = leaf("client", x509.ExtKeyUsageClientAuth, nil, nil)
	s.ClientCertFile, s.ClientKeyFile = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	for f, b := range map[string][]byte{s.ClientCertFile: certPEM, s.ClientKeyFile: keyPEM} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// ServerConfig is a TLS configuration for a server with the Set's
// certificate; with mutual set, it requires a client certificate from the CA.
func (s *Set) ServerConfig(mutual bool) *tls.Config {
	c := &tls.Config{Certificates: []tls.Certificate{s.ServerCert}, MinVersion: tls.VersionTLS12}
	if mutual {
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.ClientCAs = s.CA
	}
	return c
}

func key(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func write(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}
