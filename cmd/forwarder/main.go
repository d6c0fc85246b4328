// Command forwarder is Tapwire's cluster forwarder: it receives batches of
// capture records from every goproxy on :8888, filters and redacts them,
// spools them on disk, and delivers them to the hub, the tenant bucket and
// a local directory. Run `forwarder -help` for its settings;
// docs/forwarder.md describes it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/tapwire/tapwire/internal/forwarder"
	"github.com/tapwire/tapwire/internal/service"
)

func main() {
	cfg, err := forwarder.Load(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "forwarder:", err)
		os.Exit(2)
	}
	srv, err := forwarder.New(*cfg, service.NewLogger(os.Stderr, cfg.LogLevel))
	if err != nil {
		fmt.Fprintln(os.Stderr, "forwarder:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := srv.Serve(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "forwarder:", err)
		os.Exit(1)
	}
}
