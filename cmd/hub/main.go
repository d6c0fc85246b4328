// Command hub is Tapwire's hub, in its first slice: it serves the capture
// records of a directory as a JSON API. Run `hub -help` for the API.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tapwire/tapwire/internal/hub"
)

func main() {
	cfg, err := hub.Load(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hub:", err)
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "hub:", err)
		os.Exit(1)
	}
}

func run(cfg *hub.Config) error {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	srv := hub.New(cfg.Dir, log).NewHTTPServer()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	if _, err := os.Stat(cfg.Dir); err != nil {
		log.Warn("record directory not found: the API serves no records until something writes there", "dir", cfg.Dir)
	}
	log.Info("hub listening", "addr", ln.Addr().String(), "dir", cfg.Dir)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}
