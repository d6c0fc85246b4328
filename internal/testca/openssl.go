package testca

import (
	"os"
	"os/exec"
	"testing"
)

// GuideCommands are the deployment guide's two openssl commands that make
// the CA (RSA 4096, self-signed, one year), run in the target directory.
var GuideCommands = [][]string{
	{"genrsa", "-out", "tls.key", "4096"},
	{"req", "-new", "-key", "tls.key", "-x509", "-days", "365", "-out", "tls.crt", "-subj", "/C=US/ST=Georgia/L=Atlanta/O=Speedscale/CN=speedscale.com"},
}

// OpenSSLGuideCA writes tls.crt and tls.key into dir with the guide's exact
// openssl commands. Without openssl the test is skipped, or fails when
// TAPWIRE_REQUIRE_TOOLS is set (the README's test command sets it).
// Generating the RSA-4096 key takes about a second.
func OpenSSLGuideCA(t testing.TB, dir string) {
	t.Helper()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("TAPWIRE_REQUIRE_TOOLS") != "" {
			t.Fatalf("openssl is not installed; scripts/install-test-deps installs it")
		}
		t.Skipf("openssl is not installed (run scripts/install-test-deps)")
	}
	for _, args := range GuideCommands {
		cmd := exec.Command(openssl, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
	}
}
