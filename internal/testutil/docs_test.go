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

// TestArchitectureNamesEveryPackage holds docs/architecture.md's package
// table to the tree: every directory with Go files has a row that names
// it (`dir`, or `prefix/...` for a folder of them) and every row names a
// directory that exists, so a package added, moved or removed shows up
// here rather than in a reader's confusion.
func TestArchitectureNamesEveryPackage(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "..")
	b, err := os.ReadFile(filepath.Join(root, "docs", "architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(b), "\n## Packages\n")
	if !ok {
		t.Fatal("docs/architecture.md has no Packages section")
	}
	table, _, _ = strings.Cut(table, "\n## ")
	named := regexp.MustCompile("`([^`]+)`")
	var exact, prefixes []string
	for _, line := range strings.Split(table, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cell, _, _ := strings.Cut(strings.TrimPrefix(line, "|"), "|")
		for _, m := range named.FindAllStringSubmatch(cell, -1) {
			switch name := m[1]; {
			case name == "ocifetch":
				exact = append(exact, ".")
			case strings.HasSuffix(name, "/..."):
				prefixes = append(prefixes, strings.TrimSuffix(name, "..."))
			default:
				exact = append(exact, name)
			}
		}
	}
	if len(exact) < 20 {
		t.Fatalf("only %d packages named in the table: %q", len(exact), exact)
	}
	dirs := map[string]bool{}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != root && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".go") {
			rel, err := filepath.Rel(root, filepath.Dir(p))
			if err != nil {
				return err
			}
			dirs[filepath.ToSlash(rel)] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for dir := range dirs {
		if !slices.Contains(exact, dir) && !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(dir, p) }) {
			t.Errorf("package %s has no row in docs/architecture.md's package table", dir)
		}
	}
	for _, name := range exact {
		if !dirs[name] {
			t.Errorf("docs/architecture.md's package table names %s, which has no Go files", name)
		}
	}
	for _, p := range prefixes {
		found := false
		for dir := range dirs {
			found = found || strings.HasPrefix(dir, p)
		}
		if !found {
			t.Errorf("docs/architecture.md's package table names %s..., under which there are no Go files", p)
		}
	}
}
