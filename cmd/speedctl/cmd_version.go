package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print speedctl's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var rev, dirty string
			if bi, ok := debug.ReadBuildInfo(); ok {
				for _, s := range bi.Settings {
					switch {
					case s.Key == "vcs.revision" && len(s.Value) >= 12:
						rev = s.Value[:12] + ", "
					case s.Key == "vcs.modified" && s.Value == "true":
						dirty = "+dirty"
					}
				}
				if version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
					version = bi.Main.Version
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "speedctl %s (%s%s%s %s/%s)\n", version, rev, dirty, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}
