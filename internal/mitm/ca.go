// Package mitm intercepts TLS for the outbound proxy: it loads the CA mounted in TLS_CERT_DIR and mints,
// caches and serves leaf certificates for the hosts an application connects to, so that the proxy can
// terminate the application's TLS (TLS_OUT_UNWRAP=true).
package mitm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File names inside TLS_CERT_DIR, as the deployment guide writes them.
const (
	CertFile = "tls.crt"
	KeyFile  = "tls.key"
)

var (
	// ErrNoCA means TLS_CERT_DIR lacks tls.crt or tls.key.
	ErrNoCA = errors.New("TLS_CERT_DIR must hold tls.crt and tls.key")
	// ErrNotPEM means a file holds no PEM block of the kind wanted.
	ErrNotPEM = errors.New("no PEM block found")
	// ErrNotCA means the certificate may not sign other certificates.
	ErrNotCA = errors.New("certificate is not a CA: it needs basicConstraints CA:TRUE and, if it has a key usage, keyCertSign")
	// ErrCAExpired means the CA certificate is past its NotAfter.
	ErrCAExpired = errors.New("CA certificate has expired")
	// ErrKeyMismatch means the private key is not the key of the certificate.
	ErrKeyMismatch = errors.New("private key does not match the certificate")
	// ErrUnsupportedKey means the key is of a type that cannot sign certificates here.
	ErrUnsupportedKey = errors.New("unsupported private key type: want RSA, ECDSA or Ed25519")
)

// CA is a certificate authority that signs leaf certificates. Treat it as read-only once made.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer

	// chain is what a leaf's tls.Certificate carries after the leaf: empty for a self-signed root (the
	// application must trust it already, so sending it only costs bytes on every handshake), or the CA
	// certificate and the rest of tls.crt when the CA is an intermediate that the application's root signed.
	chain [][]byte
}

// LoadCA reads dir/tls.crt and dir/tls.key and checks that they form a usable CA: the certificate is a CA,
// has not expired, and the key is its key. Errors name the file at fault and say what to do.
func LoadCA(dir string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	certPEM, err := readFile(certPath)
	if err != nil {
		return nil, err
	}
	keyPEM, err := readFile(keyPath)
	if err != nil {
		return nil, err
	}
	certs, err := parseCerts(certPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certPath, err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	if err := checkCA(certs[0], time.Now()); err != nil {
		return nil, fmt.Errorf("%s: %w", certPath, err)
	}
	if err := checkMatch(certs[0], key); err != nil {
		return nil, fmt.Errorf("%s and %s: %w", keyPath, certPath, err)
	}
	return newCA(certs, key), nil
}

// ParseCA is LoadCA for PEM bytes: certPEM holds the CA certificate first (any further certificates are its
// chain), keyPEM its private key.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	certs, err := parseCerts(certPEM)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("parse CA key: %w", err)
	}
	if err := checkCA(certs[0], time.Now()); err != nil {
		return nil, err
	}
	if err := checkMatch(certs[0], key); err != nil {
		return nil, err
	}
	return newCA(certs, key), nil
}

func newCA(certs []*x509.Certificate, key crypto.Signer) *CA {
	ca := &CA{Cert: certs[0], Key: key}
	if !selfSigned(certs[0]) {
		for _, c := range certs {
			ca.chain = append(ca.chain, c.Raw)
		}
	}
	return ca
}

func selfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

func readFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%w: %w", err, ErrNoCA)
	case err != nil:
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	return b, nil
}

// parseCerts returns the CERTIFICATE blocks of b in order, skipping other blocks; there is at least one.
func parseCerts(b []byte) ([]*x509.Certificate, error) {
	var (
		certs []*x509.Certificate
		seen  []string
	)
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			seen = append(seen, block.Type)
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		if len(seen) > 0 {
			return nil, fmt.Errorf("%w: want a PEM \"CERTIFICATE\" block, found %s", ErrNotPEM, quoteList(seen))
		}
		return nil, fmt.Errorf("%w: want a PEM \"CERTIFICATE\" block", ErrNotPEM)
	}
	return certs, nil
}

// parseKey returns the first private key block of b. It accepts PKCS#1 "RSA PRIVATE KEY", SEC 1
// "EC PRIVATE KEY" and PKCS#8 "PRIVATE KEY" (RSA, ECDSA, Ed25519), whatever the label, and skips
// other blocks such as the "EC PARAMETERS" that openssl ecparam writes first.
func parseKey(b []byte) (crypto.Signer, error) {
	var seen []string
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED") {
			return nil, errors.New("the private key is encrypted; write it unencrypted, e.g. openssl pkey -in tls.key -out tls.key.plain")
		}
		if !strings.HasSuffix(block.Type, "PRIVATE KEY") {
			seen = append(seen, block.Type)
			continue
		}
		return parseKeyDER(block.Bytes)
	}
	if len(seen) > 0 {
		return nil, fmt.Errorf("%w: want a PEM private key block, found %s", ErrNotPEM, quoteList(seen))
	}
	return nil, fmt.Errorf("%w: want a PEM private key block", ErrNotPEM)
}

func parseKeyDER(der []byte) (crypto.Signer, error) {
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("parse private key (tried PKCS#1, SEC 1 and PKCS#8): %w", err)
	}
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	default:
		return nil, fmt.Errorf("%w: got %T", ErrUnsupportedKey, k)
	}
}

// checkCA reports whether c may sign leaf certificates at now. A version 1 self-signed certificate has no
// extensions and so no basicConstraints; it is accepted as a root, as OpenSSL and Go's verifier accept it,
// because `openssl req -x509` writes one when its configuration names no extensions.
func checkCA(c *x509.Certificate, now time.Time) error {
	v1Root := c.Version == 1 && selfSigned(c)
	if !v1Root && (!c.BasicConstraintsValid || !c.IsCA) {
		return fmt.Errorf("%w (subject %q has no basicConstraints CA:TRUE); make a CA with the deployment guide's openssl req -x509 command or speedctl", ErrNotCA, c.Subject)
	}
	if c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("%w (subject %q has a key usage without keyCertSign)", ErrNotCA, c.Subject)
	}
	if !now.Before(c.NotAfter) {
		return fmt.Errorf("%w: %q expired at %s; make a new one", ErrCAExpired, c.Subject, c.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

func checkMatch(c *x509.Certificate, key crypto.Signer) error {
	pub, ok := c.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return fmt.Errorf("%w: certificate key %s, private key %s", ErrKeyMismatch, keyDesc(c.PublicKey), keyDesc(key.Public()))
	}
	return nil
}

func keyDesc(k crypto.PublicKey) string {
	switch k := k.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	default:
		return fmt.Sprintf("%T", k)
	}
}

func quoteList(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = fmt.Sprintf("%q", v)
	}
	return strings.Join(q, ", ")
}
