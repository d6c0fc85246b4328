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

// Bootstrap makes the first tenant and its keys when the store has no
// tenant: the tenant "default", an ingest key and a read key. It returns
// the keys (shown once; only their hashes are stored), or nil when there
// were tenants already.
func Bootstrap(ctx context.Context, st store.Store, now time.Time) (ingest, read string, err error) {
	ts, err := st.Tenants(ctx)
	if err != nil {
		return "", "", fmt.Errorf("list tenants: %w", err)
	}
	if len(ts) > 0 {
		return "", "", nil
	}
	err = st.CreateTenant(ctx, store.Tenant{ID: "default", Name: "created on first start", Created: now.UTC()})
	if errors.Is(err, store.ErrExists) {
		return "", "", nil // another hub on the same database was first
	}
	if err != nil {
		return "", "", fmt.Errorf("create the first tenant: %w", err)
	}
	ingest, err = createKey(ctx, st, "default", store.RoleIngest, "first ingest key", now)
	if err != nil {
		return "", "", err
	}
	read, err = createKey(ctx, st, "default", store.RoleRead, "first read key", now)
	if err != nil {
		return "", "", err
	}
	return ingest, read, nil
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
	ingest, read, err := Bootstrap(ctx, st, time.Now())
	if err != nil {
		return err
	}
	if ingest != "" {
		fmt.Fprintf(out, `
hub: first start: created the tenant "default" and two API keys.
They are shown only now (the hub keeps their hashes): store them.

  ingest key (the forwarder's SPEEDSCALE_API_KEY): %s
  read key   (the API and the viewer):             %s

`, ingest, read)
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
