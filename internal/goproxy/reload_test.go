package goproxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/mitm"
	"github.com/tapwire/tapwire/internal/testca"
)

// lockedBuffer collects log lines written from many goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// leafVia opens a CONNECT tunnel through goproxy's outbound port to host
// and returns the leaf certificate goproxy presents there. Nothing listens
// at host: the handshake with goproxy comes first.
func leafVia(t *testing.T, outAddr, host string) *x509.Certificate {
	t.Helper()
	c, err := net.DialTimeout("tcp", outAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", host, host)
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("CONNECT %s: %v", host, err)
	}
	if res.StatusCode != 200 {
		t.Fatalf("CONNECT %s: status %d", host, res.StatusCode)
	}
	tc := tls.Client(c, &tls.Config{ServerName: host, InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake with goproxy for %s: %v", host, err)
	}
	return tc.ConnectionState().PeerCertificates[0]
}

// signedBy reports whether leaf, for host, verifies against ca alone.
func signedBy(leaf *x509.Certificate, host string, ca *testca.CA) bool {
	_, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: ca.Pool()})
	return err == nil
}

// TestReloadCA: ReloadCA makes new leaves use the CA now in TLS_CERT_DIR,
// including hosts whose leaf was cached; a bad CA in the folder keeps the
// one in use. Each outcome is logged and /healthz names the CA in use.
func TestReloadCA(t *testing.T) {
	dir := t.TempDir()
	first, second := testca.New(t), testca.New(t)
	first.WriteDir(t, dir)
	env := map[string]string{
		"PROXY_TYPE": "forward", "TLS_OUT_UNWRAP": "true", "TLS_CERT_DIR": dir,
		"PROXY_OUT_PORT": strconv.Itoa(freePort(t)), "DIAG_HTTP_PORT": strconv.Itoa(freePort(t)),
		"FORWARDER_ADDR": "file://" + t.TempDir(),
	}
	cfg, err := Load(nil, envOf(env), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	srv, err := New(cfg, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	const cached = "cached.example"
	if leaf := leafVia(t, srv.OutAddr, cached); !signedBy(leaf, cached, first) {
		t.Fatalf("before any reload: leaf for %s is not signed by the first CA (issuer %q)", cached, leaf.Issuer)
	}

	writeFile := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Each step changes TLS_CERT_DIR, reloads, and says which CA signs a
	// leaf for a new host and for the cached one afterwards.
	steps := []struct {
		name    string
		change  func()
		wantErr error      // nil: the reload succeeds
		wantLog string     // the message logged
		wantCA  *testca.CA // signs new leaves afterwards
	}{
		{"half-written rotation: new certificate, old key", func() { writeFile(mitm.CertFile, second.CertPEM()) },
			mitm.ErrKeyMismatch, "CA reload failed: keeping the CA in use", first},
		{"key file missing", func() { os.Remove(filepath.Join(dir, mitm.KeyFile)) },
			mitm.ErrNoCA, "CA reload failed: keeping the CA in use", first},
		{"not a CA", func() { testca.WriteNonCADir(t, dir) },
			mitm.ErrNotCA, "CA reload failed: keeping the CA in use", first},
		{"rotation complete", func() { second.WriteDir(t, dir) },
			nil, "CA reloaded: new leaves are signed by it", second},
		{"back to the first CA", func() { first.WriteDir(t, dir) },
			nil, "CA reloaded: new leaves are signed by it", first},
	}
	for i, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			before := strings.Count(logs.String(), st.wantLog)
			st.change()
			err := srv.ReloadCA()
			if (st.wantErr == nil) != (err == nil) || (st.wantErr != nil && !errors.Is(err, st.wantErr)) {
				t.Fatalf("ReloadCA() = %v, want %v", err, st.wantErr)
			}
			if got := strings.Count(logs.String(), st.wantLog); got != before+1 {
				t.Errorf("log lines %q: %d, want %d; logs:\n%s", st.wantLog, got, before+1, logs.String())
			}
			fresh := "new" + strconv.Itoa(i) + ".example"
			for _, host := range []string{fresh, cached} {
				if leaf := leafVia(t, srv.OutAddr, host); !signedBy(leaf, host, st.wantCA) {
					t.Errorf("leaf for %s: issuer %q, want one signed by %q", host, leaf.Issuer, st.wantCA.Cert.Subject)
				}
			}
			h := getHealth(t, srv.DiagAddr)
			if h.CA == nil || h.CA.Subject != st.wantCA.Cert.Subject.String() {
				t.Errorf("/healthz ca = %+v, want subject %q", h.CA, st.wantCA.Cert.Subject)
			}
		})
	}
}

// TestReloadCAWithoutUnwrap: with TLS_OUT_UNWRAP off there is nothing to
// reload, and ReloadCA says so instead of failing silently.
func TestReloadCAWithoutUnwrap(t *testing.T) {
	cfg, err := Load(nil, envOf(map[string]string{"PROXY_TYPE": "forward", "PROXY_OUT_PORT": strconv.Itoa(freePort(t)),
		"DIAG_HTTP_PORT": "-1", "FORWARDER_ADDR": "file://" + t.TempDir()}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	srv, err := New(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	if err := srv.ReloadCA(); !errors.Is(err, ErrNoCA) {
		t.Errorf("ReloadCA() = %v, want ErrNoCA", err)
	}
	if !strings.Contains(logs.String(), "nothing to reload") {
		t.Errorf("no log line for the reload; logs:\n%s", logs.String())
	}
}

func getHealth(t *testing.T, addr string) Health {
	t.Helper()
	res, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var h Health
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatalf("/healthz: %v: %s", err, b)
	}
	return h
}
