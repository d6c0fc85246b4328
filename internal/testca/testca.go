// Package testca makes throwaway certificate authorities and certificates for tests: a CA in memory,
// written to a directory the way the deployment guide's openssl commands write it, and server and client
// certificates it signs for httptest servers and mTLS.
package testca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// KeyFormat is the PEM encoding WriteDir uses for the private key.
type KeyFormat int

const (
	// Traditional writes RSA keys as PKCS#1 "RSA PRIVATE KEY" (OpenSSL 1.x genrsa) and ECDSA keys as
	// SEC 1 "EC PRIVATE KEY". Ed25519 keys have no traditional form and are always PKCS#8.
	Traditional KeyFormat = iota
	// PKCS8 writes every key as PKCS#8 "PRIVATE KEY" (OpenSSL 3 genrsa).
	PKCS8
)

// CA is an in-memory certificate authority. Its fields are read-only after New.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer

	keyFormat KeyFormat
}

type config struct {
	keyType   string // "ecdsa", "rsa", "ed25519"
	rsaBits   int
	keyFormat KeyFormat
	subject   pkix.Name
	notBefore time.Time
	notAfter  time.Time
	keyUsage  x509.KeyUsage
	isCA      bool
}

// Option changes how New makes a CA.
type Option func(*config)

// RSA makes the CA key RSA with the given size in bits (the guide uses 4096; generating one takes a while).
func RSA(bits int) Option { return func(c *config) { c.keyType, c.rsaBits = "rsa", bits } }

// Ed25519 makes the CA key Ed25519.
func Ed25519() Option { return func(c *config) { c.keyType = "ed25519" } }

// Format sets how WriteDir and KeyPEM encode the key; if not given, Traditional.
func Format(f KeyFormat) Option { return func(c *config) { c.keyFormat = f } }

// Subject sets the CA's subject; if not given, CN "Tapwire Test CA", O "Tapwire".
func Subject(name pkix.Name) Option { return func(c *config) { c.subject = name } }

// Validity sets the CA's NotBefore and NotAfter; if not given, one hour ago until one day from now.
// A NotAfter in the past makes an expired CA.
func Validity(notBefore, notAfter time.Time) Option {
	return func(c *config) { c.notBefore, c.notAfter = notBefore, notAfter }
}

// KeyUsage sets the CA certificate's key usage bits; if not given, CertSign | CRLSign | DigitalSignature.
// KeyUsage(x509.KeyUsageDigitalSignature) makes a CA:TRUE certificate that may not sign certificates.
func KeyUsage(ku x509.KeyUsage) Option { return func(c *config) { c.keyUsage = ku } }

// New makes a CA, by default with an ECDSA P-256 key. It fails the test on error.
func New(t testing.TB, opts ...Option) *CA {
	t.Helper()
	now := time.Now()
	c := config{
		keyType:   "ecdsa",
		subject:   pkix.Name{CommonName: "Tapwire Test CA", Organization: []string{"Tapwire"}},
		notBefore: now.Add(-time.Hour),
		notAfter:  now.Add(24 * time.Hour),
		keyUsage:  x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		isCA:      true,
	}
	for _, o := range opts {
		o(&c)
	}
	return newCA(t, c)
}

func newCA(t testing.TB, c config) *CA {
	t.Helper()
	key := generateKey(t, c.keyType, c.rsaBits)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               c.subject,
		NotBefore:             c.notBefore,
		NotAfter:              c.notAfter,
		KeyUsage:              c.keyUsage,
		BasicConstraintsValid: true,
		IsCA:                  c.isCA,
	}
	if !c.isCA {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{c.subject.CommonName}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatalf("testca: create CA certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("testca: parse CA certificate: %v", err)
	}
	return &CA{Cert: cert, Key: key, keyFormat: c.keyFormat}
}

// CertPEM returns the CA certificate as a PEM "CERTIFICATE" block.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// KeyPEM returns the CA key PEM-encoded in the CA's key format (see Format).
func (ca *CA) KeyPEM(t testing.TB) []byte {
	t.Helper()
	return encodeKey(t, ca.Key, ca.keyFormat)
}

// Pool returns a certificate pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// WriteDir writes dir/tls.crt (the certificate, 0644) and dir/tls.key (the key, 0600), the layout of the
// guide's TLS_CERT_DIR. It creates dir if needed.
func (ca *CA) WriteDir(t testing.TB, dir string) {
	t.Helper()
	writeDir(t, dir, ca.CertPEM(), ca.KeyPEM(t))
}

// WriteFile writes only the CA certificate PEM to path (0644), for SSL_CERT_FILE and the like.
func (ca *CA) WriteFile(t testing.TB, path string) {
	t.Helper()
	if err := os.WriteFile(path, ca.CertPEM(), 0o644); err != nil {
		t.Fatalf("testca: %v", err)
	}
}

// Leaf returns a server certificate signed by the CA for hosts: strings that parse as IP addresses become
// IP SANs, the rest DNS SANs. Its key is ECDSA P-256 and its chain holds only the leaf.
func (ca *CA) Leaf(t testing.TB, hosts ...string) tls.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if len(hosts) > 0 {
		tmpl.Subject.CommonName = hosts[0]
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return ca.issue(t, tmpl)
}

// ServerTLS returns a server config presenting a Leaf for hosts, for httptest.NewUnstartedServer:
//
//	srv.TLS = ca.ServerTLS(t, "127.0.0.1", "localhost")
//	srv.StartTLS()
func (ca *CA) ServerTLS(t testing.TB, hosts ...string) *tls.Config {
	t.Helper()
	return &tls.Config{Certificates: []tls.Certificate{ca.Leaf(t, hosts...)}}
}

// ClientTLS returns a client certificate (ExtKeyUsage ClientAuth, subject CN cn) signed by the CA, for mTLS.
func (ca *CA) ClientTLS(t testing.TB, cn string) tls.Certificate {
	t.Helper()
	return ca.issue(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

// ClientConfig returns a client config that trusts only this CA.
func (ca *CA) ClientConfig() *tls.Config {
	return &tls.Config{RootCAs: ca.Pool()}
}

func (ca *CA) issue(t testing.TB, tmpl *x509.Certificate) tls.Certificate {
	t.Helper()
	key := generateKey(t, "ecdsa", 0)
	tmpl.SerialNumber = serial(t)
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatalf("testca: create certificate: %v", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("testca: parse certificate: %v", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// WriteNonCADir writes to dir a self-signed certificate that is not a CA (basicConstraints CA:FALSE,
// ExtKeyUsage ServerAuth, DNS name and CN "not-a-ca.test") as tls.crt, and its ECDSA key as tls.key:
// a directory that an interception proxy must refuse with a clear error.
func WriteNonCADir(t testing.TB, dir string) {
	t.Helper()
	now := time.Now()
	ca := newCA(t, config{
		keyType:   "ecdsa",
		subject:   pkix.Name{CommonName: "not-a-ca.test"},
		notBefore: now.Add(-time.Hour),
		notAfter:  now.Add(24 * time.Hour),
		keyUsage:  x509.KeyUsageDigitalSignature,
		isCA:      false,
	})
	writeDir(t, dir, ca.CertPEM(), ca.KeyPEM(t))
}

func writeDir(t testing.TB, dir string, certPEM, keyPEM []byte) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("testca: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), certPEM, 0o644); err != nil {
		t.Fatalf("testca: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), keyPEM, 0o600); err != nil {
		t.Fatalf("testca: %v", err)
	}
}

func generateKey(t testing.TB, keyType string, rsaBits int) crypto.Signer {
	t.Helper()
	var (
		key crypto.Signer
		err error
	)
	switch keyType {
	case "rsa":
		key, err = rsa.GenerateKey(rand.Reader, rsaBits)
	case "ed25519":
		_, key, err = ed25519.GenerateKey(rand.Reader)
	default:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatalf("testca: generate %s key: %v", keyType, err)
	}
	return key
}

func encodeKey(t testing.TB, key crypto.Signer, f KeyFormat) []byte {
	t.Helper()
	if f == Traditional {
		switch k := key.(type) {
		case *rsa.PrivateKey:
			return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
		case *ecdsa.PrivateKey:
			der, err := x509.MarshalECPrivateKey(k)
			if err != nil {
				t.Fatalf("testca: marshal EC key: %v", err)
			}
			return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
		}
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("testca: marshal PKCS#8 key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		t.Fatalf("testca: serial: %v", err)
	}
	return n.Add(n, big.NewInt(1)) // never zero
}
