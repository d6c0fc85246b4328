package goproxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/testca"
	"github.com/tapwire/tapwire/internal/testfwd"
	"github.com/tapwire/tapwire/internal/testport"
)

// freePort is a port for goproxy to bind later (internal/testport: outside
// the range other tests' sockets draw from meanwhile).
func freePort(t *testing.T) int {
	t.Helper()
	p, err := testport.Free()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// guideEnv is the goproxy environment of the deployment guide, with ports
// that are free on this machine.
func guideEnv(t *testing.T, appPort int, forwarder, certDir string) map[string]string {
	return map[string]string{
		"LOG_LEVEL":          "info",
		"APP_LABEL":          "notifications",
		"APP_POD_NAME":       "notifications",
		"APP_POD_NAMESPACE":  "ecs",
		"CAPTURE_MODE":       "proxy",
		"PROXY_TYPE":         "dual",
		"PROXY_PROTOCOL":     "tcp:http",
		"TLS_OUT_UNWRAP":     "true",
		"REVERSE_PROXY_PORT": strconv.Itoa(appPort),
		"FORWARDER_ADDR":     forwarder,
		"TLS_CERT_DIR":       certDir,
		"PROXY_IN_PORT":      strconv.Itoa(freePort(t)),
		"PROXY_OUT_PORT":     strconv.Itoa(freePort(t)),
		"DIAG_HTTP_PORT":     strconv.Itoa(freePort(t)),
	}
}

func start(t *testing.T, env map[string]string) *Server {
	t.Helper()
	srv, _ := startLogged(t, env)
	return srv
}

// startLogged is start that also keeps goproxy's log.
func startLogged(t *testing.T, env map[string]string) (*Server, *lockedBuffer) {
	t.Helper()
	cfg, err := Load(nil, envOf(env), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	logs := new(lockedBuffer)
	var out io.Writer = logs
	if testing.Verbose() {
		out = io.MultiWriter(logs, os.Stderr)
	}
	log := slog.New(slog.NewTextHandler(out, nil))
	srv, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("goproxy Run: %v", err)
		}
	})
	return srv, logs
}

// theGuideInMiniature is the scenario of the ECS guide: a load balancer
// calls the app through goproxy's inbound port; the app calls an HTTPS
// upstream through HTTPS_PROXY, trusting the CA by SSL_CERT_FILE.
type miniature struct {
	srv      *Server
	fwd      *testfwd.Receiver
	upstream *httptest.Server
	appHost  string
}

func setupMiniature(t *testing.T, fwdAddr string, extraEnv map[string]string) *miniature {
	t.Helper()
	dir := t.TempDir()
	ca := testca.New(t, testca.RSA(2048))
	ca.WriteDir(t, dir) // the init container's /etc/ssl/speedscale
	upCA := testca.New(t)
	upCA.WriteFile(t, filepath.Join(dir, "upstream-roots.pem"))

	upstream := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"charged":%q}`, b)
	}))
	upstream.TLS = upCA.ServerTLS(t, "localhost")
	upstream.EnableHTTP2 = true
	upstream.StartTLS()
	t.Cleanup(upstream.Close)
	upURL := strings.Replace(upstream.URL, "127.0.0.1", "localhost", 1)

	m := &miniature{upstream: upstream}
	// The app: SSL_CERT_FILE points at the CA, HTTPS_PROXY at goproxy.
	caPEM, err := os.ReadFile(filepath.Join(dir, "tls.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	var appClient *http.Client
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res, err := appClient.Post(upURL+"/charge", "text/plain", strings.NewReader("order-42"))
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		fmt.Fprintf(w, "order placed: %s", b)
	}))
	t.Cleanup(app.Close)
	appPort := app.Listener.Addr().(*net.TCPAddr).Port

	env := guideEnv(t, appPort, fwdAddr, dir)
	env["TLS_OUT_EXTRA_CA_FILE"] = filepath.Join(dir, "upstream-roots.pem")
	for k, v := range extraEnv {
		env[k] = v
	}
	m.srv = start(t, env)
	proxyURL, _ := url.Parse("http://" + m.srv.OutAddr)
	appClient = &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL), TLSClientConfig: &tls.Config{RootCAs: roots}}}
	t.Cleanup(appClient.CloseIdleConnections)
	return m
}

func (m *miniature) call(t *testing.T, path string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+m.srv.InAddr+path, nil)
	req.Host = "notifications.example"
	res, err := (&http.Client{Transport: &http.Transport{Proxy: nil}}).Do(req)
	if err != nil {
		t.Fatalf("app request failed: %v", err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(b), `order placed: {"charged":"order-42"}`) {
		t.Fatalf("app answered %d %q", res.StatusCode, b)
	}
}

func TestGuideInMiniature(t *testing.T) {
	fwd := testfwd.Start(t, "")
	m := setupMiniature(t, fwd.Addr(), nil)
	m.call(t, "/orders?id=42")

	in, err := fwd.WaitFor(1, 10*time.Second, func(r *capture.Record) bool { return r.Direction == capture.DirIn })
	if err != nil {
		t.Fatalf("inbound record: %v", err)
	}
	out, err := fwd.WaitFor(1, 10*time.Second, func(r *capture.Record) bool { return r.Direction == capture.DirOut })
	if err != nil {
		t.Fatalf("outbound record: %v", err)
	}
	labels := capture.Labels{Service: "notifications", Pod: "notifications", Namespace: "ecs"}
	for _, r := range []*capture.Record{in[0], out[0]} {
		if r.Labels != labels {
			t.Errorf("%s record labels = %+v, want %+v", r.Direction, r.Labels, labels)
		}
		if r.Tags["proxyType"] != "dual" || r.Tags["proxyProtocol"] != "tcp:http" {
			t.Errorf("%s record tags = %v", r.Direction, r.Tags)
		}
	}
	ri := in[0].HTTP
	if ri.Req.Method != "GET" || ri.Req.URL != "http://notifications.example/orders?id=42" || ri.Res.Status != 200 ||
		!strings.Contains(string(ri.Res.Body.Data), "order placed") {
		t.Errorf("inbound record: %s %s -> %d %q", ri.Req.Method, ri.Req.URL, ri.Res.Status, ri.Res.Body.Data)
	}
	ro := out[0].HTTP
	upURL := strings.Replace(m.upstream.URL, "127.0.0.1", "localhost", 1)
	if ro.Req.Method != "POST" || ro.Req.URL != upURL+"/charge" || string(ro.Req.Body.Data) != "order-42" ||
		ro.Res.Status != 200 || string(ro.Res.Body.Data) != `{"charged":"order-42"}` || ro.Res.Headers.Get("Content-Type") != "application/json" {
		t.Errorf("outbound record: %s %s %q -> %d %q %v", ro.Req.Method, ro.Req.URL, ro.Req.Body.Data, ro.Res.Status, ro.Res.Body.Data, ro.Res.Headers)
	}
	if out[0].Net.TLS == nil || out[0].Net.TLS.SNI != "localhost" {
		t.Errorf("outbound TLS facts = %+v", out[0].Net.TLS)
	}

	// Diagnostics list the connections and say the proxy is healthy.
	res, err := http.Get("http://" + m.srv.DiagAddr + "/debug/connections")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(b), `"listener": "outbound"`) || !strings.Contains(string(b), `"heapAllocBytes"`) {
		t.Errorf("/debug/connections = %s", b)
	}
	res, err = http.Get("http://" + m.srv.DiagAddr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(b), `"status":"ok"`) {
		t.Errorf("/healthz = %d %s", res.StatusCode, b)
	}
}

func TestForwarderAbsentAndKilled(t *testing.T) {
	// Reserve an address for a forwarder that is not there yet.
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	m := setupMiniature(t, addr, map[string]string{"SHIP_QUEUE_BYTES": "65536"})
	const n = 150
	for i := 0; i < n; i++ {
		m.call(t, "/absent/"+strconv.Itoa(i)) // every app request succeeds
		if q := m.srv.shipper.Stats().QueueBytes; q > 65536 {
			t.Fatalf("queue holds %d bytes, over its 65536 bound", q)
		}
	}
	st := m.srv.shipper.Stats()
	if st.Dropped == 0 || st.DroppedQueueFull == 0 {
		t.Errorf("stats %+v: want drops counted while the forwarder is absent", st)
	}

	// Shipping is failing, and counted.
	for deadline := time.Now().Add(10 * time.Second); m.srv.shipper.Stats().Failures == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("no failed delivery counted while the forwarder is absent: %+v", m.srv.shipper.Stats())
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The forwarder appears: what was queued arrives, then what comes next.
	fwd := testfwd.Start(t, addr)
	if _, err := fwd.WaitFor(1, 15*time.Second, func(*capture.Record) bool { return true }); err != nil {
		t.Fatalf("the queued backlog did not arrive: %v", err)
	}
	drained(t, m.srv) // the queue frees its room once the forwarder has acknowledged
	m.call(t, "/present")
	if _, err := fwd.WaitFor(1, 15*time.Second, func(r *capture.Record) bool {
		return r.HTTP != nil && strings.HasSuffix(r.HTTP.Req.URL, "/present")
	}); err != nil {
		t.Fatalf("shipping did not resume: %v (stats %+v)", err, m.srv.shipper.Stats())
	}

	// Killed mid-test, then back.
	fwd.Stop()
	for i := 0; i < 20; i++ {
		m.call(t, "/killed/"+strconv.Itoa(i))
	}
	fwd.Restart(t)
	m.call(t, "/restarted")

	if _, err := fwd.WaitFor(1, 15*time.Second, func(r *capture.Record) bool {
		return r.HTTP != nil && strings.HasSuffix(r.HTTP.Req.URL, "/restarted")
	}); err != nil {
		t.Fatalf("shipping did not resume after restart: %v", err)
	}
	got, _ := fwd.WaitFor(20, 15*time.Second, func(r *capture.Record) bool {
		return r.HTTP != nil && strings.Contains(r.HTTP.Req.URL, "/killed/")
	})
	if len(got) < 20 { // the inbound records of 20 calls, queued while it was down
		t.Errorf("%d records of the outage arrived, want 20 (queue was within its bound); stats %+v", len(got), m.srv.shipper.Stats())
	}
}

func TestLocalFilesWithoutForwarder(t *testing.T) {
	dir := t.TempDir()
	m := setupMiniature(t, "file://"+dir, nil)
	m.call(t, "/local")
	// Records are flushed at shutdown at the latest; poll the directory.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		files, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
		for _, f := range files {
			b, _ := os.ReadFile(f)
			if strings.Contains(string(b), "/local") && strings.Contains(string(b), "/charge") {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("no local JSONL file in %s holds both records", dir)
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"capture mode", map[string]string{"CAPTURE_MODE": "tap"}, `CAPTURE_MODE="tap": want one of proxy`},
		{"proxy type", map[string]string{"PROXY_TYPE": "sideways"}, `PROXY_TYPE="sideways"`},
		{"transparent", map[string]string{"PROXY_TYPE": "transparent"}, "not supported yet"},
		{"protocol", map[string]string{"PROXY_PROTOCOL": "udp"}, `PROXY_PROTOCOL="udp"`},
		{"port", map[string]string{"PROXY_IN_PORT": "70000"}, `PROXY_IN_PORT="70000": want a port number`},
		{"port text", map[string]string{"REVERSE_PROXY_PORT": "eighty"}, `REVERSE_PROXY_PORT="eighty": want a whole number`},
		{"bool", map[string]string{"TLS_OUT_UNWRAP": "yes please"}, `TLS_OUT_UNWRAP="yes please": want true or false`},
		{"forwarder", map[string]string{"FORWARDER_ADDR": "forwarder.ecs.local"}, `FORWARDER_ADDR="forwarder.ecs.local": want host:port`},
		{"same ports", map[string]string{"PROXY_IN_PORT": "5000", "PROXY_OUT_PORT": "5000"}, "must differ"},
		{"log level", map[string]string{"LOG_LEVEL": "loud"}, `LOG_LEVEL="loud"`},
		{"body limit", map[string]string{"BODY_CAPTURE_LIMIT": "lots"}, `BODY_CAPTURE_LIMIT="lots"`},
		{"header limit", map[string]string{"PROXY_MAX_HEADER_BYTES": "lots"}, `PROXY_MAX_HEADER_BYTES="lots"`},
		{"header limit too small", map[string]string{"PROXY_MAX_HEADER_BYTES": "100"}, `PROXY_MAX_HEADER_BYTES="100": want a byte count from 1KiB to 64MiB`},
		{"compression", map[string]string{"SHIP_COMPRESSION": "brotli"}, `SHIP_COMPRESSION="brotli": want auto (S2 once the forwarder lists it in Accept-Encoding, else zstd) or zstd`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(nil, envOf(tt.env), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestConfigDefaultsFollowTheGuide(t *testing.T) {
	cfg, err := Load(nil, envOf(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.InPort != 4143 || cfg.OutPort != 4140 || cfg.ProxyType != "dual" || cfg.ProxyProtocol != "tcp:http" ||
		cfg.TLSCertDir != "/etc/ssl/speedscale" || cfg.ReverseHost != "localhost" || cfg.ReversePort != 80 ||
		cfg.MetricsPort != 4145 || cfg.DiagPort != 4100 || cfg.OutListenHost != "127.0.0.1" || cfg.BodyLimit != 1<<20 ||
		cfg.MaxHeaderBytes != 64<<10 {
		t.Errorf("defaults = %+v", cfg)
	}
	// A flag wins over its variable.
	cfg, err = Load([]string{"-reverse-port", "9090", "-tls-out-unwrap"}, envOf(map[string]string{"REVERSE_PROXY_PORT": "8080"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ReversePort != 9090 || !cfg.TLSOutUnwrap {
		t.Errorf("flags over env: port %d unwrap %v", cfg.ReversePort, cfg.TLSOutUnwrap)
	}
	cfg, err = Load(nil, envOf(map[string]string{"PROXY_MAX_HEADER_BYTES": "8KiB"}), io.Discard)
	if err != nil || cfg.MaxHeaderBytes != 8<<10 {
		t.Errorf("PROXY_MAX_HEADER_BYTES=8KiB: got %d, %v; want 8192", cfg.MaxHeaderBytes, err)
	}
	cfg, err = Load([]string{"-max-header-bytes", "16384"}, envOf(map[string]string{"PROXY_MAX_HEADER_BYTES": "8KiB"}), io.Discard)
	if err != nil || cfg.MaxHeaderBytes != 16<<10 {
		t.Errorf("-max-header-bytes over the variable: got %d, %v; want 16384", cfg.MaxHeaderBytes, err)
	}
	for _, v := range []string{"", "auto", " Auto "} {
		if cfg, err = Load(nil, envOf(map[string]string{"SHIP_COMPRESSION": v}), io.Discard); err != nil || cfg.Compression != "auto" {
			t.Errorf("SHIP_COMPRESSION=%q: got %q, %v; want auto", v, cfg.Compression, err)
		}
	}
	if cfg, err = Load([]string{"-ship-compression", "ZSTD"}, envOf(nil), io.Discard); err != nil || cfg.Compression != "zstd" {
		t.Errorf("-ship-compression ZSTD: got %q, %v; want zstd", cfg.Compression, err)
	}
}

func TestStartupErrorsForBadCA(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	notCA := t.TempDir()
	testca.WriteNonCADir(t, notCA)
	tests := []struct {
		name, dir, want string
	}{
		{"missing", filepath.Join(t.TempDir(), "nope"), "tls.crt"},
		{"not a CA", notCA, "CA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Load(nil, envOf(map[string]string{"TLS_OUT_UNWRAP": "true", "TLS_CERT_DIR": tt.dir,
				"PROXY_IN_PORT": strconv.Itoa(freePort(t)), "PROXY_OUT_PORT": strconv.Itoa(freePort(t)), "DIAG_HTTP_PORT": "-1",
				"FORWARDER_ADDR": "file://" + t.TempDir()}), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			_, err = New(cfg, log)
			if err == nil || !strings.Contains(err.Error(), "TLS_OUT_UNWRAP") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want a start-up error naming TLS_OUT_UNWRAP and %q", err, tt.want)
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	fwd := testfwd.Start(t, "")
	port := freePort(t)
	m := setupMiniature(t, fwd.Addr(), map[string]string{"METRICS_HTTP_ENABLE": "true", "METRICS_HTTP_PORT": strconv.Itoa(port)})
	m.call(t, "/metered")
	if _, err := fwd.WaitFor(2, 10*time.Second, func(*capture.Record) bool { return true }); err != nil {
		t.Fatal(err)
	}
	drained(t, m.srv)
	res, err := http.Get("http://" + m.srv.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{
		`goproxy_requests_total{direction="in"} 1`,
		`goproxy_requests_total{direction="out"} 1`,
		`goproxy_records_total 2`,
		`goproxy_records_shipped_total 2`,
		`goproxy_records_dropped_total 0`,
		`goproxy_tls_leaves_minted_total 1`,
		`goproxy_tls_leaves_cached 1`,
		`goproxy_ship_queue_bytes 0`,
		`goproxy_upstream_errors_total{direction="in"} 0`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestShutdownFinishesInFlight: on SIGTERM an exchange in flight completes
// and its record is flushed before goproxy exits.
func TestShutdownFinishesInFlight(t *testing.T) {
	fwd := testfwd.Start(t, "")
	entered := make(chan struct{})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		time.Sleep(500 * time.Millisecond)
		io.WriteString(w, "slow but complete")
	}))
	defer app.Close()
	env := guideEnv(t, app.Listener.Addr().(*net.TCPAddr).Port, fwd.Addr(), t.TempDir())
	env["TLS_OUT_UNWRAP"] = "false"
	cfg, err := Load(nil, envOf(env), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()

	got := make(chan string, 1)
	go func() {
		res, err := http.Get("http://" + srv.InAddr + "/in-flight")
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		got <- string(b)
	}()
	<-entered
	cancel() // SIGTERM
	if s := <-got; s != "slow but complete" {
		t.Errorf("in-flight request got %q", s)
	}
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	// The record was flushed before Run returned.
	recs := fwd.Records()
	if len(recs) != 1 || !strings.HasSuffix(recs[0].HTTP.Req.URL, "/in-flight") {
		t.Errorf("forwarder holds %d records after shutdown, want the in-flight one", len(recs))
	}
	// And the listener is closed.
	if c, err := net.DialTimeout("tcp", srv.InAddr, time.Second); err == nil {
		c.Close()
		t.Errorf("inbound port still accepts after shutdown")
	}
}

// drained waits until the shipper holds no record: the forwarder
// acknowledged everything.
func drained(t *testing.T, srv *Server) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); srv.shipper.Stats().QueueRecords > 0; {
		if time.Now().After(deadline) {
			t.Fatalf("queue did not drain: %+v", srv.shipper.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestOpenProxyWarning(t *testing.T) {
	tests := []struct {
		host string
		warn bool
	}{{"127.0.0.1", false}, {"0.0.0.0", true}}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			cfg, err := Load(nil, envOf(map[string]string{"PROXY_TYPE": "forward", "PROXY_OUT_LISTEN_HOST": tt.host,
				"PROXY_OUT_PORT": strconv.Itoa(freePort(t)), "DIAG_HTTP_PORT": "-1", "FORWARDER_ADDR": "file://" + t.TempDir()}), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			var logs strings.Builder
			srv, err := New(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(ctx)
			if got := strings.Contains(logs.String(), "OPEN PROXY"); got != tt.warn {
				t.Errorf("OPEN PROXY warning logged = %v, want %v; logs:\n%s", got, tt.warn, logs.String())
			}
		})
	}
}

// TestInListenHost: PROXY_IN_LISTEN_HOST binds the inbound port to one
// address (the default is every interface); a bad value stops start-up.
func TestInListenHost(t *testing.T) {
	for _, tt := range []struct{ host, want string }{{"", "::"}, {"127.0.0.1", "127.0.0.1"}} {
		cfg, err := Load(nil, envOf(map[string]string{"PROXY_TYPE": "reverse", "PROXY_IN_LISTEN_HOST": tt.host,
			"PROXY_IN_PORT": strconv.Itoa(freePort(t)), "DIAG_HTTP_PORT": "-1", "FORWARDER_ADDR": "file://" + t.TempDir()}), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		srv, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		host, _, _ := net.SplitHostPort(srv.InAddr)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		srv.Shutdown(ctx)
		cancel()
		if host != tt.want && !(tt.want == "::" && host == "0.0.0.0") {
			t.Errorf("PROXY_IN_LISTEN_HOST=%q: inbound listens on %s, want host %s", tt.host, srv.InAddr, tt.want)
		}
	}
	_, err := Load(nil, envOf(map[string]string{"PROXY_IN_LISTEN_HOST": "the moon"}), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "PROXY_IN_LISTEN_HOST") {
		t.Errorf("a bad PROXY_IN_LISTEN_HOST: %v", err)
	}
}
