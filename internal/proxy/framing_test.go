package proxy

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/mitm"
	"github.com/tapwire/tapwire/internal/testca"
)

// appLog is what an app behind goproxy received: every byte on its
// connections and every request its handler saw.
type appLog struct {
	mu    sync.Mutex
	bytes int
	reqs  []string
	// started gets a value when a request to /mid has delivered its first
	// 5 body bytes to the app.
	started chan struct{}
}

func (l *appLog) snapshot() (int, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bytes, append([]string(nil), l.reqs...)
}

// settled is snapshot's byte count once it has stayed the same for 50 ms
// (at most 5 s): the bytes counted are the TCP stream's, and a connection
// an earlier test closed can still deliver its last ones (a TLS
// close_notify, 24 bytes, when goproxy closes a tunnel's app connection
// after its client went away).
func (l *appLog) settled() int {
	n, _ := l.snapshot()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		m, _ := l.snapshot()
		if m == n {
			break
		}
		n = m
	}
	return n
}

type logListener struct {
	net.Listener
	log *appLog
}

func (l logListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &logConn{Conn: c, log: l.log}, nil
}

type logConn struct {
	net.Conn
	log *appLog
}

func (c *logConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.log.mu.Lock()
	c.log.bytes += n
	c.log.mu.Unlock()
	return n, err
}

// startLoggingApp starts an app that logs what it receives and answers
// "ok"; with cfg it speaks TLS.
func startLoggingApp(t *testing.T, cfg *tls.Config) (*httptest.Server, *appLog) {
	t.Helper()
	log := &appLog{started: make(chan struct{}, 1)}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/mid" {
			var first [5]byte
			if _, err := io.ReadFull(r.Body, first[:]); err == nil {
				log.started <- struct{}{}
			}
		}
		b, err := io.ReadAll(r.Body)
		log.mu.Lock()
		log.reqs = append(log.reqs, fmt.Sprintf("%s %s %q %v", r.Method, r.URL.RequestURI(), b, err))
		log.mu.Unlock()
		io.WriteString(w, "ok")
	}))
	srv.Listener = logListener{srv.Listener, log}
	if cfg != nil {
		srv.TLS = cfg
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv, log
}

// framingRig is one way a client reaches an app through goproxy: dial
// returns a connection on which to write a request whose target is
// target.
type framingRig struct {
	name   string
	dial   func(t *testing.T) net.Conn
	target string
	app    *appLog
	rec    *recorder
}

func dialPlain(t *testing.T, addr string) func(t *testing.T) net.Conn {
	return func(t *testing.T) net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
}

// framingRigs builds the inbound proxy (plain listener and sniffing
// listener), the outbound proxy with absolute-form requests, and the
// outbound proxy inside an unwrapped CONNECT tunnel, each in front of its
// own logging app.
func framingRigs(t *testing.T, opt Options) []framingRig {
	t.Helper()
	var rigs []framingRig
	for _, sniff := range []bool{false, true} {
		app, log := startLoggingApp(t, nil)
		addr, rec := startInbound(t, app.URL, sniff, opt)
		name := "inbound"
		if sniff {
			name = "inbound sniffing"
		}
		rigs = append(rigs, framingRig{name: name, dial: dialPlain(t, addr), target: "/x", app: log, rec: rec})
	}

	plainApp, plainLog := startLoggingApp(t, nil)
	appCA, upCA := testca.New(t), testca.New(t)
	tlsApp, tlsLog := startLoggingApp(t, upCA.ServerTLS(t, "127.0.0.1", "localhost"))
	ca, err := mitm.ParseCA(appCA.CertPEM(), appCA.KeyPEM(t))
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	o := opt
	o.Emitter, o.RootCAs = rec, upCA.Pool()
	if o.Minter, err = mitm.NewMinter(ca, mitm.Options{}); err != nil {
		t.Fatal(err)
	}
	out, err := NewOutbound(o)
	if err != nil {
		t.Fatal(err)
	}
	outAddr := serve(t, out)
	rigs = append(rigs, framingRig{name: "outbound", dial: dialPlain(t, outAddr), target: plainApp.URL + "/x", app: plainLog, rec: rec})

	tlsHost := strings.Replace(strings.TrimPrefix(tlsApp.URL, "https://"), "127.0.0.1", "localhost", 1)
	rigs = append(rigs, framingRig{name: "outbound unwrapped", target: "/x", app: tlsLog, rec: rec, dial: func(t *testing.T) net.Conn {
		c := dialPlain(t, outAddr)(t)
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", tlsHost, tlsHost)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		res, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil || res.StatusCode != 200 || br.Buffered() > 0 {
			t.Fatalf("CONNECT: %v %v", res, err)
		}
		c.SetReadDeadline(time.Time{})
		tc := tls.Client(c, &tls.Config{RootCAs: appCA.Pool(), ServerName: "localhost", NextProtos: []string{"http/1.1"}})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		return tc
	}})
	return rigs
}

// roundTrip writes raw to c and reads the responses that come back until
// the connection closes. It fails when the connection stays open.
func readUntilClosed(t *testing.T, c net.Conn, n int) []*http.Response {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	var out []*http.Response
	for range n {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", len(out)+1, err)
		}
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatalf("response %d body: %v", len(out)+1, err)
		}
		res.Body = io.NopCloser(strings.NewReader(string(b)))
		out = append(out, res)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Errorf("bytes after the last response, want the connection closed")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Errorf("connection left open after the refusal, want it closed")
	} else if !errors.Is(err, io.EOF) {
		t.Logf("connection ended with %v", err)
	}
	return out
}

func TestRefusesBadFraming(t *testing.T) {
	rigs := framingRigs(t, Options{})
	const chunked = "POST {target} HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n"
	const smuggled = "GET /smuggled HTTP/1.1\r\nHost: app\r\n\r\n"
	tests := []struct {
		name, req string
	}{
		{"Content-Length then Transfer-Encoding", "POST {target} HTTP/1.1\r\nHost: app\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled},
		{"Transfer-Encoding then Content-Length", "POST {target} HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n" + smuggled},
		{"Content-Length and Transfer-Encoding identity", "POST {target} HTTP/1.1\r\nHost: app\r\nContent-Length: 5\r\nTransfer-Encoding: identity\r\n\r\nhello"},
		{"differing Content-Lengths", "POST {target} HTTP/1.1\r\nHost: app\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"},
		{"Content-Length list", "POST {target} HTTP/1.1\r\nHost: app\r\nContent-Length: 5, 6\r\n\r\nhello!"},
		{"signed Content-Length", "POST {target} HTTP/1.1\r\nHost: app\r\nContent-Length: +5\r\n\r\nhello"},
		{"Transfer-Encoding in HTTP/1.0", "POST {target} HTTP/1.0\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"chunk size -1", chunked + "-1\r\nhello\r\n0\r\n\r\n"},
		{"chunk size 0x", chunked + "0x5\r\nhello\r\n0\r\n\r\n"},
		{"chunk size +", chunked + "+5\r\nhello\r\n0\r\n\r\n"},
		{"chunk size empty", chunked + "\r\nhello\r\n0\r\n\r\n"},
		{"chunk size beyond int64", chunked + "8000000000000000\r\nhello\r\n0\r\n\r\n"},
		{"chunk size of 17 digits", chunked + "00000000000000005\r\nhello\r\n0\r\n\r\n"},
		{"chunk line with bare LF", chunked + "5\nhello\r\n0\r\n\r\n"},
		{"chunk line with bare CR", chunked + "5\rx\r\nhello\r\n0\r\n\r\n"},
		{"chunk extension with a control byte", chunked + "5;a\x00b\r\nhello\r\n0\r\n\r\n"},
		{"chunk size with a space inside", chunked + "5 5\r\nhello\r\n0\r\n\r\n"},
		{"whitespace before chunk extension (net/http refuses it)", chunked + "5 ;x\r\nhello\r\n0\r\n\r\n"},
	}
	for _, rig := range rigs {
		t.Run(rig.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					c := rig.dial(t)
					io.WriteString(c, strings.ReplaceAll(tt.req, "{target}", rig.target))
					res := readUntilClosed(t, c, 1)[0]
					if res.StatusCode != http.StatusBadRequest {
						b, _ := io.ReadAll(res.Body)
						t.Errorf("got %d %q, want 400", res.StatusCode, b)
					}
					if n, reqs := rig.app.snapshot(); n != 0 {
						t.Errorf("the app received %d bytes (requests %q), want nothing", n, reqs)
					}
				})
			}
			// The rig works: a good request reaches the app, and a good
			// one pipelined before a bad one is answered before the refusal.
			t.Run("pipelined good then bad", func(t *testing.T) {
				c := rig.dial(t)
				io.WriteString(c, strings.ReplaceAll("GET {target}?first HTTP/1.1\r\nHost: app\r\n\r\n"+tests[0].req, "{target}", rig.target))
				res := readUntilClosed(t, c, 2)
				b, _ := io.ReadAll(res[0].Body)
				if res[0].StatusCode != 200 || string(b) != "ok" || res[1].StatusCode != 400 {
					t.Errorf("got %d %q then %d, want 200 \"ok\" then 400", res[0].StatusCode, b, res[1].StatusCode)
				}
				if _, reqs := rig.app.snapshot(); len(reqs) != 1 || !strings.HasPrefix(reqs[0], "GET /x?first ") {
					t.Errorf("app saw %q, want only GET /x?first", reqs)
				}
			})
		})
	}
}

// TestClientBodyErrorIsTheClients: a body that turns out malformed or cut
// short after it began to reach the app is the client's fault: 400 (not a
// 502 that blames the app), the connection closed, and the record says
// "client".
func TestClientBodyErrorIsTheClients(t *testing.T) {
	rigs := framingRigs(t, Options{})
	tests := []struct {
		name, head string
		rest       func(c net.Conn)
		wantErr    string
	}{
		{
			name: "malformed chunk mid-body",
			head: "POST {target} HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
			rest: func(c net.Conn) { io.WriteString(c, "-1\r\nworld\r\n0\r\n\r\n") }, wantErr: `chunk size "-1"`,
		},
		{
			name: "chunk data without CRLF mid-body",
			head: "POST {target} HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
			rest: func(c net.Conn) { io.WriteString(c, "5\r\nworldX\r\n0\r\n\r\n") }, wantErr: "not followed by CRLF",
		},
		{
			name: "client hangs up mid-body",
			head: "POST {target} HTTP/1.1\r\nHost: app\r\nContent-Length: 100\r\n\r\nhello",
			rest: func(c net.Conn) { c.(interface{ CloseWrite() error }).CloseWrite() }, wantErr: "unexpected EOF",
		},
	}
	for _, rig := range rigs {
		t.Run(rig.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					c := rig.dial(t)
					io.WriteString(c, strings.ReplaceAll(tt.head, "{target}", strings.Replace(rig.target, "/x", "/mid", 1)))
					select {
					case <-rig.app.started:
					case <-time.After(10 * time.Second):
						t.Fatal("the first body bytes never reached the app")
					}
					tt.rest(c)
					res := readUntilClosed(t, c, 1)[0]
					b, _ := io.ReadAll(res.Body)
					if res.StatusCode != http.StatusBadRequest || res.Header.Get("X-Tapwire-Error") != "client" {
						t.Errorf("got %d (X-Tapwire-Error %q) %q, want 400 blaming the client", res.StatusCode, res.Header.Get("X-Tapwire-Error"), b)
					}
					r := rig.rec.next(t)
					if !strings.HasPrefix(r.Error, "client: ") || !strings.Contains(r.Error, tt.wantErr) {
						t.Errorf("record error %q, want it to start with \"client: \" and say %q", r.Error, tt.wantErr)
					}
				})
			}
		})
	}
}

func TestHeaderLimit(t *testing.T) {
	huge := strings.Repeat("a", 1<<20)
	tests := []struct {
		name    string
		limit   int
		req     string
		headLen int // instead of req: a head of exactly this many bytes
		want    int
	}{
		{"1 MiB header value", 0, "GET {target} HTTP/1.1\r\nHost: app\r\nX-Big: " + huge + "\r\n\r\n", 0, 431},
		{"1 MiB URL", 0, "GET {target}?" + huge + " HTTP/1.1\r\nHost: app\r\n\r\n", 0, 431},
		{"1 MiB of header lines without an end", 0, "GET {target} HTTP/1.1\r\n" + strings.Repeat("X-A: b\r\n", 1<<17), 0, 431},
		{"64 KiB header value passes the default", 0, "GET {target} HTTP/1.1\r\nHost: app\r\nX-Big: " + huge[:60<<10] + "\r\n\r\n", 0, 200},
		{"a head of the limit passes", 4096, "", 4096, 200},
		{"a head one byte over the limit", 4096, "", 4097, 431},
		{"trailers over the limit", 4096, "POST {target} HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: " + huge[:5000] + "\r\n\r\n", 0, 400},
	}
	rigs := map[int][]framingRig{0: framingRigs(t, Options{}), 4096: framingRigs(t, Options{MaxHeaderBytes: 4096})}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, rig := range rigs[tt.limit] {
				t.Run(rig.name, func(t *testing.T) {
					before := rig.app.settled()
					c := rig.dial(t)
					req := strings.ReplaceAll(tt.req, "{target}", rig.target)
					if tt.headLen > 0 {
						req = exactHead(rig.target, tt.headLen)
					}
					go io.WriteString(c, req) // the proxy may answer before all is written
					var res *http.Response
					if tt.want == 200 {
						c.SetReadDeadline(time.Now().Add(10 * time.Second))
						var err error
						if res, err = http.ReadResponse(bufio.NewReader(c), nil); err != nil {
							t.Fatal(err)
						}
					} else {
						res = readUntilClosed(t, c, 1)[0]
					}
					if res.StatusCode != tt.want {
						b, _ := io.ReadAll(res.Body)
						t.Errorf("got %d %.200q, want %d", res.StatusCode, b, tt.want)
					}
					after, reqs := rig.app.snapshot()
					if tt.want == 431 && after != before {
						t.Errorf("the app received %d bytes (requests %.100q), want nothing", after-before, reqs)
					}
				})
			}
		})
	}
}

// exactHead is a GET of target whose head is exactly n bytes.
func exactHead(target string, n int) string {
	start, end := "GET "+target+" HTTP/1.1\r\nHost: app\r\nX-Pad: ", "\r\n\r\n"
	return start + strings.Repeat("p", n-len(start)-len(end)) + end
}

// TestAcceptsGoodFraming pins what the guard must pass: the framings a
// conforming client sends, on one keep-alive connection.
func TestAcceptsGoodFraming(t *testing.T) {
	rigs := framingRigs(t, Options{})
	const chunked = "POST {target} HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n"
	tests := []struct {
		name, req, want string
	}{
		{"no body", "GET {target} HTTP/1.1\r\nHost: app\r\n\r\n", `GET /x ""`},
		{"content-length", "POST {target} HTTP/1.1\r\nHost: app\r\nContent-Length: 5\r\n\r\nhello", `POST /x "hello"`},
		{"equal content-lengths", "POST {target} HTTP/1.1\r\nHost: app\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", `POST /x "hello"`},
		{"chunked", chunked + "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", `POST /x "hello world"`},
		{"chunked upper-case hex, extension, trailer", chunked + "0A;name=\"v\"\r\n0123456789\r\n0\r\nX-Sum: 1\r\n\r\n", `POST /x "0123456789"`},
		{"chunk size with trailing whitespace", chunked + "5 \t\r\nhello\r\n0\r\n\r\n", `POST /x "hello"`},
		{"bare LF header lines", "POST {target} HTTP/1.1\nHost: app\nContent-Length: 2\n\nhi", `POST /x "hi"`},
		{"body bytes that look like a bad head", "POST {target} HTTP/1.1\r\nHost: app\r\nContent-Length: 41\r\n\r\nGET / HTTP/1.1\r\nContent-Length: x\r\n\r\n\r\n\r\n", `POST /x "GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n\r\n\r\n"`},
	}
	for _, rig := range rigs {
		t.Run(rig.name, func(t *testing.T) {
			c := rig.dial(t)
			c.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			for i, tt := range tests {
				io.WriteString(c, strings.ReplaceAll(tt.req, "{target}", rig.target))
				res, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("%s: %v", tt.name, err)
				}
				b, _ := io.ReadAll(res.Body)
				if res.StatusCode != 200 || string(b) != "ok" {
					t.Errorf("%s: got %d %q, want 200 ok", tt.name, res.StatusCode, b)
				}
				if _, reqs := rig.app.snapshot(); len(reqs) != i+1 || !strings.HasPrefix(reqs[i], tt.want+" ") {
					t.Errorf("%s: app saw %q, want %s last", tt.name, reqs, tt.want)
				}
			}
		})
	}
}

// TestDripWithContentLength: a response with a Content-Length that the app
// writes slowly reaches the client as it is written, not when a buffer
// fills or the body ends. The app writes the rest only after the client
// read the first bytes, so the test cannot pass by luck.
func TestDripWithContentLength(t *testing.T) {
	release := make(chan struct{})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		io.WriteString(w, "first")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "-rest")
	}))
	t.Cleanup(app.Close) // after the proxies close, which ends a stuck handler
	inAddr, _ := startInbound(t, app.URL, false, Options{})
	out, err := NewOutbound(Options{})
	if err != nil {
		t.Fatal(err)
	}
	outURL, _ := url.Parse("http://" + serve(t, out))
	tests := []struct {
		name   string
		client *http.Client
		url    string
	}{
		{"inbound", noProxyClient(), "http://" + inAddr + "/drip"},
		{"outbound", &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(outURL), DisableKeepAlives: true}}, app.URL + "/drip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			type got struct {
				res   *http.Response
				first []byte
				err   error
			}
			read := make(chan got, 1)
			go func() {
				res, err := tt.client.Get(tt.url)
				if err != nil {
					read <- got{err: err}
					return
				}
				first := make([]byte, 5)
				_, err = io.ReadFull(res.Body, first)
				read <- got{res, first, err}
			}()
			var g got
			select {
			case g = <-read:
			case <-time.After(10 * time.Second): // a deadlock breaker: the app waits for this read
				t.Fatal("the head and first bytes never reached the client while the app waited: the response was buffered")
			}
			if g.err != nil || string(g.first) != "first" {
				t.Fatalf("first bytes %q, %v", g.first, g.err)
			}
			res := g.res
			defer res.Body.Close()
			if res.ContentLength != 10 {
				t.Errorf("Content-Length %d, want 10", res.ContentLength)
			}
			release <- struct{}{} // only now may the app write the rest
			rest, err := io.ReadAll(res.Body)
			if err != nil || string(rest) != "-rest" {
				t.Errorf("rest %q, %v; want -rest", rest, err)
			}
		})
	}
}

// TestEarlyAnswerToUpload: an app that answers before it read the whole
// request body (413 to a large upload) and closes: the client gets the
// app's answer, not a 502.
func TestEarlyAnswerToUpload(t *testing.T) {
	apps := []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"net/http app", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
			http.Error(w, "upload too large", http.StatusRequestEntityTooLarge)
		}},
		{"app that closes at once", func(w http.ResponseWriter, r *http.Request) {
			c, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			brw.WriteString("HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 17\r\nConnection: close\r\n\r\nupload too large\n")
			brw.Flush()
			c.Close()
		}},
	}
	for _, a := range apps {
		t.Run(a.name, func(t *testing.T) {
			app := httptest.NewServer(a.handler)
			t.Cleanup(app.Close)
			inAddr, _ := startInbound(t, app.URL, false, Options{})
			out, err := NewOutbound(Options{})
			if err != nil {
				t.Fatal(err)
			}
			outAddr := serve(t, out)
			for _, via := range []struct{ name, addr, target string }{
				{"inbound", inAddr, "/upload"},
				{"outbound", outAddr, app.URL + "/upload"},
			} {
				t.Run(via.name, func(t *testing.T) {
					c, err := net.Dial("tcp", via.addr)
					if err != nil {
						t.Fatal(err)
					}
					defer c.Close()
					const size = 64 << 20
					fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: app\r\nContent-Length: %d\r\n\r\n", via.target, size)
					go func() { // the upload goes on until goproxy stops reading it
						chunk := make([]byte, 64<<10)
						for n := 0; n < size; n += len(chunk) {
							if _, err := c.Write(chunk); err != nil {
								return
							}
						}
					}()
					c.SetReadDeadline(time.Now().Add(10 * time.Second))
					res, err := http.ReadResponse(bufio.NewReader(c), nil)
					if err != nil {
						t.Fatalf("read response: %v", err)
					}
					b, _ := io.ReadAll(res.Body)
					if res.StatusCode != http.StatusRequestEntityTooLarge || string(b) != "upload too large\n" {
						t.Errorf("got %d %q (X-Tapwire-Error %q), want the app's 413 \"upload too large\"", res.StatusCode, b, res.Header.Get("X-Tapwire-Error"))
					}
				})
			}
		})
	}
}

// TestBinaryAnsweredAtOnce: bytes that cannot start a request line get 400
// as soon as they arrive, not when the client has sent the header limit or
// the read timeout passes; nothing reaches the app. (The sniffing inbound
// listener relays what is not HTTP to the app as bytes, by design, so it is
// not among these rigs.)
func TestBinaryAnsweredAtOnce(t *testing.T) {
	for _, rig := range framingRigs(t, Options{}) {
		if rig.name == "inbound sniffing" {
			continue
		}
		t.Run(rig.name, func(t *testing.T) {
			c := rig.dial(t)
			// No line end and far below the header limit: only the bytes
			// themselves can make the guard answer.
			io.WriteString(c, "\xff\x00\x13binary")
			res := readUntilClosed(t, c, 1)[0]
			if res.StatusCode != http.StatusBadRequest {
				t.Errorf("got %d, want 400", res.StatusCode)
			}
			if n, _ := rig.app.snapshot(); n != 0 {
				t.Errorf("the app received %d bytes, want nothing", n)
			}
		})
	}
}
