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

	"github.com/tapwire/tapwire/internal/service"
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

// Hub is the hub daemon: the handlers of Server over an open store, on a
// bound listener. Its shape is every daemon's: New (opens and binds,
// serves nothing), Serve, Shutdown.
type Hub struct {
	*Server
	cfg  Config
	st   store.Store
	ln   net.Listener
	http *http.Server

	// FirstKeys are the keys New made when the store had no tenant (all
	// empty otherwise): the caller shows them once.
	FirstKeys FirstKeys

	life service.Lifecycle
}

// New opens the store cfg names (migrating it), makes the first tenant and
// its keys when there is none (FirstKeys), and binds cfg.Listen (or takes
// cfg.Listener). It serves nothing; on error it has released all it
// opened.
func New(cfg Config, log *slog.Logger) (h *Hub, err error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = service.Discard()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := cfg.OpenStore(ctx)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", cfg.describe(), err)
	}
	defer func() {
		if err != nil {
			st.Close()
		}
	}()
	keys, err := BootstrapKeys(ctx, st, time.Now())
	if err != nil {
		return nil, err
	}
	ln := cfg.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
		}
	}
	s := NewServer(cfg, st, log)
	return &Hub{Server: s, cfg: cfg, st: st, ln: ln, FirstKeys: keys,
		http: service.NewHTTPServer(s.Handler(), log, 5*time.Minute)}, nil // an export may take minutes
}

// Store is the hub's store, open until Serve returns or Close.
func (h *Hub) Store() store.Store { return h.st }

// Addr is the address the hub listens on.
func (h *Hub) Addr() net.Addr { return h.ln.Addr() }

// Serve runs the retention and planner maintenance and serves until ctx is
// done or Shutdown is called; then it drains requests in flight for up to
// ShutdownTimeout and closes the store. It returns nil after an orderly
// shutdown.
func (h *Hub) Serve(ctx context.Context) error { return h.life.Serve(ctx, h.serve) }

func (h *Hub) serve(sctx context.Context) error {
	cfg, log, st := h.cfg, h.log, h.st
	log.Info("hub listening", "addr", h.ln.Addr().String(), "store", cfg.describe(), "retention", retentionText(cfg.Retention),
		"tls", cfg.TLSCert != "", "maxInFlight", cfg.MaxInFlight)
	if !cfg.tls() && !isLoopback(h.ln.Addr()) {
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

	var certFile, keyFile string
	if cfg.tls() {
		certFile, keyFile = cfg.TLSCert, cfg.TLSKey
	}
	serveErr := service.HTTP(sctx, h.http, h.ln, certFile, keyFile, ShutdownTimeout, func() {
		h.closing.Store(true)
		log.Info("shutting down", "timeout", ShutdownTimeout.String())
	})
	stopMaintenance()
	wg.Wait()
	if err := st.Close(); err != nil && serveErr == nil {
		serveErr = fmt.Errorf("close store: %w", err)
	}
	st2 := h.Stats()
	log.Info("stopped", "batches", st2.Batches, "records", st2.Records, "new", st2.New, "rejected", st2.Rejected,
		"unauthorized", st2.Unauthorized, "busy", st2.Busy, "storeErrors", st2.StoreErrors)
	return serveErr
}

// Shutdown stops a Serve and waits until it has drained and returned, or
// ctx is done. A Hub that was never served is closed.
func (h *Hub) Shutdown(ctx context.Context) error { return h.life.Shutdown(ctx, h.Close) }

// Close releases a Hub that was never served: its listener and its store.
func (h *Hub) Close() error {
	h.ln.Close()
	return h.st.Close()
}

// PrintFirstKeys shows the keys of a first start, once.
func PrintFirstKeys(out io.Writer, keys FirstKeys) {
	if keys.Ingest == "" {
		return
	}
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

func (c *Config) tls() bool { return c.TLSCert != "" }

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// retentionText writes a retention as HUB_RETENTION takes it: off, whole
// days as 30d, or a duration ("" for zero).
func retentionText(d time.Duration) string {
	switch {
	case d < 0:
		return "off"
	case d == 0:
		return ""
	case d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
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
