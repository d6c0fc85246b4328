package certs

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestServer: the forwarder's certificate verifies against the CA for each
// host it names, and for no other; its key is private.
func TestServer(t *testing.T) {
	dir := t.TempDir()
	if _, err := Create(Options{Dir: dir, KeyType: KeyECDSA, Days: 30}); err != nil {
		t.Fatal(err)
	}
	c, err := Server(ServerOptions{CADir: dir, Hosts: []string{"forwarder.ecs.local", "10.0.3.7"}})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(c.CertPath, c.KeyPath)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	caPEM, _ := os.ReadFile(filepath.Join(dir, "tls.crt"))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	for _, tc := range []struct {
		host string
		ok   bool
	}{{"forwarder.ecs.local", true}, {"10.0.3.7", true}, {"hub.ecs.local", false}} {
		_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: tc.host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		if (err == nil) != tc.ok {
			t.Errorf("verify for %s: %v, want ok %t", tc.host, err, tc.ok)
		}
	}
	if !leaf.NotAfter.Before(time.Now().AddDate(0, 0, 31)) {
		t.Errorf("certificate valid until %s, beyond its CA's 30 days", leaf.NotAfter)
	}
	if fi, _ := os.Stat(c.KeyPath); fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v, want 0600", fi.Mode().Perm())
	}
	for _, bad := range []ServerOptions{{CADir: dir}, {CADir: dir, Hosts: []string{"*.ecs.local"}, Force: true}, {CADir: t.TempDir(), Hosts: []string{"x"}}} {
		if _, err := Server(bad); err == nil {
			t.Errorf("Server(%+v): nil error, want one", bad)
		}
	}
}
