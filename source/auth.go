package source

import (
	"context"
	"io"
	"os"
	"path/filepath"

	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/configfile"
	"github.com/docker/cli/cli/config/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/ocifetch/ocifetch/errdefs"
)

// fileKeychain reads credentials from a Docker-config-format file,
// including its credsStore and credHelpers. With path "" it finds the file
// as Docker and Podman do: $DOCKER_CONFIG/config.json or
// ~/.docker/config.json, else $REGISTRY_AUTH_FILE, else Podman's
// containers/auth.json under $XDG_RUNTIME_DIR or $XDG_CONFIG_HOME; none of
// them means anonymous. A file that exists but cannot be parsed is the
// user's to fix: invalid_argument, not unauthorized.
type fileKeychain struct{ path string }

func (k fileKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	return k.ResolveContext(context.Background(), r)
}

func (k fileKeychain) ResolveContext(_ context.Context, r authn.Resource) (authn.Authenticator, error) {
	path := k.path
	if path == "" {
		path = findConfigFile()
		if path == "" {
			return authn.Anonymous, nil
		}
	}
	cf, err := loadConfigFile(path)
	if err != nil {
		return nil, err
	}
	var empty types.AuthConfig
	for _, key := range []string{r.String(), r.RegistryStr()} {
		if key == name.DefaultRegistry {
			key = authn.DefaultAuthKey // Docker Hub's historical key
		}
		cfg, err := cf.GetAuthConfig(key)
		if err != nil {
			// a credential helper failed
			return nil, errdefs.Wrap(err, errdefs.ErrUnauthorized, "credentials for %s", key)
		}
		cfg.ServerAddress = ""
		if cfg != empty {
			return authn.FromConfig(authn.AuthConfig{
				Username: cfg.Username, Password: cfg.Password, Auth: cfg.Auth,
				IdentityToken: cfg.IdentityToken, RegistryToken: cfg.RegistryToken,
			}), nil
		}
	}
	return authn.Anonymous, nil
}

func loadConfigFile(path string) (*configfile.ConfigFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "reading credentials file %s", path)
	}
	defer f.Close()
	cf, err := config.LoadFromReader(io.LimitReader(f, 16<<20))
	if err != nil {
		return nil, errdefs.Wrap(err, errdefs.ErrInvalidArgument, "parsing credentials file %s", path)
	}
	cf.Filename = path
	return cf, nil
}

// files lists the files the keychain reads: the one given, the first of
// the default ones that exists, or, when none does, every default one, as
// messages name them ("looked in ...").
func (k fileKeychain) files() []string {
	if k.path != "" {
		return []string{k.path}
	}
	if p := findConfigFile(); p != "" {
		return []string{p}
	}
	return configCandidates()
}

func findConfigFile() string {
	for _, c := range configCandidates() {
		if fi, err := os.Stat(c); err == nil && !fi.IsDir() {
			return c
		}
	}
	return ""
}

// configCandidates are the credentials files Docker and Podman read, in
// the order they are tried.
func configCandidates() []string {
	var candidates []string
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		candidates = append(candidates, filepath.Join(d, "config.json"))
	}
	home, _ := os.UserHomeDir()
	if home != "" {
		candidates = append(candidates, filepath.Join(home, ".docker", "config.json"))
	}
	if p := os.Getenv("REGISTRY_AUTH_FILE"); p != "" {
		candidates = append(candidates, filepath.Clean(p))
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		candidates = append(candidates, filepath.Join(d, "containers", "auth.json"))
	}
	cfgDir := os.Getenv("XDG_CONFIG_HOME")
	if cfgDir == "" && home != "" {
		cfgDir = filepath.Join(home, ".config")
	}
	if cfgDir != "" {
		candidates = append(candidates, filepath.Join(cfgDir, "containers", "auth.json"))
	}
	return candidates
}
