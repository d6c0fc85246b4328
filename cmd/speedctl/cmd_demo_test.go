package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/tapwire/tapwire/internal/demo"
)

// TestDemoFlags: the flags become the demo's configuration; only the ports
// given on the command line are pinned (busy is then an error), the others
// may move.
func TestDemoFlags(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args       []string
		wantPinned []string
		wantPorts  demo.Ports
		wantRate   float64
		wantFor    time.Duration
	}{
		{"defaults", []string{"demo"}, nil, demo.DefaultPorts(), 5, 0},
		{"capture", []string{"capture", "3000", "--forwarder-port", "9888", "--upstream-ca", "ca.pem"}, []string{"--forwarder-port"},
			func() demo.Ports { p := demo.DefaultPorts(); p.Forwarder, p.App, p.Upstream = 9888, 0, 0; return p }(), 0, 0},
		{"some ports", []string{"demo", "--hub-port", "8090", "--in-port=0", "--rate", "12.5", "--for", "30s"},
			[]string{"--hub-port", "--in-port"}, func() demo.Ports { p := demo.DefaultPorts(); p.Hub, p.In = 8090, 0; return p }(), 12.5, 30 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got demo.Config
			defer func(f func(*cobra.Command, demo.Config) error) { runStack = f }(runStack)
			runStack = func(_ *cobra.Command, cfg demo.Config) error { got = cfg; return nil }
			root := newRootCmd()
			root.SetArgs(tc.args)
			if err := root.Execute(); err != nil {
				t.Fatal(err)
			}
			if got.Ports != tc.wantPorts || got.Rate != tc.wantRate || got.For != tc.wantFor {
				t.Errorf("ports %+v, rate %g, for %s; want %+v, %g, %s", got.Ports, got.Rate, got.For, tc.wantPorts, tc.wantRate, tc.wantFor)
			}
			if tc.name == "capture" && (got.AppPort != 3000 || got.Service != "app" || got.UpstreamCA != "ca.pem") {
				t.Errorf("capture: app port %d, service %q, upstream CA %q; want 3000, app, ca.pem", got.AppPort, got.Service, got.UpstreamCA)
			}
			if tc.name != "capture" && got.AppPort != 0 {
				t.Errorf("demo: app port %d, want 0", got.AppPort)
			}
			if len(got.Pinned) != len(tc.wantPinned) {
				t.Errorf("pinned %v, want %v", got.Pinned, tc.wantPinned)
			}
			for _, p := range tc.wantPinned {
				if !got.Pinned[p] {
					t.Errorf("pinned %v, want %s in it", got.Pinned, p)
				}
			}
		})
	}
}

// TestSelf: the hints name speedctl as the user can call it.
func TestSelf(t *testing.T) {
	defer func(a string) { os.Args[0] = a }(os.Args[0])
	bin := t.TempDir()
	exe := filepath.Join(bin, "speedctl")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	for _, tc := range []struct{ arg0, want string }{
		{"speedctl", "speedctl"},
		{"/tmp/go-build123/b001/exe/speedctl", "go run ./cmd/speedctl"},
		{"bin/speedctl", "bin/speedctl"},
		{exe, "speedctl"}, // the one on $PATH
		{"/opt/other/speedctl", "/opt/other/speedctl"},
	} {
		os.Args[0] = tc.arg0
		if got := self(); got != tc.want {
			t.Errorf("self() with os.Args[0] = %q: %q, want %q", tc.arg0, got, tc.want)
		}
	}
}
