package demo

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/mitm"
	"github.com/tapwire/tapwire/internal/mock"
	"github.com/tapwire/tapwire/internal/testca"
)

// TestOrdersOnMocks is issue 12's demo check: the demo's orders service,
// captured while it ran against its HTTPS payments upstream, runs again on
// mocks built from that capture alone, with the payments upstream stopped:
// every recorded request of the shopper, sent again in recorded order to a
// fresh orders service whose outbound calls go to speedctl mock's server,
// gets the recorded status, and no outbound call misses.
func TestOrdersOnMocks(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	s, err := Start(context.Background(), Config{DataDir: dir, Rate: 40, Ports: anyPorts, Out: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "40 records stored", func() bool {
		st, err := s.Stats(context.Background())
		return err == nil && st.Stored >= 40
	})
	payments, tenant := s.UpstreamURL, s.Tenant
	if _, _, err := s.Stop(); err != nil { // the payments upstream stops with the rest
		t.Fatal(err)
	}
	recs := records(t, dir, tenant)
	var in []*capture.Record
	out := 0
	for _, r := range recs {
		if r.HTTP == nil || r.HTTP.Res == nil {
			continue
		}
		if r.Direction == capture.DirIn {
			in = append(in, r)
		} else {
			out++
		}
	}
	if len(in) < 20 || out == 0 {
		t.Fatalf("captured %d inbound and %d outbound exchanges, want at least 20 and some", len(in), out)
	}
	// Recorded order: the store lists newest first.
	for i, j := 0, len(in)-1; i < j; i, j = i+1, j-1 {
		in[i], in[j] = in[j], in[i]
	}
	if c, err := net.Dial("tcp", mustHost(t, payments)); err == nil {
		c.Close()
		t.Fatalf("the payments upstream %s still answers: the test must run without it", payments)
	}

	// The mock, from the capture alone, with a CA of its own.
	ca := testca.New(t)
	mca, err := mitm.ParseCA(ca.CertPEM(), ca.KeyPEM(t))
	if err != nil {
		t.Fatal(err)
	}
	minter, err := mitm.NewMinter(mca, mitm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := mock.New(mock.Options{Index: mock.NewIndex(recs, nil), Minter: minter})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("mock Shutdown: %v", err)
		}
		<-done
	}()

	// A fresh orders service whose client goes through the mock, trusting
	// its CA, as HTTPS_PROXY and SSL_CERT_FILE would make it.
	tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: ln.Addr().String()}),
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}
	defer tr.CloseIdleConnections()
	app := httptest.NewServer(newOrders(payments, &http.Client{Transport: tr, Timeout: 10 * time.Second}).handler())
	defer app.Close()

	client := app.Client()
	mismatched := 0
	for _, r := range in {
		u, err := url.Parse(r.HTTP.Req.URL)
		if err != nil {
			t.Fatal(err)
		}
		req, err := http.NewRequest(r.HTTP.Req.Method, app.URL+u.RequestURI(), bytes.NewReader(r.HTTP.Req.Body.Data))
		if err != nil {
			t.Fatal(err)
		}
		if ct := r.HTTP.Req.Headers.Get("Content-Type"); ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != r.HTTP.Res.Status {
			mismatched++
			t.Errorf("%s %s: %d %q, recorded %d %q", r.HTTP.Req.Method, u.RequestURI(), res.StatusCode, first(body, 200), r.HTTP.Res.Status, first(r.HTTP.Res.Body.Data, 200))
		}
	}
	rep := srv.Report().Summary()
	if rep.Missed != 0 || rep.Matched == 0 {
		t.Errorf("the mock matched %d and missed %d outbound calls, want none missed: %+v", rep.Matched, rep.Missed, rep.Misses)
	}
	t.Logf("%d inbound requests replayed on mocks, %d with another status; %d outbound recordings", len(in), mismatched, out)
}

func mustHost(t *testing.T, u string) string {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return pu.Host
}

func first(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}
