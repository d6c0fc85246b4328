package testca_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/tapwire/tapwire/internal/testca"
)

func TestServerTLSWithHTTPTest(t *testing.T) {
	ca := testca.New(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 {
			http.Error(w, "no client certificate", http.StatusUnauthorized)
			return
		}
		io.WriteString(w, r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	srv.TLS = ca.ServerTLS(t, "127.0.0.1", "localhost")
	srv.TLS.ClientAuth = tls.RequireAndVerifyClientCert
	srv.TLS.ClientCAs = ca.Pool()
	srv.StartTLS()
	defer srv.Close()

	cfg := ca.ClientConfig()
	cfg.Certificates = []tls.Certificate{ca.ClientTLS(t, "app")}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	defer c.CloseIdleConnections()
	res, err := c.Get(srv.URL)
	if err != nil {
		t.Fatalf("GET %s: %v", srv.URL, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if got, want := string(body), "app"; got != want {
		t.Errorf("body = %q, want %q", got, want)
	}
}

func TestWriteDir(t *testing.T) {
	tests := []struct {
		name    string
		opts    []testca.Option
		wantKey string
	}{
		{"ecdsa", nil, "EC PRIVATE KEY"},
		{"ecdsa pkcs8", []testca.Option{testca.Format(testca.PKCS8)}, "PRIVATE KEY"},
		{"rsa pkcs1", []testca.Option{testca.RSA(2048)}, "RSA PRIVATE KEY"},
		{"rsa pkcs8", []testca.Option{testca.RSA(2048), testca.Format(testca.PKCS8)}, "PRIVATE KEY"},
		{"ed25519", []testca.Option{testca.Ed25519()}, "PRIVATE KEY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca := testca.New(t, tt.opts...)
			dir := filepath.Join(t.TempDir(), "certs")
			ca.WriteDir(t, dir)
			if _, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")); err != nil {
				t.Fatalf("load written pair: %v", err)
			}
			keyPEM, err := os.ReadFile(filepath.Join(dir, "tls.key"))
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := pem.Decode(keyPEM); b == nil || b.Type != tt.wantKey {
				t.Errorf("key PEM type = %v, want %q", b, tt.wantKey)
			}
			fi, err := os.Stat(filepath.Join(dir, "tls.key"))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := fi.Mode().Perm(), os.FileMode(0o600); got != want {
				t.Errorf("tls.key mode = %v, want %v", got, want)
			}
			if !ca.Cert.IsCA || ca.Cert.KeyUsage&x509.KeyUsageCertSign == 0 {
				t.Errorf("CA cert IsCA = %v, KeyUsage = %v; want a CA that signs certificates", ca.Cert.IsCA, ca.Cert.KeyUsage)
			}
		})
	}
}

func TestWriteNonCADir(t *testing.T) {
	dir := t.TempDir()
	testca.WriteNonCADir(t, dir)
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		t.Fatalf("load written pair: %v", err)
	}
	if pair.Leaf.IsCA || !pair.Leaf.BasicConstraintsValid {
		t.Errorf("IsCA = %v, BasicConstraintsValid = %v; want CA:FALSE present", pair.Leaf.IsCA, pair.Leaf.BasicConstraintsValid)
	}
}

func TestWriteFile(t *testing.T) {
	ca := testca.New(t)
	path := filepath.Join(t.TempDir(), "ca.pem")
	ca.WriteFile(t, path)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if p := x509.NewCertPool(); !p.AppendCertsFromPEM(b) {
		t.Errorf("%s holds no certificate", path)
	}
}
