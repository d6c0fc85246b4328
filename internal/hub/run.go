package hub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/tapwire/tapwire/internal/store"
)

// ShutdownTimeout is how long Serve waits for requests in flight.
const ShutdownTimeout = 10 * time.Second

// FirstKeys are the keys BootstrapKeys makes on a new store, shown once:
// the store keeps only their hashes.
type FirstKeys struct {
	Ingest string // the forwarder's SPEEDSCALE_API_KEY, for the tenant "default"
	Read   string // the API's and the viewer's, for the tenant "default"
	Admin  string // creates tenants and keys through the API (speedctl init)
}

// BootstrapKeys makes the first tenant and its keys when the store has no
// tenant: the tenant "default", an ingest key, a read key and an admin key
// (held by "default" and acting on every tenant). It returns the keys, or
// zero FirstKeys when there were tenants already.
func BootstrapKeys(ctx context.Context, st store.Store, now time.Time) (FirstKeys, error) {
	ts, err := st.Tenants(ctx)
	if err != nil {
		return FirstKeys{}, fmt.Errorf("list tenants: %w", err)
	}
	if len(ts) > 0 {
		return FirstKeys{}, nil
	}
	err = st.CreateTenant(ctx, store.Tenant{ID: "default", Name: "created on first start", Created: now.UTC()})
	if errors.Is(err, store.ErrExists) {
		return FirstKeys{}, nil // another hub on the same database was first
	}
	if err != nil {
		return FirstKeys{}, fmt.Errorf("create the first tenant: %w", err)
	}
	var k FirstKeys
	for _, c := range []struct {
		dst  *string
		role store.Role
	}{{&k.Ingest, store.RoleIngest}, {&k.Read, store.RoleRead}, {&k.Admin, store.RoleAdmin}} {
		if *c.dst, err = createKey(ctx, st, "default", c.role, "first "+string(c.role)+" key", now); err != nil {
			return FirstKeys{}, err
		}
	}
	return k, nil
}

// Bootstrap is BootstrapKeys for callers that use only the ingest and read
// keys (tests and tools that start a hub of their own); the admin key is
// made but not returned.
func Bootstrap(ctx context.Context, st store.Store, now time.Time) (ingest, read string, err error) {
	k, err := BootstrapKeys(ctx, st, now)
	return k.Ingest, k.Read, err
}

func createKey(ctx context.Context, st store.Store, tenant string, role store.Role, name string, now time.Time) (string, error) {
	key, k, err := NewKey(tenant, role, name, now)
	if err != nil {
		return "", err
	}
	if err := st.CreateKey(ctx, k); err != nil {
		return "", fmt.Errorf("store key: %w", err)
	}
	return key, nil
}

// Serve runs the hub on ln until ctx is done: it bootstraps the first
// tenant (printing its keys to out), runs the retention loop, serves, and
// at the end drains requests in flight for up to ShutdownTimeout. It does
// not close st.
func Serve(ctx context.Context, cfg Config, st store.Store, ln net.Listener, log *slog.Logger, out io.Writer) error {
	cfg.setDefaults()
	if log == nil {
		log = slog.New(slog.NewJSONHandler(io.Discard, nil))
	}
	keys, err := BootstrapKeys(ctx, st, time.Now())
	if err != nil {
		return err
	}
	if keys.Ingest != "" {
		fmt.Fprintf(out, `
hub: first start: created the tenant "default" and three API keys.
They are shown only now (the hub keeps their hashes): store them.

  ingest key (the forwarder's SPEEDSCALE_API_KEY): %s
  read key   (the API and the viewer):             %s
  admin key  (tenants and keys; speedctl init):    %s

A new tenant with its keys and speedctl's config, in one step:
  speedctl init --hub URL --admin-key ADMIN_KEY --tenant ID

`, keys.Ingest, keys.Read, keys.Admin)
	}
	s := NewServer(cfg, st, log)
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute, // a whole batch body
		WriteTimeout:      5 * time.Minute, // an export
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("hub listening", "addr", ln.Addr().String(), "store", cfg.describe(), "retention", retentionText(cfg.Retention),
		"tls", cfg.TLSCert != "", "maxInFlight", cfg.MaxInFlight)
	if !cfg.tls() && !isLoopback(ln.Addr()) {
		log.Warn("serving plain HTTP beyond loopback: API keys and records cross the network in clear; set HUB_TLS_CERT and HUB_TLS_KEY, or put a TLS proxy in front")
	}
	if cfg.Retention < 0 {
		log.Warn("HUB_RETENTION=off: records are never deleted and the database grows without bound")
	}

	mctx, stopMaintenance := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if cfg.Retention > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			retain(mctx, st, cfg.Retention, time.Minute, log)
		}()
	}
	if o, ok := st.(optimizer); ok {
		wg.Add(1)
		go func() {
			defer wg.Done()
			optimize(mctx, o, log)
		}()
	}
	defer func() {
		stopMaintenance()
		wg.Wait()
	}()

	errc := make(chan error, 1)
	go func() {
		if cfg.tls() {
			errc <- srv.ServeTLS(ln, cfg.TLSCert, cfg.TLSKey)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	var serveErr error
	select {
	case err := <-errc:
		serveErr = fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
		s.closing.Store(true)
		log.Info("shutting down", "timeout", ShutdownTimeout.String())
		sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
		err := srv.Shutdown(sctx)
		cancel()
		if err != nil {
			srv.Close()
			serveErr = fmt.Errorf("shutdown: requests still in flight after %s: %w", ShutdownTimeout, err)
		}
		<-errc
	}
	st2 := s.Stats()
	log.Info("stopped", "batches", st2.Batches, "records", st2.Records, "new", st2.New, "rejected", st2.Rejected,
		"unauthorized", st2.Unauthorized, "busy", st2.Busy, "storeErrors", st2.StoreErrors)
	return serveErr
}

func (c *Config) tls() bool { return c.TLSCert != "" }

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

func retentionText(d time.Duration) string {
	if d < 0 {
		return "off"
	}
	return d.String()
}

// optimizer is a store that keeps its query planner's statistics current
// when asked (SQLite's PRAGMA optimize, PostgreSQL's ANALYZE).
type optimizer interface {
	Optimize(context.Context) error
}

// optimizeEvery is how often the hub refreshes the planner's statistics
// (SQLite recommends PRAGMA optimize every few hours for long-lived
// connections); the first time is 5 minutes after start.
const optimizeEvery = time.Hour

func optimize(ctx context.Context, o optimizer, log *slog.Logger) {
	t := time.NewTimer(5 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := o.Optimize(ctx); err != nil && ctx.Err() == nil {
			log.Warn("refreshing the query planner's statistics failed", "err", err.Error())
		}
		t.Reset(optimizeEvery)
	}
}

// retain deletes records older than keep now and then until ctx is done:
// first after the given delay (a minute, in Serve), then every keep/10
// (at least a minute, at most 10 minutes).
func retain(ctx context.Context, st store.Store, keep, first time.Duration, log *slog.Logger) {
	every := min(max(keep/10, time.Minute), 10*time.Minute)
	t := time.NewTimer(first)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cut := time.Now().Add(-keep)
		n, err := st.DeleteBefore(ctx, cut)
		switch {
		case err != nil && ctx.Err() == nil:
			if !failing {
				log.Warn("retention: deleting old records failed; retrying later", "err", err.Error())
			}
			failing = true
		case err == nil:
			if failing {
				log.Info("retention: deleting old records works again")
			}
			failing = false
			if n > 0 {
				log.Info("retention: deleted old records", "records", n, "before", cut.UTC().Format(time.RFC3339))
			}
		}
		t.Reset(every)
	}
}
