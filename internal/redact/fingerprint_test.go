package redact

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func redactorOf(t *testing.T, s Settings) *Redactor {
	t.Helper()
	r, err := s.Redactor()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestFingerprint(t *testing.T) {
	def := redactorOf(t, Settings{})
	if fp := def.Fingerprint(); len(fp) != 64 {
		t.Fatalf("fingerprint %q: want 64 hex digits", fp)
	}
	if again := redactorOf(t, Settings{Redact: "true", RedactBodies: "true"}); again.Fingerprint() != def.Fingerprint() {
		t.Error("the default settings spelled out give another fingerprint")
	}
	others := map[string]Settings{
		"bodies off":  {RedactBodies: "false"},
		"a DLP rule":  {DLPConfig: `{"id":"x","redactlist":{"entries":{"json":["ssn"]}}}`},
		"another one": {DLPConfig: `{"id":"x","redactlist":{"entries":{"json":["tax_id"]}}}`},
		"rules only":  {Redact: "false", DLPConfig: `{"id":"x","redactlist":{"entries":{"json":["ssn"]}}}`},
	}
	seen := map[string]string{def.Fingerprint(): "defaults"}
	for name, s := range others {
		fp := redactorOf(t, s).Fingerprint()
		if prev, ok := seen[fp]; ok {
			t.Errorf("%s and %s share a fingerprint", name, prev)
		}
		seen[fp] = name
	}
}

// TestFingerprintCoversTheCode: every non-test source file of the package
// is in the embedded source the fingerprint hashes, so that a change to the
// code of redaction changes the fingerprint.
func TestFingerprintCoversTheCode(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		want, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := source.ReadFile(f)
		if err != nil {
			t.Errorf("%s is not embedded: add it to fingerprint.go's go:embed line", f)
			continue
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: the embedded copy differs from the file", f)
		}
	}
}
