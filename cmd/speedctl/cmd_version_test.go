package main

import (
	"runtime/debug"
	"testing"
)

func TestVersionLine(t *testing.T) {
	rev := []debug.BuildSetting{{Key: "vcs.revision", Value: "4b579c01833a1234567890abcdef"}}
	for _, tt := range []struct {
		name    string
		version string
		bi      *debug.BuildInfo
		want    string
	}{
		{"no build info", "dev", nil, "speedctl dev (go1.26.8 linux/amd64)"},
		{"set at link time", "v1.2.3", &debug.BuildInfo{Settings: rev}, "speedctl v1.2.3 (4b579c01833a, go1.26.8 linux/amd64)"},
		{"module version, dirty", "dev", &debug.BuildInfo{
			Main:     debug.Module{Version: "v0.0.0-20261206-4b579c01833a+dirty"},
			Settings: append(rev, debug.BuildSetting{Key: "vcs.modified", Value: "true"}),
		}, "speedctl v0.0.0-20261206-4b579c01833a+dirty (4b579c01833a+dirty, go1.26.8 linux/amd64)"},
		{"devel, clean", "dev", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: rev}, "speedctl dev (4b579c01833a, go1.26.8 linux/amd64)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := versionLine(tt.version, tt.bi, "go1.26.8", "linux/amd64"); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
