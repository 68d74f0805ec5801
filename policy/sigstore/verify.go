package sigstore

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/dsse"
)

// simpleSigningType is the only "critical.type" a cosign payload has.
const simpleSigningType = "cosign container image signature"

// Key is a public key trusted to sign images.
type Key struct {
	// Name says where the key came from, for messages: a file name, or
	// "keyData".
	Name string
	// Hint is the base64 SHA-256 of the key's PKIX encoding: what cosign
	// writes into a bundle to say which key signed it.
	Hint string

	pub       crypto.PublicKey
	verifiers []signature.Verifier
}

// ParseKey reads a PEM public key ("-----BEGIN PUBLIC KEY-----", as
// cosign generate-key-pair writes cosign.pub). name is for messages.
func ParseKey(name string, pemData []byte) (*Key, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pemData)
	if err != nil {
		return nil, fmt.Errorf("%s is not a PEM public key: %w", name, err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	sum := sha256.Sum256(der)
	k := &Key{Name: name, Hint: base64.StdEncoding.EncodeToString(sum[:]), pub: pub}
	// cosign signs with SHA-256 whatever the curve (and so does every
	// client of the simple-signing format); newer clients hash P-384 and
	// P-521 signatures with the curve's own hash, which the default
	// verifier uses.
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	k.verifiers = append(k.verifiers, v)
	if d, err := signature.LoadDefaultVerifier(pub); err == nil {
		k.verifiers = append(k.verifiers, d)
	}
	return k, nil
}

// verifySig checks a raw signature over message.
func (k *Key) verifySig(sig, message []byte) error {
	var err error
	for _, v := range k.verifiers {
		if err = v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(message)); err == nil {
			return nil
		}
	}
	return err
}

// ErrOtherKey is the cause of a verification failure when the signature
// is well formed but not made by the key.
var ErrOtherKey = errors.New("not signed by this key")

// VerifyKey checks that k made the signature and that what it signed
// names the digest the signature was found for. It returns the image
// identity the signature claims: the docker reference of a simple-signing
// payload (cosign writes the repository, or with
// --sign-container-identity a full reference), or "" for a bundle, whose
// statement names the digest only.
func (s *Signature) VerifyKey(k *Key) (identity string, err error) {
	if s.Problem != nil {
		return "", s.Problem
	}
	switch s.Format {
	case FormatSimpleSigning:
		if err := k.verifySig(s.sig, s.payload); err != nil {
			return "", ErrOtherKey
		}
		return s.checkPayload()
	case FormatBundle:
		return "", s.verifyBundle(k)
	}
	return "", fmt.Errorf("unknown signature format %q", s.Format)
}

// simpleSigningPayload is the signed payload of a simple-signing
// signature (containers/image's "atomic container signature").
type simpleSigningPayload struct {
	Critical struct {
		Identity struct {
			DockerReference string `json:"docker-reference"`
		} `json:"identity"`
		Image struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type string `json:"type"`
	} `json:"critical"`
	Optional map[string]any `json:"optional"`
}

// checkPayload parses a simple-signing payload whose signature verified
// and checks that it names the subject. The format is parsed strictly, as
// containers/image does: a payload with fields this code does not know
// may mean something it does not check.
func (s *Signature) checkPayload() (string, error) {
	var p simpleSigningPayload
	dec := json.NewDecoder(bytes.NewReader(s.payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return "", fmt.Errorf("signed payload is not a simple-signing payload: %w", err)
	}
	switch {
	case p.Critical.Type != simpleSigningType:
		return "", fmt.Errorf("signed payload has type %q, not %q", p.Critical.Type, simpleSigningType)
	case p.Critical.Image.DockerManifestDigest != s.Subject.String():
		return "", fmt.Errorf("signature is for %s, not %s", p.Critical.Image.DockerManifestDigest, s.Subject)
	case p.Critical.Identity.DockerReference == "":
		return "", errors.New("signed payload names no identity")
	}
	return p.Critical.Identity.DockerReference, nil
}

// verifyBundle checks a bundle: a DSSE envelope signed by k (sigstore's
// DSSE verifier, which checks the signature over the envelope's
// pre-authentication encoding), holding an in-toto statement of cosign's
// signature predicate that names the subject. No timestamp or log entry is
// required for a key: there is no certificate whose validity they would
// prove.
func (s *Signature) verifyBundle(k *Key) error {
	vm := s.bundle.GetVerificationMaterial()
	if vm.GetPublicKey() == nil {
		return errors.New("bundle is signed with a certificate (keyless signing), not a key")
	}
	env := s.bundle.GetDsseEnvelope()
	if env == nil {
		return errors.New("bundle holds a message signature, not a signed statement about an image")
	}
	// The envelope as DSSE's JSON form: base64 payload and signatures.
	type sigJSON struct {
		KeyID string `json:"keyid"`
		Sig   []byte `json:"sig"`
	}
	envJSON := struct {
		PayloadType string    `json:"payloadType"`
		Payload     []byte    `json:"payload"`
		Signatures  []sigJSON `json:"signatures"`
	}{PayloadType: env.GetPayloadType(), Payload: env.GetPayload()}
	for _, sg := range env.GetSignatures() {
		envJSON.Signatures = append(envJSON.Signatures, sigJSON{KeyID: sg.GetKeyid(), Sig: sg.GetSig()})
	}
	if len(envJSON.Signatures) == 0 {
		return errors.New("bundle's envelope has no signature")
	}
	data, err := json.Marshal(envJSON)
	if err != nil {
		return err
	}
	var payload []byte
	v := dsse.WrapVerifier(multiVerifier(k.verifiers), dsse.WithExpectedPayloadType(payloadTypeInToto), dsse.WithDecodedPayload(&payload))
	if err := v.VerifySignature(bytes.NewReader(data), nil); err != nil {
		// The hint is not signed; it only makes the message clearer.
		if h := vm.GetPublicKey().GetHint(); h != "" && h != k.Hint {
			return ErrOtherKey
		}
		return fmt.Errorf("bundle does not verify with this key: %w", err)
	}
	return s.checkStatement(payload)
}

// payloadTypeInToto is the DSSE payload type of an in-toto statement.
const payloadTypeInToto = "application/vnd.in-toto+json"

// checkStatement checks the signed in-toto statement: version 1, cosign's
// signature predicate (an attestation such as SLSA provenance, signed by
// the same key, is not a signature of the image), and a subject digest
// equal to the image's.
func (s *Signature) checkStatement(payload []byte) error {
	var st struct {
		Type    string `json:"_type"`
		Subject []struct {
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
		PredicateType string `json:"predicateType"`
	}
	if err := json.Unmarshal(payload, &st); err != nil {
		return fmt.Errorf("signed payload is not an in-toto statement: %w", err)
	}
	switch {
	case st.Type != "https://in-toto.io/Statement/v1" && st.Type != "https://in-toto.io/Statement/v0.1":
		return fmt.Errorf("signed payload is not an in-toto statement (type %q)", st.Type)
	case st.PredicateType != PredicateTypeSign:
		return fmt.Errorf("bundle is an attestation (predicate %q), not a cosign signature", st.PredicateType)
	}
	for _, sub := range st.Subject {
		if sub.Digest[s.Subject.Algorithm().String()] == s.Subject.Encoded() {
			return nil
		}
	}
	return fmt.Errorf("the signed statement does not name %s", s.Subject)
}

// multiVerifier accepts a signature any of its verifiers accepts.
type multiVerifier []signature.Verifier

func (m multiVerifier) PublicKey(opts ...signature.PublicKeyOption) (crypto.PublicKey, error) {
	return m[0].PublicKey(opts...)
}

func (m multiVerifier) VerifySignature(sig, message io.Reader, opts ...signature.VerifyOption) error {
	sb, err := io.ReadAll(io.LimitReader(sig, 2*MaxBlobSize))
	if err != nil {
		return err
	}
	mb, err := io.ReadAll(io.LimitReader(message, 2*MaxBlobSize))
	if err != nil {
		return err
	}
	for _, v := range m {
		if err = v.VerifySignature(bytes.NewReader(sb), bytes.NewReader(mb), opts...); err == nil {
			return nil
		}
	}
	return err
}
