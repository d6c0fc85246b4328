package mock

import (
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestChild(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the commands are POSIX shell")
	}
	tests := []struct {
		name     string
		script   string
		stop     bool // Stop it once it printed "ready"
		wantCode int
		wantTail string
	}{
		{name: "exit status", script: "echo out; echo err >&2; exit 3", wantCode: 3, wantTail: "err\n"},
		{name: "tail keeps the last lines", script: "i=0; while [ $i -lt 200 ]; do echo line $i; i=$((i+1)); done", wantTail: "line 199\n"},
		{name: "stop: SIGTERM", script: "echo ready; exec sleep 60", stop: true, wantCode: 128 + 15},
		// The shell and its sleep ignore SIGTERM; the group is killed after the grace period.
		{name: "stop: SIGKILL after the grace", script: `trap "" TERM; echo ready; sleep 60; echo not killed`, stop: true, wantCode: 128 + 9},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := StartChild([]string{"sh", "-c", tc.script}, ChildOptions{Env: os.Environ(), Tail: 200, Group: true})
			if err != nil {
				t.Fatal(err)
			}
			if tc.stop {
				deadline := time.Now().Add(30 * time.Second)
				for !strings.Contains(c.Tail(), "ready") {
					if time.Now().After(deadline) {
						c.Stop(0)
						t.Fatalf("the child did not print ready: %q", c.Tail())
					}
					time.Sleep(10 * time.Millisecond)
				}
				code, err := c.Stop(200 * time.Millisecond)
				if err != nil || code != tc.wantCode {
					t.Errorf("Stop: got %d, %v; want %d", code, err, tc.wantCode)
				}
			}
			code, err := c.Status()
			if err != nil || code != tc.wantCode {
				t.Errorf("Status: got %d, %v; want %d", code, err, tc.wantCode)
			}
			if got := c.Tail(); !strings.HasSuffix(got, tc.wantTail) || len(got) > 200 || strings.Contains(got, "not killed") {
				t.Errorf("Tail: got %q, want at most 200 bytes ending in %q", got, tc.wantTail)
			}
		})
	}
	if _, err := StartChild([]string{"/nonexistent/app"}, ChildOptions{}); err == nil {
		t.Error("StartChild of a missing command: got no error")
	}
}
