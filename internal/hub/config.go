package hub

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tapwire/tapwire/internal/envflag"
	"github.com/tapwire/tapwire/internal/service"
	"github.com/tapwire/tapwire/internal/store"
	"github.com/tapwire/tapwire/internal/store/postgres"
	"github.com/tapwire/tapwire/internal/store/sqlite"
	"github.com/tapwire/tapwire/internal/wire"
)

// Config is the hub's configuration; a flag wins over its variable.
type Config struct {
	Listen   string // HUB_LISTEN: address to serve on; if zero, 127.0.0.1:8080
	DataDir  string // HUB_DATA_DIR: directory of the SQLite database (hub.db); if zero, ./tapwire-hub
	Database string // HUB_DATABASE_URL: a PostgreSQL DSN; when set, records go there and DataDir is unused

	// Retention is how long records are kept (by their start time); if
	// zero, 30 days. Negative keeps them forever (HUB_RETENTION=off).
	Retention time.Duration

	TLSCert string // HUB_TLS_CERT: certificate file (PEM); with TLSKey, the hub serves HTTPS
	TLSKey  string // HUB_TLS_KEY: its private key file (PEM)

	// MaxInFlight bounds the batches being ingested at once; more are
	// answered 429 with Retry-After. If zero, 4. Each holds a chunk of
	// 512 records and its line being decoded (docs/hub.md, Memory).
	MaxInFlight int
	// MaxBatchBytes is the largest decompressed batch accepted (413
	// above); if zero, wire.MaxDecodedBytes (32 MiB).
	MaxBatchBytes int64

	SQLiteSyncFull bool   // HUB_SQLITE_SYNC_FULL: fsync every commit (synchronous=FULL)
	LogLevel       string // LOG_LEVEL: debug, info, warn, error; if zero, info

	// Listener, if not nil, is where New serves instead of binding Listen
	// (tests, speedctl demo). Not a setting.
	Listener net.Listener
}

// Defaults.
const (
	DefaultListen    = "127.0.0.1:8080"
	DefaultDataDir   = "tapwire-hub"
	DefaultRetention = 30 * 24 * time.Hour
)

func (c *Config) setDefaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 4
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = wire.MaxDecodedBytes
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
}

// Validate checks the configuration after defaults.
func (c *Config) Validate() error {
	if _, port, err := net.SplitHostPort(c.Listen); err != nil || port == "" {
		return fmt.Errorf("HUB_LISTEN=%q: want host:port, e.g. 127.0.0.1:8080 or :8080", c.Listen)
	}
	if c.Database != "" && !strings.HasPrefix(c.Database, "postgres://") && !strings.HasPrefix(c.Database, "postgresql://") && !strings.Contains(c.Database, "=") {
		return fmt.Errorf("HUB_DATABASE_URL: want a PostgreSQL DSN (postgres://user@host/db or key=value pairs)")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return fmt.Errorf("HUB_TLS_CERT=%q, HUB_TLS_KEY=%q: set both or neither", c.TLSCert, c.TLSKey)
	}
	if c.MaxInFlight < 1 {
		return fmt.Errorf("HUB_MAX_INFLIGHT=%d: want at least 1", c.MaxInFlight)
	}
	if c.MaxBatchBytes < 1<<20 {
		return fmt.Errorf("HUB_MAX_BATCH_BYTES=%d: want at least 1 MiB", c.MaxBatchBytes)
	}
	if _, err := service.ParseLevel(c.LogLevel); err != nil {
		return err
	}
	return nil
}

// SQLitePath is the database file in DataDir.
func (c *Config) SQLitePath() string { return filepath.Join(c.DataDir, "hub.db") }

// OpenStore opens the configured store: PostgreSQL when Database is set,
// else SQLite in DataDir.
func (c *Config) OpenStore(ctx context.Context) (store.Store, error) {
	if c.Database != "" {
		return postgres.Open(ctx, c.Database)
	}
	return sqlite.Open(ctx, c.SQLitePath(), sqlite.Options{SyncFull: c.SQLiteSyncFull})
}

// describe says where records are, for logs; without the DSN's password.
func (c *Config) describe() string {
	if c.Database == "" {
		return "sqlite:" + c.SQLitePath()
	}
	return "postgres:" + redactDSN(c.Database)
}

func redactDSN(dsn string) string {
	if i := strings.Index(dsn, "://"); i >= 0 {
		if at := strings.LastIndex(dsn, "@"); at > i {
			user := dsn[i+3 : at]
			if u, _, ok := strings.Cut(user, ":"); ok {
				return dsn[:i+3] + u + ":xxxxx" + dsn[at:]
			}
		}
		return dsn
	}
	var out []string
	for _, f := range strings.Fields(dsn) {
		if strings.HasPrefix(f, "password=") {
			f = "password=xxxxx"
		}
		out = append(out, f)
	}
	return strings.Join(out, " ")
}

// parseRetention reads HUB_RETENTION: a duration as 720h, a number of days
// as 30d, or off (keep forever).
func parseRetention(s string) (time.Duration, error) {
	switch s = strings.TrimSpace(strings.ToLower(s)); s {
	case "":
		return 0, nil
	case "off", "0", "forever", "never":
		return -1, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err == nil && n > 0 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	} else if d, err := time.ParseDuration(s); err == nil && d >= time.Minute {
		return d, nil
	}
	return 0, fmt.Errorf("HUB_RETENTION=%q: want a duration of at least 1m (720h), days (30d) or off", s)
}

// bindStore binds the settings that pick the store: those of every hub
// command.
func bindStore(set *envflag.Set, c *Config) {
	set.String(&c.DataDir, "HUB_DATA_DIR", "data", "`directory` of the SQLite database (DIR/hub.db)")
	set.String(&c.Database, "HUB_DATABASE_URL", "db", "PostgreSQL `DSN`, e.g. postgres://tapwire@db/tapwire; replaces SQLite")
	set.Bool(&c.SQLiteSyncFull, "HUB_SQLITE_SYNC_FULL", "sqlite-sync-full", "SQLite: fsync every commit, durable against power loss, slower ingest")
}

// bind binds every setting of hub serve: the one list, which Load parses
// and the help shows with the defaults of setDefaults.
func bind(set *envflag.Set, c *Config) {
	set.String(&c.Listen, "HUB_LISTEN", "listen", "`address` to serve the API and ingest on")
	bindStore(set, c)
	set.Func("HUB_RETENTION", "retention", "keep records for this `duration` by start time: 720h, 30d, or off", func(v string) error {
		d, err := parseRetention(v)
		if err != nil {
			return &envflag.Error{Var: "HUB_RETENTION", Value: v, Want: "want a duration of at least 1m (720h), days (30d) or off"}
		}
		c.Retention = d
		return nil
	}, func() string { return retentionText(c.Retention) })
	set.String(&c.TLSCert, "HUB_TLS_CERT", "tls-cert", "serve HTTPS with this certificate `file` (PEM)")
	set.String(&c.TLSKey, "HUB_TLS_KEY", "tls-key", "and this private key `file` (PEM)")
	set.Int(&c.MaxInFlight, "HUB_MAX_INFLIGHT", "max-inflight", "`n` batches ingested at once; more get 429")
	set.Bytes(&c.MaxBatchBytes, "HUB_MAX_BATCH_BYTES", "max-batch-bytes", "largest decompressed batch `size` (1048576, 512KiB, 32MiB); larger get 413")
	set.String(&c.LogLevel, "LOG_LEVEL", "log-level", "log `level`: debug, info, warn or error")
}

// Load reads the serve command's configuration from the environment and
// args. It returns flag.ErrHelp after printing the help for -help.
func Load(args []string, getenv func(string) string, out io.Writer) (*Config, error) {
	c := &Config{}
	fs := flag.NewFlagSet("hub", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() { usage(fs) }
	d := &Config{}
	d.setDefaults()
	set := envflag.Bind(c, d, bind)
	if err := set.Parse(fs, args, getenv); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (see hub -help)", fs.Arg(0))
	}
	c.LogLevel = strings.ToLower(c.LogLevel)
	c.setDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func usage(fs *flag.FlagSet) {
	fmt.Fprintf(fs.Output(), `hub: Tapwire's hub. Forwarders post capture records to it with an API key;
it stores them per tenant (SQLite in a data directory, or PostgreSQL) and serves
a JSON API to query and export them and a web traffic viewer (docs/api.md,
docs/hub.md).

  hub [flags]                         serve (the default command)
  hub tenants create ID [-name NAME]  add a tenant
  hub tenants list
  hub keys create -tenant ID -role ingest|read|admin [-name NOTE]
                                      make an API key; it is printed once
  hub keys list [-tenant ID]
  hub keys revoke KEY-ID              (a running hub honours it within %s)
  hub import -tenant ID PATH...       load record files: JSONL of our records
                                      (the forwarder's or goproxy's files, or a
                                      directory of them), HAR, a vendor raw.jsonl,
                                      or a vendor Markdown recording (a directory)

On its first start the hub creates the tenant "default" with an ingest key (the
forwarder's SPEEDSCALE_API_KEY), a read key and an admin key (tenants and keys
through the API, as speedctl init does), and prints them once.

Endpoints:
  GET  /                              the traffic viewer (sign in with a read key)
  POST /v1/batches                    ingest (docs/shipping.md), ingest key
  GET  /api/v1/records                list, filters, cursor paging; read key
  GET  /api/v1/records/{id}           one record in full
  GET  /api/v1/records/{id}/body/req  its request (or res: response) body, decoded
  GET  /api/v1/services               per-service endpoint summaries
  GET  /api/v1/map                    service map
  GET  /api/v1/histogram              requests and errors over time
  GET  /api/v1/export/har             HAR of a selection
  GET  /api/v1/export/raw             the vendor's raw.jsonl of a selection
  GET  /api/v1/export/jsonl           our JSONL of a selection
  GET  /api/v1/whoami                 the key's tenant and role
  POST /api/v1/tenants                a tenant with an ingest and a read key; admin key
  GET  /api/v1/tenants                the tenants; admin key
  POST /api/v1/tenants/{id}/keys      a new key of a tenant; admin key
  GET  /api/v1/tenants/{id}/keys      a tenant's keys (ids, never keys); admin key
  DELETE /api/v1/keys/{key-id}        revoke a key; admin key
  GET  /healthz                       no key

  curl -H "Authorization: Bearer $KEY" '127.0.0.1:8080/api/v1/records?service=orders&status=5xx&from=-1h'

Settings (the store flags apply to every command):
`, authCacheTTL)
	fs.PrintDefaults()
}
