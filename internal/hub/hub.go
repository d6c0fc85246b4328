// Package hub is the read side of Tapwire, in its first slice: an HTTP
// JSON API over the record files a forwarder (or goproxy) wrote to a
// directory. It reads the files on every request; the hub's store (SQLite,
// PostgreSQL), API keys and the traffic viewer come later.
package hub

import (
	"container/heap"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/sink/file"
	"github.com/tapwire/tapwire/internal/wire"
)

// Limits of GET /api/records.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// Config is the hub's configuration; a flag wins over its variable.
type Config struct {
	Dir    string // HUB_DIR: directory of record files; if zero, ./tapwire-forwarded (the forwarder's default)
	Listen string // HUB_LISTEN: address to serve; if zero, 127.0.0.1:8080
}

func (c *Config) setDefaults() {
	if c.Dir == "" {
		c.Dir = "tapwire-forwarded"
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8080"
	}
}

// Validate checks the configuration after defaults.
func (c *Config) Validate() error {
	if _, port, err := net.SplitHostPort(c.Listen); err != nil || port == "" {
		return fmt.Errorf("HUB_LISTEN=%q: want host:port, e.g. 127.0.0.1:8080", c.Listen)
	}
	return nil
}

// Load reads the configuration from the environment and args. It returns
// flag.ErrHelp after printing the help for -help.
func Load(args []string, getenv func(string) string, out io.Writer) (*Config, error) {
	c := &Config{Dir: getenv("HUB_DIR"), Listen: getenv("HUB_LISTEN")}
	fs := flag.NewFlagSet("hub", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() { usage(fs) }
	fs.StringVar(&c.Dir, "dir", c.Dir, "directory of record files (records-*.jsonl) to serve (default ./tapwire-forwarded) [$HUB_DIR]")
	fs.StringVar(&c.Listen, "listen", c.Listen, "address to serve the API on (default 127.0.0.1:8080) [$HUB_LISTEN]")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q; hub takes flags only (see -help)", fs.Arg(0))
	}
	c.setDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func usage(fs *flag.FlagSet) {
	fmt.Fprintf(fs.Output(), `hub: Tapwire's hub, first slice: the records of a directory as a JSON API.

It serves the JSONL record files that the forwarder (-dir) or goproxy
(CAPTURE_DIR) writes, reading them on every request. There is no database, no
API key and no web viewer yet: keep it on loopback (the default).

  hub -dir ./tapwire-forwarded -listen 127.0.0.1:8080

API (every answer is JSON; records are in the form of docs/record.md):

  GET /api/records                    newest first (by start time), at most 100
      ?limit=N                        1 to %d (larger is clamped)
      &service=S                      only records whose labels.service is S
      &direction=in|out               only inbound or outbound exchanges
  GET /api/records/{id}               one record, 404 if no file holds it
  GET /healthz                        {"status":"ok","dir":...,"files":N}

  curl -s '127.0.0.1:8080/api/records?limit=5&direction=out' | jq '.[].http.req.url'

Settings:
`, MaxLimit)
	fs.PrintDefaults()
}

// Server serves the API over one directory.
type Server struct {
	dir string
	log *slog.Logger
	mux *http.ServeMux
}

// New returns a Server reading dir. A missing directory is not an error:
// it has no records until something writes there.
func New(dir string, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.NewJSONHandler(io.Discard, nil))
	}
	s := &Server{dir: dir, log: log, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /api/records", s.wrap(s.listRecords))
	s.mux.HandleFunc("GET /api/records/{id}", s.wrap(s.getRecord))
	s.mux.HandleFunc("GET /healthz", s.wrap(s.health))
	return s
}

// Handler serves the API.
func (s *Server) Handler() http.Handler { return s.mux }

// NewHTTPServer returns the http.Server a command runs s with.
func (s *Server) NewHTTPServer() *http.Server {
	return &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
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

// wrap turns a handler's result into the answer: the value as JSON, or
// {"error": msg} with the error's status.
func (s *Server) wrap(h func(r *http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := h(r)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if err != nil {
			var he *httpError
			if !errors.As(err, &he) {
				s.log.Error("request failed", "path", r.URL.Path, "err", err.Error())
				he = &httpError{http.StatusInternalServerError, "internal error"}
			}
			w.WriteHeader(he.status)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": he.msg})
			return
		}
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(v)
	}
}

// Query is a filter of GET /api/records.
type Query struct {
	Limit     int               // 1 to MaxLimit
	Service   string            // labels.service; empty: any
	Direction capture.Direction // in or out; empty: any
}

func parseQuery(r *http.Request) (Query, error) {
	v := r.URL.Query()
	q := Query{Limit: DefaultLimit, Service: v.Get("service")}
	if l := v.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 {
			return q, errorf(http.StatusBadRequest, "limit=%q: want a whole number from 1 to %d", l, MaxLimit)
		}
		q.Limit = min(n, MaxLimit)
	}
	switch d := capture.Direction(strings.ToLower(v.Get("direction"))); d {
	case "", capture.DirIn, capture.DirOut:
		q.Direction = d
	default:
		return q, errorf(http.StatusBadRequest, "direction=%q: want in or out", v.Get("direction"))
	}
	return q, nil
}

func (q Query) match(r *capture.Record) bool {
	return (q.Service == "" || r.Labels.Service == q.Service) &&
		(q.Direction == "" || r.Direction == q.Direction)
}

func (s *Server) listRecords(r *http.Request) (any, error) {
	q, err := parseQuery(r)
	if err != nil {
		return nil, err
	}
	return s.Newest(q)
}

// Newest returns the q.Limit newest records that match q, newest first:
// by start time, then by id. It holds at most q.Limit records at once.
func (s *Server) Newest(q Query) ([]*capture.Record, error) {
	if q.Limit < 1 {
		q.Limit = DefaultLimit
	}
	h := &oldestFirst{}
	err := s.scan(func(rec *capture.Record) error {
		if !q.match(rec) {
			return nil
		}
		if h.Len() < q.Limit {
			heap.Push(h, rec)
		} else if newer(rec, (*h)[0]) {
			(*h)[0] = rec
			heap.Fix(h, 0)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]*capture.Record, h.Len())
	for i := len(out) - 1; i >= 0; i-- {
		out[i] = heap.Pop(h).(*capture.Record)
	}
	return out, nil
}

// newer orders records by start time, then by id (UUIDv7 ids sort by time).
func newer(a, b *capture.Record) bool {
	if !a.Start.Equal(b.Start) {
		return a.Start.After(b.Start)
	}
	return a.ID > b.ID
}

// oldestFirst is a min-heap of records: the root is the oldest kept.
type oldestFirst []*capture.Record

func (h oldestFirst) Len() int           { return len(h) }
func (h oldestFirst) Less(i, j int) bool { return newer(h[j], h[i]) }
func (h oldestFirst) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *oldestFirst) Push(x any)        { *h = append(*h, x.(*capture.Record)) }
func (h *oldestFirst) Pop() any {
	old := *h
	r := old[len(old)-1]
	*h = old[:len(old)-1]
	return r
}

var errFound = errors.New("found")

func (s *Server) getRecord(r *http.Request) (any, error) {
	id := r.PathValue("id")
	var found *capture.Record
	err := s.scan(func(rec *capture.Record) error {
		if rec.ID == id {
			found = rec
			return errFound
		}
		return nil
	})
	if err != nil && !errors.Is(err, errFound) {
		return nil, err
	}
	if found == nil {
		return nil, errorf(http.StatusNotFound, "no record with id %q", id)
	}
	return found, nil
}

func (s *Server) health(*http.Request) (any, error) {
	files, err := file.Files(s.dir)
	if err != nil {
		return nil, err
	}
	status := "ok"
	if _, err := os.Stat(s.dir); err != nil {
		status = "no directory yet"
	}
	return map[string]any{"status": status, "dir": s.dir, "files": len(files)}, nil
}

// scan calls fn with every record of the directory's files, in the order
// they were written. It is file.ReadDir, except that a file with a bad line
// (a torn last write after a crash) is logged and the rest of that file
// skipped, instead of hiding every other file.
func (s *Server) scan(fn func(*capture.Record) error) error {
	files, err := file.Files(s.dir)
	if err != nil {
		return fmt.Errorf("list record files: %w", err)
	}
	for _, path := range files {
		if err := s.scanFile(path, fn); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) scanFile(path string, fn func(*capture.Record) error) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil // removed since listed
	}
	if err != nil {
		return fmt.Errorf("open record file: %w", err)
	}
	defer f.Close()
	var fnErr error
	err = wire.DecodeBatch(f, wire.EncodingIdentity, math.MaxInt64, func(r *capture.Record) error {
		fnErr = fn(r)
		return fnErr
	})
	var de *wire.DecodeError
	switch {
	case err == nil:
		return nil
	case fnErr != nil:
		return fnErr
	case errors.As(err, &de):
		s.log.Warn("skipping the rest of a record file", "file", path, "err", err.Error())
		return nil
	default:
		return fmt.Errorf("read %s: %w", path, err)
	}
}
