package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/demo"
	"github.com/tapwire/tapwire/internal/format"
	"github.com/tapwire/tapwire/internal/memtest"
	"github.com/tapwire/tapwire/internal/mock"
	"github.com/tapwire/tapwire/internal/replay"
)

// TestSpeedctlTestOnDemo is issue 13's demo check: the demo's orders service is captured while it runs
// against its HTTPS payments upstream, and exported with speedctl traffic export; then, with payments stopped, speedctl test (this binary, as
// testscript.Main puts it on $PATH) runs a fresh orders service (speedctl demo app) on mocks of that
// capture and replays the shopper's requests to it: every status as recorded, no outbound call missed,
// exit 0. The same against a build whose GET /api/orders/{id} is broken: that endpoint reported, exit 1.
func TestSpeedctlTestOnDemo(t *testing.T) {
	speedctl, err := exec.LookPath("speedctl")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rec, payments := captureDemo(t, speedctl, filepath.Join(dir, "demo"))
	if c, err := net.Dial("tcp", strings.TrimPrefix(payments, "https://")); err == nil {
		c.Close()
		t.Fatalf("the payments upstream %s still answers: the test must run without it", payments)
	}

	tests := []struct {
		name     string
		app      []string // speedctl demo app's flags beside --listen and --payments
		wantCode int
	}{
		{name: "the build that was recorded", wantCode: 0},
		{name: "a build with GET /api/orders/{id} broken", app: []string{"--broken-lookup"}, wantCode: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			addr := memtest.FreeAddr(t)
			args := []string{"--home", filepath.Join(dir, "home"), "test", "--from", rec, "--target", "http://" + addr,
				"--no-progress", "--report", filepath.Join(out, "replay.json"), "--mock-report", filepath.Join(out, "mock.json"),
				"--", speedctl, "demo", "app", "--listen", addr, "--payments", payments}
			args = append(args, tc.app...)
			stdout, stderr, code := runBinary(t, speedctl, args...)
			if code != tc.wantCode {
				t.Fatalf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.wantCode, stdout, stderr)
			}
			var rep replay.Report
			readJSON(t, filepath.Join(out, "replay.json"), &rep)
			if rep.Sent < 20 || rep.Answered != rep.Sent {
				t.Errorf("sent %d, answered %d: want at least 20, all answered", rep.Sent, rep.Answered)
			}
			for _, ep := range rep.Endpoints {
				broken := ep.Endpoint == "GET /api/orders/{}" && tc.wantCode == 1
				if got := ep.StatusMatched == ep.Sent; got == broken {
					t.Errorf("%s: %d of %d statuses as recorded, want %s", ep.Endpoint, ep.StatusMatched, ep.Sent, map[bool]string{false: "all", true: "fewer"}[broken])
				}
			}
			var sum mock.Summary
			readJSON(t, filepath.Join(out, "mock.json"), &sum)
			if sum.Matched == 0 || sum.Missed != 0 {
				t.Errorf("the mock matched %d and missed %d of the app's calls, want some and none: %+v", sum.Matched, sum.Missed, sum.Misses)
			}
			for _, want := range []string{"the app's outbound calls, answered by the mock:", "POST localhost"} {
				if !strings.Contains(stdout, want) {
					t.Errorf("stdout lacks %q:\n%s", want, stdout)
				}
			}
			if tc.wantCode == 0 {
				if !strings.Contains(stdout, "passed: 1 assertions hold") {
					t.Errorf("stdout lacks the pass:\n%s", stdout)
				}
				return
			}
			if !regexp.MustCompile(`(?m)^GET /api/orders/\{\}: \d+ answers differ\n.*\n +status: recorded "(200|404)", live "500"$`).MatchString(stdout) {
				t.Errorf("stdout does not report GET /api/orders/{} answering 500:\n%s", stdout)
			}
			if !strings.Contains(stderr, "speedctl: failed: status_match<100%") {
				t.Errorf("stderr does not say which assertion failed:\n%s", stderr)
			}
		})
	}
}

// TestSpeedctlTestAppFails: an app that exits before it answers, or never answers, ends speedctl test
// with exit status 2 and what the app printed last.
func TestSpeedctlTestAppFails(t *testing.T) {
	speedctl, err := exec.LookPath("speedctl")
	if err != nil {
		t.Fatal(err)
	}
	rec := writeRecording(t, 3)
	home := t.TempDir()
	tests := []struct {
		name  string
		flags []string
		app   string
		want  []string
	}{
		{name: "exits", app: "echo starting; echo 'config: no such file' >&2; exit 3",
			want: []string{"the app exited with status 3 before http://127.0.0.2:", "  | config: no such file"}},
		{name: "never answers", flags: []string{"--wait", "300ms"}, app: "echo listening elsewhere; exec sleep 60",
			want: []string{"did not answer within", "(--wait)", "  | listening elsewhere"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The target is on 127.0.0.2, where nothing listens: a free port of
			// 127.0.0.1 could be taken meanwhile by the mock's own listener, which
			// then answered as if it were the app (seen once in CI).
			_, port, _ := net.SplitHostPort(memtest.FreeAddr(t))
			args := append([]string{"--home", home, "test", "--from", rec, "--target", "http://127.0.0.2:" + port, "--grace", "100ms"}, tc.flags...)
			stdout, stderr, code := runBinary(t, speedctl, append(args, "--", "sh", "-c", tc.app)...)
			if code != 2 {
				t.Fatalf("exit status %d, want 2\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
			}
			for _, want := range tc.want {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr)
				}
			}
		})
	}
}

func TestSpeedctlTestUsage(t *testing.T) {
	rec := writeRecording(t, 1)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no app", []string{"--from", rec, "--target", "http://127.0.0.1:1"}, "no app: give the command"},
		{"no recording", []string{"--target", "http://127.0.0.1:1", "--", "true"}, "no recording"},
		{"no target", []string{"--from", rec, "--", "true"}, "--target"},
		{"bad on-miss", []string{"--from", rec, "--target", "http://127.0.0.1:1", "--on-miss", "drop", "--", "true"}, "want 404, 502 or passthrough"},
		{"bad flag", []string{"--from", rec, "--nope", "--", "true"}, "unknown flag"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := run(t, append([]string{"test"}, tc.args...)...)
			var ec interface{ ExitCode() int }
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, &ec) || ec.ExitCode() != 2 {
				t.Errorf("got %v, want exit status 2 and an error containing %q", err, tc.want)
			}
		})
	}
}

// captureDemo runs the demo until its hub holds 100 records, exports them with speedctl traffic export (as
// the README says), and stops the demo. It returns the file and the payments upstream's URL (stopped now).
func captureDemo(t *testing.T, speedctl, dir string) (rec, payments string) {
	t.Helper()
	s, err := demo.Start(context.Background(), demo.Config{DataDir: dir, Rate: 50, Ports: demo.Ports{}, Out: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := s.Stats(context.Background())
		if err == nil && st.Stored >= 100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the demo's hub holds %d records after 60 s (%v), want 100", st.Stored, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	rec = filepath.Join(dir, "orders.jsonl")
	if stdout, stderr, code := runBinary(t, speedctl, "--home", dir, "traffic", "export", "--format", "jsonl", "-o", rec); code != 0 {
		t.Fatalf("traffic export: exit status %d\n%s%s", code, stdout, stderr)
	}
	payments = s.UpstreamURL
	if _, _, err := s.Stop(); err != nil { // payments stops with the rest
		t.Fatal(err)
	}
	lookups := 0
	err = format.ReadPath(rec, func(r *capture.Record) error {
		if r.Direction == capture.DirIn && r.HTTP != nil && r.HTTP.Req.Method == "GET" && strings.Contains(r.HTTP.Req.URL, "/api/orders/") {
			lookups++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if lookups == 0 {
		t.Fatal("the capture has no GET /api/orders/{id}: the endpoint to break")
	}
	return rec, payments
}

// runBinary runs the binary and returns its output and exit status.
func runBinary(t *testing.T, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
