package forwarder

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/format/jsonl"
	"github.com/tapwire/tapwire/internal/memtest"
	"github.com/tapwire/tapwire/internal/redact"
	"github.com/tapwire/tapwire/internal/sink/file"
	"github.com/tapwire/tapwire/internal/testca"
	"github.com/tapwire/tapwire/internal/wire"
)

// TestMain checks for leaked goroutines and removes the binaries the
// kill and memory tests built.
func TestMain(m *testing.M) { goleak.VerifyTestMain(memtest.CleanupMain{M: m}) }

// started is a forwarder serving on a loopback port.
type started struct {
	srv  *Server
	addr string // host:port
	dir  string
	stop func() error // cancels Serve and returns its error
}

func start(t testing.TB, cfg Config) *started {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(t.TempDir(), "records")
	}
	if cfg.SpoolDir == "" {
		cfg.SpoolDir = filepath.Join(t.TempDir(), "spool")
	}
	cfg.Listen = "127.0.0.1:0"
	srv, err := New(cfg, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	var stopped bool
	var stopErr error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			stopErr = <-done
		}
		return stopErr
	}
	t.Cleanup(func() { _ = stop() })
	return &started{srv: srv, addr: srv.Addr().String(), dir: cfg.Dir, stop: stop}
}

func httpRecords(n, bodyBytes int) []*capture.Record {
	recs := make([]*capture.Record, n)
	for i := range recs {
		recs[i] = &capture.Record{
			Schema: capture.SchemaVersion, ID: capture.NewID(), Kind: capture.KindHTTP, Direction: capture.DirIn,
			Start:  time.Now().UTC(),
			Labels: capture.Labels{Service: "notifications"},
			HTTP: &capture.HTTP{
				Req: capture.Request{Method: "GET", URL: fmt.Sprintf("http://app/%d", i), Proto: "HTTP/1.1", Host: "app"},
				Res: &capture.Response{Status: 200, Body: capture.Body{Data: bytes.Repeat([]byte{'x'}, bodyBytes), Size: int64(bodyBytes)}},
			},
		}
	}
	return recs
}

func readDir(t *testing.T, dir string) []*capture.Record {
	t.Helper()
	var got []*capture.Record
	if err := file.ReadDir(dir, func(r *capture.Record) error { got = append(got, r); return nil }); err != nil {
		t.Fatalf("ReadDir: %v", err)
	}
	return got
}

// waitDir waits until the directory sink holds at least n records (the
// spool delivers asynchronously) and returns them. A read that meets a
// line the sink is still writing (the last line cut short) is tried again
// until the deadline.
func waitDir(t *testing.T, dir string, n int) []*capture.Record {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var got []*capture.Record
		err := file.ReadDir(dir, func(r *capture.Record) error { got = append(got, r); return nil })
		if err == nil && len(got) >= n || time.Now().After(deadline) {
			if err != nil {
				t.Fatalf("ReadDir: %v", err)
			}
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newClient(t *testing.T, addr, token string) *wire.Client {
	t.Helper()
	c, err := wire.NewClient(addr, wire.ClientOptions{Token: token, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestRoundTrip posts batches with goproxy's own sink and reads them back
// from the files.
func TestRoundTrip(t *testing.T) {
	f := start(t, Config{Cluster: "ecs", TenantID: "tenant-uuid", TenantName: "sstenant-tenant", SubTenantName: "default", Token: "s3cret"})
	client := newClient(t, f.addr, "s3cret")

	first := httpRecords(3, 100)
	first[1].Labels.Cluster = "set-by-goproxy"
	second := httpRecords(2, 10)
	for _, b := range [][]*capture.Record{first, second} {
		if err := client.Write(context.Background(), b); err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	// Acknowledged means spooled; the directory sink gets it soon after.
	got := waitDir(t, f.dir, 5)
	want := append(first, second...)
	if len(got) != len(want) {
		t.Fatalf("read %d records, want %d", len(got), len(want))
	}
	for i, r := range got {
		if r.ID != want[i].ID {
			t.Errorf("record %d: id %s, want %s (order kept)", i, r.ID, want[i].ID)
		}
		wantCluster := "ecs"
		if i == 1 {
			wantCluster = "set-by-goproxy"
		}
		if r.Labels.Cluster != wantCluster || r.Labels.Tenant != "tenant-uuid" || r.Labels.Service != "notifications" ||
			r.Tags["tenantName"] != "sstenant-tenant" || r.Tags["subTenant"] != "default" {
			t.Errorf("record %d labels %+v, want cluster %q, tenant tenant-uuid, service notifications", i, r.Labels, wantCluster)
		}
		if r.HTTP == nil || r.HTTP.Res == nil || !bytes.Equal(r.HTTP.Res.Body.Data, want[i].HTTP.Res.Body.Data) {
			t.Errorf("record %d: response body not kept", i)
		}
	}
	if st := f.srv.Stats(); st.Batches != 2 || st.Records != 5 || st.Rejected != 0 {
		t.Errorf("stats %+v, want 2 batches, 5 records, 0 rejected", st)
	}
	if err := f.stop(); err != nil {
		t.Errorf("Serve after cancel: %v, want nil", err)
	}
}

// TestS2: goproxy's client (FastCompression) learns from the forwarder's
// first answer (Accept-Encoding) that it takes S2 and sends the next
// batches in it; every record lands whole and in order, and the metrics
// count the batches by encoding.
func TestS2(t *testing.T) {
	f := start(t, Config{Cluster: "ecs", Token: "s3cret"})
	client, err := wire.NewClient(f.addr, wire.ClientOptions{Token: "s3cret", FastCompression: true, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	var want []*capture.Record
	for range 3 {
		recs := httpRecords(4, 2000)
		if err := client.Write(context.Background(), recs); err != nil {
			t.Fatalf("Write: %v", err)
		}
		want = append(want, recs...)
	}
	got := waitDir(t, f.dir, len(want))
	if len(got) != len(want) {
		t.Fatalf("read %d records, want %d", len(got), len(want))
	}
	for i, r := range got {
		if r.ID != want[i].ID || r.HTTP == nil || r.HTTP.Res == nil || !bytes.Equal(r.HTTP.Res.Body.Data, want[i].HTTP.Res.Body.Data) {
			t.Fatalf("record %d: %s, want %s with its response body (order kept)", i, r.ID, want[i].ID)
		}
	}
	_, metrics := get(t, "http://"+f.addr+"/metrics")
	for _, m := range []string{`forwarder_batches_encoding_total{encoding="zstd"} 1`, `forwarder_batches_encoding_total{encoding="s2"} 2`} {
		if !strings.Contains(metrics, "\n"+m+"\n") {
			t.Errorf("metrics lack %s", m)
		}
	}
}

// TestTooLargeSplits: a batch over MaxBatchBytes gets 413 and goproxy's
// sink splits it until every half fits.
func TestTooLargeSplits(t *testing.T) {
	f := start(t, Config{MaxBatchBytes: 64 << 10})
	client := newClient(t, f.addr, "")
	recs := httpRecords(8, 20<<10) // ~27 KiB each in base64: 2 fit, 8 do not
	if err := client.Write(context.Background(), recs); err != nil {
		t.Fatalf("Write: %v", err)
	}
	got := waitDir(t, f.dir, len(recs))
	if len(got) != len(recs) {
		t.Fatalf("read %d records, want %d", len(got), len(recs))
	}
	st := f.srv.Stats()
	if st.Rejected == 0 || st.Records != 8 {
		t.Errorf("stats %+v, want some rejected (413) and 8 records", st)
	}
}

func TestToken(t *testing.T) {
	f := start(t, Config{Token: "s3cret"})
	tests := []struct {
		name, token string
		wantErr     bool
	}{
		{"none", "", true},
		{"wrong", "guess", true},
		{"prefix", "s3cre", true},
		{"right", "s3cret", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := newClient(t, f.addr, tc.token).Write(context.Background(), httpRecords(1, 0))
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("Write: %v, want nil", err)
				}
				return
			}
			var se *wire.ServerError
			var pe *capture.PermanentError
			if !errors.As(err, &se) || se.Status != http.StatusUnauthorized || !errors.As(err, &pe) {
				t.Fatalf("Write: %v, want a permanent 401", err)
			}
		})
	}
	if st := f.srv.Stats(); st.Unauthorized != 3 || st.Records != 1 {
		t.Errorf("stats %+v, want 3 unauthorized and 1 record", st)
	}
	if got := waitDir(t, f.dir, 1); len(got) != 1 {
		t.Errorf("read %d records, want only the authorized one", len(got))
	}
}

// TestTokenFromAnyAddress: a forwarder with a token, listening on every
// interface, refuses a batch without it (401) whatever address it comes
// from, loopback included, and takes one with it.
func TestTokenFromAnyAddress(t *testing.T) {
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	f := start(t, Config{Token: "s3cret", Listener: ln})
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	addrs := []string{"127.0.0.1", "::1"}
	ifaddrs, _ := net.InterfaceAddrs()
	for _, a := range ifaddrs {
		if ip, ok := a.(*net.IPNet); ok && !ip.IP.IsLoopback() && ip.IP.To4() != nil {
			addrs = append(addrs, ip.IP.String()) // another host would come this way
			break
		}
	}
	accepted := 0
	for _, host := range addrs {
		t.Run(host, func(t *testing.T) {
			if c, err := net.Dial("tcp", net.JoinHostPort(host, port)); err != nil {
				t.Skipf("no route to %s here: %v", host, err)
			} else {
				c.Close()
			}
			addr := net.JoinHostPort(host, port)
			err := newClient(t, addr, "").Write(context.Background(), httpRecords(1, 0))
			var se *wire.ServerError
			if !errors.As(err, &se) || se.Status != http.StatusUnauthorized {
				t.Errorf("tokenless batch from %s: %v, want 401", host, err)
			}
			if err := newClient(t, addr, "s3cret").Write(context.Background(), httpRecords(1, 0)); err != nil {
				t.Errorf("batch with the token from %s: %v, want it accepted", host, err)
			}
			accepted++
		})
	}
	if st := f.srv.Stats(); st.Records != int64(accepted) || st.Unauthorized != int64(accepted) {
		t.Errorf("stats %+v, want %d records and %d unauthorized", st, accepted, accepted)
	}
}

// TestTLS: with FORWARDER_TLS_CERT and FORWARDER_TLS_KEY (files, or the
// PEM itself) the forwarder serves batches and health over TLS only; a
// client that trusts the CA posts, one that does not is refused in the
// handshake, and plain HTTP gets no answer of the forwarder's.
func TestTLS(t *testing.T) {
	ca := testca.New(t)
	leaf := ca.Leaf(t, "127.0.0.1", "forwarder.ecs.local")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Certificate[0]})
	keyDER, err := x509.MarshalPKCS8PrivateKey(leaf.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "forwarder.crt"), filepath.Join(dir, "forwarder.key")
	os.WriteFile(certFile, certPEM, 0o644)
	os.WriteFile(keyFile, keyPEM, 0o600)

	for _, tc := range []struct{ name, cert, key string }{
		{"files", certFile, keyFile},
		{"PEM in the variables", string(certPEM), string(keyPEM)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := start(t, Config{Token: "s3cret", TLSCert: tc.cert, TLSKey: tc.key})
			c, err := wire.NewClient("https://"+f.addr, wire.ClientOptions{Token: "s3cret", TLSConfig: ca.ClientConfig(), Timeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Write(context.Background(), httpRecords(2, 0)); err != nil {
				t.Fatalf("Write over TLS: %v", err)
			}
			hc := &http.Client{Transport: &http.Transport{TLSClientConfig: ca.ClientConfig()}}
			res, err := hc.Get("https://" + f.addr + "/")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != 200 || !strings.HasPrefix(string(b), "Connected: ") {
				t.Errorf("health over TLS: %d %q", res.StatusCode, b)
			}

			other, _ := wire.NewClient("https://"+f.addr, wire.ClientOptions{Token: "s3cret", TLSConfig: testca.New(t).ClientConfig(), Timeout: 5 * time.Second})
			defer other.Close()
			if err := other.Write(context.Background(), httpRecords(1, 0)); err == nil || !strings.Contains(err.Error(), "TLS certificate is not trusted") {
				t.Errorf("Write trusting another CA: %v, want a certificate error", err)
			}
			if res, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + f.addr + "/"); err == nil {
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if strings.Contains(string(b), "Connected") {
					t.Errorf("plain HTTP answered %d %q, want TLS only", res.StatusCode, b)
				}
			}
			if st := f.srv.Stats(); st.Records != 2 {
				t.Errorf("stats %+v, want the 2 records sent over TLS", st)
			}
		})
	}
	if _, err := New(Config{TLSCert: certFile, SpoolDir: t.TempDir(), Dir: t.TempDir()}, nil); err == nil || !strings.Contains(err.Error(), "FORWARDER_TLS_KEY") {
		t.Errorf("New with a certificate and no key: %v, want an error naming FORWARDER_TLS_KEY", err)
	}
	if _, err := New(Config{TLSCert: keyFile, TLSKey: keyFile, SpoolDir: t.TempDir(), Dir: t.TempDir(), Listen: "127.0.0.1:0"}, nil); err == nil || !strings.Contains(err.Error(), "FORWARDER_TLS_CERT") {
		t.Errorf("New with a key for a certificate: %v, want an error naming FORWARDER_TLS_CERT", err)
	}
}

// TestPreRedacted: a batch whose sender says it applied this forwarder's
// own redaction (wire.HeaderRedacted = the redactor's fingerprint) is not
// redacted again, and its lines are stored as they came; any other
// fingerprint, or none, and the forwarder redacts as always. The records
// sent here were NOT redacted, to see which path each batch took: a
// sender's fingerprint is trusted (goproxy is authenticated by
// FORWARDER_TOKEN and holds the plaintext anyway).
func TestPreRedacted(t *testing.T) {
	f := start(t, Config{})
	mine, err := (&redact.Settings{}).Redactor()
	if err != nil {
		t.Fatal(err)
	}
	other, err := (&redact.Settings{RedactBodies: "false"}).Redactor()
	if err != nil {
		t.Fatal(err)
	}
	body := `{"password":"hunter2","card":"4111 1111 1111 1111"}`
	// waitFor returns the stored record id (the spool delivers
	// asynchronously; a read that meets a line being written is tried again).
	waitFor := func(id string) *capture.Record {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			var found *capture.Record
			err := file.ReadDir(f.dir, func(r *capture.Record) error {
				if r.ID == id {
					found = r
				}
				return nil
			})
			if err == nil && found != nil {
				return found
			}
		}
		t.Fatalf("record %s never reached the directory", id)
		return nil
	}
	send := func(fp string) *capture.Record {
		t.Helper()
		recs := httpRecords(1, 0)
		recs[0].HTTP.Req.Headers = capture.Headers{{Name: "Authorization", Value: "Bearer s3cret-token"}}
		recs[0].HTTP.Req.Body = capture.Body{Data: []byte(body), Size: int64(len(body))}
		c, err := wire.NewClient(f.addr, wire.ClientOptions{Timeout: 10 * time.Second, Redacted: fp})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Write(context.Background(), recs); err != nil {
			t.Fatal(err)
		}
		return waitFor(recs[0].ID)
	}

	r := send(mine.Fingerprint())
	if v := r.HTTP.Req.Headers.Get("Authorization"); v != "Bearer s3cret-token" || string(r.HTTP.Req.Body.Data) != body {
		t.Errorf("same fingerprint: Authorization %q, body %s: want both as sent (not redacted again)", v, r.HTTP.Req.Body.Data)
	}
	if st := f.srv.Stats(); st.PreRedacted != 1 {
		t.Errorf("PreRedacted %d, want 1", st.PreRedacted)
	}
	for _, fp := range []string{other.Fingerprint(), "", strings.Repeat("0", 64)} {
		r := send(fp)
		if v := r.HTTP.Req.Headers.Get("Authorization"); v != "REDACTED-std-auth" || strings.Contains(string(r.HTTP.Req.Body.Data), "hunter2") {
			t.Errorf("fingerprint %q: Authorization %q, body %s: want redacted", fp, v, r.HTTP.Req.Body.Data)
		}
	}
	if st := f.srv.Stats(); st.PreRedacted != 1 {
		t.Errorf("PreRedacted %d after three other batches, want still 1", st.PreRedacted)
	}
	_, metrics := get(t, "http://"+f.addr+"/metrics")
	if !strings.Contains(metrics, "forwarder_batches_pre_redacted_total 1") {
		t.Error("metrics lack forwarder_batches_pre_redacted_total 1")
	}
}

// post sends a hand-made batch request and returns the status and body.
func post(t *testing.T, addr, method string, hdr map[string]string, body string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+wire.Path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestBadBatch(t *testing.T) {
	f := start(t, Config{})
	var good bytes.Buffer
	if err := jsonl.Append(&good, httpRecords(2, 0)); err != nil {
		t.Fatal(err)
	}
	v1 := map[string]string{wire.HeaderProtocol: "1", "Content-Type": wire.ContentType}
	with := func(extra map[string]string) map[string]string {
		h := map[string]string{}
		for k, v := range v1 {
			h[k] = v
		}
		for k, v := range extra {
			h[k] = v
		}
		return h
	}
	tests := []struct {
		name     string
		method   string
		hdr      map[string]string
		body     string
		wantCode int
		wantMsg  string
	}{
		{"not json", "POST", v1, "not json\n", 400, "line 1"},
		{"invalid record", "POST", v1, `{"id":"x","kind":"http","direction":"sideways"}` + "\n", 400, "direction"},
		{"good then bad", "POST", v1, good.String() + "{\n", 400, "line 3"},
		{"count mismatch", "POST", with(map[string]string{wire.HeaderRecords: "3"}), good.String(), 400, "header says 3"},
		{"protocol 2", "POST", with(map[string]string{wire.HeaderProtocol: "2"}), good.String(), 400, "protocol"},
		{"corrupt zstd", "POST", with(map[string]string{"Content-Encoding": "zstd"}), "garbage", 400, "corrupt"},
		{"unknown encoding", "POST", with(map[string]string{"Content-Encoding": "br"}), good.String(), 415, "encoding"},
		{"GET", "GET", v1, "", 405, "POST"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _ := post(t, f.addr, tc.method, tc.hdr, tc.body)
			if code != tc.wantCode || !strings.Contains(body, tc.wantMsg) {
				t.Errorf("got %d %q, want %d containing %q", code, body, tc.wantCode, tc.wantMsg)
			}
		})
	}
	if st := f.srv.Stats(); st.Rejected != int64(len(tests)) || st.Batches != 0 {
		t.Errorf("stats %+v, want %d rejected, 0 batches", st, len(tests))
	}
	// Nothing of a refused batch reaches the spool, not even the good
	// records before the bad line.
	if st := f.srv.Stats(); st.Spooled != 0 {
		t.Errorf("%d records spooled after refused batches, want 0", st.Spooled)
	}
	// And the good batch alone is accepted.
	code, body, _ := post(t, f.addr, "POST", with(map[string]string{wire.HeaderRecords: "2"}), good.String())
	if code != 200 || !strings.Contains(body, `"accepted":2`) {
		t.Errorf("good batch: got %d %q, want 200 {\"accepted\":2}", code, body)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHealth(t *testing.T) {
	spoolDir := filepath.Join(t.TempDir(), "spool")
	f := start(t, Config{SpoolDir: spoolDir})
	code, body := get(t, "http://"+f.addr+"/")
	// The guide's environment sets no token: health says so, and keeps its Connected.
	if want := "Connected: directory " + f.dir + "; UNAUTHENTICATED: FORWARDER_TOKEN is not set, batches are accepted from anyone who can reach the port\n"; code != 200 || body != want {
		t.Errorf("GET /: %d %q, want 200 %q", code, body, want)
	}
	if _, m := get(t, "http://"+f.addr+"/metrics"); !strings.Contains(m, "\nforwarder_unauthenticated 1\n") {
		t.Errorf("metrics lack forwarder_unauthenticated 1")
	}
	withToken := start(t, Config{Token: "s3cret"})
	if code, body := get(t, "http://"+withToken.addr+"/"); code != 200 || body != "Connected: directory "+withToken.dir+"\n" {
		t.Errorf("GET / with a token: %d %q, want 200 and no UNAUTHENTICATED", code, body)
	}
	if _, m := get(t, "http://"+withToken.addr+"/metrics"); !strings.Contains(m, "\nforwarder_unauthenticated 0\n") {
		t.Errorf("metrics with a token lack forwarder_unauthenticated 0")
	}
	if entries, _ := os.ReadDir(f.dir); len(entries) != 0 {
		t.Errorf("health check left %d files in the directory", len(entries))
	}
	if code, _ := get(t, "http://"+f.addr+"/nope"); code != 404 {
		t.Errorf("GET /nope: %d, want 404", code)
	}

	// Make the directory unusable (a file in its place: this fails even
	// for root, unlike a chmod).
	if err := os.RemoveAll(f.dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.dir, []byte("in the way"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, body = get(t, "http://"+f.addr+"/")
	if code != 503 || !strings.HasPrefix(body, "Not connected: directory: cannot create a file in "+f.dir) || strings.Contains(body, "Connected:") {
		t.Errorf("GET / with the directory gone: %d %q, want 503 \"Not connected: directory: cannot create a file in ...\"", code, body)
	}
	// The batch is still accepted: it waits in the spool.
	if err := newClient(t, f.addr, "").Write(context.Background(), httpRecords(1, 0)); err != nil {
		t.Errorf("Write with the directory gone: %v, want it spooled", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for f.srv.Stats().Sinks["directory"].Failures == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := f.srv.Stats(); st.Sinks["directory"].Failures == 0 || st.Sinks["directory"].Delivered != 0 || st.Sinks["directory"].PendingBytes == 0 {
		t.Errorf("stats %+v, want failed deliveries and the record pending", st.Sinks)
	}
	// Directory back: the record is delivered.
	os.Remove(f.dir)
	os.MkdirAll(f.dir, 0o750)
	if got := waitDir(t, f.dir, 1); len(got) != 1 {
		t.Errorf("after the directory came back: %d records, want 1", len(got))
	}

	// The spool unusable: 503 to batches, which goproxy retries.
	os.RemoveAll(spoolDir)
	os.WriteFile(spoolDir, []byte("in the way"), 0o600)
	code, body = get(t, "http://"+f.addr+"/")
	if code != 503 || !strings.Contains(body, "spool: cannot create a file") {
		t.Errorf("GET / with the spool gone: %d %q, want 503 naming the spool", code, body)
	}
}

// slowBatch starts a batch POST whose body arrives only when the returned
// function is called, and returns the answer on the channel.
func slowBatch(t *testing.T, addr string, recs []*capture.Record) (finish func(), answer <-chan int) {
	t.Helper()
	var body bytes.Buffer
	if err := jsonl.Append(&body, recs); err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	req, err := http.NewRequest("POST", "http://"+addr+wire.Path, pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(wire.HeaderProtocol, "1")
	ch := make(chan int, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			ch <- -1
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		ch <- resp.StatusCode
	}()
	half := body.Len() / 2
	if _, err := pw.Write(body.Bytes()[:half]); err != nil { // blocks until the server reads it
		t.Fatal(err)
	}
	return func() {
		pw.Write(body.Bytes()[half:])
		pw.Close()
	}, ch
}

// TestBusyAndGracefulShutdown: with one batch in flight and MaxInFlight 1,
// another gets 429; SIGTERM (ctx) waits for the one in flight to be
// stored and answered.
func TestBusyAndGracefulShutdown(t *testing.T) {
	f := start(t, Config{MaxInFlight: 1})
	recs := httpRecords(4, 64<<10) // half the body is more than the client's write buffer
	finish, answer := slowBatch(t, f.addr, recs)
	for deadline := time.Now().Add(5 * time.Second); len(f.srv.sem) == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the slow batch never reached the handler")
		}
	}

	code, _, hdr := post(t, f.addr, "POST", map[string]string{wire.HeaderProtocol: "1"}, "")
	if code != http.StatusTooManyRequests || hdr.Get("Retry-After") != "1" {
		t.Errorf("second batch: %d Retry-After %q, want 429 and 1", code, hdr.Get("Retry-After"))
	}

	stopped := make(chan error, 1)
	go func() { stopped <- f.stop() }()
	select {
	case err := <-stopped:
		t.Fatalf("Serve returned (%v) with a batch in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	finish()
	if code := <-answer; code != 200 {
		t.Errorf("batch in flight at shutdown: %d, want 200", code)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Serve: %v, want nil", err)
	}
	if got := readDir(t, f.dir); len(got) != len(recs) {
		t.Errorf("read %d records, want %d", len(got), len(recs))
	}
	if _, err := net.DialTimeout("tcp", f.addr, time.Second); err == nil {
		t.Errorf("port still open after shutdown")
	}
}

// TestRedaction: the default rules and SPEEDSCALE_DLP_CONFIG apply before
// the records reach the spool and the sinks.
func TestRedaction(t *testing.T) {
	f := start(t, Config{Redaction: redact.Settings{DLPConfig: `{"id":"pii","redactlist":{"entries":{"json":["ssn"],"patterns":["email"]}}}`}})
	recs := httpRecords(2, 0)
	recs[0].HTTP.Req.Headers = capture.Headers{{Name: "Authorization", Value: "Bearer s3cret-token"}, {Name: "Content-Type", Value: "application/json"}}
	body := `{"user":"ann@example.com","password":"hunter2","ssn":"078-05-1120","card":"4111 1111 1111 1111"}`
	recs[0].HTTP.Req.Body = capture.Body{Data: []byte(body), Size: int64(len(body))}
	if err := newClient(t, f.addr, "").Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	got := waitDir(t, f.dir, 2)
	if len(got) != 2 {
		t.Fatalf("%d records, want 2", len(got))
	}
	r := got[0]
	if v := r.HTTP.Req.Headers.Get("Authorization"); v != "REDACTED-std-auth" {
		t.Errorf("Authorization %q, want REDACTED-std-auth", v)
	}
	if b := string(r.HTTP.Req.Body.Data); b != `{"user":"REDACTED-pii","password":"REDACTED-std-auth","ssn":"REDACTED-pii","card":"REDACTED-std-card"}` {
		t.Errorf("body %s", b)
	}
	if !slices.Equal(r.Redactions, []string{"std-auth", "std-card", "pii"}) || got[1].Redactions != nil {
		t.Errorf("redactions %v and %v, want [std-auth std-card pii] and none", r.Redactions, got[1].Redactions)
	}
	spooled, _ := os.ReadDir(f.srv.cfg.SpoolDir)
	for _, e := range spooled {
		b, _ := os.ReadFile(filepath.Join(f.srv.cfg.SpoolDir, e.Name()))
		if bytes.Contains(b, []byte("s3cret-token")) || bytes.Contains(b, []byte("hunter2")) || bytes.Contains(b, []byte("4111 1111")) {
			t.Errorf("spool file %s holds a secret: redaction must come before the disk", e.Name())
		}
	}
	_, metrics := get(t, "http://"+f.addr+"/metrics")
	for _, want := range []string{"forwarder_records_redacted_total 1", `forwarder_redactions_total{rule="pii"} 1`, `forwarder_redactions_total{rule="std-auth"} 1`, `forwarder_redactions_total{rule="std-card"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	// SPEEDSCALE_REDACT_BODIES=false: credentials in headers still go, bodies are kept as they came.
	f = start(t, Config{Redaction: redact.Settings{RedactBodies: "false"}})
	recs = httpRecords(1, 0)
	recs[0].HTTP.Req.Headers = capture.Headers{{Name: "X-Vault-Token", Value: "hvs.x"}, {Name: "Content-Type", Value: "application/json"}}
	recs[0].HTTP.Req.Body = capture.Body{Data: []byte(body), Size: int64(len(body))}
	if err := newClient(t, f.addr, "").Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	got = waitDir(t, f.dir, 1)
	if len(got) != 1 || got[0].HTTP.Req.Headers.Get("X-Vault-Token") != "REDACTED-std-auth" || string(got[0].HTTP.Req.Body.Data) != body ||
		!slices.Equal(got[0].Redactions, []string{"std-auth"}) {
		t.Errorf("with bodies off: %+v, want the header redacted and the body kept", got)
	}

	if _, err := New(Config{Redaction: redact.Settings{DLPConfig: `{"id":"x","redactlist":{"entries":{"nope":["a"]}}}`}, SpoolDir: t.TempDir(), Dir: t.TempDir()}, nil); err == nil ||
		!strings.Contains(err.Error(), "SPEEDSCALE_DLP_CONFIG") {
		t.Errorf("New with a bad rule: %v, want an error naming SPEEDSCALE_DLP_CONFIG", err)
	}
}

// TestStaged: a batch of more than one frame of lines is staged on disk and
// counted; a batch under a frame (goproxy's) is not.
func TestStaged(t *testing.T) {
	f := start(t, Config{})
	client := newClient(t, f.addr, "")
	small := httpRecords(8, 1<<10)
	if err := client.Write(context.Background(), small); err != nil {
		t.Fatal(err)
	}
	if st := f.srv.Stats(); st.Staged != 0 {
		t.Errorf("Staged %d after a batch of 8 small records, want 0", st.Staged)
	}
	large := httpRecords(100, 12<<10) // 16 KiB of base64 each: 1.6 MB of lines, two frames
	if err := client.Write(context.Background(), large); err != nil {
		t.Fatal(err)
	}
	if got := waitDir(t, f.dir, len(small)+len(large)); len(got) != len(small)+len(large) {
		t.Fatalf("read %d records, want %d", len(got), len(small)+len(large))
	}
	if st := f.srv.Stats(); st.Staged != 1 || st.Batches != 2 {
		t.Errorf("Staged %d of %d batches, want the large one", st.Staged, st.Batches)
	}
	_, metrics := get(t, "http://"+f.addr+"/metrics")
	if !strings.Contains(metrics, "forwarder_batches_staged_total 1") {
		t.Error("metrics lack forwarder_batches_staged_total 1")
	}
}
