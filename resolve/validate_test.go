package resolve_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocifetch/ocifetch/resolve"
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
			src, err := resolve.Open(context.Background(), "oci:"+filepath.Join("../testdata/validate", d.Name())+":bad")
			if err != nil {
				t.Fatal(err)
			}
			problems, err := resolve.Validate(context.Background(), src)
			if err != nil {
				t.Fatal(err)
			}
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
		src, err := resolve.Open(context.Background(), ref)
		if err != nil {
			t.Fatal(err)
		}
		problems, err := resolve.Validate(context.Background(), src)
		if err != nil || len(problems) != 0 {
			t.Fatalf("%s: %v %v", ref, err, problems)
		}
	}
}
