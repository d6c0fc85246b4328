package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http/httpguts"

	"go.uber.org/goleak"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/h1"
	"github.com/tapwire/tapwire/internal/mitm"
	"github.com/tapwire/tapwire/internal/rawtcp"
	"github.com/tapwire/tapwire/internal/testca"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		// net/http lingers 500 ms before closing a connection whose request body was not read.
		goleak.IgnoreAnyFunction("net/http.(*conn).closeWriteAndWait"))
}

// recorder collects emitted records.
type recorder struct {
	mu   sync.Mutex
	recs []*capture.Record
	ch   chan *capture.Record
}

func newRecorder() *recorder { return &recorder{ch: make(chan *capture.Record, 1024)} }

func (r *recorder) Emit(rec *capture.Record) {
	if err := rec.Validate(); err != nil {
		panic(fmt.Sprintf("emitted an invalid record: %v", err))
	}
	r.mu.Lock()
	r.recs = append(r.recs, rec)
	r.mu.Unlock()
	r.ch <- rec
}

// next waits for the next record.
func (r *recorder) next(t *testing.T) *capture.Record {
	t.Helper()
	select {
	case rec := <-r.ch:
		return rec
	case <-time.After(10 * time.Second):
		t.Fatal("no record emitted within 10s")
		return nil
	}
}

func serve(t *testing.T, s interface {
	Serve(net.Listener) error
	Close() error
}) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Serve(ln); close(done) }()
	t.Cleanup(func() { s.Close(); ln.Close(); <-done })
	return ln.Addr().String()
}

// serveTCP listens on loopback until the test ends and runs handle on
// each connection it accepts (closing it after); it returns the address.
func serveTCP(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

func startInbound(t *testing.T, backend string, sniff bool, opt Options) (string, *recorder) {
	t.Helper()
	rec := newRecorder()
	opt.Emitter = rec
	opt.Labels = capture.Labels{Service: "notifications", Namespace: "ecs", Pod: "notifications-1", Cluster: "ecs"}
	mode := InboundHTTP
	if sniff {
		mode = InboundSniff
	}
	in, err := NewInbound(backend, mode, opt)
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, in), rec
}

func noProxyClient() *http.Client {
	return &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
}

func TestInboundHTTP(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Seen-Host", r.Host)
		w.Header().Set("X-Seen-XFF", r.Header.Get("X-Forwarded-For"))
		w.Header().Set("X-Seen-Hop", r.Header.Get("X-Hop"))
		w.Header().Set("Content-Type", "text/plain")
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(http.StatusNoContent)
			return
		case "/trailer":
			w.Header().Set("Trailer", "X-Checksum")
			io.WriteString(w, "body")
			w.Header().Set("X-Checksum", "abc123")
			return
		}
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.RequestURI(), body)
	}))
	defer backend.Close()
	addr, rec := startInbound(t, backend.URL, false, Options{})

	tests := []struct {
		name, method, path, body string
		hdr                      map[string]string
		wantStatus               int
		wantBody                 string
	}{
		{name: "get", method: "GET", path: "/hello?x=1", wantStatus: 201, wantBody: "GET /hello?x=1 "},
		{name: "post", method: "POST", path: "/items", body: `{"a":1}`, wantStatus: 201, wantBody: `POST /items {"a":1}`},
		{name: "no content", method: "DELETE", path: "/204", wantStatus: 204},
		{name: "head", method: "HEAD", path: "/head", wantStatus: 201},
		{name: "hop by hop", method: "GET", path: "/hop", hdr: map[string]string{"Connection": "X-Hop", "X-Hop": "secret"}, wantStatus: 201, wantBody: "GET /hop "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, "http://"+addr+tt.path, strings.NewReader(tt.body))
			if tt.body == "" {
				req.Body = nil
			}
			req.Host = "notifications.example"
			req.Header.Set("X-Forwarded-For", "203.0.113.9")
			for k, v := range tt.hdr {
				req.Header.Set(k, v)
			}
			res, err := noProxyClient().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tt.wantStatus || string(got) != tt.wantBody {
				t.Errorf("got %d %q, want %d %q", res.StatusCode, got, tt.wantStatus, tt.wantBody)
			}
			if h := res.Header.Get("X-Seen-Host"); h != "notifications.example" {
				t.Errorf("app saw Host %q, want the client's notifications.example", h)
			}
			if x := res.Header.Get("X-Seen-XFF"); x != "203.0.113.9, 127.0.0.1" {
				t.Errorf("app saw X-Forwarded-For %q, want the client's value with 127.0.0.1 appended", x)
			}
			if h := res.Header.Get("X-Seen-Hop"); h != "" {
				t.Errorf("hop-by-hop header named in Connection reached the app: %q", h)
			}
			r := rec.next(t)
			if r.Direction != capture.DirIn || r.Kind != capture.KindHTTP {
				t.Fatalf("record direction/kind = %s/%s, want in/http", r.Direction, r.Kind)
			}
			if r.HTTP.Req.Method != tt.method || r.HTTP.Req.URL != "http://notifications.example"+tt.path {
				t.Errorf("record req = %s %s", r.HTTP.Req.Method, r.HTTP.Req.URL)
			}
			if string(r.HTTP.Req.Body.Data) != tt.body || r.HTTP.Req.Body.Size != int64(len(tt.body)) {
				t.Errorf("record req body = %q (%d), want %q", r.HTTP.Req.Body.Data, r.HTTP.Req.Body.Size, tt.body)
			}
			if r.HTTP.Res == nil || r.HTTP.Res.Status != tt.wantStatus {
				t.Fatalf("record res = %+v, want status %d", r.HTTP.Res, tt.wantStatus)
			}
			if string(r.HTTP.Res.Body.Data) != tt.wantBody {
				t.Errorf("record res body = %q, want %q", r.HTTP.Res.Body.Data, tt.wantBody)
			}
			if r.Labels.Service != "notifications" || r.Labels.Pod != "notifications-1" {
				t.Errorf("labels = %+v", r.Labels)
			}
			if r.Net.ServerAddr != strings.TrimPrefix(backend.URL, "http://") {
				t.Errorf("server addr = %q", r.Net.ServerAddr)
			}
			if r.HTTP.Res.Headers.Get("Content-Type") != "text/plain" {
				t.Errorf("record res headers = %v", r.HTTP.Res.Headers)
			}
			if r.DurMicros <= 0 || r.TTFBMicros <= 0 || r.TTFBMicros > r.DurMicros {
				t.Errorf("timings ttfb=%d dur=%d", r.TTFBMicros, r.DurMicros)
			}
		})
	}

	t.Run("trailers", func(t *testing.T) {
		res, err := noProxyClient().Get("http://" + addr + "/trailer")
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(res.Body)
		res.Body.Close()
		if got := res.Trailer.Get("X-Checksum"); got != "abc123" {
			t.Errorf("client trailer = %q, want abc123", got)
		}
		r := rec.next(t)
		if got := r.HTTP.Res.Trailers.Get("X-Checksum"); got != "abc123" {
			t.Errorf("record trailers = %v, want X-Checksum abc123", r.HTTP.Res.Trailers)
		}
	})
}

func TestInboundBodyCap(t *testing.T) {
	const size = 3<<20 + 7
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		w.Write(bytes.Repeat([]byte("d"), int(n)))
	}))
	defer backend.Close()
	addr, rec := startInbound(t, backend.URL, false, Options{BodyLimit: 1 << 20})
	res, err := noProxyClient().Post("http://"+addr+"/up", "application/octet-stream", bytes.NewReader(bytes.Repeat([]byte("u"), size)))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if n != size {
		t.Fatalf("client got %d bytes, want %d", n, size)
	}
	r := rec.next(t)
	for _, b := range []struct {
		name string
		body capture.Body
	}{{"request", r.HTTP.Req.Body}, {"response", r.HTTP.Res.Body}} {
		if b.body.Size != size || !b.body.Truncated || len(b.body.Data) != 1<<20 {
			t.Errorf("%s body: size %d truncated %v data %d, want size %d truncated with 1 MiB data", b.name, b.body.Size, b.body.Truncated, len(b.body.Data), size)
		}
	}
}

func TestInboundStreamsServerSentEvents(t *testing.T) {
	release := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-release // the client must see the first event before the second is even written
		io.WriteString(w, "data: second\n\n")
	}))
	defer backend.Close()
	addr, rec := startInbound(t, backend.URL, false, Options{})
	res, err := noProxyClient().Get("http://" + addr + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	br := bufio.NewReader(res.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "data: first\n" {
		t.Fatalf("first event = %q, %v", line, err)
	}
	close(release)
	rest, _ := io.ReadAll(br)
	if string(rest) != "\ndata: second\n\n" {
		t.Errorf("rest = %q", rest)
	}
	r := rec.next(t)
	if string(r.HTTP.Res.Body.Data) != "data: first\n\ndata: second\n\n" {
		t.Errorf("record body = %q", r.HTTP.Res.Body.Data)
	}
}

func TestInboundExpectContinue(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}))
	defer backend.Close()
	addr, rec := startInbound(t, backend.URL, false, Options{})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "PUT /x HTTP/1.1\r\nHost: app\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("want 100 Continue before the body, got %q %v", line, err)
	}
	br.ReadString('\n') // blank line after 100
	io.WriteString(c, "hello")
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || string(b) != "hello" {
		t.Errorf("got %d %q", res.StatusCode, b)
	}
	r := rec.next(t)
	if string(r.HTTP.Req.Body.Data) != "hello" || r.HTTP.Res.Status != 200 {
		t.Errorf("record: req body %q status %d", r.HTTP.Req.Body.Data, r.HTTP.Res.Status)
	}
}

func TestInboundWebSocketUpgrade(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want upgrade", 400)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		line, _ := brw.ReadString('\n')
		io.WriteString(c, "echo:"+line)
	}))
	defer backend.Close()
	addr, rec := startInbound(t, backend.URL, false, Options{})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: app\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", res, err)
	}
	io.WriteString(c, "ping\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := br.ReadString('\n')
	if line != "echo:ping\n" {
		t.Fatalf("echo = %q %v", line, err)
	}
	c.Close()
	r := rec.next(t)
	if r.HTTP.Res == nil || r.HTTP.Res.Status != 101 {
		t.Errorf("record res = %+v, want 101", r.HTTP.Res)
	}
}

func TestInboundBadInput(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer backend.Close()
	addr, _ := startInbound(t, backend.URL, true, Options{HeaderTimeout: 300 * time.Millisecond})

	t.Run("malformed", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\nBad Header Line\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		if !strings.HasPrefix(line, "HTTP/1.1 400") {
			t.Errorf("got %q, want a 400", line)
		}
	})
	t.Run("slow client cut off", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n") // and never the end
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.ReadAll(c)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("goproxy kept a client that never finished its headers open")
		}
	})
	t.Run("still serving", func(t *testing.T) {
		res, err := noProxyClient().Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if string(b) != "ok" {
			t.Errorf("got %q", b)
		}
	})
}

func TestInboundSniffRawTCP(t *testing.T) {
	// A line protocol that is not HTTP, as tcp:http relays it.
	app := serveTCP(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return
			}
			io.WriteString(c, "+"+strings.ToUpper(l))
		}
	})
	addr, rec := startInbound(t, "http://"+app, true, Options{})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "*1\r\nping\n")
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	l1, _ := br.ReadString('\n')
	l2, _ := br.ReadString('\n')
	if l1 != "+*1\r\n" || l2 != "+PING\n" {
		t.Fatalf("got %q %q", l1, l2)
	}
	c.Close()
	r := rec.next(t)
	if r.Kind != capture.KindTCP || r.TCP.BytesUp != 9 || r.TCP.BytesDown != 11 {
		t.Errorf("record = %s %+v, want tcp with 9 bytes up, 11 down", r.Kind, r.TCP)
	}
}

// appCA is the CA goproxy unwraps the app's TLS with; upstreamCA signs the
// real upstream's certificate.
func outboundSetup(t *testing.T, unwrap bool) (proxyURL *url.URL, app *testca.CA, upstream *httptest.Server, rec *recorder) {
	t.Helper()
	app = testca.New(t)
	upCA := testca.New(t)
	upstream = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"method":%q,"path":%q,"body":%q,"proto":%q}`, r.Method, r.URL.Path, b, r.Proto)
	}))
	upstream.TLS = upCA.ServerTLS(t, "127.0.0.1", "localhost")
	upstream.EnableHTTP2 = true
	upstream.StartTLS()
	t.Cleanup(upstream.Close)
	rec = newRecorder()
	opt := Options{Emitter: rec, RootCAs: upCA.Pool(), Labels: capture.Labels{Service: "notifications"}}
	if unwrap {
		ca, err := mitm.ParseCA(app.CertPEM(), app.KeyPEM(t))
		if err != nil {
			t.Fatal(err)
		}
		opt.Minter, err = mitm.NewMinter(ca, mitm.Options{})
		if err != nil {
			t.Fatal(err)
		}
	}
	out, err := NewOutbound(opt)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, out)
	proxyURL, _ = url.Parse("http://" + addr)
	return proxyURL, app, upstream, rec
}

func TestOutboundUnwrapTLS(t *testing.T) {
	proxyURL, app, upstream, rec := outboundSetup(t, true)
	// The app trusts only goproxy's CA, as SSL_CERT_FILE makes it.
	client := &http.Client{Transport: &http.Transport{
		Proxy:           http.ProxyURL(proxyURL),
		TLSClientConfig: &tls.Config{RootCAs: app.Pool()},
	}}
	defer client.CloseIdleConnections()
	u := strings.Replace(upstream.URL, "127.0.0.1", "localhost", 1) + "/v1/send?to=a"
	for i := 0; i < 3; i++ { // keep-alive inside one tunnel
		res, err := client.Post(u, "application/json", strings.NewReader(`{"msg":"hi"}`))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		// The app spoke HTTP/1.1 in the tunnel; so does goproxy to the
		// upstream (the HTTP/1.1 engine passes the app's bytes).
		if want := `{"method":"POST","path":"/v1/send","body":"{\"msg\":\"hi\"}","proto":"HTTP/1.1"}`; string(b) != want {
			t.Fatalf("got %s, want %s", b, want)
		}
		r := rec.next(t)
		if r.Direction != capture.DirOut || r.Net.Proxy != "connect" {
			t.Errorf("record direction %s proxy %s", r.Direction, r.Net.Proxy)
		}
		if r.HTTP.Req.URL != u {
			t.Errorf("record url %q, want %q", r.HTTP.Req.URL, u)
		}
		if string(r.HTTP.Req.Body.Data) != `{"msg":"hi"}` || r.HTTP.Res.Status != 200 || !bytes.Contains(r.HTTP.Res.Body.Data, []byte(`"path":"/v1/send"`)) {
			t.Errorf("record bodies: %q -> %d %q", r.HTTP.Req.Body.Data, r.HTTP.Res.Status, r.HTTP.Res.Body.Data)
		}
		if r.Net.TLS == nil || r.Net.TLS.SNI != "localhost" || r.Net.TLS.Version == "" || r.Net.TLS.Upstream == nil || r.Net.TLS.Upstream.Version == "" {
			t.Errorf("record TLS facts = %+v (upstream %+v)", r.Net.TLS, r.Net.TLS.Upstream)
		}
	}
}

func TestOutboundRejectsUntrustedUpstream(t *testing.T) {
	proxyURL, app, _, rec := outboundSetup(t, true)
	// An upstream whose certificate no configured root signed.
	rogue := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "rogue") }))
	defer rogue.Close()
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL), TLSClientConfig: &tls.Config{RootCAs: app.Pool()}}}
	defer client.CloseIdleConnections()
	res, err := client.Get(rogue.URL)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusBadGateway {
		t.Errorf("status %d, want 502 for an upstream that fails verification", res.StatusCode)
	}
	r := rec.next(t)
	if !strings.Contains(r.Error, "certificate") {
		t.Errorf("record error %q, want a certificate error", r.Error)
	}
}

func TestOutboundPassthroughWithoutUnwrap(t *testing.T) {
	proxyURL, _, upstream, rec := outboundSetup(t, false)
	// Without unwrap the app talks TLS to the upstream itself.
	pool := upstream.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL), TLSClientConfig: &tls.Config{RootCAs: pool}}}
	res, err := client.Get(upstream.URL + "/direct")
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(res.Body)
	res.Body.Close()
	client.CloseIdleConnections()
	r := rec.next(t)
	if r.Kind != capture.KindTCP || r.TCP.BytesUp == 0 || r.TCP.BytesDown == 0 || r.Net.ServerAddr != strings.TrimPrefix(upstream.URL, "https://") {
		t.Errorf("record = %s %+v %+v, want a tcp stream to the upstream", r.Kind, r.TCP, r.Net)
	}
}

func TestOutboundPlainHTTP(t *testing.T) {
	proxyURL, _, _, rec := outboundSetup(t, true)
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "plain %s via=%s", r.URL.Path, r.Header.Get("Via"))
	}))
	defer plain.Close()
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL), DisableKeepAlives: true}}
	res, err := client.Get(plain.URL + "/p")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(b) != "plain /p via=1.1 tapwire-goproxy" {
		t.Errorf("got %q", b)
	}
	r := rec.next(t)
	if r.HTTP.Req.URL != plain.URL+"/p" || r.Net.Proxy != "forward" || r.HTTP.Res.Status != 200 {
		t.Errorf("record %s via %s status %d", r.HTTP.Req.URL, r.Net.Proxy, r.HTTP.Res.Status)
	}

	t.Run("origin-form is refused", func(t *testing.T) {
		res, err := noProxyClient().Get(proxyURL.String() + "/not-a-proxy-request")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 400 {
			t.Errorf("status %d, want 400", res.StatusCode)
		}
	})
	t.Run("loop is refused", func(t *testing.T) {
		res, err := client.Get(proxyURL.String() + "/loop")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusLoopDetected && res.StatusCode != 400 {
			t.Errorf("status %d, want the loop refused", res.StatusCode)
		}
	})
}

func TestClassify(t *testing.T) {
	tests := []struct {
		in   string
		want sniffKind
	}{
		{"GET / HTTP/1.1\r\n", sniffHTTP1},
		{"M-SEARCH * HTTP/1.1", sniffHTTP1},
		{"POS", sniffHTTP1},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", sniffHTTP2},
		{"\x16\x03\x01\x02\x00", sniffTLS},
		{"*1\r\n$4\r\nPING\r\n", sniffUnknown},
		{"get / HTTP/1.1", sniffHTTP1},      // a token and whitespace: the strict parser decides
		{"GET\t/ HTTP/1.1\r\n", sniffHTTP1}, // refused there (400), never relayed raw
		{"SET key value\r\n", sniffHTTP1},
		{"{\"a\":1}", sniffUnknown},
		{" GET", sniffUnknown},
		{"SSH-2.0-OpenSSH", sniffUnknown},
		{"", sniffSilent},
	}
	for _, tt := range tests {
		if got := classify([]byte(tt.in)); got != tt.want {
			t.Errorf("classify(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func FuzzClassify(f *testing.F) {
	for _, s := range []string{"GET / HTTP/1.1", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "\x16\x03\x01", "*1\r\n", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		k := classify(b)
		if k == sniffTLS && (len(b) < 3 || b[0] != 0x16) {
			t.Errorf("classify(%q) = TLS", b)
		}
		if k == sniffHTTP1 && len(b) > 0 && !httpguts.IsTokenRune(rune(b[0])) {
			t.Errorf("classify(%q) = HTTP/1 for a start that is not a token byte", b)
		}
	})
}

// zeros is an endless reader of a repeated pattern, cheap to generate.
type pattern struct{ left int64 }

func (p *pattern) Read(b []byte) (int, error) {
	if p.left <= 0 {
		return 0, io.EOF
	}
	n := len(b)
	if int64(n) > p.left {
		n = int(p.left)
	}
	for i := range b[:n] {
		b[i] = 'a' + byte(i%26)
	}
	p.left -= int64(n)
	return n, nil
}

// TestInboundGigabyteFlatMemory streams 1 GiB up and 1 GiB down through the
// inbound proxy and samples the heap: it must stay flat (bodies are a tee
// beside the stream, capped at the capture limit).
func TestInboundGigabyteFlatMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 2 GiB")
	}
	const size = 1 << 30
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" {
			n, err := io.Copy(io.Discard, r.Body)
			fmt.Fprintf(w, "%d %v", n, err)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(size))
		io.Copy(w, &pattern{left: size})
	}))
	defer backend.Close()
	addr, rec := startInbound(t, backend.URL, false, Options{})

	var peak uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak {
				peak = ms.HeapInuse
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()

	res, err := noProxyClient().Post("http://"+addr+"/upload", "application/octet-stream", &pattern{left: size})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(b) != fmt.Sprintf("%d <nil>", size) {
		t.Fatalf("upload: backend got %q", b)
	}
	res, err = noProxyClient().Get("http://" + addr + "/download")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if n != size || err != nil {
		t.Fatalf("download: got %d bytes, %v", n, err)
	}
	close(stop)
	<-sampled
	up, down := rec.next(t), rec.next(t)
	if up.HTTP.Req.Body.Size != size || !up.HTTP.Req.Body.Truncated || down.HTTP.Res.Body.Size != size || len(down.HTTP.Res.Body.Data) != DefaultBodyLimit {
		t.Errorf("records: upload body %d/%v, download body %d/%d", up.HTTP.Req.Body.Size, up.HTTP.Req.Body.Truncated, down.HTTP.Res.Body.Size, len(down.HTTP.Res.Body.Data))
	}
	// The test itself, the backend and the client share this heap; 64 MiB
	// is far below the 1 GiB that buffering one body would take.
	if peak > 64<<20 {
		t.Errorf("heap in use peaked at %d MiB while streaming 1 GiB each way; want flat (< 64 MiB)", peak>>20)
	}
	t.Logf("heap in use peaked at %.1f MiB", float64(peak)/(1<<20))
}

func TestInboundH2CPriorKnowledge(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Proto, r.URL.Path, b)
	}))
	defer backend.Close()
	addr, rec := startInbound(t, backend.URL, true, Options{})
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	const streams = 20
	errs := make(chan error, streams)
	for i := 0; i < streams; i++ { // concurrent streams on one connection
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			res, err := client.Post(fmt.Sprintf("http://%s/s/%d", addr, i), "text/plain", strings.NewReader("x"))
			if err != nil {
				errs <- err
				return
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.ProtoMajor != 2 || string(b) != fmt.Sprintf("HTTP/1.1 /s/%d x", i) {
				errs <- fmt.Errorf("stream %d: %s %q", i, res.Proto, b)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := 0; i < streams; i++ {
		r := rec.next(t)
		if r.HTTP == nil {
			t.Fatalf("not an http record: %+v %+v %s", r.TCP, r.Net, r.Error)
		}
		if r.HTTP.Res == nil {
			t.Fatalf("record without response: %s", r.Error)
		}
		if r.HTTP.Req.Proto != "HTTP/2.0" || r.HTTP.Res.Status != 200 || string(r.HTTP.Req.Body.Data) != "x" {
			t.Errorf("record %s %d %q", r.HTTP.Req.Proto, r.HTTP.Res.Status, r.HTTP.Req.Body.Data)
		}
	}
}

func TestOutboundUnwrapH2FromTheApp(t *testing.T) {
	proxyURL, app, upstream, rec := outboundSetup(t, true)
	client := &http.Client{Transport: &http.Transport{
		Proxy:             http.ProxyURL(proxyURL),
		TLSClientConfig:   &tls.Config{RootCAs: app.Pool()},
		ForceAttemptHTTP2: true,
	}}
	defer client.CloseIdleConnections()
	res, err := client.Get(upstream.URL + "/h2")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.ProtoMajor != 2 || !strings.Contains(string(b), `"proto":"HTTP/2.0"`) {
		t.Errorf("app side %s, upstream saw %s", res.Proto, b)
	}
	r := rec.next(t)
	if r.HTTP.Req.Proto != "HTTP/2.0" || r.Net.TLS == nil || r.Net.TLS.ALPN != "h2" || r.Net.TLS.Upstream == nil || r.Net.TLS.Upstream.ALPN != "h2" {
		// The upstream saw HTTP/2.0 (above): its session's ALPN says h2.
		t.Errorf("record proto %s tls %+v upstream %+v", r.HTTP.Req.Proto, r.Net.TLS, r.Net.TLS.Upstream)
	}
}

func TestInboundTLSUnwrap(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s tls=%v", r.Proto, r.URL.Path, r.TLS != nil)
	}))
	defer backend.Close()
	appCA := testca.New(t)
	srvTLS := appCA.ServerTLS(t, "notifications.example")
	addr, rec := startInbound(t, backend.URL, true, Options{InboundTLS: &tls.Config{Certificates: srvTLS.Certificates}})
	for _, h2 := range []bool{false, true} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: appCA.Pool(), ServerName: "notifications.example"}, ForceAttemptHTTP2: h2}
		res, err := (&http.Client{Transport: tr}).Get("https://" + addr + "/secure")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		tr.CloseIdleConnections()
		if string(b) != "HTTP/1.1 /secure tls=false" || (res.ProtoMajor == 2) != h2 {
			t.Errorf("h2=%v: client %s got %q", h2, res.Proto, b)
		}
		r := rec.next(t)
		if r.Net.TLS == nil || r.Net.TLS.SNI != "notifications.example" || !strings.HasPrefix(r.HTTP.Req.URL, "https://") {
			t.Errorf("h2=%v: record url %s tls %+v", h2, r.HTTP.Req.URL, r.Net.TLS)
		}
	}
	// Plaintext still works on the same port.
	res, err := noProxyClient().Get("http://" + addr + "/plain")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	rec.next(t)
}

func TestInboundRawTCPMode(t *testing.T) {
	// A Redis-like line protocol: everything is relayed, even what looks
	// like HTTP, and recorded as chunks.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return
			}
			io.WriteString(c, "+OK "+l)
		}
	}()
	rec := newRecorder()
	in, err := NewInbound("http://"+ln.Addr().String(), InboundTCP, Options{Emitter: rec})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, in)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for _, cmd := range []string{"SET k v\n", "GET / HTTP/1.1\n"} {
		io.WriteString(c, cmd)
		if got, _ := br.ReadString('\n'); got != "+OK "+cmd {
			t.Fatalf("reply %q", got)
		}
	}
	c.Close()
	r := rec.next(t)
	if r.Kind != capture.KindTCP || len(r.TCP.Chunks) != 4 || !r.TCP.Chunks[0].Up || string(r.TCP.Chunks[0].Data) != "SET k v\n" ||
		r.TCP.Chunks[1].Up || string(r.TCP.Chunks[1].Data) != "+OK SET k v\n" {
		t.Errorf("record %s %+v", r.Kind, r.TCP)
	}
}

func TestInboundToHTTPSApp(t *testing.T) {
	appCA := testca.New(t)
	app := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls app saw %s", r.Host)
	}))
	app.TLS = appCA.ServerTLS(t, "localhost")
	app.StartTLS()
	defer app.Close()
	target := "https://localhost:" + strings.TrimPrefix(app.URL, "https://127.0.0.1:")
	addr, rec := startInbound(t, target, true, Options{RootCAs: appCA.Pool()})
	res, err := noProxyClient().Get("http://" + addr + "/x")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.HasPrefix(string(b), "tls app saw 127.0.0.1:") {
		t.Errorf("got %d %q", res.StatusCode, b)
	}
	r := rec.next(t)
	if r.Net.TLS == nil || r.Net.TLS.Upstream == nil || r.Net.TLS.Upstream.Version == "" {
		t.Errorf("record TLS %+v", r.Net.TLS)
	}
}

func TestOutboundMutualTLS(t *testing.T) {
	app := testca.New(t)
	upCA := testca.New(t)
	clientCA := testca.New(t)
	upstream := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	upstream.TLS = upCA.ServerTLS(t, "localhost")
	upstream.TLS.ClientAuth = tls.RequireAndVerifyClientCert
	upstream.TLS.ClientCAs = clientCA.Pool()
	upstream.StartTLS()
	defer upstream.Close()
	ca, _ := mitm.ParseCA(app.CertPEM(), app.KeyPEM(t))
	minter, _ := mitm.NewMinter(ca, mitm.Options{})
	cc := clientCA.ClientTLS(t, "notifications-sidecar")
	rec := newRecorder()
	out, err := NewOutbound(Options{Emitter: rec, RootCAs: upCA.Pool(), Minter: minter, ClientCert: &cc})
	if err != nil {
		t.Fatal(err)
	}
	proxyURL, _ := url.Parse("http://" + serve(t, out))
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL), TLSClientConfig: &tls.Config{RootCAs: app.Pool()}}}
	defer client.CloseIdleConnections()
	res, err := client.Get(strings.Replace(upstream.URL, "127.0.0.1", "localhost", 1) + "/mtls")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(b) != "hello notifications-sidecar" {
		t.Errorf("got %d %q", res.StatusCode, b)
	}
	rec.next(t)
}

func TestOutboundWebSocketAbsoluteForm(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		h := make([]byte, 6)
		if _, err := io.ReadFull(brw, h); err != nil {
			return
		}
		p := make([]byte, h[1]&0x7f)
		io.ReadFull(brw, p)
		for j := range p {
			p[j] ^= h[2+j%4]
		}
		c.Write(wsFrame(1, append([]byte("out:"), p...), nil))
	}))
	defer backend.Close()
	proxyURL, _, _, rec := outboundSetup(t, true)
	c, err := net.Dial("tcp", proxyURL.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET %s/ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", backend.URL, strings.TrimPrefix(backend.URL, "http://"))
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", res, err)
	}
	c.Write(wsFrame(1, []byte("hi"), []byte{1, 2, 3, 4}))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	h := make([]byte, 2)
	io.ReadFull(br, h)
	p := make([]byte, h[1])
	io.ReadFull(br, p)
	if string(p) != "out:hi" {
		t.Fatalf("echo %q", p)
	}
	c.Close()
	r := rec.next(t)
	if r.Direction != capture.DirOut || len(r.HTTP.Messages) != 2 || string(r.HTTP.Messages[0].Data) != "hi" || string(r.HTTP.Messages[1].Data) != "out:hi" {
		t.Errorf("record %s messages %+v", r.Direction, r.HTTP.Messages)
	}
}

// TestInboundIdleTimeout: a keep-alive connection is closed once it has
// been idle for IdleTimeout, counted from its last answer, never before,
// however many requests it served (the wait keeps an earlier wait's
// deadline while it falls within idleSlack: h1Conn.idleDeadline); a
// request during a wait, or a slow request head, does not shorten it.
func TestInboundIdleTimeout(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer backend.Close()
	// Long enough that a loaded machine's stalls (hundreds of ms) stay
	// within idleSlack and the spacing below.
	const idle = 1600 * time.Millisecond
	addr, _ := startInbound(t, backend.URL, false, Options{IdleTimeout: idle, HeaderTimeout: 2 * time.Second})
	// An odd and an even number of spaced requests: a wait either armed
	// the deadline or kept an earlier one.
	for _, spaced := range []int{7, 8} {
		c := dialPlain(t, addr)(t)
		br := bufio.NewReader(c)
		ask := func(req string) {
			t.Helper()
			if _, err := io.WriteString(c, req); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
		// A head that arrives in two parts, the second after half the timeout.
		io.WriteString(c, "GET /split HTTP/1.1\r\n")
		time.Sleep(idle / 2)
		ask("Host: a\r\n\r\n")
		// Requests spaced by more than idleSlack (200 ms here) and less
		// than the timeout: the deadline moves on with them, in steps.
		for i := range spaced {
			time.Sleep(idle / 5)
			ask("GET /" + strconv.Itoa(i) + " HTTP/1.1\r\nHost: a\r\n\r\n")
		}
		last := time.Now()
		c.SetReadDeadline(time.Now().Add(10 * idle))
		if n, err := br.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("idle connection: read %d bytes, %v; want the end of the stream", n, err)
		}
		if waited := time.Since(last); waited < idle {
			t.Fatalf("after %d spaced requests: closed after %v idle, before the idle timeout of %v", spaced, waited, idle)
		}
	}
}

// TestInboundHeldEnd: on a kept-alive connection the end of a response is
// written by the wait for the next request (h1Conn.holdEnd): the client
// gets the whole response at once, its record is emitted while the
// connection idles (not when the next request comes), and a client that
// is gone by then makes a record with the client's write error.
func TestInboundHeldEnd(t *testing.T) {
	body := strings.Repeat("b", 3000)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) }))
	defer backend.Close()
	addr, rec := startInbound(t, backend.URL, false, Options{})
	c := dialPlain(t, addr)(t)
	br := bufio.NewReader(c)
	hosts := []string{"a", "a", "b.example:81", "[::1]:82", "a"} // the record's server host is the Host's, per request
	for i, host := range hosts {
		io.WriteString(c, "GET /held"+strconv.Itoa(i)+" HTTP/1.1\r\nHost: "+host+"\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(res.Body)
		if err != nil || string(b) != body {
			t.Fatalf("response %d: %d bytes, %v", i, len(b), err)
		}
		// The connection stays idle: the record comes all the same.
		r := rec.next(t)
		if r.HTTP.Req.URL != "http://"+host+"/held"+strconv.Itoa(i) || r.Error != "" || r.HTTP.Res == nil || string(r.HTTP.Res.Body.Data) != body || r.DurMicros <= 0 {
			t.Fatalf("record %d: url %s, error %q, res %+v, duration %d", i, r.HTTP.Req.URL, r.Error, r.HTTP.Res, r.DurMicros)
		}
		if want := hostOnly(host); r.Net.ServerHost != want {
			t.Fatalf("record %d: server host %q, want %q", i, r.Net.ServerHost, want)
		}
	}
	// A client that resets the connection right after its request: the
	// held write fails or lands in a dead socket; either way one record.
	c2 := dialPlain(t, addr)(t)
	io.WriteString(c2, "GET /gone HTTP/1.1\r\nHost: a\r\n\r\n")
	c2.(*net.TCPConn).SetLinger(0)
	c2.Close()
	if r := rec.next(t); r.HTTP.Req.URL != "http://a/gone" {
		t.Fatalf("record for %s, want /gone", r.HTTP.Req.URL)
	}
}

// TestAwaiterOf: the engine writes a response's end with WriteAwaitThen
// through the wrappers that pass it on (byte counting, replay) down to a
// rawtcp connection, and never through one that does not (peeking), nor
// to a connection without it.
func TestAwaiterOf(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			defer c.Close()
			io.Copy(io.Discard, c)
		}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	rc := rawtcp.Wrap(raw)
	if _, ok := rc.(writeAwaiter); !ok {
		t.Skip("rawtcp.Conn is Linux's")
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	for _, tc := range []struct {
		name string
		c    net.Conn
		ok   bool
	}{
		{"rawtcp", rc, true},
		{"counted", &trackConn{Conn: rc}, true},
		{"replayed, counted", &h1.ReplayConn{Conn: &trackConn{Conn: rc}}, true},
		{"peeked", &h1.ReplayConn{Conn: &peekConn{Conn: &trackConn{Conn: rc}}}, false},
		{"pipe", &trackConn{Conn: a}, false},
	} {
		if got := awaiterOf(tc.c) != nil; got != tc.ok {
			t.Errorf("%s: awaiterOf found one: %v, want %v", tc.name, got, tc.ok)
		}
	}
}
