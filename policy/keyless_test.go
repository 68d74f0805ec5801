package policy_test

// Keyless signatures (a Fulcio certificate and a Rekor entry), verified
// offline against the CA and the Rekor key a policy names. No Fulcio or
// Rekor runs here: the test is its own CA and log, with keys of its own,
// and hands cosign what those services would have returned (cosign
// generate for the payload, cosign attach signature for the rest), so the
// signature image is cosign's own.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ocifetch/ocifetch/internal/testutil"
)

const (
	signerEmail  = "release@example.com"
	signerIssuer = "https://issuer.example.com"
)

// ca is a certificate authority of the test's own.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T, name string, parent *ca) *ca {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &ca{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// leafOpts shape the signer's certificate.
type leafOpts struct {
	email, issuer       string
	notBefore, notAfter time.Time
}

// leaf issues a short-lived signing certificate as Fulcio does: the email
// as subject alternative name, the OIDC issuer in Fulcio's extension.
func (c *ca) leaf(t *testing.T, o leafOpts) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := asn1.MarshalWithParams(o.issuer, "utf8")
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), NotBefore: o.notBefore, NotAfter: o.notAfter,
		EmailAddresses: []string{o.email}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 8}, Value: issuer}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// keylessSig is what a keyless signing would have produced, and how the
// test spoils it.
type keylessSig struct {
	leaf          leafOpts
	ca            *ca // issues the leaf (the intermediate)
	chain         []byte
	rekor         *ecdsa.PrivateKey // signs the entry
	otherSig      bool              // the log records another signature
	skipRekorData bool              // no Rekor entry at all
}

// signKeyless signs img as cosign keyless signing would, and attaches it.
func signKeyless(t *testing.T, f *fixture, img pushed, k keylessSig) {
	t.Helper()
	dir := t.TempDir()
	payload := []byte(f.cosign.Run(t, "", "generate", img.byDigest()))
	key, certPEM := k.ca.leaf(t, k.leaf)
	sum := sha256.Sum256(payload)
	sig, err := ecdsa.SignASN1(rand.Reader, key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	recorded := sig
	if k.otherSig {
		if recorded, err = ecdsa.SignASN1(rand.Reader, key, sum[:]); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	args := []string{"attach", "signature", "--allow-http-registry",
		"--payload", write("payload.json", payload),
		"--signature", write("sig", []byte(base64.StdEncoding.EncodeToString(sig))),
		"--certificate", write("cert.pem", certPEM),
		"--certificate-chain", write("chain.pem", k.chain)}
	if !k.skipRekorData {
		// A hashedrekord entry, as Rekor records a signature, and its
		// signed entry timestamp: the log's signature over the canonical
		// JSON of the entry (keys sorted, no spaces).
		body, err := json.Marshal(map[string]any{"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": map[string]any{
			"data":      map[string]any{"hash": map[string]any{"algorithm": "sha256", "value": hex.EncodeToString(sum[:])}},
			"signature": map[string]any{"content": recorded, "publicKey": map[string]any{"content": certPEM}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKIXPublicKey(&k.rekor.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		logID := sha256.Sum256(der)
		entry := map[string]any{"body": base64.StdEncoding.EncodeToString(body), "integratedTime": time.Now().Unix(), "logIndex": 42, "logID": hex.EncodeToString(logID[:])}
		canonical, err := json.Marshal(entry)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(canonical)
		set, err := ecdsa.SignASN1(rand.Reader, k.rekor, h[:])
		if err != nil {
			t.Fatal(err)
		}
		resp, err := json.Marshal(map[string]any{"base64Signature": base64.StdEncoding.EncodeToString(sig), "cert": string(certPEM),
			"rekorBundle": map[string]any{"SignedEntryTimestamp": set, "Payload": entry}})
		if err != nil {
			t.Fatal(err)
		}
		args = append(args, "--rekor-response", write("rekor.json", resp))
	}
	f.cosign.Run(t, "", append(args, img.byDigest())...)
}

func pemPublic(t *testing.T, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// A keyless signature is admitted when its certificate chains to the
// policy's CA at the time the policy's Rekor key says it was logged, names
// the policy's email and issuer, and made the signature the log recorded;
// each way of failing one of those is refused.
func TestKeylessClassicSignatures(t *testing.T) {
	t.Parallel()
	testutil.Full(t, "signing with a test CA and Rekor key; the keyed path (TestSignedImageIsAdmitted, TestRefusedBeforeAnyLayer) shares its fetching and subject checks")
	f := newFixture(t)
	root := newCA(t, "test fulcio root", nil)
	inter := newCA(t, "test fulcio intermediate", root)
	otherRoot := newCA(t, "another root", nil)
	rekor, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherRekor, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rootPath := filepath.Join(dir, "fulcio-root.pem")
	rekorPath := filepath.Join(dir, "rekor.pub")
	for p, data := range map[string][]byte{rootPath: root.pem, rekorPath: pemPublic(t, rekor)} {
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	policyFor := func(scope, email, issuer string) string {
		return fmt.Sprintf(`{"default": [{"type": "reject"}], "transports": {"docker": {%q: [{"type": "sigstoreSigned",
			"fulcio": {"caPath": %q, "oidcIssuer": %q, "subjectEmail": %q}, "rekorPublicKeyPath": %q,
			"signedIdentity": {"type": "matchRepository"}}]}}}`, scope, rootPath, issuer, email, rekorPath)
	}
	now := time.Now()
	good := keylessSig{leaf: leafOpts{email: signerEmail, issuer: signerIssuer, notBefore: now.Add(-time.Minute), notAfter: now.Add(10 * time.Minute)},
		ca: inter, chain: append(append([]byte(nil), inter.pem...), root.pem...), rekor: rekor}
	for i, tc := range []struct {
		name          string
		sig           func(keylessSig) keylessSig
		email, issuer string
		why           string
	}{
		{"admitted", nil, signerEmail, signerIssuer, ""},
		{"another email", nil, "someone@example.com", signerIssuer, `is for ["release@example.com"], not "someone@example.com"`},
		{"another issuer", nil, signerEmail, "https://accounts.example.org", `on the word of "https://issuer.example.com"`},
		{"another CA", func(k keylessSig) keylessSig { k.ca, k.chain = otherRoot, otherRoot.pem; return k }, signerEmail, signerIssuer, "does not chain to the policy's CA"},
		{"expired when logged", func(k keylessSig) keylessSig {
			k.leaf.notBefore, k.leaf.notAfter = now.Add(-30*time.Minute), now.Add(-20*time.Minute)
			return k
		}, signerEmail, signerIssuer, "does not chain to the policy's CA"},
		{"logged by another Rekor", func(k keylessSig) keylessSig { k.rekor = otherRekor; return k }, signerEmail, signerIssuer, "not signed by the policy's Rekor key"},
		{"the log records another signature", func(k keylessSig) keylessSig { k.otherSig = true; return k }, signerEmail, signerIssuer, "records another signature"},
		{"never logged", func(k keylessSig) keylessSig { k.skipRekorData = true; return k }, signerEmail, signerIssuer, "has no Rekor entry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := fmt.Sprintf("keyless-%d", i)
			img := f.push(t, repo+":v1")
			k := good
			if tc.sig != nil {
				k = tc.sig(k)
			}
			signKeyless(t, f, img, k)
			u := unpack(t, img.ref, policyFor(f.host+"/"+repo, tc.email, tc.issuer))
			if tc.why == "" {
				if u.err != nil {
					t.Fatal(u.err)
				}
				if len(u.d.Accepted) != 1 || u.d.Accepted[0].Key != "a Fulcio certificate for "+signerEmail+" from "+signerIssuer {
					t.Fatalf("decision %+v", u.d)
				}
				return
			}
			checkRefused(t, u.err, tc.why)
		})
	}

	// A policy naming a Rekor key with a key wants the key's signatures
	// logged too: cosign's offline signature (no Rekor entry) is refused.
	img := f.push(t, "keyed-unlogged:v1")
	f.sign(t, f.key, img)
	doc := fmt.Sprintf(`{"default": [{"type": "reject"}], "transports": {"docker": {%q: [{"type": "sigstoreSigned",
		"keyPath": %q, "rekorPublicKeyPath": %q, "signedIdentity": {"type": "matchRepository"}}]}}}`, f.host+"/keyed-unlogged", f.key.Public, rekorPath)
	checkRefused(t, unpack(t, img.ref, doc).err, "has no Rekor entry")
}
