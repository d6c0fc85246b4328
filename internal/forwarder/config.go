// Package forwarder is the cluster forwarder: an HTTP server on :8888 that
// receives batches of capture records from every goproxy of a cluster (the
// wire protocol, version 1), stamps the cluster and tenant labels on them,
// appends them to a durable on-disk spool before it acknowledges them, and
// delivers the spool to each configured sink at least once, with one
// delivery loop per sink. It answers the deployment guide's
// `curl localhost:8888 | grep Connected` health check. docs/forwarder.md
// describes it.
package forwarder

import (
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/tapwire/tapwire/internal/envflag"
	"github.com/tapwire/tapwire/internal/redact"
	"github.com/tapwire/tapwire/internal/service"
	"github.com/tapwire/tapwire/internal/sink/hub"
	"github.com/tapwire/tapwire/internal/wire"
)

// Config is the forwarder's configuration. Every field has an environment
// variable and a flag of the same meaning; a flag wins.
type Config struct {
	Listen string // FORWARDER_LISTEN: address to serve; if zero, :8888 (the guide's port)

	// Listener, if not nil, is where New serves instead of binding Listen
	// (tests, speedctl demo). Not a setting.
	Listener net.Listener

	// Dir is the directory sink: records are appended to JSONL files
	// there (FORWARDER_DIR). If zero and no other sink is configured,
	// ./tapwire-forwarded (the embedded default); if zero otherwise, no
	// directory sink.
	Dir string

	// Token, if not zero, is the shared secret every goproxy must present
	// as "Authorization: Bearer <token>" (FORWARDER_TOKEN, the same
	// variable goproxy reads). If zero, batches are accepted from anyone
	// who can reach the port, and a warning is logged.
	Token string

	// TLSCert and TLSKey make the forwarder serve TLS on Listen, batches
	// and health alike (FORWARDER_TLS_CERT, FORWARDER_TLS_KEY): each is
	// the path of a PEM file, or the PEM itself (an ECS secret given as a
	// variable). goproxies then use FORWARDER_ADDR=https://HOST:PORT.
	// `speedctl certs forwarder` makes a pair signed by the guide's CA. If
	// zero, plain HTTP (the guide's).
	TLSCert, TLSKey string

	// HubURL is the hub (SPEEDSCALE_APP_URL): host[:port], which means
	// https, or an http:// or https:// URL. If zero, no hub sink.
	HubURL string
	// APIKey is what the forwarder presents to the hub as a bearer token
	// (SPEEDSCALE_API_KEY); the hub derives the tenant from it. Required
	// with HubURL.
	APIKey string

	// Bucket is the tenant bucket (TENANT_BUCKET): raw batches as
	// compressed JSON lines objects. If zero, no bucket sink.
	Bucket string
	// Region is the bucket's region (TENANT_REGION). If zero, the AWS
	// SDK's default (AWS_REGION...), else us-east-1.
	Region string
	// BucketEndpoint overrides the S3 endpoint for S3-compatible stores
	// (TENANT_BUCKET_ENDPOINT), e.g. http://minio:9000. If zero, AWS.
	BucketEndpoint string
	// BucketPathStyle addresses the bucket in the URL path
	// (TENANT_BUCKET_PATH_STYLE): "true" or "false". If zero, true with
	// an endpoint override and false without.
	BucketPathStyle string
	// BucketPrefix starts every object key (TENANT_BUCKET_PREFIX). If
	// zero, none.
	BucketPrefix string

	Cluster       string // CLUSTER_NAME: set as labels.cluster on records that have none
	TenantID      string // TENANT_ID: set as labels.tenant on every record
	TenantName    string // TENANT_NAME: set as tags.tenantName on every record
	SubTenantName string // SUB_TENANT_NAME: set as tags.subTenant on every record

	// MaxBatchBytes bounds one batch's decompressed body
	// (FORWARDER_MAX_BATCH_BYTES); larger batches get 413 and the client
	// splits them. If zero, 32 MiB (wire.MaxDecodedBytes).
	MaxBatchBytes int64
	// MaxInFlight bounds the batches decoded at once
	// (FORWARDER_MAX_IN_FLIGHT). Beyond it a batch gets 429 with
	// Retry-After. If zero, 4. A batch holds a frame of about 1 MiB and
	// its line being decoded (docs/forwarder.md, Memory).
	MaxInFlight int

	// SpoolDir holds the on-disk spool every accepted batch goes to before
	// it is acknowledged (FORWARDER_SPOOL_DIR). If zero, ./tapwire-spool.
	SpoolDir string
	// SpoolBytes bounds the spool on disk (FORWARDER_SPOOL_BYTES); when a
	// batch does not fit, the oldest records are deleted, counted and
	// logged. If zero, 1 GiB.
	SpoolBytes int64
	// SpoolSegmentBytes is the size of one spool file, and the unit of
	// loss when the spool is full (FORWARDER_SPOOL_SEGMENT_BYTES). If
	// zero, 16 MiB; at most half of SpoolBytes.
	SpoolSegmentBytes int64
	// SpoolSync is the fsync policy (FORWARDER_SPOOL_SYNC): "batch" (the
	// default): a batch is answered 200 only once it is fsynced, and
	// batches arriving together share one fsync; "none": answered once
	// written to the operating system, which a machine crash may lose
	// (risky: logged as a warning).
	SpoolSync string

	// FilterRule names the filter that drops unwanted traffic before it is
	// spooled (SPEEDSCALE_FILTER_RULE): "standard" (health checks and
	// metrics scrapes), "none", a filter in the vendor's shape as JSON, or
	// the path of a file holding one. If zero, standard.
	FilterRule string

	// Redaction holds SPEEDSCALE_REDACT, SPEEDSCALE_REDACT_BODIES and
	// SPEEDSCALE_DLP_CONFIG, read as goproxy reads them (redact.Settings):
	// by default the rules std-auth (credentials in headers, query
	// parameters and body fields) and std-card (card numbers), applied to
	// every record before it is spooled. See docs/forwarder.md.
	Redaction redact.Settings

	// DeliveryBatchBytes bounds the spooled bytes one delivery to a sink
	// carries (FORWARDER_DELIVERY_BATCH_BYTES). If zero, 4 MiB.
	DeliveryBatchBytes int64

	LogLevel        string        // LOG_LEVEL: debug, info, warn, error; if zero, info
	ShutdownTimeout time.Duration // SHUTDOWN_TIMEOUT: how long SIGTERM waits for batches in flight and deliveries; if zero, 20s

	// Pending lists the guide's forwarder variables that are set in the
	// environment but not acted on by this version (names only: some are
	// secrets). Load fills it.
	Pending []string
}

// PendingVars are the deployment guide's forwarder variables that this
// version reads without error but does not act on yet.
var PendingVars = []string{
	"SUB_TENANT_STREAM", // batch announcements
}

// ConfigError names the variable, the bad value and what is allowed.
type ConfigError = envflag.Error

func configError(name, value, want string) *ConfigError {
	return &ConfigError{Var: name, Value: value, Want: want}
}

func (c *Config) setDefaults() {
	if c.Listen == "" {
		c.Listen = ":8888"
	}
	if c.Dir == "" && !c.otherSinks() {
		c.Dir = "tapwire-forwarded"
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = wire.MaxDecodedBytes
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 4
	}
	if c.SpoolDir == "" {
		c.SpoolDir = "tapwire-spool"
	}
	if c.SpoolBytes == 0 {
		c.SpoolBytes = 1 << 30
	}
	if c.SpoolSegmentBytes == 0 {
		c.SpoolSegmentBytes = min(16<<20, c.SpoolBytes/2)
	}
	if c.SpoolSync == "" {
		c.SpoolSync = "batch"
	}
	if c.BucketPathStyle == "" {
		c.BucketPathStyle = strconv.FormatBool(c.BucketEndpoint != "")
	}
	if c.FilterRule == "" {
		c.FilterRule = "standard"
	}
	c.Redaction.SetDefaults()
	if c.DeliveryBatchBytes == 0 {
		c.DeliveryBatchBytes = 4 << 20
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 20 * time.Second
	}
}

// otherSinks reports whether a sink other than the directory is
// configured.
func (c *Config) otherSinks() bool { return c.HubURL != "" || c.Bucket != "" }

// Validate checks the configuration after defaults.
func (c *Config) Validate() error {
	if _, port, err := net.SplitHostPort(c.Listen); err != nil || port == "" {
		return configError("FORWARDER_LISTEN", c.Listen, "want host:port or :port, e.g. :8888")
	}
	if c.MaxBatchBytes < 64<<10 {
		return configError("FORWARDER_MAX_BATCH_BYTES", strconv.FormatInt(c.MaxBatchBytes, 10), "want at least 65536")
	}
	if c.MaxInFlight < 1 {
		return configError("FORWARDER_MAX_IN_FLIGHT", strconv.Itoa(c.MaxInFlight), "want at least 1")
	}
	if c.SpoolSegmentBytes < 64<<10 {
		return configError("FORWARDER_SPOOL_SEGMENT_BYTES", strconv.FormatInt(c.SpoolSegmentBytes, 10), "want at least 65536")
	}
	if c.SpoolBytes < 2*c.SpoolSegmentBytes || c.SpoolBytes < 2*c.MaxBatchBytes+(64<<10) {
		return configError("FORWARDER_SPOOL_BYTES", strconv.FormatInt(c.SpoolBytes, 10),
			fmt.Sprintf("want at least twice FORWARDER_SPOOL_SEGMENT_BYTES and twice FORWARDER_MAX_BATCH_BYTES (%d)", max(2*c.SpoolSegmentBytes, 2*c.MaxBatchBytes+(64<<10))))
	}
	if c.SpoolSync != "batch" && c.SpoolSync != "none" {
		return configError("FORWARDER_SPOOL_SYNC", c.SpoolSync, "want batch or none")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return configError("FORWARDER_TLS_CERT", abbreviate(c.TLSCert), "set both FORWARDER_TLS_CERT and FORWARDER_TLS_KEY, or neither")
	}
	if c.HubURL != "" {
		if _, err := hub.BaseURL(c.HubURL); err != nil {
			return configError("SPEEDSCALE_APP_URL", c.HubURL, "want host[:port] (https) or an http:// or https:// URL")
		}
		if strings.TrimSpace(c.APIKey) == "" {
			return configError("SPEEDSCALE_API_KEY", "", "required with SPEEDSCALE_APP_URL: the hub derives the tenant from it")
		}
	}
	if c.BucketPathStyle != "true" && c.BucketPathStyle != "false" {
		return configError("TENANT_BUCKET_PATH_STYLE", c.BucketPathStyle, "want true or false")
	}
	if c.BucketEndpoint != "" && !strings.HasPrefix(c.BucketEndpoint, "http://") && !strings.HasPrefix(c.BucketEndpoint, "https://") {
		return configError("TENANT_BUCKET_ENDPOINT", c.BucketEndpoint, "want an http:// or https:// URL")
	}
	if err := c.Redaction.Validate(); err != nil {
		return err
	}
	if c.DeliveryBatchBytes < 64<<10 {
		return configError("FORWARDER_DELIVERY_BATCH_BYTES", strconv.FormatInt(c.DeliveryBatchBytes, 10), "want at least 65536")
	}
	if _, err := service.ParseLevel(c.LogLevel); err != nil {
		return configError("LOG_LEVEL", c.LogLevel, "want "+service.Levels)
	}
	if c.ShutdownTimeout < 0 {
		return configError("SHUTDOWN_TIMEOUT", c.ShutdownTimeout.String(), "want a duration such as 20s")
	}
	return nil
}

// Load reads the configuration from the environment (getenv) and then
// args, whose flags win. It returns flag.ErrHelp after printing the help
// for -help.
func Load(args []string, getenv func(string) string, out io.Writer) (*Config, error) {
	c := &Config{}
	fs := flag.NewFlagSet("forwarder", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() { usage(fs) }

	d := &Config{}
	d.setDefaults()
	set := envflag.Bind(c, d, bind)

	// The environment first, then flags over it.
	if err := set.Parse(fs, args, getenv); err != nil {
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

// bind binds every setting of c to set: the one list of settings, which
// Load parses and the help shows with the defaults of setDefaults.
func bind(set *envflag.Set, c *Config) {
	str, num, num64, dur := set.String, set.Int, set.Bytes, set.Duration
	str(&c.Listen, "FORWARDER_LISTEN", "listen", "`address` to serve batches and the health check on")
	str(&c.Dir, "FORWARDER_DIR", "dir", "directory sink: records are appended to JSONL files in this `directory` (default ./tapwire-forwarded when no other sink is configured)")
	str(&c.Token, "FORWARDER_TOKEN", "token", "shared `token` goproxies must send as a bearer token; empty accepts anyone")
	str(&c.TLSCert, "FORWARDER_TLS_CERT", "tls-cert", "serve TLS with this `certificate`: a PEM file, or the PEM itself (with -tls-key; see speedctl certs forwarder)")
	str(&c.TLSKey, "FORWARDER_TLS_KEY", "tls-key", "the `key` of -tls-cert: a PEM file, or the PEM itself")
	str(&c.HubURL, "SPEEDSCALE_APP_URL", "app-url", "hub sink: the hub's `address`: host[:port] (https) or URL")
	str(&c.APIKey, "SPEEDSCALE_API_KEY", "api-key", "the API `key` presented to the hub (prefer the environment: flags show in ps)")
	str(&c.Bucket, "TENANT_BUCKET", "bucket", "bucket sink: the S3 `bucket` for raw batches")
	str(&c.Region, "TENANT_REGION", "region", "the bucket's `region` (default the AWS SDK's, else us-east-1)")
	str(&c.BucketEndpoint, "TENANT_BUCKET_ENDPOINT", "bucket-endpoint", "S3 `endpoint` override for S3-compatible stores, e.g. http://minio:9000")
	str(&c.BucketPathStyle, "TENANT_BUCKET_PATH_STYLE", "bucket-path-style", "`true|false`: bucket in the URL path (default true with an endpoint override, else false)")
	str(&c.BucketPrefix, "TENANT_BUCKET_PREFIX", "bucket-prefix", "`prefix` of every object key")
	str(&c.Cluster, "CLUSTER_NAME", "cluster-name", "cluster `label` set on records that carry none")
	str(&c.TenantID, "TENANT_ID", "tenant-id", "tenant `label` set on every record")
	str(&c.TenantName, "TENANT_NAME", "tenant-name", "tenant `name` set as tags.tenantName on every record")
	str(&c.SubTenantName, "SUB_TENANT_NAME", "sub-tenant-name", "sub-tenant `name` set as tags.subTenant on every record")
	num64(&c.MaxBatchBytes, "FORWARDER_MAX_BATCH_BYTES", "max-batch-bytes", "largest decompressed batch accepted; larger ones get 413")
	num(&c.MaxInFlight, "FORWARDER_MAX_IN_FLIGHT", "max-in-flight", "`n` batches decoded at once; beyond it 429 with Retry-After")
	str(&c.SpoolDir, "FORWARDER_SPOOL_DIR", "spool-dir", "`directory` of the on-disk spool")
	num64(&c.SpoolBytes, "FORWARDER_SPOOL_BYTES", "spool-bytes", "bound of the spool on disk; beyond it the oldest records are dropped and counted")
	num64(&c.SpoolSegmentBytes, "FORWARDER_SPOOL_SEGMENT_BYTES", "spool-segment-bytes", "`size` of one spool file")
	str(&c.SpoolSync, "FORWARDER_SPOOL_SYNC", "spool-sync", "fsync `policy`: batch (a batch is fsynced before 200) or none (risky)")
	str(&c.FilterRule, "SPEEDSCALE_FILTER_RULE", "filter-rule", "`filter` dropping unwanted traffic: standard (health checks, metrics scrapes), none, JSON or a file")
	c.Redaction.Bind(set)
	num64(&c.DeliveryBatchBytes, "FORWARDER_DELIVERY_BATCH_BYTES", "delivery-batch-bytes", "most spooled bytes in one delivery to a sink")
	str(&c.LogLevel, "LOG_LEVEL", "log-level", "log `level`: debug, info, warn or error")
	dur(&c.ShutdownTimeout, "SHUTDOWN_TIMEOUT", "shutdown-timeout", "how long SIGTERM waits for batches in flight and deliveries")
}

func usage(fs *flag.FlagSet) {
	out := fs.Output()
	fmt.Fprintf(out, `forwarder: Tapwire's cluster forwarder.

It receives the batches every goproxy of a cluster sends to FORWARDER_ADDR
(POST /v1/batches, the wire protocol of docs/shipping.md), stamps CLUSTER_NAME
and TENANT_ID on the records, drops health checks and metrics scrapes (the
filter SPEEDSCALE_FILTER_RULE, default standard), redacts secrets (by default
credentials in headers, query parameters and JSON, form and multipart bodies,
and card numbers; SPEEDSCALE_REDACT_BODIES=false keeps the default rules out of
bodies; more with SPEEDSCALE_DLP_CONFIG), and appends them to a durable on-disk spool. A
batch is answered 200 only once it is in the spool (fsynced). One delivery
loop per sink reads the spool at its own cursor and delivers at least once,
retrying with backoff; a restart resumes from the spool. Sinks: the hub
(SPEEDSCALE_APP_URL with SPEEDSCALE_API_KEY), the tenant bucket (TENANT_BUCKET
in TENANT_REGION, AWS credentials from the SDK's chain, TENANT_BUCKET_ENDPOINT
for S3-compatible stores), and a local directory (FORWARDER_DIR; the default
when neither of the others is set). The spool is bounded
(FORWARDER_SPOOL_BYTES): when full, the oldest records are dropped and counted.
docs/forwarder.md describes it all.

Health, as the deployment guide checks it:

  curl -s localhost:8888 | grep Connected
  # "Connected: hub URL; bucket s3://B", or 503 "Not connected: REASON" while a sink
  # or the spool cannot be reached
  curl -s localhost:8888/stats     # counters: batches, records, per sink delivered, pending...
  curl -s localhost:8888/metrics   # the same for Prometheus

Every setting is an environment variable and a flag; a flag wins. Examples:

  forwarder                                        # :8888, records to ./tapwire-forwarded
  SPEEDSCALE_APP_URL=hub.internal:8443 SPEEDSCALE_API_KEY=... TENANT_BUCKET=b TENANT_REGION=us-east-1 forwarder
  FORWARDER_TOKEN=s3cret CLUSTER_NAME=ecs forwarder -dir /var/lib/tapwire -spool-dir /var/lib/tapwire-spool
  goproxy -forwarder 127.0.0.1:8888 -forwarder-token s3cret   # a goproxy sending to it
  hub import -tenant default /var/lib/tapwire     # load the directory sink's records into a hub

Not yet acted on (read without error, named in the start-up log when set):
%s

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
