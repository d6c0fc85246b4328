// Command forwarder is Tapwire's cluster forwarder: it receives batches of
// capture records from every goproxy on :8888, filters and redacts them,
// spools them on disk, and delivers them to the hub, the tenant bucket and
// a local directory. Run `forwarder -help` for its settings;
// docs/forwarder.md describes it.
package main

import (
	"log/slog"

	"github.com/tapwire/tapwire/internal/forwarder"
	"github.com/tapwire/tapwire/internal/service"
)

func main() {
	service.Main("forwarder", forwarder.Load, func(c *forwarder.Config) string { return c.LogLevel },
		func(c *forwarder.Config, log *slog.Logger) (*forwarder.Server, error) { return forwarder.New(*c, log) }, nil)
}
