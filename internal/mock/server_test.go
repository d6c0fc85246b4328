package mock

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/format"
	"github.com/tapwire/tapwire/internal/mitm"
	"github.com/tapwire/tapwire/internal/testca"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// mockEnv is a running mock server with its CA.
type mockEnv struct {
	srv    *Server
	proxy  *url.URL
	ca     *testca.CA
	caFile string
}

func startMock(t *testing.T, recs []*capture.Record, opt Options) *mockEnv {
	t.Helper()
	ca := testca.New(t)
	mca, err := mitm.ParseCA(ca.CertPEM(), ca.KeyPEM(t))
	if err != nil {
		t.Fatal(err)
	}
	minter, err := mitm.NewMinter(mca, mitm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if opt.Index == nil {
		opt.Index = NewIndex(recs, nil)
	}
	opt.Minter = minter
	srv, err := New(opt)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	ca.WriteFile(t, caFile)
	return &mockEnv{srv: srv, proxy: &url.URL{Scheme: "http", Host: ln.Addr().String()}, ca: ca, caFile: caFile}
}

// client is an HTTP client of the app's kind: through the mock as its proxy, trusting the mock's CA.
func (e *mockEnv) client(t *testing.T) *http.Client {
	tr := &http.Transport{Proxy: http.ProxyURL(e.proxy), TLSClientConfig: &tls.Config{RootCAs: e.ca.Pool()}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func do(t *testing.T, c *http.Client, method, url, body string, headers ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// volatileRecs are the recordings of a payments API whose client sends a fresh nonce, timestamp and token
// in the body and the headers of every call.
func volatileRecs() []*capture.Record {
	var recs []*capture.Record
	for i := range 3 {
		body := fmt.Sprintf(`{"amount":100,"currency":"EUR","nonce":"%s","ts":"%s","token":"tok_%x9Q"}`,
			fmt.Sprintf("1c7f6a2e-55b1-4c1e-9d3a-%012d", i), t0.Add(time.Duration(i)*time.Minute).Format(time.RFC3339Nano), 0xfeedface00+i)
		r := rec(i, "POST", "https://pay.example.com/v1/charges", body, fmt.Sprintf(`{"charge":"ch_%d","status":"ok"}`, i+1),
			"X-Nonce", fmt.Sprintf("%032x", 0xabc+i), "X-Timestamp", fmt.Sprint(1750875507+i), "Authorization", fmt.Sprintf("Bearer eyJhbGciOiJIUzI1NiJ9.eyJpIjo%dfQ.c2ln", i))
		r.HTTP.Res.Headers = capture.Headers{{Name: "Content-Type", Value: "application/json"}}
		recs = append(recs, r)
	}
	recs = append(recs, rec(5, "GET", "http://catalog.example.com/items?limit=2", "", `["a","b"]`))
	return recs
}

func TestServerVolatileGoClient(t *testing.T) {
	e := startMock(t, volatileRecs(), Options{})
	c := e.client(t)
	for i := range 5 {
		body := fmt.Sprintf(`{"amount":100,"currency":"EUR","nonce":"%s","ts":"%s","token":"tok_%x7Z"}`,
			fmt.Sprintf("0b3e2f10-9c1d-4e5f-8a7b-%012d", 100+i), time.Now().Format(time.RFC3339Nano), 0xdeadbeef00+i)
		resp, got := do(t, c, "POST", "https://pay.example.com/v1/charges", body, "X-Nonce", fmt.Sprintf("%032x", 0x1234567+i),
			"X-Timestamp", fmt.Sprint(time.Now().Unix()), "Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJmcmVzaCI6MX0.bmV3")
		want := fmt.Sprintf(`{"charge":"ch_%d","status":"ok"}`, min(i+1, 3))
		if resp.StatusCode != 200 || got != want {
			t.Errorf("call %d: %d %s (miss: %s); want 200 %s", i, resp.StatusCode, got, resp.Header.Get(MissHeader), want)
		}
		if resp.ProtoMajor != 2 {
			t.Errorf("call %d: proto %s, want HTTP/2 after the TLS unwrap", i, resp.Proto)
		}
	}
	if resp, got := do(t, c, "GET", "http://catalog.example.com/items?limit=2", ""); resp.StatusCode != 200 || got != `["a","b"]` {
		t.Errorf("plain HTTP: %d %q", resp.StatusCode, got)
	}
	if s := e.srv.Report().Summary(); s.Missed != 0 || s.Matched != 6 {
		t.Errorf("report: matched %d, missed %d; want 6, 0", s.Matched, s.Missed)
	}
}

// TestServerCurlAndPython is the volatile-fields case with real clients: curl and Python's requests
// through the mock with HTTPS_PROXY and the CA in SSL_CERT_FILE / REQUESTS_CA_BUNDLE.
func TestServerCurlAndPython(t *testing.T) {
	e := startMock(t, volatileRecs(), Options{})
	env := append(os.Environ(), "HTTPS_PROXY="+e.proxy.String(), "HTTP_PROXY="+e.proxy.String(), "https_proxy="+e.proxy.String(),
		"http_proxy="+e.proxy.String(), "NO_PROXY=", "no_proxy=", "SSL_CERT_FILE="+e.caFile, "REQUESTS_CA_BUNDLE="+e.caFile, "CURL_CA_BUNDLE="+e.caFile)
	t.Run("curl", func(t *testing.T) {
		if _, err := exec.LookPath("curl"); err != nil {
			t.Fatal("curl is needed: apt-get install curl")
		}
		body := fmt.Sprintf(`{"amount":100,"currency":"EUR","nonce":"6f1c2d3e-1111-4222-8333-%012d","ts":"%s","token":"tok_%x"}`, time.Now().UnixNano()%1e12, time.Now().Format(time.RFC3339), time.Now().UnixNano())
		cmd := exec.Command("curl", "-sS", "-i", "-X", "POST", "-H", "Content-Type: application/json", "-H", "X-Nonce: "+fmt.Sprintf("%032x", time.Now().UnixNano()),
			"--data", body, "https://pay.example.com/v1/charges")
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte(`{"charge":"ch_1","status":"ok"}`)) {
			t.Fatalf("curl: %v\n%s", err, out)
		}
	})
	t.Run("python", func(t *testing.T) {
		script := `
import json, os, time, uuid, secrets, requests
ok = 0
for i in range(3):
    body = {"amount": 100, "currency": "EUR", "nonce": str(uuid.uuid4()), "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "token": "tok_" + secrets.token_hex(8)}
    r = requests.post("https://pay.example.com/v1/charges", json=body, headers={"X-Nonce": secrets.token_hex(16), "X-Timestamp": str(int(time.time()))})
    print(r.status_code, r.text, r.headers.get("X-Tapwire-Mock-Miss", ""))
`
		cmd := exec.Command("python3", "-c", script)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("python3: %v\n%s", err, out)
		}
		// curl took ch_1 in its own session; Python's session goes on from there.
		if n := strings.Count(string(out), "200 {"); n != 3 {
			t.Errorf("python3: %d answers of 200, want 3:\n%s", n, out)
		}
	})
	if s := e.srv.Report().Summary(); s.Missed != 0 {
		t.Errorf("report: %d misses, want 0: %+v", s.Missed, s.Misses)
	}
}

func TestServerMissExplained(t *testing.T) {
	e := startMock(t, volatileRecs(), Options{})
	c := e.client(t)
	resp, body := do(t, c, "POST", "https://pay.example.com/v1/charges", `{"amount":250,"currency":"EUR","nonce":"x"}`)
	if resp.StatusCode != 404 {
		t.Fatalf("status %d, want 404", resp.StatusCode)
	}
	h := resp.Header.Get(MissHeader)
	for _, want := range []string{"closest: POST https://pay.example.com/v1/charges #1", `body.amount="250" (recorded "100")`} {
		if !strings.Contains(h, want) || !strings.Contains(body, want) {
			t.Errorf("miss header %q / body %q: want %q in both", h, body, want)
		}
	}
	resp, _ = do(t, c, "GET", "https://nowhere.example.com/x", "")
	if resp.StatusCode != 404 || !strings.Contains(resp.Header.Get(MissHeader), "no recording for host nowhere.example.com") {
		t.Errorf("unknown host: %d %q", resp.StatusCode, resp.Header.Get(MissHeader))
	}
	s := e.srv.Report().Summary()
	var buf bytes.Buffer
	if err := s.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Requests, Matched, Missed int
		Misses                    []struct{ Method, URL, Closest, Why string }
	}
	if err := json.Unmarshal(buf.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Requests != 2 || rep.Missed != 2 || len(rep.Misses) != 2 || rep.Misses[0].URL != "https://pay.example.com/v1/charges" || !strings.Contains(rep.Misses[0].Why, "body.amount") {
		t.Errorf("report = %s", buf.Bytes())
	}
}

func TestServerPassthrough(t *testing.T) {
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "live %s %s", r.Method, r.URL.Path)
	}))
	upCA := testca.New(t)
	up.TLS = upCA.ServerTLS(t, "127.0.0.1")
	up.StartTLS()
	defer up.Close()
	var recorded bytes.Buffer
	e := startMock(t, volatileRecs(), Options{OnMiss: MissPassthrough, RecordMisses: &recorded,
		Upstream: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: upCA.Pool()}}})
	c := e.client(t)
	resp, body := do(t, c, "GET", up.URL+"/fresh", "")
	if resp.StatusCode != 200 || body != "live GET /fresh" {
		t.Fatalf("passthrough: %d %q", resp.StatusCode, body)
	}
	var got []*capture.Record
	if _, err := format.ReadRecords(&recorded, func(r *capture.Record) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].HTTP.Req.URL != up.URL+"/fresh" || string(got[0].HTTP.Res.Body.Data) != "live GET /fresh" {
		t.Errorf("recorded misses: %+v", got)
	}
	// The upstream's certificate is verified: one the transport does not trust is refused.
	e2 := startMock(t, nil, Options{OnMiss: MissPassthrough})
	if resp, _ := do(t, e2.client(t), "GET", up.URL+"/x", ""); resp.StatusCode != 502 {
		t.Errorf("untrusted upstream: %d, want 502", resp.StatusCode)
	}
}

// TestServerConcurrentSessions: 64 clients, each with its own recorded sequence of answers to the same
// request, get them in order at once, 20 times over, without one wrong answer.
func TestServerConcurrentSessions(t *testing.T) {
	const clients, steps, rounds = 64, 3, 20
	var recs []*capture.Record
	for s := 1; s <= steps; s++ {
		for c := range clients {
			recs = append(recs, rec(len(recs), "GET", "https://bank.example.com/v1/balance", "", fmt.Sprintf("client %d step %d", c, s), "Authorization", fmt.Sprintf("Bearer c%d", c)))
		}
	}
	for round := range rounds {
		e := startMock(t, recs, Options{})
		var wg sync.WaitGroup
		errs := make(chan string, clients*steps)
		for c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				hc := e.client(t)
				for s := 1; s <= steps+1; s++ {
					req, _ := http.NewRequest("GET", "https://bank.example.com/v1/balance", nil)
					req.Header.Set("Authorization", fmt.Sprintf("Bearer c%d", c))
					resp, err := hc.Do(req)
					if err != nil {
						errs <- err.Error()
						return
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if want := fmt.Sprintf("client %d step %d", c, min(s, steps)); string(b) != want {
						errs <- fmt.Sprintf("round %d: client %d call %d got %q, want %q", round, c, s, b, want)
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
		if t.Failed() {
			return
		}
	}
}

// connectDialer dials target through the mock with CONNECT, as a gRPC client behind HTTPS_PROXY does.
func connectDialer(proxy string) func(ctx context.Context, target string) (net.Conn, error) {
	return func(ctx context.Context, target string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", proxy)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			c.Close()
			return nil, fmt.Errorf("CONNECT: %v %v", resp, err)
		}
		return c, nil
	}
}

func grpcRec(i int, method string, up string, down []string, code int, msg string) *capture.Record {
	r := rec(i, "POST", "https://grpc.example.com/test.Echo/"+method, "", "", "Content-Type", "application/grpc", "Te", "trailers")
	r.HTTP.Req.Headers = r.HTTP.Req.Headers[:0]
	r.HTTP.Req.Headers = capture.Headers{{Name: "Content-Type", Value: "application/grpc"}}
	b, _ := proto.Marshal(wrapperspb.String(up))
	r.HTTP.Messages = append(r.HTTP.Messages, capture.Message{Up: true, Data: b, Size: int64(len(b))})
	for j, d := range down {
		b, _ := proto.Marshal(wrapperspb.String(d))
		r.HTTP.Messages = append(r.HTTP.Messages, capture.Message{Data: b, Size: int64(len(b)), AtMicros: int64(j * 1000)})
	}
	r.HTTP.Res.Headers = capture.Headers{{Name: "Content-Type", Value: "application/grpc"}}
	r.HTTP.Res.Trailers = capture.Headers{{Name: "Grpc-Status", Value: fmt.Sprint(code)}}
	if msg != "" {
		r.HTTP.Res.Trailers = append(r.HTTP.Res.Trailers, capture.Header{Name: "Grpc-Message", Value: msg})
	}
	r.HTTP.GRPC = &capture.GRPC{Service: "test.Echo", Method: method}
	return r
}

func TestServerGRPC(t *testing.T) {
	recs := []*capture.Record{
		grpcRec(0, "Say", "hello", []string{"hello back"}, 0, ""),
		grpcRec(1, "Say", "fail", nil, 5, "no such thing"),
		grpcRec(2, "Count", "three", []string{"one", "two", "three"}, 0, ""),
	}
	e := startMock(t, recs, Options{Timing: 0.5})
	conn, err := grpc.NewClient("passthrough:///grpc.example.com:443", grpc.WithContextDialer(connectDialer(e.proxy.Host)),
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: e.ca.Pool()})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out := new(wrapperspb.StringValue)
	if err := conn.Invoke(ctx, "/test.Echo/Say", wrapperspb.String("hello"), out); err != nil || out.Value != "hello back" {
		t.Errorf("unary: %q, %v; want hello back", out.Value, err)
	}
	err = conn.Invoke(ctx, "/test.Echo/Say", wrapperspb.String("fail"), out)
	if st, _ := status.FromError(err); st.Code() != codes.NotFound || st.Message() != "no such thing" {
		t.Errorf("recorded error: %v; want NotFound, no such thing", err)
	}
	err = conn.Invoke(ctx, "/test.Echo/Shout", wrapperspb.String("hello"), out)
	if st, _ := status.FromError(err); st.Code() != codes.NotFound || !strings.Contains(st.Message(), "closest endpoint POST grpc.example.com/test.Echo/Say") {
		t.Errorf("miss: %v; want NotFound naming the closest recording", err)
	}
	st, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/test.Echo/Count")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SendMsg(wrapperspb.String("three")); err != nil {
		t.Fatal(err)
	}
	st.CloseSend()
	var got []string
	for {
		m := new(wrapperspb.StringValue)
		if err := st.RecvMsg(m); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("stream: %v", err)
		}
		got = append(got, m.Value)
	}
	if strings.Join(got, ",") != "one,two,three" {
		t.Errorf("stream = %q, want one, two, three", got)
	}
}

// TestServerMarkdownRecording mocks the vendor's Markdown recording and asks its outbound requests again.
func TestServerMarkdownRecording(t *testing.T) {
	var recs []*capture.Record
	if err := format.ReadPath("../format/markdown/testdata/recorded-2026-06-25_18-18-27", func(r *capture.Record) error {
		recs = append(recs, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	e := startMock(t, recs, Options{})
	c := e.client(t)
	n := 0
	for _, r := range recs {
		if r.Direction != capture.DirOut {
			continue
		}
		n++
		q := r.HTTP.Req
		req, _ := http.NewRequest(q.Method, q.URL, bytes.NewReader(q.Body.Data))
		for _, h := range q.Headers {
			req.Header.Add(h.Name, h.Value)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != r.HTTP.Res.Status || !bytes.Equal(b, r.HTTP.Res.Body.Data) {
			t.Errorf("%s %s = %d %q, want %d %q (miss: %s)", q.Method, q.URL, resp.StatusCode, b, r.HTTP.Res.Status, r.HTTP.Res.Body.Data, resp.Header.Get(MissHeader))
		}
	}
	if n != 3 {
		t.Errorf("%d outbound records, want 3", n)
	}
}
