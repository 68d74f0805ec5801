// Package specschema validates OCI runtime bundle configs (config.json)
// against the JSON schema shipped in the runtime-spec module this project
// builds with. It is test support: it runs "go list" to find the module.
package specschema

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v5"
)

// ModulePath is the module whose schema/ directory is used.
const ModulePath = "github.com/opencontainers/runtime-spec"

var compiled struct {
	once   sync.Once
	schema *jsonschema.Schema
	err    error
}

// ValidateRuntimeConfig checks data, a runtime bundle's config.json,
// against runtime-spec's config-schema.json (draft-04). It returns nil when
// the document validates, the validation error when it does not, and an
// error saying so when the schema cannot be found or compiled.
func ValidateRuntimeConfig(data []byte) error {
	sch, err := schema()
	if err != nil {
		return err
	}
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("config.json is not JSON: %w", err)
	}
	return sch.Validate(doc)
}

// schema compiles the schema once per process.
func schema() (*jsonschema.Schema, error) {
	compiled.once.Do(func() {
		compiled.schema, compiled.err = compile()
	})
	return compiled.schema, compiled.err
}

func compile() (*jsonschema.Schema, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", ModulePath).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = strings.TrimSpace(string(ee.Stderr))
		}
		return nil, fmt.Errorf("specschema: locating %s: %v %s", ModulePath, err, stderr)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return nil, fmt.Errorf("specschema: %s is not in the module cache (go mod download %s)", ModulePath, ModulePath)
	}
	src := filepath.Join(dir, "schema")
	files, err := filepath.Glob(filepath.Join(src, "*.json"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("specschema: no schema files in %s (%v)", src, err)
	}
	// Some $refs say "defs.json#definitions/x", a pointer without its
	// leading slash that gojsonschema (runtime-spec's own validator)
	// tolerates and a strict one does not; copy the schema and fix them.
	// The copy is only needed while compiling.
	tmp, err := os.MkdirTemp("", "specschema-")
	if err != nil {
		return nil, fmt.Errorf("specschema: %w", err)
	}
	defer os.RemoveAll(tmp)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("specschema: %w", err)
		}
		b = []byte(strings.ReplaceAll(string(b), `#definitions/`, `#/definitions/`))
		if err := os.WriteFile(filepath.Join(tmp, filepath.Base(f)), b, 0o644); err != nil {
			return nil, fmt.Errorf("specschema: %w", err)
		}
	}
	// The schema files are draft-04; some of them do not say so, and
	// draft-04 is what runtime-spec's own validator uses.
	c := jsonschema.NewCompiler()
	c.Draft = jsonschema.Draft4
	path := filepath.Join(tmp, "config-schema.json")
	sch, err := c.Compile(path)
	if err != nil {
		return nil, fmt.Errorf("specschema: compiling %s: %w", filepath.Join(src, "config-schema.json"), err)
	}
	return sch, nil
}
