package mitm_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"strconv"
	"testing"

	"github.com/tapwire/tapwire/internal/mitm"
	"github.com/tapwire/tapwire/internal/testca"
)

// guideCA loads a CA made by the deployment guide's openssl commands (RSA 4096).
func guideCA(b *testing.B) *mitm.CA {
	b.Helper()
	ca, err := mitm.LoadCA(guideCADir(b))
	if err != nil {
		b.Fatalf("LoadCA: %v", err)
	}
	return ca
}

func BenchmarkLeafCached(b *testing.B) {
	m := newMinter(b, loadTestCA(b, testca.New(b)), mitm.Options{})
	mustLeaf(b, m, "api.example.com")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Leaf("api.example.com"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLeafMint signs a new leaf per iteration with the guide's RSA-4096 CA.
func BenchmarkLeafMint(b *testing.B) {
	m := newMinter(b, guideCA(b), mitm.Options{})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := m.Leaf("h" + strconv.Itoa(i) + ".example.com"); err != nil {
			b.Fatal(err)
		}
	}
	if got := m.Stats().CacheHits; got != 0 {
		b.Errorf("CacheHits = %d, want 0: every iteration should mint", got)
	}
}

// BenchmarkMITMHandshake is one full TLS handshake over net.Pipe between a verifying client that trusts
// only the guide's CA and a server with a cached leaf: the per-connection cost of TLS_OUT_UNWRAP.
func BenchmarkMITMHandshake(b *testing.B) {
	ca := guideCA(b)
	m := newMinter(b, ca, mitm.Options{})
	mustLeaf(b, m, "api.example.com")
	server := m.ServerConfig("api.example.com")
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	client := &tls.Config{RootCAs: roots, ServerName: "api.example.com"}
	b.ReportAllocs()
	for b.Loop() {
		sc, cc := net.Pipe()
		serr := make(chan error, 1)
		go func() {
			serr <- tls.Server(sc, server).Handshake()
			sc.Close()
		}()
		cerr := tls.Client(cc, client).Handshake()
		cc.Close()
		if err := <-serr; err != nil || cerr != nil {
			b.Fatalf("handshake: client %v, server %v", cerr, err)
		}
	}
	if got := m.Stats().Minted; got != 1 {
		b.Errorf("Minted = %d, want 1: the leaf should come from the cache", got)
	}
}
