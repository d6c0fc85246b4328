package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print speedctl's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bi, _ := debug.ReadBuildInfo()
			fmt.Fprintln(cmd.OutOrStdout(), versionLine(version, bi, runtime.Version(), runtime.GOOS+"/"+runtime.GOARCH))
			return nil
		},
	}
}

// versionLine is speedctl's version as `speedctl version` prints it:
// "speedctl v0.1.0 (4b579c01833a+dirty, go1.26.8 linux/amd64)", the
// revision (+dirty for a modified tree) only when the build recorded it.
// bi may be nil.
func versionLine(v string, bi *debug.BuildInfo, goVersion, platform string) string {
	var parts []string
	if bi != nil {
		var rev, dirty string
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && len(s.Value) >= 12:
				rev = s.Value[:12]
			case s.Key == "vcs.modified" && s.Value == "true":
				dirty = "+dirty"
			}
		}
		if rev != "" {
			parts = append(parts, rev+dirty)
		}
		if v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
	}
	parts = append(parts, goVersion+" "+platform)
	return fmt.Sprintf("speedctl %s (%s)", v, strings.Join(parts, ", "))
}
