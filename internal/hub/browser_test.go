package hub

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/apitype"
	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/store"
	"github.com/tapwire/tapwire/internal/store/sqlite"
	"github.com/tapwire/tapwire/internal/store/storetest"
)

// browserTools finds Chromium, node and playwright-core (scripts/deps.d/chromium
// installs them), or skips the test, or fails it under TAPWIRE_REQUIRE_TOOLS.
func browserTools(t *testing.T) (chromium, node, modules string) {
	t.Helper()
	missing := func(what string) {
		msg := what + " not found: run scripts/deps.d/chromium (Debian's chromium and nodejs, playwright-core from npm)"
		if os.Getenv("TAPWIRE_REQUIRE_TOOLS") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	var err error
	if chromium, err = exec.LookPath("chromium"); err != nil {
		missing("chromium")
	}
	if node, err = exec.LookPath("node"); err != nil {
		missing("node")
	}
	dir := os.Getenv("TAPWIRE_NODE")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "tapwire", "node")
	}
	modules = filepath.Join(dir, "node_modules")
	if _, err := os.Stat(filepath.Join(modules, "playwright-core")); err != nil {
		missing("playwright-core")
	}
	return chromium, node, modules
}

// TestBrowser drives the viewer in real Chromium (testdata/browser.js):
// sign in, filter, scroll, search, open records (a gzip JSON body, a
// hostile HTML body that must stay inert text, gRPC fields, a binary body),
// download HAR, the service map, a snapshot, a replay report and one
// answer beside its recording, sign out. Screenshots go to
// $TAPWIRE_ARTIFACTS (default: a tapwire-artifacts directory in the
// system's temporary directory).
func TestBrowser(t *testing.T) {
	chromium, node, modules := browserTools(t)
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "hub.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := newHub(t, st, Config{})
	now := time.Now().UTC()

	// Filler: 240 records over the last 50 minutes.
	g := storetest.NewSynth(3, now.Add(-5*time.Minute), 45*time.Minute, 240)
	var recs []*capture.Record
	for i := range 240 {
		recs = append(recs, g.Next(i))
	}
	at := func(r *capture.Record, ago time.Duration) *capture.Record {
		r.Start = now.Add(-ago)
		r.DurMicros, r.TTFBMicros = 4200, 3100
		return r
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(`{"order":{"id":42,"customer":"Ada Lovelace","items":[{"sku":"TW-1","qty":2}]}}`))
	zw.Close()
	gzipRec := at(storetest.Rec(0, "orders", "in", "GET", "http://orders.shop:4143/v1/orders/42", 200), 2*time.Minute)
	gzipRec.HTTP.Res.Headers = capture.Headers{{Name: "Content-Type", Value: "application/json"}, {Name: "Content-Encoding", Value: "gzip"}}
	gzipRec.HTTP.Res.Body = capture.Body{Data: gz.Bytes(), Size: int64(gz.Len())}
	gzipRec.Net.TLS = &capture.TLS{SNI: "orders.shop", Version: "TLS 1.3", ALPN: "http/1.1", CipherSuite: "TLS_AES_128_GCM_SHA256"}

	xss := at(storetest.Rec(0, "web", "in", "GET", `http://web.shop/page?q=<svg/onload=window.__pwned=3>`, 200), 3*time.Minute)
	xss.HTTP.Req.Headers = append(xss.HTTP.Req.Headers, capture.Header{Name: "X-Evil", Value: `<img src=x onerror="window.__pwned=4">`})
	xss.HTTP.Res.Headers = capture.Headers{{Name: "Content-Type", Value: "text/html"}}
	body := `<script>window.__pwned=1;document.title="pwned"</script><img src=x onerror="window.__pwned=2"><b id="injected">bold</b>`
	xss.HTTP.Res.Body = capture.Body{Data: []byte(body), Size: int64(len(body))}

	str := func(s string) *string { return &s }
	status := 0
	grpc := at(storetest.Rec(0, "orders", "out", "POST", "http://inventory:50051/inv.Stock/Get", 200), 4*time.Minute)
	grpc.HTTP.Req.Proto, grpc.HTTP.Res.Proto = "HTTP/2.0", "HTTP/2.0"
	grpc.HTTP.Req.Headers = capture.Headers{{Name: "Content-Type", Value: "application/grpc"}}
	grpc.HTTP.Req.Body = capture.Body{Size: 14, Truncated: true}
	grpc.HTTP.Res.Body = capture.Body{Size: 25, Truncated: true}
	grpc.HTTP.GRPC = &capture.GRPC{Service: "inv.Stock", Method: "Get", Status: &status}
	grpc.HTTP.Messages = []capture.Message{
		{Up: true, AtMicros: 100, Size: 8, Data: []byte{0x0a, 0x06, 'S', 'K', 'U', '-', '4', '2'},
			Fields: []capture.ProtoField{{Num: 1, Wire: "bytes", String: str("SKU-42")}}},
		{AtMicros: 3000, Size: 20, Data: []byte("x"), Fields: []capture.ProtoField{
			{Num: 1, Wire: "varint", Uint: new(uint64)},
			{Num: 2, Wire: "bytes", Message: []capture.ProtoField{{Num: 1, Wire: "bytes", String: str("Warehouse North")}}}}},
	}
	binary := at(storetest.Rec(0, "catalog", "in", "GET", "http://catalog.shop/img/1.png", 200), 5*time.Minute)
	binary.HTTP.Res.Headers = capture.Headers{{Name: "Content-Type", Value: "image/png"}}
	binary.HTTP.Res.Body = capture.Body{Data: []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), Size: 16}
	stripe := at(storetest.Rec(0, "payments", "out", "POST", "https://api.stripe.com/v1/charges", 503), 6*time.Minute)
	stripe.HTTP.Res.Body = capture.Body{Data: []byte(`{"error":"unavailable"}`), Size: 23}
	// A record whose request "Copy as cURL" must reproduce: the command the
	// viewer copies is run with curl against this server, which keeps what
	// it received.
	type received struct {
		method, uri, trace, ctype, body string
	}
	got := make(chan received, 1)
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		select {
		case got <- received{r.Method, r.RequestURI, r.Header.Get("X-Trace"), r.Header.Get("Content-Type"), string(b)}:
		default:
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	defer echo.Close()
	const echoBody = `{"note":"it's \"quoted\" $HOME ` + "`x`" + `"}`
	echoRec := at(storetest.Rec(0, "orders", "out", "POST", echo.URL+"/v1/echo?x=1&y=a%20b", 202), 7*time.Minute)
	echoRec.HTTP.Req.Headers = capture.Headers{{Name: "Content-Type", Value: "application/json"}, {Name: "X-Trace", Value: "abc 'quoted'"}}
	echoRec.HTTP.Req.Body = capture.Body{Data: []byte(echoBody), Size: int64(len(echoBody))}
	recs = append(recs, gzipRec, xss, grpc, binary, stripe, echoRec)
	if _, resp := h.post(h.keys["acme/ingest"], recs); resp.StatusCode != 200 {
		t.Fatalf("seed: %d", resp.StatusCode)
	}
	outHTTP := 0
	for _, r := range recs {
		if r.Direction == "out" && r.HTTP != nil {
			outHTTP++
		}
	}
	var n int
	st.Scan(ctx, "acme", store.Filter{}, func(*store.Row) error { n++; return nil })
	if n != len(recs) {
		t.Fatalf("seeded %d records, want %d", n, len(recs))
	}

	// A replay's report, pushed as speedctl replay --push does, over a
	// snapshot of the orders service: the gzip record's answer differs
	// (a changed, an added and a removed member, a changed header; the
	// live body holds markup that must stay text), a second answer matched.
	code, sn, msg := h.createSnapshot(h.keys["acme/ingest"], map[string]any{"name": "orders", "filter": map[string]any{"service": "orders"}, "from": "-1h"})
	if code != 201 {
		t.Fatalf("snapshot: %d %s", code, msg)
	}
	liveBody := `{"order":{"id":42,"customer":"Grace Hopper <img src=x onerror=\"window.__pwned=5\">","items":[{"sku":"TW-1","qty":2}],"coupon":"SPRING"}}`
	answers := []map[string]any{
		{"record": gzipRec.ID, "endpoint": "GET /v1/orders/{}", "request": "GET /v1/orders/42", "status": 200, "status_matched": true, "body_matched": false,
			"fields": []map[string]string{{"field": "body.order.customer", "recorded": `"Ada Lovelace"`, "live": `"Grace Hopper"`},
				{"field": "body.order.coupon", "recorded": "(absent)", "live": `"SPRING"`}, {"field": "header.content-type", "recorded": "application/json", "live": "text/plain"}},
			"live": map[string]any{"headers": map[string][]string{"Content-Type": {"text/plain"}}, "body": liveBody, "body_size": len(liveBody)}},
		{"record": "0195-not-recorded", "endpoint": "GET /v1/orders/{}", "request": "GET /v1/orders/7", "status": 200, "status_matched": true, "body_matched": true},
	}
	report, _ := json.Marshal(map[string]any{"target": "http://orders-canary:8080", "snapshot": sn.ID, "sent": 2, "answered": 2,
		"status_matched": 2, "body_compared": 2, "body_matched": 1, "latency_ms": map[string]float64{"p50": 1.5, "p99": 3},
		"endpoints": []map[string]any{{"endpoint": "GET /v1/orders/{}", "sent": 2, "answered": 2, "status_matched": 2, "body_compared": 2, "body_matched": 1,
			"latency_ms": map[string]float64{"p50": 1.5, "p99": 3}}},
		"diffs":      []map[string]any{{"endpoint": "GET /v1/orders/{}", "count": 1}},
		"answers":    answers,
		"assertions": []map[string]any{{"expr": "status_match<100%", "value": 100, "failed": false}, {"expr": "body_match<100%", "value": 50, "failed": true}},
		"passed":     false})
	code, b, _ := h.send("POST", h.keys["acme/ingest"], "/api/v1/reports", report, nil)
	var rs apitype.ReportSummary
	if code != 201 || json.Unmarshal(b, &rs) != nil {
		t.Fatalf("push report: %d %s", code, b)
	}

	artifacts := os.Getenv("TAPWIRE_ARTIFACTS")
	if artifacts == "" {
		artifacts = filepath.Join(os.TempDir(), "tapwire-artifacts")
	}
	artifacts = filepath.Join(artifacts, "hub-viewer")
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	ids, _ := json.Marshal(map[string]string{"gzip": gzipRec.ID, "xss": xss.ID, "grpc": grpc.ID, "binary": binary.ID, "stripe": stripe.ID,
		"report": rs.ID, "snapshot": sn.ID, "echo": echoRec.ID})
	cmd := exec.Command(node, filepath.Join("testdata", "browser.js"))
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules, "CHROMIUM="+chromium, "HUB_URL="+h.url,
		"READ_KEY="+h.keys["acme/read"], "INGEST_KEY="+h.keys["acme/ingest"], "IDS="+string(ids),
		"ARTIFACTS="+artifacts, "OUT_HTTP="+strconv.Itoa(outHTTP))
	timer := time.AfterFunc(2*time.Minute, func() { cmd.Process.Kill() })
	defer timer.Stop()
	out, err := cmd.CombinedOutput()
	t.Logf("browser test output:\n%s", out)
	if err != nil {
		t.Fatalf("browser test: %v (screenshots in %s)", err, artifacts)
	}
	t.Logf("screenshots in %s", artifacts)

	// The copied command, run as a user would paste it, sends the request again.
	if _, err := exec.LookPath("curl"); err != nil {
		if os.Getenv("TAPWIRE_REQUIRE_TOOLS") != "" {
			t.Fatal("curl is not installed; scripts/install-test-deps installs it")
		}
		t.Skip("curl is not installed: the copied command is not run")
	}
	curlCmd, err := os.ReadFile(filepath.Join(artifacts, "copied-curl.sh"))
	if err != nil {
		t.Fatalf("the browser test did not save the copied command: %v", err)
	}
	if out, err := exec.Command("sh", "-c", string(curlCmd)+" -sS -o /dev/null").CombinedOutput(); err != nil {
		t.Fatalf("run the copied command %q: %v\n%s", curlCmd, err, out)
	}
	select {
	case r := <-got:
		want := received{"POST", "/v1/echo?x=1&y=a%20b", "abc 'quoted'", "application/json", echoBody}
		if r != want {
			t.Errorf("the copied curl command sent %+v, want the recorded request %+v", r, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the copied curl command reached nothing")
	}
}
