package resolve_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every layout in testdata/validate breaks the rule its name starts with.
func TestValidateCatchesEachRule(t *testing.T) {
	t.Parallel()
	dirs, err := os.ReadDir("../testdata/validate")
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) < 10 {
		t.Fatalf("only %d bad layouts", len(dirs))
	}
	for _, d := range dirs {
		rule, _, _ := strings.Cut(d.Name(), "-")
		t.Run(d.Name(), func(t *testing.T) {
			problems := validateRef(t, "oci:"+filepath.Join("../testdata/validate", d.Name())+":bad")
			found := false
			for _, p := range problems {
				if p.Rule == rule {
					found = true
				}
				if p.Where == "" || p.Message == "" || strings.Contains(p.Message, "\n") {
					t.Errorf("malformed problem %+v", p)
				}
			}
			if !found {
				t.Fatalf("no %q problem among %v", rule, problems)
			}
		})
	}
}

func TestValidateAcceptsGoodImages(t *testing.T) {
	t.Parallel()
	for _, ref := range []string{"oci:../testdata/layouts/multiarch:latest"} {
		if problems := validateRef(t, ref); len(problems) != 0 {
			t.Fatalf("%s: %v", ref, problems)
		}
	}
}
