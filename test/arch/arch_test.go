// Package arch keeps docs/architecture.md true: every package under
// internal/ is in its package map, and imports only what its row allows.
package arch

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/tapwire/tapwire/internal/"

// rows reads the package map: package → the packages it may import.
func rows(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "docs", "architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cell := regexp.MustCompile("`([a-z0-9/]+)`")
	m := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		cols := strings.Split(sc.Text(), "|")
		if len(cols) != 5 || !strings.HasPrefix(strings.TrimSpace(cols[1]), "`") {
			continue
		}
		name := cell.FindStringSubmatch(cols[1])
		if name == nil {
			continue
		}
		var allowed []string
		for _, a := range cell.FindAllStringSubmatch(cols[3], -1) {
			allowed = append(allowed, a[1])
		}
		m[name[1]] = allowed
	}
	if len(m) < 20 {
		t.Fatalf("read %d rows of the package map in docs/architecture.md: the table's form changed", len(m))
	}
	return m
}

// helper reports whether a package is a test helper, which may import what
// it tests.
func helper(pkg string) bool {
	base := filepath.Base(pkg)
	return strings.HasSuffix(base, "test") || slices.Contains([]string{"testca", "testpg", "tests3", "testfwd", "testport"}, base)
}

func TestPackageMap(t *testing.T) {
	allowed := rows(t)
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "../../internal/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg := strings.TrimPrefix(f[0], module)
		if helper(pkg) {
			continue
		}
		may, ok := allowed[pkg]
		if !ok {
			t.Errorf("internal/%s is not in docs/architecture.md's package map: add its row", pkg)
			continue
		}
		seen++
		for _, imp := range f[1:] {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			if dep := strings.TrimPrefix(imp, module); !slices.Contains(may, dep) {
				t.Errorf("internal/%s imports internal/%s, which its row in docs/architecture.md does not allow", pkg, dep)
			}
		}
	}
	if seen != len(allowed) {
		for name := range allowed {
			if _, err := os.Stat(filepath.Join("..", "..", "internal", name)); err != nil {
				t.Errorf("docs/architecture.md lists internal/%s, which does not exist", name)
			}
		}
	}
}
