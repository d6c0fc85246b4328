// Package hub is Tapwire's hub: it authenticates forwarders and users with
// API keys, ingests batches of capture records into a store (SQLite or
// PostgreSQL, internal/store), keeps tenants apart, and serves a JSON API
// to query, summarise and export the records. docs/hub.md and docs/api.md
// describe it; cmd/hub is its command.
package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tapwire/tapwire/internal/apitype"
	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/format/jsonl"
	"github.com/tapwire/tapwire/internal/store"
	"github.com/tapwire/tapwire/internal/wire"
)

// Answers to batches the hub does not take now.
var (
	errBusy     = &wire.ServerError{Status: http.StatusTooManyRequests, Message: "too many batches in flight", Wait: time.Second}
	errStore    = &wire.ServerError{Status: http.StatusServiceUnavailable, Message: "could not store the batch", Wait: 5 * time.Second}
	errShutdown = &wire.ServerError{Status: http.StatusServiceUnavailable, Message: "hub is shutting down", Wait: 5 * time.Second}
)

// Stats are the hub's ingest counters since start.
type Stats struct {
	Batches      int64 `json:"batches"`      // batches accepted (200)
	Records      int64 `json:"records"`      // records in them
	New          int64 `json:"new"`          // of which were not stored before
	Rejected     int64 `json:"rejected"`     // batches refused as malformed (4xx but 401, 403, 429)
	Unauthorized int64 `json:"unauthorized"` // requests with a missing, wrong or revoked key (401) or the wrong role (403)
	Busy         int64 `json:"busy"`         // batches refused for MaxInFlight, the line budget or shutdown (429, 503)
	StoreErrors  int64 `json:"storeErrors"`  // batches the store failed to take (503)
}

// Server is the hub's HTTP side over a store.
type Server struct {
	cfg     Config
	store   store.Store
	log     *slog.Logger
	auth    *auth
	now     func() time.Time
	mux     *http.ServeMux
	handler http.Handler  // mux with the headers of secure
	sem     chan struct{} // one token per batch being ingested
	budget  *wire.Budget  // memory of long lines of the batches being ingested
	uploads chan struct{} // one token per snapshot upload being stored
	streams chan struct{} // one token per open stream, at most maxStreams

	// streamPoll and keepAlive are streamPoll and streamKeepAlive; tests
	// shorten them.
	streamPoll, keepAlive time.Duration

	closing atomic.Bool

	batches, records, fresh, rejected, unauthorized, busy, storeErrors atomic.Int64
}

// NewServer returns the hub's handlers over st. cfg's defaults are applied.
func NewServer(cfg Config, st store.Store, log *slog.Logger) *Server {
	cfg.setDefaults()
	if log == nil {
		log = slog.New(slog.NewJSONHandler(io.Discard, nil))
	}
	s := &Server{cfg: cfg, store: st, log: log, now: time.Now, mux: http.NewServeMux(), sem: make(chan struct{}, cfg.MaxInFlight),
		budget: wire.NewBudget(lineBudget), uploads: make(chan struct{}, maxUploads),
		streams: make(chan struct{}, maxStreams), streamPoll: streamPoll, keepAlive: streamKeepAlive}
	s.auth = newAuth(st, func() time.Time { return s.now() })
	s.mux.HandleFunc(wire.Path, s.handleBatch) // ReadBatch answers other methods with 405
	s.mux.HandleFunc("GET /healthz", s.handleHealth)
	s.mux.Handle("GET /metrics", s.metricsHandler())
	s.mux.HandleFunc("GET /api/v1/whoami", s.api(s.whoami))
	s.mux.HandleFunc("GET /api/v1/records", s.api(s.listRecords))
	s.mux.HandleFunc("GET /api/v1/records/arrivals", s.api(s.arrivals))
	s.mux.HandleFunc("GET /api/v1/records/{id}", s.api(s.getRecord))
	s.mux.HandleFunc("GET /api/v1/stream", s.handleStream)
	s.mux.HandleFunc("GET /api/v1/records/{id}/body/{side}", s.api(s.getBody))
	s.mux.HandleFunc("GET /api/v1/services", s.api(s.services))
	s.mux.HandleFunc("GET /api/v1/map", s.api(s.serviceMap))
	s.mux.HandleFunc("GET /api/v1/histogram", s.api(s.histogram))
	s.mux.HandleFunc("GET /api/v1/export/{format}", s.handleExport)
	s.routeSnapshots()
	s.routeReports()
	s.routeAdmin()
	s.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		// Any valid key learns that the endpoint does not exist.
		w.Header().Set("Cache-Control", "no-store")
		_, err := s.auth.check(r.Context(), bearer(r))
		if err == nil {
			err = errorf(http.StatusNotFound, "no such endpoint (see docs/api.md)")
		}
		s.writeError(w, r, err)
	})
	s.routeViewer()
	s.handler = secure(s.mux)
	return s
}

// Handler serves the hub.
func (s *Server) Handler() http.Handler { return s.handler }

// Stats returns the ingest counters.
func (s *Server) Stats() Stats {
	return Stats{Batches: s.batches.Load(), Records: s.records.Load(), New: s.fresh.Load(), Rejected: s.rejected.Load(),
		Unauthorized: s.unauthorized.Load(), Busy: s.busy.Load(), StoreErrors: s.storeErrors.Load()}
}

// handleBatch is the ingest side: the batch protocol of docs/shipping.md
// with an ingest key, the tenant taken from the key.
func (s *Server) handleBatch(w http.ResponseWriter, r *http.Request) {
	key, err := s.auth.check(r.Context(), bearer(r))
	switch {
	case errors.Is(err, errNoKey):
		s.unauthorized.Add(1)
		wire.WriteError(w, wire.Errorf(http.StatusUnauthorized, "%s", errNoKey))
		return
	case err != nil:
		s.storeErrors.Add(1)
		s.log.Error("key lookup failed", "err", err.Error())
		wire.WriteError(w, errStore)
		return
	case key.Role != store.RoleIngest:
		s.unauthorized.Add(1)
		wire.WriteError(w, wire.Errorf(http.StatusForbidden, "key %s is a %s key; batches need an ingest key", key.ID, key.Role))
		return
	}
	if s.closing.Load() {
		s.busy.Add(1)
		wire.WriteError(w, errShutdown)
		return
	}
	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	default:
		s.busy.Add(1)
		wire.WriteError(w, errBusy)
		return
	}
	g := newIngest(r.Context(), s.store, key.Tenant)
	defer g.rollback()
	lim := wire.Limits{Bytes: s.cfg.MaxBatchBytes, Budget: s.budget}
	info, err := wire.ReadBatchLines(r, lim, jsonl.Want{}, g.add)
	var n int
	if err == nil {
		n, err = g.commit()
	}
	if err != nil {
		se := wire.StatusOf(err)
		switch {
		case se.Status == http.StatusTooManyRequests:
			s.busy.Add(1)
		case se.Status >= 500:
			s.storeErrors.Add(1)
		default:
			s.rejected.Add(1)
		}
		if se.Status >= 500 {
			s.log.Error("store batch", "tenant", key.Tenant, "batch", info.ID, "records", info.Records, "err", err.Error())
		} else {
			s.log.Warn("batch refused", "status", se.Status, "key", key.ID, "tenant", key.Tenant, "batch", info.ID, "err", err.Error())
		}
		wire.WriteError(w, err)
		return
	}
	s.batches.Add(1)
	s.records.Add(int64(info.Records))
	s.fresh.Add(int64(n))
	s.log.Debug("batch stored", "tenant", key.Tenant, "batch", info.ID, "records", info.Records, "new", n)
	wire.WriteAnswer(w, wire.Accepted{Accepted: info.Records, New: &n}) // speedctl traffic import reports New
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		s.log.Warn("health: store does not answer", "err", err.Error())
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(apitype.Health{Status: "store unavailable"})
		return
	}
	_ = json.NewEncoder(w).Encode(apitype.Health{Status: "ok"})
}

// httpError is an answer other than 200: a status and a short message for
// the client. Other errors become 500 with the detail logged.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) error {
	return &httpError{status, fmt.Sprintf(format, args...)}
}

// asHTTPError maps an error to the answer: *httpError as it is, key errors
// 401 and 403, a bad cursor 400, not found 404, a summary too large 400,
// anything else 500 (logged).
func (s *Server) asHTTPError(r *http.Request, err error) *httpError {
	var he *httpError
	switch {
	case errors.As(err, &he):
		return he
	case errors.Is(err, errNoKey):
		return &httpError{http.StatusUnauthorized, errNoKey.Error()}
	case errors.Is(err, store.ErrBadCursor):
		return &httpError{http.StatusBadRequest, "bad cursor: use the next value of a previous page"}
	case errors.Is(err, store.ErrNotFound):
		return &httpError{http.StatusNotFound, "not found"}
	case errors.Is(err, store.ErrTooMany):
		return &httpError{http.StatusBadRequest, store.ErrTooMany.Error()}
	case errors.Is(err, context.Canceled):
		return &httpError{499, "canceled"}
	}
	s.log.Error("request failed", "path", r.URL.Path, "err", err.Error())
	return &httpError{http.StatusInternalServerError, "internal error"}
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	he := s.asHTTPError(r, err)
	if he.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tapwire"`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(he.status)
	_ = json.NewEncoder(w).Encode(apitype.Error{Error: he.msg})
}

// readKey authenticates a request of the query API: a read key.
func (s *Server) readKey(r *http.Request) (store.Key, error) {
	return s.roleKey(r, store.RoleRead, "the API needs a read key")
}

// roleKey authenticates a request whose key must have role; a key of
// another role is refused with 403 and why, which says what key to use.
func (s *Server) roleKey(r *http.Request, role store.Role, why string) (store.Key, error) {
	key, err := s.auth.check(r.Context(), bearer(r))
	if err != nil {
		if errors.Is(err, errNoKey) {
			s.unauthorized.Add(1)
		}
		return key, err
	}
	if key.Role != role {
		s.unauthorized.Add(1)
		return key, errorf(http.StatusForbidden, "key %s is %s key; %s", key.ID, withArticle(key.Role), why)
	}
	return key, nil
}

// api wraps a query handler: it checks the read key, and writes the result
// as JSON or the error as {"error": msg}.
func (s *Server) api(h func(*http.Request, store.Key) (any, error)) http.HandlerFunc {
	return s.serveJSON(s.readKey, "", func(r *http.Request, key store.Key) (int, any, error) {
		v, err := h(r, key)
		return http.StatusOK, v, err
	})
}

// serveJSON wraps a handler: it checks the key with check, and writes the
// result as JSON (indented by indent) with the handler's status, or the
// error as {"error": msg}.
func (s *Server) serveJSON(check func(*http.Request) (store.Key, error), indent string, h func(*http.Request, store.Key) (int, any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		key, err := check(r)
		status, v := 0, any(nil)
		if err == nil {
			status, v, err = h(r, key)
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", indent)
		_ = enc.Encode(v)
	}
}

func (s *Server) whoami(_ *http.Request, key store.Key) (any, error) {
	return apitype.Whoami{Tenant: key.Tenant, Role: key.Role, Key: key.ID, Name: key.Name}, nil
}

// parseFilter reads the filter parameters of docs/api.md, and snapshot:
// the records of that snapshot of key's tenant instead of the traffic.
func (s *Server) parseFilter(r *http.Request, key store.Key, now time.Time) (store.Filter, error) {
	v, err := apitype.DecodeFilter(r.URL.Query())
	if err != nil {
		return store.Filter{}, errorf(http.StatusBadRequest, "%s", err)
	}
	f, err := filterOf(v, now)
	if id := r.URL.Query().Get("snapshot"); id != "" && err == nil {
		f.Snapshot = id
		_, err = s.snapshot(r, key, id)
	}
	return f, err
}

// filterOf checks the values of a filter and returns it as the store's.
func filterOf(v apitype.Filter, now time.Time) (store.Filter, error) {
	var err error
	f := store.Filter{
		Service: v.Service, Method: strings.ToUpper(v.Method), Host: strings.ToLower(v.Host),
		Path: v.Path, Text: v.Q, Failed: v.Failed,
	}
	if v.From != "" {
		if f.From, err = parseTime(v.From, now); err != nil {
			return f, errorf(http.StatusBadRequest, "from=%q: %s", v.From, err)
		}
	}
	if v.To != "" {
		if f.To, err = parseTime(v.To, now); err != nil {
			return f, errorf(http.StatusBadRequest, "to=%q: %s", v.To, err)
		}
	}
	switch d := capture.Direction(strings.ToLower(v.Direction)); d {
	case "", capture.DirIn, capture.DirOut:
		f.Direction = d
	default:
		return f, errorf(http.StatusBadRequest, "direction=%q: want in or out", v.Direction)
	}
	if v.Status != "" {
		if f.StatusLo, f.StatusHi, err = store.ParseStatus(v.Status); err != nil {
			return f, errorf(http.StatusBadRequest, "%s", err)
		}
	}
	return f, nil
}

// parseTime reads a time parameter: RFC 3339, Unix milliseconds, "now",
// or a duration before now as -15m, -2h, -7d.
func parseTime(s string, now time.Time) (time.Time, error) {
	if s == "now" {
		return now, nil
	}
	if rel, ok := strings.CutPrefix(s, "-"); ok {
		if days, ok := strings.CutSuffix(rel, "d"); ok {
			if n, err := strconv.Atoi(days); err == nil && n >= 0 {
				return now.Add(-time.Duration(n) * 24 * time.Hour), nil
			}
		} else if d, err := time.ParseDuration(rel); err == nil {
			return now.Add(-d), nil
		}
		return time.Time{}, errors.New("want RFC 3339, Unix milliseconds, now, or a duration ago as -15m")
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.UnixMilli(ms).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, errors.New("want RFC 3339, Unix milliseconds, now, or a duration ago as -15m")
	}
	return t, nil
}

func parseLimit(r *http.Request, def, max int) (int, error) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, errorf(http.StatusBadRequest, "limit=%q: want a whole number from 1 to %d", s, max)
	}
	return min(n, max), nil
}

func (s *Server) listRecords(r *http.Request, key store.Key) (any, error) {
	f, err := s.parseFilter(r, key, s.now())
	if err != nil {
		return nil, err
	}
	limit, err := parseLimit(r, store.DefaultLimit, store.MaxLimit)
	if err != nil {
		return nil, err
	}
	q := store.Query{Filter: f, Limit: limit, Cursor: r.URL.Query().Get("cursor")}
	if v := r.URL.Query().Get("full"); v != "" {
		if q.Full, err = strconv.ParseBool(v); err != nil {
			return nil, errorf(http.StatusBadRequest, "full=%q: want true or false", v)
		}
	}
	page, err := s.store.List(r.Context(), key.Tenant, q)
	if err != nil {
		return nil, err
	}
	return apitype.RecordList{Records: page.Items, Next: page.Next}, nil
}

func (s *Server) getRecord(r *http.Request, key store.Key) (any, error) {
	return s.record(r, key)
}

// record returns the record of the path's {id}: of the traffic, or with
// the parameter snapshot, of that snapshot.
func (s *Server) record(r *http.Request, key store.Key) (*capture.Record, error) {
	id := r.PathValue("id")
	var rec *capture.Record
	var err error
	if snap := r.URL.Query().Get("snapshot"); snap != "" {
		rec, err = s.store.SnapshotRecord(r.Context(), key.Tenant, snap, id)
	} else {
		rec, err = s.store.Get(r.Context(), key.Tenant, id)
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(http.StatusNotFound, "no record with id %q", id)
	}
	return rec, err
}

func (s *Server) services(r *http.Request, key store.Key) (any, error) {
	f, err := s.parseFilter(r, key, s.now())
	if err != nil {
		return nil, err
	}
	sum, err := store.Summarize(r.Context(), s.store, key.Tenant, f)
	if err != nil {
		return nil, err
	}
	return apitype.Services{Services: sum}, nil
}

func (s *Server) serviceMap(r *http.Request, key store.Key) (any, error) {
	f, err := s.parseFilter(r, key, s.now())
	if err != nil {
		return nil, err
	}
	return store.Map(r.Context(), s.store, key.Tenant, f)
}

// histogramSteps are the steps the histogram picks from, by the range.
var histogramSteps = []time.Duration{time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second,
	time.Minute, 5 * time.Minute, 10 * time.Minute, 30 * time.Minute, time.Hour, 3 * time.Hour, 6 * time.Hour,
	12 * time.Hour, 24 * time.Hour, 7 * 24 * time.Hour}

func (s *Server) histogram(r *http.Request, key store.Key) (any, error) {
	now := s.now()
	f, err := s.parseFilter(r, key, now)
	if err != nil {
		return nil, err
	}
	if f.From.IsZero() {
		f.From = now.Add(-time.Hour)
	}
	if f.To.IsZero() {
		f.To = now
	}
	if !f.To.After(f.From) {
		return nil, errorf(http.StatusBadRequest, "the histogram needs from before to")
	}
	var step time.Duration
	if v := r.URL.Query().Get("step"); v != "" {
		if step, err = time.ParseDuration(v); err != nil || step < time.Second {
			return nil, errorf(http.StatusBadRequest, "step=%q: want a duration of at least 1s", v)
		}
	} else {
		// About 60 to 120 steps over the range.
		step = histogramSteps[len(histogramSteps)-1]
		for _, st := range histogramSteps {
			if f.To.Sub(f.From)/st <= 120 {
				step = st
				break
			}
		}
	}
	if f.To.Sub(f.From)/step > store.MaxBuckets {
		return nil, errorf(http.StatusBadRequest, "step=%s: more than %d steps in the range", step, store.MaxBuckets)
	}
	b, err := store.Histogram(r.Context(), s.store, key.Tenant, f, step)
	if err != nil {
		return nil, err
	}
	return apitype.Histogram{From: f.From.UTC(), To: f.To.UTC(), Step: step.String(), StepMs: step.Milliseconds(), Buckets: b}, nil
}
