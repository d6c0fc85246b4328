// Command speedctl is Tapwire's command-line tool. This version makes and
// checks the CA that goproxy needs to capture outbound TLS. Run
// `speedctl --help`.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "speedctl:", err)
		os.Exit(1)
	}
}
