package goproxy

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/mitm"
	"github.com/tapwire/tapwire/internal/netyield"
	"github.com/tapwire/tapwire/internal/proxy"
	"github.com/tapwire/tapwire/internal/redact"
	"github.com/tapwire/tapwire/internal/service"
	"github.com/tapwire/tapwire/internal/ship"
	"github.com/tapwire/tapwire/internal/sink/file"
	"github.com/tapwire/tapwire/internal/wire"
)

// Server is a running goproxy.
type Server struct {
	cfg      *Config
	log      *slog.Logger
	in       *proxy.Inbound
	out      *proxy.Outbound
	shipper  *ship.Shipper
	minter   *mitm.Minter
	conns    *proxy.ConnTable
	aux      []*http.Server // diagnostics, metrics
	lns      []net.Listener
	serves   []func() error // one per listener, started by Serve
	sink     capture.Sink   // closed by the shipper, or by New on error
	started  time.Time
	caMu     sync.Mutex
	caLoaded time.Time        // when the CA in use was loaded
	redactor *redact.Redactor // nil: no rules
	redacted atomic.Int64     // records changed by redaction
	wg       sync.WaitGroup
	serveErr chan error
	life     service.Lifecycle

	// Addrs of the listeners, once started (useful with port 0 in tests).
	InAddr, OutAddr, DiagAddr, MetricsAddr string
}

// New prepares goproxy from cfg: it loads the CA, opens the sink and binds
// every listener, so that a bad setting fails here with one clear error. It
// serves nothing until Serve; on error it has released all it opened.
func New(cfg *Config, log *slog.Logger) (_ *Server, err error) {
	if log == nil {
		log = service.Discard()
	}
	s := &Server{cfg: cfg, log: log, conns: proxy.NewConnTable(256), serveErr: make(chan error, 4), started: time.Now()}
	defer func() {
		if err != nil {
			s.closeListeners()
			if s.sink != nil {
				s.sink.Close()
			}
		}
	}()
	var reg *prometheus.Registry
	if cfg.MetricsEnable {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	var regr prometheus.Registerer
	if reg != nil {
		regr = reg
	}

	opt := proxy.Options{
		Labels:         cfg.Labels,
		Tags:           capture.Tags{"captureMode": cfg.CaptureMode, "proxyType": cfg.ProxyType, "proxyProtocol": cfg.ProxyProtocol},
		BodyLimit:      cfg.BodyLimit,
		HeaderTimeout:  cfg.HeaderTimeout,
		MaxHeaderBytes: int(cfg.MaxHeaderBytes),
		Logger:         log,
		Metrics:        proxy.NewMetrics(regr),
		Conns:          s.conns,
		NoSocks:        cfg.ProxyProtocol == "http",
		NoHTTPProxy:    cfg.ProxyProtocol == "socks",
	}
	if cfg.SocksUser != "" {
		opt.SocksAuth = &proxy.SocksAuth{Username: cfg.SocksUser, Password: cfg.SocksPassword}
	}
	if cfg.BodyLimit == -1 {
		opt.BodyLimit = -1
	}
	if host, err := os.Hostname(); err == nil {
		opt.Tags["proxyHost"] = host
	}

	// Upstream trust: the system roots plus an optional bundle.
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if cfg.TLSExtraRoots != "" {
		pem, err := os.ReadFile(cfg.TLSExtraRoots)
		if err != nil {
			return nil, fmt.Errorf("TLS_OUT_EXTRA_CA_FILE: %w", err)
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS_OUT_EXTRA_CA_FILE=%q: no PEM certificate found in it", cfg.TLSExtraRoots)
		}
	}
	opt.RootCAs = roots
	if cfg.TLSInUnwrap {
		cc, err := tls.LoadX509KeyPair(cfg.TLSInPublic, cfg.TLSInPrivate)
		if err != nil {
			return nil, fmt.Errorf("TLS_IN_PUBLIC_KEY/TLS_IN_PRIVATE_KEY: %w", err)
		}
		opt.InboundTLS = &tls.Config{Certificates: []tls.Certificate{cc}, MinVersion: tls.VersionTLS12}
	}
	if cfg.TLSMutualCert != "" {
		cc, err := tls.LoadX509KeyPair(cfg.TLSMutualCert, cfg.TLSMutualKey)
		if err != nil {
			return nil, fmt.Errorf("TLS_MUTUAL_PUBLIC_KEY/TLS_MUTUAL_PRIVATE_KEY: %w", err)
		}
		opt.ClientCert = &cc
	}

	if cfg.TLSOutUnwrap && cfg.ProxyType != "reverse" {
		ca, err := mitm.LoadCA(cfg.TLSCertDir)
		if err != nil {
			return nil, fmt.Errorf("TLS_OUT_UNWRAP=true needs a CA in TLS_CERT_DIR=%s: %w", cfg.TLSCertDir, err)
		}
		s.minter, err = mitm.NewMinter(ca, mitm.Options{CacheSize: cfg.LeafCacheSize})
		if err != nil {
			return nil, fmt.Errorf("TLS_OUT_UNWRAP: %w", err)
		}
		opt.Minter = s.minter
		s.caLoaded = time.Now()
	}

	if cfg.CaptureEnabled {
		if s.redactor, err = cfg.Redaction.Redactor(); err != nil {
			return nil, err
		}
		fingerprint := ""
		if s.redactor != nil {
			fingerprint = s.redactor.Fingerprint()
		}
		sink, where, err := openSink(cfg, s.yield, fingerprint, s.log)
		if err != nil {
			return nil, err
		}
		s.sink = sink
		sc := ship.Config{
			QueueBytes:    cfg.QueueBytes,
			FlushInterval: 500 * time.Millisecond,
			MinBackoff:    100 * time.Millisecond,
			MaxBackoff:    5 * time.Second, // the forwarder is in the cluster: come back soon after it does
			Logger:        log.With("part", "shipper"),
		}
		if s.redactor != nil {
			sc.Prepare = s.redact
		}
		s.shipper = ship.New(sc, sink)
		opt.Emitter = s.shipper
		log.Info("records go to " + where)
		if w := cfg.Redaction.Warning(s.redactor); w != "" {
			log.Warn(w)
		} else {
			log.Info("redaction rules, applied before records leave goproxy", "rules", s.redactor.Rules())
		}
	} else {
		log.Warn("CAPTURE_ENABLE=false: forwarding only, nothing is recorded")
	}

	if reg != nil {
		s.registerStats(reg)
	}

	listen := func(addr string) (net.Listener, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", addr, err)
		}
		s.lns = append(s.lns, ln)
		return ln, nil
	}

	if cfg.ProxyType != "forward" {
		target := appTarget(cfg)
		mode := proxy.InboundSniff
		switch cfg.ProxyProtocol {
		case "http":
			mode = proxy.InboundHTTP
		case "tcp":
			mode = proxy.InboundTCP
		}
		s.in, err = proxy.NewInbound(target, mode, opt)
		if err != nil {
			return nil, fmt.Errorf("REVERSE_PROXY_HOST/REVERSE_PROXY_PORT: %w", err)
		}
		ln, err := listen(net.JoinHostPort(cfg.InListenHost, strconv.Itoa(cfg.InPort)))
		if err != nil {
			return nil, fmt.Errorf("PROXY_IN_PORT: %w", err)
		}
		s.InAddr = ln.Addr().String()
		s.serves = append(s.serves, func() error { return s.in.Serve(ln) })
		log.Info("inbound reverse proxy", "listen", s.InAddr, "app", target, "protocol", cfg.ProxyProtocol)
	}
	if cfg.ProxyType != "reverse" {
		s.out, err = proxy.NewOutbound(opt)
		if err != nil {
			return nil, err
		}
		addr := net.JoinHostPort(cfg.OutListenHost, strconv.Itoa(cfg.OutPort))
		ln, err := listen(addr)
		if err != nil {
			return nil, fmt.Errorf("PROXY_OUT_PORT: %w", err)
		}
		s.OutAddr = ln.Addr().String()
		if ip := net.ParseIP(cfg.OutListenHost); ip != nil && !ip.IsLoopback() {
			log.Warn("OPEN PROXY: the outbound proxy listens beyond loopback (PROXY_OUT_LISTEN_HOST); anyone who can reach " + s.OutAddr + " can send traffic through this task")
		}
		s.serves = append(s.serves, func() error { return s.out.Serve(ln) })
		log.Info("outbound forward proxy", "listen", s.OutAddr, "tls_unwrap", s.minter != nil)
	}
	if cfg.DiagPort > 0 {
		ln, err := listen(net.JoinHostPort(cfg.DiagHost, strconv.Itoa(cfg.DiagPort)))
		if err != nil {
			return nil, fmt.Errorf("DIAG_HTTP_PORT: %w", err)
		}
		s.DiagAddr = ln.Addr().String()
		srv := &http.Server{Handler: s.diagHandler(), ReadHeaderTimeout: 10 * time.Second}
		s.aux = append(s.aux, srv)
		s.serves = append(s.serves, func() error { return srv.Serve(ln) })
	}
	if reg != nil {
		ln, err := listen(":" + strconv.Itoa(cfg.MetricsPort))
		if err != nil {
			return nil, fmt.Errorf("METRICS_HTTP_PORT: %w", err)
		}
		s.MetricsAddr = ln.Addr().String()
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		s.aux = append(s.aux, srv)
		s.serves = append(s.serves, func() error { return srv.Serve(ln) })
	}
	return s, nil
}

// ErrNoCA is returned by ReloadCA when goproxy does not unwrap TLS
// (TLS_OUT_UNWRAP is off or PROXY_TYPE=reverse): there is no CA to reload.
var ErrNoCA = errors.New("TLS_OUT_UNWRAP is off: goproxy holds no CA to reload")

// ReloadCA re-reads tls.crt and tls.key from TLS_CERT_DIR and, when they
// form a usable CA, signs every new leaf with it: the leaf cache is emptied,
// so hosts already seen get a leaf of the new CA at their next handshake.
// Connections already open keep their leaf. When the files are missing,
// unreadable, not a CA, expired or do not match (a rotation caught half
// written), the CA in use is kept and the error says why. Either way one
// line is logged. cmd/goproxy calls it on SIGHUP.
func (s *Server) ReloadCA() error {
	if s.minter == nil {
		s.log.Warn("CA reload asked for, but TLS_OUT_UNWRAP is off: nothing to reload")
		return ErrNoCA
	}
	old := s.minter.CA()
	ca, err := mitm.LoadCA(s.cfg.TLSCertDir)
	if err != nil {
		s.log.Error("CA reload failed: keeping the CA in use", "dir", s.cfg.TLSCertDir, "err", err,
			"ca", caInfo(old).Subject, "caSHA256", caInfo(old).SHA256)
		return fmt.Errorf("reload the CA from TLS_CERT_DIR=%s: %w", s.cfg.TLSCertDir, err)
	}
	s.minter.SetCA(ca)
	s.caMu.Lock()
	s.caLoaded = time.Now()
	s.caMu.Unlock()
	ni, oi := caInfo(ca), caInfo(old)
	s.log.Info("CA reloaded: new leaves are signed by it", "dir", s.cfg.TLSCertDir,
		"ca", ni.Subject, "caSHA256", ni.SHA256, "notAfter", ni.NotAfter, "previousSHA256", oi.SHA256)
	return nil
}

// CAInfo describes the CA that signs leaves, in /healthz.
type CAInfo struct {
	Subject  string    `json:"subject"`
	SHA256   string    `json:"sha256"` // of the certificate's DER, hex
	NotAfter time.Time `json:"notAfter"`
	Loaded   time.Time `json:"loaded"` // start-up or the last successful reload
}

func caInfo(ca *mitm.CA) CAInfo {
	sum := sha256.Sum256(ca.Cert.Raw)
	return CAInfo{Subject: ca.Cert.Subject.String(), SHA256: hex.EncodeToString(sum[:]), NotAfter: ca.Cert.NotAfter.UTC()}
}

// redact applies the redaction rules to a batch, in the shipper's
// goroutine: once per batch, before its first write, so that no secret
// reaches the forwarder's wire or the local files, and no request waits
// for it (it makes way for them every wire.YieldEvery: s.yield). The
// forwarder applies the same rules again, which changes nothing that was
// redacted here, unless the batch's fingerprint (wire.HeaderRedacted)
// tells it they are its own.
func (s *Server) redact(batch []*capture.Record) {
	pace := netyield.Pacer{Every: wire.YieldEvery, Yield: s.yield}
	for _, r := range batch {
		if s.redactor.Redact(r) != nil {
			s.redacted.Add(1)
		}
		pace.Tick(bodyBytes(r))
	}
}

// bodyBytes is the size of r's bodies, what redaction's time goes with.
func bodyBytes(r *capture.Record) int {
	if r.HTTP == nil {
		return 0
	}
	n := len(r.HTTP.Req.Body.Data)
	if r.HTTP.Res != nil {
		n += len(r.HTTP.Res.Body.Data)
	}
	return n
}

// yield makes way for the goroutines the network has woken, from the
// shipper's long loops (redaction here, encoding in the wire client):
// with one core, a batch would otherwise hold every request that arrives
// meanwhile (internal/netyield). Not while the shipper is behind the
// traffic: then the records get the CPU first, rather than be dropped.
func (s *Server) yield() {
	if s.shipper != nil && s.shipper.Backlogged() {
		return
	}
	netyield.Yield()
}

// appTarget is the app's URL from REVERSE_PROXY_HOST and REVERSE_PROXY_PORT.
func appTarget(cfg *Config) string {
	host := cfg.ReverseHost
	scheme := "http"
	if i := strings.Index(host, "://"); i >= 0 {
		scheme, host = host[:i], strings.TrimSuffix(host[i+3:], "/")
	}
	if _, _, err := net.SplitHostPort(host); err == nil {
		return scheme + "://" + host
	}
	return scheme + "://" + net.JoinHostPort(strings.Trim(host, "[]"), strconv.Itoa(cfg.ReversePort))
}

// openSink picks where records go: the forwarder, or local files. Either
// sink calls yield while it encodes a batch. The forwarder's client sends
// redacted, the fingerprint of the rules the shipper applies to every
// batch before it writes it (s.redact), so that a forwarder with the same
// rules does not apply them again.
func openSink(cfg *Config, yield func(), redacted string, log *slog.Logger) (capture.Sink, string, error) {
	addr := cfg.ForwarderAddr
	if addr == "" || strings.HasPrefix(addr, "file://") {
		dir := strings.TrimPrefix(addr, "file://")
		if dir == "" {
			dir = cfg.LocalDir
		}
		fs, err := file.New(dir, file.Options{Yield: yield})
		if err != nil {
			return nil, "", fmt.Errorf("local record files in %s: %w", dir, err)
		}
		return fs, "local files in " + dir, nil
	}
	opts := wire.ClientOptions{Token: cfg.ForwarderToken, FastCompression: true, ZstdOnly: cfg.Compression == "zstd",
		Yield: yield, Redacted: redacted, OnEncoding: func(enc string, refused bool) {
			switch {
			case refused:
				log.Warn("the forwarder refused a batch in S2 (415: an older forwarder?); it was sent again in zstd, and batches stay in zstd for a while",
					"part", "shipper", "cooldown", wire.S2Cooldown())
			case enc == wire.EncodingS2:
				log.Info("the forwarder takes S2: batches are compressed with S2 (SHIP_COMPRESSION=zstd keeps zstd)", "part", "shipper")
			default:
				log.Info("the forwarder no longer lists S2: batches are compressed with zstd", "part", "shipper")
			}
		}}
	if strings.HasPrefix(addr, "https://") {
		roots, err := forwarderRoots(cfg.TLSCertDir)
		if err != nil {
			return nil, "", fmt.Errorf("FORWARDER_ADDR=%q: %w", addr, err)
		}
		opts.TLSConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	fw, err := wire.NewClient(addr, opts)
	if err != nil {
		return nil, "", fmt.Errorf("FORWARDER_ADDR=%q: %w", addr, err)
	}
	return fw, "the forwarder at " + fw.URL(), nil
}

// forwarderRoots are the CAs an https:// forwarder's certificate is
// verified against: the system roots and TLS_CERT_DIR's tls.crt (the
// guide's CA, which signs the certificate speedctl certs forwarder makes).
// A missing tls.crt leaves the system roots; an unreadable or empty one is
// an error.
func forwarderRoots(dir string) (*x509.CertPool, error) {
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	path := filepath.Join(dir, "tls.crt")
	pem, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return roots, nil
	case err != nil:
		return nil, fmt.Errorf("the CA to verify the forwarder with (TLS_CERT_DIR): %w", err)
	case !roots.AppendCertsFromPEM(pem):
		return nil, fmt.Errorf("the CA to verify the forwarder with: no PEM certificate in %s (TLS_CERT_DIR)", path)
	}
	return roots, nil
}

func (s *Server) goServe(f func() error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := f(); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			s.serveErr <- err
		}
	}()
}

func (s *Server) closeListeners() {
	for _, ln := range s.lns {
		ln.Close()
	}
}

// Serve starts the shipper and every listener and serves until ctx is done
// (SIGTERM) or Shutdown is called, then shuts down: stop accepting, finish
// in-flight exchanges, flush the records until ShutdownTimeout. It returns
// the error of a listener that failed, else nil.
func (s *Server) Serve(ctx context.Context) error { return s.life.Serve(ctx, s.serve) }

func (s *Server) serve(ctx context.Context) error {
	if s.shipper != nil {
		s.shipper.Start(context.WithoutCancel(ctx))
	}
	for _, f := range s.serves {
		s.goServe(f)
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-s.serveErr:
		s.log.Error("listener failed", "err", runErr)
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := s.drain(sctx); err != nil && runErr == nil {
		s.log.Warn("shutdown incomplete", "err", err)
	}
	return runErr
}

// Shutdown stops a Serve and waits until it has finished the exchanges in
// flight, flushed the records and returned, or ctx is done. A Server that
// was never served is closed.
func (s *Server) Shutdown(ctx context.Context) error { return s.life.Shutdown(ctx, s.Close) }

// Close releases a Server that was never served: its listeners and its
// sink.
func (s *Server) Close() error {
	s.closeListeners()
	if s.sink != nil {
		return s.sink.Close()
	}
	return nil
}

// drain stops every listener, waits for in-flight exchanges and then
// flushes the records until ctx is done.
func (s *Server) drain(ctx context.Context) error {
	s.log.Info("shutting down: finishing in-flight exchanges and flushing records")
	var wg sync.WaitGroup
	var errs []error
	var mu sync.Mutex
	add := func(err error) {
		if err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
	}
	if s.in != nil {
		wg.Add(1)
		go func() { defer wg.Done(); add(s.in.Shutdown(ctx)) }()
	}
	if s.out != nil {
		wg.Add(1)
		go func() { defer wg.Done(); add(s.out.Shutdown(ctx)) }()
	}
	wg.Wait()
	if s.shipper != nil {
		add(s.shipper.Shutdown(ctx))
		st := s.shipper.Stats()
		s.log.Info("records flushed", "shipped", st.Shipped, "dropped", st.Dropped)
	}
	for _, a := range s.aux {
		a.Close()
	}
	s.closeListeners()
	s.wg.Wait()
	return errors.Join(errs...)
}

func (s *Server) registerStats(reg *prometheus.Registry) {
	if sh := s.shipper; sh != nil {
		counter := func(name, help string, f func(ship.Stats) int64) {
			reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f(sh.Stats())) }))
		}
		gauge := func(name, help string, f func(ship.Stats) int64) {
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return float64(f(sh.Stats())) }))
		}
		counter("goproxy_records_total", "Records made from exchanges.", func(st ship.Stats) int64 { return st.Emitted })
		counter("goproxy_records_shipped_total", "Records delivered to the forwarder or the local files.", func(st ship.Stats) int64 { return st.Shipped })
		counter("goproxy_records_dropped_total", "Records dropped: the queue was full, the forwarder refused a batch, or shutdown ran out of time.", func(st ship.Stats) int64 { return st.Dropped })
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "goproxy_records_redacted_total", Help: "Records changed by a redaction rule before shipping."},
			func() float64 { return float64(s.redacted.Load()) }))
		counter("goproxy_ship_failures_total", "Failed attempts to deliver a batch.", func(st ship.Stats) int64 { return st.Failures })
		gauge("goproxy_ship_queue_bytes", "Estimated bytes of records waiting to ship.", func(st ship.Stats) int64 { return st.QueueBytes })
		gauge("goproxy_ship_queue_records", "Records waiting to ship.", func(st ship.Stats) int64 { return st.QueueRecords })
	}
	if m := s.minter; m != nil {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "goproxy_tls_leaves_minted_total", Help: "Leaf certificates signed for TLS unwrap."}, func() float64 { return float64(m.Stats().Minted) }))
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "goproxy_tls_leaves_cached", Help: "Leaf certificates in the cache."}, func() float64 { return float64(m.Stats().Cached) }))
	}
}

// diagHandler serves health and the listing of recent connections.
func (s *Server) diagHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s.health())
	})
	mux.HandleFunc("GET /debug/connections", func(w http.ResponseWriter, r *http.Request) {
		open, closed := s.conns.Snapshot()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(map[string]any{
			"open":   orEmpty(open),
			"recent": orEmpty(closed),
			"memory": map[string]any{
				"heapAllocBytes": ms.HeapAlloc, "heapInuseBytes": ms.HeapInuse, "sysBytes": ms.Sys,
				"numGC": ms.NumGC, "goroutines": runtime.NumGoroutine(),
			},
		})
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "goproxy diagnostics: GET /healthz, GET /debug/connections\n")
	})
	return mux
}

func orEmpty(v []proxy.ConnView) []proxy.ConnView {
	if v == nil {
		return []proxy.ConnView{}
	}
	return v
}

// Health is the body of /healthz.
type Health struct {
	Status   string         `json:"status"` // ok
	Uptime   string         `json:"uptime"`
	Inbound  string         `json:"inbound,omitempty"`
	Outbound string         `json:"outbound,omitempty"`
	Shipping *ship.Stats    `json:"shipping,omitempty"`
	TLS      *mitm.Stats    `json:"tlsLeaves,omitempty"`
	CA       *CAInfo        `json:"ca,omitempty"` // the CA signing leaves, with TLS_OUT_UNWRAP
	Redact   *RedactInfo    `json:"redaction,omitempty"`
	Labels   capture.Labels `json:"labels"`
}

// RedactInfo is the redaction in /healthz: the rules applied before
// records leave goproxy (none: redaction is off) and the records they
// changed.
type RedactInfo struct {
	Rules    []string `json:"rules"`
	Redacted int64    `json:"redacted"`
}

func (s *Server) health() Health {
	h := Health{Status: "ok", Uptime: time.Since(s.started).Round(time.Second).String(), Inbound: s.InAddr, Outbound: s.OutAddr, Labels: s.cfg.Labels}
	if s.shipper != nil {
		st := s.shipper.Stats()
		h.Shipping = &st
		ri := RedactInfo{Rules: []string{}, Redacted: s.redacted.Load()}
		if s.redactor != nil {
			ri.Rules = s.redactor.Rules()
		}
		h.Redact = &ri
	}
	if s.minter != nil {
		st := s.minter.Stats()
		h.TLS = &st
		ci := caInfo(s.minter.CA())
		s.caMu.Lock()
		ci.Loaded = s.caLoaded.UTC()
		s.caMu.Unlock()
		h.CA = &ci
	}
	return h
}
