// Package certs makes and checks the CA that goproxy uses to intercept an
// application's outbound TLS (TLS_OUT_UNWRAP): the tls.crt and tls.key of
// the deployment guide's TLS_CERT_DIR, as `speedctl certs` writes them.
package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tapwire/tapwire/internal/mitm"
)

// Key types of Options.KeyType.
const (
	KeyRSA   = "rsa"   // RSA 4096, as the guide's `openssl genrsa -out tls.key 4096`
	KeyECDSA = "ecdsa" // ECDSA P-256: smaller and faster to sign with
)

// DefaultCommonName is the CA's subject CN unless Options.CommonName says
// otherwise.
const DefaultCommonName = "Tapwire Capture CA"

// ErrExists is returned by Create when tls.crt or tls.key is already there
// and Options.Force is not set.
var ErrExists = errors.New("CA files already exist")

// Options say what CA Create makes.
type Options struct {
	Dir        string           // where tls.crt and tls.key go, created (0700) if needed; if zero, "."
	KeyType    string           // KeyRSA or KeyECDSA; if zero, KeyRSA
	RSABits    int              // RSA key size, at least 2048; if zero, 4096
	Days       int              // validity in days from now; if zero, 365 (the guide's -days 365)
	CommonName string           // subject CN; if zero, DefaultCommonName
	Force      bool             // replace existing files
	Now        func() time.Time // clock; if nil, time.Now
}

func (o *Options) setDefaults() {
	if o.Dir == "" {
		o.Dir = "."
	}
	if o.KeyType == "" {
		o.KeyType = KeyRSA
	}
	if o.RSABits == 0 {
		o.RSABits = 4096
	}
	if o.Days == 0 {
		o.Days = 365
	}
	if o.CommonName == "" {
		o.CommonName = DefaultCommonName
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

func (o *Options) validate() error {
	switch o.KeyType {
	case KeyRSA, KeyECDSA:
	default:
		return fmt.Errorf("key type %q: want rsa or ecdsa", o.KeyType)
	}
	if o.KeyType == KeyRSA && o.RSABits < 2048 {
		return fmt.Errorf("RSA key size %d: want at least 2048", o.RSABits)
	}
	if o.Days < 1 || o.Days > 3650 {
		return fmt.Errorf("days %d: want 1 to 3650", o.Days)
	}
	return nil
}

// Created describes the files Create wrote.
type Created struct {
	CertPath, KeyPath string
	Info
}

// Create makes a self-signed CA (basicConstraints CA:TRUE, path length 0,
// key usage certSign and cRLSign) and writes it as Dir/tls.crt (PEM,
// mode 0644) and Dir/tls.key (unencrypted PKCS#8 "PRIVATE KEY" PEM, as
// OpenSSL 3's genrsa writes, mode 0600). Each file is written to a
// temporary name and renamed, so a reader never sees half a file.
func Create(opts Options) (*Created, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	certPath := filepath.Join(opts.Dir, mitm.CertFile)
	keyPath := filepath.Join(opts.Dir, mitm.KeyFile)
	if err := refuseExisting(opts.Force, certPath, keyPath); err != nil {
		return nil, err
	}

	var key crypto.Signer
	var err error
	switch opts.KeyType {
	case KeyECDSA:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		key, err = rsa.GenerateKey(rand.Reader, opts.RSABits)
	}
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", opts.KeyType, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	now := opts.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: opts.CommonName, Organization: []string{"Tapwire"}},
		// Backdated an hour for clocks that lag behind this one.
		NotBefore:             now.Add(-time.Hour).UTC(),
		NotAfter:              now.AddDate(0, 0, opts.Days).UTC(),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true, // it signs leaves only
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("sign CA certificate: %w", err)
	}
	return writePair(certPath, keyPath, der, key, now)
}

// refuseExisting returns ErrExists when one of paths is there, unless
// force.
func refuseExisting(force bool, paths ...string) error {
	if force {
		return nil
	}
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%w: %s (use --force to replace it)", ErrExists, p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("check %s: %w", p, err)
		}
	}
	return nil
}

// writePair writes the certificate der (PEM, mode 0644) and its key
// (PKCS#8 PEM, mode 0600), creating their folder (0700) if needed.
func writePair(certPath, keyPath string, der []byte, key crypto.Signer, now time.Time) (*Created, error) {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(certPath), 0o700); err != nil {
		return nil, fmt.Errorf("create directory: %w", err)
	}
	// The key first: a tls.crt without its key is refused by LoadCA, but
	// the other way round could pair a new certificate with an old key.
	if err := writeAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, err
	}
	if err := writeAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse the new certificate: %w", err)
	}
	return &Created{CertPath: certPath, KeyPath: keyPath, Info: describe(cert, key, now)}, nil
}

// writeAtomic writes b to a temporary file next to path with mode perm,
// syncs it and renames it over path.
func writeAtomic(path string, b []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename: nothing left to remove
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Info describes a CA.
type Info struct {
	Subject     string
	KeyType     string // "RSA-4096", "ECDSA P-256", "Ed25519"
	NotBefore   time.Time
	NotAfter    time.Time
	DaysLeft    int    // days until NotAfter, a part day counted as one; negative once expired
	Fingerprint string // SHA-256 of the certificate, hex with colons
	SelfSigned  bool
}

func describe(c *x509.Certificate, key crypto.Signer, now time.Time) Info {
	sum := sha256.Sum256(c.Raw)
	hx := strings.ToUpper(hex.EncodeToString(sum[:]))
	var fp strings.Builder
	for i := 0; i < len(hx); i += 2 {
		if i > 0 {
			fp.WriteByte(':')
		}
		fp.WriteString(hx[i : i+2])
	}
	return Info{
		Subject:     c.Subject.String(),
		KeyType:     keyType(key.Public()),
		NotBefore:   c.NotBefore,
		NotAfter:    c.NotAfter,
		DaysLeft:    daysLeft(c.NotAfter.Sub(now)),
		Fingerprint: fp.String(),
		SelfSigned:  c.CheckSignatureFrom(c) == nil,
	}
}

func daysLeft(d time.Duration) int {
	const day = 24 * time.Hour
	if d > 0 {
		d += day - 1
	}
	return int(d / day)
}

func keyType(k crypto.PublicKey) string {
	switch k := k.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	default:
		return strings.TrimPrefix(fmt.Sprintf("%T", k), "ed25519.")
	}
}

// Checked is the result of Check.
type Checked struct {
	Info
	// Warnings are problems that do not stop goproxy: a key readable by
	// others, a CA close to expiry.
	Warnings []string
}

// Check loads dir/tls.crt and dir/tls.key as goproxy does (mitm.LoadCA),
// mints a leaf certificate with them and verifies it against the CA, so a
// nil error means goproxy with TLS_CERT_DIR=dir and TLS_OUT_UNWRAP=true
// will start and its leaves will verify for apps that trust tls.crt.
func Check(dir string, now time.Time) (*Checked, error) {
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("CA directory: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("CA directory: %s is not a directory", dir)
	}
	ca, err := mitm.LoadCA(dir)
	if err != nil {
		return nil, err
	}
	// LoadCA judged expiry by the wall clock; judge it again at now.
	if !now.Before(ca.Cert.NotAfter) {
		return nil, fmt.Errorf("%w: %q expired at %s; make a new one (speedctl certs create --force)", mitm.ErrCAExpired, ca.Cert.Subject, ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(ca.Cert.NotBefore) {
		return nil, fmt.Errorf("CA certificate %q is not valid before %s: check this machine's clock", ca.Cert.Subject, ca.Cert.NotBefore.UTC().Format(time.RFC3339))
	}
	minter, err := mitm.NewMinter(ca, mitm.Options{Now: func() time.Time { return now }})
	if err != nil {
		return nil, err
	}
	const probe = "check.tapwire.invalid"
	leaf, err := minter.Leaf(probe)
	if err != nil {
		return nil, fmt.Errorf("mint a test leaf certificate: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	inter := x509.NewCertPool()
	for _, der := range leaf.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	if _, err := leaf.Leaf.Verify(x509.VerifyOptions{DNSName: probe, Roots: roots, Intermediates: inter, CurrentTime: now}); err != nil {
		return nil, fmt.Errorf("a leaf certificate signed by this CA does not verify: %w", err)
	}

	c := &Checked{Info: describe(ca.Cert, ca.Key, now)}
	if c.DaysLeft < 30 {
		c.Warnings = append(c.Warnings, fmt.Sprintf("the CA expires in %d days; make a new one before then (speedctl certs create --force)", c.DaysLeft))
	}
	if fi, err := os.Stat(filepath.Join(dir, mitm.KeyFile)); err == nil && fi.Mode().Perm()&0o077 != 0 {
		c.Warnings = append(c.Warnings, fmt.Sprintf("%s is readable by others (mode %04o); chmod 600 it", mitm.KeyFile, fi.Mode().Perm()))
	}
	if !c.SelfSigned {
		c.Warnings = append(c.Warnings, "the CA is not self-signed: apps must trust its root, and tls.crt should carry the chain up to it")
	}
	return c, nil
}
