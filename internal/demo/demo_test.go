package demo

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/store"
	"github.com/tapwire/tapwire/internal/store/sqlite"
)

// anyPorts asks for a free port for every part.
var anyPorts = Ports{}

// records reads every record of the tenant from the demo's database, after
// the stack has stopped.
func records(t *testing.T, dir, tenant string) []*capture.Record {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "hub", "hub.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var out []*capture.Record
	q := store.Query{Limit: store.MaxLimit, Full: true}
	for {
		p, err := st.List(context.Background(), tenant, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range p.Items {
			out = append(out, it.Record)
		}
		if p.Next == "" {
			return out
		}
		q.Cursor = p.Next
	}
}

// waitFor polls cond until it holds or 30 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// portsFree checks that every address can be bound again.
func portsFree(t *testing.T, urls ...string) {
	t.Helper()
	for _, u := range urls {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+pu.Port())
		if err != nil {
			t.Errorf("after Stop, %s is still taken: %v", u, err)
			continue
		}
		ln.Close()
	}
}

// TestDemo runs the whole demo over real sockets: the generator's requests
// reach the app through goproxy, the app's HTTPS calls to the upstream go
// through the outbound proxy with TLS unwrapped, and both kinds of record
// reach the hub's store through the forwarder. Stop leaves nothing behind.
func TestDemo(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	var out bytes.Buffer
	s, err := Start(context.Background(), Config{DataDir: dir, Rate: 40, Ports: anyPorts, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			s.Stop()
		}
	}()

	// The viewer and API answer the read key the demo prints.
	req, _ := http.NewRequest(http.MethodGet, s.HubURL+"/api/v1/whoami", nil)
	req.Header.Set("Authorization", "Bearer "+s.ReadKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), `"read"`) {
		t.Fatalf("whoami with the read key: %d %s", res.StatusCode, body)
	}

	// A request of our own through goproxy's inbound port.
	res, err = http.Post(s.InURL+"/api/orders", "application/json", strings.NewReader(`{"sku":"kettle","quantity":7,"card":"tok_visa"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated || !strings.Contains(string(body), `"chargeId": "ch_3Pdemo`) {
		t.Fatalf("POST /api/orders through goproxy: %d %s; want 201 with a charge id from payments", res.StatusCode, body)
	}

	waitFor(t, "30 records stored, among them outbound ones", func() bool {
		st, err := s.Stats(context.Background())
		return err == nil && st.Stored >= 30 && st.Delivered >= 30
	})
	st, err := s.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Captured < st.Stored || st.Sent == 0 || st.Dropped != 0 || st.NoAnswer != 0 {
		t.Errorf("stats %+v: want captured >= stored, requests sent, nothing dropped", st)
	}
	urls := []string{s.HubURL, s.ForwarderURL, s.InURL, s.OutURL, s.DiagURL, s.AppURL, s.UpstreamURL}
	tenant := s.Tenant
	run, held, err := s.Stop()
	stopped = true
	if err != nil {
		t.Fatal(err)
	}
	if run < 30 || held != run {
		t.Errorf("Stop: %d records of this run, %d held; want at least 30, all of this run", run, held)
	}
	portsFree(t, urls...)

	recs := records(t, dir, tenant)
	if int64(len(recs)) != held {
		t.Errorf("the store lists %d records, Stop counted %d", len(recs), held)
	}
	upstream, _ := url.Parse(s.UpstreamURL)
	var in, out2, kettle int
	for _, r := range recs {
		if r.HTTP == nil || r.HTTP.Res == nil {
			t.Errorf("record %s: no HTTP exchange with a response: %+v", r.ID, r)
			continue
		}
		if r.Labels.Service != "orders" || r.Labels.Tenant != tenant || r.Labels.Cluster != "local" {
			t.Errorf("record %s: labels %+v, want service orders, tenant %s, cluster local", r.ID, r.Labels, tenant)
		}
		switch r.Direction {
		case capture.DirIn:
			in++
			if !strings.HasPrefix(r.HTTP.Req.URL, "http://127.0.0.1:") || !strings.Contains(r.HTTP.Req.URL, "/api/") {
				t.Errorf("inbound record %s: URL %q", r.ID, r.HTTP.Req.URL)
			}
			if r.HTTP.Req.Method == http.MethodPost && strings.Contains(string(r.HTTP.Req.Body.Data), `"kettle","quantity":7`) {
				kettle++
				if r.HTTP.Res.Status != http.StatusCreated || !bytes.Contains(r.HTTP.Res.Body.Data, []byte(`"amountCents": 34300`)) {
					t.Errorf("our kettle order: status %d, body %q", r.HTTP.Res.Status, r.HTTP.Res.Body.Data)
				}
			}
		case capture.DirOut:
			out2++
			want := "https://" + upstream.Host + "/v1/charges"
			if r.HTTP.Req.URL != want || r.Net.ServerHost != "localhost" || r.HTTP.Req.Method != http.MethodPost {
				t.Errorf("outbound record %s: %s %s (server host %q), want POST %s (localhost)", r.ID, r.HTTP.Req.Method, r.HTTP.Req.URL, r.Net.ServerHost, want)
			}
			if r.Net.TLS == nil || r.Net.TLS.SNI != "localhost" {
				t.Errorf("outbound record %s: TLS %+v, want the app's TLS unwrapped with SNI localhost", r.ID, r.Net.TLS)
			}
			if !bytes.Contains(r.HTTP.Req.Body.Data, []byte(`"currency":"usd"`)) {
				t.Errorf("outbound record %s: request body %q, want the charge", r.ID, r.HTTP.Req.Body.Data)
			}
			switch r.HTTP.Res.Status {
			case http.StatusOK:
				if !bytes.Contains(r.HTTP.Res.Body.Data, []byte(`"status": "succeeded"`)) {
					t.Errorf("outbound record %s: response body %q", r.ID, r.HTTP.Res.Body.Data)
				}
			case http.StatusPaymentRequired:
				if !bytes.Contains(r.HTTP.Res.Body.Data, []byte(`card_declined`)) {
					t.Errorf("outbound record %s: response body %q", r.ID, r.HTTP.Res.Body.Data)
				}
			default:
				t.Errorf("outbound record %s: status %d, want 200 or 402", r.ID, r.HTTP.Res.Status)
			}
			// The forwarder's default redaction took the app's API key out.
			if auth := r.HTTP.Req.Headers.Get("Authorization"); strings.Contains(auth, "sk_test") {
				t.Errorf("outbound record %s: Authorization %q left in clear", r.ID, auth)
			}
		default:
			t.Errorf("record %s: direction %q", r.ID, r.Direction)
		}
	}
	if in < 20 || out2 < 1 || kettle != 1 {
		t.Errorf("%d inbound and %d outbound records, %d of our kettle order; want at least 20, at least 1, exactly 1", in, out2, kettle)
	}
}

// TestRunOutput runs the demo as speedctl does, for a moment, and checks
// that it says where to look and what to do next, and how it ended.
func TestRunOutput(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	var out bytes.Buffer
	cfg := Config{DataDir: dir, Rate: 20, Ports: anyPorts, Out: &out, For: 2 * time.Second, Every: 500 * time.Millisecond, Self: "speedctl"}
	if err := Run(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{
		"Open the traffic viewer, signed in: http://127.0.0.1:",
		"/#key=tw_",
		"export TAPWIRE_HUB_URL=http://127.0.0.1:",
		"speedctl traffic list --direction out",
		"speedctl traffic export --format har -o demo.har",
		"speedctl --home " + dir + " traffic import FILE.har",
		"captured ",
		"Stopped. The hub holds ",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	// A second run keeps the records and the keys.
	key := between(got, "read key ", "\n")
	out.Reset()
	if err := Run(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if k2 := between(out.String(), "read key ", "\n"); k2 != key || key == "" {
		t.Errorf("second run's read key %q, first %q: want the same", k2, key)
	}
	first := between(got, "The hub holds ", " records")
	second := between(out.String(), "The hub holds ", " records")
	if n1, _ := strconv.Atoi(first); n1 == 0 {
		t.Errorf("first run: the hub holds %q records", first)
	} else if n2, _ := strconv.Atoi(second); n2 <= n1 {
		t.Errorf("second run: the hub holds %d records, first %d: want more", n2, n1)
	}
}

func between(s, a, b string) string {
	_, rest, ok := strings.Cut(s, a)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, b)
	return v
}

// TestCapture puts the stack in front of an app of the test's own, on a
// real port: its inbound requests and its outbound call through the
// printed proxy reach the hub.
func TestCapture(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	// An HTTPS upstream the app calls, signed by a CA of its own, which
	// goproxy trusts by --upstream-ca; and the app.
	upCA := filepath.Join(t.TempDir(), "weather-ca.pem")
	upTLS, err := upstreamTLS(upCA)
	if err != nil {
		t.Fatal(err)
	}
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"weather":"sunny"}`)
	}), ErrorLog: log.New(io.Discard, "", 0)}
	go up.Serve(tls.NewListener(upLn, upTLS))
	defer up.Close()
	var proxyURL *url.URL // set once the stack runs
	appTr := &http.Transport{Proxy: func(*http.Request) (*url.URL, error) { return proxyURL, nil }, TLSClientConfig: &tls.Config{}}
	defer appTr.CloseIdleConnections()
	appLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res, err := (&http.Client{Transport: appTr}).Get("https://" + upLn.Addr().String() + "/forecast")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer res.Body.Close()
		fmt.Fprintf(w, "hello from the app; upstream says ")
		io.Copy(w, res.Body)
	})}
	go app.Serve(appLn)
	defer app.Close()
	appPort := appLn.Addr().(*net.TCPAddr).Port

	dir := t.TempDir()
	var out bytes.Buffer
	// The hub's port asked for is the app's: it moves to a free one.
	ports := anyPorts
	ports.Hub = appPort
	s, err := Start(context.Background(), Config{AppPort: appPort, Service: "weather", DataDir: dir, Ports: ports, Out: &out, UpstreamCA: upCA})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if s.HubURL == "http://127.0.0.1:"+strconv.Itoa(appPort) || len(s.Moved) != 1 || !strings.Contains(s.Moved[0], "your app's port") {
		t.Errorf("hub at %s, moved %q: want it moved off the app's port %d", s.HubURL, s.Moved, appPort)
	}
	if s.AppURL != "" || s.UpstreamURL != "" || s.gen != nil {
		t.Errorf("capture runs the demo app (%q), upstream (%q) or generator", s.AppURL, s.UpstreamURL)
	}
	s.header(&out)
	for _, want := range []string{
		"HTTP_PROXY=" + s.OutURL + " HTTPS_PROXY=" + s.OutURL + " SSL_CERT_FILE=" + filepath.Join(dir, "ca", "tls.crt"),
		"curl " + s.InURL + "/",
		"goproxy in front of your app on 127.0.0.1:" + strconv.Itoa(appPort),
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("header lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "nothing answers") {
		t.Errorf("header says the app is down, but it is up:\n%s", out.String())
	}
	proxyURL, _ = url.Parse(s.OutURL)
	// The app trusts the capture's CA, as SSL_CERT_FILE would make it.
	pool := x509.NewCertPool()
	if pem, err := os.ReadFile(s.CAFile); err != nil || !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("read the CA %s: %v", s.CAFile, err)
	}
	appTr.TLSClientConfig.RootCAs = pool

	for i := range 3 {
		res, err := http.Get(s.InURL + "/hello")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if want := `hello from the app; upstream says {"weather":"sunny"}`; string(body) != want {
			t.Fatalf("request %d through goproxy: %q, want %q", i, body, want)
		}
	}
	waitFor(t, "6 records stored", func() bool {
		st, err := s.Stats(context.Background())
		return err == nil && st.Stored >= 6
	})
	tenant := s.Tenant
	if _, _, err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	var in, outb int
	for _, r := range records(t, dir, tenant) {
		if r.Labels.Service != "weather" {
			t.Errorf("record %s: service %q, want weather", r.ID, r.Labels.Service)
		}
		switch {
		case r.Direction == capture.DirIn && strings.HasSuffix(r.HTTP.Req.URL, "/hello"):
			in++
		case r.Direction == capture.DirOut && r.HTTP.Req.URL == "https://"+upLn.Addr().String()+"/forecast" && string(r.HTTP.Res.Body.Data) == `{"weather":"sunny"}`:
			outb++
		default:
			t.Errorf("unexpected record %s %s %s", r.ID, r.Direction, r.HTTP.Req.URL)
		}
	}
	if in != 3 || outb != 3 {
		t.Errorf("%d inbound and %d outbound records, want 3 and 3", in, outb)
	}
}

// TestBusy: a port the user chose that is taken fails with a message that
// names it and its flag; a default one moves; a data folder in use by
// another demo fails.
func TestBusy(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := taken.Addr().(*net.TCPAddr).Port

	ports := anyPorts
	ports.Forwarder = port
	_, err = Start(context.Background(), Config{DataDir: t.TempDir(), Ports: ports, Pinned: map[string]bool{"--forwarder-port": true}, Out: io.Discard})
	want := fmt.Sprintf("port %d (the forwarder) is in use by another program: pick another with --forwarder-port PORT", port)
	if !errors.Is(err, ErrBusy) || !strings.Contains(fmt.Sprint(err), want) {
		t.Errorf("Start with a busy --forwarder-port: %v; want ErrBusy and %q", err, want)
	}

	dir := t.TempDir()
	s, err := Start(context.Background(), Config{DataDir: dir, Ports: ports, Out: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if s.ForwarderURL == "http://127.0.0.1:"+strconv.Itoa(port) || len(s.Moved) != 1 || !strings.Contains(s.Moved[0], fmt.Sprintf("port %d was busy", port)) {
		t.Errorf("forwarder at %s, moved %q: want it moved off the busy port %d", s.ForwarderURL, s.Moved, port)
	}

	_, err = Start(context.Background(), Config{DataDir: dir, Ports: anyPorts, Out: io.Discard})
	if !errors.Is(err, ErrBusy) || !strings.Contains(fmt.Sprint(err), "used by another speedctl demo or capture") {
		t.Errorf("a second demo on the same data folder: %v; want ErrBusy", err)
	}
}

// TestUpstreamCAValidate: --upstream-ca is for capture, and must hold a
// PEM certificate.
func TestUpstreamCAValidate(t *testing.T) {
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "bad.pem")
	if _, err := upstreamTLS(good); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(bad, []byte("not a certificate"), 0o600)
	for _, tt := range []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"capture", Config{AppPort: 3000, UpstreamCA: good}, ""},
		{"demo", Config{UpstreamCA: good}, "for capture only"},
		{"missing", Config{AppPort: 3000, UpstreamCA: filepath.Join(dir, "nope.pem")}, "no such file"},
		{"not PEM", Config{AppPort: 3000, UpstreamCA: bad}, "no PEM certificate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.setDefaults()
			err := tt.cfg.Validate()
			if (tt.wantErr == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got %v, want an error with %q", err, tt.wantErr)
			}
		})
	}
}

// TestLogFile: the payments server's own errors (a failed TLS handshake)
// go to demo.log, not over the summary line; the next run keeps the
// previous log as demo.log.1 and starts its own with a line naming it.
func TestLogFile(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	var out bytes.Buffer
	s, err := Start(context.Background(), Config{DataDir: dir, Ports: anyPorts, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(s.UpstreamURL)
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") // plain HTTP to the HTTPS port
	io.Copy(io.Discard, c)
	c.Close()
	logFile := filepath.Join(dir, "demo.log")
	waitFor(t, "the handshake error in demo.log", func() bool {
		b, _ := os.ReadFile(logFile)
		return bytes.Contains(b, []byte("TLS handshake error")) && bytes.Contains(b, []byte(`"part":"payments"`))
	})
	if _, _, err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "TLS handshake error") {
		t.Errorf("the handshake error reached the output:\n%s", out.String())
	}

	s, err = Start(context.Background(), Config{DataDir: dir, Ports: anyPorts, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	prev, _ := os.ReadFile(logFile + ".1")
	cur, _ := os.ReadFile(logFile)
	if !bytes.Contains(prev, []byte("TLS handshake error")) {
		t.Errorf("demo.log.1 lacks the previous run's log:\n%s", prev)
	}
	if first, _, _ := bytes.Cut(cur, []byte("\n")); !bytes.Contains(first, []byte(`"msg":"run started","run":"demo"`)) || bytes.Contains(cur, []byte("TLS handshake error")) {
		t.Errorf("demo.log: want this run's log, starting with its run line; got\n%s", cur)
	}
}
