// Package forwarder is the cluster forwarder: an HTTP server on :8888 that
// receives batches of capture records from every goproxy of a cluster (the
// wire protocol, version 1), stamps the cluster and tenant labels on them,
// appends them to JSONL files in a directory, and answers the deployment
// guide's `curl localhost:8888 | grep Connected` health check.
//
// This is the first slice: the local directory is the only destination.
// Redaction, the hub, the tenant bucket and the disk spool come later; the
// guide's variables for them are accepted and reported at start-up.
package forwarder

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/tapwire/tapwire/internal/wire"
)

// Config is the forwarder's configuration. Every field has an environment
// variable and a flag of the same meaning; a flag wins.
type Config struct {
	Listen string // FORWARDER_LISTEN: address to serve; if zero, :8888 (the guide's port)
	Dir    string // FORWARDER_DIR: directory of the record files; if zero, ./tapwire-forwarded

	// Token, if not zero, is the shared secret every goproxy must present
	// as "Authorization: Bearer <token>" (FORWARDER_TOKEN, the same
	// variable goproxy reads). If zero, batches are accepted from anyone
	// who can reach the port, and a warning is logged.
	Token string

	Cluster  string // CLUSTER_NAME: set as labels.cluster on records that have none
	TenantID string // TENANT_ID: set as labels.tenant on every record

	// MaxBatchBytes bounds one batch's decompressed body
	// (FORWARDER_MAX_BATCH_BYTES); larger batches get 413 and the client
	// splits them. If zero, 32 MiB (wire.MaxDecodedBytes).
	MaxBatchBytes int64
	// MaxInFlight bounds the batches decoded at once
	// (FORWARDER_MAX_IN_FLIGHT), and so the memory held:
	// about MaxInFlight × MaxBatchBytes. Beyond it a batch gets 429 with
	// Retry-After. If zero, 4.
	MaxInFlight int

	LogLevel        string        // LOG_LEVEL: debug, info, warn, error; if zero, info
	ShutdownTimeout time.Duration // SHUTDOWN_TIMEOUT: how long SIGTERM waits for batches in flight; if zero, 20s

	// Pending lists the guide's forwarder variables that are set in the
	// environment but not acted on by this version (names only: some are
	// secrets). Load fills it.
	Pending []string
}

// PendingVars are the deployment guide's forwarder variables that this
// version reads without error but does not act on yet.
var PendingVars = []string{
	"SPEEDSCALE_API_KEY",     // hub delivery
	"SPEEDSCALE_APP_URL",     // hub delivery
	"TENANT_NAME",            // tenant identity beyond TENANT_ID
	"SUB_TENANT_NAME",        // tenant identity beyond TENANT_ID
	"SUB_TENANT_STREAM",      // batch announcements
	"TENANT_BUCKET",          // bucket delivery
	"TENANT_REGION",          // bucket delivery
	"SPEEDSCALE_FILTER_RULE", // filters
	"SPEEDSCALE_DLP_CONFIG",  // redaction
	"SPEEDSCALE_REDACT",      // redaction
}

// ConfigError names the variable, the bad value and what is allowed.
type ConfigError struct {
	Var, Value, Want string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("%s=%q: %s", e.Var, e.Value, e.Want)
}

func (c *Config) setDefaults() {
	if c.Listen == "" {
		c.Listen = ":8888"
	}
	if c.Dir == "" {
		c.Dir = "tapwire-forwarded"
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = wire.MaxDecodedBytes
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 4
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 20 * time.Second
	}
}

// Validate checks the configuration after defaults.
func (c *Config) Validate() error {
	if _, port, err := net.SplitHostPort(c.Listen); err != nil || port == "" {
		return &ConfigError{"FORWARDER_LISTEN", c.Listen, "want host:port or :port, e.g. :8888"}
	}
	if c.MaxBatchBytes < 64<<10 {
		return &ConfigError{"FORWARDER_MAX_BATCH_BYTES", strconv.FormatInt(c.MaxBatchBytes, 10), "want at least 65536"}
	}
	if c.MaxInFlight < 1 {
		return &ConfigError{"FORWARDER_MAX_IN_FLIGHT", strconv.Itoa(c.MaxInFlight), "want at least 1"}
	}
	if _, ok := parseLevel(c.LogLevel); !ok {
		return &ConfigError{"LOG_LEVEL", c.LogLevel, "want one of debug, info, warn, error"}
	}
	if c.ShutdownTimeout < 0 {
		return &ConfigError{"SHUTDOWN_TIMEOUT", c.ShutdownTimeout.String(), "want a duration such as 20s"}
	}
	return nil
}

func parseLevel(s string) (slog.Level, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, true
	case "info", "":
		return slog.LevelInfo, true
	case "warn", "warning":
		return slog.LevelWarn, true
	case "error":
		return slog.LevelError, true
	}
	return slog.LevelInfo, false
}

// NewLogger returns the forwarder's logger: JSON lines on w at level.
func NewLogger(w io.Writer, level string) *slog.Logger {
	lv, _ := parseLevel(level)
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lv}))
}

// Load reads the configuration from the environment (getenv) and then
// args, whose flags win. It returns flag.ErrHelp after printing the help
// for -help.
func Load(args []string, getenv func(string) string, out io.Writer) (*Config, error) {
	c := &Config{}
	fs := flag.NewFlagSet("forwarder", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() { usage(fs) }

	type binding struct {
		env, flag, help string
		set             func(string) error
	}
	var bs []binding
	str := func(p *string, env, fl, help string) {
		bs = append(bs, binding{env, fl, help, func(v string) error { *p = v; return nil }})
	}
	num := func(p *int, env, fl, help string) {
		bs = append(bs, binding{env, fl, help, func(v string) error {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return &ConfigError{env, v, "want a whole number"}
			}
			*p = n
			return nil
		}})
	}
	num64 := func(p *int64, env, fl, help string) {
		bs = append(bs, binding{env, fl, help, func(v string) error {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return &ConfigError{env, v, "want a byte count"}
			}
			*p = n
			return nil
		}})
	}
	dur := func(p *time.Duration, env, fl, help string) {
		bs = append(bs, binding{env, fl, help, func(v string) error {
			d, err := time.ParseDuration(strings.TrimSpace(v))
			if err != nil || d < 0 {
				return &ConfigError{env, v, "want a duration such as 20s"}
			}
			*p = d
			return nil
		}})
	}
	str(&c.Listen, "FORWARDER_LISTEN", "listen", "address to serve batches and the health check on (default :8888)")
	str(&c.Dir, "FORWARDER_DIR", "dir", "directory the records are appended to as JSONL files (default ./tapwire-forwarded)")
	str(&c.Token, "FORWARDER_TOKEN", "token", "shared token goproxies must send as a bearer token; empty accepts anyone")
	str(&c.Cluster, "CLUSTER_NAME", "cluster-name", "cluster label set on records that carry none")
	str(&c.TenantID, "TENANT_ID", "tenant-id", "tenant label set on every record")
	num64(&c.MaxBatchBytes, "FORWARDER_MAX_BATCH_BYTES", "max-batch-bytes", "largest decompressed batch accepted; larger ones get 413 (default 33554432)")
	num(&c.MaxInFlight, "FORWARDER_MAX_IN_FLIGHT", "max-in-flight", "batches decoded at once; beyond it 429 with Retry-After (default 4)")
	str(&c.LogLevel, "LOG_LEVEL", "log-level", "debug, info, warn or error (default info)")
	dur(&c.ShutdownTimeout, "SHUTDOWN_TIMEOUT", "shutdown-timeout", "how long SIGTERM waits for batches in flight (default 20s)")

	for _, b := range bs {
		if v := getenv(b.env); v != "" {
			if err := b.set(v); err != nil {
				return nil, err
			}
		}
	}
	for _, b := range bs {
		b := b
		fs.Func(b.flag, b.help+" [$"+b.env+"]", func(v string) error {
			if err := b.set(v); err != nil {
				var ce *ConfigError
				if errors.As(err, &ce) {
					return errors.New(ce.Want)
				}
				return err
			}
			return nil
		})
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q; forwarder takes flags only (see -help)", fs.Arg(0))
	}
	for _, name := range PendingVars {
		if getenv(name) != "" {
			c.Pending = append(c.Pending, name)
		}
	}
	c.setDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func usage(fs *flag.FlagSet) {
	out := fs.Output()
	fmt.Fprintf(out, `forwarder: Tapwire's cluster forwarder (first slice).

It receives the batches every goproxy of a cluster sends to FORWARDER_ADDR
(POST /v1/batches, the wire protocol of docs/shipping.md), stamps CLUSTER_NAME
and TENANT_ID on the records, and appends them to JSONL files in -dir. A batch
is answered 200 only after its records are written and fsynced.

Health, as the deployment guide checks it:

  curl -s localhost:8888 | grep Connected
  # "Connected: writing to DIR", or 503 "Not connected: REASON" when DIR is not writable
  curl -s localhost:8888/stats     # counters: batches, records, rejected, unauthorized, ...

Every setting is an environment variable and a flag; a flag wins. Examples:

  forwarder                                        # :8888, records to ./tapwire-forwarded
  FORWARDER_TOKEN=s3cret CLUSTER_NAME=ecs forwarder -dir /var/lib/tapwire
  goproxy -forwarder 127.0.0.1:8888 -forwarder-token s3cret   # a goproxy sending to it
  hub -dir /var/lib/tapwire                        # read the records back

Not yet acted on (read without error, named in the start-up log when set):
%s
Delivery to the hub and the bucket, redaction and filters come later.

Settings:
`, wrap(strings.Join(PendingVars, ", "), "  ", 78))
	fs.PrintDefaults()
}

// wrap breaks s at spaces into lines of at most width, each indented.
func wrap(s, indent string, width int) string {
	var b strings.Builder
	line := indent
	for _, w := range strings.Fields(s) {
		if len(line) > len(indent) && len(line)+1+len(w) > width {
			b.WriteString(line + "\n")
			line = indent
		}
		if len(line) > len(indent) {
			line += " "
		}
		line += w
	}
	b.WriteString(line)
	return b.String()
}
