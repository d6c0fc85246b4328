// Package demo runs the whole of Tapwire on one machine, in one process, on
// loopback only (goproxy's inbound port too, with PROXY_IN_LISTEN_HOST): a hub on SQLite, a forwarder delivering to it, and goproxy in
// dual mode with TLS unwrap, in front of either a small demo app with an
// HTTPS upstream and a traffic generator (speedctl demo) or the user's own
// app (speedctl capture). It prints where everything runs and what to try,
// keeps a live summary, and stops the parts in the order that loses
// nothing: the generator, goproxy (flushing to the forwarder), the
// forwarder (delivering its spool to the hub), the hub.
package demo

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/tapwire/tapwire/internal/certs"
	"github.com/tapwire/tapwire/internal/config"
	"github.com/tapwire/tapwire/internal/forwarder"
	"github.com/tapwire/tapwire/internal/goproxy"
	"github.com/tapwire/tapwire/internal/hub"
	"github.com/tapwire/tapwire/internal/store"
)

// ErrBusy says that a port or the data folder is taken by another program:
// errors.Is(err, ErrBusy) holds for the errors that say so.
var ErrBusy = errors.New("in use")

// busyError is a message about something in use, which is ErrBusy.
type busyError string

func (e busyError) Error() string        { return string(e) }
func (e busyError) Is(target error) bool { return target == ErrBusy }

func busyf(format string, args ...any) error { return busyError(fmt.Sprintf(format, args...)) }

// Ports are the ports of the parts, all on 127.0.0.1. Zero means any free
// port.
type Ports struct {
	Hub       int // the hub's API and traffic viewer
	Forwarder int // the forwarder, where goproxy ships records
	In        int // goproxy's inbound reverse proxy: send traffic here
	Out       int // goproxy's outbound forward proxy: the app's HTTP_PROXY/HTTPS_PROXY
	Diag      int // goproxy's health and diagnostics
	App       int // the demo app (demo only)
	Upstream  int // the demo's HTTPS upstream (demo only)
}

// DefaultPorts are each part's usual port where it has one (goproxy's
// 4143, 4140 and 4100 as in the deployment guide, the forwarder's 8888, the
// hub's 8080), and two free-looking ones for the demo app and its upstream.
func DefaultPorts() Ports {
	return Ports{Hub: 8080, Forwarder: 8888, In: 4143, Out: 4140, Diag: 4100, App: 9090, Upstream: 9443}
}

// Config says what to run.
type Config struct {
	// AppPort, if not zero, is the user's app on 127.0.0.1 (speedctl
	// capture): goproxy goes in front of it, and there is no demo app,
	// upstream or generator. If zero, the demo.
	AppPort int
	// Service is the service label (APP_LABEL) on the records; if zero,
	// "orders" for the demo and "app" for capture.
	Service string
	// DataDir holds the hub's database, the forwarder's spool, the CA, the
	// log, and a speedctl config file for the hub (DataDir/config, which
	// has the API keys). If zero, DefaultDataDir.
	DataDir string
	// Rate is the generator's requests per second, at most; if zero, 5.
	// From 0.1 to MaxRate.
	Rate float64
	// Ports of the parts. A port that is busy fails the start when its
	// flag is in Pinned, and is replaced by a free port otherwise.
	Ports  Ports
	Pinned map[string]bool // flag names (as in PortFlags) the user set
	// For, if not zero, stops everything after this long.
	For time.Duration
	// Out receives the header, the summary and the goodbye; if nil,
	// os.Stdout.
	Out io.Writer
	// Live refreshes the summary line in place (Out is a terminal);
	// otherwise a line is printed every Every (if zero, 10s).
	Live  bool
	Every time.Duration
	// Self is how the hints call speedctl; if zero, "speedctl".
	Self string
	// UpstreamCA, for capture, is a PEM file of CAs goproxy trusts for the
	// app's upstreams besides the system roots (TLS_OUT_EXTRA_CA_FILE): a
	// company CA, or a test server's. If zero, the system roots only. The
	// demo always trusts its own payments CA.
	UpstreamCA string
}

// MaxRate bounds Config.Rate: the demo is a first look, not a load test.
const MaxRate = 100

// DefaultDataDir is the folder the demo (or capture, with capture true)
// keeps its data in: tapwire/demo under the user's cache folder, else
// ./tapwire-demo.
func DefaultDataDir(capture bool) string {
	name := "demo"
	if capture {
		name = "capture"
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "tapwire", name)
	}
	return "tapwire-" + name
}

// PortFlags names the flag of each port, for messages.
var PortFlags = struct{ Hub, Forwarder, In, Out, Diag, App, Upstream string }{
	"--hub-port", "--forwarder-port", "--in-port", "--out-port", "--diag-port", "--app-port", "--upstream-port",
}

func (c *Config) setDefaults() {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir(c.AppPort != 0)
	}
	if c.Rate == 0 {
		c.Rate = 5
	}
	if c.Service == "" {
		c.Service = "orders"
		if c.AppPort != 0 {
			c.Service = "app"
		}
	}
	if c.Out == nil {
		c.Out = os.Stdout
	}
	if c.Every == 0 {
		c.Every = 10 * time.Second
	}
	if c.Self == "" {
		c.Self = "speedctl"
	}
}

// Validate checks the configuration after defaults.
func (c *Config) Validate() error {
	if c.AppPort < 0 || c.AppPort > 65535 {
		return fmt.Errorf("app port %d: want 1 to 65535", c.AppPort)
	}
	if c.Rate < 0.1 || c.Rate > MaxRate {
		return fmt.Errorf("--rate %g: want 0.1 to %d requests per second", c.Rate, MaxRate)
	}
	for _, p := range c.portSpecs() {
		if *p.port < 0 || *p.port > 65535 {
			return fmt.Errorf("%s %d: want 1 to 65535, or 0 for any free port", p.flag, *p.port)
		}
	}
	if c.For < 0 {
		return fmt.Errorf("--for %s: want a positive duration", c.For)
	}
	if c.UpstreamCA != "" {
		if c.AppPort == 0 {
			return errors.New("--upstream-ca: for capture only (the demo trusts its own upstream's CA)")
		}
		pem, err := os.ReadFile(c.UpstreamCA)
		if err != nil {
			return fmt.Errorf("--upstream-ca: %w", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return fmt.Errorf("--upstream-ca %s: no PEM certificate in it", c.UpstreamCA)
		}
	}
	return nil
}

type portSpec struct {
	port *int
	flag string
	what string
	held bool // the demo listens on it itself
}

func (c *Config) portSpecs() []portSpec {
	p := &c.Ports
	specs := []portSpec{
		{&p.Hub, PortFlags.Hub, "the hub", true},
		{&p.Forwarder, PortFlags.Forwarder, "the forwarder", true},
		{&p.In, PortFlags.In, "goproxy's inbound proxy", false},
		{&p.Out, PortFlags.Out, "goproxy's outbound proxy", false},
		{&p.Diag, PortFlags.Diag, "goproxy's diagnostics", false},
	}
	if c.AppPort == 0 {
		specs = append(specs,
			portSpec{&p.App, PortFlags.App, "the demo app", true},
			portSpec{&p.Upstream, PortFlags.Upstream, "the payments upstream", true})
	}
	return specs
}

// Stack is a running demo or capture.
type Stack struct {
	cfg Config
	log *slog.Logger // to the log file

	// Where the parts are.
	HubURL, ForwarderURL, InURL, OutURL, DiagURL string
	AppURL, UpstreamURL                          string // the demo app and its HTTPS upstream; empty for capture
	CAFile                                       string // the CA goproxy signs leaves with: the app's SSL_CERT_FILE
	Tenant, IngestKey, ReadKey                   string
	LogFile                                      string
	// Moved says which default ports were busy and what was used instead.
	Moved []string

	started time.Time
	st      store.Store
	fwd     *forwarder.Server
	gen     *generator
	diag    *http.Client

	stops   []func() // LIFO
	storeAt int      // index in stops of the store's Close
	failc   chan error
	stopped sync.Once
}

// Start starts every part. On error, what was started is stopped.
func Start(ctx context.Context, cfg Config) (_ *Stack, err error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	cfg.DataDir = dir
	s := &Stack{cfg: cfg, started: time.Now(), failc: make(chan error, 8),
		diag: &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data folder: %w", err)
	}
	release, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	s.stops = append(s.stops, release)

	// The ports first, so that a busy one fails before anything runs.
	lns, err := s.ports()
	if err != nil {
		return nil, err
	}
	for _, ln := range lns {
		s.stops = append(s.stops, func() { ln.Close() })
	}
	cfg = s.cfg // with the ports in use
	ports := cfg.Ports
	loop := func(port int) string { return "http://127.0.0.1:" + strconv.Itoa(port) }
	s.HubURL, s.ForwarderURL = loop(ports.Hub), loop(ports.Forwarder)
	s.InURL, s.OutURL, s.DiagURL = loop(ports.In), loop(ports.Out), loop(ports.Diag)

	// One log file for every part: the terminal is for the summary. The
	// previous run's log is kept as demo.log.1 (one generation: the folder
	// stays bounded), and each log starts with a line naming the run.
	s.LogFile = filepath.Join(dir, "demo.log")
	if err := os.Rename(s.LogFile, s.LogFile+".1"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("keep the previous log: %w", err)
	}
	lf, err := os.OpenFile(s.LogFile, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	s.stops = append(s.stops, func() { lf.Close() }, s.diag.CloseIdleConnections)
	log := slog.New(slog.NewJSONHandler(lf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s.log = log
	run := "demo"
	if cfg.AppPort != 0 {
		run = "capture"
	}
	log.Info("run started", "run", run, "pid", os.Getpid(), "data", dir, "previous_log", filepath.Base(s.LogFile)+".1")

	// The hub, on SQLite, with a tenant and keys made in the store.
	hcfg := hub.Config{DataDir: filepath.Join(dir, "hub"), Listener: lns["hub"]}
	hb, err := hub.New(hcfg, log.With("part", "hub"))
	if err != nil {
		return nil, fmt.Errorf("open the hub's database in %s: %w", hcfg.DataDir, err)
	}
	s.st = hb.Store()
	if err := s.keys(ctx, hb.FirstKeys); err != nil {
		hb.Close()
		return nil, err
	}
	// Stop counts the records at the hub's stop, before Serve closes the
	// store: the forwarder, stopped before the hub, has delivered by then.
	s.storeAt = len(s.stops)
	s.run("hub", hb.Serve)

	// The forwarder, delivering to the hub, its spool in the data folder.
	token := randomHex(16)
	s.fwd, err = forwarder.New(forwarder.Config{
		Listener:        lns["forwarder"],
		Token:           token,
		HubURL:          s.HubURL,
		APIKey:          s.IngestKey,
		SpoolDir:        filepath.Join(dir, "spool"),
		SpoolBytes:      256 << 20,
		Cluster:         "local",
		TenantID:        s.Tenant,
		ShutdownTimeout: 10 * time.Second,
	}, log.With("part", "forwarder"))
	if err != nil {
		return nil, fmt.Errorf("forwarder: %w", err)
	}
	fwd := s.fwd
	s.run("forwarder", fwd.Serve)

	// The CA goproxy signs its leaf certificates with.
	caDir := filepath.Join(dir, "ca")
	if err := ensureCA(caDir); err != nil {
		return nil, err
	}
	s.CAFile = filepath.Join(caDir, "tls.crt")

	env := map[string]string{
		"PROXY_TYPE":           "dual",
		"PROXY_IN_PORT":        strconv.Itoa(ports.In),
		"PROXY_IN_LISTEN_HOST": "127.0.0.1", // a laptop's demo is not for the network
		"PROXY_OUT_PORT":       strconv.Itoa(ports.Out),
		"DIAG_HTTP_PORT":       strconv.Itoa(ports.Diag),
		"REVERSE_PROXY_HOST":   "127.0.0.1",
		"FORWARDER_ADDR":       lns["forwarder"].Addr().String(),
		"FORWARDER_TOKEN":      token,
		"TLS_CERT_DIR":         caDir,
		"TLS_OUT_UNWRAP":       "true",
		"APP_LABEL":            cfg.Service,
		"APP_POD_NAME":         cfg.Service + "-1",
		"APP_POD_NAMESPACE":    "default",
		"CLUSTER_NAME":         "local",
		"SHUTDOWN_TIMEOUT":     "10s",
	}
	if cfg.AppPort != 0 {
		env["REVERSE_PROXY_PORT"] = strconv.Itoa(cfg.AppPort)
		if cfg.UpstreamCA != "" {
			ca, err := filepath.Abs(cfg.UpstreamCA)
			if err != nil {
				return nil, fmt.Errorf("--upstream-ca: %w", err)
			}
			env["TLS_OUT_EXTRA_CA_FILE"] = ca
		}
	} else {
		env["REVERSE_PROXY_PORT"] = strconv.Itoa(ports.App)
		// The payments upstream, over HTTPS with its own CA, which goproxy
		// is told to trust: it verifies upstreams as in production.
		upCA := filepath.Join(dir, "payments-ca.crt")
		tc, err := upstreamTLS(upCA)
		if err != nil {
			return nil, err
		}
		env["TLS_OUT_EXTRA_CA_FILE"] = upCA
		s.UpstreamURL = "https://localhost:" + strconv.Itoa(ports.Upstream)
		s.serveHTTP("payments", tls.NewListener(lns["upstream"], tc), (&payments{}).handler())

		// The demo app: its outbound client goes through goproxy and
		// trusts the CA, as HTTPS_PROXY and SSL_CERT_FILE would make it.
		pool := x509.NewCertPool()
		pem, err := os.ReadFile(s.CAFile)
		if err != nil || !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("read the CA %s: %v", s.CAFile, err)
		}
		out, _ := url.Parse(s.OutURL)
		tr := &http.Transport{Proxy: http.ProxyURL(out), TLSClientConfig: &tls.Config{RootCAs: pool},
			MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second}
		s.stops = append(s.stops, tr.CloseIdleConnections)
		app := newOrders(s.UpstreamURL, &http.Client{Transport: tr, Timeout: 10 * time.Second})
		s.AppURL = loop(ports.App)
		s.serveHTTP("orders", lns["app"], app.handler())
	}

	// goproxy, configured as the guide's sidecar is: from its environment.
	gcfg, err := goproxy.Load(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		return nil, fmt.Errorf("goproxy: %w", err)
	}
	gp, err := goproxy.New(gcfg, log.With("part", "goproxy"))
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, busyf("goproxy: %v (the port was taken just now; try again, or pick others with %s, %s, %s)",
				err, PortFlags.In, PortFlags.Out, PortFlags.Diag)
		}
		return nil, fmt.Errorf("goproxy: %w", err)
	}
	s.run("goproxy", gp.Serve)

	if cfg.AppPort == 0 {
		s.gen = newGenerator(s.InURL, cfg.Rate)
		s.run("generator", func(ctx context.Context) error { s.gen.run(ctx); return nil })
	}
	// Last: a script that waits for this file finds everything running.
	if err := s.writeConfig(); err != nil {
		return nil, err
	}
	return s, nil
}

// run starts a part in its own goroutine; stop cancels it and waits. A
// part that ends before it is stopped is reported on failc.
func (s *Stack) run(name string, f func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var stopping bool
	var mu sync.Mutex
	go func() {
		defer close(done)
		err := f(ctx)
		mu.Lock()
		defer mu.Unlock()
		if !stopping {
			if err == nil {
				err = errors.New("stopped by itself")
			}
			s.failc <- fmt.Errorf("%s: %w", name, err)
		}
	}()
	s.stops = append(s.stops, func() {
		mu.Lock()
		stopping = true
		mu.Unlock()
		cancel()
		<-done
	})
}

// serveHTTP serves h on ln until the stack stops. The server's own errors
// (a client's failed TLS handshake) go to the log file, not over the
// summary line.
func (s *Stack) serveHTTP(name string, ln net.Listener, h http.Handler) {
	errLog := slog.NewLogLogger(s.log.With("part", name).Handler(), slog.LevelWarn)
	s.run(name, func(ctx context.Context) error { return serveUntil(ctx, ln, h, errLog) })
}

// serveUntil serves h on ln until ctx ends, and then lets the requests in
// flight finish for up to 5 seconds.
// errLog receives the server's own errors; if nil, the log package's
// standard logger (stderr).
func serveUntil(ctx context.Context, ln net.Listener, h http.Handler, errLog *log.Logger) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: errLog}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	<-errc
	return nil
}

// ports binds the ports the demo serves itself and checks goproxy's,
// filling cfg.Ports with the ports in use. A busy port fails when the user
// chose it, and moves to a free one otherwise; in capture, the app's own
// port is never taken.
func (s *Stack) ports() (map[string]net.Listener, error) {
	lns := map[string]net.Listener{}
	fail := func(err error) (map[string]net.Listener, error) {
		for _, ln := range lns {
			ln.Close()
		}
		return nil, err
	}
	keys := map[string]string{PortFlags.Hub: "hub", PortFlags.Forwarder: "forwarder", PortFlags.App: "app", PortFlags.Upstream: "upstream"}
	for _, p := range s.cfg.portSpecs() {
		pinned := s.cfg.Pinned[p.flag]
		want := *p.port
		if want != 0 && want == s.cfg.AppPort {
			if pinned {
				return fail(fmt.Errorf("%s %d is your app's port: pick another for %s", p.flag, want, p.what))
			}
			s.Moved = append(s.Moved, fmt.Sprintf("%s: %d is your app's port", p.what, want))
			want = 0
		}
		host := "127.0.0.1"
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(want)))
		if err != nil && want != 0 && errors.Is(err, syscall.EADDRINUSE) {
			if pinned {
				return fail(busyf("port %d (%s) is in use by another program: pick another with %s PORT, or %s 0 for any free port",
					want, p.what, p.flag, p.flag))
			}
			ln, err = net.Listen("tcp", net.JoinHostPort(host, "0"))
			if err == nil {
				s.Moved = append(s.Moved, fmt.Sprintf("%s: port %d was busy, using %d (%s sets it)", p.what, want, ln.Addr().(*net.TCPAddr).Port, p.flag))
			}
		}
		if err != nil {
			return fail(fmt.Errorf("listen for %s (%s): %w", p.what, p.flag, err))
		}
		*p.port = ln.Addr().(*net.TCPAddr).Port
		if p.held {
			lns[keys[p.flag]] = ln
		} else {
			ln.Close() // goproxy binds it in a moment
		}
	}
	return lns, nil
}

// keys finds the tenant and the API keys: the hub's first-start keys in a
// new database, the keys of the last run (kept in DataDir/config) when the
// store still knows them, else new keys.
func (s *Stack) keys(ctx context.Context, first hub.FirstKeys) error {
	ingest, read := first.Ingest, first.Read
	s.Tenant, s.IngestKey, s.ReadKey = "default", ingest, read
	if ingest != "" {
		return nil
	}
	if f, err := config.Load(s.cfg.DataDir); err == nil {
		t, i, r := f.Lookup("TENANT_ID"), f.Lookup("SPEEDSCALE_API_KEY"), f.Lookup(ReadKeyName)
		if s.valid(ctx, t, i, store.RoleIngest) && s.valid(ctx, t, r, store.RoleRead) {
			s.Tenant, s.IngestKey, s.ReadKey = t, i, r
			return nil
		}
	}
	ts, err := s.st.Tenants(ctx)
	if err != nil || len(ts) == 0 {
		return fmt.Errorf("hub: list tenants: %v", err)
	}
	s.Tenant = ts[0].ID
	for _, t := range ts {
		if t.ID == "default" {
			s.Tenant = t.ID
		}
	}
	for _, k := range []struct {
		role store.Role
		dst  *string
	}{{store.RoleIngest, &s.IngestKey}, {store.RoleRead, &s.ReadKey}} {
		key, sk, err := hub.NewKey(s.Tenant, k.role, "speedctl demo "+string(k.role), time.Now())
		if err != nil {
			return err
		}
		if err := s.st.CreateKey(ctx, sk); err != nil {
			return fmt.Errorf("hub: store a key: %w", err)
		}
		*k.dst = key
	}
	return nil
}

// Names of speedctl's own config keys (docs/speedctl.md) for the hub and
// the read key of speedctl traffic.
const (
	HubURLName  = "TAPWIRE_HUB_URL"
	ReadKeyName = "TAPWIRE_READ_KEY"
)

// writeConfig writes DataDir/config, a speedctl config file (mode 0600)
// for this hub: speedctl --home DataDir traffic list reads it, a shell can
// source it, and the next run finds its keys there.
func (s *Stack) writeConfig() error {
	f := config.New(s.cfg.DataDir)
	for _, kv := range [][2]string{
		{"SPEEDSCALE_APP_URL", s.HubURL}, {"SPEEDSCALE_API_KEY", s.IngestKey}, {"TENANT_ID", s.Tenant},
		{"CLUSTER_NAME", "local"}, {HubURLName, s.HubURL}, {ReadKeyName, s.ReadKey},
	} {
		if err := f.Set(kv[0], kv[1]); err != nil {
			return err
		}
	}
	if err := f.Save(); err != nil {
		return fmt.Errorf("the demo's speedctl config: %w", err)
	}
	return nil
}

// valid reports whether the store holds key, live, for tenant and role.
func (s *Stack) valid(ctx context.Context, tenant, key string, role store.Role) bool {
	if key == "" {
		return false
	}
	ks, err := s.st.Keys(ctx, tenant)
	if err != nil {
		return false
	}
	h := sha256.Sum256([]byte(key))
	for _, k := range ks {
		if subtle.ConstantTimeCompare(k.Hash, h[:]) == 1 {
			return k.Role == role && k.Revoked.IsZero()
		}
	}
	return false
}

// ensureCA keeps a CA in dir that goproxy can use, or makes one (ECDSA:
// quick to make; speedctl certs create makes the guide's RSA one).
func ensureCA(dir string) error {
	if _, err := certs.Check(dir, time.Now().Add(24*time.Hour)); err == nil {
		return nil
	}
	_, err := certs.Create(certs.Options{Dir: dir, KeyType: certs.KeyECDSA, CommonName: "Tapwire demo CA", Days: 365, Force: true})
	if err != nil {
		return fmt.Errorf("make the demo's CA: %w", err)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Stats are the counters of the summary line.
type Stats struct {
	Captured  int64 // records goproxy made
	Dropped   int64 // records goproxy, the forwarder or the hub sink dropped
	Delivered int64 // records the forwarder delivered to the hub
	Stored    int64 // records of this run the hub holds
	Failed    int64 // of which failed (5xx, no response, an error)
	Sent      int64 // requests the generator sent (demo)
	NoAnswer  int64 // of which got no answer at all (demo)
}

// Stats reads the counters of every part.
func (s *Stack) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	var errs []error
	if h, err := s.health(ctx); err != nil {
		errs = append(errs, err)
	} else if h.Shipping != nil {
		st.Captured, st.Dropped = h.Shipping.Emitted, h.Shipping.Dropped
	}
	if ss, ok := s.fwd.Stats().Sinks["hub"]; ok {
		st.Delivered = ss.Delivered
		st.Dropped += ss.Dropped + ss.Failed
	}
	n, failed, err := s.count(ctx, s.runFrom())
	if err != nil {
		errs = append(errs, err)
	}
	st.Stored, st.Failed = n, failed
	if s.gen != nil {
		st.Sent, st.NoAnswer = s.gen.sent.Load(), s.gen.failed.Load()
	}
	return st, errors.Join(errs...)
}

func (s *Stack) health(ctx context.Context) (*goproxy.Health, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.DiagURL+"/healthz", nil)
	if err != nil {
		return nil, err
	}
	res, err := s.diag.Do(req)
	if err != nil {
		return nil, fmt.Errorf("goproxy health: %w", err)
	}
	defer res.Body.Close()
	var h goproxy.Health
	if err := json.NewDecoder(res.Body).Decode(&h); err != nil {
		return nil, fmt.Errorf("goproxy health: %w", err)
	}
	return &h, nil
}

// count returns how many records of the tenant started since from (all
// of them for a zero from), and how many of them failed.
func (s *Stack) count(ctx context.Context, from time.Time) (n, failed int64, err error) {
	const century = 100 * 365 * 24 * time.Hour // one bucket
	bs, err := s.st.Count(ctx, s.Tenant, store.Filter{From: from}, century)
	if err != nil {
		return 0, 0, fmt.Errorf("count records: %w", err)
	}
	for _, b := range bs {
		n += b.Count
		failed += b.Errors
	}
	return n, failed, nil
}

// runFrom is the earliest start time of a record of this run: the stack's
// start (taken before any part runs), to the millisecond. Records imported
// meanwhile keep their own, earlier start times and are not counted; a
// margin of a second here once counted a HAR of records captured just
// before (the demo script's import into a fresh capture).
func (s *Stack) runFrom() time.Time { return s.started.Truncate(time.Millisecond) }

// Failed returns the error of a part that stopped by itself, if one did.
func (s *Stack) Failed() <-chan error { return s.failc }

// Stop stops every part in reverse order of start: the generator,
// goproxy (which flushes its records to the forwarder), the app and
// upstream, the forwarder (which delivers its spool to the hub), the hub.
// It then returns how many records of this run the hub holds, and of every
// run, and closes the store.
func (s *Stack) Stop() (run, held int64, err error) {
	s.stopped.Do(func() {
		for i := len(s.stops) - 1; i >= 0; i-- {
			if s.st != nil && i == s.storeAt {
				ctx := context.Background()
				var err1, err2 error
				run, _, err1 = s.count(ctx, s.runFrom())
				held, _, err2 = s.count(ctx, time.Time{})
				err = errors.Join(err1, err2)
			}
			s.stops[i]()
		}
		s.stops = nil
	})
	return run, held, err
}
