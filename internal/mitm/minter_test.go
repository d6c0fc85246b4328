package mitm_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/mitm"
	"github.com/tapwire/tapwire/internal/testca"
)

func newMinter(t testing.TB, ca *mitm.CA, opts mitm.Options) *mitm.Minter {
	t.Helper()
	m, err := mitm.NewMinter(ca, opts)
	if err != nil {
		t.Fatalf("NewMinter: %v", err)
	}
	return m
}

func loadTestCA(t testing.TB, tca *testca.CA) *mitm.CA {
	t.Helper()
	ca, err := mitm.ParseCA(tca.CertPEM(), tca.KeyPEM(t))
	if err != nil {
		t.Fatalf("ParseCA: %v", err)
	}
	return ca
}

func mustLeaf(t testing.TB, m *mitm.Minter, host string) *tls.Certificate {
	t.Helper()
	c, err := m.Leaf(host)
	if err != nil {
		t.Fatalf("Leaf(%q): %v", host, err)
	}
	return c
}

func clientConfig(roots *x509.CertPool, serverName string) *tls.Config {
	return &tls.Config{RootCAs: roots, ServerName: serverName}
}

// handshake runs a TLS handshake between server and client over loopback TCP and returns the client's
// error, or the server's when the client saw none. (net.Pipe is unbuffered: when a verifying client fails
// and writes its alert while the server writes its flight, both block forever.)
func handshake(t testing.TB, server, client *tls.Config) error {
	t.Helper()
	serr, cerr := handshakeErrs(t, server, client)
	if cerr == nil && serr != nil {
		return serr
	}
	return cerr
}

// handshakeErrs runs a TLS handshake like handshake and returns the server's and the client's errors.
func handshakeErrs(t testing.TB, server, client *tls.Config) (serverErr, clientErr error) {
	t.Helper()
	sc, cc := tcpPair(t)
	defer sc.Close()
	defer cc.Close()
	serr := make(chan error, 1)
	go func() {
		err := tls.Server(sc, server).Handshake()
		sc.Close() // unblock the client if the server failed
		serr <- err
	}()
	cerr := tls.Client(cc, client).Handshake()
	cc.Close()
	return <-serr, cerr
}

// tcpPair returns the two ends of a loopback TCP connection, with a deadline so that a broken test fails
// instead of hanging.
func tcpPair(t testing.TB) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		client.Close()
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	server.SetDeadline(deadline)
	client.SetDeadline(deadline)
	return server, client
}

// opensslClient connects openssl s_client, sending SNI sni (also the CONNECT host), trusting only caFile and verifying the name
// verify, to a TLS server on loopback that uses m. It returns s_client's output and exit error.
func opensslClient(t *testing.T, m *mitm.Minter, caFile, sni, verify string) ([]byte, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		tc := tls.Server(c, m.ServerConfig(sni))
		if err := tc.Handshake(); err != nil {
			done <- err
			return
		}
		done <- nil
		// Best effort: s_client may already have quit on its empty stdin. Close sends close_notify,
		// without which s_client reports an unexpected EOF.
		tc.Write([]byte("hello from tapwire\n"))
		tc.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/openssl", "s_client", "-connect", ln.Addr().String(),
		"-servername", sni, "-CAfile", caFile, "-verify_hostname", verify, "-verify_return_error", "-brief")
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	if herr := <-done; err == nil && herr != nil {
		t.Errorf("server side: %v", herr)
	}
	return out, err
}

func TestHandshake(t *testing.T) {
	tca := testca.New(t, testca.RSA(2048))
	m := newMinter(t, loadTestCA(t, tca), mitm.Options{})
	tests := []struct {
		name     string
		fallback string // the CONNECT host
		sni      string // "" sends none
		verify   string // the name the client checks
	}{
		{name: "SNI is the CONNECT host", fallback: "api.example.com:443", sni: "api.example.com", verify: "api.example.com"},
		{name: "SNI is the CONNECT host in other case", fallback: "API.Example.com.", sni: "api.example.COM", verify: "api.example.com"},
		{name: "IPv4 CONNECT host, name SNI", fallback: "10.1.2.3:443", sni: "api.example.com", verify: "api.example.com"},
		{name: "IPv6 CONNECT host, name SNI", fallback: "[2001:db8::1]:443", sni: "db.internal", verify: "db.internal"},
		{name: "no SNI, CONNECT host", fallback: "db.internal:443", verify: "db.internal"},
		{name: "IPv4 literal", fallback: "127.0.0.1:8443", verify: "127.0.0.1"},
		{name: "IPv6 literal", fallback: "[::1]:443", verify: "::1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got *x509.Certificate
			client := &tls.Config{
				ServerName:         tt.sni,
				InsecureSkipVerify: true, // verified below, against the name the test wants, with the CA only
				VerifyConnection: func(cs tls.ConnectionState) error {
					got = cs.PeerCertificates[0]
					_, err := got.Verify(x509.VerifyOptions{DNSName: tt.verify, Roots: tca.Pool()})
					return err
				},
			}
			if err := handshake(t, m.ServerConfig(tt.fallback), client); err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if got.Subject.CommonName != tt.verify {
				t.Errorf("leaf CN = %q, want %q", got.Subject.CommonName, tt.verify)
			}
		})
	}

	// A client that sends an IP as its server name sends no SNI (RFC 6066), so the fallback gives the leaf.
	if err := handshake(t, m.ServerConfig("127.0.0.1"), clientConfig(tca.Pool(), "127.0.0.1")); err != nil {
		t.Errorf("standard client verifying 127.0.0.1: %v", err)
	}
	if err := handshake(t, m.ServerConfig("api.example.com"), clientConfig(tca.Pool(), "api.example.com")); err != nil {
		t.Errorf("standard client verifying api.example.com: %v", err)
	}
	// The wrong name must fail: the client checks the leaf, not only the chain.
	var hostErr x509.HostnameError
	if err := handshake(t, m.ServerConfig("db.internal"), &tls.Config{RootCAs: tca.Pool(), ServerName: "127.0.0.2"}); !errors.As(err, &hostErr) {
		t.Errorf("client verifying 127.0.0.2 against a leaf for db.internal: err = %v, want a HostnameError", err)
	}
	// With no CONNECT host, the handshake fails, SNI or not.
	for _, sni := range []string{"", "api.example.com"} {
		if serr, _ := handshakeErrs(t, m.ServerConfig(""), &tls.Config{ServerName: sni, InsecureSkipVerify: true}); !errors.Is(serr, mitm.ErrNoHost) {
			t.Errorf("handshake with SNI %q and no CONNECT host: server err = %v, want %v", sni, serr, mitm.ErrNoHost)
		}
	}
}

// TestHandshakeSNIRefused: a ClientHello whose SNI is not the CONNECT host gets no leaf, neither for the
// SNI nor a wildcard; the client sees a failed handshake, not a certificate.
func TestHandshakeSNIRefused(t *testing.T) {
	tca := testca.New(t)
	m := newMinter(t, loadTestCA(t, tca), mitm.Options{})
	tests := []struct {
		name    string
		connect string
		sni     string
		want    error
	}{
		{name: "another name", connect: "api.example.com:443", sni: "bank.example.net", want: mitm.ErrSNIMismatch},
		{name: "a sibling name", connect: "api.example.com:443", sni: "www.example.com", want: mitm.ErrSNIMismatch},
		{name: "a parent name", connect: "api.example.com:443", sni: "example.com", want: mitm.ErrSNIMismatch},
		{name: "wildcard of the CONNECT domain", connect: "api.example.com:443", sni: "*.example.com", want: mitm.ErrBadHost},
		{name: "wildcard with an IP CONNECT host", connect: "10.1.2.3:443", sni: "*.example.com", want: mitm.ErrBadHost},
		{name: "bare wildcard", connect: "10.1.2.3:443", sni: "*", want: mitm.ErrBadHost},
		{name: "empty label", connect: "10.1.2.3:443", sni: "api..example.com", want: mitm.ErrBadHost},
		{name: "wildcard CONNECT host", connect: "*.example.com:443", sni: "*.example.com", want: mitm.ErrBadHost},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got *x509.Certificate
			client := &tls.Config{
				ServerName:         tt.sni,
				InsecureSkipVerify: true, // any certificate at all is a failure of this test
				VerifyConnection: func(cs tls.ConnectionState) error {
					got = cs.PeerCertificates[0]
					return nil
				},
			}
			serr, cerr := handshakeErrs(t, m.ServerConfig(tt.connect), client)
			if !errors.Is(serr, tt.want) {
				t.Errorf("server err = %v, want %v", serr, tt.want)
			}
			if cerr == nil {
				t.Errorf("client err = nil, want a failed handshake")
			}
			if got != nil {
				t.Errorf("client was shown a leaf for %v %v, want none", got.DNSNames, got.IPAddresses)
			}
		})
	}
	if got := m.Stats(); got.Minted != 0 || got.Cached != 0 {
		t.Errorf("stats after refused handshakes = %+v, want nothing minted", got)
	}
}

func TestLeafHost(t *testing.T) {
	tests := []struct {
		name    string
		connect string
		sni     string
		want    string
		wantErr error
	}{
		{name: "no SNI", connect: "db.internal:5432", want: "db.internal"},
		{name: "no SNI, IP", connect: "[::1]:443", want: "::1"},
		{name: "same name", connect: "api.example.com:443", sni: "api.example.com", want: "api.example.com"},
		{name: "same name, case and dot", connect: "API.example.com", sni: "api.EXAMPLE.com.", want: "api.example.com"},
		{name: "same IP", connect: "127.0.0.1:443", sni: "127.0.0.1", want: "127.0.0.1"},
		{name: "IP CONNECT, name SNI", connect: "192.0.2.7:443", sni: "api.example.com", want: "api.example.com"},
		{name: "IP CONNECT, punycode SNI", connect: "192.0.2.7:443", sni: "xn--bcher-kva.example", want: "xn--bcher-kva.example"},
		{name: "IP CONNECT, other IP SNI", connect: "192.0.2.7:443", sni: "192.0.2.8", wantErr: mitm.ErrSNIMismatch},
		{name: "name CONNECT, IP SNI", connect: "api.example.com:443", sni: "192.0.2.8", wantErr: mitm.ErrSNIMismatch},
		{name: "name CONNECT, other name", connect: "api.example.com:443", sni: "evil.example", wantErr: mitm.ErrSNIMismatch},
		{name: "wildcard SNI", connect: "api.example.com:443", sni: "*.example.com", wantErr: mitm.ErrBadHost},
		{name: "wildcard SNI, IP CONNECT", connect: "192.0.2.7:443", sni: "*.example.com", wantErr: mitm.ErrBadHost},
		{name: "inner wildcard", connect: "192.0.2.7:443", sni: "api.*.com", wantErr: mitm.ErrBadHost},
		{name: "space in SNI", connect: "192.0.2.7:443", sni: "a b.example", wantErr: mitm.ErrBadHost},
		{name: "no CONNECT host", connect: "", sni: "api.example.com", wantErr: mitm.ErrNoHost},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := mitm.LeafHost(tt.connect, tt.sni)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("LeafHost(%q, %q) = %q, %v; want error %v", tt.connect, tt.sni, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("LeafHost(%q, %q) = %q, %v; want %q", tt.connect, tt.sni, got, err, tt.want)
			}
		})
	}
}

func TestLeafFields(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	tca := testca.New(t, testca.Validity(now.Add(-24*time.Hour), now.Add(365*24*time.Hour)))
	ca := loadTestCA(t, tca)
	m := newMinter(t, ca, mitm.Options{Now: func() time.Time { return now }})

	long := strings.Repeat("a", 60) + ".example.com"
	tests := []struct {
		host    string
		wantCN  string
		wantDNS []string
		wantIP  string
	}{
		{host: "API.Example.com.", wantCN: "api.example.com", wantDNS: []string{"api.example.com"}},
		{host: long, wantCN: long[:64], wantDNS: []string{long}},
		{host: "10.1.2.3", wantCN: "10.1.2.3", wantIP: "10.1.2.3"},
		{host: "[2001:db8::1]:443", wantCN: "2001:db8::1", wantIP: "2001:db8::1"},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			c := mustLeaf(t, m, tt.host)
			leaf := c.Leaf
			if leaf == nil {
				t.Fatal("tls.Certificate.Leaf = nil, want the parsed leaf")
			}
			if got, want := len(c.Certificate), 1; got != want {
				t.Errorf("chain length = %d, want %d (the root CA is not sent)", got, want)
			}
			if leaf.Subject.CommonName != tt.wantCN {
				t.Errorf("CN = %q, want %q", leaf.Subject.CommonName, tt.wantCN)
			}
			if strings.Join(leaf.DNSNames, ",") != strings.Join(tt.wantDNS, ",") {
				t.Errorf("DNSNames = %q, want %q", leaf.DNSNames, tt.wantDNS)
			}
			var ips []string
			for _, ip := range leaf.IPAddresses {
				ips = append(ips, ip.String())
			}
			if got := strings.Join(ips, ","); got != tt.wantIP {
				t.Errorf("IPAddresses = %q, want %q", got, tt.wantIP)
			}
			if leaf.IsCA {
				t.Errorf("IsCA = true, want false")
			}
			if len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
				t.Errorf("ExtKeyUsage = %v, want [ServerAuth]", leaf.ExtKeyUsage)
			}
			if !bytes.Equal(leaf.AuthorityKeyId, ca.Cert.SubjectKeyId) || len(leaf.AuthorityKeyId) == 0 {
				t.Errorf("AuthorityKeyId = %x, want the CA's SubjectKeyId %x", leaf.AuthorityKeyId, ca.Cert.SubjectKeyId)
			}
			if got := leaf.SerialNumber.BitLen(); got > 129 || leaf.SerialNumber.Sign() <= 0 {
				t.Errorf("serial %x: %d bits, sign %d; want positive, at most 128 bits + 1", leaf.SerialNumber, got, leaf.SerialNumber.Sign())
			}
			if want := now.Add(-time.Hour); !leaf.NotBefore.Equal(want) {
				t.Errorf("NotBefore = %s, want %s", leaf.NotBefore, want)
			}
			if want := now.Add(7 * 24 * time.Hour); !leaf.NotAfter.Equal(want) {
				t.Errorf("NotAfter = %s, want %s", leaf.NotAfter, want)
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: tca.Pool(), CurrentTime: now}); err != nil {
				t.Errorf("verify against the CA: %v", err)
			}
		})
	}
	// Every leaf shares one key.
	if a, b := mustLeaf(t, m, "a.example"), mustLeaf(t, m, "b.example"); a.PrivateKey != b.PrivateKey {
		t.Errorf("leaves for two hosts have different keys, want one shared key")
	}
}

func TestLeafBadHost(t *testing.T) {
	m := newMinter(t, loadTestCA(t, testca.New(t)), mitm.Options{})
	for _, host := range []string{"", ":443", "[]", strings.Repeat("a", 254), "*.example.com", "*", "a..example", strings.Repeat("a", 64) + ".example"} {
		if c, err := m.Leaf(host); err == nil {
			t.Errorf("Leaf(%q) = %v, nil; want an error", host, c.Leaf.Subject)
		}
	}
	if _, err := m.Leaf(""); !errors.Is(err, mitm.ErrNoHost) {
		t.Errorf("Leaf(\"\") error = %v, want %v", err, mitm.ErrNoHost)
	}
	if _, err := m.Leaf("*.example.com"); !errors.Is(err, mitm.ErrBadHost) {
		t.Errorf("Leaf(\"*.example.com\") error = %v, want %v", err, mitm.ErrBadHost)
	}
}

func TestLeafCache(t *testing.T) {
	m := newMinter(t, loadTestCA(t, testca.New(t)), mitm.Options{})
	first := mustLeaf(t, m, "api.example.com")
	for _, host := range []string{"api.example.com", "API.example.com", "api.example.com.", "api.example.com:443"} {
		if got := mustLeaf(t, m, host); got != first {
			t.Errorf("Leaf(%q) minted anew, want the cached leaf", host)
		}
	}
	if got, want := m.Stats(), (mitm.Stats{Minted: 1, CacheHits: 4, Cached: 1}); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}

func TestLeafLRUEviction(t *testing.T) {
	m := newMinter(t, loadTestCA(t, testca.New(t)), mitm.Options{CacheSize: 3})
	a := mustLeaf(t, m, "a")
	mustLeaf(t, m, "b")
	mustLeaf(t, m, "c")
	mustLeaf(t, m, "a") // a is now the most recent; b the least
	mustLeaf(t, m, "d") // evicts b
	if got, want := m.Stats(), (mitm.Stats{Minted: 4, CacheHits: 1, Cached: 3}); got != want {
		t.Errorf("after a, b, c, a, d: Stats = %+v, want %+v", got, want)
	}
	for _, tt := range []struct {
		host       string
		wantMinted int64
	}{
		{"a", 4}, {"c", 4}, {"d", 4}, {"b", 5}, // b was evicted; minting it evicts a (LRU of a, c, d is a)
		{"c", 5}, {"a", 6},
	} {
		got := mustLeaf(t, m, tt.host)
		if s := m.Stats(); s.Minted != tt.wantMinted || s.Cached != 3 {
			t.Errorf("after Leaf(%q): Minted = %d, Cached = %d; want %d, 3", tt.host, s.Minted, s.Cached, tt.wantMinted)
		}
		if tt.host == "a" && tt.wantMinted == 4 && got != a {
			t.Errorf("Leaf(a) minted anew, want the cached leaf")
		}
	}
}

func TestLeafConcurrentMintsOnce(t *testing.T) {
	// An RSA CA makes the mint slow enough that the callers overlap.
	m := newMinter(t, loadTestCA(t, testca.New(t, testca.RSA(2048))), mitm.Options{})
	const n = 32
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		got   = make([]*tls.Certificate, n)
		errs  = make([]error, n)
	)
	for i := range n {
		wg.Go(func() {
			<-start
			got[i], errs[i] = m.Leaf("api.example.com")
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Leaf #%d: %v", i, errs[i])
		}
		if got[i] != got[0] {
			t.Errorf("Leaf #%d returned a different certificate from #0", i)
		}
	}
	if s := m.Stats(); s.Minted != 1 || s.Cached != 1 {
		t.Errorf("%d concurrent Leaf calls: Minted = %d, Cached = %d; want 1, 1", n, s.Minted, s.Cached)
	}
}

func TestSetCA(t *testing.T) {
	old, rotated := testca.New(t), testca.New(t)
	m := newMinter(t, loadTestCA(t, old), mitm.Options{})
	before := mustLeaf(t, m, "api.example.com")
	if got := m.CA().Cert; !got.Equal(old.Cert) {
		t.Errorf("CA() = %q, want the first CA %q", got.Subject, old.Cert.Subject)
	}
	m.SetCA(loadTestCA(t, rotated))
	if got := m.CA().Cert; !got.Equal(rotated.Cert) {
		t.Errorf("after SetCA: CA() = %q, want the rotated CA %q", got.Subject, rotated.Cert.Subject)
	}
	if got := m.Stats().Cached; got != 0 {
		t.Errorf("after SetCA: Cached = %d, want 0", got)
	}
	after := mustLeaf(t, m, "api.example.com")
	if after == before {
		t.Fatal("after SetCA: Leaf returned the old CA's leaf")
	}
	tests := []struct {
		name    string
		leaf    *tls.Certificate
		roots   *testca.CA
		wantErr bool
	}{
		{"new leaf, new CA", after, rotated, false},
		{"new leaf, old CA", after, old, true},
		{"old leaf, old CA", before, old, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.leaf.Leaf.Verify(x509.VerifyOptions{DNSName: "api.example.com", Roots: tt.roots.Pool()})
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Errorf("verify: err = %v, want error %v", err, tt.wantErr)
			}
		})
	}
	if err := handshake(t, m.ServerConfig("api.example.com"), clientConfig(rotated.Pool(), "api.example.com")); err != nil {
		t.Errorf("handshake trusting the new CA: %v", err)
	}
	if err := handshake(t, m.ServerConfig("api.example.com"), clientConfig(old.Pool(), "api.example.com")); err == nil {
		t.Errorf("handshake trusting only the old CA: err = nil, want an error")
	}
}

func TestLeafValidityAndCAExpiry(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := now
	caNotAfter := now.Add(48 * time.Hour)
	tca := testca.New(t, testca.Validity(now.Add(-30*time.Minute), caNotAfter))
	m := newMinter(t, loadTestCA(t, tca), mitm.Options{Now: func() time.Time { return clock }})

	leaf := mustLeaf(t, m, "api.example.com").Leaf
	if !leaf.NotAfter.Equal(caNotAfter) {
		t.Errorf("leaf NotAfter = %s, want the CA's NotAfter %s (7 days would outlive the CA)", leaf.NotAfter, caNotAfter)
	}
	if want := now.Add(-30 * time.Minute); !leaf.NotBefore.Equal(want) {
		t.Errorf("leaf NotBefore = %s, want the CA's NotBefore %s (1h backdating would predate the CA)", leaf.NotBefore, want)
	}
	clock = caNotAfter.Add(-time.Second)
	if _, err := m.Leaf("api.example.com"); err != nil {
		t.Errorf("Leaf one second before the CA expires: %v", err)
	}
	clock = caNotAfter
	if _, err := m.Leaf("api.example.com"); !errors.Is(err, mitm.ErrCAExpired) {
		t.Errorf("Leaf at the CA's expiry: err = %v, want %v", err, mitm.ErrCAExpired)
	}
	if _, err := m.Leaf("other.example.com"); !errors.Is(err, mitm.ErrCAExpired) {
		t.Errorf("Leaf for a new host at the CA's expiry: err = %v, want %v", err, mitm.ErrCAExpired)
	}
	if got := m.Stats().MintErrors; got != 2 {
		t.Errorf("MintErrors = %d, want 2", got)
	}
}

func TestLeafRenewedBeforeExpiry(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := now
	tca := testca.New(t, testca.Validity(now.Add(-time.Hour), now.Add(365*24*time.Hour)))
	m := newMinter(t, loadTestCA(t, tca), mitm.Options{Validity: 8 * time.Hour, Now: func() time.Time { return clock }})
	tests := []struct {
		after      time.Duration
		wantMinted int64
	}{
		{0, 1},
		{5 * time.Hour, 1},                 // within the first three quarters: cached
		{6 * time.Hour, 2},                 // renewed
		{6*time.Hour + 5*time.Hour, 2},     // the renewed leaf is cached
		{6*time.Hour + 6*time.Hour, 3},     // and renewed in turn
		{6*time.Hour + 6*time.Hour + 1, 3}, // cached again
	}
	for _, tt := range tests {
		clock = now.Add(tt.after)
		leaf := mustLeaf(t, m, "api.example.com").Leaf
		if got := m.Stats().Minted; got != tt.wantMinted {
			t.Errorf("at +%s: Minted = %d, want %d", tt.after, got, tt.wantMinted)
		}
		if !clock.Before(leaf.NotAfter) {
			t.Errorf("at +%s: served a leaf that expired at %s", tt.after, leaf.NotAfter)
		}
	}
}

func TestNewMinterOptions(t *testing.T) {
	ca := loadTestCA(t, testca.New(t))
	tests := []struct {
		name    string
		ca      *mitm.CA
		opts    mitm.Options
		wantErr string
	}{
		{"defaults", ca, mitm.Options{}, ""},
		{"no CA", nil, mitm.Options{}, "CA certificate and key are required"},
		{"negative cache", ca, mitm.Options{CacheSize: -1}, "CacheSize -1"},
		{"negative validity", ca, mitm.Options{Validity: -time.Second}, "Validity -1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := mitm.NewMinter(tt.ca, tt.opts)
			if got := errString(err); !strings.Contains(got, tt.wantErr) || (tt.wantErr == "") != (err == nil) {
				t.Errorf("NewMinter error = %q, want %q", got, tt.wantErr)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
