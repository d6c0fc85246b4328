package goproxy

import (
	"bytes"
	"errors"
	"flag"
	"regexp"
	"strings"
	"testing"
)

// TestHelpPlaceholders: every flag that takes a value names it (-in-port
// port, -body-limit size), never the flag package's "value".
func TestHelpPlaceholders(t *testing.T) {
	var out bytes.Buffer
	if _, err := Load([]string{"-help"}, func(string) string { return "" }, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("Load -help: %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"-in-port port\n", "-body-limit size\n", "(size, default 1MiB) [$BODY_CAPTURE_LIMIT]",
		"-read-header-timeout duration\n", "-tls-leaf-cache n\n", "-forwarder address\n", "-tls-out-extra-ca file\n", "-capture\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
	if m := regexp.MustCompile(`(?m)^  -\S+ (value|string)$`).FindAllString(out.String(), -1); m != nil {
		t.Errorf("flags without a named placeholder: %q", m)
	}
}
