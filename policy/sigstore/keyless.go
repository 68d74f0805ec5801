package sigstore

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cyberphone/json-canonicalization/go/src/webpki.org/jsoncanonicalizer"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// Fulcio is what a keyless signature is checked against: the certificate
// authorities a policy trusts, and the identity the signer must have
// proven to them.
type Fulcio struct {
	// Roots are the trusted CA certificates (Fulcio's root, or a private
	// CA).
	Roots *x509.CertPool
	// OIDCIssuer is the identity provider that vouched for the signer;
	// SubjectEmail the signer's address.
	OIDCIssuer, SubjectEmail string
}

// ParseCAs reads PEM certificates (a policy's fulcio caPath or caData).
func ParseCAs(name string, pemData []byte) (*x509.CertPool, error) {
	certs, err := cryptoutils.UnmarshalCertificatesFromPEM(pemData)
	if err != nil || len(certs) == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate", name)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// Fulcio's certificate extensions naming the OIDC issuer: version 2 is a
// DER UTF8String, version 1 (deprecated) the raw string.
var (
	oidIssuerV1 = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 1}
	oidIssuerV2 = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 8}
	oidSAN      = asn1.ObjectIdentifier{2, 5, 29, 17}
)

// VerifyFulcio checks a keyless signature of the classic layout, offline:
// the certificate in the signature's annotation chains (through the
// annotation's intermediates) to one of f's roots at the time a
// transparency log recorded the signature, names f's issuer and email,
// and made the signature; the log's signed entry timestamp (the
// "dev.sigstore.cosign/bundle" annotation) is signed by one of rekor's
// keys and records this very signature, certificate and payload. It
// returns the identity the payload claims, like VerifyKey.
func (s *Signature) VerifyFulcio(f *Fulcio, rekor []*Key) (identity string, err error) {
	if s.Problem != nil {
		return "", s.Problem
	}
	if s.Format != FormatSimpleSigning {
		return "", errors.New("keyless bundles are not verified by ocifetch: only keyless signatures of the classic layout (with a Rekor entry) are")
	}
	if len(s.cert) == 0 {
		return "", errors.New("signed with a key, not a Fulcio certificate")
	}
	certs, err := cryptoutils.UnmarshalCertificatesFromPEM(s.cert)
	if err != nil || len(certs) != 1 {
		return "", errors.New("its certificate annotation is not one PEM certificate")
	}
	leaf := certs[0]
	if len(s.rekorBundle) == 0 {
		return "", errors.New("it has no Rekor entry (signed entry timestamp), which a keyless signature needs")
	}
	integrated, err := verifySET(rekor, s.rekorBundle, s.cert, s.sig, s.payload)
	if err != nil {
		return "", err
	}
	intermediates := x509.NewCertPool()
	if len(s.chain) > 0 {
		chain, err := cryptoutils.UnmarshalCertificatesFromPEM(s.chain)
		if err != nil {
			return "", errors.New("its certificate chain annotation is not PEM certificates")
		}
		for _, c := range chain {
			intermediates.AddCert(c)
		}
	}
	// Fulcio marks its subject alternative name critical when it holds a
	// name type Go does not parse (otherName); the name checked here is
	// the email, which Go does parse.
	leaf.UnhandledCriticalExtensions = slices.DeleteFunc(slices.Clone(leaf.UnhandledCriticalExtensions), func(o asn1.ObjectIdentifier) bool { return o.Equal(oidSAN) })
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: f.Roots, Intermediates: intermediates, CurrentTime: integrated,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
	}); err != nil {
		return "", fmt.Errorf("its certificate does not chain to the policy's CA at %s, when Rekor recorded it: %v", integrated.UTC().Format(time.RFC3339), err)
	}
	if !slices.Contains(leaf.EmailAddresses, f.SubjectEmail) {
		return "", fmt.Errorf("its certificate is for %q, not %q", leaf.EmailAddresses, f.SubjectEmail)
	}
	if iss := certIssuer(leaf); iss != f.OIDCIssuer {
		return "", fmt.Errorf("its certificate was issued on the word of %q, not %q", iss, f.OIDCIssuer)
	}
	k, err := keyOf(leaf)
	if err != nil {
		return "", err
	}
	if err := k.verifySig(s.sig, s.payload); err != nil {
		return "", errors.New("its certificate's key did not make the signature")
	}
	return s.checkPayload()
}

// CheckRekor checks that a key-based classic signature was recorded by one
// of rekor's keys (for a policy that names both a key and a Rekor key).
func (s *Signature) CheckRekor(k *Key, rekor []*Key) error {
	if s.Format != FormatSimpleSigning {
		return errors.New("the policy asks for a Rekor entry, which ocifetch checks for the classic layout only")
	}
	if len(s.rekorBundle) == 0 {
		return errors.New("it has no Rekor entry (signed entry timestamp), which the policy asks for")
	}
	der, err := x509.MarshalPKIXPublicKey(k.pub)
	if err != nil {
		return err
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	_, err = verifySET(rekor, s.rekorBundle, pemKey, s.sig, s.payload)
	return err
}

// CertificateIdentity returns, unverified and for display only, the
// emails and OIDC issuer of a keyless signature's certificate.
func (s Signature) CertificateIdentity() (emails []string, issuer string) {
	certs, err := cryptoutils.UnmarshalCertificatesFromPEM(s.cert)
	if err != nil || len(certs) == 0 {
		if s.bundle != nil {
			if der := s.bundle.GetVerificationMaterial().GetCertificate().GetRawBytes(); der != nil {
				if c, err := x509.ParseCertificate(der); err == nil {
					return c.EmailAddresses, certIssuer(c)
				}
			}
		}
		return nil, ""
	}
	return certs[0].EmailAddresses, certIssuer(certs[0])
}

// certIssuer reads the OIDC issuer Fulcio wrote into a certificate.
func certIssuer(c *x509.Certificate) string {
	for _, e := range c.Extensions {
		if e.Id.Equal(oidIssuerV2) {
			var s string
			if rest, err := asn1.UnmarshalWithParams(e.Value, &s, "utf8"); err == nil && len(rest) == 0 {
				return s
			}
		}
	}
	for _, e := range c.Extensions {
		if e.Id.Equal(oidIssuerV1) {
			return string(e.Value)
		}
	}
	return ""
}

func keyOf(c *x509.Certificate) (*Key, error) {
	der, err := x509.MarshalPKIXPublicKey(c.PublicKey)
	if err != nil {
		return nil, err
	}
	return ParseKey("the certificate's key", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// rekorSET is cosign's "dev.sigstore.cosign/bundle" annotation: a Rekor
// entry and the log's signature over it (the signed entry timestamp).
type rekorSET struct {
	SignedEntryTimestamp []byte          `json:"SignedEntryTimestamp"`
	Payload              json.RawMessage `json:"Payload"`
}

// verifySET checks a signed entry timestamp: one of rekor's keys signed
// the canonical JSON of its payload, the payload's log ID is that key's,
// and the entry it records is a hashedrekord of this signature, this
// public key or certificate (keyPEM) and this payload. It returns when the
// log says it recorded the entry.
func verifySET(rekor []*Key, setJSON, keyPEM, sig, payload []byte) (time.Time, error) {
	var set rekorSET
	if err := json.Unmarshal(setJSON, &set); err != nil || len(set.SignedEntryTimestamp) == 0 || len(set.Payload) == 0 {
		return time.Time{}, errors.New("its Rekor entry annotation is malformed")
	}
	canonical, err := jsoncanonicalizer.Transform(set.Payload)
	if err != nil {
		return time.Time{}, errors.New("its Rekor entry is not canonicalizable JSON")
	}
	var p struct {
		Body           string `json:"body"`
		IntegratedTime int64  `json:"integratedTime"`
		LogIndex       int64  `json:"logIndex"`
		LogID          string `json:"logID"`
	}
	if err := json.Unmarshal(set.Payload, &p); err != nil {
		return time.Time{}, errors.New("its Rekor entry is malformed")
	}
	var signer *Key
	for _, k := range rekor {
		if k.verifySig(set.SignedEntryTimestamp, canonical) == nil {
			signer = k
			break
		}
	}
	if signer == nil {
		return time.Time{}, errors.New("its Rekor entry is not signed by the policy's Rekor key")
	}
	der, err := x509.MarshalPKIXPublicKey(signer.pub)
	if err != nil {
		return time.Time{}, err
	}
	if id := sha256.Sum256(der); p.LogID != hex.EncodeToString(id[:]) {
		return time.Time{}, errors.New("its Rekor entry names another log than the key that signed it")
	}
	body, err := base64.StdEncoding.DecodeString(p.Body)
	if err != nil {
		return time.Time{}, errors.New("its Rekor entry's body is not base64")
	}
	var entry struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Spec       struct {
			Data struct {
				Hash struct {
					Algorithm string `json:"algorithm"`
					Value     string `json:"value"`
				} `json:"hash"`
			} `json:"data"`
			Signature struct {
				Content   []byte `json:"content"`
				PublicKey struct {
					Content []byte `json:"content"`
				} `json:"publicKey"`
			} `json:"signature"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(body, &entry); err != nil {
		return time.Time{}, errors.New("its Rekor entry's body is malformed")
	}
	sum := sha256.Sum256(payload)
	switch {
	case entry.Kind != "hashedrekord" || entry.APIVersion != "0.0.1":
		return time.Time{}, fmt.Errorf("its Rekor entry is a %q %q, not a hashedrekord 0.0.1", entry.Kind, entry.APIVersion)
	case entry.Spec.Data.Hash.Algorithm != "sha256" || entry.Spec.Data.Hash.Value != hex.EncodeToString(sum[:]):
		return time.Time{}, errors.New("its Rekor entry records another payload")
	case !bytes.Equal(entry.Spec.Signature.Content, sig):
		return time.Time{}, errors.New("its Rekor entry records another signature")
	case !bytes.Equal(bytes.TrimSpace(entry.Spec.Signature.PublicKey.Content), bytes.TrimSpace(keyPEM)):
		return time.Time{}, errors.New("its Rekor entry records another key or certificate")
	}
	return time.Unix(p.IntegratedTime, 0), nil
}
