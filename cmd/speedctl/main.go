// Command speedctl is Tapwire's command-line tool: it writes the config
// file ~/.speedctl/config, makes the CA goproxy needs to capture outbound
// TLS, and writes ECS task definitions (the forwarder, and the goproxy
// sidecar injected into an app's task), and lists, shows and exports the
// traffic a hub holds. Run `speedctl --help`.
package main

import (
	"errors"
	"fmt"
	"os"
)

func main() {
	os.Exit(speedctl())
}

// speedctl runs the command line and returns the exit code.
func speedctl() int {
	if err := newRootCmd().Execute(); err != nil {
		var code exitStatus
		if errors.As(err, &code) {
			return int(code) // a child's status, passed on (speedctl mock -- COMMAND)
		}
		fmt.Fprintln(os.Stderr, "speedctl:", err)
		// A command that says otherwise (replay: 2 for bad usage) sets the status.
		var ec interface{ ExitCode() int }
		if errors.As(err, &ec) {
			return ec.ExitCode()
		}
		return 1
	}
	return 0
}
