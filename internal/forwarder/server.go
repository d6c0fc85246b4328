package forwarder

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/filter"
	"github.com/tapwire/tapwire/internal/format/jsonl"
	"github.com/tapwire/tapwire/internal/redact"
	"github.com/tapwire/tapwire/internal/service"
	"github.com/tapwire/tapwire/internal/sink/file"
	"github.com/tapwire/tapwire/internal/sink/hub"
	"github.com/tapwire/tapwire/internal/sink/s3"
	"github.com/tapwire/tapwire/internal/spool"
	"github.com/tapwire/tapwire/internal/wire"
)

// Errors answered to clients. The detail of a spool failure is logged, not
// sent.
var (
	errUnauthorized = wire.Errorf(http.StatusUnauthorized, "missing or wrong bearer token (FORWARDER_TOKEN)")
	errBusy         = &wire.ServerError{Status: http.StatusTooManyRequests, Message: "too many batches in flight", Wait: time.Second}
	errStore        = &wire.ServerError{Status: http.StatusServiceUnavailable, Message: "could not spool the batch", Wait: 5 * time.Second}
	errShutdown     = &wire.ServerError{Status: http.StatusServiceUnavailable, Message: "shutting down", Wait: 5 * time.Second}
)

// Stats are the forwarder's counters since start.
type Stats struct {
	Batches      int64 `json:"batches"`      // batches accepted (200)
	Records      int64 `json:"records"`      // records in them, as received
	Rejected     int64 `json:"rejected"`     // batches refused as bad (4xx but 401 and 429) or cut short by the client
	Unauthorized int64 `json:"unauthorized"` // requests without the right token (401)
	Busy         int64 `json:"busy"`         // batches refused for MaxInFlight (429)
	StoreErrors  int64 `json:"storeErrors"`  // batches the spool failed to take (503)

	Filtered    int64 `json:"filtered"`    // records dropped by the filter
	PreRedacted int64 `json:"preRedacted"` // accepted batches whose sender applied the same redaction (not redacted again)
	Staged      int64 `json:"staged"`      // accepted batches of more than one frame (wire.FrameBytes of lines): staged on disk and copied
	Spooled     int64 `json:"spooled"`     // records written to the spool
	SpoolBytes  int64 `json:"spoolBytes"`  // bytes of the spool on disk
	SpoolFsyncs int64 `json:"spoolFsyncs"` // fsyncs of the spool (batches arriving together share one)

	Sinks map[string]SinkStats `json:"sinks"` // by sink name
}

// SinkStats are one sink's counters.
type SinkStats struct {
	Delivered    int64  `json:"delivered"`    // records the sink accepted
	Failed       int64  `json:"failed"`       // records the sink refused for good (dropped)
	Dropped      int64  `json:"dropped"`      // records the spool's bound deleted before delivery
	Failures     int64  `json:"failures"`     // failed delivery attempts
	PendingBytes int64  `json:"pendingBytes"` // spooled bytes not yet delivered
	LastError    string `json:"lastError,omitempty"`
}

// Server is a forwarder: the HTTP handler, the spool behind it, and one
// delivery loop per sink reading the spool.
type Server struct {
	cfg   Config
	log   *slog.Logger
	spool *spool.Spool
	dests []*destination
	sem   chan struct{} // one token per batch in flight
	// budget is the memory that long lines (past 64 KiB) and large zstd
	// windows of the batches in flight may hold together: one line of
	// wire.MaxLineBytes at a time.
	budget *wire.Budget
	mux    *http.ServeMux
	reg    *prometheus.Registry
	m      *metrics

	redactor *redact.Redactor // nil: no rules
	filter   *filter.Filter   // nil: keep everything

	closing atomic.Bool        // Serve is shutting down: new batches get 503
	bufs    chan *bytes.Buffer // free list of frame buffers, at most MaxInFlight

	ln   net.Listener
	life service.Lifecycle

	batches, records, rejected, unauthorized, busy, storeErrors, spooled, filtered, preRedacted, staged atomic.Int64
}

// New returns a Server for cfg (after Load, or with defaults applied here):
// it opens the spool and the sinks cfg names and binds cfg.Listen (or
// takes cfg.Listener). It serves and delivers nothing until Serve; on
// error it has released all it opened.
func New(cfg Config, log *slog.Logger) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = service.Discard()
	}
	var dests []*destination
	if cfg.Dir != "" {
		fs, err := file.New(cfg.Dir, file.Options{}) // fsyncs every Write
		if err != nil {
			return nil, fmt.Errorf("open record directory: %w", err)
		}
		if fs.Repaired > 0 {
			log.Warn("cut a torn last line from the record directory (a crash in the middle of a write); the spool delivers that batch again",
				"dir", cfg.Dir, "bytes", fs.Repaired)
		}
		dests = append(dests, &destination{name: "directory", desc: cfg.Dir, sink: fs,
			probe: func(context.Context) error { return probeDir(cfg.Dir) }, fresh: -1})
	}
	if cfg.HubURL != "" {
		hs, err := hub.New(cfg.HubURL, cfg.APIKey, hub.Options{})
		if err != nil {
			closeAll(dests)
			return nil, configError("SPEEDSCALE_APP_URL", cfg.HubURL, err.Error())
		}
		dests = append(dests, &destination{name: "hub", desc: hs.Base(), sink: hs, probe: hs.Probe})
	}
	if cfg.Bucket != "" {
		bs, err := s3.New(context.Background(), s3.Options{
			Bucket: cfg.Bucket, Region: cfg.Region, Endpoint: cfg.BucketEndpoint,
			PathStyle: cfg.BucketPathStyle == "true", Prefix: cfg.BucketPrefix, Tenant: cfg.TenantID,
		})
		if err != nil {
			closeAll(dests)
			return nil, err
		}
		dests = append(dests, &destination{name: "bucket", desc: bs.URL(), sink: bs, probe: bs.Probe})
	}
	red, err := cfg.Redaction.Redactor()
	if err != nil {
		closeAll(dests)
		return nil, err
	}
	flt, err := filter.Parse(cfg.FilterRule)
	if err != nil {
		closeAll(dests)
		return nil, configError("SPEEDSCALE_FILTER_RULE", abbreviate(cfg.FilterRule), err.Error())
	}
	s, err := newServer(cfg, log, dests)
	if s != nil {
		s.redactor, s.filter = red, flt
	}
	if err != nil {
		for _, d := range dests {
			d.sink.Close()
		}
		return nil, err
	}
	var tlsConf *tls.Config
	if cfg.TLSCert != "" {
		if tlsConf, err = serverTLS(cfg.TLSCert, cfg.TLSKey); err != nil {
			s.Close()
			return nil, err
		}
	}
	s.ln = cfg.Listener
	if s.ln == nil {
		if s.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			s.Close()
			return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
		}
	}
	if tlsConf != nil {
		s.ln = tls.NewListener(s.ln, tlsConf)
	}
	return s, nil
}

// serverTLS loads FORWARDER_TLS_CERT and FORWARDER_TLS_KEY: each a PEM
// file's path, or the PEM itself.
func serverTLS(cert, key string) (*tls.Config, error) {
	read := func(name, v string) ([]byte, error) {
		if strings.HasPrefix(strings.TrimSpace(v), "-----BEGIN") {
			return []byte(v), nil
		}
		b, err := os.ReadFile(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return b, nil
	}
	certPEM, err := read("FORWARDER_TLS_CERT", cert)
	if err != nil {
		return nil, err
	}
	keyPEM, err := read("FORWARDER_TLS_KEY", key)
	if err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("FORWARDER_TLS_CERT/FORWARDER_TLS_KEY: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}

func closeAll(dests []*destination) {
	for _, d := range dests {
		d.sink.Close()
	}
}

// newServer opens the spool for dests and builds the handler. cfg has its
// defaults.
func newServer(cfg Config, log *slog.Logger, dests []*destination) (*Server, error) {
	if len(dests) == 0 {
		return nil, errors.New("no sink configured")
	}
	names := make([]string, len(dests))
	for i, d := range dests {
		names[i] = d.name
	}
	sp, err := spool.Open(cfg.SpoolDir, spool.Options{
		MaxBytes:     cfg.SpoolBytes,
		SegmentBytes: cfg.SpoolSegmentBytes,
		NoSync:       cfg.SpoolSync == "none",
		Readers:      names,
		Logger:       log,
	})
	if err != nil {
		return nil, fmt.Errorf("open spool: %w", err)
	}
	s := &Server{cfg: cfg, log: log, spool: sp, dests: dests, sem: make(chan struct{}, cfg.MaxInFlight),
		budget: wire.NewBudget(wire.MinBudget)}
	s.bufs = make(chan *bytes.Buffer, cfg.MaxInFlight)
	for _, d := range dests {
		d.rd, err = sp.Reader(d.name)
		if err != nil {
			sp.Close()
			return nil, err
		}
		d.log = log.With("sink", d.name)
		d.runs.Logger = d.log
		d.batchBytes = cfg.DeliveryBatchBytes
	}
	s.reg = prometheus.NewRegistry()
	// The runtime's and the process's series too (go_goroutines,
	// process_resident_memory_bytes, process_open_fds...), as goproxy has.
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.m = newMetrics(s.reg, s)
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /{$}", s.handleHealth)
	s.mux.HandleFunc("GET /stats", s.handleStats)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	s.mux.HandleFunc(wire.Path, s.handleBatch) // ReadBatch answers other methods with 405
	return s, nil
}

// Handler serves the forwarder's endpoints.
func (s *Server) Handler() http.Handler { return s.mux }

// Dir returns the directory sink's directory ("" without one).
func (s *Server) Dir() string { return s.cfg.Dir }

// Stats returns the counters.
func (s *Server) Stats() Stats {
	sp := s.spool.Stats()
	st := Stats{
		Batches:      s.batches.Load(),
		Records:      s.records.Load(),
		Rejected:     s.rejected.Load(),
		Unauthorized: s.unauthorized.Load(),
		Busy:         s.busy.Load(),
		StoreErrors:  s.storeErrors.Load(),
		Filtered:     s.filtered.Load(),
		PreRedacted:  s.preRedacted.Load(),
		Staged:       s.staged.Load(),
		Spooled:      s.spooled.Load(),
		SpoolBytes:   sp.Bytes,
		SpoolFsyncs:  sp.Syncs,
		Sinks:        map[string]SinkStats{},
	}
	for _, d := range s.dests {
		ss := SinkStats{
			Delivered:    d.delivered.Load(),
			Failed:       d.failed.Load(),
			Failures:     d.failures.Load(),
			Dropped:      sp.DroppedRecords[d.name],
			PendingBytes: sp.PendingBytes[d.name],
		}
		if err := d.lastError(); err != nil {
			ss.LastError = err.Error()
		}
		st.Sinks[d.name] = ss
	}
	return st
}

// Addr is the address the forwarder listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve serves batches and delivers the spool to the sinks until ctx is
// done or Shutdown is called. It then stops accepting, waits for batches
// in flight to be spooled and answered, lets the sinks catch up with the
// spool, all within ShutdownTimeout, and closes the sinks and the spool.
// What is not delivered by then stays in the spool for the next start. It
// returns nil after an orderly shutdown.
func (s *Server) Serve(ctx context.Context) error { return s.life.Serve(ctx, s.serve) }

func (s *Server) serve(sctx context.Context) error {
	s.logStart(s.ln.Addr())
	dctx, stopDelivery := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, d := range s.dests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.run(dctx)
		}()
	}

	deadline := time.Now().Add(s.cfg.ShutdownTimeout)
	serveErr := service.HTTP(sctx, service.NewHTTPServer(s.mux, s.log, 2*time.Minute), s.ln, "", "", s.cfg.ShutdownTimeout, func() {
		deadline = time.Now().Add(s.cfg.ShutdownTimeout)
		s.log.Info("shutting down", "timeout", s.cfg.ShutdownTimeout.String())
		s.closing.Store(true)
	})

	// Let every sink catch up with the spool until the deadline.
	for _, d := range s.dests {
		d.drain()
	}
	drained := make(chan struct{})
	go func() { wg.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(time.Until(deadline)):
		s.log.Warn("shutdown deadline: records left in the spool for the next start")
	}
	stopDelivery()
	wg.Wait()

	if err := s.Close(); err != nil && serveErr == nil {
		serveErr = err
	}
	st := s.Stats()
	attrs := []any{"batches", st.Batches, "records", st.Records, "rejected", st.Rejected,
		"unauthorized", st.Unauthorized, "busy", st.Busy, "storeErrors", st.StoreErrors}
	for name, ss := range st.Sinks {
		attrs = append(attrs, slog.Group(name, "delivered", ss.Delivered, "failed", ss.Failed,
			"dropped", ss.Dropped, "pendingBytes", ss.PendingBytes))
	}
	s.log.Info("stopped", attrs...)
	return serveErr
}

// Shutdown stops a Serve and waits until it has drained and returned, or
// ctx is done. A Server that was never served is closed.
func (s *Server) Shutdown(ctx context.Context) error { return s.life.Shutdown(ctx, s.Close) }

// Close closes the listener, the sinks and the spool. Serve calls it; call
// it yourself only for a Server that was never served.
func (s *Server) Close() error {
	var errs []error
	if s.ln != nil {
		s.ln.Close()
	}
	for _, d := range s.dests {
		if err := d.sink.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close sink %s: %w", d.name, err))
		}
	}
	if err := s.spool.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close spool: %w", err))
	}
	return errors.Join(errs...)
}

func (s *Server) logStart(addr net.Addr) {
	sinks := make([]string, len(s.dests))
	for i, d := range s.dests {
		sinks[i] = d.name
	}
	s.log.Info("forwarder listening", "addr", addr.String(), "sinks", sinks, "dir", s.cfg.Dir,
		"spool", s.cfg.SpoolDir, "spoolBytes", s.cfg.SpoolBytes, "spoolSync", s.cfg.SpoolSync,
		"cluster", s.cfg.Cluster, "tenant", s.cfg.TenantID, "token", s.cfg.Token != "", "tls", s.cfg.TLSCert != "",
		"maxBatchBytes", s.cfg.MaxBatchBytes, "maxInFlight", s.cfg.MaxInFlight)
	if s.cfg.Token == "" {
		s.log.Warn("UNAUTHENTICATED: FORWARDER_TOKEN is not set: batches are accepted from anyone who can reach the port; " +
			"the security group is the only boundary. speedctl ecs forwarder and ecs inject set a token on both sides")
	}
	if s.filter != nil {
		s.log.Info("filter", "rule", s.filter.ID)
	}
	if w := s.cfg.Redaction.Warning(s.redactor); w != "" {
		var rules []string
		if s.redactor != nil {
			rules = s.redactor.Rules()
		}
		s.log.Warn(w, "rules", rules)
	} else {
		s.log.Info("redaction rules", "rules", s.redactor.Rules())
	}
	if s.cfg.SpoolSync == "none" {
		s.log.Warn("FORWARDER_SPOOL_SYNC=none: batches are acknowledged before they are on disk; a machine crash may lose them")
	}
	if len(s.cfg.Pending) > 0 {
		s.log.Info("settings accepted but not acted on yet", "vars", s.cfg.Pending)
	}
}

// noTokenNote ends the health text of a forwarder without a token: the
// guide's bare environment sets none, and works, but anyone who reaches
// the port can feed records into the tenant.
const noTokenNote = "UNAUTHENTICATED: FORWARDER_TOKEN is not set, batches are accepted from anyone who can reach the port"

// handleHealth answers the guide's health check: a text that contains
// "Connected" while the spool and every sink can be reached (and says when
// the spool is at its byte bound), 503 with the reasons otherwise (a full
// disk among them).
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	var bad []string
	spoolBad, spoolNote := spoolHealth(s.spool.Stats())
	if spoolBad != "" {
		bad = append(bad, spoolBad)
	} else if err := probeDir(s.cfg.SpoolDir); err != nil {
		bad = append(bad, "spool: "+err.Error())
	}
	type result struct {
		i   int
		err error
	}
	results := make(chan result, len(s.dests))
	for i, d := range s.dests {
		go func() { results <- result{i, d.check(ctx)} }()
	}
	errs := make([]error, len(s.dests))
	for range s.dests {
		res := <-results
		errs[res.i] = res.err
	}
	var good []string
	for i, d := range s.dests {
		if errs[i] != nil {
			bad = append(bad, d.name+": "+errs[i].Error())
		} else {
			good = append(good, d.name+" "+d.desc)
		}
	}
	if len(bad) > 0 {
		if s.cfg.Token == "" {
			bad = append(bad, noTokenNote)
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "Not connected: %s\n", strings.Join(bad, "; "))
		return
	}
	if spoolNote != "" {
		good = append(good, spoolNote)
	}
	if s.cfg.Token == "" {
		good = append(good, noTokenNote)
	}
	fmt.Fprintf(w, "Connected: %s\n", strings.Join(good, "; "))
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
		s.m.rejected.WithLabelValues("unauthorized").Inc()
		s.log.Warn("batch refused: bad token", "remote", r.RemoteAddr)
	case se.Status == http.StatusTooManyRequests:
		s.busy.Add(1)
		s.m.rejected.WithLabelValues("busy").Inc()
		s.log.Debug("batch refused: busy", "remote", r.RemoteAddr)
	case errors.Is(err, errShutdown):
		s.m.rejected.WithLabelValues("shutdown").Inc()
	case errors.Is(err, errStore):
		s.storeErrors.Add(1)
		s.m.rejected.WithLabelValues("spool").Inc()
		s.log.Error("batch not spooled", "remote", r.RemoteAddr, "batch", r.Header.Get(wire.HeaderBatchID), "records", n, "err", err.Error())
	default:
		s.rejected.Add(1)
		s.m.rejected.WithLabelValues("bad").Inc()
		s.log.Warn("batch rejected", "remote", r.RemoteAddr, "batch", r.Header.Get(wire.HeaderBatchID), "status", se.Status, "err", err.Error())
	}
	wire.WriteError(w, err)
}

// serveBatch reads one batch, prepares its records, and spools them; it
// answers 200 once they are in the spool (fsynced, unless SpoolSync is
// none). It returns the error to answer otherwise, and the number of
// records decoded.
func (s *Server) serveBatch(w http.ResponseWriter, r *http.Request) (int, error) {
	if s.cfg.Token != "" && !validToken(r.Header.Get("Authorization"), s.cfg.Token) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tapwire-forwarder"`)
		return 0, errUnauthorized
	}
	if s.closing.Load() {
		return 0, errShutdown
	}
	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	default:
		return 0, errBusy
	}
	// Each record is filtered, stamped and redacted as it is decoded, and
	// its line is appended to the frame at once: the batch's records are
	// never all in memory. A frame ends after frameBytes; the frames of a
	// batch that has more than one are staged on the spool's disk and
	// appended together once the whole batch is read (a refused batch
	// leaves nothing in the spool). Counters move only once the batch is
	// spooled.
	buf := s.getBuf()
	defer s.putBuf(buf)
	var (
		spooled  int
		inFrame  int
		stage    *spool.Stage
		filtered int
		redacted int
		rules    map[string]int
	)
	defer func() {
		if stage != nil {
			stage.Close()
		}
	}()
	// A batch its sender redacted with the same rules and the same code
	// (wire.HeaderRedacted is this redactor's fingerprint: goproxy's of
	// this build and these settings) is not redacted again: a second pass
	// would change nothing.
	redactor, preRedacted := s.redactor, false
	if redactor != nil && r.Header.Get(wire.HeaderRedacted) == redactor.Fingerprint() {
		redactor, preRedacted = nil, true
	}
	// Neither the filter nor redaction without body rules reads bodies:
	// then the bodies of lines stored as they came are not decoded. With no
	// redaction to apply (none, or the sender's), a line is stored as it
	// came with at most the labels and tags stamped below written again:
	// of a typed line (one whose full decode would succeed, see
	// jsonl.Line.Typed) only those are decoded, and what the filter reads.
	want := jsonl.Want{LazyBodies: redactor == nil || !redactor.ReadsBodies()}
	if redactor == nil {
		want.Partial, want.Facts = true, !s.filter.KeepsAll()
		if s.cfg.Cluster != "" || s.cfg.TenantID != "" {
			want.Members |= jsonl.FieldLabels
		}
		if s.cfg.TenantName != "" || s.cfg.SubTenantName != "" {
			want.Members |= jsonl.FieldTags
		}
	}
	lim := wire.Limits{Bytes: s.cfg.MaxBatchBytes, Budget: s.budget}
	info, err := wire.ReadBatchLines(r, lim, want, func(rec *capture.Record, line *jsonl.Line, exact bool) error {
		if s.filter != nil && !s.filter.Keep(rec) {
			filtered++
			return nil
		}
		changed, ids := s.prepare(rec, redactor)
		if ids != nil {
			redacted++
			if rules == nil {
				rules = map[string]int{}
			}
			for _, id := range ids {
				rules[id]++
			}
		}
		if err := appendRecord(buf, line, exact, rec, changed); err != nil {
			return fmt.Errorf("%w: %w", errStore, err)
		}
		spooled++
		inFrame++
		if buf.Len() < frameBytes {
			return nil
		}
		if stage == nil {
			stage = s.spool.Stage()
		}
		if err := stage.Frame(buf.Bytes(), inFrame); err != nil {
			return &spoolErr{err}
		}
		buf.Reset()
		inFrame = 0
		return nil
	})
	if err != nil {
		var se *spoolErr
		if errors.As(err, &se) {
			return info.Records, spoolError(se.err, s.spool.Stats())
		}
		return info.Records, err
	}
	received := info.Records
	switch {
	case stage != nil:
		if inFrame > 0 {
			if err := stage.Frame(buf.Bytes(), inFrame); err != nil {
				return received, spoolError(err, s.spool.Stats())
			}
		}
		if err := stage.Commit(); err != nil {
			return received, spoolError(err, s.spool.Stats())
		}
		s.staged.Add(1)
	case spooled > 0:
		if err := s.spool.Append(buf.Bytes(), spooled); err != nil {
			return received, spoolError(err, s.spool.Stats())
		}
	}
	if spooled > 0 {
		s.spooled.Add(int64(spooled))
	}
	if filtered > 0 {
		s.filtered.Add(int64(filtered))
		s.m.filtered.Add(float64(filtered))
	}
	if redacted > 0 {
		s.m.redacted.Add(float64(redacted))
		for id, n := range rules {
			s.m.rules.WithLabelValues(id).Add(float64(n))
		}
	}
	if preRedacted {
		s.preRedacted.Add(1)
	}
	s.batches.Add(1)
	s.records.Add(int64(received))
	s.m.batches.Inc()
	s.m.encoding.WithLabelValues(wire.CodingName(r.Header.Get("Content-Encoding"))).Inc()
	s.m.received.Add(float64(received))
	s.log.Debug("batch spooled", "batch", info.ID, "records", received, "spooled", spooled, "remote", r.RemoteAddr)
	wire.WriteAccepted(w, received)
	return received, nil
}

// appendRecord appends rec's spool line to buf: its line as received with
// the members prepare changed written again, or, when the line holds more
// than the record (exact is false, see jsonl.Line), the record encoded in
// full.
func appendRecord(buf *bytes.Buffer, line *jsonl.Line, exact bool, rec *capture.Record, changed jsonl.Field) error {
	if exact {
		buf.Grow(len(line.Raw()) + 1) // once, rather than doubling for a long line
		ok, err := line.AppendTo(buf, rec, changed)
		if ok || err != nil {
			return err
		}
		if line.Partial() {
			// Labels and tags are top-level members, which AppendTo always
			// writes: cannot happen, and a partial record must never be
			// encoded in full.
			return fmt.Errorf("record line: members %b of a partial record not written", changed)
		}
		line.FillBodies(rec) // for the full encoding
	}
	return jsonl.Append(buf, []*capture.Record{rec})
}

// frameBytes is the size past which a batch's frame ends and the next
// begins: what a batch holds of its lines, and what a sink's delivery
// reads at least.
const frameBytes = wire.FrameBytes

// spoolErr is a failure of the spool while the batch is being read.
type spoolErr struct{ err error }

func (e *spoolErr) Error() string { return e.err.Error() }

// maxKeptBuf is the largest frame buffer kept for the next batch (a frame
// holds one line of up to wire.MaxLineBytes); at most MaxInFlight of them
// are kept.
const maxKeptBuf = 2 * frameBytes

// getBuf returns an empty buffer for a frame, from the free list when it
// has one. A free list, unlike a sync.Pool, keeps its buffers through
// garbage collections, so they do not grow again for every batch.
func (s *Server) getBuf() *bytes.Buffer {
	select {
	case b := <-s.bufs:
		return b
	default:
		return new(bytes.Buffer)
	}
}

func (s *Server) putBuf(b *bytes.Buffer) {
	if b.Cap() > maxKeptBuf {
		return
	}
	b.Reset()
	select {
	case s.bufs <- b:
	default:
	}
}

// prepare stamps the forwarder's labels on rec and redacts it with
// redactor (nil: not). It returns the members of rec it changed and the
// ids of the redaction rules that changed it.
func (s *Server) prepare(rec *capture.Record, redactor *redact.Redactor) (jsonl.Field, []string) {
	var changed jsonl.Field
	if s.cfg.Cluster != "" && rec.Labels.Cluster == "" {
		rec.Labels.Cluster = s.cfg.Cluster
		changed |= jsonl.FieldLabels
	}
	if s.cfg.TenantID != "" && rec.Labels.Tenant != s.cfg.TenantID {
		rec.Labels.Tenant = s.cfg.TenantID
		changed |= jsonl.FieldLabels
	}
	for _, t := range [...]struct{ name, value string }{{"tenantName", s.cfg.TenantName}, {"subTenant", s.cfg.SubTenantName}} {
		if t.value == "" {
			continue
		}
		if v, ok := rec.Tags[t.name]; !ok || v != t.value {
			if rec.Tags == nil {
				rec.Tags = capture.Tags{}
			}
			rec.Tags[t.name] = t.value
			changed |= jsonl.FieldTags
		}
	}
	if redactor == nil {
		return changed, nil
	}
	ids, parts := redactor.RedactParts(rec)
	for _, p := range partFields {
		if parts&p.part != 0 {
			changed |= p.field
		}
	}
	return changed, ids
}

// partFields maps the parts redaction changes to the members of a line.
var partFields = [...]struct {
	part  redact.Part
	field jsonl.Field
}{
	{redact.PartURL, jsonl.FieldURL},
	{redact.PartReqHeaders, jsonl.FieldReqHeaders},
	{redact.PartReqBody, jsonl.FieldReqBody},
	{redact.PartResHeaders, jsonl.FieldResHeaders},
	{redact.PartTrailers, jsonl.FieldTrailers},
	{redact.PartResBody, jsonl.FieldResBody},
	{redact.PartChunks, jsonl.FieldChunks},
	{redact.PartRedactions, jsonl.FieldRedactions},
}

func abbreviate(s string) string {
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
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
