package service

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseLevel(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want slog.Level
		ok   bool
	}{
		{"", slog.LevelInfo, true}, {"info", slog.LevelInfo, true}, {"DEBUG", slog.LevelDebug, true},
		{"warning", slog.LevelWarn, true}, {" error ", slog.LevelError, true}, {"verbose", slog.LevelInfo, false},
	} {
		got, err := ParseLevel(tt.in)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

// daemon is the smallest daemon of the shape: an HTTP server and a
// Lifecycle.
type daemon struct {
	life     Lifecycle
	ln       net.Listener
	released bool
}

func (d *daemon) Serve(ctx context.Context) error {
	defer d.life.Stopped()
	ctx, cancel, err := d.life.Start(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	srv := NewHTTPServer(http.NotFoundHandler(), slog.New(slog.DiscardHandler), time.Minute)
	return HTTP(ctx, srv, d.ln, "", "", 5*time.Second, nil)
}

func (d *daemon) release() error { d.released = true; return d.ln.Close() }

func newDaemon(t *testing.T) *daemon {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return &daemon{ln: ln}
}

func TestLifecycle(t *testing.T) {
	t.Run("shutdown stops serve", func(t *testing.T) {
		d := newDaemon(t)
		done := make(chan error, 1)
		go func() { done <- d.Serve(context.Background()) }()
		for { // wait until it answers
			resp, err := http.Get("http://" + d.ln.Addr().String())
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if err := d.life.Shutdown(context.Background(), d.release); err != nil {
			t.Fatalf("Shutdown = %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve = %v, want nil after Shutdown", err)
		}
		if d.released {
			t.Error("a served daemon was released by Shutdown; Serve owns its teardown")
		}
		http.DefaultClient.CloseIdleConnections()
	})
	t.Run("context ends serve", func(t *testing.T) {
		d := newDaemon(t)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.Serve(ctx) }()
		cancel()
		if err := <-done; err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("Serve = %v, want nil", err)
		}
	})
	t.Run("shutdown before serve releases", func(t *testing.T) {
		d := newDaemon(t)
		if err := d.life.Shutdown(context.Background(), d.release); err != nil {
			t.Fatalf("Shutdown = %v", err)
		}
		if !d.released {
			t.Error("a daemon never served was not released")
		}
		if err := d.Serve(context.Background()); !errors.Is(err, ErrClosed) {
			t.Errorf("Serve after Shutdown = %v, want ErrClosed", err)
		}
	})
}
