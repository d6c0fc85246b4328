//go:build !linux

package e2e

import (
	"os"
	"runtime"
	"testing"
)

// TestGuide needs Linux network namespaces.
func TestGuide(t *testing.T) {
	reason := "the end-to-end test needs Linux network namespaces; this is " + runtime.GOOS
	if os.Getenv("TAPWIRE_REQUIRE_TOOLS") != "" {
		t.Fatal(reason)
	}
	t.Skip(reason)
}
