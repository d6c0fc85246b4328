package forwarder

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/sink/file"
	"github.com/tapwire/tapwire/internal/wire"
)

// Errors answered to clients. The detail of a store failure is logged, not
// sent.
var (
	errUnauthorized = wire.Errorf(http.StatusUnauthorized, "missing or wrong bearer token (FORWARDER_TOKEN)")
	errBusy         = &wire.ServerError{Status: http.StatusTooManyRequests, Message: "too many batches in flight", Wait: time.Second}
	errStore        = &wire.ServerError{Status: http.StatusServiceUnavailable, Message: "could not store the batch", Wait: 5 * time.Second}
)

// Stats are the forwarder's counters since start.
type Stats struct {
	Batches      int64 `json:"batches"`      // batches accepted (200)
	Records      int64 `json:"records"`      // records in them
	Rejected     int64 `json:"rejected"`     // batches refused as bad (4xx but 401 and 429) or cut short by the client
	Unauthorized int64 `json:"unauthorized"` // requests without the right token (401)
	Busy         int64 `json:"busy"`         // batches refused for MaxInFlight (429)
	StoreErrors  int64 `json:"storeErrors"`  // batches the file sink failed to write (503)
}

// Server is a forwarder: the HTTP handler and the file sink behind it.
type Server struct {
	cfg  Config
	log  *slog.Logger
	sink *file.Sink
	sem  chan struct{} // one token per batch in flight
	mux  *http.ServeMux

	batches, records, rejected, unauthorized, busy, storeErrors atomic.Int64
}

// New returns a Server for cfg (after Load, or with defaults applied here),
// creating cfg.Dir if needed. It does not listen: see Run and Serve.
func New(cfg Config, log *slog.Logger) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.NewJSONHandler(io.Discard, nil))
	}
	sink, err := file.New(cfg.Dir, file.Options{}) // fsyncs every Write
	if err != nil {
		return nil, fmt.Errorf("open record directory: %w", err)
	}
	s := &Server{cfg: cfg, log: log, sink: sink, sem: make(chan struct{}, cfg.MaxInFlight)}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /{$}", s.handleHealth)
	s.mux.HandleFunc("GET /stats", s.handleStats)
	s.mux.HandleFunc(wire.Path, s.handleBatch) // ReadBatch answers other methods with 405
	return s, nil
}

// Handler serves the forwarder's endpoints.
func (s *Server) Handler() http.Handler { return s.mux }

// Dir returns the directory records are written to.
func (s *Server) Dir() string { return s.sink.Dir() }

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{
		Batches:      s.batches.Load(),
		Records:      s.records.Load(),
		Rejected:     s.rejected.Load(),
		Unauthorized: s.unauthorized.Load(),
		Busy:         s.busy.Load(),
		StoreErrors:  s.storeErrors.Load(),
	}
}

// Run listens on cfg.Listen and serves until ctx is done, then shuts down
// gracefully (see Serve).
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Listen, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx is done. It then stops accepting, waits up
// to ShutdownTimeout for batches in flight to be written and answered, and
// closes the file sink. It returns nil after an orderly shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.logStart(ln.Addr())
	srv := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute, // a whole batch body
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	var serveErr error
	select {
	case err := <-errc:
		serveErr = fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
		s.log.Info("shutting down", "timeout", s.cfg.ShutdownTimeout.String())
		sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
		err := srv.Shutdown(sctx)
		cancel()
		if err != nil {
			srv.Close()
			serveErr = fmt.Errorf("shutdown: batches still in flight after %s: %w", s.cfg.ShutdownTimeout, err)
		}
		<-errc // http.ErrServerClosed
	}
	if err := s.sink.Close(); err != nil && serveErr == nil {
		serveErr = fmt.Errorf("close record files: %w", err)
	}
	st := s.Stats()
	s.log.Info("stopped", "batches", st.Batches, "records", st.Records, "rejected", st.Rejected,
		"unauthorized", st.Unauthorized, "busy", st.Busy, "storeErrors", st.StoreErrors)
	return serveErr
}

// Close closes the file sink of a Server that was never served.
func (s *Server) Close() error { return s.sink.Close() }

func (s *Server) logStart(addr net.Addr) {
	s.log.Info("forwarder listening", "addr", addr.String(), "dir", s.cfg.Dir,
		"cluster", s.cfg.Cluster, "tenant", s.cfg.TenantID, "token", s.cfg.Token != "",
		"maxBatchBytes", s.cfg.MaxBatchBytes, "maxInFlight", s.cfg.MaxInFlight)
	if s.cfg.Token == "" {
		s.log.Warn("FORWARDER_TOKEN is not set: batches are accepted from anyone who can reach the port")
	}
	if len(s.cfg.Pending) > 0 {
		s.log.Info("settings accepted but not acted on yet: records go to the local directory only",
			"vars", s.cfg.Pending)
	}
	if err := probeDir(s.cfg.Dir); err != nil {
		s.log.Warn("record directory is not writable: health answers 503 until it is", "dir", s.cfg.Dir, "err", err.Error())
	}
}

// handleHealth answers the guide's health check: a text that contains
// "Connected" while the directory is writable, 503 otherwise.
func (s *Server) handleHealth(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := probeDir(s.cfg.Dir); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "Not connected: %s\n", err)
		return
	}
	fmt.Fprintf(w, "Connected: writing to %s\n", s.cfg.Dir)
}

func (s *Server) handleStats(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s.Stats())
}

// probeDir checks that dir takes a new file and a byte in it.
func probeDir(dir string) error {
	f, err := os.CreateTemp(dir, ".health-*")
	if err != nil {
		return fmt.Errorf("cannot create a file in %s: %w", dir, unwrapPath(err))
	}
	_, werr := f.Write([]byte{'\n'})
	cerr := f.Close()
	_ = os.Remove(f.Name())
	if werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("cannot write in %s: %w", dir, unwrapPath(werr))
	}
	return nil
}

// unwrapPath drops the *PathError's long temporary file name.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func (s *Server) handleBatch(w http.ResponseWriter, r *http.Request) {
	n, err := s.serveBatch(w, r)
	if err == nil {
		return
	}
	se := wire.StatusOf(err)
	switch {
	case se.Status == http.StatusUnauthorized:
		s.unauthorized.Add(1)
		s.log.Warn("batch refused: bad token", "remote", r.RemoteAddr)
	case se.Status == http.StatusTooManyRequests:
		s.busy.Add(1)
		s.log.Debug("batch refused: busy", "remote", r.RemoteAddr)
	case errors.Is(err, errStore):
		s.storeErrors.Add(1)
		s.log.Error("batch not stored", "remote", r.RemoteAddr, "batch", r.Header.Get(wire.HeaderBatchID), "records", n, "err", err.Error())
	default:
		s.rejected.Add(1)
		s.log.Warn("batch rejected", "remote", r.RemoteAddr, "batch", r.Header.Get(wire.HeaderBatchID), "status", se.Status, "err", err.Error())
	}
	wire.WriteError(w, err)
}

// serveBatch reads, stamps and stores one batch, and answers 200 when it
// is stored. It returns the error to answer otherwise, and the number of
// records decoded.
func (s *Server) serveBatch(w http.ResponseWriter, r *http.Request) (int, error) {
	if s.cfg.Token != "" && !validToken(r.Header.Get("Authorization"), s.cfg.Token) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tapwire-forwarder"`)
		return 0, errUnauthorized
	}
	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	default:
		return 0, errBusy
	}
	var recs []*capture.Record
	info, err := wire.ReadBatch(r, s.cfg.MaxBatchBytes, func(rec *capture.Record) error {
		recs = append(recs, rec)
		return nil
	})
	if err != nil {
		return info.Records, err
	}
	for _, rec := range recs {
		if s.cfg.Cluster != "" && rec.Labels.Cluster == "" {
			rec.Labels.Cluster = s.cfg.Cluster
		}
		if s.cfg.TenantID != "" {
			rec.Labels.Tenant = s.cfg.TenantID
		}
	}
	if len(recs) > 0 {
		// The client's context: a client that went away does not get an
		// answer anyway, and will send the batch again.
		if err := s.sink.Write(r.Context(), recs); err != nil {
			return len(recs), fmt.Errorf("%w: %w", errStore, err)
		}
	}
	s.batches.Add(1)
	s.records.Add(int64(len(recs)))
	s.log.Debug("batch stored", "batch", info.ID, "records", len(recs), "remote", r.RemoteAddr)
	wire.WriteAccepted(w, len(recs))
	return len(recs), nil
}

// validToken reports whether an Authorization header carries token as a
// bearer token, in constant time.
func validToken(header, token string) bool {
	scheme, got, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(token)) == 1
}
