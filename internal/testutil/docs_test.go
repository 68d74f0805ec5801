package testutil

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// citedTest finds the names of tests, benchmarks, fuzz targets and
// examples in prose: docs/security.md pairs each attack with its test,
// docs/performance.md each figure with its benchmark.
var citedTest = regexp.MustCompile(`\b(?:Test|Benchmark|Fuzz|Example)[A-Z_][A-Za-z0-9_]*`)

// TestDocsCiteExistingTests fails when docs/*.md or the README name a
// test function no _test.go file of the module declares: a test renamed
// or removed leaves its documentation pointing at nothing.
func TestDocsCiteExistingTests(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "..")
	declared := map[string]bool{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || d.Name() == "third_party" || strings.HasPrefix(d.Name(), ".")) && p != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			if fn, ok := decl.(*ast.FuncDecl); ok && fn.Recv == nil {
				declared[fn.Name.Name] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(declared) < 100 {
		t.Fatalf("only %d test functions found under %s", len(declared), root)
	}
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil || len(docs) == 0 {
		t.Fatalf("no docs/*.md: %v", err)
	}
	cited := 0
	for _, p := range append(docs, filepath.Join(root, "README.md")) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var missing []string
		for _, name := range citedTest.FindAllString(string(b), -1) {
			cited++
			if !declared[name] && !slices.Contains(missing, name) {
				missing = append(missing, name)
			}
		}
		if len(missing) > 0 {
			t.Errorf("%s cites tests that do not exist: %s", filepath.Base(p), strings.Join(missing, ", "))
		}
	}
	if cited == 0 {
		t.Error("no test cited in the docs: the pattern finds nothing")
	}
}
