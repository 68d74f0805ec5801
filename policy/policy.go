// Package policy decides whether an image may be used, from a trust policy
// in the containers-policy.json(5) format that skopeo, podman and CRI-O
// read (containers/image): a "default" list of requirements, and
// "transports" → transport → scope → requirements, the most specific
// matching scope winning. It admits an image after resolving and before
// any layer is fetched, by checking the cosign signatures the registry (or
// the store) holds for the digest the reference first resolved to.
//
//	pol, err := policy.Load("/etc/containers/policy.json", policy.WithStore(store))
//	res, err := ocifetch.Unpack(ctx, ref, dir, ocifetch.WithVerifier(pol), ...)
//
// What is implemented: the transports "docker" (registries), "oci",
// "oci-archive" and "docker-archive"; the requirement types
// insecureAcceptAnything, reject and sigstoreSigned with keyPath, keyPaths,
// keyData or keyDatas, or keyless with fulcio (caPath or caData,
// oidcIssuer, subjectEmail) and a Rekor key, optionally with
// rekorPublicKey* for keys too; every signedIdentity type (matchExact,
// matchRepoDigestOrExact, matchRepository, exactReference, exactRepository,
// remapIdentity). What is not (signedBy, which is GPG simple signing;
// sigstoreSigned with pki; signedBaseLayer; any type or field this package
// does not know)
// is refused, with a message that says so, when the scope that matches the
// image uses it: never ignored, and never in the way of images that other
// scopes decide. A policy whose structure is broken (not JSON, no
// "default", an invalid scope) does not load.
//
// A refusal is an error of kind errdefs.ErrUntrusted that names the policy
// file and the scope that decided.
package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/ocifetch/ocifetch/errdefs"
	"github.com/ocifetch/ocifetch/policy/sigstore"
)

// Policy is a parsed trust policy. It implements the verifier that
// ocifetch.WithVerifier takes. A Policy is safe for concurrent use.
type Policy struct {
	name       string // the file it came from, for messages
	def        []requirement
	transports map[string]map[string][]requirement

	store  sigstore.Store
	report func(Decision)
}

// Option configures Load, Parse and LoadDefault.
type Option func(*Policy) error

// WithStore keeps the signatures that admitted an image in st, with the
// image, and reads the signatures kept there first: an image that was
// verified before is verified again without asking the registry, and an
// image read from the store (an offline unpack) verifies at all. Use the
// store the image is pulled into.
func WithStore(st sigstore.Store) Option {
	return func(p *Policy) error {
		p.store = st
		return nil
	}
}

// WithReport calls fn with every decision Verify makes, admitted or not,
// e.g. to tell the user which key admitted an image.
func WithReport(fn func(Decision)) Option {
	return func(p *Policy) error {
		p.report = fn
		return nil
	}
}

// maxPolicySize bounds the policy file; real ones are a few kilobytes.
const maxPolicySize = 4 << 20

// Load reads the policy file at path. A missing or unreadable file, or one
// whose structure is invalid, is kind invalid_argument.
func Load(path string, opts ...Option) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "reading trust policy %s", path)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPolicySize+1))
	if err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "reading trust policy %s", path)
	}
	if len(data) > maxPolicySize {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "trust policy %s is over %d bytes", path, maxPolicySize)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	return parse(data, abs, opts)
}

// Parse reads a policy from memory; name is used in messages. As with
// containers/image, a relative keyPath is taken from the current
// directory.
func Parse(data []byte, name string, opts ...Option) (*Policy, error) {
	return parse(data, name, opts)
}

// EnvPaths names the environment variable that replaces the default
// lookup (DefaultPaths) with a list of files, separated by ":" as in
// $PATH. Tests point it at files of their own so that they never read the
// machine's policy; a path that does not exist turns the lookup off.
const EnvPaths = "OCIFETCH_POLICY_PATHS"

// DefaultPaths returns where a policy is looked for when none is named, in
// order: $HOME/.config/containers/policy.json, then
// /etc/containers/policy.json, as containers/image does; or the files
// $OCIFETCH_POLICY_PATHS lists.
func DefaultPaths() []string {
	if v := os.Getenv(EnvPaths); v != "" {
		return filepath.SplitList(v)
	}
	var out []string
	if home, err := os.UserHomeDir(); err == nil {
		out = append(out, filepath.Join(home, ".config", "containers", "policy.json"))
	}
	return append(out, "/etc/containers/policy.json")
}

// LoadDefault loads the first of paths that exists (DefaultPaths when
// paths is empty). It returns nil and no error when none exists: without a
// policy, nothing is checked, as with containers/image.
func LoadDefault(paths []string, opts ...Option) (*Policy, error) {
	if len(paths) == 0 {
		paths = DefaultPaths()
	}
	for _, p := range paths {
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		return Load(p, opts...)
	}
	return nil, nil
}

// Name is the file the policy was read from.
func (p *Policy) Name() string { return p.name }

func parse(data []byte, name string, opts []Option) (*Policy, error) {
	p := &Policy{name: name, transports: map[string]map[string][]requirement{}}
	bad := func(format string, args ...any) error {
		return errdefs.New(errdefs.ErrInvalidArgument, "trust policy %s: %s", name, fmt.Sprintf(format, args...))
	}
	// A key given twice is read by encoding/json as its last value, by
	// skopeo and podman as an error: a policy whose first "default" rejects
	// must not admit through a second one.
	if err := noDuplicateKeys(data); err != nil {
		return nil, bad("%v", err)
	}
	var top map[string]json.RawMessage
	if err := strictJSON(data, &top); err != nil {
		return nil, bad("not a JSON object: %v", err)
	}
	for k := range top {
		if k != "default" && k != "transports" {
			return nil, bad("unknown field %q (only \"default\" and \"transports\" are allowed)", k)
		}
	}
	raw, ok := top["default"]
	if !ok {
		return nil, bad("no \"default\" requirements; it is mandatory")
	}
	var err error
	if p.def, err = parseRequirements(raw); err != nil {
		return nil, bad("\"default\": %v", err)
	}
	if raw, ok := top["transports"]; ok {
		var ts map[string]map[string]json.RawMessage
		if err := strictJSON(raw, &ts); err != nil {
			return nil, bad("\"transports\" must map transport names to objects of scopes: %v", err)
		}
		for t, scopes := range ts {
			if scopes == nil {
				return nil, bad("transport %q must be an object of scopes, not null", t)
			}
			p.transports[t] = map[string][]requirement{}
			for scope, raw := range scopes {
				if err := validScope(t, scope); err != nil {
					return nil, bad("transport %q: %v", t, err)
				}
				reqs, err := parseRequirements(raw)
				if err != nil {
					return nil, bad("transport %q scope %q: %v", t, scope, err)
				}
				p.transports[t][scope] = reqs
			}
		}
	}
	for _, o := range opts {
		if err := o(p); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// noDuplicateKeys walks a JSON document and fails on an object that
// names a key twice, saying which and where.
func noDuplicateKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var walk func(path string) error
	walk = func(path string) error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return err
				}
				k, _ := kt.(string)
				if seen[k] {
					return fmt.Errorf("key %q appears twice in %s", k, path)
				}
				seen[k] = true
				if err := walk(path + "." + k); err != nil {
					return err
				}
			}
			_, err = dec.Token() // }
			return err
		case json.Delim('['):
			for i := 0; dec.More(); i++ {
				if err := walk(fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
			_, err = dec.Token() // ]
			return err
		}
		return nil
	}
	return walk("the policy")
}

// strictJSON decodes one JSON value and nothing after it.
func strictJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the JSON value")
	}
	return nil
}

// requirement is one entry of a requirements list. Anything that cannot be
// enforced as written is kept with unusable set, and refused only when a
// scope that matches an image uses it.
type requirement struct {
	typ      string
	unusable string // why this requirement cannot be enforced, "" if it can

	// sigstoreSigned: keys, or a Fulcio CA and identity; Rekor keys
	// (required with fulcio, optional with keys)
	keyPaths   []string
	keyData    [][]byte
	fulcio     *fulcioRequirement
	rekorPaths []string
	rekorData  [][]byte
	identity   identityRequirement
}

// Requirement types.
const (
	typeAcceptAnything = "insecureAcceptAnything"
	typeReject         = "reject"
	typeSigstoreSigned = "sigstoreSigned"
)

// parseRequirements parses a list. Its structure (a JSON array of objects
// that each have a string "type") is checked now; what an entry says is
// checked by parseRequirement, which defers its verdict to evaluation.
func parseRequirements(raw json.RawMessage) ([]requirement, error) {
	var list []map[string]json.RawMessage
	if err := strictJSON(raw, &list); err != nil {
		return nil, fmt.Errorf("requirements must be a JSON array of objects: %v", err)
	}
	out := make([]requirement, 0, len(list))
	for i, obj := range list {
		var typ string
		if err := json.Unmarshal(obj["type"], &typ); err != nil || typ == "" {
			return nil, fmt.Errorf("requirement %d has no \"type\" string", i+1)
		}
		out = append(out, parseRequirement(typ, obj))
	}
	return out, nil
}

func parseRequirement(typ string, obj map[string]json.RawMessage) requirement {
	r := requirement{typ: typ}
	switch typ {
	case typeAcceptAnything, typeReject:
		if f := unknownFields(obj, "type"); f != "" {
			r.unusable = fmt.Sprintf("field %q is not part of %s", f, typ)
		}
	case typeSigstoreSigned:
		r.parseSigstoreSigned(obj)
	case "signedBy":
		r.unusable = "signedBy (GPG simple signing) is not supported by ocifetch, which verifies sigstore signatures only"
	case "signedBaseLayer":
		r.unusable = "signedBaseLayer is not supported by ocifetch"
	default:
		r.unusable = fmt.Sprintf("requirement type %q is not known to ocifetch", typ)
	}
	return r
}

// fulcioRequirement is a sigstoreSigned requirement's "fulcio" object:
// keyless signing, a certificate from this CA for this identity.
type fulcioRequirement struct {
	caPath       string
	caData       []byte
	oidcIssuer   string
	subjectEmail string
}

func (r *requirement) parseSigstoreSigned(obj map[string]json.RawMessage) {
	if f := unknownFields(obj, "type", "keyPath", "keyPaths", "keyData", "keyDatas", "fulcio",
		"rekorPublicKeyPath", "rekorPublicKeyPaths", "rekorPublicKeyData", "rekorPublicKeyDatas", "pki", "signedIdentity"); f != "" {
		r.unusable = fmt.Sprintf("sigstoreSigned field %q is not known to ocifetch", f)
		return
	}
	if _, ok := obj["pki"]; ok {
		r.unusable = "sigstoreSigned with \"pki\" (certificates from a private PKI without Rekor) is not supported by ocifetch; use keys, or fulcio with a Rekor key"
		return
	}
	var err error
	keys := countFields(obj, "keyPath", "keyPaths", "keyData", "keyDatas")
	_, keyless := obj["fulcio"]
	switch {
	case keys+boolInt(keyless) != 1:
		r.unusable = "sigstoreSigned needs exactly one of keyPath, keyPaths, keyData, keyDatas and fulcio"
		return
	case keyless:
		if r.fulcio, err = parseFulcio(obj["fulcio"]); err != nil {
			r.unusable = "fulcio: " + err.Error()
			return
		}
	default:
		if r.keyPaths, r.keyData, err = parseKeyFields(obj, "keyPath", "keyPaths", "keyData", "keyDatas"); err != nil {
			r.unusable = "sigstoreSigned: " + err.Error()
			return
		}
	}
	switch countFields(obj, "rekorPublicKeyPath", "rekorPublicKeyPaths", "rekorPublicKeyData", "rekorPublicKeyDatas") {
	case 0:
		if keyless {
			r.unusable = "sigstoreSigned with fulcio needs a Rekor key (rekorPublicKeyPath, rekorPublicKeyPaths, rekorPublicKeyData or rekorPublicKeyDatas): a keyless signature is only as good as its log entry"
			return
		}
	case 1:
		if r.rekorPaths, r.rekorData, err = parseKeyFields(obj, "rekorPublicKeyPath", "rekorPublicKeyPaths", "rekorPublicKeyData", "rekorPublicKeyDatas"); err != nil {
			r.unusable = "sigstoreSigned: " + err.Error()
			return
		}
	default:
		r.unusable = "sigstoreSigned needs at most one of rekorPublicKeyPath, rekorPublicKeyPaths, rekorPublicKeyData and rekorPublicKeyDatas"
		return
	}
	r.identity, err = parseIdentity(obj["signedIdentity"])
	if err != nil {
		r.unusable = "signedIdentity: " + err.Error()
	}
}

func countFields(obj map[string]json.RawMessage, names ...string) int {
	n := 0
	for _, f := range names {
		if _, ok := obj[f]; ok {
			n++
		}
	}
	return n
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// parseKeyFields reads the one key field present among a path, a list of
// paths, base64 data and a list of base64 data.
func parseKeyFields(obj map[string]json.RawMessage, path, paths, data, datas string) ([]string, [][]byte, error) {
	bad := fmt.Errorf("%s is empty or malformed (%s is a string, %s a list of strings, %s base64)", firstPresent(obj, path, paths, data, datas), path, paths, data)
	switch {
	case obj[path] != nil:
		var p string
		if json.Unmarshal(obj[path], &p) != nil || p == "" {
			return nil, nil, bad
		}
		return []string{p}, nil, nil
	case obj[paths] != nil:
		var ps []string
		if json.Unmarshal(obj[paths], &ps) != nil || len(ps) == 0 || slices.Contains(ps, "") {
			return nil, nil, bad
		}
		return ps, nil, nil
	case obj[data] != nil:
		var d []byte // base64 in JSON
		if json.Unmarshal(obj[data], &d) != nil || len(d) == 0 {
			return nil, nil, bad
		}
		return nil, [][]byte{d}, nil
	default:
		var ds [][]byte
		if json.Unmarshal(obj[datas], &ds) != nil || len(ds) == 0 || slices.ContainsFunc(ds, func(d []byte) bool { return len(d) == 0 }) {
			return nil, nil, bad
		}
		return nil, ds, nil
	}
}

func firstPresent(obj map[string]json.RawMessage, names ...string) string {
	for _, n := range names {
		if _, ok := obj[n]; ok {
			return n
		}
	}
	return names[0]
}

func parseFulcio(raw json.RawMessage) (*fulcioRequirement, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, errors.New("not a JSON object")
	}
	if f := unknownFields(obj, "caPath", "caData", "oidcIssuer", "subjectEmail"); f != "" {
		return nil, fmt.Errorf("field %q is not known to ocifetch", f)
	}
	f := &fulcioRequirement{}
	if countFields(obj, "caPath", "caData") != 1 {
		return nil, errors.New("needs exactly one of caPath and caData")
	}
	if obj["caPath"] != nil {
		if json.Unmarshal(obj["caPath"], &f.caPath) != nil || f.caPath == "" {
			return nil, errors.New("caPath must be a file name")
		}
	} else if json.Unmarshal(obj["caData"], &f.caData) != nil || len(f.caData) == 0 {
		return nil, errors.New("caData must be base64 of PEM certificates")
	}
	if json.Unmarshal(obj["oidcIssuer"], &f.oidcIssuer) != nil || f.oidcIssuer == "" {
		return nil, errors.New("oidcIssuer, the identity provider the signer must have used, is mandatory")
	}
	if json.Unmarshal(obj["subjectEmail"], &f.subjectEmail) != nil || f.subjectEmail == "" {
		return nil, errors.New("subjectEmail, the signer's identity, is mandatory")
	}
	return f, nil
}

// unknownFields returns a field of obj not in known, "" if none (the
// first in sorted order, so messages are stable).
func unknownFields(obj map[string]json.RawMessage, known ...string) string {
	var extra []string
	for k := range obj {
		found := false
		for _, n := range known {
			if k == n {
				found = true
				break
			}
		}
		if !found {
			extra = append(extra, k)
		}
	}
	if len(extra) == 0 {
		return ""
	}
	sort.Strings(extra)
	return extra[0]
}

// describe names a requirement for messages.
func (r requirement) describe() string {
	if r.typ != typeSigstoreSigned {
		return r.typ
	}
	names := append([]string(nil), r.keyPaths...)
	for i := range r.keyData {
		names = append(names, fmt.Sprintf("keyData[%d]", i))
	}
	if r.fulcio != nil {
		names = []string{fmt.Sprintf("fulcio %s from %s", r.fulcio.subjectEmail, r.fulcio.oidcIssuer)}
	}
	return fmt.Sprintf("sigstoreSigned (%s, %s)", strings.Join(names, ", "), r.identity)
}
