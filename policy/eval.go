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

// sigstoreSigned looks for a signature that one of r's keys made and
// whose identity r accepts: first among those kept in the store, then
// among the registry's. It returns why none did when none did.
func (e *evaluation) sigstoreSigned(ctx context.Context, r requirement) (*Acceptance, string, error) {
	keys, err := r.loadKeys()
	if err != nil {
		return nil, err.Error(), nil
	}
	var problems []string
	try := func(sigs []sigstore.Signature) *Acceptance {
		for _, s := range sigs {
			acc, why := e.check(s, keys, r.identity)
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

// check tries s with every key, then its identity.
func (e *evaluation) check(s sigstore.Signature, keys []*sigstore.Key, id identityRequirement) (*Acceptance, string) {
	var last error
	for _, k := range keys {
		claimed, err := s.VerifyKey(k)
		if err != nil {
			last = err
			continue
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
			return nil, fmt.Sprintf("verified with %s, but its identity does not match %s: %s", k.Name, id, why)
		}
		return &Acceptance{Signature: s, Key: k.Name, Identity: claimed}, ""
	}
	if errors.Is(last, sigstore.ErrOtherKey) {
		if len(keys) == 1 {
			return nil, "signed by another key than " + keys[0].Name
		}
		return nil, "signed by none of the policy's keys"
	}
	return nil, last.Error()
}

// loadKeys reads the requirement's keys. They are read when a scope that
// uses them decides, never at load: a policy naming key files for other
// registries that this machine lacks must not stop this pull.
func (r requirement) loadKeys() ([]*sigstore.Key, error) {
	var keys []*sigstore.Key
	for _, p := range r.keyPaths {
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
	for i, data := range r.keyData {
		k, err := sigstore.ParseKey(fmt.Sprintf("keyData[%d]", i), data)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// Keys returns the keys of the sigstoreSigned requirements that apply to
// ref, for tools that show which key made a signature (inspect). The
// scope is named as in Decision.Scope.
func (p *Policy) Keys(ref string) ([]*sigstore.Key, string, error) {
	img, err := imageOf(ref)
	if err != nil {
		return nil, "", errdefs.Wrap(err, errdefs.ErrInvalidArgument, "reference %s", ref)
	}
	reqs, scope := p.lookup(img)
	var keys []*sigstore.Key
	for _, r := range reqs {
		if r.typ != typeSigstoreSigned || r.unusable != "" {
			continue
		}
		ks, err := r.loadKeys()
		if err != nil {
			return nil, scope, errdefs.New(errdefs.ErrInvalidArgument, "trust policy %s, scope %s: %v", p.name, scope, err)
		}
		keys = append(keys, ks...)
	}
	return keys, scope, nil
}
