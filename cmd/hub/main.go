// Command hub is Tapwire's hub: it takes capture records from forwarders
// with API keys, stores them per tenant in SQLite or PostgreSQL, and serves
// a JSON API to query and export them. Run `hub -help`; docs/hub.md and
// docs/api.md describe it.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/tapwire/tapwire/internal/hub"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := hub.Main(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
