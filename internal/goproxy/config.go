// Package goproxy wires the capturing sidecar together: its configuration
// from the environment of the deployment guide, the inbound and outbound
// listeners, shipping to the forwarder (or local files), diagnostics,
// health and metrics, and the orderly shutdown.
package goproxy

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/envflag"
	"github.com/tapwire/tapwire/internal/redact"
	"github.com/tapwire/tapwire/internal/service"
)

// Config is goproxy's configuration. Every field has an environment
// variable (the names of the deployment guide where it has one; see
// docs/goproxy.md) and a flag of the same meaning.
type Config struct {
	CaptureMode   string // CAPTURE_MODE: only "proxy"; if zero, proxy
	ProxyType     string // PROXY_TYPE: reverse, forward or dual; if zero, dual
	ProxyProtocol string // PROXY_PROTOCOL: http or tcp:http; if zero, tcp:http

	InPort  int // PROXY_IN_PORT: inbound reverse-proxy port; if zero, 4143
	OutPort int // PROXY_OUT_PORT: outbound forward-proxy port; if zero, 4140

	// InListenHost is the address the inbound proxy binds
	// (PROXY_IN_LISTEN_HOST). If zero, every interface: the load balancer
	// reaches the task's PROXY_IN_PORT from outside, as in the guide.
	InListenHost string

	// OutListenHost is the address the outbound proxy binds
	// (PROXY_OUT_LISTEN_HOST). If zero, 127.0.0.1: only the task's own
	// containers can use it. Anything wider is an open proxy to whoever
	// can reach it, and logs a warning.
	OutListenHost string

	ReverseHost string // REVERSE_PROXY_HOST: the app's host, or an https:// URL; if zero, localhost
	ReversePort int    // REVERSE_PROXY_PORT: the app's port; if zero, 80

	// ForwarderAddr is where records go (FORWARDER_ADDR): host:port of
	// the forwarder (plain HTTP, the guide's), https://host:port of a
	// forwarder serving TLS (verified against TLS_CERT_DIR's tls.crt and
	// the system roots), or file:///dir for local JSONL files. If zero,
	// records go to files in LocalDir.
	ForwarderAddr  string
	ForwarderToken string // FORWARDER_TOKEN: bearer token for the forwarder; if zero, none
	LocalDir       string // CAPTURE_DIR: local record files when there is no forwarder; if zero, ./tapwire-records

	Labels capture.Labels // CLUSTER_NAME, APP_POD_NAMESPACE, APP_LABEL, APP_POD_NAME

	LogLevel string // LOG_LEVEL: debug, info, warn, error; if zero, info

	TLSCertDir     string // TLS_CERT_DIR: the CA's tls.crt and tls.key; if zero, /etc/ssl/speedscale
	TLSOutUnwrap   bool   // TLS_OUT_UNWRAP: intercept the app's outbound TLS
	TLSExtraRoots  string // TLS_OUT_EXTRA_CA_FILE: PEM bundle trusted for upstreams besides the system roots
	LeafCacheSize  int    // TLS_LEAF_CACHE_SIZE: leaf certificates kept; if zero, 1024
	TLSInUnwrap    bool   // TLS_IN_UNWRAP: terminate inbound TLS with the app's certificate
	TLSInPublic    string // TLS_IN_PUBLIC_KEY
	TLSInPrivate   string // TLS_IN_PRIVATE_KEY
	TLSMutualCert  string // TLS_MUTUAL_PUBLIC_KEY: client certificate for upstreams that ask
	TLSMutualKey   string // TLS_MUTUAL_PRIVATE_KEY
	CaptureEnabled bool   // CAPTURE_ENABLE: false forwards without recording (a baseline); if unset, true

	SocksUser     string // SOCKS_USERNAME: require SOCKS5 username/password on the outbound port; if zero, no auth
	SocksPassword string // SOCKS_PASSWORD

	// Redaction holds SPEEDSCALE_REDACT, SPEEDSCALE_REDACT_BODIES and
	// SPEEDSCALE_DLP_CONFIG, read as the forwarder reads them
	// (redact.Settings): by default std-auth and std-card. goproxy applies
	// the rules to each batch before it leaves the task (in the shipper's
	// goroutine, off the request's path); the forwarder applies them again.
	Redaction redact.Settings

	BodyLimit int64 // BODY_CAPTURE_LIMIT: captured bytes per body and side; if zero, 1 MiB; -1 captures no bodies

	MetricsEnable bool   // METRICS_HTTP_ENABLE
	MetricsPort   int    // METRICS_HTTP_PORT; if zero, 4145
	DiagPort      int    // DIAG_HTTP_PORT: health and the connection listing; if zero, 4100; -1 disables
	DiagHost      string // DIAG_HTTP_HOST: if zero, 127.0.0.1

	QueueBytes      int64         // SHIP_QUEUE_BYTES: bound of records waiting to ship; if zero, 16 MiB
	Compression     string        // SHIP_COMPRESSION: auto (S2 once the forwarder lists it, else zstd) or zstd; if zero, auto
	ShutdownTimeout time.Duration // SHUTDOWN_TIMEOUT: how long SIGTERM waits for exchanges and the flush; if zero, 20s
	HeaderTimeout   time.Duration // READ_HEADER_TIMEOUT: a client slower to send its headers is cut off; if zero, 10s
	MaxHeaderBytes  int64         // PROXY_MAX_HEADER_BYTES: a request's line and headers together; larger ones get 431; if zero, 64 KiB
}

// Defaults are the values of the deployment guide's contract.
func (c *Config) setDefaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.CaptureMode, "proxy")
	def(&c.ProxyType, "dual")
	def(&c.ProxyProtocol, "tcp:http")
	def(&c.OutListenHost, "127.0.0.1")
	def(&c.ReverseHost, "localhost")
	def(&c.LocalDir, "tapwire-records")
	def(&c.LogLevel, "info")
	def(&c.TLSCertDir, "/etc/ssl/speedscale")
	def(&c.DiagHost, "127.0.0.1")
	def(&c.Compression, "auto")
	if c.InPort == 0 {
		c.InPort = 4143
	}
	if c.OutPort == 0 {
		c.OutPort = 4140
	}
	if c.ReversePort == 0 {
		c.ReversePort = 80
	}
	if c.MetricsPort == 0 {
		c.MetricsPort = 4145
	}
	if c.DiagPort == 0 {
		c.DiagPort = 4100
	}
	if c.BodyLimit == 0 {
		c.BodyLimit = 1 << 20
	}
	if c.QueueBytes == 0 {
		c.QueueBytes = 16 << 20
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 20 * time.Second
	}
	if c.HeaderTimeout == 0 {
		c.HeaderTimeout = 10 * time.Second
	}
	if c.LeafCacheSize == 0 {
		c.LeafCacheSize = 1024
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = 64 << 10
	}
	c.Redaction.SetDefaults()
}

// ConfigError names the variable, the bad value and what is allowed.
type ConfigError = envflag.Error

func configError(name, value, want string) *ConfigError {
	return &ConfigError{Var: name, Value: value, Want: want}
}

// Validate checks the configuration after defaults.
func (c *Config) Validate() error {
	oneOf := func(name, v string, allowed ...string) error {
		for _, a := range allowed {
			if v == a {
				return nil
			}
		}
		return configError(name, v, "want one of "+strings.Join(allowed, ", "))
	}
	if err := oneOf("CAPTURE_MODE", c.CaptureMode, "proxy"); err != nil {
		return err
	}
	if c.ProxyType == "transparent" {
		return configError("PROXY_TYPE", c.ProxyType, "transparent capture (iptables redirect) is not supported yet; use reverse, forward or dual")
	}
	if err := oneOf("PROXY_TYPE", c.ProxyType, "reverse", "forward", "dual"); err != nil {
		return err
	}
	switch c.ProxyProtocol {
	case "http", "tcp:http", "socks", "tcp:socks":
	case "tcp":
		if c.ProxyType != "reverse" {
			return configError("PROXY_PROTOCOL", c.ProxyProtocol, "tcp (a raw TCP reverse proxy) needs PROXY_TYPE=reverse; for dual use tcp:http, which relays non-HTTP inbound connections as byte streams")
		}
	default:
		return configError("PROXY_PROTOCOL", c.ProxyProtocol, "want one of http, tcp:http, socks, tcp:socks, tcp")
	}
	if (c.SocksUser == "") != (c.SocksPassword == "") {
		return configError("SOCKS_USERNAME", c.SocksUser, "set both SOCKS_USERNAME and SOCKS_PASSWORD, or neither")
	}
	if _, err := service.ParseLevel(c.LogLevel); err != nil {
		return configError("LOG_LEVEL", c.LogLevel, "want "+service.Levels)
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"PROXY_IN_PORT", c.InPort}, {"PROXY_OUT_PORT", c.OutPort}, {"REVERSE_PROXY_PORT", c.ReversePort}, {"METRICS_HTTP_PORT", c.MetricsPort}} {
		if p.v < 1 || p.v > 65535 {
			return configError(p.name, strconv.Itoa(p.v), "want a port number from 1 to 65535")
		}
	}
	if c.DiagPort != -1 && (c.DiagPort < 1 || c.DiagPort > 65535) {
		return configError("DIAG_HTTP_PORT", strconv.Itoa(c.DiagPort), "want a port number from 1 to 65535, or -1 to disable")
	}
	if c.ProxyType == "dual" && c.InPort == c.OutPort {
		return configError("PROXY_OUT_PORT", strconv.Itoa(c.OutPort), "must differ from PROXY_IN_PORT")
	}
	if c.InListenHost != "" && net.ParseIP(c.InListenHost) == nil && c.InListenHost != "localhost" {
		return configError("PROXY_IN_LISTEN_HOST", c.InListenHost, "want an IP address such as 127.0.0.1, or empty for every interface (default)")
	}
	if net.ParseIP(c.OutListenHost) == nil && c.OutListenHost != "localhost" {
		return configError("PROXY_OUT_LISTEN_HOST", c.OutListenHost, "want an IP address such as 127.0.0.1 (default) or 0.0.0.0")
	}
	if strings.Contains(c.ReverseHost, "://") {
		if !strings.HasPrefix(c.ReverseHost, "http://") && !strings.HasPrefix(c.ReverseHost, "https://") {
			return configError("REVERSE_PROXY_HOST", c.ReverseHost, "want a host name, or an http:// or https:// URL")
		}
	}
	if c.ForwarderAddr != "" && !strings.HasPrefix(c.ForwarderAddr, "file://") {
		hostport := strings.TrimPrefix(strings.TrimPrefix(c.ForwarderAddr, "http://"), "https://")
		if _, port, err := net.SplitHostPort(strings.TrimSuffix(hostport, "/")); err != nil || port == "" {
			return configError("FORWARDER_ADDR", c.ForwarderAddr, "want host:port of the forwarder (e.g. forwarder.ecs.local:8888), https://host:port for a forwarder serving TLS, or file:///dir for local files")
		}
	}
	if c.BodyLimit < -1 {
		return configError("BODY_CAPTURE_LIMIT", strconv.FormatInt(c.BodyLimit, 10), "want a byte count, or -1 to capture no bodies")
	}
	if c.MaxHeaderBytes < 1<<10 || c.MaxHeaderBytes > 64<<20 {
		return configError("PROXY_MAX_HEADER_BYTES", strconv.FormatInt(c.MaxHeaderBytes, 10), "want a byte count from 1KiB to 64MiB")
	}
	if c.Compression = strings.ToLower(strings.TrimSpace(c.Compression)); c.Compression != "auto" && c.Compression != "zstd" {
		return configError("SHIP_COMPRESSION", c.Compression, "want auto (S2 once the forwarder lists it in Accept-Encoding, else zstd) or zstd (fewer bytes to the forwarder for more CPU)")
	}
	if c.QueueBytes < 64<<10 {
		return configError("SHIP_QUEUE_BYTES", strconv.FormatInt(c.QueueBytes, 10), "want at least 65536")
	}
	if err := c.Redaction.Validate(); err != nil {
		return err
	}
	if c.TLSInUnwrap && (c.TLSInPublic == "" || c.TLSInPrivate == "") {
		return configError("TLS_IN_UNWRAP", "true", "needs TLS_IN_PUBLIC_KEY and TLS_IN_PRIVATE_KEY: the paths of the app's certificate and key")
	}
	if (c.TLSMutualCert == "") != (c.TLSMutualKey == "") {
		return configError("TLS_MUTUAL_PUBLIC_KEY", c.TLSMutualCert, "set both TLS_MUTUAL_PUBLIC_KEY and TLS_MUTUAL_PRIVATE_KEY, or neither")
	}
	return nil
}

// Load reads the configuration from args and the environment: a flag
// given on the command line wins over its variable.
func Load(args []string, getenv func(string) string, out io.Writer) (*Config, error) {
	c := &Config{CaptureEnabled: true}
	fs := flag.NewFlagSet("goproxy", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() { usage(fs) }
	d := &Config{CaptureEnabled: true}
	d.setDefaults()
	set := envflag.Bind(c, d, bind)

	// The environment first, then flags over it.
	if err := set.Parse(fs, args, getenv); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q; goproxy takes flags only (see -help)", fs.Arg(0))
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
	str, num, bytes, boolean, dur := set.String, set.Int, set.Bytes, set.Bool, set.Duration
	str(&c.CaptureMode, "CAPTURE_MODE", "capture-mode", "capture `mode`: proxy")
	str(&c.ProxyType, "PROXY_TYPE", "proxy-type", "proxy `type`: reverse (inbound only), forward (outbound only) or dual")
	str(&c.ProxyProtocol, "PROXY_PROTOCOL", "proxy-protocol", "`protocol`: tcp:http (HTTP and SOCKS on the outbound port; non-HTTP inbound relayed as bytes), http (HTTP only), socks or tcp:socks (SOCKS outbound), tcp (raw TCP reverse proxy)")
	str(&c.SocksUser, "SOCKS_USERNAME", "socks-username", "require this SOCKS5 `username` (with -socks-password) on the outbound port")
	str(&c.SocksPassword, "SOCKS_PASSWORD", "socks-password", "the SOCKS5 `password`")
	num(&c.InPort, "PROXY_IN_PORT", "in-port", "inbound reverse-proxy `port`")
	num(&c.OutPort, "PROXY_OUT_PORT", "out-port", "outbound forward-proxy `port`")
	str(&c.InListenHost, "PROXY_IN_LISTEN_HOST", "in-listen-host", "`address` the inbound proxy binds (default every interface)")
	str(&c.OutListenHost, "PROXY_OUT_LISTEN_HOST", "out-listen-host", "`address` the outbound proxy binds; wider than loopback makes an open proxy")
	str(&c.ReverseHost, "REVERSE_PROXY_HOST", "reverse-host", "the app's `host` for inbound traffic, or an https:// URL")
	num(&c.ReversePort, "REVERSE_PROXY_PORT", "reverse-port", "the app's `port` for inbound traffic")
	str(&c.ForwarderAddr, "FORWARDER_ADDR", "forwarder", "forwarder `address`: host:port, https://host:port (TLS, verified against TLS_CERT_DIR's CA and the system roots), or file:///dir for local JSONL files (default: files in -capture-dir)")
	str(&c.ForwarderToken, "FORWARDER_TOKEN", "forwarder-token", "bearer `token` presented to the forwarder")
	str(&c.LocalDir, "CAPTURE_DIR", "capture-dir", "`directory` of local record files when there is no forwarder")
	str(&c.Labels.Service, "APP_LABEL", "app-label", "service `label` on every record")
	str(&c.Labels.Pod, "APP_POD_NAME", "app-pod-name", "instance `label` on every record")
	str(&c.Labels.Namespace, "APP_POD_NAMESPACE", "app-pod-namespace", "namespace `label` on every record")
	str(&c.Labels.Cluster, "CLUSTER_NAME", "cluster-name", "cluster `label` on every record")
	str(&c.LogLevel, "LOG_LEVEL", "log-level", "log `level`: debug, info, warn or error")
	str(&c.TLSCertDir, "TLS_CERT_DIR", "tls-cert-dir", "`folder` with the CA's tls.crt and tls.key")
	boolean(&c.TLSOutUnwrap, "TLS_OUT_UNWRAP", "tls-out-unwrap", "intercept the app's outbound TLS with leaves signed by the CA")
	str(&c.TLSExtraRoots, "TLS_OUT_EXTRA_CA_FILE", "tls-out-extra-ca", "PEM bundle `file` trusted for upstreams in addition to the system roots")
	num(&c.LeafCacheSize, "TLS_LEAF_CACHE_SIZE", "tls-leaf-cache", "`n` leaf certificates kept in memory")
	boolean(&c.TLSInUnwrap, "TLS_IN_UNWRAP", "tls-in-unwrap", "terminate inbound TLS with -tls-in-cert and -tls-in-key; plaintext is still served")
	str(&c.TLSInPublic, "TLS_IN_PUBLIC_KEY", "tls-in-cert", "inbound TLS certificate `file` (with -tls-in-unwrap)")
	str(&c.TLSInPrivate, "TLS_IN_PRIVATE_KEY", "tls-in-key", "inbound TLS key `file` (with -tls-in-unwrap)")
	str(&c.TLSMutualCert, "TLS_MUTUAL_PUBLIC_KEY", "tls-mutual-cert", "client certificate `file` presented to upstreams that ask (mTLS)")
	str(&c.TLSMutualKey, "TLS_MUTUAL_PRIVATE_KEY", "tls-mutual-key", "key `file` of -tls-mutual-cert")
	boolean(&c.CaptureEnabled, "CAPTURE_ENABLE", "capture", "record exchanges; false only forwards")
	c.Redaction.Bind(set)
	bytes(&c.BodyLimit, "BODY_CAPTURE_LIMIT", "body-limit", "captured bytes per body and side, -1 for none")
	boolean(&c.MetricsEnable, "METRICS_HTTP_ENABLE", "metrics", "serve Prometheus metrics")
	num(&c.MetricsPort, "METRICS_HTTP_PORT", "metrics-port", "Prometheus metrics `port`")
	num(&c.DiagPort, "DIAG_HTTP_PORT", "diag-port", "health and connection listing `port`, -1 to disable")
	str(&c.DiagHost, "DIAG_HTTP_HOST", "diag-host", "`address` the diagnostics port binds")
	bytes(&c.QueueBytes, "SHIP_QUEUE_BYTES", "queue-bytes", "bound of records waiting to ship; beyond it records are dropped and counted")
	str(&c.Compression, "SHIP_COMPRESSION", "ship-compression", "batch compression `mode`: auto (S2 once the forwarder lists it: the least CPU) or zstd (its fastest level: fewer bytes)")
	dur(&c.ShutdownTimeout, "SHUTDOWN_TIMEOUT", "shutdown-timeout", "how long SIGTERM waits for in-flight exchanges and the last flush")
	dur(&c.HeaderTimeout, "READ_HEADER_TIMEOUT", "read-header-timeout", "clients slower to send request headers are cut off")
	bytes(&c.MaxHeaderBytes, "PROXY_MAX_HEADER_BYTES", "max-header-bytes", "bound of a request's line and headers together; larger requests get 431 and are disconnected")
}

func usage(fs *flag.FlagSet) {
	out := fs.Output()
	fmt.Fprint(out, `goproxy: Tapwire's capturing sidecar.

It sits beside a service: inbound traffic reaches the service through the
reverse proxy on PROXY_IN_PORT, and the service's own calls leave through the
forward proxy on PROXY_OUT_PORT (set HTTP_PROXY/HTTPS_PROXY=http://localhost:4140
in the app). Every exchange becomes a record shipped to FORWARDER_ADDR, or
written to local JSONL files when there is no forwarder. Secrets are redacted
before a record leaves goproxy (credentials in headers, query parameters and
bodies, and card numbers; SPEEDSCALE_REDACT, SPEEDSCALE_REDACT_BODIES and
SPEEDSCALE_DLP_CONFIG as the forwarder reads them).

Every setting is an environment variable (as in the ECS deployment guide) and a
flag; a flag wins. Examples:

  # in front of an app on :8080, records to ./tapwire-records
  goproxy -reverse-port 8080

  # as in the guide
  REVERSE_PROXY_PORT=8080 TLS_OUT_UNWRAP=true FORWARDER_ADDR=forwarder.ecs.local:8888 goproxy

Health: GET http://127.0.0.1:4100/healthz; connections: /debug/connections.
Signals: SIGTERM drains and exits; SIGHUP re-reads the CA in TLS_CERT_DIR
(a bad one is refused and the CA in use kept; see the log line).

Settings:
`)
	fs.PrintDefaults()
}

// Env returns os.Getenv; a seam for tests.
var Env = os.Getenv
