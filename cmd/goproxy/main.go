// Command goproxy is Tapwire's capturing sidecar: a reverse proxy in front
// of the app and a forward proxy for the app's own calls, recording every
// exchange. Run `goproxy -help` for its settings.
package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/tapwire/tapwire/internal/goproxy"
	"github.com/tapwire/tapwire/internal/service"
)

func main() {
	service.Main("goproxy", goproxy.Load, func(c *goproxy.Config) string { return c.LogLevel }, goproxy.New,
		func(srv *goproxy.Server) {
			// SIGHUP re-reads the CA in TLS_CERT_DIR (docs/goproxy.md,
			// "Rotating the CA"); ReloadCA logs the outcome.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			go func() {
				for range hup {
					_ = srv.ReloadCA()
				}
			}()
		})
}
