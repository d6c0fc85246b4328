package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/proxy"

	"github.com/tapwire/tapwire/internal/capture"
)

func TestSocksHandshake(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		auth    *SocksAuth
		target  string
		reply   []byte
		wantErr error
	}{
		{"socks5 domain", []byte{5, 1, 0, 5, 1, 0, 3, 9, 'l', 'o', 'c', 'a', 'l', 'h', 'o', 's', 't', 0x01, 0xbb}, nil, "localhost:443",
			[]byte{5, 0, 5, 0, 0, 1, 0, 0, 0, 0, 0, 0}, nil},
		{"socks5 ipv4", []byte{5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0, 80}, nil, "127.0.0.1:80", []byte{5, 0, 5, 0, 0, 1, 0, 0, 0, 0, 0, 0}, nil},
		{"socks5 ipv6", append(append([]byte{5, 1, 0, 5, 1, 0, 4}, net.ParseIP("::1")...), 0, 80), nil, "[::1]:80", []byte{5, 0, 5, 0, 0, 1, 0, 0, 0, 0, 0, 0}, nil},
		{"socks5 bind refused", []byte{5, 1, 0, 5, 2, 0, 1, 127, 0, 0, 1, 0, 80}, nil, "", []byte{5, 0, 5, 7, 0, 1, 0, 0, 0, 0, 0, 0}, errSocksCommand},
		{"socks5 password", []byte{5, 1, 2, 1, 1, 'u', 2, 'p', 'w', 5, 1, 0, 1, 10, 0, 0, 1, 0, 22}, &SocksAuth{"u", "pw"}, "10.0.0.1:22",
			[]byte{5, 2, 1, 0, 5, 0, 0, 1, 0, 0, 0, 0, 0, 0}, nil},
		{"socks5 wrong password", []byte{5, 1, 2, 1, 1, 'u', 2, 'n', 'o'}, &SocksAuth{"u", "pw"}, "", []byte{5, 2, 1, 1}, errSocksAuth},
		{"socks5 no-auth when a password is required", []byte{5, 1, 0}, &SocksAuth{"u", "pw"}, "", []byte{5, 0xff}, errSocksAuth},
		{"socks5 bad host name", []byte{5, 1, 0, 5, 1, 0, 3, 3, 'a', '/', 'b', 0, 80}, nil, "", []byte{5, 0, 5, 8, 0, 1, 0, 0, 0, 0, 0, 0}, errSocksAddr},
		{"socks4", []byte{4, 1, 0, 80, 127, 0, 0, 1, 'u', 0}, nil, "127.0.0.1:80", []byte{0, 0x5a, 0, 80, 127, 0, 0, 1}, nil},
		{"socks4a", []byte{4, 1, 1, 0xbb, 0, 0, 0, 1, 0, 'e', 'x', '.', 'c', 'o', 'm', 0}, nil, "ex.com:443", []byte{0, 0x5a, 1, 0xbb, 0, 0, 0, 1}, nil},
		{"socks4 with a password required", []byte{4, 1, 0, 80, 127, 0, 0, 1, 0}, &SocksAuth{"u", "p"}, "", []byte{0, 0x5b, 0, 0, 0, 0, 0, 0}, errSocksAuth},
		{"version 6", []byte{6}, nil, "", nil, errSocksVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			got, err := socksHandshake(bufio.NewReader(bytes.NewReader(tt.in)), &out, tt.auth)
			if tt.wantErr != nil {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr.Error()) {
					t.Errorf("err = %v, want %v", err, tt.wantErr)
				}
			} else if err != nil || got != tt.target {
				t.Errorf("got %q, %v; want %q", got, err, tt.target)
			}
			if !bytes.Equal(out.Bytes(), tt.reply) {
				t.Errorf("replied % x, want % x", out.Bytes(), tt.reply)
			}
		})
	}
}

func FuzzSocksHandshake(f *testing.F) {
	f.Add([]byte{5, 1, 0, 5, 1, 0, 3, 1, 'a', 0, 80}, false)
	f.Add([]byte{4, 1, 0, 80, 0, 0, 0, 1, 0, 'a', 0}, false)
	f.Add([]byte{5, 1, 2, 1, 1, 'u', 1, 'p', 5, 1, 0, 1, 1, 2, 3, 4, 0, 1}, true)
	f.Fuzz(func(t *testing.T, b []byte, withAuth bool) {
		var auth *SocksAuth
		if withAuth {
			auth = &SocksAuth{"u", "p"}
		}
		target, err := socksHandshake(bufio.NewReader(bytes.NewReader(b)), io.Discard, auth)
		if err == nil {
			host, port, e := net.SplitHostPort(target)
			if e != nil || host == "" || port == "0" {
				t.Fatalf("accepted a bad target %q", target)
			}
		}
	})
}

func TestOutboundSocks5(t *testing.T) {
	proxyURL, app, upstream, rec := outboundSetup(t, true)
	dialer, err := proxy.SOCKS5("tcp", proxyURL.Host, nil, proxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	// HTTPS through SOCKS5 with a host name, unwrapped like CONNECT.
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialer.(proxy.ContextDialer).DialContext(ctx, network, addr)
		},
		TLSClientConfig: &tls.Config{RootCAs: app.Pool()},
	}}
	defer client.CloseIdleConnections()
	u := strings.Replace(upstream.URL, "127.0.0.1", "localhost", 1) + "/via-socks"
	res, err := client.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(b), `"path":"/via-socks"`) {
		t.Errorf("got %s", b)
	}
	r := rec.next(t)
	if r.Net.Proxy != "connect" || r.HTTP.Req.URL != u || r.Net.TLS == nil || r.Net.TLS.SNI != "localhost" {
		t.Errorf("record %s %s %+v", r.Net.Proxy, r.HTTP.Req.URL, r.Net.TLS)
	}

	// A raw TCP protocol through SOCKS5 is relayed and recorded as bytes.
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		c, err := echo.Accept()
		if err != nil {
			return
		}
		io.Copy(c, c)
		c.Close()
	}()
	c, err := dialer.Dial("tcp", echo.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "PING\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 6)
	io.ReadFull(c, got)
	c.(interface{ CloseWrite() error }).CloseWrite()
	io.Copy(io.Discard, c)
	c.Close()
	if string(got) != "PING\r\n" {
		t.Fatalf("echo %q", got)
	}
	r = rec.next(t)
	if r.Kind != capture.KindTCP || r.Net.Proxy != "socks" || r.TCP.BytesUp != 6 || r.TCP.BytesDown != 6 {
		t.Errorf("record %s %s %+v", r.Kind, r.Net.Proxy, r.TCP)
	}
}
