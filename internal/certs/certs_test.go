package certs

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/mitm"
	"github.com/tapwire/tapwire/internal/testca"
)

func TestCreateCheckRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		keyType string
	}{
		{"ecdsa", Options{KeyType: KeyECDSA, Days: 29, CommonName: "Test CA"}, "ECDSA P-256"},
		{"rsa-2048", Options{KeyType: KeyRSA, RSABits: 2048}, "RSA-2048"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ca") // created by Create
			tc.opts.Dir = dir
			c, err := Create(tc.opts)
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			if c.KeyType != tc.keyType || c.CertPath != filepath.Join(dir, "tls.crt") || c.KeyPath != filepath.Join(dir, "tls.key") {
				t.Errorf("Created %+v, want key %s and files in %s", c, tc.keyType, dir)
			}
			ck, err := Check(dir, time.Now())
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if ck.KeyType != tc.keyType || ck.Fingerprint != c.Fingerprint || !ck.SelfSigned {
				t.Errorf("Check %+v, want key %s, fingerprint %s, self-signed", ck.Info, tc.keyType, c.Fingerprint)
			}
			wantDays := tc.opts.Days
			if wantDays == 0 {
				wantDays = 365
			}
			if ck.DaysLeft != wantDays || c.DaysLeft != wantDays {
				t.Errorf("days left %d (create said %d), want %d", ck.DaysLeft, c.DaysLeft, wantDays)
			}
			if wantDays < 30 {
				if len(ck.Warnings) != 1 || !strings.Contains(ck.Warnings[0], "expires in") {
					t.Errorf("warnings %q, want one about expiry", ck.Warnings)
				}
			} else if len(ck.Warnings) != 0 {
				t.Errorf("warnings %q, want none", ck.Warnings)
			}
		})
	}
}

// TestDefaultIsGuideLike: the default CA is RSA-4096 with a PKCS#8 key
// and the extensions a CA needs, and mitm signs leaves with it that a
// client trusting tls.crt accepts in a real TLS handshake.
func TestDefaultIsGuideLike(t *testing.T) {
	if testing.Short() {
		t.Skip("RSA-4096 key generation takes seconds")
	}
	dir := t.TempDir()
	if _, err := Create(Options{Dir: dir}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	certPEM, _ := os.ReadFile(filepath.Join(dir, "tls.crt"))
	keyPEM, _ := os.ReadFile(filepath.Join(dir, "tls.key"))
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || cb.Type != "CERTIFICATE" || kb == nil || kb.Type != "PRIVATE KEY" {
		t.Fatalf("PEM types %v %v, want CERTIFICATE and PRIVATE KEY", cb, kb)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		t.Fatalf("key is not PKCS#8: %v", err)
	}
	if k, ok := key.(*rsa.PrivateKey); !ok || k.N.BitLen() != 4096 {
		t.Errorf("key %T, want RSA-4096", key)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid || cert.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign ||
		cert.Subject.CommonName != DefaultCommonName || len(cert.SubjectKeyId) == 0 {
		t.Errorf("cert IsCA %v, key usage %v, subject %q, SKID %x: want a CA with certSign|cRLSign, CN %q and a key id",
			cert.IsCA, cert.KeyUsage, cert.Subject, cert.SubjectKeyId, DefaultCommonName)
	}
	if d := cert.NotAfter.Sub(time.Now()); d < 364*24*time.Hour || d > 366*24*time.Hour {
		t.Errorf("valid for %s more, want 365 days", d)
	}
	handshake(t, dir, certPEM)
}

// handshake serves TLS with a leaf that mitm mints from dir's CA and
// connects with a client that trusts only certPEM.
func handshake(t *testing.T, dir string, certPEM []byte) {
	t.Helper()
	ca, err := mitm.LoadCA(dir)
	if err != nil {
		t.Fatalf("LoadCA: %v", err)
	}
	m, err := mitm.NewMinter(ca, mitm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", m.ServerConfig("api.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.(*tls.Conn).Handshake()
		io.WriteString(c, "hello")
		c.Close()
	}()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(certPEM) {
		t.Fatal("tls.crt does not load into a pool")
	}
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "api.example.com"})
	if err != nil {
		t.Fatalf("TLS to a leaf of the new CA: %v", err)
	}
	b, _ := io.ReadAll(conn)
	conn.Close()
	<-done
	if string(b) != "hello" {
		t.Errorf("read %q, want hello", b)
	}
}

func TestECDSALeafHandshake(t *testing.T) {
	dir := t.TempDir()
	if _, err := Create(Options{Dir: dir, KeyType: KeyECDSA}); err != nil {
		t.Fatal(err)
	}
	certPEM, _ := os.ReadFile(filepath.Join(dir, "tls.crt"))
	handshake(t, dir, certPEM)
	keyPEM, _ := os.ReadFile(filepath.Join(dir, "tls.key"))
	kb, _ := pem.Decode(keyPEM)
	if key, err := x509.ParsePKCS8PrivateKey(kb.Bytes); err != nil {
		t.Errorf("ECDSA key is not PKCS#8: %v", err)
	} else if _, ok := key.(*ecdsa.PrivateKey); !ok {
		t.Errorf("key %T, want ECDSA", key)
	}
}

func TestFileModesAndForce(t *testing.T) {
	dir := t.TempDir()
	first, err := Create(Options{Dir: dir, KeyType: KeyECDSA})
	if err != nil {
		t.Fatal(err)
	}
	modes := map[string]os.FileMode{"tls.key": 0o600, "tls.crt": 0o644}
	for name, want := range modes {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode %04o, want %04o", name, got, want)
		}
	}
	_, err = Create(Options{Dir: dir, KeyType: KeyECDSA})
	if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "--force") {
		t.Errorf("second Create: %v, want ErrExists mentioning --force", err)
	}
	// Only the key left: still refused (it could be someone's key).
	os.Remove(filepath.Join(dir, "tls.crt"))
	if _, err := Create(Options{Dir: dir, KeyType: KeyECDSA}); !errors.Is(err, ErrExists) {
		t.Errorf("Create over a lone tls.key: %v, want ErrExists", err)
	}
	// A loose mode on the old key does not survive --force.
	os.Chmod(filepath.Join(dir, "tls.key"), 0o644)
	second, err := Create(Options{Dir: dir, KeyType: KeyECDSA, Force: true})
	if err != nil {
		t.Fatalf("Create --force: %v", err)
	}
	if second.Fingerprint == first.Fingerprint {
		t.Errorf("--force kept the old certificate")
	}
	if fi, _ := os.Stat(filepath.Join(dir, "tls.key")); fi.Mode().Perm() != 0o600 {
		t.Errorf("tls.key mode %04o after --force, want 0600", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("directory holds %d entries, want tls.crt and tls.key only (no temporary files)", len(entries))
	}
	// Check warns about a key others can read.
	os.Chmod(filepath.Join(dir, "tls.key"), 0o644)
	ck, err := Check(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(ck.Warnings) != 1 || !strings.Contains(ck.Warnings[0], "chmod 600") {
		t.Errorf("warnings %q, want one about the key's mode", ck.Warnings)
	}
}

func TestCreateOptionErrors(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"key type", Options{KeyType: "dsa"}, `key type "dsa": want rsa or ecdsa`},
		{"days", Options{KeyType: KeyECDSA, Days: -1}, "days -1"},
		{"too many days", Options{KeyType: KeyECDSA, Days: 4000}, "days 4000"},
		{"small rsa", Options{RSABits: 1024}, "at least 2048"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Dir = t.TempDir()
			if _, err := Create(tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Create: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestCheckFails(t *testing.T) {
	base := t.TempDir()
	notCA := filepath.Join(base, "not-ca")
	os.Mkdir(notCA, 0o700)
	testca.WriteNonCADir(t, notCA)

	expired := filepath.Join(base, "expired")
	if _, err := Create(Options{Dir: expired, KeyType: KeyECDSA, Days: 1}); err != nil {
		t.Fatal(err)
	}

	mismatch := filepath.Join(base, "mismatch")
	other := filepath.Join(base, "other")
	for _, d := range []string{mismatch, other} {
		if _, err := Create(Options{Dir: d, KeyType: KeyECDSA}); err != nil {
			t.Fatal(err)
		}
	}
	k, _ := os.ReadFile(filepath.Join(other, "tls.key"))
	os.WriteFile(filepath.Join(mismatch, "tls.key"), k, 0o600)

	onlyCert := filepath.Join(base, "only-cert")
	os.Mkdir(onlyCert, 0o700)
	c, _ := os.ReadFile(filepath.Join(other, "tls.crt"))
	os.WriteFile(filepath.Join(onlyCert, "tls.crt"), c, 0o644)

	aFile := filepath.Join(base, "a-file")
	os.WriteFile(aFile, nil, 0o600)

	tests := []struct {
		name string
		dir  string
		now  time.Time
		want error
		msg  string
	}{
		{"missing dir", filepath.Join(base, "nope"), time.Now(), os.ErrNotExist, "CA directory"},
		{"not a dir", aFile, time.Now(), nil, "is not a directory"},
		{"empty dir", base, time.Now(), mitm.ErrNoCA, "tls.crt and tls.key"},
		{"only cert", onlyCert, time.Now(), mitm.ErrNoCA, "tls.key"},
		{"not a CA", notCA, time.Now(), mitm.ErrNotCA, "CA:TRUE"},
		{"expired", expired, time.Now().Add(48 * time.Hour), mitm.ErrCAExpired, "expired"},
		{"key mismatch", mismatch, time.Now(), mitm.ErrKeyMismatch, "does not match"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Check(tc.dir, tc.now)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("Check: %v, want %v containing %q", err, tc.want, tc.msg)
			}
		})
	}
}

// TestCheckAcceptsGuideCA: a CA like the guide's openssl one (RSA, PKCS#1
// key, made by testca) passes too.
func TestCheckAcceptsGuideCA(t *testing.T) {
	dir := t.TempDir()
	testca.New(t, testca.RSA(2048)).WriteDir(t, dir)
	ck, err := Check(dir, time.Now())
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if ck.KeyType != "RSA-2048" {
		t.Errorf("key %s, want RSA-2048", ck.KeyType)
	}
}

func TestDaysLeft(t *testing.T) {
	day := 24 * time.Hour
	tests := []struct {
		d    time.Duration
		want int
	}{
		{365 * day, 365},
		{365*day - time.Millisecond, 365},
		{time.Minute, 1},
		{0, 0},
		{-time.Minute, 0},
		{-day - time.Minute, -1},
	}
	for _, tc := range tests {
		if got := daysLeft(tc.d); got != tc.want {
			t.Errorf("daysLeft(%s) = %d, want %d", tc.d, got, tc.want)
		}
	}
}
