package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/format/jsonl"
)

// writeRecording writes n inbound records of GET /items/N (answered {"id":N}) as our JSONL.
func writeRecording(t *testing.T, n int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "orders.jsonl")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := jsonl.NewWriter(f)
	for i := range n {
		body := fmt.Sprintf(`{"id":%d}`, i)
		r := &capture.Record{Schema: 1, ID: capture.NewID(), Kind: capture.KindHTTP, Direction: capture.DirIn,
			Start: time.Date(2025, 2, 11, 21, 0, i, 0, time.UTC), Labels: capture.Labels{Service: "orders"},
			HTTP: &capture.HTTP{
				Req: capture.Request{Method: "GET", URL: fmt.Sprintf("http://orders:4143/items/%d", i), Proto: "HTTP/1.1", Host: "orders:4143"},
				Res: &capture.Response{Status: 200, Body: capture.Body{Data: []byte(body), Size: int64(len(body))}},
			}}
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// items answers GET /items/N with {"id":N}, or with {"id":N,"v":2} when changed.
func items(changed bool) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := strings.CutPrefix(r.URL.Path, "/items/")
		if !ok {
			http.NotFound(w, r)
			return
		}
		if changed {
			fmt.Fprintf(w, `{"id":%s,"v":2}`, id)
			return
		}
		fmt.Fprintf(w, `{"id":%s}`, id)
	}))
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ec interface{ ExitCode() int }
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return 1
}

func TestReplayExitStatus(t *testing.T) {
	rec := writeRecording(t, 30)
	same, changed := items(false), items(true)
	defer same.Close()
	defer changed.Close()
	other := httptest.NewServer(http.NotFoundHandler())
	defer other.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"same build", []string{"--target", same.URL}, 0, "passed: 1 assertions hold"},
		{"changed bodies, status asserted", []string{"--target", changed.URL}, 0, "body.v"},
		{"changed bodies, body asserted", []string{"--target", changed.URL, "--fail-if", "body_match<100%"}, 1, "failed: body_match<100% (0)"},
		{"two conditions", []string{"--target", same.URL, "--fail-if", "errors>0,p99>10s"}, 0, "passed: 3 assertions"},
		{"another service", []string{"--target", other.URL}, 1, "is it the service that was recorded?"},
		{"unreachable", []string{"--target", closed}, 2, "target unreachable"},
		{"no target", nil, 2, "--target"},
		{"bad condition", []string{"--target", same.URL, "--fail-if", "p99>fast"}, 2, "not a number"},
		{"bad flag", []string{"--target", same.URL, "--rate", "x"}, 2, "invalid argument"},
		{"bad timing", []string{"--target", same.URL, "--timing", "fast"}, 2, "--timing"},
		{"missing recording", []string{"--target", same.URL, "--from", "/nonexistent"}, 2, "nonexistent"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"replay", "--from", rec, "--no-progress"}, tc.args...)
			out, err := run(t, args...)
			if got := exitCode(err); got != tc.code {
				t.Errorf("exit status %d (%v), want %d\n%s", got, err, tc.code, out)
			}
			if all := out + fmt.Sprint(err); !strings.Contains(all, tc.want) {
				t.Errorf("output and error lack %q:\n%s\n%v", tc.want, out, err)
			}
		})
	}
}

func TestReplayReportFile(t *testing.T) {
	rec := writeRecording(t, 10)
	srv := items(true)
	defer srv.Close()
	report := filepath.Join(t.TempDir(), "report.json")
	out, err := run(t, "replay", "--from", rec, "--target", srv.URL, "--no-progress", "--rate", "100", "--report", report)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"GET /items/{}", "10 sent, 10 answered, 0 errors", "e.g. GET /items/0"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var rep map[string]any
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"sent", "answered", "errors", "status_matched", "body_matched", "latency_ms", "rps", "diffs"} {
		if _, ok := rep[k]; !ok {
			t.Errorf("report lacks %q", k)
		}
	}
	if rep["sent"] != 10.0 || rep["body_matched"] != 0.0 || rep["passed"] != true {
		t.Errorf("sent %v, body_matched %v, passed %v; want 10, 0, true", rep["sent"], rep["body_matched"], rep["passed"])
	}
}
