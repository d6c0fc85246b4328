package proxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// knownH2specFailures are the h2spec cases the inbound HTTP/2 listener
// fails, each with its reason; docs/http2.md explains them. A new failure
// fails the test; a known one that starts passing is reported so the list
// shrinks.
var knownH2specFailures = map[string]string{
	"Sends invalid connection preface":                                                             "the cleartext listener also serves HTTP/1.1: h2spec's \"INVALID CONNECTION PREFACE\" is a well-formed HTTP/1 request line, answered 400 as HTTP/1.1 requires",
	"Sends a large size HEADERS frame that exceeds the SETTINGS_MAX_FRAME_SIZE":                    "Go's HTTP/2 server accepts an oversized HEADERS frame instead of a FRAME_SIZE_ERROR",
	"Sends multiple values of SETTINGS_INITIAL_WINDOW_SIZE":                                        "Go's HTTP/2 server validates each value as it reads it and closes the connection on the first out-of-range one",
	"Sends a HEADERS frame that contains the connection-specific header field":                     "Go's HTTP/2 server refuses the request with a 400 response rather than a PROTOCOL_ERROR stream reset; it never reaches the app",
	`Sends a HEADERS frame that contains the TE header field with any value other than "trailers"`: "as above: refused with 400, not a stream reset",
}

func findTool(name string) string {
	for _, dir := range []string{os.Getenv("TAPWIRE_TOOLS"), filepath.Join(os.Getenv("HOME"), ".cache", "tapwire", "bin")} {
		if dir == "" {
			continue
		}
		if p := filepath.Join(dir, name); fileExists(p) {
			return p
		}
	}
	p, _ := exec.LookPath(name)
	return p
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func TestH2Spec(t *testing.T) {
	h2spec := findTool("h2spec")
	if h2spec == "" {
		if os.Getenv("TAPWIRE_REQUIRE_TOOLS") != "" {
			t.Fatal("h2spec is not installed; scripts/deps.d/h2spec installs it")
		}
		t.Skip("h2spec is not installed (scripts/deps.d/h2spec)")
	}
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, strings.Repeat("h2spec body ", 256))
	}))
	defer backend.Close()
	addr, rec := startInbound(t, backend.URL, true, Options{})
	drained := make(chan struct{})
	defer close(drained)
	go func() { // drain records
		for {
			select {
			case <-rec.ch:
			case <-drained:
				return
			}
		}
	}()
	host, port, _ := strings.Cut(addr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, _ := exec.CommandContext(ctx, h2spec, "-h", host, "-p", port, "-o", "5").CombinedOutput()
	summary := regexp.MustCompile(`(\d+) tests, (\d+) passed, (\d+) skipped, (\d+) failed`).FindStringSubmatch(string(out))
	if summary == nil {
		t.Fatalf("h2spec did not finish:\n%s", out)
	}
	// The failure list repeats at the end of the output; take each name once.
	failed := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+× \d+: (.+)$`).FindAllStringSubmatch(string(out), -1) {
		failed[strings.TrimSpace(m[1])] = true
	}
	var unexpected []string
	for name := range failed {
		if _, ok := knownH2specFailures[name]; !ok {
			unexpected = append(unexpected, name)
		}
	}
	sort.Strings(unexpected)
	for _, name := range unexpected {
		t.Errorf("h2spec: new failure %q", name)
	}
	for name := range knownH2specFailures {
		if !failed[name] {
			t.Logf("h2spec: %q passes now; remove it from knownH2specFailures and docs/http2.md", name)
		}
	}
	t.Logf("h2spec: %s tests, %s passed, %s failed (%d known)", summary[1], summary[2], summary[4], len(knownH2specFailures))
	if t.Failed() {
		t.Logf("h2spec output:\n%s", out)
	}
}
