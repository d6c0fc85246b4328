// Package service is what every Tapwire daemon (goproxy, the forwarder,
// the hub) shares in its shape, Load → New → Serve → Shutdown: the logger
// made from LOG_LEVEL, and an HTTP server served until its context ends and
// then shut down within a deadline.
package service

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Levels are the values LOG_LEVEL takes, for help text and errors.
const Levels = "debug, info, warn or error"

// ParseLevel reads a LOG_LEVEL: debug, info (also empty), warn (or
// warning), error, in any case.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return slog.LevelInfo, fmt.Errorf("LOG_LEVEL=%q: want %s", s, Levels)
}

// NewLogger returns a daemon's logger at level (see ParseLevel; a bad level
// is info, Validate has refused it before): text when w is a terminal, JSON
// lines otherwise (a container's log driver).
func NewLogger(w io.Writer, level string) *slog.Logger {
	lv, _ := ParseLevel(level)
	opts := &slog.HandlerOptions{Level: lv}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			return slog.New(slog.NewTextHandler(w, opts))
		}
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// Discard is a logger that writes nothing, for a nil logger.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// HTTP serves srv on ln until ctx is done or serving fails; then it calls
// stopping (if not nil), stops accepting and waits for requests in flight
// until the deadline that timeout sets, after which it closes what is
// left. With certFile it serves HTTPS. It returns nil after an orderly
// shutdown.
func HTTP(ctx context.Context, srv *http.Server, ln net.Listener, certFile, keyFile string, timeout time.Duration, stopping func()) error {
	errc := make(chan error, 1)
	go func() {
		if certFile != "" {
			errc <- srv.ServeTLS(ln, certFile, keyFile)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	if stopping != nil {
		stopping()
	}
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		srv.Close()
		err = fmt.Errorf("shutdown: requests still in flight after %s: %w", timeout, err)
	}
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// NewHTTPServer returns an http.Server with the timeouts every daemon's
// API uses: 10s for a request's head, read and write bounded for a whole
// batch or export, and its errors logged at warn.
func NewHTTPServer(h http.Handler, log *slog.Logger, write time.Duration) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute, // a whole batch body
		WriteTimeout:      write,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// Lifecycle is the part of a daemon's shape that Serve and Shutdown share:
// Serve runs once; Shutdown, from any goroutine, stops a Serve and waits
// for it to return, or releases a daemon that was never served. The zero
// value is ready to use.
type Lifecycle struct {
	mu       sync.Mutex
	served   bool
	shutdown chan struct{} // closed by Shutdown
	stopped  chan struct{} // closed when Serve has returned
}

func (l *Lifecycle) init() {
	if l.shutdown == nil {
		l.shutdown, l.stopped = make(chan struct{}), make(chan struct{})
	}
}

// ErrClosed is the error of a Serve called after Shutdown.
var ErrClosed = errors.New("shut down before it was served")

// Start marks the start of Serve and returns a context that ends with ctx
// or with Shutdown; ErrClosed when Shutdown came first (and released the
// daemon). Call Stopped when Serve returns.
func (l *Lifecycle) Start(ctx context.Context) (context.Context, context.CancelFunc, error) {
	l.mu.Lock()
	l.init()
	shutdown := l.shutdown
	select {
	case <-shutdown:
		l.mu.Unlock()
		return ctx, func() {}, ErrClosed
	default:
	}
	l.served = true
	l.mu.Unlock()
	sctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-shutdown:
			cancel()
		case <-sctx.Done():
		}
	}()
	return sctx, cancel, nil
}

// Serve runs serve, a daemon's Serve, between Start and Stopped: with a
// context that ends with ctx or with Shutdown.
func (l *Lifecycle) Serve(ctx context.Context, serve func(context.Context) error) error {
	defer l.Stopped()
	ctx, cancel, err := l.Start(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	return serve(ctx)
}

// Stopped marks the end of Serve.
func (l *Lifecycle) Stopped() {
	l.mu.Lock()
	l.init()
	close(l.stopped)
	l.mu.Unlock()
}

// Shutdown stops a Serve and waits until it has returned or ctx is done.
// A daemon that was never served is released with release instead.
func (l *Lifecycle) Shutdown(ctx context.Context, release func() error) error {
	l.mu.Lock()
	l.init()
	select {
	case <-l.shutdown:
	default:
		close(l.shutdown)
	}
	served, stopped := l.served, l.stopped
	l.mu.Unlock()
	if !served {
		return release()
	}
	select {
	case <-stopped:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Main is a daemon's main: Load (from the command line and the
// environment), New with the logger of its LOG_LEVEL, then Serve until
// SIGTERM or Ctrl-C. started, if not nil, runs once the daemon is built
// (goproxy's SIGHUP handler). -help exits 0, a bad setting 2 with one line,
// a failure to start or serve 1 with one line.
func Main[C any, D interface{ Serve(context.Context) error }](name string,
	load func(args []string, getenv func(string) string, out io.Writer) (C, error),
	level func(C) string, build func(C, *slog.Logger) (D, error), started func(D)) {
	cfg, err := load(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(2)
	}
	d, err := build(cfg, NewLogger(os.Stderr, level(cfg)))
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
	if started != nil {
		started(d)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := d.Serve(ctx); err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		stop()
		os.Exit(1)
	}
}
