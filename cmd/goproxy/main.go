// Command goproxy is Tapwire's capturing sidecar: a reverse proxy in front
// of the app and a forward proxy for the app's own calls, recording every
// exchange. Run `goproxy -help` for its settings.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/tapwire/tapwire/internal/goproxy"
	"github.com/tapwire/tapwire/internal/service"
)

func main() {
	cfg, err := goproxy.Load(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "goproxy:", err)
		os.Exit(2)
	}
	srv, err := goproxy.New(cfg, service.NewLogger(os.Stderr, cfg.LogLevel))
	if err != nil {
		fmt.Fprintln(os.Stderr, "goproxy:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	// SIGHUP re-reads the CA in TLS_CERT_DIR (docs/goproxy.md, "Rotating
	// the CA"); ReloadCA logs the outcome.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			_ = srv.ReloadCA()
		}
	}()
	if err := srv.Serve(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "goproxy:", err)
		os.Exit(1)
	}
}
