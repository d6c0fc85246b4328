package mitm_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/mitm"
	"github.com/tapwire/tapwire/internal/testca"
)

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLoadCAErrors(t *testing.T) {
	good := testca.New(t)
	other := testca.New(t)
	tests := []struct {
		name     string
		setup    func(t *testing.T, dir string)
		wantIs   []error
		wantFile string   // the file the message must name
		wantText []string // further phrases the message must hold
	}{
		{
			name:     "missing dir",
			setup:    func(t *testing.T, dir string) { os.Remove(dir) },
			wantIs:   []error{mitm.ErrNoCA, fs.ErrNotExist},
			wantFile: "tls.crt",
			wantText: []string{"no such file", "TLS_CERT_DIR must hold tls.crt and tls.key"},
		},
		{
			name: "missing key",
			setup: func(t *testing.T, dir string) {
				good.WriteDir(t, dir)
				os.Remove(filepath.Join(dir, "tls.key"))
			},
			wantIs:   []error{mitm.ErrNoCA, fs.ErrNotExist},
			wantFile: "tls.key",
		},
		{
			name: "unreadable cert",
			setup: func(t *testing.T, dir string) {
				good.WriteDir(t, dir)
				os.Remove(filepath.Join(dir, "tls.crt"))
				os.Mkdir(filepath.Join(dir, "tls.crt"), 0o755) // read fails even as root
			},
			wantFile: "tls.crt",
			wantText: []string{"read CA file", "is a directory"},
		},
		{
			name: "cert not PEM",
			setup: func(t *testing.T, dir string) {
				good.WriteDir(t, dir)
				writeFile(t, filepath.Join(dir, "tls.crt"), []byte("not a certificate\n"))
			},
			wantIs:   []error{mitm.ErrNotPEM},
			wantFile: "tls.crt",
			wantText: []string{`"CERTIFICATE"`},
		},
		{
			name: "cert file holds a key",
			setup: func(t *testing.T, dir string) {
				good.WriteDir(t, dir)
				writeFile(t, filepath.Join(dir, "tls.crt"), good.KeyPEM(t))
			},
			wantIs:   []error{mitm.ErrNotPEM},
			wantFile: "tls.crt",
			wantText: []string{`found "EC PRIVATE KEY"`},
		},
		{
			name: "cert block corrupt",
			setup: func(t *testing.T, dir string) {
				good.WriteDir(t, dir)
				writeFile(t, filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0x03, 1, 2, 3}}))
			},
			wantFile: "tls.crt",
			wantText: []string{"parse certificate 1"},
		},
		{
			name: "key not PEM",
			setup: func(t *testing.T, dir string) {
				good.WriteDir(t, dir)
				writeFile(t, filepath.Join(dir, "tls.key"), []byte("nope"))
			},
			wantIs:   []error{mitm.ErrNotPEM},
			wantFile: "tls.key",
		},
		{
			name: "key file holds a certificate",
			setup: func(t *testing.T, dir string) {
				good.WriteDir(t, dir)
				writeFile(t, filepath.Join(dir, "tls.key"), good.CertPEM())
			},
			wantIs:   []error{mitm.ErrNotPEM},
			wantFile: "tls.key",
			wantText: []string{`found "CERTIFICATE"`},
		},
		{
			name: "key encrypted",
			setup: func(t *testing.T, dir string) {
				good.WriteDir(t, dir)
				writeFile(t, filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}))
			},
			wantFile: "tls.key",
			wantText: []string{"encrypted"},
		},
		{
			name: "key garbage DER",
			setup: func(t *testing.T, dir string) {
				good.WriteDir(t, dir)
				writeFile(t, filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}))
			},
			wantFile: "tls.key",
			wantText: []string{"parse private key"},
		},
		{
			name:     "not a CA",
			setup:    func(t *testing.T, dir string) { testca.WriteNonCADir(t, dir) },
			wantIs:   []error{mitm.ErrNotCA},
			wantFile: "tls.crt",
			wantText: []string{"CA:TRUE", "not-a-ca.test"},
		},
		{
			name: "CA without keyCertSign",
			setup: func(t *testing.T, dir string) {
				testca.New(t, testca.KeyUsage(x509.KeyUsageDigitalSignature)).WriteDir(t, dir)
			},
			wantIs:   []error{mitm.ErrNotCA},
			wantFile: "tls.crt",
			wantText: []string{"keyCertSign"},
		},
		{
			name: "expired CA",
			setup: func(t *testing.T, dir string) {
				testca.New(t, testca.Validity(time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))).WriteDir(t, dir)
			},
			wantIs:   []error{mitm.ErrCAExpired},
			wantFile: "tls.crt",
			wantText: []string{"expired at"},
		},
		{
			name: "key of another CA",
			setup: func(t *testing.T, dir string) {
				good.WriteDir(t, dir)
				writeFile(t, filepath.Join(dir, "tls.key"), other.KeyPEM(t))
			},
			wantIs:   []error{mitm.ErrKeyMismatch},
			wantFile: "tls.key and ",
			wantText: []string{"tls.crt"},
		},
		{
			name: "key of another type",
			setup: func(t *testing.T, dir string) {
				good.WriteDir(t, dir)
				writeFile(t, filepath.Join(dir, "tls.key"), testca.New(t, testca.Ed25519()).KeyPEM(t))
			},
			wantIs:   []error{mitm.ErrKeyMismatch},
			wantFile: "tls.key",
			wantText: []string{"ECDSA P-256", "Ed25519"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "speedscale")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			tt.setup(t, dir)
			ca, err := mitm.LoadCA(dir)
			if err == nil {
				t.Fatalf("LoadCA = %v, nil; want an error", ca)
			}
			for _, target := range tt.wantIs {
				if !errors.Is(err, target) {
					t.Errorf("LoadCA error %q: errors.Is(err, %q) = false, want true", err, target)
				}
			}
			for _, want := range append([]string{filepath.Join(dir, tt.wantFile)}, tt.wantText...) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("LoadCA error = %q, want it to contain %q", err, want)
				}
			}
		})
	}
}

func TestLoadCAKeyFormats(t *testing.T) {
	tests := []struct {
		name string
		opts []testca.Option
		pre  string // PEM text before the key, as some tools write
	}{
		{name: "ECDSA SEC 1", opts: nil},
		{name: "ECDSA SEC 1 after EC PARAMETERS", pre: "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"},
		{name: "ECDSA PKCS#8", opts: []testca.Option{testca.Format(testca.PKCS8)}},
		{name: "RSA PKCS#1", opts: []testca.Option{testca.RSA(2048)}},
		{name: "RSA PKCS#8", opts: []testca.Option{testca.RSA(2048), testca.Format(testca.PKCS8)}},
		{name: "Ed25519 PKCS#8", opts: []testca.Option{testca.Ed25519()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := testca.New(t, tt.opts...)
			dir := t.TempDir()
			want.WriteDir(t, dir)
			if tt.pre != "" {
				writeFile(t, filepath.Join(dir, "tls.key"), append([]byte(tt.pre), want.KeyPEM(t)...))
			}
			ca, err := mitm.LoadCA(dir)
			if err != nil {
				t.Fatalf("LoadCA: %v", err)
			}
			if !ca.Cert.Equal(want.Cert) {
				t.Errorf("LoadCA certificate subject %q, want %q", ca.Cert.Subject, want.Cert.Subject)
			}
			m := newMinter(t, ca, mitm.Options{})
			if err := handshake(t, m.ServerConfig("api.example.com"), clientConfig(want.Pool(), "api.example.com")); err != nil {
				t.Errorf("handshake: %v", err)
			}
		})
	}
}

func TestParseCA(t *testing.T) {
	want := testca.New(t)
	ca, err := mitm.ParseCA(want.CertPEM(), want.KeyPEM(t))
	if err != nil {
		t.Fatalf("ParseCA: %v", err)
	}
	if !ca.Cert.Equal(want.Cert) {
		t.Errorf("ParseCA certificate subject %q, want %q", ca.Cert.Subject, want.Cert.Subject)
	}
	if _, err := mitm.ParseCA(want.CertPEM(), testca.New(t).KeyPEM(t)); !errors.Is(err, mitm.ErrKeyMismatch) {
		t.Errorf("ParseCA with another key: err = %v, want %v", err, mitm.ErrKeyMismatch)
	}
}

// guideCADir runs the deployment guide's two openssl commands in a new directory and returns it.
func guideCADir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	runOpenSSL(t, dir, nil, "genrsa", "-out", "tls.key", "4096")
	runOpenSSL(t, dir, nil, "req", "-new", "-key", "tls.key", "-x509", "-days", "365", "-out", "tls.crt",
		"-subj", "/C=US/ST=Georgia/L=Atlanta/O=Speedscale/CN=speedscale.com")
	return dir
}

// runOpenSSL runs /usr/bin/openssl; a missing openssl fails the test, since this is the guide's own tool.
func runOpenSSL(t testing.TB, dir string, env []string, args ...string) {
	t.Helper()
	cmd := exec.Command("/usr/bin/openssl", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestOpenSSLGuideCA makes the CA exactly as the deployment guide does and intercepts with it.
func TestOpenSSLGuideCA(t *testing.T) {
	dir := guideCADir(t)

	// OpenSSL 3 genrsa writes PKCS#8, OpenSSL 1.x PKCS#1: test both forms of the same key, and the
	// certificate that openssl req -x509 makes with no configuration (version 1, no extensions).
	pkcs1 := t.TempDir()
	runOpenSSL(t, dir, nil, "rsa", "-in", "tls.key", "-traditional", "-out", filepath.Join(pkcs1, "tls.key"))
	runOpenSSL(t, dir, nil, "x509", "-in", "tls.crt", "-out", filepath.Join(pkcs1, "tls.crt"))
	noConf := t.TempDir()
	runOpenSSL(t, dir, nil, "rsa", "-in", "tls.key", "-traditional", "-out", filepath.Join(noConf, "tls.key"))
	runOpenSSL(t, noConf, []string{"OPENSSL_CONF=/dev/null"}, "req", "-new", "-key", "tls.key", "-x509", "-days", "365",
		"-out", "tls.crt", "-subj", "/C=US/ST=Georgia/L=Atlanta/O=Speedscale/CN=speedscale.com")

	tests := []struct {
		name        string
		dir         string
		wantKeyPEM  string
		wantVersion int
	}{
		{"OpenSSL 3 PKCS#8 key", dir, "PRIVATE KEY", 3},
		{"OpenSSL 1 PKCS#1 key", pkcs1, "RSA PRIVATE KEY", 3},
		{"no openssl config", noConf, "RSA PRIVATE KEY", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keyPEM, err := os.ReadFile(filepath.Join(tt.dir, "tls.key"))
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := pem.Decode(keyPEM); b == nil || b.Type != tt.wantKeyPEM {
				t.Fatalf("openssl wrote key PEM %v, want %q", b, tt.wantKeyPEM)
			}
			ca, err := mitm.LoadCA(tt.dir)
			if err != nil {
				t.Fatalf("LoadCA: %v", err)
			}
			if got := ca.Cert.Version; got != tt.wantVersion {
				t.Errorf("certificate version = %d, want %d", got, tt.wantVersion)
			}
			if tt.wantVersion == 3 && (!ca.Cert.BasicConstraintsValid || !ca.Cert.IsCA) {
				t.Errorf("openssl req -x509: BasicConstraintsValid = %v, IsCA = %v; want CA:TRUE", ca.Cert.BasicConstraintsValid, ca.Cert.IsCA)
			}
			if got, want := ca.Cert.Subject.String(), "CN=speedscale.com,O=Speedscale,L=Atlanta,ST=Georgia,C=US"; got != want {
				t.Errorf("subject = %q, want %q", got, want)
			}
			pool := x509.NewCertPool()
			pool.AddCert(ca.Cert)
			m := newMinter(t, ca, mitm.Options{})
			if err := handshake(t, m.ServerConfig("api.example.com"), clientConfig(pool, "api.example.com")); err != nil {
				t.Errorf("Go client handshake: %v", err)
			}
			caFile := filepath.Join(tt.dir, "tls.crt")
			out, err := opensslClient(t, m, caFile, "api.example.com", "api.example.com")
			if err != nil || !bytes.Contains(out, []byte("Verification: OK")) {
				t.Errorf("openssl s_client verifying api.example.com: %v, want success with %q\n%s", err, "Verification: OK", out)
			}
			out, err = opensslClient(t, m, caFile, "api.example.com", "other.example.com")
			if err == nil || !bytes.Contains(out, []byte("hostname mismatch")) {
				t.Errorf("openssl s_client verifying other.example.com: err = %v, want a hostname mismatch\n%s", err, out)
			}
		})
	}
}

// TestIntermediateCA checks that a CA signed by another root is sent after the leaf, so that clients
// trusting only the root verify the leaf.
func TestIntermediateCA(t *testing.T) {
	root := testca.New(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber:          big.NewInt(2),
		Subject:               pkix.Name{CommonName: "Tapwire Intermediate"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}, root.Cert, key.Public(), root.Key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), root.CertPEM()...)
	ca, err := mitm.ParseCA(certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatalf("ParseCA: %v", err)
	}
	m := newMinter(t, ca, mitm.Options{})
	leaf := mustLeaf(t, m, "api.example.com")
	if got, want := len(leaf.Certificate), 3; got != want {
		t.Errorf("chain length = %d, want %d (leaf, intermediate, root as in tls.crt)", got, want)
	}
	if err := handshake(t, m.ServerConfig("api.example.com"), clientConfig(root.Pool(), "api.example.com")); err != nil {
		t.Errorf("handshake trusting the root only: %v", err)
	}
}
