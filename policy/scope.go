package policy

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Transports this package matches images against. Other transport names a
// policy has (docker-daemon, containers-storage, dir, ...) are accepted and
// never match: ocifetch reads no images from those.
const (
	transportDocker        = "docker"
	transportOCI           = "oci"
	transportOCIArchive    = "oci-archive"
	transportDockerArchive = "docker-archive"
)

// image is what the policy knows of an image before it is admitted.
type image struct {
	transport string
	// scopes are the scope names that match the image, most specific
	// first, not counting the transport default "".
	scopes []string
	// docker is the image's Docker reference; nil for layouts and
	// archives, whose signatures can only be matched with exactReference
	// or exactRepository.
	docker *dockerRef
}

// imageOf reads the transport and identity of a reference as resolve
// normalizes it: "host/repo:tag", "host/repo@digest", "oci:/abs/dir:tag",
// "oci:/abs/dir@digest", "oci-archive:/abs/file...", "docker-archive:...".
func imageOf(ref string) (image, error) {
	switch {
	case strings.HasPrefix(ref, "oci:"):
		return pathImage(transportOCI, strings.TrimPrefix(ref, "oci:")), nil
	case strings.HasPrefix(ref, "oci-archive:"):
		return pathImage(transportOCIArchive, strings.TrimPrefix(ref, "oci-archive:")), nil
	case strings.HasPrefix(ref, "docker-archive:"):
		// containers/image gives docker-archive no scopes but "".
		return image{transport: transportDockerArchive}, nil
	}
	r, err := parseDockerRef(strings.TrimPrefix(ref, "docker://"))
	if err != nil {
		return image{}, err
	}
	return image{transport: transportDocker, scopes: dockerScopes(r), docker: &r}, nil
}

// dockerScopes lists the docker transport's scopes for r, as
// containers/image does: the reference itself (with its tag or digest),
// the repository, each parent namespace, the host, then "*.domain"
// wildcards for the host's parent domains.
func dockerScopes(r dockerRef) []string {
	var out []string
	if !r.nameOnly() {
		out = append(out, r.String())
	}
	n := r.name
	for {
		out = append(out, n)
		i := strings.LastIndex(n, "/")
		if i < 0 {
			break
		}
		n = n[:i]
	}
	if i := strings.LastIndex(n, ":"); i >= 0 {
		n = n[:i] // wildcards match host names, without the port
	}
	for {
		i := strings.Index(n, ".")
		if i < 0 {
			break
		}
		n = n[i+1:]
		out = append(out, "*."+n)
	}
	return out
}

// pathImage gives a layout or archive its scopes as containers/image
// does: "DIR:NAME" when a name is given, then DIR and each parent
// directory (never "/"). DIR has its symlinks resolved, so a scope names
// the directory itself, whichever link led to it.
//
// The reference splits as resolve splits it: a trailing "@ALG:HEX" is a
// digest, then the first ':' ends the path. A name holds colons and
// slashes ("oci:STORE:127.0.0.1:5000/repo:tag", as the store names its
// images); splitting at another colon took part of the name for the
// directory, so no scope of the real directory matched and the image fell
// to default: a policy rejecting STORE admitted it.
func pathImage(transport, spec string) image {
	rest := spec
	if i := strings.LastIndex(rest, "@"); i >= 0 && strings.Contains(rest[i+1:], ":") {
		rest = rest[:i]
	}
	dir, tag, _ := strings.Cut(rest, ":")
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	img := image{transport: transport}
	if tag != "" {
		img.scopes = append(img.scopes, dir+":"+tag)
	}
	for p := dir; p != "/" && p != "." && p != ""; p = filepath.Dir(p) {
		img.scopes = append(img.scopes, p)
	}
	return img
}

// validScope checks a scope name of a transport this package matches;
// containers/image refuses the whole policy for an invalid one, and so do
// we: a scope that can never match would silently let its images fall to
// a wider, perhaps more permissive, scope.
func validScope(transport, scope string) error {
	if scope == "" {
		return nil
	}
	switch transport {
	case transportDocker:
		if w, ok := strings.CutPrefix(scope, "*."); ok {
			if w == "" || strings.ContainsAny(w, "*/:@") {
				return fmt.Errorf("scope %q: a wildcard is \"*.\" followed by a domain", scope)
			}
			return nil
		}
		if strings.Contains(scope, "*") {
			return fmt.Errorf("scope %q: only a leading \"*.\" is allowed", scope)
		}
		r, err := parseDockerRef(scope)
		if err != nil {
			return fmt.Errorf("scope %q: %v", scope, err)
		}
		host, _, _ := strings.Cut(scope, "/")
		if !strings.Contains(scope, "/") {
			// A bare host: parseDockerRef took it for a repository of
			// docker.io.
			if strings.ContainsAny(scope, "@") {
				return fmt.Errorf("scope %q is not a host, namespace, repository or reference", scope)
			}
			return nil
		}
		if r.String() != scope || (!strings.ContainsAny(host, ".:") && host != "localhost") {
			return fmt.Errorf("scope %q must be in the fully expanded form (%s)", scope, r)
		}
	case transportOCI, transportOCIArchive:
		dir, _, _ := strings.Cut(scope, ":")
		if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir || dir == "/" {
			return fmt.Errorf("scope %q must be an absolute, clean directory path other than \"/\"", scope)
		}
	case transportDockerArchive:
		return fmt.Errorf("scope %q: docker-archive has no scopes but \"\"", scope)
	}
	return nil
}

// lookup returns the requirements that apply to img and names the scope
// that holds them, for messages.
func (p *Policy) lookup(img image) ([]requirement, string) {
	if scopes, ok := p.transports[img.transport]; ok {
		for _, s := range img.scopes {
			if reqs, ok := scopes[s]; ok {
				return reqs, fmt.Sprintf("transports.%s[%q]", img.transport, s)
			}
		}
		if reqs, ok := scopes[""]; ok {
			return reqs, fmt.Sprintf("transports.%s[\"\"]", img.transport)
		}
	}
	return p.def, "default"
}
