package proxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// connectTLS opens a CONNECT tunnel to target through the proxy at proxyURL and runs a TLS handshake in
// it with client. It returns the TLS connection (nil on error) and the handshake's error.
func connectTLS(t *testing.T, proxyURL *url.URL, target string, client *tls.Config) (*tls.Conn, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", proxyURL.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT %s: %v %v", target, res, err)
	}
	tc := tls.Client(c, client)
	if err := tc.Handshake(); err != nil {
		return nil, err
	}
	return tc, nil
}

// TestOutboundUnwrapSNI: through the real proxy, a ClientHello whose SNI is not the CONNECT host gets no
// leaf; a client that CONNECTs to an address and sends the name as SNI is served as before.
func TestOutboundUnwrapSNI(t *testing.T) {
	proxyURL, app, upstream, _ := outboundSetup(t, true)
	port := upstream.URL[strings.LastIndexByte(upstream.URL, ':')+1:]
	for _, tt := range []struct{ name, target, sni string }{
		{"another name", "localhost:" + port, "bank.example"},
		{"wildcard", "localhost:" + port, "*.example.com"},
		{"wildcard, IP CONNECT", "127.0.0.1:" + port, "*.localhost"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// The client would accept any leaf: that it gets none is the point.
			if _, err := connectTLS(t, proxyURL, tt.target, &tls.Config{ServerName: tt.sni, InsecureSkipVerify: true}); err == nil {
				t.Errorf("CONNECT %s with SNI %q: handshake succeeded, want it refused", tt.target, tt.sni)
			}
		})
	}

	// CONNECT to an address with a name as SNI (a client that resolved the name itself).
	tc, err := connectTLS(t, proxyURL, "127.0.0.1:"+port, &tls.Config{ServerName: "localhost", RootCAs: app.Pool()})
	if err != nil {
		t.Fatalf("CONNECT 127.0.0.1 with SNI localhost: %v", err)
	}
	fmt.Fprintf(tc, "GET /by-address HTTP/1.1\r\nHost: localhost:%s\r\nConnection: close\r\n\r\n", port)
	res, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(b), `"path":"/by-address"`) {
		t.Errorf("got %s %s", res.Status, b)
	}
}
