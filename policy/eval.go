package policy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/policy/sigstore"
	"github.com/ocifetch/ocifetch/resolve"
)

// Decision is what Verify decided about an image, and why.
type Decision struct {
	// Reference is the image; Subject the digest its reference first
	// resolved to, which a signature must name.
	Reference string
	Subject   digest.Digest
	// Policy is the policy file; Scope the scope whose requirements
	// applied: `transports.docker["registry.example.com/app"]`,
	// `transports.docker[""]`, or "default".
	Policy, Scope string
	// Admitted is true when every requirement held; Reason says why not.
	Admitted bool
	Reason   string
	// Accepted lists, for each signature requirement, the signature and
	// key that satisfied it.
	Accepted []Acceptance
}

// Acceptance is a signature that satisfied a requirement.
type Acceptance struct {
	Signature sigstore.Signature
	Key       string // the key's name: its path, or "keyData[N]"
	Identity  string // the identity it was checked as
}

// Verify admits res, resolved from src, or refuses it with an error of
// kind untrusted that names the policy and the scope that decided. It
// reads signatures from the store (WithStore) first, and from src only
// when those do not satisfy the policy; an image the policy admits without
// signatures (insecureAcceptAnything) costs no request.
func (p *Policy) Verify(ctx context.Context, src resolve.Source, res *resolve.Resolved) error {
	d, err := p.Evaluate(ctx, src, res)
	if d != nil && p.report != nil {
		p.report(*d)
	}
	return err
}

// Evaluate is Verify returning its decision as well. The error is nil
// exactly when the image is admitted; a failure to reach the registry is
// not a refusal and keeps its own kind (network, unauthorized, ...).
func (p *Policy) Evaluate(ctx context.Context, src resolve.Source, res *resolve.Resolved) (*Decision, error) {
	if res == nil || res.Manifest.Descriptor.Digest == "" {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "nothing to verify: no resolved image")
	}
	if src == nil {
		src = res.Source
	}
	d := &Decision{Reference: res.Reference, Subject: res.Chain()[0].Digest, Policy: p.name}
	img, err := imageOf(res.Reference)
	if err != nil {
		return d, p.refuse(d, "its reference cannot be matched against the policy: %v", err)
	}
	reqs, scope := p.lookup(img)
	d.Scope = scope
	if len(reqs) == 0 {
		return d, p.refuse(d, "the scope lists no requirements (it must list at least one; insecureAcceptAnything accepts anything)")
	}
	// Requirements that cannot be enforced refuse before anything is
	// asked of the registry.
	for i, r := range reqs {
		if r.unusable != "" {
			return d, p.refuse(d, "requirement %d: %s; refusing rather than ignoring it", i+1, r.unusable)
		}
	}
	e := evaluation{p: p, src: src, img: img, subject: d.Subject}
	for i, r := range reqs {
		switch r.typ {
		case typeAcceptAnything:
		case typeReject:
			return d, p.refuse(d, "the policy rejects it (requirement %d is reject)", i+1)
		case typeSigstoreSigned:
			acc, why, err := e.sigstoreSigned(ctx, r)
			if err != nil {
				return d, err
			}
			if acc == nil {
				return d, p.refuse(d, "requirement %d, %s: %s", i+1, r.describe(), why)
			}
			d.Accepted = append(d.Accepted, *acc)
		}
	}
	if p.store != nil && len(e.found) > 0 {
		if err := sigstore.Keep(ctx, p.store, e.found); err != nil {
			return d, err
		}
	}
	d.Admitted = true
	return d, nil
}

func (p *Policy) refuse(d *Decision, format string, args ...any) error {
	d.Reason = fmt.Sprintf(format, args...)
	return errdefs.New(errdefs.ErrUntrusted, "%s refused by trust policy %s, scope %s: %s", d.Reference, p.name, d.Scope, d.Reason)
}

// evaluation is one Verify: the signatures are looked up once, on first
// need, and shared by the requirements.
type evaluation struct {
	p       *Policy
	src     resolve.Source
	img     image
	subject digest.Digest

	stored, found []sigstore.Signature
	storedRead    bool
	fetched       bool
}

// sigstoreSigned looks for a signature that r's keys (or r's Fulcio CA
// and Rekor keys) verify and whose identity r accepts: first among those
// kept in the store, then among the registry's. It returns why none did
// when none did.
func (e *evaluation) sigstoreSigned(ctx context.Context, r requirement) (*Acceptance, string, error) {
	t, err := r.load()
	if err != nil {
		return nil, err.Error(), nil
	}
	var problems []string
	try := func(sigs []sigstore.Signature) *Acceptance {
		for _, s := range sigs {
			acc, why := e.check(s, t, r.identity)
			if acc != nil {
				return acc
			}
			problems = append(problems, s.String()+": "+why)
		}
		return nil
	}
	if e.p.store != nil && !e.storedRead {
		e.storedRead = true
		if e.stored, err = sigstore.FromStore(ctx, e.p.store, e.subject); err != nil {
			return nil, "", err
		}
	}
	if acc := try(e.stored); acc != nil {
		return acc, "", nil
	}
	if !e.fetched {
		e.fetched = true
		if e.found, err = sigstore.Find(ctx, e.src, e.subject); err != nil {
			return nil, "", fmt.Errorf("looking for signatures of %s: %w", e.subject, err)
		}
	}
	if acc := try(e.found); acc != nil {
		return acc, "", nil
	}
	if len(problems) == 0 {
		where := "the store"
		if _, ok := e.src.(resolve.ReferrersSource); ok {
			where = fmt.Sprintf("the registry (tag %s-%s.sig, referrers of %s)", e.subject.Algorithm(), e.subject.Encoded(), e.subject)
			if e.p.store != nil {
				where += " or the store"
			}
		} else if e.p.store == nil {
			where = "this source, which keeps no signatures"
		}
		return nil, fmt.Sprintf("no signature of %s found in %s", e.subject, where), nil
	}
	const show = 4
	msg := strings.Join(problems[:min(len(problems), show)], "; ")
	if len(problems) > show {
		msg += fmt.Sprintf("; and %d more", len(problems)-show)
	}
	return nil, fmt.Sprintf("no signature is acceptable: %s", msg), nil
}

// trustMaterial is what a sigstoreSigned requirement trusts, loaded.
type trustMaterial struct {
	keys   []*sigstore.Key
	fulcio *sigstore.Fulcio
	rekor  []*sigstore.Key
}

// check tries s with t, then its identity.
func (e *evaluation) check(s sigstore.Signature, t *trustMaterial, id identityRequirement) (*Acceptance, string) {
	claimed, signer, why := verify(s, t)
	if why != "" {
		return nil, why
	}
	if s.Format == sigstore.FormatBundle {
		// A bundle signs the digest only. The identity it is checked
		// as is the repository it is attached to, which no one
		// signed: see docs/signatures.md.
		if e.img.docker == nil {
			return nil, "a bundle names no identity, and this source has no Docker reference to take one from"
		}
		claimed = e.img.docker.name
	}
	if ok, why := id.matches(e.img.docker, claimed); !ok {
		return nil, fmt.Sprintf("verified with %s, but its identity does not match %s: %s", signer, id, why)
	}
	return &Acceptance{Signature: s, Key: signer, Identity: claimed}, ""
}

// verify checks the cryptography of s with t: which identity it claims,
// who signed it, or why it does not verify.
func verify(s sigstore.Signature, t *trustMaterial) (claimed, signer, why string) {
	if t.fulcio != nil {
		claimed, err := s.VerifyFulcio(t.fulcio, t.rekor)
		if err != nil {
			return "", "", err.Error()
		}
		return claimed, fmt.Sprintf("a Fulcio certificate for %s from %s", t.fulcio.SubjectEmail, t.fulcio.OIDCIssuer), ""
	}
	var last error
	for _, k := range t.keys {
		claimed, err := s.VerifyKey(k)
		if err != nil {
			last = err
			continue
		}
		if len(t.rekor) > 0 {
			if err := s.CheckRekor(k, t.rekor); err != nil {
				return "", "", fmt.Sprintf("verified with %s, but %v", k.Name, err)
			}
		}
		return claimed, k.Name, ""
	}
	if errors.Is(last, sigstore.ErrOtherKey) {
		if len(t.keys) == 1 {
			return "", "", "signed by another key than " + t.keys[0].Name
		}
		return "", "", "signed by none of the policy's keys"
	}
	return "", "", last.Error()
}

// load reads what the requirement trusts. Files are read when a scope
// that names them decides, never at load: a policy naming key files for
// other registries that this machine lacks must not stop this pull.
func (r requirement) load() (*trustMaterial, error) {
	t := &trustMaterial{}
	var err error
	if t.keys, err = loadKeys(r.keyPaths, r.keyData, "keyData"); err != nil {
		return nil, err
	}
	if t.rekor, err = loadKeys(r.rekorPaths, r.rekorData, "rekorPublicKeyData"); err != nil {
		return nil, err
	}
	if f := r.fulcio; f != nil {
		data, name := f.caData, "caData"
		if f.caPath != "" {
			if data, err = os.ReadFile(f.caPath); err != nil {
				return nil, fmt.Errorf("cannot read the Fulcio CA %s: %v", f.caPath, err)
			}
			name = f.caPath
		}
		roots, err := sigstore.ParseCAs(name, data)
		if err != nil {
			return nil, err
		}
		t.fulcio = &sigstore.Fulcio{Roots: roots, OIDCIssuer: f.oidcIssuer, SubjectEmail: f.subjectEmail}
	}
	return t, nil
}

func loadKeys(paths []string, datas [][]byte, dataName string) ([]*sigstore.Key, error) {
	var keys []*sigstore.Key
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("cannot read key %s: %v", p, err)
		}
		k, err := sigstore.ParseKey(p, data)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	for i, data := range datas {
		k, err := sigstore.ParseKey(fmt.Sprintf("%s[%d]", dataName, i), data)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// Signer says who, among those the policy trusts for ref, made s: a key's
// name, or the Fulcio identity. Only the cryptography is checked, not the
// identity s claims: it is for tools that show signatures (inspect). It
// returns "" and no error when the scope that decides ref asks for no
// signature.
func (p *Policy) Signer(ref string, s sigstore.Signature) (string, error) {
	img, err := imageOf(ref)
	if err != nil {
		return "", errdefs.Wrap(err, errdefs.ErrInvalidArgument, "reference %s", ref)
	}
	reqs, _ := p.lookup(img)
	var whys []string
	for _, r := range reqs {
		if r.typ != typeSigstoreSigned || r.unusable != "" {
			continue
		}
		t, err := r.load()
		if err != nil {
			whys = append(whys, err.Error())
			continue
		}
		_, signer, why := verify(s, t)
		if why == "" {
			return signer, nil
		}
		whys = append(whys, why)
	}
	if len(whys) == 0 {
		return "", nil
	}
	return "", errors.New(strings.Join(whys, "; "))
}
