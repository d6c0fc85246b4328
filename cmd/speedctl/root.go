package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at build time: -ldflags "-X main.version=v0.1.0".
var version = "dev"

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "speedctl",
		Short: "Tapwire's command-line tool",
		Long: `speedctl is Tapwire's command-line tool.

This version does one job of the deployment guide's setup: it makes the CA
(tls.crt and tls.key) that goproxy uses to capture an app's outbound TLS, and
checks a folder holding one. Config, ECS task definitions and traffic
commands come later.

  speedctl certs create            # ./tls.crt and ./tls.key, RSA-4096, 365 days
  speedctl certs check .           # will this folder work as TLS_CERT_DIR?`,
		SilenceUsage:  true, // an error is one line, not the usage
		SilenceErrors: true, // main prints it
	}
	root.AddCommand(newCertsCmd(), newVersionCmd())
	return root
}

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
