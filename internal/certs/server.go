package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/tapwire/tapwire/internal/mitm"
)

// ServerOptions say what server certificate Server makes.
type ServerOptions struct {
	CADir string           // the CA's tls.crt and tls.key (TLS_CERT_DIR's); if zero, "."
	Dir   string           // where NAME.crt and NAME.key go, created (0700) if needed; if zero, CADir
	Name  string           // the files' base name; if zero, "forwarder"
	Hosts []string         // the names (and IP addresses) the certificate is for; at least one
	Days  int              // validity in days from now, cut at the CA's expiry; if zero, 365
	Force bool             // replace existing files
	Now   func() time.Time // clock; if nil, time.Now
}

// Server makes a TLS server certificate for Hosts signed by the CA in
// CADir (the guide's CA, which goproxy trusts through TLS_CERT_DIR), with
// a new ECDSA P-256 key, and writes Dir/NAME.crt (PEM, mode 0644) and
// Dir/NAME.key (PKCS#8 PEM, mode 0600): the forwarder's FORWARDER_TLS_CERT
// and FORWARDER_TLS_KEY.
func Server(o ServerOptions) (*Created, error) {
	if o.CADir == "" {
		o.CADir = "."
	}
	if o.Dir == "" {
		o.Dir = o.CADir
	}
	if o.Name == "" {
		o.Name = "forwarder"
	}
	if o.Days == 0 {
		o.Days = 365
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if len(o.Hosts) == 0 {
		return nil, errors.New("no host: name the forwarder's host, e.g. --host forwarder.ecs.local")
	}
	if o.Days < 1 || o.Days > 3650 {
		return nil, fmt.Errorf("days %d: want 1 to 3650", o.Days)
	}
	ca, err := mitm.LoadCA(o.CADir)
	if err != nil {
		return nil, fmt.Errorf("the CA in %s: %w", o.CADir, err)
	}
	certPath := filepath.Join(o.Dir, o.Name+".crt")
	keyPath := filepath.Join(o.Dir, o.Name+".key")
	if err := refuseExisting(o.Force, certPath, keyPath); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	now := o.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: o.Hosts[0], Organization: []string{"Tapwire"}},
		NotBefore:    now.Add(-time.Hour).UTC(),
		NotAfter:     now.AddDate(0, 0, o.Days).UTC(),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	for _, h := range o.Hosts {
		h = strings.TrimSpace(h)
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" && !strings.ContainsAny(h, " */:") {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		} else {
			return nil, fmt.Errorf("host %q: want a DNS name or an IP address (no wildcard)", h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign the certificate: %w", err)
	}
	return writePair(certPath, keyPath, der, key, now)
}
