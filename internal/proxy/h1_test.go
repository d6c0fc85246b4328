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
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/mitm"
	"github.com/tapwire/tapwire/internal/testca"
)

// rawApp is an app on a raw socket: it logs the exact bytes of every
// request head it receives, with the connection it came on, and answers
// each with a fixed response.
type rawApp struct {
	ln    net.Listener
	mu    sync.Mutex
	heads []string
	conns []int
}

func startRawApp(t *testing.T, answer string) *rawApp { return startRawAppTLS(t, answer, nil) }

// startRawAppTLS is startRawApp speaking TLS with cfg (nil: plaintext).
func startRawAppTLS(t *testing.T, answer string, cfg *tls.Config) *rawApp {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	a := &rawApp{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for id := 0; ; id++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(id int, c net.Conn) {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					var head bytes.Buffer
					for {
						line, err := br.ReadString('\n')
						if err != nil {
							return
						}
						head.WriteString(line)
						if line == "\r\n" {
							break
						}
					}
					a.mu.Lock()
					a.heads = append(a.heads, head.String())
					a.conns = append(a.conns, id)
					a.mu.Unlock()
					io.WriteString(c, answer)
				}
			}(id, c)
		}
	}()
	return a
}

func (a *rawApp) seen() ([]string, []int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.heads...), append([]int(nil), a.conns...)
}

// TestInboundPassesClientBytes: the app sees the client's request line and
// field lines as sent (names' case and order), minus the hop-by-hop fields,
// plus X-Forwarded-*; the client sees the app's field lines as sent; the
// record keeps both in wire order; two requests on one client connection,
// pipelined, reach the app on one kept-alive connection.
func TestInboundPassesClientBytes(t *testing.T) {
	const answer = "HTTP/1.1 200 OK\r\nx-app-lower: 1\r\nX-App-UPPER: 2\r\nConnection: keep-alive, X-Hop\r\nX-Hop: h\r\nContent-Length: 2\r\n\r\nok"
	app := startRawApp(t, answer)
	for _, sniff := range []bool{false, true} {
		t.Run(map[bool]string{false: "http", true: "sniffing"}[sniff], func(t *testing.T) {
			addr, rec := startInbound(t, "http://"+app.ln.Addr().String(), sniff, Options{})
			before, _ := app.seen()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			const req = "GET /a?b=1 HTTP/1.1\r\nhost: svc.example\r\nx-lower: 1\r\nX-UPPER: 2\r\n" +
				"Connection: keep-alive, X-Drop\r\nX-Drop: secret\r\nKeep-Alive: timeout=5\r\nX-Forwarded-For: 203.0.113.9\r\nAccept:  */*\r\n\r\n"
			io.WriteString(c, req+req)
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			for i := range 2 {
				var got bytes.Buffer
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						t.Fatalf("response %d: %v", i+1, err)
					}
					got.WriteString(line)
					if line == "\r\n" {
						break
					}
				}
				body := make([]byte, 2)
				io.ReadFull(br, body)
				const want = "HTTP/1.1 200 OK\r\nx-app-lower: 1\r\nX-App-UPPER: 2\r\nContent-Length: 2\r\n\r\n"
				if got.String() != want || string(body) != "ok" {
					t.Errorf("client got\n%q\nwant\n%q", got.String(), want)
				}
			}
			heads, conns := app.seen()
			heads, conns = heads[len(before):], conns[len(before):]
			const want = "GET /a?b=1 HTTP/1.1\r\nhost: svc.example\r\nx-lower: 1\r\nX-UPPER: 2\r\nAccept:  */*\r\n" +
				"X-Forwarded-For: 203.0.113.9, 127.0.0.1\r\nX-Forwarded-Host: svc.example\r\nX-Forwarded-Proto: http\r\n\r\n"
			if len(heads) != 2 {
				t.Fatalf("app saw %d requests, want 2", len(heads))
			}
			for i, h := range heads {
				if h != want {
					t.Errorf("app saw request %d\n%q\nwant\n%q", i+1, h, want)
				}
			}
			if conns[0] != conns[1] {
				t.Errorf("the two requests reached the app on connections %v, want one kept-alive connection", conns)
			}
			r := rec.next(t)
			var names []string
			for _, h := range r.HTTP.Req.Headers {
				names = append(names, h.Name)
			}
			if got := strings.Join(names, ","); got != "host,x-lower,X-UPPER,Connection,X-Drop,Keep-Alive,X-Forwarded-For,Accept" {
				t.Errorf("record request headers %s, want the client's, in order", got)
			}
			if r.HTTP.Res.Headers.Get("X-App-Upper") != "2" || r.HTTP.Res.Headers[0].Name != "x-app-lower" {
				t.Errorf("record response headers %v", r.HTTP.Res.Headers)
			}
			rec.next(t)
		})
	}
}

// TestInboundRefusesAmbiguous: what the strict parser refuses never reaches
// the app, and the client is told why.
func TestInboundRefusesAmbiguous(t *testing.T) {
	app := startRawApp(t, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	addr, _ := startInbound(t, "http://"+app.ln.Addr().String(), false, Options{})
	for _, tt := range []struct{ name, req, want string }{
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n", "400 "},
		{"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", "400 "},
		{"no Host", "GET / HTTP/1.1\r\n\r\n", "400 "},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "400 "},
		{"bare CR", "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r2\r\n\r\n", "400 "},
		{"HTTP/2.0 request line", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", "505 "},
		{"gzip transfer coding", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", "501 "},
		{"CONNECT on the app's port", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", "405 "},
		{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400 "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := app.seen()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, tt.req)
			res := readUntilClosed(t, c, 1)[0]
			if !strings.HasPrefix(res.Status, tt.want) {
				b, _ := io.ReadAll(res.Body)
				t.Errorf("got %s %q, want %s", res.Status, b, tt.want)
			}
			if res.Header.Get("Connection") != "close" && !res.Close {
				t.Errorf("refusal without Connection: close")
			}
			if after, _ := app.seen(); len(after) != len(before) {
				t.Errorf("the app received the refused request: %q", after[len(before):])
			}
		})
	}
}

// TestInboundSilentClient: with PROXY_PROTOCOL=tcp:http a client that says
// nothing for longer than the sniff timeout is not relayed raw for that
// alone. A pre-opened HTTP connection that speaks later is served as HTTP
// (recorded, X-Forwarded-For appended); an app that speaks first (a banner)
// gets a byte stream.
func TestInboundSilentClient(t *testing.T) {
	t.Run("client speaks later", func(t *testing.T) {
		app := startRawApp(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		addr, rec := startInbound(t, "http://"+app.ln.Addr().String(), true, Options{})
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		time.Sleep(sniffTimeout + 500*time.Millisecond)
		io.WriteString(c, "GET /late HTTP/1.1\r\nHost: svc\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("response %v %v", res, err)
		}
		heads, _ := app.seen()
		if len(heads) != 1 || !strings.Contains(heads[0], "X-Forwarded-For: 127.0.0.1\r\n") {
			t.Errorf("app saw %q, want the request with X-Forwarded-For", heads)
		}
		if r := rec.next(t); r.Kind != capture.KindHTTP || r.HTTP.Req.URL != "http://svc/late" {
			t.Errorf("record %s %+v, want the HTTP exchange", r.Kind, r.HTTP)
		}
	})
	t.Run("app speaks first", func(t *testing.T) {
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
			io.WriteString(c, "220 smtp.example ready\r\n")
			br := bufio.NewReader(c)
			if l, err := br.ReadString('\n'); err == nil {
				io.WriteString(c, "250 hello "+l)
			}
		}()
		addr, rec := startInbound(t, "http://"+ln.Addr().String(), true, Options{})
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		if l, err := br.ReadString('\n'); err != nil || l != "220 smtp.example ready\r\n" {
			t.Fatalf("banner %q %v", l, err)
		}
		io.WriteString(c, "EHLO me\r\n")
		if l, err := br.ReadString('\n'); err != nil || l != "250 hello EHLO me\r\n" {
			t.Fatalf("answer %q %v", l, err)
		}
		c.Close()
		r := rec.next(t)
		if r.Kind != capture.KindTCP || r.TCP.BytesDown != 43 || r.TCP.BytesUp != 9 {
			t.Errorf("record %s %+v, want a tcp stream of 9 bytes up and 43 down", r.Kind, r.TCP)
		}
	})
	t.Run("tab in the request line", func(t *testing.T) {
		app := startRawApp(t, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		addr, _ := startInbound(t, "http://"+app.ln.Addr().String(), true, Options{})
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET\t/ HTTP/1.1\r\nHost: svc\r\n\r\n")
		res := readUntilClosed(t, c, 1)[0]
		if res.StatusCode != 400 {
			t.Errorf("got %d, want 400", res.StatusCode)
		}
		if heads, _ := app.seen(); len(heads) != 0 {
			t.Errorf("the app received %q", heads)
		}
	})
}

// TestOutboundTunnelPassesAppBytes: inside an unwrapped CONNECT tunnel the
// upstream sees the app's request line and field lines as sent (its own
// X-Forwarded-For untouched), minus hop-by-hop fields, plus Via; the record
// names the tunnel's host and both TLS sessions.
func TestOutboundTunnelPassesAppBytes(t *testing.T) {
	appCA, upCA := testca.New(t), testca.New(t)
	up := startRawAppTLS(t, "HTTP/1.1 200 OK\r\nX-Up-Case: 1\r\nContent-Length: 2\r\n\r\nok", upCA.ServerTLS(t, "localhost"))
	ca, err := mitm.ParseCA(appCA.CertPEM(), appCA.KeyPEM(t))
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	opt := Options{Emitter: rec, RootCAs: upCA.Pool()}
	if opt.Minter, err = mitm.NewMinter(ca, mitm.Options{}); err != nil {
		t.Fatal(err)
	}
	out, err := NewOutbound(opt)
	if err != nil {
		t.Fatal(err)
	}
	outAddr := serve(t, out)
	target := "localhost:" + strings.TrimPrefix(up.ln.Addr().String(), "127.0.0.1:")
	c, err := net.Dial("tcp", outAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	if res, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect}); err != nil || res.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", res, err)
	}
	tc := tls.Client(c, &tls.Config{RootCAs: appCA.Pool(), ServerName: "localhost", NextProtos: []string{"http/1.1"}})
	io.WriteString(tc, "POST /v1/pay HTTP/1.1\r\nhost: localhost\r\nx-request-id: 7\r\nX-Forwarded-For: 10.0.0.1\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc")
	res, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil || res.StatusCode != 200 || res.Header.Get("X-Up-Case") != "1" {
		t.Fatalf("response %v %v", res, err)
	}
	heads, _ := up.seen()
	const want = "POST /v1/pay HTTP/1.1\r\nhost: localhost\r\nx-request-id: 7\r\nX-Forwarded-For: 10.0.0.1\r\nContent-Length: 3\r\nVia: 1.1 tapwire-goproxy\r\n\r\n"
	if len(heads) != 1 || heads[0] != want {
		t.Errorf("upstream saw %q, want %q", heads, want)
	}
	r := rec.next(t)
	if r.Direction != capture.DirOut || r.Net.Proxy != "connect" || r.HTTP.Req.URL != "https://localhost/v1/pay" || r.Net.ServerHost != "localhost" {
		t.Errorf("record %s %s %s host %s", r.Direction, r.Net.Proxy, r.HTTP.Req.URL, r.Net.ServerHost)
	}
	if r.Net.TLS == nil || r.Net.TLS.SNI != "localhost" || r.Net.TLS.Upstream == nil || r.Net.TLS.Upstream.Version == "" {
		t.Errorf("record TLS %+v", r.Net.TLS)
	}
	if string(r.HTTP.Req.Body.Data) != "abc" || r.HTTP.Req.Headers[1].Name != "x-request-id" {
		t.Errorf("record request %+v", r.HTTP.Req)
	}
}

// TestOutboundAbsoluteForm: the forward proxy sends an absolute-form
// request to its host in origin form with the app's field lines as sent,
// plus Via; two requests on one client connection reach the upstream on
// one kept-alive connection; an origin-form request is refused with how to
// use the proxy and the connection goes on.
func TestOutboundAbsoluteForm(t *testing.T) {
	up := startRawApp(t, "HTTP/1.1 200 OK\r\nX-Up: 1\r\nContent-Length: 2\r\n\r\nok")
	rec := newRecorder()
	out, err := NewOutbound(Options{Emitter: rec})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, out)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	io.WriteString(c, "GET /not-a-proxy-request HTTP/1.1\r\nHost: x\r\n\r\n")
	if res, err := http.ReadResponse(br, nil); err != nil || res.StatusCode != 400 {
		t.Fatalf("origin-form: %v %v, want 400", res, err)
	} else {
		b, _ := io.ReadAll(res.Body)
		if !strings.Contains(string(b), "HTTP_PROXY") {
			t.Errorf("the refusal says %q, want how to use the proxy", b)
		}
	}
	u := "http://" + up.ln.Addr().String()
	req := "GET " + u + "/a?b=1 HTTP/1.1\r\nHost: " + up.ln.Addr().String() + "\r\nx-lower: 1\r\nProxy-Connection: keep-alive\r\nX-UPPER: 2\r\n\r\n"
	for i := range 2 {
		io.WriteString(c, req)
		res, err := http.ReadResponse(br, nil)
		if err != nil || res.StatusCode != 200 || res.Header.Get("X-Up") != "1" {
			t.Fatalf("request %d: %v %v", i+1, res, err)
		}
		io.ReadAll(res.Body)
	}
	heads, conns := up.seen()
	want := "GET /a?b=1 HTTP/1.1\r\nHost: " + up.ln.Addr().String() + "\r\nx-lower: 1\r\nX-UPPER: 2\r\nVia: 1.1 tapwire-goproxy\r\n\r\n"
	if len(heads) != 2 || heads[0] != want || heads[1] != want {
		t.Errorf("upstream saw %q, want twice %q", heads, want)
	}
	if len(conns) == 2 && conns[0] != conns[1] {
		t.Errorf("upstream connections %v, want one kept alive", conns)
	}
	r := rec.next(t)
	if r.Net.Proxy != "forward" || r.HTTP.Req.URL != u+"/a?b=1" || r.Direction != capture.DirOut || r.HTTP.Req.Headers[1].Name != "x-lower" {
		t.Errorf("record %s %s %s %v", r.Net.Proxy, r.HTTP.Req.URL, r.Direction, r.HTTP.Req.Headers)
	}
}

// TestH1CaptureOffAllocatesNothing: with capture off, a request on a
// kept-alive connection allocates nothing in the engine (its exchange is the
// connection's, reused: it was 470 bytes a request, goproxy's only
// allocation with capture off). The app and the client here allocate
// nothing per request either.
func TestH1CaptureOffAllocatesNothing(t *testing.T) {
	if per, bytes := allocsPerExchange(t, Options{}); per > 0.05 {
		t.Errorf("%.2f allocations per request (%d bytes), want none", per, bytes)
	}
}

// allocsPerExchange runs exchanges on one kept-alive connection through an
// inbound engine with opt (an app that answers 200 "ok") and returns the
// allocations and bytes allocated a request, in the whole process.
func allocsPerExchange(t *testing.T, opt Options, reqs ...[]byte) (per float64, size uint64) {
	t.Helper()
	return allocsPerAnswer(t, opt, []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), reqs...)
}

// allocsPerAnswer is allocsPerExchange with the app's answer given. The app
// reads a request's body by its Content-Length, or to the last chunk.
func allocsPerAnswer(t *testing.T, opt Options, answer []byte, reqs ...[]byte) (per float64, size uint64) {
	t.Helper()
	if len(reqs) == 0 {
		reqs = [][]byte{[]byte("GET /x HTTP/1.1\r\nHost: svc\r\n\r\n")}
	}
	app := serveTCP(t, func(c net.Conn) {
		buf := make([]byte, 4096)
		n := 0
		for {
			// One request at a time (the client waits for each answer):
			// its head, and as many body bytes as its Content-Length says.
			end := bytes.Index(buf[:n], []byte("\r\n\r\n")) + 4
			if end >= 4 {
				need := end
				if i := bytes.Index(buf[:end], []byte("Content-Length: ")); i >= 0 {
					cl, _ := strconv.Atoi(string(buf[i+16 : i+16+bytes.IndexByte(buf[i+16:end], '\r')]))
					need += cl
				} else if bytes.Contains(buf[:end], []byte("Transfer-Encoding: chunked")) {
					need = len(buf) + 1 // until the last chunk is here
					if i := bytes.Index(buf[end-2:n], []byte("\r\n0\r\n\r\n")); i >= 0 {
						need = end - 2 + i + 7
					}
				}
				if n >= need {
					n = copy(buf, buf[need:n])
					if _, err := c.Write(answer); err != nil {
						return
					}
					continue
				}
			}
			if n == len(buf) {
				return
			}
			m, err := c.Read(buf[n:])
			if err != nil {
				return
			}
			n += m
		}
	})
	in, err := NewInbound("http://"+app, InboundHTTP, opt)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", serve(t, in))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	got := make([]byte, len(answer))
	do := func(n int) {
		for i := range n {
			if _, err := c.Write(reqs[i%len(reqs)]); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, answer) {
				t.Fatalf("answer %q, %v; want %q", got, err, answer)
			}
		}
	}
	do(100) // the app connection, the buffers
	const n = 2000
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	do(n)
	runtime.ReadMemStats(&after)
	return float64(after.Mallocs-before.Mallocs) / n, (after.TotalAlloc - before.TotalAlloc) / n
}

// TestIdleAppConnAnswerNotTaken: an app that writes on a kept-alive
// connection while it is idle (a 408 before closing it, as some servers do)
// must not have that read as its answer to the next request, which it never
// saw: goproxy takes another connection, and the app answers the request.
func TestIdleAppConnAnswerNotTaken(t *testing.T) {
	for _, closeAfter := range []bool{true, false} {
		t.Run(map[bool]string{true: "then closes", false: "stays open"}[closeAfter], func(t *testing.T) {
			wrote := make(chan struct{}, 4)
			release := make(chan struct{})
			defer close(release)
			app := serveTCP(t, func(c net.Conn) {
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(req.URL.Path), req.URL.Path)
				time.Sleep(20 * time.Millisecond)
				io.WriteString(c, "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
				wrote <- struct{}{}
				if !closeAfter {
					<-release
				}
			})
			in, err := NewInbound("http://"+app, InboundHTTP, Options{})
			if err != nil {
				t.Fatal(err)
			}
			addr := serve(t, in)
			client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			for _, path := range []string{"/first", "/second", "/third"} {
				res, err := client.Get("http://" + addr + path)
				if err != nil {
					t.Fatalf("%s: %v", path, err)
				}
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != 200 || string(b) != path {
					t.Errorf("%s: %d %q, want the app's answer to it (200 %q)", path, res.StatusCode, b, path)
				}
				select { // the app wrote its 408 on the idle connection
				case <-wrote:
				case <-time.After(5 * time.Second):
					t.Fatalf("after %s the app wrote nothing more on its connection", path)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// releaser is a capture.ReleasingEmitter that keeps each record, with a
// copy of what it said when emitted, until the test releases it.
type releaser struct {
	mu    sync.Mutex
	held  []heldRecord
	seen  map[*capture.Record]bool // distinct records emitted
	calls int
}

type heldRecord struct {
	rec  *capture.Record
	snap string // the record as emitted
	done func()
}

// snapshot is what a record says about its exchange.
func snapshot(r *capture.Record) string {
	s := r.ID + " " + r.HTTP.Req.URL + " req " + string(r.HTTP.Req.Body.Data) + " " + fmt.Sprint(r.HTTP.Req.Headers)
	if res := r.HTTP.Res; res != nil {
		s += fmt.Sprintf(" res %d %s %v", res.Status, res.Body.Data, res.Headers)
	}
	return s
}

func (l *releaser) Emit(r *capture.Record) { panic("Emit called on a ReleasingEmitter's engine") }

func (l *releaser) EmitRelease(r *capture.Record, done func()) {
	if err := r.Validate(); err != nil {
		panic(fmt.Sprintf("emitted an invalid record: %v", err))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.held = append(l.held, heldRecord{r, snapshot(r), done})
	l.seen[r] = true
	l.calls++
}

// wait returns once n records have been emitted in all, or fails the test
// after 10 s. A record is emitted after its response is written, so a client
// can have read its answer before the record of it exists.
func (l *releaser) wait(t *testing.T, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		l.mu.Lock()
		calls := l.calls
		l.mu.Unlock()
		if calls >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d records emitted after 10 s, want %d", calls, n)
		}
	}
}

// release checks that every held record still says what it said when it
// was emitted, and calls its done.
func (l *releaser) release(t *testing.T) []string {
	t.Helper()
	l.mu.Lock()
	held := l.held
	l.held = nil
	l.mu.Unlock()
	var snaps []string
	for _, h := range held {
		if now := snapshot(h.rec); now != h.snap {
			t.Errorf("a record changed after it was emitted, before its release:\n was %.300s\n now %.300s", h.snap, now)
		}
		snaps = append(snaps, h.snap)
		h.done()
	}
	return snaps
}

// TestRecordsReusedWhenReleased: with an emitter that says when it is done
// with a record, the engine uses records and their body buffers again,
// never one that was not released: records held by the emitter do not
// change while other exchanges run, and each record, reused or not, holds
// its own exchange's bodies (shorter and longer than the last one's, by
// Content-Length and chunked).
func TestRecordsReusedWhenReleased(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		answer := strings.Repeat("<"+r.URL.Path+">", len(body)%7+1)
		if strings.HasSuffix(r.URL.Path, "/chunked") {
			w.Write([]byte(answer[:len(answer)/2]))
			w.(http.Flusher).Flush()
			w.Write([]byte(answer[len(answer)/2:]))
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(answer)))
		w.Write([]byte(answer))
	}))
	defer app.Close()
	l := &releaser{seen: map[*capture.Record]bool{}}
	in, err := NewInbound(app.URL, InboundHTTP, Options{Emitter: l})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, in)

	const clients, rounds, each = 4, 3, 15
	want := map[string]bool{}
	var wantMu sync.Mutex
	for round := range rounds {
		var wg sync.WaitGroup
		for c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				client := &http.Client{Transport: &http.Transport{Proxy: nil}}
				defer client.CloseIdleConnections()
				for i := range each {
					path := fmt.Sprintf("/r%d/c%d/i%d", round, c, i)
					if i%3 == 2 {
						path += "/chunked"
					}
					body := strings.Repeat(fmt.Sprintf("[%d.%d.%d]", round, c, i), 1+(i*37+c*11)%200)
					res, err := client.Post("http://"+addr+path, "text/plain", strings.NewReader(body))
					if err != nil {
						t.Error(err)
						return
					}
					got, _ := io.ReadAll(res.Body)
					res.Body.Close()
					answer := strings.Repeat("<"+path+">", len(body)%7+1)
					if string(got) != answer {
						t.Errorf("%s: answer %.60q, want %.60q", path, got, answer)
					}
					wantMu.Lock()
					want[path+" "+body+" "+answer] = true
					wantMu.Unlock()
				}
			}()
		}
		wg.Wait()
		l.wait(t, (round+1)*clients*each)
		// Each record holds its own exchange, unchanged since it was emitted.
		for _, snap := range l.release(t) {
			f := strings.Fields(snap) // id url "req" body headers... "res" status answer
			url, body := f[1], f[3]
			path := url[strings.Index(url[len("http://"):], "/")+len("http://"):]
			i := strings.Index(snap, " res 200 ")
			if i < 0 {
				t.Fatalf("record without its response: %.200s", snap)
			}
			answer, _, _ := strings.Cut(snap[i+len(" res 200 "):], " ")
			if !want[path+" "+body+" "+answer] {
				t.Errorf("record of %s holds another exchange's bodies: %.80q, %.80q", path, body, answer)
			}
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.calls != clients*rounds*each {
		t.Fatalf("%d records emitted, want %d", l.calls, clients*rounds*each)
	}
	// The second and third rounds had the first's records back to use.
	if len(l.seen) >= l.calls {
		t.Errorf("%d distinct records for %d exchanges: none was used again", len(l.seen), l.calls)
	}
}

// TestRecordPoolBounded: released records are kept up to maxPooledRecords,
// their body buffers up to maxPooledBytes, and come back empty, their field
// lists holding no string of the heads they were filled from.
func TestRecordPoolBounded(t *testing.T) {
	h1Records.mu.Lock()
	h1Records.free, h1Records.bytes = nil, 0 // what other tests left
	h1Records.mu.Unlock()
	var recs []*h1Record
	for range maxPooledRecords + 10 {
		r := h1Records.get()
		r.rec.ID = "x"
		r.resBuf = append(bodyBuf(&r.resBuf, 8<<10), "body"...)
		r.reqHdr = append(r.reqHdr[:0], capture.Header{Name: "Host", Value: "svc"})
		recs = append(recs, r)
	}
	for _, r := range recs {
		r.release()
	}
	h1Records.mu.Lock()
	n, bytes := len(h1Records.free), h1Records.bytes
	h1Records.mu.Unlock()
	if n != maxPooledRecords || bytes > maxPooledBytes || bytes < maxPooledBytes-8<<10 {
		t.Errorf("%d records and %d bytes of buffers kept, want %d and at most %d", n, bytes, maxPooledRecords, maxPooledBytes)
	}
	withBuf := 0
	for range n {
		r := h1Records.get()
		if r.rec.ID != "" || len(r.resBuf) != 0 || r.release == nil {
			t.Fatalf("a record came back with %q, %d body bytes", r.rec.ID, len(r.resBuf))
		}
		if len(r.reqHdr) != 0 || cap(r.reqHdr) == 0 || r.reqHdr[:1][0] != (capture.Header{}) {
			t.Fatalf("a record came back with fields %q (%d kept), want an empty list that holds no string", r.reqHdr[:cap(r.reqHdr)], cap(r.reqHdr))
		}
		if cap(r.resBuf) > 0 {
			withBuf++
		}
	}
	if want := maxPooledBytes / (8 << 10); withBuf != want {
		t.Errorf("%d records kept their buffers, want %d", withBuf, want)
	}
	h1Records.mu.Lock()
	defer h1Records.mu.Unlock()
	if h1Records.bytes != 0 {
		t.Errorf("%d bytes counted in an empty pool", h1Records.bytes)
	}
}

// instantReleaser releases each record as soon as it is emitted, after
// reading it as an encoder would.
type instantReleaser struct{ n atomic.Int64 }

func (l *instantReleaser) Emit(*capture.Record) { panic("Emit called on a ReleasingEmitter's engine") }

func (l *instantReleaser) EmitRelease(r *capture.Record, done func()) {
	if b := r.HTTP.Res.Body; len(b.Data) == 0 || int64(len(b.Data)) != b.Size {
		panic("a record without its whole response body")
	}
	l.n.Add(1)
	done()
}

// TestH1CaptureOnAllocations: with an emitter that releases its records,
// a captured exchange on a kept-alive connection allocates only the
// strings its record must own: its id, URL and request head in one, the
// response head (a standard reason phrase is a constant). The record, its
// body buffers and its field lists are used again (8 allocations and 916
// bytes when they were not).
func TestH1CaptureOnAllocations(t *testing.T) {
	l := &instantReleaser{}
	per, bytes := allocsPerExchange(t, Options{Emitter: l})
	t.Logf("%.2f allocations, %d bytes a captured exchange", per, bytes)
	if per > 2.05 || bytes > 160 {
		t.Errorf("%.2f allocations per request (%d bytes), want at most 2 (the id, URL and request head; the response head)", per, bytes)
	}
	// The last record is emitted after its answer is written: the client
	// can have read it first.
	for deadline := time.Now().Add(10 * time.Second); l.n.Load() < 2100 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if l.n.Load() != 2100 {
		t.Errorf("%d records, want 2100", l.n.Load())
	}

	// A record used again keeps its body buffers through exchanges that
	// have no body: a POST after a GET takes the POST's buffer back.
	get := []byte("GET /x HTTP/1.1\r\nHost: svc\r\n\r\n")
	post := []byte("POST /x HTTP/1.1\r\nHost: svc\r\nContent-Length: 100\r\n\r\n" + strings.Repeat("b", 100))
	per, bytes = allocsPerExchange(t, Options{Emitter: l}, get, post)
	t.Logf("GET and POST in turn: %.2f allocations, %d bytes an exchange", per, bytes)
	if per > 2.05 || bytes > 200 {
		t.Errorf("GET and POST in turn: %.2f allocations per request (%d bytes), want at most 2", per, bytes)
	}

	// Chunked bodies, both ways, grow the record's buffers once; a record
	// used again keeps them.
	chunked := []byte("POST /x HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"64\r\n" + strings.Repeat("b", 100) + "\r\n0\r\n\r\n")
	answer := []byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"190\r\n" + strings.Repeat("a", 400) + "\r\n0\r\n\r\n")
	per, bytes = allocsPerAnswer(t, Options{Emitter: l}, answer, get, chunked)
	t.Logf("GET and chunked POST in turn, chunked answers: %.2f allocations, %d bytes an exchange", per, bytes)
	if per > 2.05 || bytes > 200 {
		t.Errorf("chunked bodies: %.2f allocations per request (%d bytes), want at most 2", per, bytes)
	}
}
