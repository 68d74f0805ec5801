package policy

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
)

// dockerRef is a Docker reference in its fully expanded form:
// "docker.io/library/alpine", with an optional tag and digest.
type dockerRef struct {
	name   string // host[:port]/path
	tag    string
	digest string
}

func (r dockerRef) String() string {
	s := r.name
	if r.tag != "" {
		s += ":" + r.tag
	}
	if r.digest != "" {
		s += "@" + r.digest
	}
	return s
}

func (r dockerRef) nameOnly() bool { return r.tag == "" && r.digest == "" }

// parseDockerRef parses and normalizes a reference the way Docker does
// ("busybox" is docker.io/library/busybox; index.docker.io is docker.io),
// keeping whether it has a tag or digest: a signature that names only a
// repository is not one that names a tag.
func parseDockerRef(s string) (dockerRef, error) {
	var r dockerRef
	rest := s
	if i := strings.Index(rest, "@"); i >= 0 {
		d, err := digest.Parse(rest[i+1:])
		if err != nil {
			return r, fmt.Errorf("%q has an invalid digest", s)
		}
		r.digest, rest = d.String(), rest[:i]
	}
	if i := strings.LastIndex(rest, ":"); i >= 0 && !strings.Contains(rest[i+1:], "/") {
		if !validTag(rest[i+1:]) {
			return r, fmt.Errorf("%q has an invalid tag", s)
		}
		r.tag, rest = rest[i+1:], rest[:i]
	}
	repo, err := name.NewRepository(rest, name.StrictValidation)
	if err != nil {
		// StrictValidation refuses a name without a registry; Docker's
		// rules give it docker.io.
		if repo, err = name.NewRepository(rest); err != nil {
			return r, fmt.Errorf("%q is not a valid reference", s)
		}
	}
	r.name = canonicalHost(repo.RegistryStr()) + "/" + repo.RepositoryStr()
	return r, nil
}

// validTag checks the distribution spec's grammar for tags,
// [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}.
func validTag(tag string) bool {
	if len(tag) == 0 || len(tag) > 128 {
		return false
	}
	for i, c := range tag {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || i > 0 && (c == '.' || c == '-')) {
			return false
		}
	}
	return true
}

// canonicalHost maps the names Docker Hub goes by to docker.io, as
// resolve does for the references it normalizes.
func canonicalHost(h string) string {
	switch h {
	case "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com":
		return "docker.io"
	}
	return h
}

// Identity requirement types (signedIdentity "type").
const (
	idMatchExact             = "matchExact"
	idMatchRepoDigestOrExact = "matchRepoDigestOrExact"
	idMatchRepository        = "matchRepository"
	idExactReference         = "exactReference"
	idExactRepository        = "exactRepository"
	idRemapIdentity          = "remapIdentity"
)

// identityRequirement is a parsed signedIdentity: what the identity a
// signature claims must be, given the image's own.
type identityRequirement struct {
	typ          string
	ref          dockerRef // exactReference, exactRepository
	prefix       string    // remapIdentity
	signedPrefix string
}

func (i identityRequirement) String() string {
	switch i.typ {
	case idExactReference, idExactRepository:
		return fmt.Sprintf("%s %s", i.typ, i.ref)
	case idRemapIdentity:
		return fmt.Sprintf("%s %s → %s", i.typ, i.prefix, i.signedPrefix)
	}
	return i.typ
}

func parseIdentity(raw json.RawMessage) (identityRequirement, error) {
	if raw == nil {
		return identityRequirement{typ: idMatchRepoDigestOrExact}, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return identityRequirement{}, fmt.Errorf("not a JSON object")
	}
	var id identityRequirement
	if err := json.Unmarshal(obj["type"], &id.typ); err != nil {
		return id, fmt.Errorf("no \"type\" string")
	}
	str := func(field string) (string, error) {
		var s string
		if err := json.Unmarshal(obj[field], &s); err != nil || s == "" {
			return "", fmt.Errorf("%s needs a %q string", id.typ, field)
		}
		return s, nil
	}
	switch id.typ {
	case idMatchExact, idMatchRepoDigestOrExact, idMatchRepository:
		if f := unknownFields(obj, "type"); f != "" {
			return id, fmt.Errorf("field %q is not part of %s", f, id.typ)
		}
	case idExactReference:
		if f := unknownFields(obj, "type", "dockerReference"); f != "" {
			return id, fmt.Errorf("field %q is not part of %s", f, id.typ)
		}
		s, err := str("dockerReference")
		if err != nil {
			return id, err
		}
		if id.ref, err = parseDockerRef(s); err != nil {
			return id, err
		}
		if id.ref.nameOnly() {
			return id, fmt.Errorf("exactReference %q needs a tag or digest (use exactRepository for a repository)", s)
		}
	case idExactRepository:
		if f := unknownFields(obj, "type", "dockerRepository"); f != "" {
			return id, fmt.Errorf("field %q is not part of %s", f, id.typ)
		}
		s, err := str("dockerRepository")
		if err != nil {
			return id, err
		}
		if id.ref, err = parseDockerRef(s); err != nil {
			return id, err
		}
		if !id.ref.nameOnly() {
			return id, fmt.Errorf("exactRepository %q must not have a tag or digest", s)
		}
	case idRemapIdentity:
		if f := unknownFields(obj, "type", "prefix", "signedPrefix"); f != "" {
			return id, fmt.Errorf("field %q is not part of %s", f, id.typ)
		}
		var err error
		if id.prefix, err = str("prefix"); err != nil {
			return id, err
		}
		if id.signedPrefix, err = str("signedPrefix"); err != nil {
			return id, err
		}
		for _, p := range []string{id.prefix, id.signedPrefix} {
			if err := validPrefix(p); err != nil {
				return id, err
			}
		}
	default:
		return id, fmt.Errorf("identity type %q is not known to ocifetch", id.typ)
	}
	return id, nil
}

// validPrefix checks a remapIdentity prefix: a host[:port], a namespace or
// a repository in the fully expanded form, without tag or digest.
func validPrefix(p string) error {
	if strings.ContainsAny(p, "@") || p != strings.TrimSpace(p) || strings.HasSuffix(p, "/") {
		return fmt.Errorf("remapIdentity prefix %q must be a host, namespace or repository", p)
	}
	host, _, hasPath := strings.Cut(p, "/")
	if !hasPath {
		if _, err := name.NewRegistry(p, name.StrictValidation); err != nil {
			return fmt.Errorf("remapIdentity prefix %q is not a valid host", p)
		}
		return nil
	}
	if !strings.ContainsAny(host, ".:") && host != "localhost" {
		return fmt.Errorf("remapIdentity prefix %q must be fully expanded (e.g. docker.io/library)", p)
	}
	r, err := parseDockerRef(p)
	if err != nil || !r.nameOnly() || r.name != p {
		return fmt.Errorf("remapIdentity prefix %q must be a fully expanded namespace or repository without tag", p)
	}
	return nil
}

// matches reports whether a signature claiming identity signed fits the
// image, whose own identity is image (nil for transports without a Docker
// reference: layouts and archives). The rules are containers-policy.json's.
func (i identityRequirement) matches(image *dockerRef, signed string) (bool, string) {
	sig, err := parseDockerRef(signed)
	if err != nil {
		return false, fmt.Sprintf("the signed identity %q is not a valid reference", signed)
	}
	needImage := func() (bool, string) {
		return false, fmt.Sprintf("%s needs the image's Docker reference, which this source does not have; use exactReference or exactRepository", i.typ)
	}
	switch i.typ {
	case idMatchExact:
		if image == nil {
			return needImage()
		}
		return !image.nameOnly() && !sig.nameOnly() && sig.String() == image.String(), "signed for " + sig.String() + ", not " + image.String()
	case idMatchRepoDigestOrExact:
		if image == nil {
			return needImage()
		}
		return matchRepoDigestOrExact(*image, sig)
	case idMatchRepository:
		if image == nil {
			return needImage()
		}
		return sig.name == image.name, "signed for repository " + sig.name + ", not " + image.name
	case idExactReference:
		return sig.String() == i.ref.String(), "signed for " + sig.String() + ", not " + i.ref.String()
	case idExactRepository:
		return sig.name == i.ref.name, "signed for repository " + sig.name + ", not " + i.ref.name
	case idRemapIdentity:
		if image == nil {
			return needImage()
		}
		want := *image
		if s := image.String(); refMatchesPrefix(s, i.prefix) {
			r, err := parseDockerRef(i.signedPrefix + s[len(i.prefix):])
			if err != nil {
				return false, fmt.Sprintf("remapping %s gives an invalid reference", s)
			}
			want = r
		}
		return matchRepoDigestOrExact(want, sig)
	}
	return false, "unknown identity type " + i.typ
}

// matchRepoDigestOrExact: a tagged image needs a signature for exactly
// that tag; an image named by digest needs one for its repository (the
// digest itself is checked against the signature's payload).
func matchRepoDigestOrExact(image, sig dockerRef) (bool, string) {
	if image.tag != "" {
		if sig.String() == image.String() {
			return true, ""
		}
		why := "signed for " + sig.String() + ", not " + image.String()
		if sig.nameOnly() && sig.name == image.name {
			why += " (the signature names only the repository, as cosign's do: use signedIdentity matchRepository, or sign with --sign-container-identity)"
		}
		return false, why
	}
	if image.digest != "" {
		return sig.name == image.name, "signed for repository " + sig.name + ", not " + image.name
	}
	return false, "the image is named without a tag or digest"
}

// refMatchesPrefix reports whether ref starts with prefix at a component
// boundary.
func refMatchesPrefix(ref, prefix string) bool {
	switch {
	case len(ref) < len(prefix):
		return false
	case len(ref) == len(prefix):
		return ref == prefix
	default:
		if !strings.HasPrefix(ref, prefix) {
			return false
		}
		c := ref[len(prefix)]
		return c == ':' || c == '/' || c == '@'
	}
}
