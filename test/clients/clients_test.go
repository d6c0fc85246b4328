// Package clients drives the real goproxy binary with real command-line
// clients (curl, Python's urllib, a Go program) configured as an app in the
// deployment guide would be: HTTP_PROXY/HTTPS_PROXY at the outbound port and
// the CA in SSL_CERT_FILE, or calling the inbound port. Each request's
// record is checked at a test forwarder.
package clients

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
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

var goproxyBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tapwire-clients")
	if err != nil {
		panic(err)
	}
	goproxyBin = filepath.Join(dir, "goproxy")
	out, err := exec.Command("go", "build", "-o", goproxyBin, "github.com/tapwire/tapwire/cmd/goproxy").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build goproxy: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// need finds a tool; when TAPWIRE_REQUIRE_TOOLS is set (the README's test
// command sets it) a missing tool fails the test instead of skipping it.
func need(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		if os.Getenv("TAPWIRE_REQUIRE_TOOLS") != "" {
			t.Fatalf("%s is not installed; scripts/install-test-deps installs it", tool)
		}
		t.Skipf("%s is not installed (run scripts/install-test-deps)", tool)
	}
	return p
}

// freePort is a port for goproxy to bind later (internal/testport).
func freePort(t *testing.T) string {
	t.Helper()
	p, err := testport.Free()
	if err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(p)
}

type env struct {
	dir      string // TLS_CERT_DIR with the guide's openssl CA
	caFile   string // what SSL_CERT_FILE points at
	in, out  string // goproxy's listeners
	fwd      *testfwd.Receiver
	upstream string // https://localhost:port of a TLS upstream
	plain    string // http://127.0.0.1:port of a plain upstream
	app      string // http://127.0.0.1:port of the app behind the inbound port
}

func setup(t *testing.T) *env {
	t.Helper()
	e := &env{dir: t.TempDir()}
	testca.OpenSSLGuideCA(t, e.dir) // the guide's openssl commands
	e.caFile = filepath.Join(e.dir, "tls.crt")

	upCA := testca.New(t)
	upRoots := filepath.Join(t.TempDir(), "upstream-roots.pem")
	upCA.WriteFile(t, upRoots)
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "%s %s %s body=%s", r.Method, r.URL.RequestURI(), r.Proto, b)
	})
	up := httptest.NewUnstartedServer(echo)
	up.TLS = upCA.ServerTLS(t, "localhost")
	up.EnableHTTP2 = true
	up.StartTLS()
	t.Cleanup(up.Close)
	e.upstream = strings.Replace(up.URL, "127.0.0.1", "localhost", 1)
	plain := httptest.NewServer(echo)
	t.Cleanup(plain.Close)
	e.plain = plain.URL
	app := httptest.NewServer(echo)
	t.Cleanup(app.Close)
	e.app = app.URL

	e.fwd = testfwd.Start(t, "")
	inPort, outPort := freePort(t), freePort(t)
	e.in, e.out = "127.0.0.1:"+inPort, "127.0.0.1:"+outPort
	cmd := exec.Command(goproxyBin)
	cmd.Env = append(os.Environ(),
		"LOG_LEVEL=info", "APP_LABEL=notifications", "APP_POD_NAME=notifications", "APP_POD_NAMESPACE=ecs",
		"CAPTURE_MODE=proxy", "PROXY_TYPE=dual", "PROXY_PROTOCOL=tcp:http", "TLS_OUT_UNWRAP=true",
		"REVERSE_PROXY_PORT="+strings.TrimPrefix(app.URL, "http://127.0.0.1:"),
		"FORWARDER_ADDR="+e.fwd.Addr(), "TLS_CERT_DIR="+e.dir, "TLS_OUT_EXTRA_CA_FILE="+upRoots,
		"PROXY_IN_PORT="+inPort, "PROXY_OUT_PORT="+outPort, "DIAG_HTTP_PORT=-1",
		"HTTP_PROXY=", "HTTPS_PROXY=", "http_proxy=", "https_proxy=")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("goproxy exited with %v; logs:\n%s", err, logs.String())
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Errorf("goproxy did not stop within 30s of SIGINT; logs:\n%s", logs.String())
		}
		if t.Failed() {
			t.Logf("goproxy logs:\n%s", logs.String())
		}
	})
	// Wait for both listeners.
	for _, a := range []string{e.in, e.out} {
		deadline := time.Now().Add(15 * time.Second)
		for {
			c, err := net.Dial("tcp", a)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("goproxy is not listening on %s: %v; logs:\n%s", a, err, logs.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return e
}

// record waits for the record of one request, found by a unique marker in
// its URL.
func (e *env) record(t *testing.T, dir capture.Direction, marker string) *capture.Record {
	t.Helper()
	recs, err := e.fwd.WaitFor(1, 15*time.Second, func(r *capture.Record) bool {
		return r.Direction == dir && r.HTTP != nil && strings.Contains(r.HTTP.Req.URL, marker)
	})
	if err != nil {
		t.Fatalf("no %s record for %s: %v", dir, marker, err)
	}
	return recs[0]
}

func checkRecord(t *testing.T, r *capture.Record, method, url string, status int, reqBody, resBodyPart string) {
	t.Helper()
	h := r.HTTP
	if h.Req.Method != method || h.Req.URL != url {
		t.Errorf("record request %s %s, want %s %s", h.Req.Method, h.Req.URL, method, url)
	}
	if string(h.Req.Body.Data) != reqBody {
		t.Errorf("record request body %q, want %q", h.Req.Body.Data, reqBody)
	}
	if h.Res == nil || h.Res.Status != status || !strings.Contains(string(h.Res.Body.Data), resBodyPart) {
		t.Errorf("record response %+v, want %d containing %q", h.Res, status, resBodyPart)
	}
	if r.Labels.Service != "notifications" || r.Labels.Namespace != "ecs" {
		t.Errorf("record labels %+v", r.Labels)
	}
}

func runTool(t *testing.T, extraEnv []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	// A clean proxy environment, then the test's own.
	var base []string
	for _, kv := range os.Environ() {
		k := strings.ToLower(strings.SplitN(kv, "=", 2)[0])
		if k == "http_proxy" || k == "https_proxy" || k == "no_proxy" || k == "all_proxy" || k == "ssl_cert_file" {
			continue
		}
		base = append(base, kv)
	}
	cmd.Env = append(base, extraEnv...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// TestClients runs every client against one goproxy (the guide's RSA-4096
// CA is slow to make).
func TestClients(t *testing.T) {
	e := setup(t)
	t.Run("curl", func(t *testing.T) { testCurl(t, e) })
	t.Run("python urllib", func(t *testing.T) { testPythonUrllib(t, e) })
	t.Run("go", func(t *testing.T) { testGoClient(t, e) })
}

func testCurl(t *testing.T, e *env) {
	curl := need(t, "curl")

	t.Run("inbound", func(t *testing.T) {
		out := runTool(t, nil, curl, "-sS", "--fail", "-d", "hello=in", "http://"+e.in+"/curl-in?q=1")
		if !strings.Contains(out, "POST /curl-in?q=1 HTTP/1.1 body=hello=in") {
			t.Errorf("curl got %q", out)
		}
		checkRecord(t, e.record(t, capture.DirIn, "/curl-in"), "POST", "http://"+e.in+"/curl-in?q=1", 200, "hello=in", "body=hello=in")
	})
	t.Run("outbound https with the CA", func(t *testing.T) {
		out := runTool(t, nil, curl, "-sS", "--fail", "--proxy", "http://"+e.out, "--cacert", e.caFile, e.upstream+"/curl-tls")
		if !strings.Contains(out, "GET /curl-tls HTTP/2.0") {
			t.Errorf("curl got %q", out)
		}
		r := e.record(t, capture.DirOut, "/curl-tls")
		checkRecord(t, r, "GET", e.upstream+"/curl-tls", 200, "", "GET /curl-tls")
		if r.Net.TLS == nil || r.Net.TLS.SNI != "localhost" {
			t.Errorf("record TLS = %+v", r.Net.TLS)
		}
	})
	t.Run("outbound https without trusting the CA fails", func(t *testing.T) {
		cmd := exec.Command(curl, "-sS", "--fail", "--proxy", "http://"+e.out, e.upstream+"/untrusted")
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "SSL_CERT_FILE=/dev/null", "CURL_CA_BUNDLE=/dev/null"}
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Errorf("curl accepted goproxy's leaf without the CA: %s", out)
		}
	})
	t.Run("inbound http2 prior knowledge", func(t *testing.T) {
		out := runTool(t, nil, curl, "-sS", "--fail", "--http2-prior-knowledge", "-w", " version=%{http_version}", "http://"+e.in+"/curl-h2pk")
		if !strings.Contains(out, "GET /curl-h2pk HTTP/1.1") || !strings.HasSuffix(out, "version=2") {
			t.Errorf("curl got %q", out)
		}
		r := e.record(t, capture.DirIn, "/curl-h2pk")
		if r.HTTP.Req.Proto != "HTTP/2.0" {
			t.Errorf("record proto %q, want HTTP/2.0", r.HTTP.Req.Proto)
		}
	})
	t.Run("inbound http2 upgrade", func(t *testing.T) {
		out := runTool(t, nil, curl, "-sS", "--fail", "--http2", "-w", " version=%{http_version}", "http://"+e.in+"/curl-h2up")
		if !strings.Contains(out, "GET /curl-h2up") || !strings.HasSuffix(out, "version=2") {
			t.Errorf("curl got %q", out)
		}
		e.record(t, capture.DirIn, "/curl-h2up")
	})
	t.Run("outbound https http2 with the app", func(t *testing.T) {
		out := runTool(t, nil, curl, "-sS", "--fail", "--http2", "-w", " version=%{http_version}", "--proxy", "http://"+e.out, "--cacert", e.caFile, e.upstream+"/curl-h2tls")
		if !strings.Contains(out, "GET /curl-h2tls HTTP/2.0") || !strings.HasSuffix(out, "version=2") {
			t.Errorf("curl got %q", out)
		}
		r := e.record(t, capture.DirOut, "/curl-h2tls")
		if r.Net.TLS == nil || r.Net.TLS.ALPN != "h2" || r.HTTP.Req.Proto != "HTTP/2.0" {
			t.Errorf("record TLS %+v proto %s", r.Net.TLS, r.HTTP.Req.Proto)
		}
	})
	t.Run("outbound https through socks5", func(t *testing.T) {
		out := runTool(t, nil, curl, "-sS", "--fail", "--socks5-hostname", e.out, "--cacert", e.caFile, e.upstream+"/curl-socks")
		if !strings.Contains(out, "GET /curl-socks") {
			t.Errorf("curl got %q", out)
		}
		r := e.record(t, capture.DirOut, "/curl-socks")
		checkRecord(t, r, "GET", e.upstream+"/curl-socks", 200, "", "GET /curl-socks")
		if r.Net.TLS == nil || r.Net.TLS.SNI != "localhost" {
			t.Errorf("record TLS = %+v", r.Net.TLS)
		}
	})
	t.Run("outbound plain http", func(t *testing.T) {
		out := runTool(t, []string{"http_proxy=http://" + e.out}, curl, "-sS", "--fail", e.plain+"/curl-plain")
		if !strings.Contains(out, "GET /curl-plain") {
			t.Errorf("curl got %q", out)
		}
		checkRecord(t, e.record(t, capture.DirOut, "/curl-plain"), "GET", e.plain+"/curl-plain", 200, "", "GET /curl-plain")
	})
}

func testPythonUrllib(t *testing.T, e *env) {
	python := need(t, "python3")
	script := `import urllib.request, sys
req = urllib.request.Request(sys.argv[1], data=b'{"py":true}', headers={"Content-Type": "application/json"})
print(urllib.request.urlopen(req, timeout=20).read().decode())`
	out := runTool(t, []string{"https_proxy=http://" + e.out, "SSL_CERT_FILE=" + e.caFile}, python, "-c", script, e.upstream+"/python-tls")
	// urllib speaks HTTP/1.1 in the tunnel, and so does goproxy to the
	// upstream: the app's own bytes go on.
	if !strings.Contains(out, `POST /python-tls HTTP/1.1 body={"py":true}`) {
		t.Errorf("python got %q", out)
	}
	checkRecord(t, e.record(t, capture.DirOut, "/python-tls"), "POST", e.upstream+"/python-tls", 200, `{"py":true}`, "python-tls")
}

func testGoClient(t *testing.T, e *env) {
	need(t, "go")
	// A separate Go program, configured only by the environment, as an app
	// in the guide is. Go's ProxyFromEnvironment skips localhost, so the
	// program dials the upstream by 127.0.0.1 and names the proxy itself.
	src := filepath.Join(t.TempDir(), "main.go")
	os.WriteFile(src, []byte(`package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
)

func main() {
	p, _ := url.Parse(os.Getenv("HTTPS_PROXY"))
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(p)}}
	res, err := c.Get(os.Args[1])
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	b, _ := io.ReadAll(res.Body)
	fmt.Printf("%d %s", res.StatusCode, b)
}
`), 0o644)
	out := runTool(t, []string{"HTTPS_PROXY=http://" + e.out, "SSL_CERT_FILE=" + e.caFile}, "go", "run", src, e.upstream+"/go-tls")
	if !strings.Contains(out, "200 GET /go-tls HTTP/2.0") {
		t.Errorf("go client got %q", out)
	}
	checkRecord(t, e.record(t, capture.DirOut, "/go-tls"), "GET", e.upstream+"/go-tls", 200, "", "go-tls")
}
