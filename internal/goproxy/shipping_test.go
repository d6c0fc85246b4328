package goproxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/testca"
	"github.com/tapwire/tapwire/internal/wire/wiretest"
)

// rawForwarder is a fake forwarder on a raw TCP listener: it keeps every
// byte goproxy sends on the wire, and the decompressed body of each batch,
// and answers each batch 200, listing zstd and s2 in Accept-Encoding as
// the forwarder does.
type rawForwarder struct {
	ln net.Listener

	mu      sync.Mutex
	wire    bytes.Buffer // every byte received, as it came
	bodies  bytes.Buffer // the batches' bodies, decompressed, and the records' bodies decoded
	batches int
	codings []string // each batch's Content-Encoding
}

func startRawForwarder(t *testing.T) *rawForwarder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &rawForwarder{ln: ln}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); f.serve(c) }()
		}
	}()
	return f
}

func (f *rawForwarder) Addr() string { return f.ln.Addr().String() }

type teeConn struct {
	net.Conn
	f *rawForwarder
}

func (c teeConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.f.mu.Lock()
	c.f.wire.Write(p[:n])
	c.f.mu.Unlock()
	return n, err
}

func (f *rawForwarder) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(teeConn{c, f})
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return
		}
		switch req.Header.Get("Content-Encoding") {
		case "zstd":
			d, err := zstd.NewReader(nil)
			if err != nil {
				return
			}
			body, err = d.DecodeAll(body, nil)
			d.Close()
			if err != nil {
				return
			}
		case "s2":
			if body, err = io.ReadAll(s2.NewReader(bytes.NewReader(body))); err != nil {
				return
			}
		}
		f.mu.Lock()
		f.bodies.Write(body)
		// Bodies travel in base64: add each record's bodies as text, so
		// that a secret in them is seen.
		for _, line := range bytes.Split(body, []byte("\n")) {
			var r capture.Record
			if json.Unmarshal(line, &r) == nil && r.HTTP != nil {
				f.bodies.Write(r.HTTP.Req.Body.Data)
				if r.HTTP.Res != nil {
					f.bodies.Write(r.HTTP.Res.Body.Data)
				}
				f.bodies.WriteByte('\n')
			}
		}
		f.batches++
		f.codings = append(f.codings, req.Header.Get("Content-Encoding"))
		f.mu.Unlock()
		n := req.Header.Get("Tapwire-Records")
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nAccept-Encoding: zstd, s2\r\nContent-Length: "+
			strconv.Itoa(len(`{"accepted":}`)+len(n))+"\r\n\r\n"+`{"accepted":`+n+`}`)
	}
}

// got returns the bytes received and the decompressed bodies.
func (f *rawForwarder) got() (wire, bodies string, batches int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.wire.String(), f.bodies.String(), f.batches
}

// encodings returns each batch's Content-Encoding.
func (f *rawForwarder) encodings() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.codings)
}

// TestRedactsBeforeShipping: with the guide's environment, what goproxy
// sends on the wire to the forwarder holds none of the secrets of the
// exchange (a bearer token, a JSON password, a card number, in the request
// and in the app's answer), and the record says which rules changed it,
// in the first batch (zstd) and in the second (s2: the forwarder listed it).
// With SPEEDSCALE_REDACT=false the same bytes do hold them: the check can
// see a secret when there is one.
func TestRedactsBeforeShipping(t *testing.T) {
	const (
		bearer   = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LWJlYXJlcg.sig-4f9a"
		password = "hunter2-correct-horse"
		card     = "4111 1111 1111 1111"
	)
	secrets := []string{bearer, password, card, "4111111111111111"}
	body := `{"user":"ann","password":"` + password + `","card":"` + card + `"}`
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(b) // the answer holds the secrets too
	}))
	t.Cleanup(app.Close)
	appPort := app.Listener.Addr().(*net.TCPAddr).Port

	for _, tc := range []struct {
		name       string
		env        map[string]string
		redacted   bool
		redactions string
	}{
		{"guide defaults", nil, true, `"redactions":["std-auth","std-card"]`},
		{"DLP config too", map[string]string{"SPEEDSCALE_DLP_CONFIG": `{"id":"pii","redactlist":{"entries":{"json":["user"]}}}`}, true, `"redactions":["std-auth","std-card","pii"]`},
		{"redaction off", map[string]string{"SPEEDSCALE_REDACT": "false"}, false, ""},
		{"zstd only", map[string]string{"SHIP_COMPRESSION": "zstd"}, true, `"redactions":["std-auth","std-card"]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fwd := startRawForwarder(t)
			env := guideEnv(t, appPort, fwd.Addr(), t.TempDir())
			env["PROXY_TYPE"] = "reverse"
			env["TLS_OUT_UNWRAP"] = "false"
			for k, v := range tc.env {
				env[k] = v
			}
			srv, logs := startLogged(t, env)

			var wire, bodies string
			for batch := 1; batch <= 2; batch++ {
				req, _ := http.NewRequest("POST", "http://"+srv.InAddr+"/login", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+bearer)
				req.Header.Set("Content-Type", "application/json")
				res, err := (&http.Client{Transport: &http.Transport{Proxy: nil}}).Do(req)
				if err != nil {
					t.Fatal(err)
				}
				got, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if string(got) != body {
					t.Fatalf("the app's answer through goproxy = %q, want %q (redaction must not touch the traffic)", got, body)
				}
				for deadline := time.Now().Add(10 * time.Second); ; {
					var n int
					wire, bodies, n = fwd.got()
					if n >= batch {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("batch %d did not reach the forwarder", batch)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			want := []string{"zstd", "s2"} // the forwarder listed s2 in its first answer
			if tc.env["SHIP_COMPRESSION"] == "zstd" {
				want = []string{"zstd", "zstd"}
			}
			if enc := fwd.encodings(); !slices.Equal(enc, want) {
				t.Errorf("the batches came in %q, want %q", enc, want)
			}
			// The operator is told when the coding changes.
			if said := strings.Contains(logs.String(), "the forwarder takes S2"); said != (want[1] == "s2") {
				t.Errorf("log says the forwarder takes S2: %v, want %v:\n%s", said, want[1] == "s2", logs)
			}
			if !strings.Contains(bodies, `/login`) {
				t.Fatalf("the batch lacks the exchange: %s", bodies)
			}
			for _, s := range secrets[:3] {
				inWire, inBody := strings.Contains(wire, s), strings.Contains(bodies, s)
				if tc.redacted && (inWire || inBody) {
					t.Errorf("secret %q on the wire (raw %v, decompressed %v), want none", s, inWire, inBody)
				}
				if !tc.redacted && !inBody {
					t.Errorf("secret %q not in the decompressed batch with redaction off: the check cannot see secrets", s)
				}
			}
			if tc.redacted {
				if strings.Contains(bodies, secrets[3]) {
					t.Errorf("the card number without spaces is on the wire")
				}
				if !strings.Contains(bodies, tc.redactions) || !strings.Contains(bodies, "REDACTED-std-auth") {
					t.Errorf("batch %s\nwant %s and REDACTED-std-auth", bodies, tc.redactions)
				}
				if n := srv.redacted.Load(); n != 2 {
					t.Errorf("records redacted = %d, want 2", n)
				}
				// The batch says which redaction it went through, so that a
				// forwarder with the same rules need not apply them again.
				if want := "Tapwire-Redacted: " + srv.redactor.Fingerprint() + "\r\n"; !strings.Contains(wire, want) {
					t.Errorf("the batch request lacks %q", want)
				}
			} else if strings.Contains(wire, "Tapwire-Redacted") {
				t.Error("a batch that was not redacted says it was (Tapwire-Redacted)")
			}
		})
	}
}

// TestForwarderTLS: FORWARDER_ADDR=https://... is verified against
// TLS_CERT_DIR's CA. With the CA that signed the forwarder's certificate
// the records arrive; with another CA every delivery fails, is counted and
// logged with a clear reason, and the app's requests are not affected.
func TestForwarderTLS(t *testing.T) {
	ca := testca.New(t)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	t.Cleanup(app.Close)
	appPort := app.Listener.Addr().(*net.TCPAddr).Port

	for _, tc := range []struct {
		name    string
		trusted bool
	}{{"the guide's CA", true}, {"another CA", false}} {
		t.Run(tc.name, func(t *testing.T) {
			fwd := wiretest.NewTLS(t, ca.ServerTLS(t, "127.0.0.1"))
			fwd.RequireToken("tok")
			dir := t.TempDir()
			if tc.trusted {
				ca.WriteDir(t, dir)
			} else {
				testca.New(t).WriteDir(t, dir)
			}
			env := guideEnv(t, appPort, fwd.Server.URL, dir)
			env["PROXY_TYPE"], env["TLS_OUT_UNWRAP"], env["FORWARDER_TOKEN"], env["SHUTDOWN_TIMEOUT"] = "reverse", "false", "tok", "1s"
			cfg, err := Load(nil, envOf(env), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			var logs lockedBuffer
			srv, err := New(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ctx) }()
			t.Cleanup(func() { cancel(); <-done })

			for i := range 3 {
				res, err := http.Get("http://" + srv.InAddr + "/x" + strconv.Itoa(i))
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != 200 || string(b) != "ok" {
					t.Fatalf("the app through goproxy: %d %q, want 200 ok", res.StatusCode, b)
				}
			}
			if tc.trusted {
				if got := fwd.WaitRecords(t, 3, 10*time.Second); len(got) != 3 {
					t.Errorf("%d records over TLS, want 3", len(got))
				}
				return
			}
			for deadline := time.Now().Add(10 * time.Second); srv.shipper.Stats().Failures == 0; {
				if time.Now().After(deadline) {
					t.Fatalf("no failure counted with an untrusted forwarder: %+v", srv.shipper.Stats())
				}
				time.Sleep(20 * time.Millisecond)
			}
			if st := srv.shipper.Stats(); st.Shipped != 0 || len(fwd.Records()) != 0 {
				t.Errorf("stats %+v, forwarder has %d records: want nothing delivered", st, len(fwd.Records()))
			}
			for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), "TLS certificate is not trusted"); {
				if time.Now().After(deadline) {
					t.Fatalf("log lacks a clear reason:\n%s", logs.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}
