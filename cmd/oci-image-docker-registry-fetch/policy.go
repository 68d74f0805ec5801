package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"unicode"

	flag "github.com/spf13/pflag"

	"github.com/ocifetch/ocifetch/policy"
	"github.com/ocifetch/ocifetch/policy/sigstore"
	"github.com/ocifetch/ocifetch/resolve"
)

// policyFlags are the trust policy flags of resolve, pull, unpack, bundle
// (which refuse what the policy refuses) and inspect (which only says
// which of the policy's keys made each signature).
type policyFlags struct {
	path     string
	insecure bool
	// decision is the last decision of the policy, for the output.
	decision *policy.Decision
}

func (p *policyFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&p.path, "policy", "", "admit only images this containers-policy.json `FILE` accepts (default: $HOME/.config/containers/policy.json, then /etc/containers/policy.json; no check if neither exists)")
	fs.BoolVar(&p.insecure, "insecure-policy", false, "check no trust policy at all (says so on stderr)")
}

// load returns the policy to check, or nil when there is none: none
// named, none found, or --insecure-policy. Signatures that admit an image
// are kept in store when it is not nil.
func (p *policyFlags) load(e *env, store sigstore.Store) (*policy.Policy, error) {
	if p.insecure {
		fmt.Fprintf(e.stderr, "warning: --insecure-policy: no trust policy is checked; any image is accepted\n")
		return nil, nil
	}
	opts := []policy.Option{policy.WithReport(func(d policy.Decision) { p.decision = &d })}
	if store != nil {
		opts = append(opts, policy.WithStore(store))
	}
	if p.path != "" {
		return policy.Load(p.path, opts...)
	}
	return policy.LoadDefault(nil, opts...)
}

// verify checks res against the policy, for commands that do not go
// through the library's pipeline (resolve).
func (p *policyFlags) verify(ctx context.Context, e *env, res *resolve.Resolved) error {
	pol, err := p.load(e, nil)
	if err != nil || pol == nil {
		return err
	}
	return pol.Verify(ctx, res.Source, res)
}

// trustJSON is the "trust" member of the JSON outputs: which policy
// admitted the image, and with which signatures. Absent when no policy was
// checked.
type trustJSON struct {
	Policy     string         `json:"policy"`
	Scope      string         `json:"scope"`
	Signatures []acceptedJSON `json:"signatures"`
}

type acceptedJSON struct {
	Format   string `json:"format"`
	Location string `json:"location"`
	Key      string `json:"key"`
	Identity string `json:"identity"`
}

func (p *policyFlags) trust() *trustJSON {
	if p.decision == nil || !p.decision.Admitted {
		return nil
	}
	d := *p.decision
	t := &trustJSON{Policy: absPath(d.Policy), Scope: d.Scope, Signatures: []acceptedJSON{}}
	for _, a := range d.Accepted {
		t.Signatures = append(t.Signatures, acceptedJSON{Format: string(a.Signature.Format), Location: a.Signature.Location, Key: a.Key, Identity: a.Identity})
	}
	return t
}

// say prints, unless quiet, which policy admitted the image and how.
func (p *policyFlags) say(e *env, quiet bool) {
	t := p.trust()
	if t == nil || quiet {
		return
	}
	if len(t.Signatures) == 0 {
		fmt.Fprintf(e.stderr, "trust: admitted by %s, scope %s, without a signature\n", printable(t.Policy), t.Scope)
		return
	}
	for _, s := range t.Signatures {
		fmt.Fprintf(e.stderr, "trust: admitted by %s, scope %s: %s (%s) verified with %s as %s\n",
			printable(t.Policy), t.Scope, s.Format, s.Location, printable(s.Key), printable(s.Identity))
	}
}

// printable makes text from an image or a signature safe for a terminal:
// control characters are shown escaped, never sent raw.
func printable(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) < 0 {
		return s
	}
	q := fmt.Sprintf("%+q", s)
	return q[1 : len(q)-1]
}

// signatureJSON is one signature as inspect shows it.
type signatureJSON struct {
	Format   string `json:"format"`
	Location string `json:"location"`
	// Signs is the digest the signature was found for; Document the
	// digest of the manifest that carries it.
	Signs    string `json:"signs"`
	Document string `json:"document,omitempty"`
	// Identity is the image identity the signature claims (a bundle
	// claims none). It is only vouched for when Key is set.
	Identity string `json:"identity,omitempty"`
	// Key names what of the policy verified the signature (a key's file,
	// or the Fulcio identity), "" when nothing (or no policy) did;
	// KeyHint is the unsigned hint a bundle gives of its key, Certificate
	// the unverified identity in a keyless signature's certificate.
	Key         string `json:"key,omitempty"`
	KeyHint     string `json:"keyHint,omitempty"`
	Certificate string `json:"certificate,omitempty"`
	// Problem says why the signature could not be read or verified.
	Problem string `json:"problem,omitempty"`
}

// inspectSignatures lists the signatures the source holds for the digest
// the reference resolved to and, when a policy applies, which of its keys
// made each. A registry that cannot list them is reported, not fatal:
// inspect describes, it does not decide.
func inspectSignatures(ctx context.Context, e *env, pf *policyFlags, res *resolve.Resolved) ([]signatureJSON, string, error) {
	out := []signatureJSON{}
	subject := res.Chain()[0].Digest
	sigs, err := sigstore.Find(ctx, res.Source, subject)
	if err != nil {
		if ctx.Err() != nil {
			return nil, "", err
		}
		return out, printable(err.Error()), nil
	}
	pol, err := pf.load(e, nil)
	if err != nil {
		return nil, "", err
	}
	for _, s := range sigs {
		j := signatureJSON{Format: string(s.Format), Location: s.Location, Signs: subject.String(), KeyHint: s.KeyHint()}
		if s.Manifest.Data != nil {
			j.Document = s.Manifest.Descriptor.Digest.String()
		}
		j.Identity, _ = s.Claim()
		if emails, issuer := s.CertificateIdentity(); len(emails) > 0 || issuer != "" {
			j.Certificate = strings.Join(emails, ", ") + " from " + issuer
		}
		var problems []string
		if s.Problem != nil {
			problems = append(problems, s.Problem.Error())
		} else if pol != nil {
			signer, err := pol.Signer(res.Reference, s)
			if err != nil {
				problems = append(problems, err.Error())
			}
			j.Key = signer
		}
		j.Identity, j.Key, j.KeyHint, j.Certificate = printable(j.Identity), printable(j.Key), printable(j.KeyHint), printable(j.Certificate)
		j.Problem = printable(strings.Join(problems, "; "))
		out = append(out, j)
	}
	return out, "", nil
}

func printSignatures(w io.Writer, o inspectOutput) {
	if o.SignatureError != "" {
		fmt.Fprintf(w, "signatures\tnot listed: %s\n", textQuote(o.SignatureError))
		return
	}
	if len(o.Signatures) == 0 {
		fmt.Fprintf(w, "signatures\tnone found\n")
		return
	}
	for _, s := range o.Signatures {
		// What a signature says of itself is the signer's text: quoted.
		line := fmt.Sprintf("signature\t%s\t%s", textQuote(s.Format), textQuote(s.Location))
		if s.Identity != "" {
			line += "\tidentity " + textQuote(s.Identity)
		}
		switch {
		case s.Key != "":
			line += "\tverified with " + textQuote(s.Key)
		case s.Certificate != "":
			line += "\tcertificate " + textQuote(s.Certificate)
		case s.KeyHint != "":
			line += "\tkey hint " + textQuote(s.KeyHint)
		}
		if s.Problem != "" {
			line += "\t(" + textQuote(s.Problem) + ")"
		}
		fmt.Fprintln(w, line)
	}
}
