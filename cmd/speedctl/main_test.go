package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestCertsCreateThenCheck(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "my ca")
	out, err := run(t, "certs", "create", "--dir", dir, "--key", "ECDSA", "--days", "90")
	if err != nil {
		t.Fatalf("create: %v\n%s", err, out)
	}
	crt := filepath.Join(dir, "tls.crt")
	for _, want := range []string{
		"aws secretsmanager create-secret --name tls.crt --secret-string file://'" + crt + "'",
		"aws secretsmanager create-secret --name tls.key --secret-string file://'" + filepath.Join(dir, "tls.key") + "'",
		"SSL_CERT_FILE=/etc/ssl/speedscale/tls.crt",
		"TLS_OUT_UNWRAP=true",
		"ECDSA P-256",
		"CN=Tapwire Capture CA",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("create output lacks %q:\n%s", want, out)
		}
	}

	out, err = run(t, "certs", "check", dir)
	if err != nil {
		t.Fatalf("check: %v\n%s", err, out)
	}
	if !strings.HasPrefix(out, "OK: "+dir+" will work as TLS_CERT_DIR") || !strings.Contains(out, "ECDSA P-256") || !strings.Contains(out, "days left") {
		t.Errorf("check output:\n%s", out)
	}

	if _, err := run(t, "certs", "create", "--dir", dir, "--key", "ecdsa"); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("create over existing files: %v, want a refusal naming --force", err)
	}
}

func TestCertsErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"certs", "check", filepath.Join(dir, "missing")}, "will not work as TLS_CERT_DIR: CA directory"},
		{[]string{"certs", "check", dir}, "will not work as TLS_CERT_DIR"},
		{[]string{"certs", "create", "--dir", dir, "--key", "dsa"}, `key type "dsa"`},
		{[]string{"certs", "check", "a", "b"}, "accepts at most 1 arg"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, err := run(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("failed commands left %d files", len(entries))
	}
}

func TestVersionAndHelp(t *testing.T) {
	out, err := run(t, "version")
	if err != nil || !strings.HasPrefix(out, "speedctl ") || !strings.Contains(out, "go1.") {
		t.Errorf("version: %q %v", out, err)
	}
	for _, args := range [][]string{{"--help"}, {"certs", "--help"}, {"certs", "create", "--help"}, {"certs", "check", "--help"}} {
		out, err := run(t, args...)
		if err != nil || !strings.Contains(out, "tls.crt") || strings.Contains(strings.ToLower(out), "not implemented") {
			t.Errorf("%v: %v\n%s", args, err, out)
		}
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{"tls.crt": "tls.crt", "/a b/tls.crt": "'/a b/tls.crt'", "it's": `'it'\''s'`} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %q, want %q", in, got, want)
		}
	}
}
