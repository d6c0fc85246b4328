package mock

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/h1"
)

// netHTTPRequest is the Request that Server.serve builds from net/http's
// reading of raw in mode m, or nil when net/http refuses it.
func netHTTPRequest(raw []byte, m *h1Mode) *Request {
	r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return nil
	}
	req := &Request{Method: r.Method, Path: r.URL.EscapedPath(), RawQuery: r.URL.RawQuery, Headers: headersOf(r.Header), ClientIP: "192.0.2.1"}
	switch {
	case m.proxy:
		req.Scheme, req.Host = r.URL.Scheme, r.URL.Host
	case m.fixed:
		req.Scheme, req.Host = m.scheme, m.host
	default:
		req.Scheme, req.Host = m.scheme, r.Host
		if req.Host == "" {
			req.Host = m.host
		}
	}
	return req
}

// h1Request is the Request that the HTTP/1.1 loop builds from raw, or nil
// when it refuses it.
func h1Request(raw []byte, m *h1Mode) *Request {
	hc := &h1Conn{m: m, clientIP: "192.0.2.1"}
	end := h1.HeadEnd(raw)
	if end < 0 || h1.ParseRequest(raw[:end], &hc.head) != nil {
		return nil
	}
	req, msg := hc.request()
	if msg != "" {
		return nil
	}
	return req
}

// comparable drops the framing fields, which never count in a match and
// which net/http keeps or removes by its own rules.
func comparable(r *Request) *Request {
	c := *r
	c.Headers = nil
	for _, h := range r.Headers {
		if h.Name != "Content-Length" && h.Name != "Transfer-Encoding" {
			c.Headers = append(c.Headers, h)
		}
	}
	return &c
}

var h1Modes = []*h1Mode{
	{proxy: true},
	{scheme: "http", host: "api.example.com", fixed: true},
	{scheme: "https", host: "pay.example.com:443"},
}

// TestH1RequestLikeNetHTTP: the requests the HTTP/1.1 loop reads are the
// ones net/http's server read for the same bytes, so that a recording
// matches the same way whichever served the connection.
func TestH1RequestLikeNetHTTP(t *testing.T) {
	for _, raw := range h1Seeds {
		for _, m := range h1Modes {
			ours, theirs := h1Request([]byte(raw), m), netHTTPRequest([]byte(raw), m)
			if ours == nil {
				if target := strings.Fields(raw)[1]; m.proxy && !strings.Contains(target, "://") {
					continue // not absolute form at the proxy: refused, as serveProxy does
				}
				t.Errorf("%+v %q: refused; net/http reads %+v", m, raw, theirs)
				continue
			}
			if theirs == nil || !reflect.DeepEqual(comparable(ours), comparable(theirs)) {
				t.Errorf("%+v %q:\nours     %+v\nnet/http %+v", m, raw, ours, theirs)
			}
		}
	}
}

var h1Seeds = []string{
	"GET /v1/items?limit=2&x=%20y HTTP/1.1\r\nHost: api.example.com\r\nuser-agent: curl\r\nX-B: 1\r\nx-a: 2\r\nX-B: 3\r\n\r\n",
	"POST http://api.example.com:8080/v1/a%2Fb/c~d?q HTTP/1.1\r\nHost: api.example.com:8080\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
	"GET /caf%C3%A9/%7euser/a;b=c HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET /a\"b/{x}|y^z` HTTP/1.1\r\nHost: h\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET http://user@h.example/x HTTP/1.1\r\nHost: h.example\r\n\r\n",
	"PUT /x HTTP/1.0\r\n\r\n",
	"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nX-Amz-Target: Svc.Op\r\n\r\n0\r\n\r\n",
}

// FuzzH1Request: for any request both accept, the HTTP/1.1 loop and
// net/http read the same Request.
func FuzzH1Request(f *testing.F) {
	for _, s := range h1Seeds {
		f.Add([]byte(s), uint8(0))
	}
	f.Fuzz(func(t *testing.T, raw []byte, sel uint8) {
		m := h1Modes[int(sel)%len(h1Modes)]
		ours := h1Request(raw, m)
		if ours == nil {
			return // the strict parser refuses more than net/http (internal/h1 says why)
		}
		theirs := netHTTPRequest(raw, m)
		if theirs == nil {
			// A target net/http cannot parse as a URL (RFC 3986) is
			// refused by the loop too; anything else is a disagreement.
			t.Fatalf("%+v %q: net/http refuses what the loop reads as %+v", m, raw, ours)
		}
		if !reflect.DeepEqual(comparable(ours), comparable(theirs)) {
			t.Fatalf("%+v %q:\nours     %+v\nnet/http %+v", m, raw, ours, theirs)
		}
	})
}

// startReverse serves e's mock on a --reverse listener for host.
func startReverse(t *testing.T, e *mockEnv, host string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.srv.ServeReverse(ln, host) }()
	t.Cleanup(func() { // before startMock's cleanup: stop the server first
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.srv.Shutdown(ctx)
		if err := <-done; err != nil {
			t.Errorf("ServeReverse: %v", err)
		}
	})
	return ln.Addr().String()
}

// rawExchange writes req on a fresh connection and reads until the mock
// closes it or goes quiet for a moment.
func rawExchange(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	buf := make([]byte, 64<<10)
	for {
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := c.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			return out.String()
		}
	}
}

func h1Recs() []*capture.Record {
	a := rec(0, "GET", "http://api.example.com/v1/items?limit=2", "", `["a","b"]`)
	a.HTTP.Res.Headers = capture.Headers{{Name: "content-type", Value: "application/json"}, {Name: "X-Multi", Value: "1"},
		{Name: "X-Multi", Value: "2"}, {Name: "Connection", Value: "close"}, {Name: "Date", Value: "Tue, 01 Jul 2025 00:00:00 GMT"}}
	b := rec(1, "POST", "http://api.example.com/v1/charges", `{"amount":100,"nonce":"1c7f6a2e-55b1-4c1e-9d3a-000000000001"}`, `{"ok":true}`)
	c := rec(2, "GET", "http://api.example.com/v1/stream", "", "data")
	c.HTTP.Res.Trailers = capture.Headers{{Name: "X-Checksum", Value: "abc"}}
	return []*capture.Record{a, b, c}
}

// TestH1RawSockets drives the HTTP/1.1 loop byte by byte on the reverse
// and proxy listeners: pipelining, chunked bodies, 100-continue, HEAD,
// HTTP/1.0, trailers, and the requests it must refuse.
func TestH1RawSockets(t *testing.T) {
	e := startMock(t, h1Recs(), Options{})
	rev := startReverse(t, e, "api.example.com")
	charge := `{"amount":100,"nonce":"99999999-55b1-4c1e-9d3a-000000000001"}`
	tests := []struct {
		name, addr, req string
		want            []string // in this order
		not             []string
	}{
		{"pipelined", rev,
			"GET /v1/items?limit=2 HTTP/1.1\r\nHost: x\r\n\r\n" +
				"POST /v1/charges HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " + fmt.Sprint(len(charge)) + "\r\n\r\n" + charge +
				"GET /v1/items?limit=2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			[]string{"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Multi: 1\r\nX-Multi: 2\r\nDate: Tue, 01 Jul 2025 00:00:00 GMT\r\nContent-Length: 9\r\n\r\n[\"a\",\"b\"]",
				"HTTP/1.1 200 OK\r\n", "Content-Length: 11\r\n", "\r\n\r\n{\"ok\":true}",
				"Connection: close\r\n\r\n[\"a\",\"b\"]"}, nil},
		{"chunked body", rev,
			"POST /v1/charges HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
				"a\r\n" + charge[:10] + "\r\n" + fmt.Sprintf("%x", len(charge)-10) + "\r\n" + charge[10:] + "\r\n0\r\n\r\n",
			[]string{"HTTP/1.1 200 OK\r\n", "{\"ok\":true}"}, nil},
		{"expect 100-continue", rev,
			"POST /v1/charges HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: " + fmt.Sprint(len(charge)) + "\r\nConnection: close\r\n\r\n" + charge,
			[]string{"HTTP/1.1 200 OK\r\n", "{\"ok\":true}"}, nil},
		{"head", rev, "HEAD /v1/items?limit=2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			[]string{"HTTP/1.1 404 Not Found\r\n", "Content-Length: "}, []string{"tapwire mock: no recording"}},
		{"HTTP/1.0", rev, "GET /v1/items?limit=2 HTTP/1.0\r\n\r\n",
			[]string{"HTTP/1.1 200 OK\r\n", "Connection: close\r\n", "[\"a\",\"b\"]"}, nil},
		{"trailers", rev, "GET /v1/stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			[]string{"Transfer-Encoding: chunked\r\n", "\r\n\r\n4\r\ndata\r\n0\r\nX-Checksum: abc\r\n\r\n"}, []string{"Content-Length"}},
		{"miss", rev, "GET /v1/other HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			[]string{"HTTP/1.1 404 Not Found\r\n", "X-Tapwire-Mock-Miss: ", "tapwire mock: no recording matches GET http://api.example.com/v1/other\n"}, nil},
		{"absolute form at the proxy", e.proxy.Host, "GET http://api.example.com/v1/items?limit=2 HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n",
			[]string{"HTTP/1.1 200 OK\r\n", "[\"a\",\"b\"]"}, nil},
		{"origin form at the proxy", e.proxy.Host, "GET /v1/items HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
			[]string{"HTTP/1.1 400 Bad Request\r\n", "Connection: close\r\n", "send absolute-form requests"}, nil},
		{"CL and TE", rev, "POST /v1/charges HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /v1/items?limit=2 HTTP/1.1\r\nHost: x\r\n\r\n",
			[]string{"HTTP/1.1 400 Bad Request\r\n", "both Content-Length and Transfer-Encoding"}, []string{"200 OK"}},
		{"bad chunk", rev, "POST /v1/charges HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n\r\n",
			[]string{"HTTP/1.1 400 Bad Request\r\n"}, []string{"200 OK"}},
		{"header limit", rev, "GET /v1/items?limit=2 HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 70<<10) + "\r\n\r\n",
			[]string{"HTTP/1.1 431 Request Header Fields Too Large\r\n"}, []string{"200 OK"}},
		{"binary", rev, "\x16\x03\x01\x00\x05hello", []string{"HTTP/1.1 400 Bad Request\r\n"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := rawExchange(t, tt.addr, tt.req)
			rest := got
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("want %q (in order) in:\n%s", w, got)
				}
				rest = rest[i+len(w):]
			}
			for _, n := range tt.not {
				if strings.Contains(got, n) {
					t.Errorf("unwanted %q in:\n%s", n, got)
				}
			}
		})
	}
}

// TestH1HandOff: what the loop does not answer itself reaches net/http
// with every byte: HTTP/2 with prior knowledge on a reverse listener, and
// an h2c upgrade.
func TestH1HandOff(t *testing.T) {
	e := startMock(t, h1Recs(), Options{})
	rev := startReverse(t, e, "api.example.com")
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://" + rev + "/v1/items?limit=2")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || string(b) != `["a","b"]` {
		t.Errorf("h2c prior knowledge: %s %q", resp.Proto, b)
	}
	got := rawExchange(t, rev, "GET /v1/items?limit=2 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 101 Switching Protocols\r\n") {
		t.Errorf("h2c upgrade: %.200q", got)
	}
}

// TestH1ShutdownIdle: Shutdown does not wait for a keep-alive connection
// that sits idle between requests: it is closed at once.
func TestH1ShutdownIdle(t *testing.T) {
	e := startMock(t, h1Recs(), Options{})
	rev := startReverse(t, e, "api.example.com")
	idle, err := net.Dial("tcp", rev)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	io.WriteString(idle, "GET /v1/items?limit=2 HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(idle)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("first answer: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown took %v with an idle connection", d)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Error("the idle connection is still open after Shutdown")
	}
}
