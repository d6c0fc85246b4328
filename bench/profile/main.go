// Command profile is goproxy with net/http/pprof beside it, for profiling
// the proxy under bench/run's load: the same settings (environment and
// flags, see `goproxy -help`) and the same wiring as cmd/goproxy, plus a
// pprof listener on PPROF_ADDR (default 127.0.0.1:6060).
//
//	PPROF_ADDR=127.0.0.1:6060 REVERSE_PROXY_PORT=8080 go run ./bench/profile &
//	wrk -t2 -c64 -d10s http://127.0.0.1:4143/ &
//	go tool pprof -top http://127.0.0.1:6060/debug/pprof/profile?seconds=8
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tapwire/tapwire/internal/goproxy"
	"github.com/tapwire/tapwire/internal/service"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "profile:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg, err := goproxy.Load(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	addr := os.Getenv("PPROF_ADDR")
	if addr == "" {
		addr = "127.0.0.1:6060"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("PPROF_ADDR: %w", err)
	}
	psrv := &http.Server{Handler: http.DefaultServeMux, ReadHeaderTimeout: 10 * time.Second}
	go psrv.Serve(ln)
	defer psrv.Close()

	log := service.NewLogger(os.Stderr, cfg.LogLevel)
	srv, err := goproxy.New(cfg, log)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return srv.Serve(ctx)
}
